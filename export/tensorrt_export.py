"""engines/generator.onnx -> a TensorRT engine for this GPU in this machine's cache, checked
against ONNX Runtime."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..engines.base import EngineError
from ..engines.cache import engine_path, stale_engines
from ..engines.onnx_engine import OnnxEngine
from ..engines.select import ONNX_FILE, read_onnx
from ..engines.tensorrt_engine import current_key, load_or_build, tensorrt_missing
from ..models.avatar import Avatar
from .onnx_export import PARITY_FRAMES, conditioning_frames, parity

FP16_TOLERANCE = 0.05  # outputs are in [-1, 1]; fp16 engines drift by a few 1e-3 typically


@dataclass
class TensorRTResult:
    plan: Path
    max_abs_error: float
    removed_stale: list[str]


def export_tensorrt(avatar: Avatar, fp16: bool = True, sequential: bool = True) -> TensorRTResult:
    """Build (or reuse) the engine keyed by GPU, compute capability, TensorRT and ONNX hash."""
    reason = tensorrt_missing()
    if reason:
        raise EngineError(reason)
    onnx = read_onnx(avatar)
    if onnx is None:
        raise EngineError(f"avatar '{avatar.name}' has no {ONNX_FILE}; run h2h export {avatar.name} first")
    label = str(avatar.path / "engines" / ONNX_FILE)
    reference = OnnxEngine(onnx, label, avatar.resolution, sequential, providers=["CPUExecutionProvider"])
    key = current_key(onnx, fp16)
    removed = []
    for stale in stale_engines(key):
        stale.unlink()
        removed.append(stale.name)
    engine = load_or_build(onnx, label, sequential, fp16)
    error = parity(reference, engine, conditioning_frames(avatar, PARITY_FRAMES))
    tolerance = FP16_TOLERANCE if fp16 else 1e-3
    plan = engine_path(key)
    if error > tolerance:
        plan.unlink(missing_ok=True)  # never leave a failed engine for load() to pick up
        raise EngineError(f"TensorRT engine differs from ONNX Runtime by {error:.3g} (> {tolerance:g}); removed it")
    return TensorRTResult(plan, error, removed)
