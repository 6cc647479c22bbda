"""The square face crop DenseFaceReg sees, the same in training and in the tracker: a box of
CROP_MARGIN times the mesh's 2D bounding box around the face, and the affine between image
pixels and crop coordinates ([-1, 1] across the crop, z on the same scale); and the crops
of the parts (eyes, mouth) that second stages redraw at a finer scale."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .tracker import NUM_LANDMARKS, NUM_MESH_VERTICES

CROP_MARGIN = 1.5  # crop side over the larger side of the mesh's 2D bounding box
EYE_POINTS = 21  # what the eye stage predicts of one eye: its 16 contour points and its iris (centre, 4 rim points)


def mesh_box(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre and larger side of the mesh's 2D bounding box."""
    xy = points[:NUM_MESH_VERTICES, :2]
    low, high = xy.min(0), xy.max(0)
    return (low + high) / 2, float(max(high - low))


@dataclass(frozen=True)
class Crop:
    """The affine image -> crop of side `out` (pixels), and its scale (crop pixels per image pixel)."""

    matrix: np.ndarray
    scale: float
    out: int

    @classmethod
    def around(cls, points: np.ndarray, out: int, angle: float = 0.0, shift: tuple[float, float] = (0.0, 0.0),
               zoom: float = 1.0) -> "Crop":
        """A square crop around the face of `points`, turned by `angle` degrees, its centre
        moved by `shift` (fractions of its side) and its side divided by `zoom`."""
        centre, extent = mesh_box(points)
        side = CROP_MARGIN * extent / zoom
        centre = centre + np.asarray(shift) * side
        scale = out / max(side, 1e-3)
        matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, scale)
        matrix[:, 2] += out / 2 - centre
        return cls(matrix, scale, out)

    def image(self, rgb: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(rgb, self.matrix, (self.out, self.out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def normalise(self, points: np.ndarray) -> np.ndarray:
        """Image-space points (N, 3) -> crop coordinates in [-1, 1] (z on the same scale)."""
        half = self.out / 2
        xy = points[:, :2] @ self.matrix[:, :2].T + self.matrix[:, 2]
        return np.concatenate([(xy - half) / half, points[:, 2:3] * self.scale / half], 1).astype(np.float32)

    def denormalise(self, crop_points: np.ndarray) -> np.ndarray:
        """The inverse of normalise."""
        half = self.out / 2
        inverse = cv2.invertAffineTransform(self.matrix)
        xy = (crop_points[:, :2] * half + half) @ inverse[:, :2].T + inverse[:, 2]
        return np.concatenate([xy, crop_points[:, 2:3] * half / self.scale], 1).astype(np.float32)


def flip_affine(width: int) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset) (3,) each: crop point p of a crop `width` pixels wide is at p * scale + offset
    in that crop reversed left to right (crop[:, ::-1]: pixel column c moves to width - 1 - c),
    and back (its own inverse)."""
    return np.array([-1.0, 1.0, 1.0], np.float32), np.array([-2.0 / width, 0.0, 0.0], np.float32)


RIGHT_EYE_OUTER, RIGHT_EYE_INNER = 33, 133  # the right eye's corners in the mesh
MOUTH_RIGHT, MOUTH_LEFT = 61, 291  # the mouth's corners (the person's right first)
MOUTH_POINTS, MOUTH_LIPS = 190, 40  # what the mouth stage predicts (the lips, then the skin around them) and redraws (the lips)


@dataclass(frozen=True)
class Part:
    """A part of the face a second DenseFaceReg stage redraws from its own crop: the crop runs
    along the part's two corners (`corners`: mesh indices, as they sit in the part's first row of
    point indices), `margin` times their distance wide and 1/`aspect` as high. A part's point
    indices come in two rows, the second in mirrored order read from a mirrored crop: for the
    eyes the two rows are the two eyes (both redrawn, one network for both), for the mouth the
    second is the same points mirrored (a training flip, and the order a mirror-averaged mouth
    network maps its mirrored answer back by). The tracker redraws the first
    `redrawn` points of a row; the mouth's others (the skin around the lips) are predicted only
    because learning them too gave better lips (docs/RESULTS.md)."""

    name: str
    points: int
    redrawn: int
    corners: tuple[int, int]
    margin: float
    aspect: int
    both_rows: bool
    shifts: tuple[tuple[int, int], ...] = ((0, 0),)

    @property
    def key(self) -> str:
        """Its point indices' name in the network's JSON ("eye_points", "mouth_points")."""
        return f"{self.name}_points"

    @property
    def sides(self) -> tuple[int, ...]:
        """Which rows of its point indices the tracker redraws: both eyes; the mouth once."""
        return (0, 1) if self.both_rows else (0,)

    @property
    def batch(self) -> int:
        """Crops the tracker reads the part from in a frame: each row it redraws at each shift."""
        return len(self.sides) * len(self.shifts)


# Where the tracker reads each eye from: the crop the face network's answer gives, and that crop
# moved by these (across, down) pixels of the eye stage's crop, about half its training jitter.
# Their answers are averaged: on an eye a few pixels high, much of one crop's answer is noise
# (docs/RESULTS.md).
EYE_SHIFTS = ((0, 0), (3, 0), (-3, 0), (0, 3), (0, -3))

PARTS = {
    "eye": Part("eye", EYE_POINTS, EYE_POINTS, (RIGHT_EYE_OUTER, RIGHT_EYE_INNER), 2.0, 2, True, EYE_SHIFTS),
    "mouth": Part("mouth", MOUTH_POINTS, MOUTH_LIPS, (MOUTH_RIGHT, MOUTH_LEFT), 2.0, 1, False),
}


def checked_part_points(data: object, part: Part, label: str) -> np.ndarray:
    """(2, part.points) point indices of `part` (its first row, then the mirrored one) from a JSON
    list; ValueError unless they are mesh indices with the part's corners among the redrawn
    points of the first row."""
    points = np.asarray(data if isinstance(data, list) else [])
    if points.shape != (2, part.points) or points.dtype.kind != "i" or points.min() < 0 or points.max() >= NUM_LANDMARKS \
            or not set(part.corners) <= set(points[0, : part.redrawn].tolist()):
        raise ValueError(f"{label}: {part.key} must be 2 rows of {part.points} mesh indices with the {part.name}'s corners")
    return points


def unshift(answers: np.ndarray, shifts: tuple[tuple[int, int], ...], width: int) -> np.ndarray:
    """Crop points (K, N, 3) read from a crop `width` pixels wide moved by each of `shifts`
    (PartCrop.shifted) -> the same points in the unmoved crop's coordinates."""
    moved = np.concatenate([2 * np.asarray(shifts, np.float32) / width, np.zeros((len(shifts), 1), np.float32)], 1)
    return answers + moved[:, None]


def part_corners(part: Part, rows: np.ndarray) -> tuple[int, int]:
    """Positions of the part's two corners in `rows` (2, N), the part's point indices."""
    row = [int(i) for i in rows[0]]
    return row.index(part.corners[0]), row.index(part.corners[1])


@dataclass(frozen=True)
class PartCrop:
    """The affine image -> a part's crop of `width` x `width // aspect` pixels, turned so that
    its first -> second corner runs left to right, the chin down; `mirrored` crops show the part
    mirrored. Crop coordinates: x in [-1, 1] across the width, y and z on the same scale (y in
    [-1/aspect, 1/aspect])."""

    matrix: np.ndarray
    scale: float
    width: int
    height: int

    @classmethod
    def around(cls, start: np.ndarray, end: np.ndarray, width: int, part: Part, mirrored: bool, angle: float = 0.0,
               shift: tuple[float, float] = (0.0, 0.0), zoom: float = 1.0) -> "PartCrop":
        """The crop of the part with these corners (image xy), its axis turned by `angle` degrees,
        its centre moved by `shift` (fractions of its width) and its width divided by `zoom`."""
        axis = np.asarray(end[:2], np.float64) - np.asarray(start[:2], np.float64)
        span = max(float(np.linalg.norm(axis)), 1e-3)
        turn = np.radians(angle)
        u = axis / span
        u = np.array([u[0] * np.cos(turn) - u[1] * np.sin(turn), u[0] * np.sin(turn) + u[1] * np.cos(turn)])
        v = np.array([u[1], -u[0]]) if mirrored else np.array([-u[1], u[0]])  # towards the chin in both
        side = part.margin * span / zoom
        centre = (np.asarray(start[:2], np.float64) + np.asarray(end[:2], np.float64)) / 2 + (np.asarray(shift) * side) @ np.stack([u, v])
        scale = width / side
        height = width // part.aspect
        matrix = np.array([[*(scale * u), width / 2 - scale * float(centre @ u)],
                           [*(scale * v), height / 2 - scale * float(centre @ v)]])
        return cls(matrix, scale, width, height)

    def shifted(self, rgb: np.ndarray, shifts: tuple[tuple[int, int], ...]) -> np.ndarray:
        """(K, height, width, 3): the crop moved by each of `shifts` (across, down: whole pixels
        along its own axes), cut from one warp of the region they span."""
        low, high = np.min(shifts, 0), np.max(shifts, 0)
        matrix = self.matrix.copy()
        matrix[:, 2] -= low
        (w, h) = high - low + (self.width, self.height)
        region = cv2.warpAffine(rgb, matrix, (int(w), int(h)), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return np.stack([region[y - low[1] : y - low[1] + self.height, x - low[0] : x - low[0] + self.width] for x, y in shifts])

    def image(self, rgb: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(rgb, self.matrix, (self.width, self.height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def normalise(self, points: np.ndarray) -> np.ndarray:
        half = self.width / 2
        xy = points[:, :2] @ self.matrix[:, :2].T + self.matrix[:, 2] - np.array([half, self.height / 2])
        return np.concatenate([xy / half, points[:, 2:3] * self.scale / half], 1).astype(np.float32)

    def denormalise(self, crop_points: np.ndarray) -> np.ndarray:
        half = self.width / 2
        inverse = cv2.invertAffineTransform(self.matrix)
        xy = crop_points[:, :2] * half + np.array([half, self.height / 2])
        return np.concatenate([xy @ inverse[:, :2].T + inverse[:, 2], crop_points[:, 2:3] * half / self.scale], 1).astype(np.float32)
