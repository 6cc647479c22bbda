"""Eyes (DESIGN 4.4): pupils by inverse-intensity centroid, eye sketches, pupil transfer."""
from __future__ import annotations

import cv2
import numpy as np

from .topology import Topology

# Eye corners (outer, inner) of the subject's right and left eye; they define an eye's frame.
EYE_CORNERS = ((33, 133), (263, 362))
PUPIL_COLOR = (255, 0, 0)
LID_COLOR = (255, 255, 255)
BROW_COLOR = (0, 255, 0)  # its own colour, so the generator cannot mistake a brow for a lid
# each brow as a closed band: upper arc (outer -> inner), then the lower arc back (MediaPipe mesh)
BROWS = ((70, 63, 105, 66, 107, 55, 65, 52, 53, 46), (300, 293, 334, 296, 336, 285, 295, 282, 283, 276))


def pupil_centroid(gray: np.ndarray, contour: np.ndarray) -> np.ndarray:
    """Centre of mass of the pixels inside the eye polygon, weighted by inverse intensity
    (Head2Head++ eq. 4); the brightest pixel weighs zero so the sclera pulls least."""
    h, w = gray.shape
    x0, y0 = np.clip(np.floor(contour.min(0)).astype(int), 0, [w - 1, h - 1])
    x1, y1 = np.clip(np.ceil(contour.max(0)).astype(int) + 1, 1, [w, h])
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [np.round(contour - (x0, y0)).astype(np.int32)], 1)
    patch = gray[y0:y1, x0:x1].astype(np.float32)
    inside = mask.astype(bool)
    if not inside.any():
        return contour.mean(0).astype(np.float32)
    weights = np.where(inside, patch[inside].max() - patch, 0.0)
    total = weights.sum()
    if total <= 1e-6:
        return contour.mean(0).astype(np.float32)
    ys, xs = np.mgrid[y0:y1, x0:x1]
    return np.array([(weights * (xs + 0.5)).sum() / total, (weights * (ys + 0.5)).sum() / total], np.float32)


def detect_pupils(rgb: np.ndarray, landmarks: np.ndarray, topology: Topology) -> np.ndarray:
    """(2, 2) pupil positions in pixels, subject's right eye first."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return np.stack([pupil_centroid(gray, landmarks[eye, :2]) for eye in topology.eyes])


def _eye_frame(points: np.ndarray, corners: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Origin, unit axis along the eye (corner to corner) and its normal, scaled by eye width."""
    a, b = points[corners[0], :2], points[corners[1], :2]
    origin = (a + b) / 2
    axis = b - a
    normal = np.array([-axis[1], axis[0]])
    return origin, axis, normal


def pupils_relative(landmarks: np.ndarray, pupils: np.ndarray) -> np.ndarray:
    """Pupil positions in each eye's own frame (corner midpoint origin, eye-width units)."""
    out = np.zeros((2, 2), np.float32)
    for i, corners in enumerate(EYE_CORNERS):
        origin, axis, normal = _eye_frame(landmarks, corners)
        d = pupils[i] - origin
        width2 = max(float(axis @ axis), 1e-6)
        out[i] = (d @ axis / width2, d @ normal / width2)
    return out


def pupils_absolute(landmarks: np.ndarray, relative: np.ndarray) -> np.ndarray:
    """Inverse of pupils_relative on another face's eye landmarks."""
    out = np.zeros((2, 2), np.float32)
    for i, corners in enumerate(EYE_CORNERS):
        origin, axis, normal = _eye_frame(landmarks, corners)
        out[i] = origin + relative[i, 0] * axis + relative[i, 1] * normal
    return out


def eyelid_opening(landmarks: np.ndarray, lid_pairs: np.ndarray) -> np.ndarray:
    """(2,) mean upper-to-lower lid distance per eye in pixels (right eye pairs first)."""
    gaps = np.linalg.norm(landmarks[lid_pairs[:, 0], :2] - landmarks[lid_pairs[:, 1], :2], axis=-1)
    return gaps.reshape(2, -1).mean(1)


def draw_eye_sketch(
    landmarks: np.ndarray, pupils: np.ndarray, openings: np.ndarray, topology: Topology, size: int = 256,
    brows: bool = False,
) -> np.ndarray:
    """RGB eye sketch: white eyelid outlines and red pupil discs (radius = half the opening),
    the discs clipped to the eye so a closing lid covers them; with `brows` (conditioning
    version 2) each brow's outline in green, so brow motion reaches the generator directly."""
    image = np.zeros((size, size, 3), np.uint8)
    shift = 4  # sub-pixel precision for cv2 drawing (cv2 puts pixel centres at integers)
    scale = 1 << shift
    for eye, pupil, opening in zip(topology.eyes, pupils, openings):
        contour = np.round((landmarks[eye, :2] - 0.5) * scale).astype(np.int32)
        radius = opening / 2.0
        if radius >= 0.75:
            disc = np.zeros((size, size), np.uint8)
            cv2.circle(disc, tuple(np.round((pupil - 0.5) * scale).astype(int)), int(radius * scale), 1, -1, cv2.LINE_8, shift)
            inside = np.zeros((size, size), np.uint8)
            cv2.fillPoly(inside, [contour], 1, cv2.LINE_8, shift)
            image[(disc & inside).astype(bool)] = PUPIL_COLOR
        cv2.polylines(image, [contour], True, LID_COLOR, 1, cv2.LINE_8, shift)
    if brows:
        outlines = [np.round((landmarks[list(brow), :2] - 0.5) * scale).astype(np.int32) for brow in BROWS]
        cv2.polylines(image, outlines, True, BROW_COLOR, 1, cv2.LINE_8, shift)
    return image
