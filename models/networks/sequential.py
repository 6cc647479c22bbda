"""The Head2Head++ sequential generator (DESIGN 5) with its named presets.

Used by the live path, by export and by training; imports nothing from the losses or the
trainer so that the live path can import the generator alone.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn

RGB_CHANNELS = 3
FLOW_CHANNELS = 2


@dataclass(frozen=True)
class GeneratorConfig:
    """Shape of the sequential generator; see GENERATOR_PRESETS for the named ones.

    Feature level i (0 = the stem output) has min(ngf * 2**i, max_channels) channels and
    1/(stem_factor * 2**i) of the input resolution; the trunk runs at level n_down.
    stem "conv7": reflect-padded 7x7 conv at full resolution; "unshuffle": space-to-depth by
    unshuffle_factor then a 1x1 conv. skips: add each encoder level to the decoder level of
    the same size.
    """

    ngf: int = 64
    n_down: int = 3
    max_channels: int = 512
    n_blocks_encoder: int = 5
    n_blocks_decoder: int = 4
    stem: Literal["conv7", "unshuffle"] = "conv7"
    unshuffle_factor: int = 4
    upsample: Literal["transpose", "pixelshuffle"] = "transpose"
    up_kernel: int = 3
    head_kernel: int = 7
    norm: Literal["instance", "none", "modulated"] = "instance"
    padding: Literal["reflect", "zeros"] = "reflect"
    depthwise: bool = False
    expansion: int = 2
    skips: bool = False
    # At a sequence start the previous outputs are all zeros; a normalised encoder then divides
    # rounding noise by its own tiny spread (a 1e-6 change moved the `paper` output by 1.8, and
    # PyTorch and ONNX Runtime disagreed as much). Gating the branch to exactly zero while the
    # previous frames are empty makes that step well defined.
    gate_empty_prev: bool = False
    window: int = 3
    prev: int = 2
    cond_channels: int = 6
    # a fourth output channel: the foreground mask (Head2HeadFS), tanh like the RGB ones
    mask: bool = False

    def __post_init__(self) -> None:
        if self.stem not in ("conv7", "unshuffle"):
            raise ValueError(f"stem must be 'conv7' or 'unshuffle', got {self.stem!r}")
        if self.upsample not in ("transpose", "pixelshuffle"):
            raise ValueError(
                f"upsample must be 'transpose' or 'pixelshuffle', got {self.upsample!r}"
            )
        if self.norm not in ("instance", "none", "modulated"):
            raise ValueError(f"norm must be 'instance', 'none' or 'modulated', got {self.norm!r}")
        if self.padding not in ("reflect", "zeros"):
            raise ValueError(f"padding must be 'reflect' or 'zeros', got {self.padding!r}")
        if self.ngf < 1 or self.n_down < 0 or self.window < 1 or self.prev < 0:
            raise ValueError("ngf and window must be >= 1, n_down and prev >= 0")
        if self.up_kernel % 2 == 0 or self.head_kernel % 2 == 0:
            raise ValueError("up_kernel and head_kernel must be odd")

    @property
    def in_cond(self) -> int:
        return self.window * self.cond_channels

    @property
    def in_prev(self) -> int:
        return self.prev * RGB_CHANNELS

    @property
    def out_channels(self) -> int:
        return RGB_CHANNELS + int(self.mask)

    @property
    def stem_factor(self) -> int:
        return self.unshuffle_factor if self.stem == "unshuffle" else 1

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return self.stem_factor * 2**self.n_down

    def channels(self, level: int) -> int:
        return min(self.ngf * 2**level, self.max_channels)


GENERATOR_PRESETS: dict[str, GeneratorConfig] = {
    # Head2Head++ as published: two conv7 encoders to 512 ch at 32x32, 5+4 residual blocks,
    # transposed-conv decoder (~1.3 s per 256x256 step on a 2-core CPU).
    "paper": GeneratorConfig(gate_empty_prev=True),
    # Real time on a 2-core CPU (~2.3 M params, ~24 ms per 256x256 step in ONNX Runtime with
    # 2 threads): space-to-depth by 4 to 64x64, one stride-2 conv to a 128-ch 32x32 trunk,
    # PixelShuffle back up with an additive skip from the 64x64 level. InstanceNorm is left
    # out: it cost ~25% of the step in ONNX Runtime.
    "lite": GeneratorConfig(
        ngf=64,
        n_down=1,
        max_channels=128,
        n_blocks_encoder=1,
        n_blocks_decoder=5,
        stem="unshuffle",
        unshuffle_factor=4,
        upsample="pixelshuffle",
        up_kernel=1,
        head_kernel=3,
        norm="none",
        padding="zeros",
        skips=True,
    ),
}
# Tests and smoke runs: the lite layout at a fraction of its width and depth.
GENERATOR_PRESETS["tiny"] = replace(
    GENERATOR_PRESETS["lite"], ngf=16, max_channels=32, n_blocks_encoder=0, n_blocks_decoder=1
)


def generator_config(name: str, **overrides: object) -> GeneratorConfig:
    """A named preset, optionally with some fields replaced."""
    try:
        config = GENERATOR_PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown generator preset {name!r}; choose one of {sorted(GENERATOR_PRESETS)}"
        ) from None
    return replace(config, **overrides) if overrides else config


class Modulation(nn.Module):
    """Per-channel scale and shift set from outside for each forward (AdaIN's affine part,
    Head2HeadFS eq. 6, without the normalisation statistics: see FewShotGenerator).

    `params` is (B, 2C): x * (1 + gamma) + beta; None leaves x unchanged."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.params: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.params is None:
            return x
        gamma, beta = self.params[:, :, None, None].to(x.dtype).chunk(2, dim=1)
        return x * (1 + gamma) + beta


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(channels)
    return Modulation(channels) if kind == "modulated" else nn.Identity()


def _conv(in_ch: int, out_ch: int, kernel: int, padding_mode: str, groups: int = 1) -> nn.Module:
    """A size-preserving convolution with reflect or zero padding."""
    pad = kernel // 2
    if padding_mode == "reflect" and pad > 0:
        return nn.Sequential(
            nn.ReflectionPad2d(pad), nn.Conv2d(in_ch, out_ch, kernel, groups=groups)
        )
    return nn.Conv2d(in_ch, out_ch, kernel, padding=pad, groups=groups)


class ResidualBlock(nn.Module):
    """Two 3x3 convs (or an inverted depthwise-separable block) added to the input."""

    def __init__(self, channels: int, config: GeneratorConfig) -> None:
        super().__init__()
        pad, norm = config.padding, config.norm
        if config.depthwise:
            hidden = channels * config.expansion
            self.body = nn.Sequential(
                nn.Conv2d(channels, hidden, 1),
                _norm(norm, hidden),
                nn.ReLU(inplace=True),
                _conv(hidden, hidden, 3, pad, groups=hidden),
                _norm(norm, hidden),
                nn.ReLU(inplace=True),
                nn.Conv2d(hidden, channels, 1),
                _norm(norm, channels),
            )
        else:
            self.body = nn.Sequential(
                _conv(channels, channels, 3, pad),
                _norm(norm, channels),
                nn.ReLU(inplace=True),
                _conv(channels, channels, 3, pad),
                _norm(norm, channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Encoder(nn.Module):
    """Stem, n_down stride-2 convs and residual blocks; returns the features of every level."""

    def __init__(self, in_channels: int, config: GeneratorConfig) -> None:
        super().__init__()
        c0 = config.channels(0)
        if config.stem == "unshuffle":
            f = config.unshuffle_factor
            # Same map as PixelUnshuffle(f) + 1x1 conv, without the 6-D transpose in ONNX.
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, c0, f, stride=f),
                _norm(config.norm, c0),
                nn.ReLU(inplace=True),
            )
        else:
            self.stem = nn.Sequential(
                _conv(in_channels, c0, 7, config.padding),
                _norm(config.norm, c0),
                nn.ReLU(inplace=True),
            )
        self.downs = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(config.channels(i), config.channels(i + 1), 3, 2, padding=1),
                _norm(config.norm, config.channels(i + 1)),
                nn.ReLU(inplace=True),
            )
            for i in range(config.n_down)
        )
        deepest = config.channels(config.n_down)
        self.blocks = nn.Sequential(
            *(ResidualBlock(deepest, config) for _ in range(config.n_blocks_encoder))
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = [self.stem(x)]
        for down in self.downs:
            features.append(down(features[-1]))
        features[-1] = self.blocks(features[-1])
        return features


class SequentialGenerator(nn.Module):
    """Head2Head++ generator: frame t from conditioning t-2..t and the two previous outputs.

    forward(cond, prev): cond (B, window*cond_channels, H, W) in [-1, 1], the conditioning
    frames oldest first (NMFC 3 + eyes 3 each); prev (B, prev*3, H, W) in [-1, 1], the
    previous generated frames oldest first, zeros at the start of a sequence. Returns
    (B, 3, H, W) in [-1, 1], or (B, 4, H, W) with config.mask (RGB, then the foreground
    mask in [-1, 1]). H and W must be multiples of config.size_multiple.
    """

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or generator_config("paper")
        self.cond_encoder = Encoder(config.in_cond, config)
        self.prev_encoder = Encoder(config.in_prev, config) if config.prev > 0 else None
        deepest = config.channels(config.n_down)
        self.trunk = nn.Sequential(
            *(ResidualBlock(deepest, config) for _ in range(config.n_blocks_decoder))
        )
        self.ups = nn.ModuleList(
            self._up(config.channels(i + 1), config.channels(i), config)
            for i in reversed(range(config.n_down))
        )
        c0 = config.channels(0)
        if config.stem == "unshuffle":
            f = config.unshuffle_factor
            self.head = nn.Sequential(
                _conv(c0, config.out_channels * f * f, config.head_kernel, config.padding),
                nn.PixelShuffle(f),
                nn.Tanh(),
            )
        else:
            self.head = nn.Sequential(
                _conv(c0, config.out_channels, config.head_kernel, config.padding), nn.Tanh()
            )

    @staticmethod
    def _up(in_ch: int, out_ch: int, config: GeneratorConfig) -> nn.Module:
        if config.upsample == "transpose":
            conv: nn.Module = nn.ConvTranspose2d(
                in_ch, out_ch, 3, stride=2, padding=1, output_padding=1
            )
        else:
            conv = nn.Sequential(
                _conv(in_ch, out_ch * 4, config.up_kernel, config.padding), nn.PixelShuffle(2)
            )
        return nn.Sequential(conv, _norm(config.norm, out_ch), nn.ReLU(inplace=True))

    def forward(self, cond: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        self._check_inputs(cond, prev)
        features = self.cond_encoder(cond)
        if self.prev_encoder is not None:
            previous = self.prev_encoder(prev)
            if self.config.gate_empty_prev:
                present = (prev.abs().amax(dim=(1, 2, 3), keepdim=True) > 0).to(prev.dtype)
                previous = [p * present for p in previous]
            features = [a + b for a, b in zip(features, previous)]
        x = self.trunk(features[-1])
        for level, up in zip(reversed(range(self.config.n_down)), self.ups):
            x = up(x)
            if self.config.skips:
                x = x + features[level]
        return self.head(x)

    def _check_inputs(self, cond: torch.Tensor, prev: torch.Tensor) -> None:
        c = self.config
        b, channels, h, w = cond.shape
        if channels != c.in_cond:
            raise ValueError(f"cond has {channels} channels, expected {c.in_cond}")
        if tuple(prev.shape) != (b, c.in_prev, h, w):
            raise ValueError(f"prev must be {(b, c.in_prev, h, w)}, got {tuple(prev.shape)}")
        if h % c.size_multiple or w % c.size_multiple:
            raise ValueError(
                f"height and width must be multiples of {c.size_multiple}, got {h}x{w}"
            )

    def example_inputs(
        self, height: int = 256, width: int = 256, batch: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero inputs of the right shapes, for tracing, export and benchmarks."""
        c = self.config
        return (
            torch.zeros(batch, c.in_cond, height, width),
            torch.zeros(batch, c.in_prev, height, width),
        )


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def split_output(output: torch.Tensor, dim: int = 1) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Generator outputs with 3 or 4 channels on `dim` -> RGB in [-1, 1] and the foreground
    mask in [0, 1] (None without a mask channel)."""
    rgb = output.narrow(dim, 0, RGB_CHANNELS)
    if output.shape[dim] == RGB_CHANNELS:
        return rgb, None
    return rgb, (output.narrow(dim, RGB_CHANNELS, 1) + 1) * 0.5
