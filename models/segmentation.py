"""Foreground masks of a person's frames (Head2HeadFS 4: the mask the generator learns to
predict): MediaPipe's selfie segmentation, bundled with mediapipe 0.10.21 and run offline."""
from __future__ import annotations

import numpy as np

from .geometry.tracker import quiet_native_logs


class ForegroundSegmenter:
    """RGB uint8 frame -> uint8 mask (H, W), 255 = person. The general (256x256) model: on
    head-and-shoulders crops it keeps more of the hair than the landscape one."""

    def __init__(self) -> None:
        quiet_native_logs()
        from mediapipe.python.solutions import selfie_segmentation

        self._model = selfie_segmentation.SelfieSegmentation(model_selection=0)

    def mask(self, rgb: np.ndarray) -> np.ndarray:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError("mask() expects an HxWx3 uint8 RGB image")
        result = self._model.process(np.ascontiguousarray(rgb)).segmentation_mask
        return np.clip(np.rint(result * 255), 0, 255).astype(np.uint8)

    def close(self) -> None:
        self._model.close()

    def __enter__(self) -> "ForegroundSegmenter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
