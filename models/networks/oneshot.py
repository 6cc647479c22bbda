"""The person-generic one-shot generator (Free-HeadGAN 3.3, after HeadGAN): a photo and its
conditioning are encoded once; each driver frame's conditioning (NMFC + eye sketch of the
driver's pose and expression on the photo's identity) predicts a dense flow, an occlusion map
and an attention logit per source; the warped source features and image, blended over the
sources by attention (paper eq. 5-6), feed a rendering decoder that fills what the warp
cannot (mouth interior, disocclusions) and a blend map that keeps the warped photo's detail.

The flow starts from the face model's own correspondence: an NMFC pixel's colour is the
mean-face coordinate of the surface point it shows, so each driver face pixel is matched to
the source pixels of the same colour (a softmax over colour distance, computed in the graph
from the conditioning alone); the flow network sees that prior and adds a residual (hair,
neck, background, what the mesh does not cover). Flows are in normalised grid units
(grid_sample's [-1, 1]), so one flow serves every scale.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

COND_CHANNELS = 6
IMAGE_CHANNELS = 3
OUT_CHANNELS = 4  # RGB and the foreground mask logit


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
    key_stride: int = 8  # source NMFC pixels sampled every key_stride pixels as correspondence keys
    query_stride: int = 4  # driver NMFC pixels matched: one per flow cell (1/4 resolution)
    temperature: float = 0.02  # colour distance^2 (NMFC in [-1, 1]) over which a match fades
    extend: int = 17  # window (flow cells) over which the face's flow is carried past its edge
    keep_bias: float = 3.0  # added to the blend logit: the output starts as the warped photo (95%)


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
class Sources:
    """What is computed once per photo: the images (K, 3, S, S), their feature pyramids and
    their correspondence keys: NMFC colours (K, N, 3), positions (K, N, 2) in grid units and a
    bias (K, N) that is 0 on the face and -1e4 off it."""

    images: torch.Tensor
    features: list[torch.Tensor]
    keys: torch.Tensor
    positions: torch.Tensor
    bias: torch.Tensor

    def face_keys_only(self) -> "Sources":
        """The same sources with the off-face keys dropped (padded to the longest source): the
        bound generator matches against a few hundred keys instead of every sampled pixel."""
        on_face = self.bias > -1.0
        count = max(int(on_face.sum(1).max()), 1)
        order = torch.argsort((~on_face).float(), dim=1, stable=True)[:, :count]
        pick = lambda t: torch.gather(t, 1, order[..., None].expand(-1, -1, t.shape[-1]))
        return Sources(self.images, self.features, pick(self.keys), pick(self.positions), torch.gather(self.bias, 1, order))


def masked_mean(x: torch.Tensor, mask: torch.Tensor, kernel: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean of x over the masked cells of each kernel x kernel window, and the masked share."""
    pool = lambda t: F.avg_pool2d(t, kernel, 1, kernel // 2, count_include_pad=False)
    share = pool(mask)
    return pool(x * mask) / share.clamp_min(1e-3), share


def extend_flow(flow: torch.Tensor, mask: torch.Tensor, kernel: int) -> torch.Tensor:
    """The face's flow (B, 2, h, w) smoothed across its triangles and carried past the face's edge
    (the mean of the nearby face flow, fading out over kernel / 2 cells), so hair, ears and neck
    start out moving with the head instead of tearing at the mesh border."""
    inside, _ = masked_mean(flow, mask, 3)
    outside, share = masked_mean(flow, mask, kernel)
    return mask * inside + (1 - mask) * outside * (share * 4).clamp(max=1.0)


def nmfc_samples(nmfc: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """NMFC colours (B, N, 3) at every stride-th pixel (nearest: flat colours stay exact), their
    positions (N, 2) in grid units, and whether each is on the face (B, N)."""
    start = stride // 2
    colours = nmfc[:, :, start::stride, start::stride]
    size = colours.shape[-1]
    line = (torch.arange(size, device=nmfc.device, dtype=nmfc.dtype) * stride + start + 0.5) * (2.0 / nmfc.shape[-1]) - 1.0
    ys, xs = torch.meshgrid(line, line, indexing="ij")
    on_face = (colours > -0.99).any(1).flatten(1)
    return colours.flatten(2).transpose(1, 2), torch.stack([xs, ys], -1).reshape(-1, 2), on_face


def identity_grid(size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(1, size, size, 2) grid_sample coordinates of the pixel centres (align_corners=False)."""
    line = (torch.arange(size, device=device, dtype=dtype) + 0.5) * (2.0 / size) - 1.0
    ys, xs = torch.meshgrid(line, line, indexing="ij")
    return torch.stack([xs, ys], -1)[None]


def warp(features: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp by a normalised flow (B, 2, h, w), resized to the features' resolution."""
    size = features.shape[-1]
    if flow.shape[-1] != size:
        flow = F.interpolate(flow, size=(size, size), mode="bilinear", align_corners=False)
    grid = identity_grid(size, flow.device, flow.dtype) + flow.permute(0, 2, 3, 1)
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="border", align_corners=False)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    return x if x.shape[-1] == size else F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


class OneShotGenerator(nn.Module):
    """encode(images (K, 3, S, S), conds (K, 6, S, S)) -> Sources, once per photo set;
    forward(sources, driver cond (B, 6, S, S)) -> (B, 4, S, S): RGB in [-1, 1], mask logit.
    A batch of B drivers shares the K sources; training passes K = B with `paired=True`."""

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

    def encode(self, images: torch.Tensor, conds: torch.Tensor) -> Sources:
        keys, positions, on_face = nmfc_samples(conds[:, :3], self.config.key_stride)
        bias = (on_face.to(keys.dtype) - 1.0) * 1e4
        return Sources(images, self.source(torch.cat([images, conds], 1)), keys, positions.expand(len(keys), -1, -1), bias)

    def prior_flow(self, sources: Sources, cond: torch.Tensor, paired: bool) -> torch.Tensor:
        """Per (driver, source) flow (B, K, 3, h, w): the mesh correspondence's flow on the
        driver's face pixels, carried past the face's edge (extend_flow), and the driver's face
        mask. NMFC colours are flat per triangle, so a colour names a triangle, not a point:
        the flow is the offset between where that colour lies in the source and where it lies
        in the driver (a per-triangle translation), not the source position itself."""
        c = self.config
        queries, _, on_face = nmfc_samples(cond[:, :3], c.query_stride)
        own_keys, own_positions, own_face = nmfc_samples(cond[:, :3], c.key_stride)
        keys, key_positions, bias = sources.keys, sources.positions, sources.bias
        if paired:
            keys, key_positions, bias = keys[:, None], key_positions[:, None], bias[:, None]
        else:
            keys, key_positions, bias = keys[None], key_positions[None], bias[None]
        q = queries[:, None]  # (B, 1, Q, 3)
        in_source = self.matched_positions(q, keys, key_positions, bias)  # (B, K, Q, 2)
        in_driver = self.matched_positions(q, own_keys[:, None], own_positions[None, None], (own_face.to(q.dtype)[:, None] - 1.0) * 1e4)
        face = on_face.to(cond.dtype)[:, None, :, None]
        size = cond.shape[-1] // c.query_stride
        grid = lambda t: t.transpose(-1, -2).unflatten(-1, (size, size))  # (B, K, Q, C) -> (B, K, C, h, w)
        flow, mask = grid(in_source - in_driver), grid(face.expand(-1, in_source.shape[1], -1, -1))
        return torch.cat([extend_flow(flow.flatten(0, 1), mask.flatten(0, 1), c.extend).unflatten(0, flow.shape[:2]), mask], 2)

    def matched_positions(self, queries: torch.Tensor, keys: torch.Tensor, positions: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Softmax-weighted positions of the keys whose colour matches each query's."""
        distance = (queries * queries).sum(-1, keepdim=True) - 2 * queries @ keys.transpose(-1, -2) + (keys * keys).sum(-1)[:, :, None]
        return torch.softmax(bias[:, :, None] - distance / self.config.temperature, dim=-1) @ positions

    def motion_fields(self, sources: Sources, drivers: list[torch.Tensor], cond: torch.Tensor, paired: bool):
        """Per (driver, source) flow (B, K, 2, h, w), occlusion (B, K, 1, h, w) in [0, 1]
        and attention (B, K, 1, h, w) summing to 1 over K, at 1/4 resolution."""
        src = sources.features[2]
        drv = drivers[2]
        prior = self.prior_flow(sources, cond, paired)
        b, k = drv.shape[0], prior.shape[1]
        if paired:
            pairs = torch.cat([src, drv, prior[:, 0]], 1)
        else:
            pairs = torch.cat([src[None].expand(b, -1, -1, -1, -1), drv[:, None].expand(-1, k, -1, -1, -1), prior], 2).flatten(0, 1)
        out = self.motion(pairs).unflatten(0, (b, k))
        flow = prior[:, :, :2] + torch.tanh(out[:, :, :2]) * self.config.flow_scale
        occlusion = torch.sigmoid(out[:, :, 2:3])
        attention = torch.softmax(out[:, :, 3:4], dim=1)
        return flow, occlusion, attention

    def blend_warped(self, features: torch.Tensor, flow, weight, paired: bool) -> torch.Tensor:
        """Sum over sources of weight * warp(features): (B, C, h, w)."""
        b, k = flow.shape[:2]
        feats = features[:, None] if paired else features[None].expand(b, -1, -1, -1, -1)
        warped = warp(feats.flatten(0, 1), flow.flatten(0, 1)).unflatten(0, (b, k))
        size = features.shape[-1]
        return (warped * resize(weight.flatten(0, 1), size).unflatten(0, (b, k))).sum(1)

    def forward(self, sources: Sources, cond: torch.Tensor, paired: bool = False, extras: bool = False):
        drivers = self.driver(cond)
        flow, occlusion, attention = self.motion_fields(sources, drivers, cond, paired)
        quarter = sources.features[2]
        warped_image = self.blend_warped(sources.images, flow, attention, paired)
        x = self.fuse_quarter(torch.cat([self.blend_warped(quarter, flow, occlusion * attention, paired), drivers[2]], 1))
        half = drivers[1].shape[-1]
        x = self.fuse_half(torch.cat([resize(x, half), resize(warped_image, half), drivers[1]], 1))
        x = self.fuse_full(torch.cat([resize(x, cond.shape[-1]), warped_image, drivers[0]], 1))
        out = self.head(x)
        keep = torch.sigmoid(out[:, 3:4] + self.config.keep_bias)
        rgb = keep * warped_image + (1 - keep) * torch.tanh(out[:, :3])
        frame = torch.cat([rgb, out[:, 4:5]], 1)
        if extras:
            return frame, {"warped": warped_image, "flow": flow, "occlusion": occlusion, "keep": keep, "attention": attention}
        return frame

    def bind(self, images: torch.Tensor, conds: torch.Tensor) -> "BoundOneShot":
        with torch.no_grad():
            sources = self.encode(images, conds).face_keys_only()
        return BoundOneShot(self, sources)


class BoundOneShot(nn.Module):
    """The generator with a photo set's sources folded in as constants, behind the engine
    interface of the person-specific generators: (cond (1, 18, S, S), prev (1, 6, S, S)) ->
    (1, 4, S, S) RGB and mask in [-1, 1]. Only the window's newest frame is used; prev is not
    (a single-frame model)."""

    def __init__(self, generator: OneShotGenerator, sources: Sources) -> None:
        super().__init__()
        self.generator = generator
        for name in ("images", "keys", "positions", "bias"):
            self.register_buffer(name, getattr(sources, name).detach().clone())
        for level, feats in enumerate(sources.features):
            self.register_buffer(f"features{level}", feats.detach().clone())

    def forward(self, cond: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        sources = Sources(self.images, [self.features0, self.features1, self.features2], self.keys, self.positions, self.bias)
        out = self.generator(sources, cond[:, -COND_CHANNELS:])
        return torch.cat([out[:, :3], torch.tanh(out[:, 3:4] * 0.5) + prev[:, :1] * 0.0], 1)
