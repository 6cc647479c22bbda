"""DenseFaceReg behind the engine interface: run(crop (S, S, 3) uint8) -> (478, 3) points in
crop coordinates. ONNX Runtime on the best provider this build offers (TensorRT or CUDA when
present, their engine cache per user), or, when asked, the int8 model on CPUs when it was
made from the current fp32 one; the ONNX bytes are checked before ONNX Runtime sees them."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..models.geometry.face_crop import checked_eye_points
from ..models.geometry.topology import ASSETS
from ..models.geometry.tracker import NUM_LANDMARKS
from ..models.io_utils import atomic_write_bytes
from .base import EngineError
from .cache import bytes_sha256
from .onnx_check import check_facereg_onnx
from .onnx_engine import open_session
from .stepper import image_to_input

log = logging.getLogger(__name__)
SHIPPED_FACEREG = ASSETS / "facereg"
FACEREG_ONNX = "facereg.onnx"
FACEREG_INT8 = "facereg.int8.onnx"
FACEREG_INT8_META = "facereg.int8.onnx.json"
EYES_ONNX = "eyes.onnx"  # the eye stage, beside the face network
EYES_META = "eyes.json"  # its eye point indices
EYE_POINTS = 21
MAX_FACEREG_BYTES = 64 << 20
FACEREG_THREADS = 1  # ~1 ms a crop: a second thread gains little and takes a core from the generator


class FaceRegEngine:
    """A DenseFaceReg network that predicts `points` points: the face's 478, or an eye's 21."""

    def __init__(self, model: bytes, label: str, threads: int | None = FACEREG_THREADS, fp16: bool = True,
                 providers: list[str] | None = None, points: int = NUM_LANDMARKS) -> None:
        self.size, self.width = check_facereg_onnx(model, label, points)
        self.session, self.choice, self.provider, self.precision = open_session(model, label, fp16, threads, providers)

    def run(self, crop: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 crop -> (points, 3) float32 crop-normalised points."""
        return self.session.run(["points"], {"crop": image_to_input(crop)[None]})[0][0]


def _read(path: Path) -> bytes:
    if path.is_symlink() or not path.is_file():
        raise EngineError(f"{path} is missing; reinstall h2h, or make it with h2h train-facereg and h2h export-facereg")
    if path.stat().st_size > MAX_FACEREG_BYTES:
        raise EngineError(f"{path} is larger than {MAX_FACEREG_BYTES >> 20} MB; not a DenseFaceReg model")
    return path.read_bytes()


def write_int8_record(folder: Path, onnx: bytes, mean_error: float) -> None:
    """Which fp32 model the int8 one was made from, and how close it came (its gate)."""
    record = {"parent_onnx_sha256": bytes_sha256(onnx), "mean_point_error": mean_error}
    atomic_write_bytes(folder / FACEREG_INT8_META, json.dumps(record, indent=2).encode())


def _int8_current(folder: Path, onnx: bytes) -> bool:
    try:
        record = json.loads((folder / FACEREG_INT8_META).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get("parent_onnx_sha256") == bytes_sha256(onnx) and (folder / FACEREG_INT8).is_file()


def load_facereg_engine(folder: Path | None = None, int8: bool = False, threads: int | None = FACEREG_THREADS,
                        providers: list[str] | None = None) -> FaceRegEngine:
    """DenseFaceReg from `folder` (the shipped one by default), fp32; with `int8`, the int8 model
    on CPUs when it is current. fp32 is the default: int8 saved ~0.3 ms a frame and cost the
    eyes most of their correlation with the teacher and doubled the jitter (docs/RESULTS.md)."""
    folder = folder or SHIPPED_FACEREG
    onnx = _read(folder / FACEREG_ONNX)
    engine = FaceRegEngine(onnx, str(folder / FACEREG_ONNX), threads, providers=providers)
    if int8 and engine.provider.endswith("(CPUExecutionProvider)") and _int8_current(folder, onnx):
        engine = FaceRegEngine(_read(folder / FACEREG_INT8), str(folder / FACEREG_INT8), threads, fp16=False, providers=providers)
        engine.precision = "int8"
    log.info("DenseFaceReg: %s, %s", engine.provider, engine.precision)
    return engine


def load_eye_engine(folder: Path | None = None, threads: int | None = FACEREG_THREADS,
                    providers: list[str] | None = None) -> tuple[FaceRegEngine, np.ndarray] | None:
    """The eye stage in `folder` (the shipped one by default) and its eye point indices (2, 21),
    or None when the folder has none; EngineError when it has one that cannot be used."""
    folder = folder or SHIPPED_FACEREG
    if not (folder / EYES_ONNX).exists():
        return None
    engine = FaceRegEngine(_read(folder / EYES_ONNX), str(folder / EYES_ONNX), threads, providers=providers, points=EYE_POINTS)
    try:
        record = json.loads(_read(folder / EYES_META))
        return engine, checked_eye_points(record.get("eye_points") if isinstance(record, dict) else None, EYE_POINTS, str(folder / EYES_META))
    except ValueError as exc:
        raise EngineError(f"{exc}; reinstall h2h or export the eye stage again") from exc
