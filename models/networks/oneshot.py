"""The person-generic one-shot generator (Free-HeadGAN 3.3, after HeadGAN): a photo and its
conditioning are encoded once; each driver frame's conditioning (NMFC + eye sketch of the
driver's pose and expression on the photo's identity) predicts a dense flow, an occlusion map
and an attention logit per source; the warped source features and image, blended over the
sources by attention (paper eq. 5-6), feed a rendering decoder that fills what the warp
cannot (mouth interior, disocclusions) and a blend map that keeps the warped photo's detail.

The flow starts from the face model's own correspondence: an NMFC pixel's colour is the
mean-face coordinate of the centre of the triangle it shows (flat, 8-bit), so a colour names a
triangle. The pixels of each colour are gathered (a scatter into a table with one cell per
8-bit red-green pair, computed in the graph), and each driver face pixel moves by the offset
between that triangle's centre in the source and in the driver: a per-triangle translation,
as exact as the mesh (no softmax over nearby colours). The photo is warped by that offset per
pixel (lightly smoothed), its features by the per-cell average; the flow network sees the
prior and adds a residual, which moves the photo only where the mesh says nothing (hair, neck,
background; faded in over a few pixels past the face): on the face and in its holes (eyes) the
mesh is exact for any person, and a residual learned from a few people made held-out faces
worse. (The 1/4-resolution flow that warps the source features keeps the residual everywhere.)
Flows are in normalised grid units (grid_sample's [-1, 1]), so one flow serves every scale.

N-shot attention starts from the same correspondence: a source whose triangle covers about as
many pixels as the driver's shows that part of the face in a similar pose and expression, so
each source's attention logit gets minus the absolute log ratio of the two pixel counts (a
fixed penalty where the source does not show the triangle), nearby and over the whole face,
before the learned term (without it the sources were averaged: ghosted eyes).

Gaze (paper 3.2: the eyes follow the driver's gaze): the mesh has no triangles inside the eyes,
so its correspondence moves an eye with its lids but leaves the iris where the photo looks. The
eye sketch's red pupil discs say where each pupil is in the source and in the driver; inside the
eye holes the flow slides the source's iris onto the driver's pupil (a translation near the
driver's disc, fading into the lids' motion at `gaze_reach` disc radii).

The decoder paints where the warp has nothing to show: the open mouth (a hole in the driver's
face, below the eyes on the mean face), an open eye where the photo's is closed, and parts of the
face the photos do not show; in a black-and-white photo it paints without colour. Everywhere else (skin, hair, background) the blend is pushed
towards the warped photo (`trust`): on people it never saw, its paint over warped skin and hair
was where colour patches and smears came from.
"""
from __future__ import annotations

from copy import deepcopy as copy_module
from dataclasses import dataclass
from itertools import accumulate

import torch
import torch.nn.functional as F
from torch import nn

COND_CHANNELS = 6
IMAGE_CHANNELS = 3
OUT_CHANNELS = 4  # RGB and the foreground mask logit
LEVELS = 256  # NMFC colours are 8-bit
CELLS = LEVELS * LEVELS  # one colour-table cell per red-green pair
FLOW_STRIDE = 4  # the flow is predicted at 1/4 resolution
SEAM_KERNEL = 5  # full-resolution window (pixels) that smooths the per-triangle prior's seams
ATTEND_KERNEL = 5  # window (flow cells) of the local area-ratio attention term
MAX_EQUALISE = 16.0  # the largest factor quantisable() gives a weak feature channel
MASK_GAIN = 6.0  # logit the warped photo's own segmentation adds to the predicted mask
MIN_PUPIL = 3.0  # pixels a pupil disc needs before the iris is moved (fewer: the eye is closed)
LOWER_FACE = 0.1  # NMFC green (mean-face y in [-1, 1]) past which a hole's surroundings are the lower face (eyes: < -0.2, lips: > 0.3)
MOUTH_KERNEL = 17  # window (flow cells) over which a hole's surrounding face is averaged
MISSING_FIT = 2.0  # area-fit penalty where a source does not show the driver's triangle (worse than a 7x size mismatch)
EDGE_INSET = 1e-5  # grid units (1e-3 of a pixel at 256) the warp's grid stays inside the last pixel centre
FULL_COLOUR = 4.0 / 127.5  # mean distance of a photo's pixels from their grey level at and above which its paint keeps all its colour (skin in colour photos: 7-20 of 255)


@dataclass(frozen=True)
class OneShotConfig:
    """widths: source feature channels at full, 1/2 and 1/4 resolution; driver: the driver
    encoder's channels at the same scales; motion: channels of the flow network at 1/4;
    blocks: residual blocks of the flow network and of the decoder at 1/4."""

    preset: str = "small"
    size: int = 256
    widths: tuple[int, int, int] = (16, 32, 64)
    driver: tuple[int, int, int] = (8, 16, 32)
    motion: int = 48
    blocks: int = 1
    flow_scale: float = 0.25  # largest residual flow (grid units) the tanh head can emit
    fill: int = 9  # window (pixels) from which the prior fills the mesh's holes (eyes) at full resolution
    attend_local: float = 10.0  # weight of a source's nearby area fit in its attention logit
    attend_global: float = 30.0  # weight of its whole-face area fit
    extend: int = 17  # window (flow cells) over which the face's flow is carried past its edge
    keep_bias: float = 3.0  # added to the blend logit: the output starts as the warped photo (95%)
    gaze_reach: float = 3.0  # radius (in pupil-disc radii) over which the iris slide fades into the lids' motion
    trust: float = 2.0  # added to the blend logit wherever the warped photo has something to show (1 - Prior.paint)


ONESHOT_PRESETS = {
    "small": OneShotConfig(),
    "tiny": OneShotConfig(preset="tiny", widths=(4, 8, 8), driver=(4, 4, 8), motion=8, blocks=1),  # for smoke tests
}


def oneshot_config(preset: str) -> OneShotConfig:
    if preset not in ONESHOT_PRESETS:
        raise ValueError(f"unknown one-shot preset {preset!r}; choose one of {sorted(ONESHOT_PRESETS)}")
    return ONESHOT_PRESETS[preset]


def conv(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2), nn.LeakyReLU(0.2, inplace=True))


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(channels, channels, 3, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.body(x), 0.2)


class Pyramid(nn.Module):
    """Three feature maps, at full, 1/2 and 1/4 resolution."""

    def __init__(self, cin: int, widths: tuple[int, int, int], blocks: int, kernel: int = 7) -> None:
        super().__init__()
        self.level0 = conv(cin, widths[0], kernel)
        self.level1 = conv(widths[0], widths[1], 3, 2)
        self.level2 = nn.Sequential(conv(widths[1], widths[2], 3, 2), *[Residual(widths[2]) for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        full = self.level0(x)
        half = self.level1(full)
        return [full, half, self.level2(half)]


@dataclass
class Prior:
    """The mesh correspondence per (driver, source): quarter (B, K, 3, h, w) the flow at 1/4
    resolution and where it holds; full (B, K, 2, S, S) the flow that warps the photo; known
    (B, K, 1, S, S) 1 where full comes from the mesh (the face, its holes and a rim of
    fill / 2 pixels); fit (B, K, 1, h, w) per flow cell of the driver's face, the mean of minus
    the absolute log ratio of a triangle's pixel counts in source and driver (0: same size;
    -MISSING_FIT where the source does not show it); face (B, 1, 1, h, w) 1 on the flow cells
    of the driver's face; paint (B, K, 1, S, S) 1 where the warped source has nothing to show:
    the driver's open mouth, an open driver eye where the source's is closed and the face
    triangles the source does not show (softened over SEAM_KERNEL pixels)."""

    quarter: torch.Tensor
    full: torch.Tensor
    known: torch.Tensor
    fit: torch.Tensor
    face: torch.Tensor
    paint: torch.Tensor


@dataclass
class Sources:
    """What is computed once per photo: the images (K, 3, S, S), their feature pyramids, their
    colour table (K, 3, CELLS): where each NMFC colour lies in the photo (see position_table),
    their pupils (K, 2, 3) (see pupil_discs) and their foreground masks (K, 1, S, S) in [0, 1]
    when known."""

    images: torch.Tensor
    features: list[torch.Tensor]
    table: torch.Tensor
    pupils: torch.Tensor
    masks: torch.Tensor | None = None


def box_mean(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """The mean over each kernel x kernel window inside the image, a row then a column at a
    time (a window's sum is separable)."""
    row = F.avg_pool2d(x, (1, kernel), 1, (0, kernel // 2), count_include_pad=False)
    return F.avg_pool2d(row, (kernel, 1), 1, (kernel // 2, 0), count_include_pad=False)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, kernel: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean of x over the masked cells of each kernel x kernel window, and the masked share."""
    share = box_mean(mask, kernel)
    return box_mean(x * mask, kernel) / share.clamp_min(1e-3), share


def extend_flow(flow: torch.Tensor, mask: torch.Tensor, kernel: int) -> torch.Tensor:
    """The face's flow (B, 2, h, w) smoothed across its triangles and carried past the face's edge
    (grown outwards a cell at a time, each new cell the mean of its reached neighbours, so it
    continues the edge's own flow; fading out over kernel / 2 cells), so hair, ears and neck
    start out moving with the head instead of tearing at the mesh border."""
    inside, _ = masked_mean(flow, mask, 3)
    outside, reached = inside * mask, mask
    for _ in range(kernel // 2):  # grown a cell at a time from the edge: continuous with the face's own flow there
        grown, share = masked_mean(outside, reached, 3)
        new = (share > 0).to(flow.dtype) * (1 - reached)
        outside, reached = outside + new * grown, reached + new
    share = box_mean(mask, kernel)
    return mask * inside + (1 - mask) * outside * (share * 4).clamp(max=1.0)


def on_face(nmfc: torch.Tensor) -> torch.Tensor:
    """(B, S, S) bool: the pixels an NMFC image (B, 3, S, S) in [-1, 1] draws the face on (the rest is black)."""
    return (nmfc > -0.99).any(1)


def colour_cells(nmfc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each pixel's colour-table cell (B, S*S), from its 8-bit red and green levels (the
    mean-face x and y of its triangle), and whether it is on the face (B, S*S)."""
    levels = torch.round((nmfc[:, :2] + 1.0) * ((LEVELS - 1) / 2)).clamp(0, LEVELS - 1).long()
    return (levels[:, 1] * LEVELS + levels[:, 0]).flatten(1), on_face(nmfc).flatten(1).to(nmfc.dtype)


def position_table(nmfc: torch.Tensor) -> torch.Tensor:
    """(B, 3, CELLS): the mean grid position (x, y) of the face pixels of each colour cell, and
    how many pixels it has (0: that triangle is not visible)."""
    b, _, size, _ = nmfc.shape
    cells, face = colour_cells(nmfc)
    position = identity_grid(size, nmfc.device, nmfc.dtype).reshape(1, -1, 2).transpose(1, 2)
    values = torch.cat([position.expand(b, -1, -1), torch.ones_like(face[:, None])], 1) * face[:, None]
    sums = torch.zeros(b, 3, CELLS, device=nmfc.device, dtype=nmfc.dtype).scatter_add(2, cells[:, None].expand(-1, 3, -1), values)
    count = sums[:, 2:]
    return torch.cat([sums[:, :2] / count.clamp_min(1.0), count], 1)


def pupil_discs(cond: torch.Tensor) -> torch.Tensor:
    """(B, 2, 3) from conditioning (B, 6, S, S) in [-1, 1]: per eye (image-left first) the
    centre (x, y) of its red pupil disc in grid units and the disc's pixel count off the face
    (0: the eye is closed, or hidden behind the nose on a turned head: the sketch draws both
    discs regardless). The eyes are told apart by the midpoint of the white lid outlines,
    drawn even when an eye is closed."""
    eyes = cond[:, 3:]
    size = eyes.shape[-1]
    grid = identity_grid(size, eyes.device, eyes.dtype)[0]
    xs, ys = grid[..., 0], grid[..., 1]
    red = ((eyes[:, 0] > 0) & (eyes[:, 1] < 0) & ~on_face(cond[:, :3])).to(eyes.dtype)
    lid = (eyes.amin(1) > 0).to(eyes.dtype)
    middle = (lid * xs).sum((1, 2)) / lid.sum((1, 2)).clamp_min(1.0)
    left = (xs < middle[:, None, None]).to(eyes.dtype)
    discs = []
    for side in (left, 1 - left):
        disc = red * side
        count = disc.sum((1, 2))
        centre = torch.stack([(disc * xs).sum((1, 2)), (disc * ys).sum((1, 2))], -1) / count.clamp_min(1.0)[:, None]
        discs.append(torch.cat([centre, count[:, None]], -1))
    return torch.stack(discs, 1)


def enclosed_holes(face: torch.Tensor) -> torch.Tensor:
    """(B, 1, S, S) 1 on the pixels off the face (B, 1, S, S) that it encloses along both their
    row and their column: the eyes and the open mouth, not the background or the hair."""
    seen = lambda dim: (face.cumsum(dim) > 0) & (face.flip(dim).cumsum(dim).flip(dim) > 0)
    return ((face < 0.5) & seen(2) & seen(3)).to(face.dtype)


def mouth_hole(green: torch.Tensor, face: torch.Tensor, cells: torch.Tensor, holes: torch.Tensor) -> torch.Tensor:
    """(B, 1, S, S) 1 on the open mouth: the enclosed holes (B, 1, S, S) whose surrounding face
    (averaged over MOUTH_KERNEL flow cells) is the lower face by the NMFC's green (B, 1, S, S),
    where the eye holes' is not. cells: the face's share of each flow cell (B, 1, h, w)."""
    size = face.shape[-1]
    height, share = masked_mean(F.avg_pool2d(green * face, FLOW_STRIDE) / cells.clamp_min(1e-3), (cells > 0).to(face.dtype), MOUTH_KERNEL)
    lower = resize(((height > LOWER_FACE) & (share > 0)).to(face.dtype), size) > 0.5
    return holes * lower.to(face.dtype)


def slide_irises(flow: torch.Tensor, holes: torch.Tensor, source: torch.Tensor, driver: torch.Tensor,
                  reach: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The full-resolution flow (B, K, 2, S, S) with each eye hole's iris moved: around each
    driver pupil the flow becomes the offset to the source's pupil (1 out to reach - 1 disc
    radii, fading to 0 at `reach`), in the enclosed holes (B, 1, 1, S, S) only, where both eyes
    are open; and (B, K, 1, S, S) the same region where the driver's eye is open and the
    source's is not (nothing to slide: the decoder paints it). source: (B, K, 2, 3) and driver
    (B, 2, 3) from pupil_discs."""
    size = flow.shape[-1]
    grid = identity_grid(size, flow.device, flow.dtype)[0].permute(2, 0, 1)
    unmatched = torch.zeros_like(flow[:, :, :1])
    for eye in range(2):
        centre, count = driver[:, eye, :2], driver[:, eye, 2]
        radius = torch.sqrt(count / torch.pi).clamp_min(0.5) * (2.0 / size)
        distance = (grid[None] - centre[:, :, None, None]).square().sum(1).sqrt()
        near = (reach - distance / radius[:, None, None]).clamp(0.0, 1.0)[:, None, None] * holes
        driver_open, source_open = (count > MIN_PUPIL)[:, None], source[:, :, eye, 2] > MIN_PUPIL
        weight = near * (driver_open & source_open).to(flow.dtype)[:, :, None, None, None]
        unmatched = unmatched + near * (driver_open & ~source_open).to(flow.dtype)[:, :, None, None, None]
        offset = (source[:, :, eye, :2] - centre[:, None])[..., None, None]
        flow = flow + weight * (offset - flow)
    return flow, unmatched.clamp(max=1.0)


def colourfulness(images: torch.Tensor) -> torch.Tensor:
    """(N,) how much colour each image (N, 3, S, S) in [-1, 1] has, in [0, 1]: its pixels' mean
    distance from their grey level over FULL_COLOUR (0: a black-and-white photo)."""
    return ((images - images.mean(1, keepdim=True)).abs().mean((1, 2, 3)) / FULL_COLOUR).clamp(max=1.0)


def as_colourful(paint: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """paint (B, 3, S, S) with its colour (the distance from its grey level) scaled by colour (B,):
    what the decoder paints into a black-and-white photo stays black and white."""
    grey = paint.mean(1, keepdim=True)
    return grey + (paint - grey) * colour[:, None, None, None]


def equalising_scale(features: torch.Tensor) -> torch.Tensor:
    """Per channel of (N, C, h, w), the factor that brings its peak to the strongest channel's
    (at most MAX_EQUALISE)."""
    peak = features.abs().amax((0, 2, 3)).clamp_min(1e-6)
    return (peak.max() / peak).clamp(max=MAX_EQUALISE)


def per_driver(t: torch.Tensor, drivers: int, paired: bool) -> torch.Tensor:
    """Source tensors (N, ...) as (B, K, ...): paired, the sources are B groups of K (one group
    per driver, in order); otherwise all N sources serve every driver."""
    return t.unflatten(0, (drivers, -1)) if paired else t[None].expand(drivers, *t.shape)


def look_up(table: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """The table's (N, 3, CELLS) entries at each pixel's cell (N, P): (N, 3, P)."""
    return torch.gather(table, 2, cells[:, None].expand(-1, table.shape[1], -1))


def identity_grid(size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(1, size, size, 2) grid_sample coordinates of the pixel centres (align_corners=False)."""
    line = (torch.arange(size, device=device, dtype=dtype) + 0.5) * (2.0 / size) - 1.0
    ys, xs = torch.meshgrid(line, line, indexing="ij")
    return torch.stack([xs, ys], -1)[None]


def warp(features: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp of square features by a normalised flow (B, 2, h, w), resized to their
    resolution, with border padding done as a grid clamped to the outermost pixel centres and
    zero padding (ONNX Runtime's CPU GridSample is fast for zero padding only). The bounds sit
    just inside the outer centres: exactly on them, zero padding's gradient would see the zero
    beyond, where border padding's is 0; samples move by under 1e-3 of a pixel."""
    size = features.shape[-1]
    if flow.shape[-1] != size:
        flow = F.interpolate(flow, size=(size, size), mode="bilinear", align_corners=False)
    edge = 1.0 - 1.0 / size
    grid = (identity_grid(size, flow.device, flow.dtype) + flow.permute(0, 2, 3, 1)).clamp(EDGE_INSET - edge, edge - EDGE_INSET)
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    return x if x.shape[-1] == size else F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def pointwise_over(layer: nn.Sequential, parts: list[torch.Tensor], size: int) -> torch.Tensor:
    """layer (a 1x1 convolution and its activation) over the channel concatenation of parts, each
    resized to `size`: the same function computed with the convolution applied before upsampling
    (a 1x1 convolution commutes with a bilinear resize, whose weights sum to 1), so a part at a
    lower resolution is upsampled with the output's fewer channels and no full-resolution
    concatenation is made; the parts at or above `size` go through one convolution together."""
    conv, activation = layer[0], layer[1]
    assert conv.kernel_size == (1, 1), "only a 1x1 convolution commutes with the resize"
    starts = list(accumulate((part.shape[1] for part in parts), initial=0))
    weights = [conv.weight[:, a:b] for a, b in zip(starts, starts[1:])]
    low = [i for i, part in enumerate(parts) if part.shape[-1] < size]
    high = [i for i in range(len(parts)) if i not in low]
    total = conv.bias[None, :, None, None]
    if high:
        total = F.conv2d(torch.cat([resize(parts[i], size) for i in high], 1), torch.cat([weights[i] for i in high], 1), conv.bias)
    for i in low:
        total = total + resize(F.conv2d(parts[i], weights[i]), size)
    return activation(total)


class OneShotGenerator(nn.Module):
    """encode(images (K, 3, S, S), conds (K, 6, S, S)) -> Sources, once per photo set;
    forward(sources, driver cond (B, 6, S, S)) -> (B, 4, S, S): RGB in [-1, 1], mask logit.
    A batch of B drivers shares the K sources; training passes B groups of K sources, one group
    per driver, with `paired=True` (K > 1 trains the attention over sources)."""

    def __init__(self, config: OneShotConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or OneShotConfig()
        self.source = Pyramid(IMAGE_CHANNELS + COND_CHANNELS, c.widths, c.blocks)
        self.driver = Pyramid(COND_CHANNELS, c.driver, 0, kernel=3)
        self.motion = nn.Sequential(
            conv(c.widths[2] + c.driver[2] + 3, c.motion), *[Residual(c.motion) for _ in range(c.blocks)],
            nn.Conv2d(c.motion, 4, 3, 1, 1),
        )
        self.fuse_quarter = nn.Sequential(conv(c.widths[2] + c.driver[2], c.widths[2]), *[Residual(c.widths[2]) for _ in range(c.blocks)])
        self.fuse_half = nn.Sequential(conv(c.widths[2] + IMAGE_CHANNELS + c.driver[1], c.widths[1], 1), conv(c.widths[1], c.widths[1]))
        self.fuse_full = nn.Sequential(conv(c.widths[1] + IMAGE_CHANNELS + c.driver[0], c.widths[0], 1), conv(c.widths[0], c.widths[0]))
        self.head = nn.Conv2d(c.widths[0], IMAGE_CHANNELS + 2, 3, 1, 1)
        nn.init.zeros_(self.motion[-1].weight)
        nn.init.zeros_(self.motion[-1].bias)
        self.prior_gain = 1.0  # the prior flow's factor on its way into the flow network (see quantisable)

    def encode(self, images: torch.Tensor, conds: torch.Tensor, masks: torch.Tensor | None = None) -> Sources:
        """The sources of photos (K, 3, S, S) with their conditioning (K, 6, S, S) and, when
        known, foreground masks (K, 1, S, S) in [0, 1]."""
        return Sources(images, self.source(torch.cat([images, conds], 1)), position_table(conds[:, :3]), pupil_discs(conds), masks)

    def prior_flow(self, sources: Sources, cond: torch.Tensor, paired: bool, exact: torch.Tensor | None = None) -> Prior:
        """The mesh correspondence (see Prior). Each driver face pixel moves by the offset
        between its triangle's centre in the source and in the driver. At 1/4 (what the flow
        network sees) that is averaged per flow cell, smoothed across triangles and carried past
        the face's edge (extend_flow); at full resolution (what warps the photo) the face
        keeps each pixel's own offset (lightly smoothed), the holes inside it (eyes) and a thin
        rim take the nearby face's mean, fading into the 1/4 flow that the rest takes (no step: a
        line along a turned head's far cheek); then the irises slide to the
        driver's pupils (slide_irises). Triangles the source does not show get no prior. `exact`
        (B, K, 3, S, S), when given: where each driver pixel lies on each source's mesh (grid x, y)
        and 1 where the mesh covers it, rendered (see NMFCRenderer.render_values): the face
        pixels whose triangle the source shows take that instead of the per-triangle offset."""
        b, size = cond.shape[0], cond.shape[-1]
        cells, face = colour_cells(cond[:, :3])
        in_driver = look_up(position_table(cond[:, :3]), cells)[:, None]  # (B, 1, 3, P)
        table = per_driver(sources.table, b, paired)
        k = table.shape[1]
        in_source = look_up(table.flatten(0, 1), cells.repeat_interleave(k, 0)).unflatten(0, (b, k))
        on_face = face[:, None, None]
        valid = (in_source[:, :, 2:] > 0).to(cond.dtype) * on_face  # (B, K, 1, P)
        ratio = torch.log(in_source[:, :, 2:].clamp_min(1.0) / in_driver[:, :, 2:].clamp_min(1.0))
        fit = -ratio.abs() * valid - MISSING_FIT * (on_face - valid)
        image = lambda t: t.flatten(0, 1).unflatten(-1, (size, size))
        flow, valid, fit = image((in_source[:, :, :2] - in_driver[:, :, :2]) * valid), image(valid), image(fit)
        cell_flow, share = F.avg_pool2d(flow, FLOW_STRIDE), F.avg_pool2d(valid, FLOW_STRIDE)
        mask = (share > 0).to(cond.dtype)
        quarter = extend_flow(cell_flow / share.clamp_min(1e-3), mask, self.config.extend)
        smooth, covered = masked_mean(flow, valid, SEAM_KERNEL)
        covered = (covered > 0).to(cond.dtype)
        hole, reach = masked_mean(flow, valid, self.config.fill)
        near = (reach > 0).to(cond.dtype) * (1 - covered)  # the holes and a rim of fill / 2 pixels
        fade = (reach * (self.config.fill / 2)).clamp(max=1.0) * (1 - covered)  # over the rim, 1 just past the face to 0: no step into the 1/4 flow
        full = covered * smooth + fade * hole + (1 - covered - fade) * resize(quarter, size)
        if exact is not None:
            shown = exact.flatten(0, 1)[:, 2:] * valid
            grid = identity_grid(size, cond.device, cond.dtype).permute(0, 3, 1, 2)
            full = shown * (exact.flatten(0, 1)[:, :2] - grid) + (1 - shown) * full
        per_pair = lambda t: t.unflatten(0, (b, k))
        face_image = face.unflatten(-1, (size, size))[:, None]
        holes = enclosed_holes(face_image)
        pupils = per_driver(sources.pupils, b, paired)
        full, unmatched = slide_irises(per_pair(full), holes[:, None], pupils, pupil_discs(cond), self.config.gaze_reach)
        face_share = F.avg_pool2d(face_image, FLOW_STRIDE)  # (B, 1, h, w)
        unseen = per_pair(face_image.repeat_interleave(k, 0) - valid)
        paint = (unseen + unmatched + mouth_hole(cond[:, 1:2], face_image, face_share, holes)[:, None]).clamp(max=1.0)
        paint = box_mean(paint.flatten(0, 1), SEAM_KERNEL).unflatten(0, (b, k))  # no step in the blend at its edges
        fit = F.avg_pool2d(fit, FLOW_STRIDE) / face_share.repeat_interleave(k, 0).clamp_min(1e-3)
        face_cells = (face_share > 0).to(cond.dtype)[:, None]
        return Prior(per_pair(torch.cat([quarter, mask], 1)), full, per_pair(covered + near), per_pair(fit), face_cells, paint)

    def attention_prior(self, prior: Prior) -> torch.Tensor:
        """(B, K, 1, h, w): each source's area fit to the driver, nearby and over the whole face,
        weighted into an attention logit."""
        mask = prior.face.expand_as(prior.fit)
        local, _ = masked_mean(prior.fit.flatten(0, 1), mask.flatten(0, 1), ATTEND_KERNEL)
        whole = (prior.fit * mask).sum((2, 3, 4), keepdim=True) / mask.sum((2, 3, 4), keepdim=True).clamp_min(1.0)
        return self.config.attend_local * local.unflatten(0, mask.shape[:2]) + self.config.attend_global * whole

    def motion_fields(self, sources: Sources, drivers: list[torch.Tensor], cond: torch.Tensor, paired: bool,
                      exact: torch.Tensor | None = None):
        """Per (driver, source) flow (B, K, 2, h, w) at 1/4 resolution and (B, K, 2, S, S) at
        full resolution, occlusion (B, K, 1, h, w) in [0, 1], attention (B, K, 1, h, w)
        summing to 1 over K, and the mesh prior they started from."""
        src = sources.features[2]
        drv = drivers[2]
        found = self.prior_flow(sources, cond, paired, exact)
        prior = found.quarter
        b, k = drv.shape[0], prior.shape[1]
        prior_in = torch.cat([prior[:, :, :2] * self.prior_gain, prior[:, :, 2:]], 2)
        pairs = torch.cat([per_driver(src, b, paired), drv[:, None].expand(-1, k, -1, -1, -1), prior_in], 2).flatten(0, 1)
        out = self.motion(pairs)
        residual = torch.tanh(out[:, :2]) * self.config.flow_scale
        flow = prior[:, :, :2] + residual.unflatten(0, (b, k))
        free = box_mean(1 - found.known.flatten(0, 1), self.config.fill).unflatten(0, (b, k))  # 0 on the mesh, fading in past it
        full_flow = found.full + resize(residual, cond.shape[-1]).unflatten(0, (b, k)) * free
        out = out.unflatten(0, (b, k))
        occlusion = torch.sigmoid(out[:, :, 2:3])
        logits = out[:, :, 3:4] + self.attention_prior(found) if k > 1 else out[:, :, 3:4]  # one source: no choice
        attention = torch.softmax(logits, dim=1)
        return flow, full_flow, occlusion, attention, found

    def blend_warped(self, features: torch.Tensor, flow, weight: torch.Tensor | None, paired: bool) -> torch.Tensor:
        """Sum over sources of weight * warp(features): (B, C, h, w); no weight: a plain sum."""
        b, k = flow.shape[:2]
        feats = per_driver(features, b, paired)
        warped = warp(feats.flatten(0, 1), flow.flatten(0, 1)).unflatten(0, (b, k))
        if weight is not None:
            warped = warped * resize(weight.flatten(0, 1), features.shape[-1]).unflatten(0, (b, k))
        return warped[:, 0] if k == 1 else warped.sum(1)  # one source: no sum (in ONNX a copy of the whole map)

    def trusted(self, prior: Prior, attention: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S) the share of the blended warp that has something to show (1 - paint), by attention."""
        shows = 1 - prior.paint
        b, k = shows.shape[:2]
        if k == 1:
            return shows[:, 0]
        return (shows * resize(attention.flatten(0, 1), shows.shape[-1]).unflatten(0, (b, k))).sum(1)

    def forward(self, sources: Sources, cond: torch.Tensor, paired: bool = False, extras: bool = False,
                exact: torch.Tensor | None = None):
        """See the class; `exact`: see prior_flow."""
        drivers = self.driver(cond)
        flow, full_flow, occlusion, attention, found = self.motion_fields(sources, drivers, cond, paired, exact)
        quarter = sources.features[2]
        photo = sources.images if sources.masks is None else torch.cat([sources.images, sources.masks], 1)
        warped_photo = self.blend_warped(photo, full_flow, attention if attention.shape[1] > 1 else None, paired)  # one source: weight 1
        warped_image = warped_photo[:, :3]
        x = self.fuse_quarter(torch.cat([self.blend_warped(quarter, flow, occlusion * attention, paired), drivers[2]], 1))
        half = drivers[1].shape[-1]
        x = self.fuse_half[1](pointwise_over(self.fuse_half[0], [x, warped_image, drivers[1]], half))
        x = self.fuse_full[1](pointwise_over(self.fuse_full[0], [x, warped_image, drivers[0]], cond.shape[-1]))
        out = self.head(x)
        keep = torch.sigmoid(out[:, 3:4] + self.config.keep_bias + self.config.trust * self.trusted(found, attention))
        colour = per_driver(colourfulness(sources.images), cond.shape[0], paired).mean(1)
        rgb = keep * warped_image + (1 - keep) * as_colourful(torch.tanh(out[:, :3]), colour)
        mask = out[:, 4:5]
        if sources.masks is not None:  # the photo's own segmentation, moved like the photo: sharp and person-true
            mask = mask + MASK_GAIN * (2 * warped_photo[:, 3:] - 1)
        frame = torch.cat([rgb, mask], 1)
        if extras:
            return frame, {"warped": warped_image, "flow": flow, "occlusion": occlusion, "keep": keep, "attention": attention}
        return frame

    def bind(self, images: torch.Tensor, conds: torch.Tensor, masks: torch.Tensor | None = None) -> "BoundOneShot":
        with torch.no_grad():
            sources = self.encode(images, conds, masks)
        return BoundOneShot(*self.quantisable(sources))

    def quantisable(self, sources: Sources, gain: float = 16.0) -> tuple["OneShotGenerator", Sources]:
        """The same function with its int8-sensitive inputs brought to one range: int8 shares
        one scale per tensor, and beside feature maps of a few units the prior flow (a few
        hundredths of a grid unit) and the photo's weaker feature channels lost most of their
        levels. The prior flow enters the flow network `gain` times larger and the photo's
        1/4-resolution channels all reach the strongest one's peak; the convolutions that read
        them take weights smaller by the same factors (both paths are linear in them)."""
        copy = copy_module(self)
        motion, fuse = copy.motion[0][0], copy.fuse_quarter[0][0]
        quarter = sources.features[2]
        with torch.no_grad():
            scale = equalising_scale(quarter)
            flow_channels = slice(motion.in_channels - 3, motion.in_channels - 1)
            motion.weight[:, flow_channels] /= gain / self.prior_gain
            for conv in (motion, fuse):
                conv.weight[:, :len(scale)] /= scale[None, :, None, None]
        copy.prior_gain = gain
        features = [*sources.features[:2], quarter * scale[None, :, None, None]]
        return copy, Sources(sources.images, features, sources.table, sources.pupils, sources.masks)


class BoundOneShot(nn.Module):
    """The generator with a photo set's sources folded in as constants, behind the engine
    interface of the person-specific generators: (cond (1, 18, S, S), prev (1, 6, S, S)) ->
    (1, 4, S, S) RGB and mask in [-1, 1], and optionally corr (1, 3K, S, S), the exact
    correspondence to the K photos (see prior_flow's `exact`). Only the window's newest frame
    is used; prev is not (a single-frame model)."""

    def __init__(self, generator: OneShotGenerator, sources: Sources) -> None:
        super().__init__()
        self.generator = generator
        self.register_buffer("images", sources.images.detach().clone())
        self.register_buffer("table", sources.table.detach().clone())
        self.register_buffer("pupils", sources.pupils.detach().clone())
        self.register_buffer("masks", None if sources.masks is None else sources.masks.detach().clone())
        for level, feats in enumerate(sources.features):
            self.register_buffer(f"features{level}", feats.detach().clone())

    def forward(self, cond: torch.Tensor, prev: torch.Tensor, corr: torch.Tensor | None = None) -> torch.Tensor:
        sources = Sources(self.images, [self.features0, self.features1, self.features2], self.table, self.pupils, self.masks)
        exact = None if corr is None else corr.unflatten(1, (self.images.shape[0], 3))
        out = self.generator(sources, cond[:, -COND_CHANNELS:], exact=exact)
        return torch.cat([out[:, :3], torch.tanh(out[:, 3:4] * 0.5) + prev[:, :1] * 0.0], 1)
