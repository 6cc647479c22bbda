"""The square face crop DenseFaceReg sees, the same in training and in the tracker: a box of
CROP_MARGIN times the mesh's 2D bounding box around the face, and the affine between image
pixels and crop coordinates ([-1, 1] across the crop, z on the same scale)."""
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


EYE_MARGIN = 2.0  # eye crop width over the distance between the eye's corners
RIGHT_EYE_OUTER, RIGHT_EYE_INNER = 33, 133  # the right eye's corners in the mesh


def checked_eye_points(data: object, count: int, label: str) -> np.ndarray:
    """(2, count) eye point indices (the right eye's, the left eye's in mirrored order) from a
    JSON list; ValueError unless they are mesh indices holding the eye's corners."""
    points = np.asarray(data if isinstance(data, list) else [])
    if points.shape != (2, count) or points.dtype.kind != "i" or points.min() < 0 or points.max() >= NUM_LANDMARKS \
            or not {RIGHT_EYE_OUTER, RIGHT_EYE_INNER} <= set(points[0].tolist()):
        raise ValueError(f"{label}: eye_points must be 2 rows of {count} mesh indices with the eye's corners")
    return points


def eye_corners(eye_points: np.ndarray) -> tuple[int, int]:
    """Positions of the outer and inner corner in the rows of `eye_points` (2, N): an eye's
    point indices, the right eye's first and the left eye's in mirrored order."""
    row = [int(i) for i in eye_points[0]]
    return row.index(RIGHT_EYE_OUTER), row.index(RIGHT_EYE_INNER)


@dataclass(frozen=True)
class EyeCrop:
    """The affine image -> an eye crop of `width` x `width // 2` pixels, turned so that the eye's
    outer -> inner corner runs left to right with the lids up; a left eye is mirrored in it, so
    one network serves both eyes. Crop coordinates: x in [-1, 1] across the width, y and z on
    the same scale (y in [-0.5, 0.5])."""

    matrix: np.ndarray
    scale: float
    width: int

    @classmethod
    def around(cls, outer: np.ndarray, inner: np.ndarray, width: int, left: bool, angle: float = 0.0,
               shift: tuple[float, float] = (0.0, 0.0), zoom: float = 1.0) -> "EyeCrop":
        """The crop of the eye with these corners (image xy), its axis turned by `angle` degrees,
        its centre moved by `shift` (fractions of its width) and its width divided by `zoom`."""
        axis = np.asarray(inner[:2], np.float64) - np.asarray(outer[:2], np.float64)
        span = max(float(np.linalg.norm(axis)), 1e-3)
        turn = np.radians(angle)
        u = axis / span
        u = np.array([u[0] * np.cos(turn) - u[1] * np.sin(turn), u[0] * np.sin(turn) + u[1] * np.cos(turn)])
        v = np.array([u[1], -u[0]]) if left else np.array([-u[1], u[0]])  # towards the chin in both
        side = EYE_MARGIN * span / zoom
        centre = (np.asarray(outer[:2], np.float64) + np.asarray(inner[:2], np.float64)) / 2 + (np.asarray(shift) * side) @ np.stack([u, v])
        scale = width / side
        matrix = np.array([[*(scale * u), width / 2 - scale * float(centre @ u)],
                           [*(scale * v), width / 4 - scale * float(centre @ v)]])
        return cls(matrix, scale, width)

    def image(self, rgb: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(rgb, self.matrix, (self.width, self.width // 2), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def normalise(self, points: np.ndarray) -> np.ndarray:
        half = self.width / 2
        xy = points[:, :2] @ self.matrix[:, :2].T + self.matrix[:, 2] - np.array([half, half / 2])
        return np.concatenate([xy / half, points[:, 2:3] * self.scale / half], 1).astype(np.float32)

    def denormalise(self, crop_points: np.ndarray) -> np.ndarray:
        half = self.width / 2
        inverse = cv2.invertAffineTransform(self.matrix)
        xy = crop_points[:, :2] * half + np.array([half, half / 2])
        return np.concatenate([xy @ inverse[:, :2].T + inverse[:, 2], crop_points[:, 2:3] * half / self.scale], 1).astype(np.float32)
