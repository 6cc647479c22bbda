"""DenseFaceReg behind the engine interface: the face network (a square crop -> the 478 points)
and its part stages (a 2:1 crop around one eye -> that eye's 21 points; a square crop around
the mouth -> the lips and the skin around them, of which the tracker redraws the lips), each
run(crops (N, H, W, 3) uint8) -> (N, points, 3) in crop coordinates, N crops in batches of the
network's own (1, or all ten eye crops of a frame). On an NVIDIA GPU each network runs as the
TensorRT plan `h2h export-facereg --trt` built and checked for it in this machine's engine cache
(as the generator's); otherwise, or when that fails, on ONNX Runtime's best provider. In fp32:
reduced precision cost the eyes most of their correlation with the teacher (docs/RESULTS.md). The files are read
through the checked accessor (no links, bounded sizes) and the ONNX bytes checked before ONNX
Runtime sees them."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models.avatar_files import AvatarError, AvatarFiles
from ..models.geometry.face_crop import PARTS, checked_part_points
from ..models.geometry.facereg_tracker import PartStage
from ..models.geometry.topology import ASSETS
from ..models.geometry.tracker import NUM_LANDMARKS
from .base import EngineError, failure
from .onnx_check import check_facereg_onnx
from .onnx_engine import open_session
from .stepper import image_to_input

log = logging.getLogger(__name__)
SHIPPED_FACEREG = ASSETS / "facereg"
FACEREG_ONNX = "facereg.onnx"
PART_FILES = {"eye": ("eyes.onnx", "eyes.json"), "mouth": ("mouth.onnx", "mouth.json")}  # part stage -> its network, its point indices
FACE_ASPECT = 1  # the face crop's width over its height (the parts': face_crop.PARTS)
MAX_FACEREG_BYTES = 64 << 20
FACEREG_THREADS = 1  # ~1 ms a crop: a second thread gains little and takes a core from the generator
FACEREG_KIND = "facereg"  # its TensorRT plans' name in the engine cache


class FaceRegEngine:
    """A checked DenseFaceReg network that predicts `points` points from crops of `aspect`, in
    batches of 1 or `batch` (the crops of a frame; a network exported for them reads them in one run)."""

    def __init__(self, model: bytes, label: str, points: int, aspect: int, threads: int | None = FACEREG_THREADS,
                 providers: list[str] | None = None, batch: int = 1, plan: tuple[Path, str] | None = None) -> None:
        self.size, self.batch = check_facereg_onnx(model, label, points, aspect, batch)
        self.width, self.points, self.label = self.size * aspect, points, label
        self._model, self._threads = model, threads
        self.plan = None
        if plan is None:
            self._open_session(providers)
        else:  # this machine's checked plan of `model` (path, precision)
            from .tensorrt_engine import FaceRegPlan

            self.plan = FaceRegPlan(*plan)
            self.provider, self.precision = self.plan.provider, self.plan.precision

    def _open_session(self, providers: list[str] | None) -> None:
        self.session, self.choice, self.provider, self.precision = open_session(self._model, self.label, False, self._threads, providers)

    def answer(self, inputs: np.ndarray) -> np.ndarray:
        """One batch of network inputs (batch, 3, H, W) float32 -> its raw answer. A TensorRT
        plan that fails while running is dropped for ONNX Runtime (logged), not the tracking."""
        if self.plan is not None:
            try:
                return self.plan.run(inputs)
            except Exception as exc:  # a CUDA error, a failed execution
                log.warning("%s: TensorRT failed (%s); continuing on ONNX Runtime", self.label, failure(exc))
                self.plan = None
                self._open_session(None)
        return self.session.run(["points"], {"crop": inputs})[0]

    def run(self, crops: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 crops, N a multiple of the network's batch -> (N, points, 3) float32
        crop-normalised points; EngineError when the network answers with another shape than it declares."""
        inputs = np.ascontiguousarray(image_to_input(crops))
        if len(inputs) % self.batch:
            raise ValueError(f"{self.label} reads crops in batches of {self.batch}, not {len(inputs)}")
        answers = [self.answer(inputs[i : i + self.batch]) for i in range(0, len(inputs), self.batch)]
        for answer in answers:
            if answer.shape != (self.batch, self.points, 3):
                raise EngineError(f"{self.label}: answered {answer.shape}, not the {self.batch}x{self.points}x3 it declares")
        return np.concatenate(answers)


@dataclass(frozen=True)
class FaceRegModels:
    """The checked bytes of a DenseFaceReg folder: the face network, and each part stage the
    folder has (part -> its network and point indices (2, N))."""

    folder: Path
    face: bytes
    parts: dict[str, tuple[bytes, np.ndarray]]


def read_part(files: AvatarFiles, folder: Path, part: str) -> tuple[bytes, np.ndarray] | None:
    """A part stage's checked network and point indices, or None when the folder has none."""
    onnx, meta_name = PART_FILES[part]
    if not files.is_file(onnx):
        return None
    data = files.read_bytes(onnx, MAX_FACEREG_BYTES)
    check_facereg_onnx(data, str(folder / onnx), PARTS[part].points, PARTS[part].aspect, PARTS[part].batch)
    meta = files.read_json(meta_name)
    return data, checked_part_points(meta.get(PARTS[part].key) if isinstance(meta, dict) else None, PARTS[part], str(folder / meta_name))


def read_facereg(folder: Path | None = None) -> FaceRegModels:
    """The networks in `folder` (the shipped one by default), checked; EngineError saying what to do."""
    folder = folder or SHIPPED_FACEREG
    try:
        files = AvatarFiles(folder)
        face = files.read_bytes(FACEREG_ONNX, MAX_FACEREG_BYTES)
        check_facereg_onnx(face, str(folder / FACEREG_ONNX), NUM_LANDMARKS, FACE_ASPECT)
        parts = {part: found for part in PART_FILES if (found := read_part(files, folder, part)) is not None}
    except (AvatarError, ValueError) as exc:
        raise EngineError(f"{exc}; reinstall h2h, or make it with h2h train-facereg and h2h export-facereg") from exc
    return FaceRegModels(folder, face, parts)


def facereg_problem(folder: Path | None = None) -> str | None:
    """Why DenseFaceReg cannot be loaded from `folder` (no sessions are built), or None."""
    try:
        read_facereg(folder)
    except EngineError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class FaceRegNetwork:
    """One checked network of a DenseFaceReg folder and the crops it reads."""

    onnx: bytes
    label: str
    points: int
    aspect: int
    batch: int = 1

    def engine(self, threads: int | None = FACEREG_THREADS, providers: list[str] | None = None,
               plan: tuple[Path, str] | None = None) -> FaceRegEngine:
        return FaceRegEngine(self.onnx, self.label, self.points, self.aspect, threads, providers, self.batch, plan)


def facereg_networks(models: FaceRegModels) -> list[FaceRegNetwork]:
    """The face network, then each part stage's, in the order of `models.parts`."""
    face = FaceRegNetwork(models.face, str(models.folder / FACEREG_ONNX), NUM_LANDMARKS, FACE_ASPECT)
    return [face, *(FaceRegNetwork(data, str(models.folder / PART_FILES[part][0]), PARTS[part].points, PARTS[part].aspect,
                                   PARTS[part].batch) for part, (data, _) in models.parts.items())]


def tensorrt_plan(onnx: bytes) -> tuple[tuple[Path, str] | None, str | None]:
    """(this machine's checked plan of a network, why there is none where TensorRT could run it)."""
    from .tensorrt_engine import checked_plan, tensorrt_missing

    try:
        if tensorrt_missing():
            return None, None  # no TensorRT here: ONNX Runtime as always (h2h doctor says why)
        found = checked_plan(onnx, FACEREG_KIND)
    except Exception as exc:  # a broken CUDA or TensorRT install must not stop the tracker
        return None, failure(exc)
    return found, None if found else "no checked TensorRT engine for this GPU yet; run h2h export-facereg --trt (once per GPU)"


def open_network(network: FaceRegNetwork, threads: int | None, providers: list[str] | None) -> FaceRegEngine:
    """Its TensorRT plan when this machine has a checked one (and no providers are asked for),
    else ONNX Runtime; a TensorRT failure is logged with its reason and falls back."""
    if providers is None:
        plan, reason = tensorrt_plan(network.onnx)
        if plan is not None:
            try:
                return network.engine(threads, None, plan)
            except Exception as exc:  # CUDA out of memory, a driver error, a TensorRT API mismatch
                reason = failure(exc)
        if reason:
            log.info("%s: TensorRT skipped (%s)", network.label, reason)
    return network.engine(threads, providers)


def load_facereg(folder: Path | None = None, threads: int | None = FACEREG_THREADS,
                 providers: list[str] | None = None) -> tuple[FaceRegEngine, tuple[PartStage, ...]]:
    """(the face network, its part stages) from `folder`."""
    models = read_facereg(folder)
    face, *parts = (open_network(network, threads, providers) for network in facereg_networks(models))
    stages = tuple(PartStage(PARTS[part], engine, rows) for (part, (_, rows)), engine in zip(models.parts.items(), parts))
    log.info("DenseFaceReg: %s, %s%s", face.provider, face.precision, "".join(f", with the {s.part.name} stage" for s in stages))
    return face, stages
