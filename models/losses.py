"""Training losses of the video rendering stage (DESIGN 5): LSGAN, discriminator feature
matching, VGG19 perceptual loss and the flow-warp temporal loss.

Optical flow convention used throughout: flow[t] maps frame t back to frame t-1,
I_t(x) ~ I_{t-1}(x + flow_t(x)), in pixels, channels (dx, dy).
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

log = logging.getLogger(__name__)

VGG19_CHECKPOINT = "vgg19-dcbb9e9d.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's vgg19 `features` layout: conv widths, "M" = 2x2 max-pool.
_VGG19_LAYOUT: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
    512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)
# Index one past relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in `features`.
_VGG19_SLICE_ENDS = (2, 7, 12, 21, 30)
VGG_LAYER_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


@dataclass(frozen=True)
class LossWeights:
    """Generator loss weights (Head2Head++: lambda_vgg = lambda_feat = 10)."""

    gan: float = 1.0
    feature_matching: float = 10.0
    vgg: float = 10.0
    flow_warp: float = 10.0
    mouth: float = 1.0
    dynamics: float = 1.0


LOSS_PRESETS: dict[str, LossWeights] = {
    "paper": LossWeights(),
    "no_temporal": LossWeights(flow_warp=0.0, dynamics=0.0),
}


def _predictions(preds: Sequence[torch.Tensor | Sequence[torch.Tensor]]) -> list[torch.Tensor]:
    """The prediction of every scale: the tensor itself, or the last of its feature list."""
    if isinstance(preds, torch.Tensor):
        return [preds]
    return [p if isinstance(p, torch.Tensor) else p[-1] for p in preds]


ADVERSARIAL_MODES = ("lsgan", "hinge")


def gan_loss(
    preds: torch.Tensor | Sequence[torch.Tensor | Sequence[torch.Tensor]],
    target_is_real: bool,
    mode: str = "lsgan",
    generator: bool = False,
) -> torch.Tensor:
    """Adversarial loss averaged over discriminator scales (accepts a MultiscalePatchDiscriminator
    output). lsgan: squared distance of the predictions to 1 (real) or 0 (fake), for D and G
    alike. hinge (Head2HeadFS, after SAGAN): D minimises relu(1 - r) on real and relu(1 + r) on
    fake; G (`generator`, target real) minimises -r."""
    if mode not in ADVERSARIAL_MODES:
        raise ValueError(f"unknown adversarial mode {mode!r}; choose one of {ADVERSARIAL_MODES}")
    losses = []
    for p in _predictions(preds):
        if mode == "lsgan":
            losses.append(F.mse_loss(p, torch.full_like(p, 1.0 if target_is_real else 0.0)))
        elif generator:
            losses.append(-p.mean())
        else:
            losses.append(F.relu(1.0 - p).mean() if target_is_real else F.relu(1.0 + p).mean())
    return torch.stack(losses).mean()


def feature_matching_loss(
    fake: Sequence[Sequence[torch.Tensor]], real: Sequence[Sequence[torch.Tensor]]
) -> torch.Tensor:
    """L1 between D features of fake and real inputs (pix2pixHD weighting, unscaled).

    Per scale, the intermediate features (all but the last, the prediction) are compared
    with weight 4 / len(intermediates) each; scales are averaged. Real features are
    detached. The caller multiplies by LossWeights.feature_matching.
    """
    if len(fake) != len(real):
        raise ValueError(f"{len(fake)} fake scales but {len(real)} real scales")
    per_scale = []
    for fake_feats, real_feats in zip(fake, real):
        pairs = list(zip(fake_feats[:-1], real_feats[:-1]))
        if not pairs:
            raise ValueError("feature matching needs intermediate features, got only predictions")
        weight = 4.0 / len(pairs)
        per_scale.append(sum(weight * F.l1_loss(f, r.detach()) for f, r in pairs))
    return torch.stack(per_scale).mean()


class VGG19Features(nn.Module):
    """VGG19 convolutional part with torchvision's layer indices (state_dict keys
    `features.N.weight`), returning relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1.

    Input: images in [-1, 1]; they are mapped to ImageNet mean/std inside. Frozen.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for item in _VGG19_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_ch, int(item), 3, padding=1), nn.ReLU(inplace=True)]
                in_ch = int(item)
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = ((images + 1.0) / 2.0 - self.mean) / self.std
        outputs = []
        start = 0
        for end in _VGG19_SLICE_ENDS:
            for layer in self.features[start:end]:
                x = layer(x)
            outputs.append(x)
            start = end
        return outputs


def _features_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep the `features.*` entries of a torchvision vgg19 (or vgg19.features) state_dict."""
    if any(k.startswith("features.") for k in state):
        return {k: v for k, v in state.items() if k.startswith("features.")}
    return {f"features.{k}": v for k, v in state.items()}


def laplacian_pyramid_l1(fake: torch.Tensor, real: torch.Tensor, levels: int = 4) -> torch.Tensor:
    """L1 between Laplacian pyramids (band-pass images at `levels` scales, coarsest residual
    last), each level weighted 2**-level: a multi-scale reconstruction term that favours edges
    and needs no pretrained weights (Bojanowski et al., "Optimizing the Latent Space of
    Generative Networks", 2018)."""
    kernel = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=fake.device, dtype=fake.dtype)
    kernel = (kernel[:, None] * kernel[None, :]) / 256.0
    weight = kernel.expand(fake.shape[1], 1, 5, 5)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), weight, groups=x.shape[1])

    def up(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)

    total, level = fake.new_zeros(()), 0
    a, b = fake, real
    while level < levels and min(a.shape[-2:]) >= 8:
        low_a, low_b = F.avg_pool2d(blur(a), 2), F.avg_pool2d(blur(b), 2)
        total = total + (2.0 ** -level) * F.l1_loss(a - up(low_a, a), b - up(low_b, b))
        a, b, level = low_a, low_b, level + 1
    return total + (2.0 ** -level) * F.l1_loss(a, b)


def load_vgg19(path: str | Path | None = None, allow_random: bool = False) -> VGG19Features | None:
    """VGG19 features from the torchvision checkpoint; never downloads.

    Looks at `path` if given (missing file: FileNotFoundError), else at
    torch.hub.get_dir()/checkpoints/vgg19-dcbb9e9d.pth. Without weights, returns random
    features if allow_random (tests), otherwise warns that the perceptual loss is off and
    returns None.
    """
    if path is not None:
        candidate = Path(path).expanduser()
        if not candidate.is_file():
            raise FileNotFoundError(f"VGG19 weights {candidate}: no such file")
    else:
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_CHECKPOINT
        if not candidate.is_file():
            if allow_random:
                return VGG19Features()
            message = (
                f"VGG19 weights not found (looked for {candidate}); the perceptual (VGG) loss is "
                f"off. To enable it, pass --vgg-weights PATH to torchvision's {VGG19_CHECKPOINT}."
            )
            log.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            return None
    state = torch.load(candidate, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{candidate}: expected a state_dict, got {type(state).__name__}")
    model = VGG19Features()
    try:
        model.load_state_dict(_features_state_dict(state), strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{candidate}: not a torchvision vgg19 checkpoint ({exc})") from None
    return model


class PerceptualLoss(nn.Module):
    """Weighted L1 between VGG19 features of generated and real images in [-1, 1]."""

    def __init__(
        self, vgg: VGG19Features, layer_weights: Sequence[float] = VGG_LAYER_WEIGHTS
    ) -> None:
        super().__init__()
        if len(layer_weights) != len(_VGG19_SLICE_ENDS):
            raise ValueError(
                f"need {len(_VGG19_SLICE_ENDS)} layer weights, got {len(layer_weights)}"
            )
        self.vgg = vgg
        self.layer_weights = tuple(layer_weights)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        fake_feats = self.vgg(fake)
        with torch.no_grad():
            real_feats = self.vgg(real)
        return sum(
            w * F.l1_loss(f, r) for w, f, r in zip(self.layer_weights, fake_feats, real_feats)
        )


def _sampling_grid(flow: torch.Tensor) -> torch.Tensor:
    """Normalised grid_sample coordinates (align_corners=True) of x + flow(x)."""
    _, _, h, w = flow.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=flow.dtype, device=flow.device),
        torch.arange(w, dtype=flow.dtype, device=flow.device),
        indexing="ij",
    )
    x = xs + flow[:, 0]
    y = ys + flow[:, 1]
    return torch.stack([2.0 * x / max(w - 1, 1) - 1.0, 2.0 * y / max(h - 1, 1) - 1.0], dim=-1)


def flow_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp: out(x) = image(x + flow(x)), bilinear, border-clamped.

    image (B, C, H, W); flow (B, 2, H, W) in pixels (dx, dy). With flow_t (frame t back to
    frame t-1), flow_warp(I_{t-1}, flow_t) ~ I_t.
    """
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow must be (B, 2, H, W), got {tuple(flow.shape)}")
    if image.shape[0] != flow.shape[0] or image.shape[2:] != flow.shape[2:]:
        raise ValueError(f"image {tuple(image.shape)} and flow {tuple(flow.shape)} differ in B/H/W")
    grid = _sampling_grid(flow.to(image.dtype))
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def flow_valid_mask(flow: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) 1 where x + flow(x) falls inside the image, else 0."""
    grid = _sampling_grid(flow)
    inside = (grid.abs() <= 1.0).all(dim=-1)
    return inside.unsqueeze(1).to(flow.dtype)


def compose_flows(flows: torch.Tensor, skip: int) -> torch.Tensor:
    """Flows at a frame skip from per-frame flows (B, T, 2, H, W).

    Returns (B, T, 2, H, W) whose entry t maps frame t back to frame t - skip (zeros for
    t < skip): F = f_t, then F += f_{t-j}(x + F(x)) for j = 1..skip-1.
    """
    if skip < 1:
        raise ValueError("skip must be >= 1")
    if skip == 1:
        return flows
    b, t, _, h, w = flows.shape
    out = torch.zeros_like(flows)
    if t <= skip:
        return out
    total = flows[:, skip:]
    for j in range(1, skip):
        earlier = flows[:, skip - j : t - j]
        total = total + flow_warp(earlier.flatten(0, 1), total.flatten(0, 1)).view_as(total)
    out[:, skip:] = total
    return out


def warp_loss(
    generated_t: torch.Tensor,
    generated_prev: torch.Tensor,
    flow: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """L1 between frame t and the previous generated frame warped by the real flow_t.

    mask (B, 1, H, W) in [0, 1] (e.g. flow_valid_mask, or an occlusion mask) weights the
    pixels; the loss is the masked mean of each image, averaged over the batch (so a batch
    split across processes gives the same loss). Gradients reach both frames; detach
    generated_prev in the caller to only pull frame t.
    """
    diff = (generated_t - flow_warp(generated_prev, flow)).abs()
    if mask is None:
        return diff.mean()
    mask = mask.expand_as(diff)
    return ((diff * mask).sum((1, 2, 3)) / mask.sum((1, 2, 3)).clamp_min(1.0)).mean()
