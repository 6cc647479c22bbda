"""The discriminators of the video rendering stage (DESIGN 5): image, mouth and dynamics,
and the helpers that build their inputs. Training-only."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .sequential import FLOW_CHANNELS, RGB_CHANNELS


class PatchDiscriminator(nn.Module):
    """pix2pixHD PatchGAN: returns the output of every block, the last one the patch logits."""

    def __init__(
        self, in_channels: int, ndf: int = 64, n_layers: int = 3, max_channels: int = 512
    ) -> None:
        super().__init__()
        k, p = 4, 2
        blocks: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(in_channels, ndf, k, 2, p), nn.LeakyReLU(0.2, inplace=True))
        ]
        nf = ndf
        for n in range(1, n_layers + 1):
            nf_prev, nf = nf, min(nf * 2, max_channels)
            stride = 2 if n < n_layers else 1
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(nf_prev, nf, k, stride, p),
                    nn.InstanceNorm2d(nf),
                    nn.LeakyReLU(0.2, inplace=True),
                )
            )
        blocks.append(nn.Conv2d(nf, 1, k, 1, p))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


class MultiscalePatchDiscriminator(nn.Module):
    """PatchGANs applied to the input at `scales` resolutions (full first, then halved).

    Returns one list per scale of the block outputs (for feature matching); the last element
    of each list is that scale's patch prediction.
    """

    def __init__(
        self, in_channels: int, scales: int = 2, n_layers: int = 3, ndf: int = 64
    ) -> None:
        super().__init__()
        if scales < 1:
            raise ValueError("scales must be >= 1")
        self.in_channels = in_channels
        self.discriminators = nn.ModuleList(
            PatchDiscriminator(in_channels, ndf, n_layers) for _ in range(scales)
        )

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got {x.shape[1]}")
        outputs = []
        for i, d in enumerate(self.discriminators):
            if i > 0:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outputs.append(d(x))
        return outputs


class ProjectionDiscriminator(MultiscalePatchDiscriminator):
    """D_I of Head2HeadFS (eq. 7): each scale's patch logits plus a realism score for person i,
    r = d . (w_i + w0), d a linear map of the last hidden features pooled over the image.

    W (rows, identity_dim) holds one learnable row per training identity; a fine-tuned avatar
    has one row, started from its identity vector (`reset_rows`)."""

    def __init__(
        self, in_channels: int, rows: int, identity_dim: int, scales: int = 2, n_layers: int = 3, ndf: int = 64
    ) -> None:
        super().__init__(in_channels, scales, n_layers, ndf)
        hidden = self.discriminators[0].blocks[-1].in_channels
        self.readouts = nn.ModuleList(nn.Linear(hidden, identity_dim) for _ in range(scales))
        self.rows = nn.Parameter(torch.randn(rows, identity_dim) * 0.02)
        self.row0 = nn.Parameter(torch.zeros(identity_dim))

    def forward(self, x: torch.Tensor, identity: torch.Tensor | None = None) -> list[list[torch.Tensor]]:
        """identity: (B,) row indices (default row 0 for all)."""
        outputs = super().forward(x)
        if identity is None:
            identity = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        w = self.rows[identity] + self.row0
        for out, readout in zip(outputs, self.readouts):
            d = readout(out[-2].mean(dim=(2, 3)))
            out[-1] = out[-1] + (d * w).sum(1)[:, None, None, None]
        return outputs

    @torch.no_grad()
    def reset_rows(self, rows: torch.Tensor) -> None:
        """Replace W by `rows` (N, identity_dim): the identities to be trained from here."""
        self.rows = nn.Parameter(rows.detach().clone().to(self.row0))


def image_discriminator(
    cond_channels: int = 6, scales: int = 2, n_layers: int = 3, ndf: int = 64, rows: int = 0, identity_dim: int = 0
) -> MultiscalePatchDiscriminator:
    """D_I: the current frame's conditioning concatenated with an RGB frame (9 ch); with `rows`
    people, the projection D_I of Head2HeadFS (ProjectionDiscriminator)."""
    if rows:
        return ProjectionDiscriminator(cond_channels + RGB_CHANNELS, rows, identity_dim, scales, n_layers, ndf)
    return MultiscalePatchDiscriminator(cond_channels + RGB_CHANNELS, scales, n_layers, ndf)


def mouth_discriminator(
    cond_channels: int = 6, scales: int = 2, n_layers: int = 3, ndf: int = 64
) -> MultiscalePatchDiscriminator:
    """D_M: like D_I, applied to mouth crops made with crop_mouths."""
    return MultiscalePatchDiscriminator(cond_channels + RGB_CHANNELS, scales, n_layers, ndf)


def crop_mouths(images: torch.Tensor, centres: torch.Tensor, size: int = 72) -> torch.Tensor:
    """Square crops (B, C, size, size) around per-image pixel centres (B, 2) given as (x, y).

    Centres are rounded, and crops that would leave the image are moved inside it. The crop
    is plain slicing, so gradients flow to `images`.
    """
    b, _, h, w = images.shape
    if h < size or w < size:
        raise ValueError(f"images of {h}x{w} are smaller than the {size}x{size} mouth crop")
    if centres.shape != (b, 2):
        raise ValueError(f"centres must be (B, 2) = ({b}, 2), got {tuple(centres.shape)}")
    corners = torch.round(centres.detach().to(torch.float64) - size / 2).long().cpu()
    x0 = corners[:, 0].clamp(0, w - size).tolist()
    y0 = corners[:, 1].clamp(0, h - size).tolist()
    return torch.stack(
        [images[i, :, y : y + size, x : x + size] for i, (x, y) in enumerate(zip(x0, y0))]
    )


def temporal_windows(
    frames: torch.Tensor,
    flows: torch.Tensor,
    skip: int,
    k: int = 3,
    starts: Sequence[int] | None = None,
) -> torch.Tensor:
    """Dynamics-discriminator inputs: k frames `skip` apart plus the real flow between them.

    frames: (B, T, C, H, W). flows: (B, T, 2, H, W), the real video's flow at this skip:
    flows[:, t] maps frame t back to frame t - skip, I_t(x) ~ I_{t-skip}(x + flow_t(x)),
    in pixels, channels (dx, dy); entries with t < skip are unused (compose per-frame flows
    with losses.compose_flows). Each window starting at s is
    [frame s, frame s+skip, ..., frame s+(k-1)*skip, flow s+skip, ..., flow s+(k-1)*skip]
    on channels: k*C + 2*(k-1) channels. `starts` defaults to every start that fits.
    Returns (B * len(starts), k*C + 2*(k-1), H, W), batch-major.
    """
    if frames.dim() != 5 or flows.dim() != 5:
        raise ValueError("frames and flows must be (B, T, C, H, W)")
    b, t, _, h, w = frames.shape
    if flows.shape[:2] != (b, t) or flows.shape[2] != FLOW_CHANNELS or flows.shape[3:] != (h, w):
        raise ValueError(
            f"flows must be (B, T, 2, H, W) = ({b}, {t}, 2, {h}, {w}), got {tuple(flows.shape)}"
        )
    span = (k - 1) * skip
    if starts is None:
        starts = range(t - span)
    starts = list(starts)
    if not starts:
        raise ValueError(
            f"a window of {k} frames at skip {skip} needs >= {span + 1} frames, got {t}"
        )
    if min(starts) < 0 or max(starts) + span >= t:
        raise ValueError(f"window starts {starts} do not fit in {t} frames at skip {skip}")
    windows = []
    for s in starts:
        idx = [s + j * skip for j in range(k)]
        clip = frames[:, idx].flatten(1, 2)
        flow = flows[:, idx[1:]].flatten(1, 2)
        windows.append(torch.cat([clip, flow], dim=1))
    return torch.stack(windows, dim=1).flatten(0, 1)


class DynamicsDiscriminator(nn.Module):
    """D_D: one multi-scale PatchGAN per temporal scale (frame skips 1, 3, 9 by default)."""

    def __init__(
        self,
        k: int = 3,
        skips: Sequence[int] = (1, 3, 9),
        frame_channels: int = RGB_CHANNELS,
        scales: int = 2,
        n_layers: int = 3,
        ndf: int = 64,
    ) -> None:
        super().__init__()
        self.k = k
        self.skips = tuple(skips)
        self.in_channels = k * frame_channels + FLOW_CHANNELS * (k - 1)
        self.discriminators = nn.ModuleList(
            MultiscalePatchDiscriminator(self.in_channels, scales, n_layers, ndf)
            for _ in self.skips
        )

    def frames_needed(self, skip: int) -> int:
        return (self.k - 1) * skip + 1

    def forward(
        self,
        frames: torch.Tensor,
        flows: Sequence[torch.Tensor],
        starts: Sequence[Sequence[int] | None] | None = None,
    ) -> dict[int, list[list[torch.Tensor]]]:
        """Outputs per skip for every temporal scale whose window fits in the sequence.

        flows[i] holds the real flow at skips[i] (see temporal_windows); starts[i], if
        given, picks the window starts for that scale.
        """
        if len(flows) != len(self.skips):
            raise ValueError(f"need one flow tensor per skip {self.skips}, got {len(flows)}")
        outputs: dict[int, list[list[torch.Tensor]]] = {}
        for i, (skip, d) in enumerate(zip(self.skips, self.discriminators)):
            if frames.shape[1] < self.frames_needed(skip):
                continue
            chosen = starts[i] if starts is not None else None
            outputs[skip] = d(temporal_windows(frames, flows[i], skip, self.k, chosen))
        return outputs
