"""DenseFaceReg (Head2Head++ 3.1): one small CNN from a face crop to the dense face, the 478
MediaPipe-topology points (468 mesh vertices and 10 iris points) in crop coordinates, x and y
in [-1, 1] across the crop and z on the same scale. Depthwise-separable stages down to 4x4,
then one linear layer that predicts the offsets from a mean shape kept with the weights."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..geometry.face_crop import EYE_POINTS, MOUTH_POINTS, flip_affine

NUM_POINTS = 478


@dataclass(frozen=True)
class FaceRegConfig:
    """size: input crop height (divisible by 2 per stage and the stem); aspect: its width over its
    height; width: stem channels; blocks: blocks per stage (each stage halves the resolution and
    doubles the channels, up to max_channels); points: how many it predicts; part: "face"
    (the whole face crop, 478 points), "eye" (an eye crop, its contour and iris) or "mouth" (a
    mouth crop, the lips and the skin around them)."""

    size: int = 128
    width: int = 24
    blocks: tuple[int, ...] = (1, 2, 3, 2)
    max_channels: int = 192
    squeeze: int = 32
    aspect: int = 1
    points: int = NUM_POINTS
    part: str = "face"


FACEREG_PRESETS = {
    "small": FaceRegConfig(),
    "tiny": FaceRegConfig(size=64, width=8, blocks=(1, 1), max_channels=16, squeeze=8),
    "eye": FaceRegConfig(size=32, width=16, blocks=(1, 2, 2), max_channels=128, squeeze=32, aspect=2, points=EYE_POINTS, part="eye"),
    "tiny-eye": FaceRegConfig(size=32, width=8, blocks=(1, 1), max_channels=16, squeeze=8, aspect=2, points=EYE_POINTS, part="eye"),
    "mouth": FaceRegConfig(size=96, width=16, blocks=(1, 2, 2, 1), max_channels=128, squeeze=32, points=MOUTH_POINTS, part="mouth"),
    "tiny-mouth": FaceRegConfig(size=32, width=8, blocks=(1, 1), max_channels=16, squeeze=8, points=MOUTH_POINTS, part="mouth"),
}


def facereg_config(preset: str) -> FaceRegConfig:
    if preset not in FACEREG_PRESETS:
        raise ValueError(f"unknown DenseFaceReg preset {preset!r}; choose one of {sorted(FACEREG_PRESETS)}")
    return FACEREG_PRESETS[preset]


class SeparableBlock(nn.Module):
    """Depthwise 3x3 then pointwise 1x1, each with batch norm and ReLU; residual at stride 1."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.residual = stride == 1 and cin == cout
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return self.act(x + y if self.residual else y)


class DenseFaceReg(nn.Module):
    """(B, 3, S, aspect * S) in [-1, 1] -> (B, points, 3) crop-normalised points."""

    def __init__(self, config: FaceRegConfig = FaceRegConfig()) -> None:
        super().__init__()
        self.config = config
        c = config.width
        layers: list[nn.Module] = [nn.Conv2d(3, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        for count in config.blocks:
            out = min(2 * c, config.max_channels)
            layers.append(SeparableBlock(c, out, 2))
            layers += [SeparableBlock(out, out, 1) for _ in range(count - 1)]
            c = out
        layers += [nn.Conv2d(c, config.squeeze, 1), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        side = config.size // 2 ** (1 + len(config.blocks))
        self.head = nn.Linear(config.squeeze * side * side * config.aspect, config.points * 3)
        with torch.no_grad():
            self.head.weight.mul_(0.01)  # start at the mean shape
            self.head.bias.zero_()
        self.register_buffer("mean_shape", torch.zeros(config.points, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offsets = self.head(self.features(x).flatten(1)).view(-1, self.config.points, 3)
        return self.mean_shape + offsets


class MirrorAveraged(nn.Module):
    """A network trained on mirrored crops too, answering with the mean of its answers on the
    crop and on the crop reversed left to right (both in one batch): `order[k]` is where point k's
    mirror image sits in its answer. Averaging the two halves the network's noise and its
    left-right bias on faces it never saw (docs/RESULTS.md). Same input and output as the network."""

    def __init__(self, net: DenseFaceReg, order: np.ndarray) -> None:
        super().__init__()
        if sorted(np.asarray(order).tolist()) != list(range(net.config.points)):
            raise ValueError("a mirror order must list each of the network's points once")
        self.net, self.config = net, net.config
        scale, offset = flip_affine(net.config.size * net.config.aspect)
        self.register_buffer("order", torch.as_tensor(np.asarray(order), dtype=torch.long))
        self.register_buffer("scale", torch.from_numpy(scale))
        self.register_buffer("offset", torch.from_numpy(offset))
        self.train(net.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plain, mirrored = self.net(torch.cat([x, x.flip(-1)])).chunk(2)
        return (plain + mirrored[:, self.order] * self.scale + self.offset) / 2
