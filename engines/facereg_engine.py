"""DenseFaceReg behind the engine interface: the face network (a square crop -> the 478 points)
and its eye stage (a 2:1 crop around one eye -> that eye's 21 points), each run(crop (H, W, 3)
uint8) -> (points, 3) in crop coordinates. ONNX Runtime on the best provider this build offers
(TensorRT or CUDA when present, their engine cache per user), in fp32: reduced precision cost
the eyes most of their correlation with the teacher (docs/RESULTS.md). The files are read
through the checked accessor (no links, bounded sizes) and the ONNX bytes checked before ONNX
Runtime sees them."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models.avatar_files import AvatarError, AvatarFiles
from ..models.geometry.face_crop import EYE_POINTS, checked_eye_points
from ..models.geometry.topology import ASSETS
from ..models.geometry.tracker import NUM_LANDMARKS
from .base import EngineError
from .onnx_check import check_facereg_onnx
from .onnx_engine import open_session
from .stepper import image_to_input

log = logging.getLogger(__name__)
SHIPPED_FACEREG = ASSETS / "facereg"
FACEREG_ONNX = "facereg.onnx"
EYES_ONNX = "eyes.onnx"  # the eye stage, beside the face network
EYES_META = "eyes.json"  # its eye point indices
FACE_ASPECT, EYE_ASPECT = 1, 2  # crop width over height: what the tracker's crops are
MAX_FACEREG_BYTES = 64 << 20
FACEREG_THREADS = 1  # ~1 ms a crop: a second thread gains little and takes a core from the generator


class FaceRegEngine:
    """A checked DenseFaceReg network that predicts `points` points from crops of `aspect`."""

    def __init__(self, model: bytes, label: str, points: int, aspect: int, threads: int | None = FACEREG_THREADS,
                 providers: list[str] | None = None) -> None:
        self.size = check_facereg_onnx(model, label, points, aspect)
        self.width = self.size * aspect
        self.session, self.choice, self.provider, self.precision = open_session(model, label, False, threads, providers)

    def run(self, crop: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 crop -> (points, 3) float32 crop-normalised points."""
        return self.session.run(["points"], {"crop": image_to_input(crop)[None]})[0][0]


@dataclass(frozen=True)
class FaceRegModels:
    """The checked bytes of a DenseFaceReg folder: the face network, and the eye stage with its
    eye point indices (2, 21) when the folder has one."""

    folder: Path
    face: bytes
    eyes: bytes | None = None
    eye_points: np.ndarray | None = None


def read_facereg(folder: Path | None = None) -> FaceRegModels:
    """The networks in `folder` (the shipped one by default), checked; EngineError saying what to do."""
    folder = folder or SHIPPED_FACEREG
    try:
        files = AvatarFiles(folder)
        face = files.read_bytes(FACEREG_ONNX, MAX_FACEREG_BYTES)
        check_facereg_onnx(face, str(folder / FACEREG_ONNX), NUM_LANDMARKS, FACE_ASPECT)
        if not files.is_file(EYES_ONNX):
            return FaceRegModels(folder, face)
        eyes = files.read_bytes(EYES_ONNX, MAX_FACEREG_BYTES)
        check_facereg_onnx(eyes, str(folder / EYES_ONNX), EYE_POINTS, EYE_ASPECT)
        meta = files.read_json(EYES_META)
        points = checked_eye_points(meta.get("eye_points") if isinstance(meta, dict) else None, EYE_POINTS, str(folder / EYES_META))
    except (AvatarError, ValueError) as exc:
        raise EngineError(f"{exc}; reinstall h2h, or make it with h2h train-facereg and h2h export-facereg") from exc
    return FaceRegModels(folder, face, eyes, points)


def facereg_problem(folder: Path | None = None) -> str | None:
    """Why DenseFaceReg cannot be loaded from `folder` (no sessions are built), or None."""
    try:
        read_facereg(folder)
    except EngineError as exc:
        return str(exc)
    return None


def load_facereg(folder: Path | None = None, threads: int | None = FACEREG_THREADS,
                 providers: list[str] | None = None) -> tuple[FaceRegEngine, FaceRegEngine | None, np.ndarray | None]:
    """(face network, eye stage or None, its eye point indices or None) from `folder`."""
    models = read_facereg(folder)
    face = FaceRegEngine(models.face, str(models.folder / FACEREG_ONNX), NUM_LANDMARKS, FACE_ASPECT, threads, providers)
    eyes = None
    if models.eyes is not None:
        eyes = FaceRegEngine(models.eyes, str(models.folder / EYES_ONNX), EYE_POINTS, EYE_ASPECT, threads, providers)
    log.info("DenseFaceReg: %s, %s%s", face.provider, face.precision, ", with the eye stage" if eyes else "")
    return face, eyes, models.eye_points
