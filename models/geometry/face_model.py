"""The face model: mean face x̄, its NMFC colours and the expression basis (DESIGN 4.3)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from .eyes import BROWS, EYE_CORNERS
from .topology import ASSETS, Topology, load_topology

FACE_MODEL_FILE = ASSETS / "face_model.npz"
# Upper / lower eyelid vertex pairs (subject's right eye, then left) and the inner-lip pair.
LID_PAIRS = np.array([[159, 145], [158, 153], [160, 144], [386, 374], [385, 380], [387, 373]])
INNER_LIP_PAIR = (13, 14)
EYE_DETAIL_REACH = 0.35  # fall-off of the eye-detail weights, in eye widths from a lid or brow vertex


@dataclass(frozen=True)
class FaceModel:
    """mean_shape (V, 3) canonical units; colors (V, 3) in [0, 1]; basis (K, V*3) orthonormal."""

    mean_shape: np.ndarray
    colors: np.ndarray
    basis: np.ndarray
    topology: Topology

    @property
    def num_vertices(self) -> int:
        return len(self.mean_shape)

    @property
    def num_expressions(self) -> int:
        return len(self.basis)

    @property
    def topology_lid_pairs(self) -> np.ndarray:
        return LID_PAIRS

    @property
    def inner_lip_pair(self) -> tuple[int, int]:
        return INNER_LIP_PAIR

    @property
    def triangle_colors(self) -> np.ndarray:
        """NMFC colour of each triangle: normalised mean-face coordinates of its centre."""
        return self.colors[self.topology.triangles].mean(1).astype(np.float32)

    def project_expression(self, offset: np.ndarray) -> np.ndarray:
        """Coefficients of a canonical offset (..., V, 3) on the expression basis."""
        flat = offset.reshape(*offset.shape[:-2], -1)
        return (flat @ self.basis.T).astype(np.float32)

    def expression_offset(self, coefficients: np.ndarray) -> np.ndarray:
        """Canonical offset (V, 3) spanned by expression coefficients."""
        return (coefficients @ self.basis).reshape(self.num_vertices, 3).astype(np.float32)

    @cached_property
    def eye_region_weights(self) -> np.ndarray:
        """(V,) 1 on the lids and brows, falling smoothly to 0 over EYE_DETAIL_REACH eye widths."""
        core = np.concatenate([*self.topology.eyes, *BROWS])
        outer, inner = EYE_CORNERS[0]
        width = float(np.linalg.norm(self.mean_shape[outer] - self.mean_shape[inner]))
        distance = np.linalg.norm(self.mean_shape[:, None] - self.mean_shape[None, core], axis=-1).min(1)
        return np.exp(-((distance / (EYE_DETAIL_REACH * width)) ** 2)).astype(np.float32)

    def eye_detail(self, offset: np.ndarray) -> np.ndarray:
        """What the expression basis misses of a canonical offset (V, 3) around the eyes and
        brows: one-eye closures, brow shapes, full blinks (conditioning version 3)."""
        residual = offset - self.expression_offset(self.project_expression(offset))
        return (residual * self.eye_region_weights[:, None]).astype(np.float32)


def normalise_colors(shape: np.ndarray) -> np.ndarray:
    """Per-axis min-max normalisation of the mean face to [0, 1]^3 (NMFC colours)."""
    lo, hi = shape.min(0), shape.max(0)
    return ((shape - lo) / (hi - lo)).astype(np.float32)


@lru_cache(maxsize=1)
def load_face_model(path: Path = FACE_MODEL_FILE) -> FaceModel:
    """The shipped face model asset (built by scripts/build_face_assets.py)."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run scripts/build_face_assets.py to create it")
    with np.load(path) as data:
        mean_shape = data["mean_shape"].astype(np.float32)
        basis = data["basis"].astype(np.float32)
    return FaceModel(mean_shape, normalise_colors(mean_shape), basis, load_topology())
