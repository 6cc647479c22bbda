"""The square face crop DenseFaceReg sees, the same in training and in the tracker: a box of
CROP_MARGIN times the mesh's 2D bounding box around the face, and the affine between image
pixels and crop coordinates ([-1, 1] across the crop, z on the same scale)."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .tracker import NUM_MESH_VERTICES

CROP_MARGIN = 1.5  # crop side over the larger side of the mesh's 2D bounding box


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
        xy = points[:NUM_MESH_VERTICES, :2]
        low, high = xy.min(0), xy.max(0)
        side = CROP_MARGIN * float(max(high - low)) / zoom
        centre = (low + high) / 2 + np.asarray(shift) * side
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
