"""Trained generator -> engines/generator.onnx (one step, static 1x shapes, opset 18),
checked against PyTorch on real conditioning from the avatar."""
from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ..engines.base import CORRESPONDENCE, EngineError
from ..engines.cache import bytes_sha256
from ..engines.onnx_engine import OnnxEngine
from ..engines.select import INT8_FILE, INT8_META, INT8_MIN_PSNR, ONNX_FILE, ONNX_META
from ..engines.stepper import GeneratorStepper
from ..engines.torch_engine import TorchEngine
from ..models.avatar import Avatar
from ..models.geometry.face_model import load_face_model
from ..models.geometry.nmfc import NMFCRenderer, correspondence
from ..models.geometry.retarget import tracked_mesh
from ..models.io_utils import atomic_write_bytes

log = logging.getLogger(__name__)
OPSET = 18
FP32_TOLERANCE = 1e-3
META_FILE = ONNX_META
PARITY_FRAMES = 6
CALIBRATION_FRAMES = 24


@dataclass
class ExportResult:
    onnx: Path
    max_abs_error: float
    frames_checked: int
    int8: Path | None = None
    int8_psnr: float | None = None


def onnx_bytes(module: torch.nn.Module, example: tuple[torch.Tensor, ...], inputs: list[str], outputs: list[str]) -> bytes:
    """A module as self-contained ONNX bytes with static shapes (made in a private temporary
    folder, never in the avatar folder, whose files are only replaced atomically once checked)."""
    for noisy in ("torch.onnx", "onnxscript", "onnx_ir"):  # their INFO lines are the exporter's own chatter
        logging.getLogger(noisy).setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module, example, dynamo=True, opset_version=OPSET, input_names=inputs, output_names=outputs, external_data=False,
        )
    with tempfile.TemporaryDirectory() as tmp:
        program.save(str(Path(tmp) / "model.onnx"))
        return (Path(tmp) / "model.onnx").read_bytes()


def export_onnx(generator: torch.nn.Module) -> bytes:
    """One generator step as ONNX bytes."""
    return onnx_bytes(generator, generator.example_inputs(), ["cond", "prev"], ["frame"])


def spread_over(indices: np.ndarray, count: int) -> np.ndarray:
    """At most `count` of `indices`, evenly spread from the first to the last."""
    return indices[np.linspace(0, len(indices) - 1, min(count, len(indices))).round().astype(int)]


def conditioning_frames(avatar: Avatar, count: int, photos: int = 0) -> list[tuple]:
    """Consecutive real (NMFC, eyes) pairs from the avatar's test split; with `photos`, a
    one-shot avatar's frames, each with its correspondence to those photos (the generator's
    third input)."""
    indices = avatar.split_indices("test")[:count]
    frames = [(avatar.read_image("nmfc", int(i)), avatar.read_image("eyes", int(i))) for i in indices]
    if not photos:
        return frames
    model = load_face_model()
    meshes = avatar.photo_meshes(model, photos)
    renderer = NMFCRenderer(model, avatar.resolution)
    try:
        return [(*frame, correspondence(renderer, tracked_mesh(model, avatar.subject, avatar.tracks, int(i)), meshes))
                for frame, i in zip(frames, indices)]
    finally:
        renderer.close()


Feeds = dict[str, np.ndarray]  # one step's inputs by name: cond, prev and, for a one-shot generator, corr


def recorded_steps(reference, frames: list[tuple]) -> list[tuple[Feeds, np.ndarray]]:
    """(inputs, output) of the reference engine stepping through a sequence of (NMFC, eyes)
    or (NMFC, eyes, correspondence) frames."""
    recorded: list[tuple[Feeds, np.ndarray]] = []

    def record(cond: np.ndarray, prev: np.ndarray, corr: np.ndarray | None = None) -> np.ndarray:
        out = reference.run(cond, prev, corr)
        feeds = {"cond": cond.copy(), "prev": prev.copy()}  # the stepper reuses its buffers
        if corr is not None:
            feeds[CORRESPONDENCE] = corr
        recorded.append((feeds, out))
        return out

    stepper = GeneratorStepper(record, sequential=reference.sequential)
    for frame in frames:
        stepper(*frame)
    return recorded


def parity(reference, candidate, frames: list[tuple]) -> float:
    """Max abs difference of the raw outputs over a sequence, both fed the same inputs
    (the reference's previous outputs), so errors do not compound; NaN when any output is NaN."""
    return float(np.max([np.abs(candidate.run(**feeds) - expected).max() for feeds, expected in recorded_steps(reference, frames)]))


def export_int8(avatar: Avatar, onnx: bytes, sequential: bool) -> tuple[Path, float]:
    """engines/generator.int8.onnx calibrated on the avatar's training conditioning."""
    picks = spread_over(avatar.split_indices("train"), CALIBRATION_FRAMES)
    calibration = [(avatar.read_image("nmfc", int(i)), avatar.read_image("eyes", int(i))) for i in picks]
    return write_int8(avatar.files.path("engines"), onnx, avatar.resolution, sequential, calibration,
                      conditioning_frames(avatar, PARITY_FRAMES))


def write_int8(engines: Path, onnx: bytes, size: int, sequential: bool, calibration_frames: list[tuple],
               parity_frames: list[tuple], conv_only: bool = False) -> tuple[Path, float]:
    """engines/generator.int8.onnx calibrated on `calibration_frames` (NMFC, eyes[, correspondence]); refused
    below INT8_MIN_PSNR against the fp32 model on `parity_frames`. Its metadata names the fp32
    model's sha256. `conv_only`: see quantize_int8."""
    from .quantize import output_psnr, quantize_int8

    fp32 = OnnxEngine(onnx, ONNX_FILE, size, sequential, providers=["CPUExecutionProvider"])
    calibration = [feeds for feeds, _ in recorded_steps(fp32, calibration_frames)]
    quantized = quantize_int8(onnx, calibration, float_output=True, conv_only=conv_only)
    int8 = OnnxEngine(quantized, INT8_FILE, size, sequential, fp16=False, providers=["CPUExecutionProvider"])
    steps = recorded_steps(fp32, parity_frames)
    psnr = min(output_psnr(int8.run(**feeds), out) for feeds, out in steps)
    if psnr < INT8_MIN_PSNR:
        raise EngineError(f"int8 model is too far from fp32 ({psnr:.1f} dB < {INT8_MIN_PSNR:g} dB PSNR); not saved")
    path = engines / INT8_FILE
    atomic_write_bytes(path, quantized)
    meta = {"from": ONNX_FILE, "parent_onnx_sha256": bytes_sha256(onnx), "psnr_vs_fp32_db": psnr,
            "calibration_frames": len(calibration), "sequential": sequential}
    atomic_write_bytes(engines / INT8_META, json.dumps(meta, indent=2).encode())
    return path, psnr


def export_avatar(avatar: Avatar, run: str = "main", int8: bool = False) -> ExportResult:
    """Write and check engines/generator.onnx; fail above FP32_TOLERANCE."""
    avatar.require_video("h2h export")
    reference = TorchEngine(avatar.files, run, size=avatar.resolution)
    engines = avatar.files.path("engines")
    engines.mkdir(exist_ok=True)
    out = avatar.files.path(f"engines/{ONNX_FILE}")
    data = export_onnx(reference.generator)
    frames = conditioning_frames(avatar, PARITY_FRAMES)
    candidate = OnnxEngine(data, ONNX_FILE, avatar.resolution, reference.sequential, providers=["CPUExecutionProvider"])
    error = parity(reference, candidate, frames)
    if error > FP32_TOLERANCE:
        raise EngineError(f"ONNX export differs from PyTorch by {error:.2e} (> {FP32_TOLERANCE:g}); the previous engine is kept")
    atomic_write_bytes(out, data)  # only a checked export replaces the engine in use
    meta = {
        "run": run,
        "preset": reference.meta.get("preset"),
        "step": reference.meta.get("step"),
        "sequential": reference.sequential,
        "opset": OPSET,
        "max_abs_error_vs_torch": error,
        "frames_checked": len(frames),
        "onnx_sha256": bytes_sha256(data),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_bytes(engines / META_FILE, json.dumps(meta, indent=2).encode())
    result = ExportResult(out, error, len(frames))
    if int8:
        result.int8, result.int8_psnr = export_int8(avatar, data, reference.sequential)
    else:
        remove_stale_int8(avatar, INT8_FILE, INT8_META)
    return result


def remove_stale_int8(avatar: Avatar, int8_file: str, int8_meta: str) -> None:
    """Delete an int8 model (and its metadata) made from an older export: it is stale."""
    if avatar.files.is_file(f"engines/{int8_file}"):
        avatar.files.path(f"engines/{int8_file}").unlink()
        avatar.files.path(f"engines/{int8_meta}").unlink(missing_ok=True)
