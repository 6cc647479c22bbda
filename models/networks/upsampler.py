"""The learned 2x upsampler (issue 18): the avatar's 256x256 frame -> 512x512 with detail
learned from the person's own full-resolution crops.

It is a separate stage after the generator, not part of it: the generator keeps feeding
back its 256 outputs, every existing avatar keeps working, and in the live pipeline the
upsampler runs on its own thread beside the generator. The network is bilinear 2x plus a
learned residual computed at half the input resolution (space-to-depth stem, a few 3x3
residual blocks, depth-to-space by 4), so its cost stays a fraction of the generator's.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .sequential import RGB_CHANNELS

SCALE = 2


@dataclass(frozen=True)
class UpsamplerConfig:
    """width: channels of the residual branch; blocks: its 3x3 residual blocks (at H/2)."""

    width: int = 48
    blocks: int = 2

    def __post_init__(self) -> None:
        if self.width < 1 or self.blocks < 0:
            raise ValueError("width must be >= 1 and blocks >= 0")


UPSAMPLER_PRESETS = {"lite": UpsamplerConfig(), "tiny": UpsamplerConfig(width=12, blocks=1)}


def upsampler_config(preset: str) -> UpsamplerConfig:
    if preset not in UPSAMPLER_PRESETS:
        raise ValueError(f"unknown upsampler preset {preset!r}; choose one of {', '.join(UPSAMPLER_PRESETS)}")
    return UPSAMPLER_PRESETS[preset]


class _Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class Upsampler(nn.Module):
    """(B, 3, H, W) in [-1, 1] -> (B, 3, 2H, 2W); H and W even. Starts as plain bilinear
    (the last convolution is zero-initialised), so an untrained one is harmless."""

    def __init__(self, config: UpsamplerConfig = UpsamplerConfig()) -> None:
        super().__init__()
        self.config = config
        unshuffled = RGB_CHANNELS * 4
        self.stem = nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(unshuffled, config.width, 3, padding=1), nn.ReLU())
        self.body = nn.Sequential(*(_Block(config.width) for _ in range(config.blocks)))
        tail = nn.Conv2d(config.width, RGB_CHANNELS * (2 * SCALE) ** 2, 3, padding=1)
        nn.init.zeros_(tail.weight)
        nn.init.zeros_(tail.bias)
        self.head = nn.Sequential(tail, nn.PixelShuffle(2 * SCALE))

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(frame, scale_factor=SCALE, mode="bilinear", align_corners=False)
        return base + self.head(self.body(self.stem(frame)))
