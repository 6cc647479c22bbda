"""Self-reenactment metrics (Head2Head++ 4.3) on RGB uint8 frames.

APD: mean L2 distance of RGB values (0-255) per pixel; masked APD: inside the face
(NMFC non-black); mouth APD: in a 72x72 box (at 256 px) around the mouth centre; PSNR;
AELD: mean distance of the eye landmarks (contours + irises) tracked on generated vs real;
ARD: degrees between the fitted head rotations; AED: distance of expression coefficients;
sharpness: variance of the Laplacian inside the face mask, generated over real;
coarse sharpness: the same after 2x2 averaging of both images, which a GAN's pixel-period
checkerboard noise does not survive, so only edges and texture at 2+ pixels count.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .geometry.face_model import FaceModel
from .geometry.fitting import fit_frame
from .geometry.tracker import FaceTracker

MOUTH_BOX = 72


def apd(generated: np.ndarray, real: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Average pixel distance: mean over (masked) pixels of the RGB L2 norm."""
    dist = np.linalg.norm(generated.astype(np.float64) - real.astype(np.float64), axis=-1)
    if mask is None:
        return float(dist.mean())
    return float(dist[mask].mean()) if mask.any() else float("nan")


def mouth_box(centre: np.ndarray, size: int, image_size: int) -> tuple[slice, slice]:
    """Rows and columns of the mouth box, kept inside the image."""
    box = MOUTH_BOX * image_size // 256
    x0 = int(np.clip(round(centre[0] - box / 2), 0, image_size - box))
    y0 = int(np.clip(round(centre[1] - box / 2), 0, image_size - box))
    return slice(y0, y0 + box), slice(x0, x0 + box)


def psnr(generated: np.ndarray, real: np.ndarray) -> float:
    mse = np.mean((generated.astype(np.float64) - real.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def laplacian_variance(image: np.ndarray, mask: np.ndarray) -> float:
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    lap = cv2.Laplacian(gray, cv2.CV_64F)
    return float(lap[mask].var()) if mask.sum() > 1 else float("nan")


def coarse_sharpness(generated: np.ndarray, real: np.ndarray, mask: np.ndarray) -> float:
    """Laplacian-variance ratio of the two images averaged over 2x2 blocks (mask: all 4 inside)."""
    half = lambda image: cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    inside = half(mask.astype(np.float32)) > 0.999
    return _ratio(laplacian_variance(half(generated), inside), laplacian_variance(half(real), inside))


def _ratio(a: float, b: float) -> float:
    """a / b, NaN when b is not a usable reference (empty mask, flat image)."""
    return a / b if np.isfinite(b) and b > 1e-6 else float("nan")


def rotation_degrees(a: np.ndarray, b: np.ndarray) -> float:
    cos = (np.trace(a.T @ b) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


@dataclass
class FaceMeasure:
    """Eye landmarks, head rotation and expression of a tracked frame."""

    eyes: np.ndarray
    rotation: np.ndarray
    expression: np.ndarray


def measure_face(tracker: FaceTracker, image: np.ndarray, model: FaceModel, neutral: np.ndarray) -> FaceMeasure | None:
    marks = tracker.track(image)
    if marks is None:
        return None
    topo = model.topology
    eye_idx = np.concatenate([topo.right_eye, topo.left_eye, topo.right_iris, topo.left_iris])
    fit = fit_frame(marks, model, neutral)
    return FaceMeasure(marks[eye_idx, :2], fit.pose.rotation, fit.expression)


def frame_metrics(
    generated: np.ndarray,
    real: np.ndarray,
    face_mask: np.ndarray,
    mouth_centre: np.ndarray,
    measured: tuple[FaceMeasure | None, FaceMeasure | None],
) -> dict[str, float]:
    """All metrics of one generated frame against its real frame."""
    rows, cols = mouth_box(mouth_centre, MOUTH_BOX, real.shape[0])
    out = {
        "apd": apd(generated, real),
        "masked_apd": apd(generated, real, face_mask),
        "mouth_apd": apd(generated[rows, cols], real[rows, cols]),
        "psnr": psnr(generated, real),
        "sharpness": _ratio(laplacian_variance(generated, face_mask), laplacian_variance(real, face_mask)),
        "coarse_sharpness": coarse_sharpness(generated, real, face_mask),
    }
    gen, ref = measured
    if gen is not None and ref is not None:
        out["aeld"] = float(np.linalg.norm(gen.eyes - ref.eyes, axis=-1).mean())
        out["ard"] = rotation_degrees(gen.rotation, ref.rotation)
        out["aed"] = float(np.linalg.norm(gen.expression - ref.expression))
    return out


def mask_iou(predicted: np.ndarray, reference: np.ndarray) -> float:
    """Intersection over union of two uint8 foreground masks, each thresholded at half."""
    a, b = predicted >= 128, reference >= 128
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    """Means over frames (the sharpness ratios: medians, as the issue defines them); face-found
    rate; mask IoU (NaN for generators without a mask)."""
    keys = ("apd", "masked_apd", "mouth_apd", "psnr", "aeld", "ard", "aed", "mask_iou")
    out = {}
    for key in keys:
        values = [r[key] for r in rows if key in r and np.isfinite(r[key])]
        out[key] = float(np.mean(values)) if values else float("nan")
    for key in ("sharpness", "coarse_sharpness"):
        values = [r[key] for r in rows if key in r]
        out[key] = float(np.nanmedian(values)) if values else float("nan")
    out["face_found"] = float(np.mean(["aeld" in r for r in rows]))
    out["frames"] = len(rows)
    return out


SEARCH_SIZE = 64


def search_key(image: np.ndarray) -> np.ndarray:
    """A conditioning image reduced for nearest-neighbour search (64 px, flattened)."""
    return cv2.resize(image, (SEARCH_SIZE, SEARCH_SIZE), interpolation=cv2.INTER_AREA).reshape(-1).astype(np.float32)


def nearest_frames(train_keys: np.ndarray, test_keys: np.ndarray) -> np.ndarray:
    """For each test key (N, D), the index of the nearest training key (L2)."""
    a, b = train_keys, test_keys
    d = (b**2).sum(1)[:, None] - 2 * b @ a.T + (a**2).sum(1)[None]
    return d.argmin(1)
