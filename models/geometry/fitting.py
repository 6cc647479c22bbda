"""Per-frame fit of the face model: similarity pose, canonical shape, expression."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .face_model import FaceModel


@dataclass
class Pose:
    """Similarity transform taking canonical model space to image space: s * R @ x + t."""

    scale: float
    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)

    def apply(self, points: np.ndarray) -> np.ndarray:
        return (self.scale * points @ self.rotation.T + self.translation).astype(np.float32)

    def invert(self, points: np.ndarray) -> np.ndarray:
        return ((points - self.translation) @ self.rotation / self.scale).astype(np.float32)


@dataclass
class FaceFit:
    """One frame's fit: pose, pose-free canonical mesh (468, 3) and expression coefficients."""

    pose: Pose
    canonical: np.ndarray
    expression: np.ndarray


def umeyama(src: np.ndarray, dst: np.ndarray) -> Pose:
    """Least-squares similarity (s, R, t) with dst ~ s R src + t (Umeyama 1991)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1.0
    rotation = u @ sign @ vt
    var_s = (a**2).sum() / len(src)
    scale = float(np.trace(np.diag(d) @ sign) / var_s)
    translation = mu_d - scale * rotation @ mu_s
    return Pose(scale, rotation, translation)


def fit_pose(landmarks: np.ndarray, model: FaceModel) -> Pose:
    """Pose from the rigid anchors only, so expressions do not move the head."""
    anchors = model.topology.rigid_anchors
    return umeyama(model.mean_shape[anchors], landmarks[anchors, :3])


def fit_frame(landmarks: np.ndarray, model: FaceModel, neutral: np.ndarray | None = None) -> FaceFit:
    """Pose, canonical mesh and expression (relative to `neutral`, default the mean face)."""
    pose = fit_pose(landmarks, model)
    canonical = pose.invert(landmarks[: model.num_vertices, :3])
    reference = model.mean_shape if neutral is None else neutral
    return FaceFit(pose, canonical, model.project_expression(canonical - reference))


def eye_openings(canonical: np.ndarray, model: FaceModel) -> np.ndarray:
    """Mean eyelid gap of both eyes, in canonical units, for one mesh or a stack."""
    lids = model.topology_lid_pairs
    gaps = np.linalg.norm(canonical[..., lids[:, 0], :] - canonical[..., lids[:, 1], :], axis=-1)
    return gaps.mean(-1)


def mouth_openings(canonical: np.ndarray, model: FaceModel) -> np.ndarray:
    """Inner-lip gap in canonical units, for one mesh or a stack."""
    upper, lower = model.inner_lip_pair
    return np.linalg.norm(canonical[..., upper, :] - canonical[..., lower, :], axis=-1)


def neutral_shape(canonicals: np.ndarray, model: FaceModel, min_frames: int = 5) -> np.ndarray:
    """A person's neutral identity: mean canonical over closed-mouth, median-eye frames.

    The plain mean of a talking person has the mouth half open, which would make a
    closed-mouth source reenact with an open mouth.
    """
    if len(canonicals) <= min_frames:
        return canonicals.mean(0).astype(np.float32)
    mouth = mouth_openings(canonicals, model)
    eyes = eye_openings(canonicals, model)
    closed = mouth <= np.percentile(mouth, 25)
    lo, hi = np.percentile(eyes, [25, 75])
    chosen = closed & (eyes >= lo) & (eyes <= hi)
    if chosen.sum() < min_frames:
        chosen = closed
    return canonicals[chosen].mean(0).astype(np.float32)
