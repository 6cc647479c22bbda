"""Training sequences from an avatar folder (Head2Head++ 3.4 / 4.1).

A sample is L consecutive valid frames with, for each, the conditioning window X[t-2:t]
(NMFC + eye sketch), the real frame, the real frames' optical flow and the mouth centre.
Sampling is a pure function of a numpy Generator, so a resumed run draws the same batches.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields

import cv2
import numpy as np
import torch
from tqdm import tqdm

from .avatar import Avatar, AvatarError
from .segmentation import ForegroundSegmenter
from .expression_features import face_features, feature_table, normalise
from .geometry.eyes import draw_eye_sketch, eyelid_opening, pupils_absolute, pupils_relative
from .geometry.face_model import FaceModel
from .geometry.retarget import tracked_mesh

log = logging.getLogger(__name__)
WINDOW = 3
RARITY_FEATURES = ("eye_right", "eye_left", "brow_right", "brow_left", "mouth_open", "mouth_width")
RARITY_NEIGHBOURS = 10
RARITY_BLOCK = 256  # rows of the distance matrix held at once (memory stays linear in the frames)
RARITY_CAP = 4.0  # weight cap (the average frame's squared rarity is about 1)


@dataclass(frozen=True)
class Augment:
    """Per-sequence random affine (same for conditioning and real frames) and eye jitter."""

    scale: float = 0.05
    shift: float = 6.0
    eye_jitter: float = 0.6  # pixels of Gaussian noise on eyelid and pupil points

    @classmethod
    def off(cls) -> "Augment":
        return cls(0.0, 0.0, 0.0)


@dataclass
class Batch:
    cond: torch.Tensor  # (B, L + WINDOW - 1, 6, H, W) in [-1, 1]
    real: torch.Tensor  # (B, L, 3, H, W) in [-1, 1]
    flow: torch.Tensor  # (B, L, 2, H, W) pixels, flow[t]: I_t(x) ~ I_{t-1}(x + flow[t](x))
    mouth: torch.Tensor  # (B, L, 2) pixels
    index: torch.Tensor  # (B, L) frame indices
    mask: torch.Tensor | None  # (B, L, 1, H, W) foreground in [0, 1]; None when not loaded
    identity: torch.Tensor  # (B,) which person (the row of a projection discriminator)
    references: torch.Tensor | None = None  # (B, M, 3, H, W) frames of each person for the identity embedder

    def to(self, device: torch.device, pin: bool = False) -> "Batch":
        """The batch on `device` (through pinned host memory when `pin`, so the copy overlaps)."""
        move = lambda t: None if t is None else (t.pin_memory() if pin else t).to(device, non_blocking=pin)
        return Batch(*(move(getattr(self, f.name)) for f in fields(self)))

    def window(self, t: int) -> torch.Tensor:
        """Conditioning X[t-2:t] of step t, frames stacked on channels: (B, 18, H, W)."""
        b, _, c, h, w = self.cond.shape
        return self.cond[:, t : t + WINDOW].reshape(b, WINDOW * c, h, w)


def model_mesh(avatar: Avatar, model: FaceModel, i: int) -> np.ndarray:
    """Frame i's model reconstruction (V, 3), as prepare rendered its conditioning."""
    return tracked_mesh(model, avatar.subject, avatar.tracks, i)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(images)).float().div_(127.5).sub_(1.0)
    return t.movedim(-1, -3)


def unit_masks(masks: np.ndarray) -> torch.Tensor:
    """uint8 masks (N, H, W), 255 = person -> float (N, 1, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(masks)).float().div_(255.0)[:, None]


def to_image(tensor: torch.Tensor) -> np.ndarray:
    """float (3, H, W) in [-1, 1] -> uint8 (H, W, 3)."""
    return ((tensor.detach().clamp(-1, 1) + 1) * 127.5).round().byte().movedim(0, -1).cpu().numpy()


class AvatarFrames:
    """A split of an avatar held in memory: frames, NMFC, eye geometry, flow, mouth centres."""

    def __init__(
        self, avatar: Avatar, model: FaceModel, split: str = "train", progress: bool = True, limit: int | None = None,
        masks: bool = True,
    ) -> None:
        """`limit`: keep only the first `limit` valid frames of the split (few-shot training);
        `masks`: load (or make) the foreground masks."""
        avatar.require_video("training")
        self.avatar, self.model = avatar, model
        self.indices = avatar.split_indices(split)[:limit]
        if len(self.indices) == 0:
            raise AvatarError(f"avatar '{avatar.name}' has no valid {split} frames; re-run h2h prepare on a longer video")
        tracks = avatar.tracks
        load = tqdm(self.indices, desc=f"loading {split} frames", unit="f", disable=not progress, leave=False)
        self.frames = np.stack([avatar.read_image("frame", i) for i in load])
        self.masks = self._masks() if masks else None
        self.nmfc = np.stack([avatar.read_image("nmfc", i) for i in self.indices])
        self.vertices = np.stack([self._mesh(i) for i in self.indices])
        self.pupils = np.stack(
            [
                pupils_absolute(v, pupils_relative(tracks["landmarks"][i], tracks["pupils"][i]))
                for v, i in zip(self.vertices, self.indices)
            ]
        )
        self.flow_small = avatar.flow()[self.indices]
        self.mouth = tracks["mouth"][self.indices].astype(np.float32)
        self.rotations = tracks["rotation"][self.indices]
        self._rarity: np.ndarray | None = None
        # position of each frame in `indices`, and whether its predecessor is the previous frame
        self.consecutive = np.concatenate([[False], np.diff(self.indices) == 1])
        self.size = self.frames.shape[1]

    def _masks(self) -> np.ndarray:
        """(N, H, W) uint8 foreground masks: prepare's, or made now for avatars prepared before masks."""
        if self.avatar.has_masks():
            return np.stack([self.avatar.read_mask(i) for i in self.indices])
        log.info("%s has no foreground masks (prepared before them); segmenting its %d frames for this run", self.avatar.name, len(self.frames))
        with ForegroundSegmenter() as segmenter:
            return np.stack([segmenter.mask(frame) for frame in self.frames])

    def _mesh(self, i: int) -> np.ndarray:
        return model_mesh(self.avatar, self.model, i)

    def __len__(self) -> int:
        return len(self.indices)

    def sequence_starts(self, length: int) -> np.ndarray:
        """Positions p where positions p..p+length-1 are consecutive frames."""
        ok = np.ones(len(self) - length + 1, bool) if length <= len(self) else np.zeros(0, bool)
        for k in range(1, length):
            ok &= self.consecutive[k : len(self) - length + 1 + k]
        return np.flatnonzero(ok)

    def eyes(self, pos: int, rng: np.random.Generator, jitter: float) -> np.ndarray:
        vertices, pupils = self.vertices[pos], self.pupils[pos]
        if jitter > 0:
            vertices = vertices + rng.normal(scale=jitter, size=vertices.shape).astype(np.float32)
            pupils = pupils + rng.normal(scale=jitter, size=pupils.shape).astype(np.float32)
        openings = eyelid_opening(vertices, self.model.topology_lid_pairs)
        return draw_eye_sketch(vertices, pupils, openings, self.model.topology, self.size, self.avatar.brows)

    def flow(self, pos: int) -> np.ndarray:
        """Full-resolution flow (H, W, 2) of a frame (zero when its predecessor is not present)."""
        if not self.consecutive[pos]:
            return np.zeros((self.size, self.size, 2), np.float32)
        return cv2.resize(self.flow_small[pos].astype(np.float32), (self.size, self.size), interpolation=cv2.INTER_LINEAR)

    def window_positions(self, pos: int) -> list[int]:
        """Positions of X[t-2:t] for the frame at pos, repeating the earliest available frame."""
        out = [pos]
        for _ in range(WINDOW - 1):
            p = out[0]
            out.insert(0, p - 1 if p > 0 and self.consecutive[p] else p)
        return out

    def rarity(self) -> np.ndarray:
        """(N,) how unusual each frame's expression is within the split: the distance to its
        k-th nearest neighbour in normalised (eyes, brows, mouth) feature space, over the mean."""
        if self._rarity is None:
            rows = [face_features(v, p, self.rotations[i]) for i, (v, p) in enumerate(zip(self.vertices, self.pupils))]
            table = feature_table(rows)
            points = np.stack([np.nan_to_num(normalise(table[name])) for name in RARITY_FEATURES], 1)
            k = min(RARITY_NEIGHBOURS, len(points) - 1)
            if k < 1:
                self._rarity = np.ones(len(points))
            else:
                kth = np.concatenate([
                    np.sqrt(np.partition(((points[i : i + RARITY_BLOCK, None] - points[None]) ** 2).sum(-1), k, axis=1)[:, k])
                    for i in range(0, len(points), RARITY_BLOCK)
                ])
                self._rarity = kth / max(float(kth.mean()), 1e-9)
        return self._rarity

    def start_weights(self, starts: np.ndarray, length: int, rare: float) -> np.ndarray | None:
        """Probabilities of the sequence starts: a share `rare` drawn in proportion to the squared
        rarity of the rarest frame each sequence holds (capped at RARITY_CAP), the rest
        uniformly; None = uniform."""
        if rare <= 0 or len(starts) < 2:
            return None
        rarity = np.minimum(self.rarity() ** 2, RARITY_CAP)
        per_start = np.max(np.stack([rarity[starts + k] for k in range(length)]), 0)
        return (1 - rare) / len(starts) + rare * per_start / per_start.sum()

    def sample(
        self, rngs: list[np.random.Generator], length: int, augment: Augment, rare: float = 0.0, identity: int = 0
    ) -> Batch:
        """A batch of one sequence per generator: each item is a function of its own generator,
        so a batch split across processes holds the same items as one big batch. A share `rare`
        of the sequences favours unusual expressions (see start_weights)."""
        starts = self.sequence_starts(length)
        if len(starts) == 0:
            raise ValueError(f"no run of {length} consecutive valid frames in the split")
        weights = self.start_weights(starts, length, rare)
        items = [self._sequence(int(rng.choice(starts, p=weights)), length, rng, augment) for rng in rngs]
        stacked = [None if items[0][k] is None else torch.stack([it[k] for it in items]) for k in range(6)]
        return Batch(*stacked, torch.full((len(rngs),), identity))

    def _sequence(self, start: int, length: int, rng: np.random.Generator, augment: Augment):
        s = self.size
        scale = 1.0 + rng.uniform(-augment.scale, augment.scale)
        shift = rng.uniform(-augment.shift, augment.shift, size=2)
        matrix = np.array([[scale, 0, (1 - scale) * s / 2 + shift[0]], [0, scale, (1 - scale) * s / 2 + shift[1]]], np.float32)
        warp = lambda img, interp, border: cv2.warpAffine(img, matrix, (s, s), flags=interp, borderMode=border)
        positions = list(range(start, start + length))
        cond_pos = self.window_positions(start)[:-1] + positions
        cond = [
            np.concatenate(
                [
                    warp(self.nmfc[p], cv2.INTER_NEAREST, cv2.BORDER_CONSTANT),
                    warp(self.eyes(p, rng, augment.eye_jitter), cv2.INTER_NEAREST, cv2.BORDER_CONSTANT),
                ],
                -1,
            )
            for p in cond_pos
        ]
        real = [warp(self.frames[p], cv2.INTER_LINEAR, cv2.BORDER_REPLICATE) for p in positions]
        flow = [warp(self.flow(p), cv2.INTER_LINEAR, cv2.BORDER_REPLICATE) * scale for p in positions]
        mouth = self.mouth[positions] * scale + matrix[:, 2]
        masks = None if self.masks is None else np.stack([warp(self.masks[p], cv2.INTER_LINEAR, cv2.BORDER_REPLICATE) for p in positions])
        return (
            to_tensor(np.stack(cond)),
            to_tensor(np.stack(real)),
            torch.from_numpy(np.stack(flow)).movedim(-1, -3).contiguous(),
            torch.from_numpy(mouth.astype(np.float32)),
            torch.from_numpy(self.indices[positions]),
            None if masks is None else unit_masks(masks),
        )
