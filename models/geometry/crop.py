"""One fixed square crop per video (DESIGN 3.1): the median face box, enlarged for hair."""
from __future__ import annotations

import cv2
import numpy as np

CROP_SCALE = 1.9  # crop side / face-mesh box side: room for hair, ears and neck
CROP_LIFT = 0.06  # move the crop up by this fraction of its side (more hair, less chest)


def face_box(landmarks: np.ndarray) -> np.ndarray:
    """(x0, y0, x1, y1) of the landmarks in pixels."""
    return np.concatenate([landmarks[:, :2].min(0), landmarks[:, :2].max(0)])


def square_crop_box(boxes: np.ndarray, width: int, height: int, scale: float = CROP_SCALE) -> tuple[int, int, int]:
    """(x, y, side) of a square crop around the median face box, kept inside the image."""
    x0, y0, x1, y1 = np.median(np.asarray(boxes), axis=0)
    side = int(round(min(max(x1 - x0, y1 - y0) * scale, width, height)))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 - CROP_LIFT * side
    x = int(round(np.clip(cx - side / 2, 0, width - side)))
    y = int(round(np.clip(cy - side / 2, 0, height - side)))
    return x, y, side


def crop_frame(frame: np.ndarray, box: tuple[int, int, int], size: int) -> np.ndarray:
    x, y, side = box
    return cv2.resize(frame[y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_AREA)
