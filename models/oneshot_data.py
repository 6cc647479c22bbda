"""Self-reenactment pairs for the one-shot generator: two frames of one person, the first the
source (image and conditioning), the second the driver (conditioning) and the target (image
and foreground mask). Both sides share one random affine (zoom and shift), a mirror flip and
a colour change, so four people look like more; the affine is shared because the clips'
crops are fixed, like a photo's frame: between source and target only the head moves, and the
network learns to keep the background where the photo has it.
Sampling is a pure function of a numpy Generator."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .avatar import Avatar
from .dataset import AvatarFrames, to_tensor, unit_masks
from .geometry.face_model import load_face_model


@dataclass(frozen=True)
class PairAugment:
    scale: float = 0.08
    shift: float = 12.0
    flip: float = 0.5
    gain: float = 0.15  # per-channel colour gain spread
    eye_jitter: float = 0.5
    grey: float = 0.1  # share of pairs shown in greyscale (both sides), so grey photos stay grey

    @classmethod
    def off(cls) -> "PairAugment":
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@dataclass
class PairBatch:
    source: torch.Tensor  # (B * K, 3, S, S) in [-1, 1], K sources per driver, driver by driver
    source_cond: torch.Tensor  # (B * K, 6, S, S)
    source_mask: torch.Tensor  # (B * K, 1, S, S) in [0, 1]
    driver_cond: torch.Tensor  # (B, 6, S, S)
    target: torch.Tensor  # (B, 3, S, S)
    mask: torch.Tensor  # (B, 1, S, S) in [0, 1]
    mouth: torch.Tensor  # (B, 2) the target's mouth centre, pixels


def greyscale(image: np.ndarray) -> np.ndarray:
    """An RGB uint8 image with its colour removed (luma in all three channels)."""
    return np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None], 3, -1)


def random_affine(rng: np.random.Generator, size: int, scale: float, shift: float) -> np.ndarray:
    """A 2x3 zoom about the centre by 1 +- scale and a shift of +- shift pixels."""
    s = 1.0 + rng.uniform(-scale, scale)
    dx, dy = rng.uniform(-shift, shift, size=2)
    return np.array([[s, 0, (1 - s) * size / 2 + dx], [0, s, (1 - s) * size / 2 + dy]], np.float32)


def mirror_nmfc(nmfc: np.ndarray) -> np.ndarray:
    """A horizontally flipped NMFC whose colours still mean mean-face coordinates (x -> 1 - x)."""
    out = nmfc[:, ::-1].copy()
    face = out.any(-1)
    out[..., 0][face] = 255 - out[..., 0][face]
    return out


class PairSamples:
    """The train splits of several prepared avatars, held in memory."""

    def __init__(self, avatars: list[Avatar], progress: bool = True) -> None:
        model = load_face_model()
        self.people = [AvatarFrames(avatar, model, "train", progress) for avatar in avatars]
        self.names = [a.name for a in avatars]
        self.size = self.people[0].size

    def frames(self) -> int:
        return sum(len(p) for p in self.people)

    def side(self, frames: AvatarFrames, pos: int, rng: np.random.Generator, augment: PairAugment, flip: bool,
             matrix: np.ndarray):
        """(image, mask, NMFC + eyes, mouth centre) of one frame, warped by the pair's affine."""
        s = self.size
        warp = lambda img, interp, border: cv2.warpAffine(img, matrix, (s, s), flags=interp, borderMode=border)
        nmfc, eyes = frames.nmfc[pos], frames.eyes(pos, rng, augment.eye_jitter)
        image, mask, mouth = frames.frames[pos], frames.masks[pos], frames.mouth[pos].copy()
        if flip:
            nmfc, eyes, image, mask = mirror_nmfc(nmfc), eyes[:, ::-1], image[:, ::-1], mask[:, ::-1]
            mouth[0] = s - 1 - mouth[0]
        cond = np.concatenate([warp(np.ascontiguousarray(nmfc), cv2.INTER_NEAREST, cv2.BORDER_CONSTANT),
                               warp(np.ascontiguousarray(eyes), cv2.INTER_NEAREST, cv2.BORDER_CONSTANT)], -1)
        return (warp(np.ascontiguousarray(image), cv2.INTER_LINEAR, cv2.BORDER_REPLICATE),
                warp(np.ascontiguousarray(mask), cv2.INTER_LINEAR, cv2.BORDER_REPLICATE), cond, matrix[:, :2] @ mouth + matrix[:, 2])

    def example(self, rng: np.random.Generator, augment: PairAugment, sources: int = 1):
        """K source frames and a target of one person, in PairBatch's order: source images
        (K, ...), their conditioning (K, ...) and masks (K, ...), the driver's conditioning, the
        target, its mask and mouth centre."""
        frames = self.people[int(rng.integers(len(self.people)))]
        picks = [int(i) for i in rng.integers(len(frames), size=sources + 1)]
        flip = bool(rng.random() < augment.flip)
        gain = (1.0 + rng.uniform(-augment.gain, augment.gain, size=3)).astype(np.float32)
        matrix = random_affine(rng, self.size, augment.scale, augment.shift)
        grey = bool(rng.random() < augment.grey)
        recolour = lambda img: greyscale(img) if grey else np.clip(img.astype(np.float32) * gain, 0, 255).astype(np.uint8)
        srcs = [self.side(frames, a, rng, augment, flip, matrix) for a in picks[:-1]]
        tgt, mask, drv_cond, mouth = self.side(frames, picks[-1], rng, augment, flip, matrix)
        return (np.stack([recolour(s[0]) for s in srcs]), np.stack([s[2] for s in srcs]), np.stack([s[1] for s in srcs]),
                drv_cond, recolour(tgt), mask, mouth)

    def batch(self, rng: np.random.Generator, count: int, augment: PairAugment, sources: int = 1) -> PairBatch:
        """`count` examples; their sources are flattened driver by driver (count * sources)."""
        items = [self.example(rng, augment, sources) for _ in range(count)]
        stack = lambda k: np.stack([it[k] for it in items])
        grouped = lambda k: np.concatenate([it[k] for it in items])
        return PairBatch(
            to_tensor(grouped(0)), to_tensor(grouped(1)), unit_masks(grouped(2)), to_tensor(stack(3)), to_tensor(stack(4)),
            unit_masks(stack(5)), torch.from_numpy(stack(6).astype(np.float32)),
        )
