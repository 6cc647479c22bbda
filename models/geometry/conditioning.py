"""Conditioning images for the generator: NMFC + eye sketch of a retargeted face."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .eyes import detect_pupils, draw_eye_sketch
from .face_model import FaceModel
from .nmfc import RESOLUTION, NMFCRenderer, correspondence
from .retarget import Retargeted
from .tracker import FaceTracker


@dataclass
class TrackedFace:
    """A source frame's landmarks (478, 3) and pupils (2, 2), in that frame's pixels."""

    landmarks: np.ndarray
    pupils: np.ndarray


def track_face(tracker: FaceTracker, rgb: np.ndarray, model: FaceModel) -> TrackedFace | None:
    """Landmarks and inverse-intensity pupils of the face in a frame, or None."""
    landmarks = tracker.track(rgb)
    if landmarks is None:
        return None
    return TrackedFace(landmarks, detect_pupils(rgb, landmarks, model.topology))


class ConditioningRenderer:
    """NMFC and eye sketch (both RGB uint8, size x size) of retargeted frames, and for a one-shot
    avatar whose generator takes it, their exact correspondence to its photos' posed meshes."""

    def __init__(self, model: FaceModel, size: int = RESOLUTION, backend: str = "auto", brows: bool = False,
                 photos: list[np.ndarray] | None = None) -> None:
        self.model = model
        self.size = size
        self.brows = brows  # conditioning version 2 draws the brows in the eye sketch
        self.photos = photos  # the photos' posed meshes (V, 3), or None: no correspondence
        self.nmfc = NMFCRenderer(model, size, backend)

    def render_nmfc(self, face: Retargeted) -> np.ndarray:
        return self.nmfc.render(face.vertices)

    def render_eyes(self, face: Retargeted) -> np.ndarray:
        return draw_eye_sketch(face.vertices, face.pupils, face.openings, self.model.topology, self.size, self.brows)

    def render(self, face: Retargeted) -> tuple[np.ndarray, np.ndarray]:
        return self.render_nmfc(face), self.render_eyes(face)

    def render_correspondence(self, face: Retargeted | None) -> np.ndarray | None:
        """The generator's `corr` input (1, 3K, size, size): where each pixel of the face lies on
        each of the K photos (see nmfc.correspondence); None without photos or a face."""
        if self.photos is None or face is None:
            return None
        return correspondence(self.nmfc, face.vertices, self.photos)

    def close(self) -> None:
        self.nmfc.close()


def conditioning_overlay(nmfc: np.ndarray, eyes: np.ndarray) -> np.ndarray:
    """NMFC with the eye sketch drawn over it (one image per frame, for display and search)."""
    return np.where(eyes.any(-1, keepdims=True), eyes, nmfc)


def overlay(frame: np.ndarray, nmfc: np.ndarray, eyes: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The frame with the NMFC blended over the face and the eye sketch on top (fit check)."""
    out = frame.astype(np.float32)
    face = nmfc.any(-1)
    out[face] = (1 - alpha) * out[face] + alpha * nmfc[face]
    drawn = eyes.any(-1)
    out[drawn] = eyes[drawn]
    return out.astype(np.uint8)
