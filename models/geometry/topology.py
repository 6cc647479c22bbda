"""Face mesh topology: triangles over the 468 mesh vertices and named index sets."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parents[2] / "assets"
TOPOLOGY_FILE = ASSETS / "face_topology.json"


@dataclass(frozen=True)
class Topology:
    """Triangles (T, 3) and ordered index sets of the MediaPipe face mesh."""

    triangles: np.ndarray
    right_eye: np.ndarray  # subject's right eye (image left) contour, ordered loop
    left_eye: np.ndarray
    right_iris: np.ndarray  # centre first, then 4 rim points
    left_iris: np.ndarray
    lips_outer: np.ndarray
    lips_inner: np.ndarray
    rigid_anchors: np.ndarray

    @property
    def eyes(self) -> tuple[np.ndarray, np.ndarray]:
        return self.right_eye, self.left_eye

    @property
    def mouth(self) -> np.ndarray:
        """All lip vertices (outer and inner loops)."""
        return np.concatenate([self.lips_outer, self.lips_inner])


def topology_from_dict(data: dict) -> Topology:
    sets = data["index_sets"]
    return Topology(
        triangles=np.asarray(data["triangles"], dtype=np.int32),
        **{k: np.asarray(v, dtype=np.int32) for k, v in sets.items()},
    )


@lru_cache(maxsize=1)
def load_topology(path: Path = TOPOLOGY_FILE) -> Topology:
    """The shipped topology asset (built by scripts/build_face_assets.py)."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run scripts/build_face_assets.py to create it")
    return topology_from_dict(json.loads(path.read_text()))
