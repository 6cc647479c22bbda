"""Dense 3D face tracking behind a small interface (MediaPipe Face Mesh back-end)."""
from __future__ import annotations

import os
from typing import Protocol

import numpy as np

NUM_MESH_VERTICES = 468
NUM_LANDMARKS = 478  # 468 mesh vertices + 10 iris points


class FaceTracker(Protocol):
    """Anything that maps an RGB frame to (478, 3) landmarks in image pixels, or None."""

    def track(self, rgb: np.ndarray) -> np.ndarray | None: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


def quiet_native_logs() -> None:
    """Keep TFLite/absl start-up chatter out of the user's terminal."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class MediaPipeTracker:
    """MediaPipe Face Mesh (legacy solution, refine_landmarks on).

    Landmarks come back in image space: x and y in pixels, z in pixels of the image
    width (smaller z = closer to the camera), the convention of the mesh model.
    """

    def __init__(self, video_mode: bool = True, min_confidence: float = 0.5) -> None:
        quiet_native_logs()
        from mediapipe.python.solutions import face_mesh

        self._factory = lambda: face_mesh.FaceMesh(
            static_image_mode=not video_mode,
            max_num_faces=1,
            refine_landmarks=True,
            min_detection_confidence=min_confidence,
            min_tracking_confidence=min_confidence,
        )
        self._mesh = self._factory()

    def track(self, rgb: np.ndarray) -> np.ndarray | None:
        """Landmarks (478, 3) float32 in pixels for the most prominent face, or None."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError("track() expects an HxWx3 uint8 RGB image")
        result = self._mesh.process(np.ascontiguousarray(rgb))
        if not result.multi_face_landmarks:
            return None
        h, w = rgb.shape[:2]
        points = result.multi_face_landmarks[0].landmark
        out = np.array([(p.x * w, p.y * h, p.z * w) for p in points], dtype=np.float32)
        return out

    def reset(self) -> None:
        """Forget the tracked face (after a cut or a new source)."""
        self._mesh.close()
        self._mesh = self._factory()

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> "MediaPipeTracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


TRACKER_NAMES = {"mediapipe": "MediaPipe", "densefacereg": "DenseFaceReg"}  # back-end -> the name shown
TRACKERS = tuple(TRACKER_NAMES)


def create_tracker(kind: str = "mediapipe", video_mode: bool = True) -> FaceTracker:
    """The tracker back-end `kind`: MediaPipe's face mesh, or DenseFaceReg (the shipped network,
    on the best ONNX Runtime provider; always tracking, MediaPipe finds the face)."""
    if kind == "mediapipe":
        return MediaPipeTracker(video_mode=video_mode)
    if kind == "densefacereg":
        from ...engines.facereg_engine import load_facereg  # the engine layer, only when asked for
        from .facereg_tracker import DenseFaceRegTracker

        return DenseFaceRegTracker.with_mediapipe(*load_facereg())
    raise ValueError(f"unknown tracker {kind!r}; choose one of {', '.join(TRACKERS)}")


def tracker_problem(kind: str) -> str | None:
    """Why tracker `kind` cannot run here (unknown, or its networks missing or not DenseFaceReg's),
    or None; cheap (nothing is loaded into a runtime), so a window may ask on its own thread."""
    if kind not in TRACKERS:
        return f"unknown tracker {kind!r}; choose one of {', '.join(TRACKERS)}"
    if kind == "densefacereg":
        from ...engines.facereg_engine import facereg_problem

        problem = facereg_problem()
        if problem:
            return f"DenseFaceReg cannot run: {problem}"
    return None
