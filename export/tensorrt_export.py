"""engines/generator.onnx -> a TensorRT engine for this GPU, checked against ONNX Runtime."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..engines.base import EngineError
from ..engines.cache import stale_engines
from ..engines.onnx_engine import OnnxEngine
from ..engines.tensorrt_engine import current_key, engine_path, load_or_build, tensorrt_missing
from ..models.avatar import Avatar
from .onnx_export import ONNX_FILE, PARITY_FRAMES, conditioning_frames, parity

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
    onnx = avatar.path / "engines" / ONNX_FILE
    key = current_key(onnx, fp16)
    removed = []
    for stale in stale_engines(onnx.parent, key):
        stale.unlink()
        removed.append(stale.name)
    engine = load_or_build(onnx, sequential, fp16)
    reference = OnnxEngine(onnx, sequential, providers=["CPUExecutionProvider"])
    error = parity(reference, engine, conditioning_frames(avatar, PARITY_FRAMES))
    tolerance = FP16_TOLERANCE if fp16 else 1e-3
    plan = engine_path(onnx.parent, key)
    if error > tolerance:
        plan.unlink(missing_ok=True)  # never leave a failed engine for load() to pick up
        raise EngineError(f"TensorRT engine differs from ONNX Runtime by {error:.3g} (> {tolerance:g}); removed it")
    return TensorRTResult(plan, error, removed)
