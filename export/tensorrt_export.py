"""engines/generator.onnx -> a TensorRT plan for this GPU in this machine's cache, checked
against ONNX Runtime. Every verdict is recorded beside the plan: live uses only plans that
passed, and a rejected build is not retried unless asked (--rebuild-trt)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..engines.base import EngineError, correspondence_sources
from ..engines.cache import engine_path, read_record, record_path, stale_engines, write_record
from ..engines.onnx_engine import OnnxEngine
from ..engines.select import ONNX_FILE, read_onnx
from ..engines.tensorrt_build import build_engine, buildable_precision
from ..engines.tensorrt_engine import TensorRTEngine, current_key, tensorrt_missing
from ..models.avatar import Avatar
from .onnx_export import PARITY_FRAMES, conditioning_frames, parity

log = logging.getLogger(__name__)
TOLERANCE = {"fp16": 0.05, "fp32": 1e-3}  # outputs are in [-1, 1]; fp16 drifts by a few 1e-3


@dataclass
class TensorRTResult:
    plan: Path
    precision: str
    max_abs_error: float
    removed_stale: list[str]
    notes: list[str]


def export_tensorrt(avatar: Avatar, fp16: bool = True, sequential: bool = True, rebuild: bool = False) -> TensorRTResult:
    """Build (or reuse) the checked plan keyed by GPU, compute capability, TensorRT, ONNX hash
    and precision; fp16 that drifts is retried once with normalisation layers in fp32."""
    reason = tensorrt_missing()
    if reason:
        raise EngineError(reason)
    onnx = read_onnx(avatar)
    if onnx is None:
        raise EngineError(f"avatar '{avatar.name}' has no {ONNX_FILE}; run h2h export {avatar.name} first")
    label = str(avatar.path / "engines" / ONNX_FILE)
    precision, note = buildable_precision(fp16)
    notes = [note] if note else []
    key = current_key(onnx, precision)
    plan, record = engine_path(key), read_record(engine_path(key))
    if record and record.get("status") == "rejected" and not rebuild:
        raise EngineError(f"the {precision} TensorRT build of this generator was rejected before ({record.get('detail')}); "
                          "pass --rebuild-trt to try again, or --fp32")
    removed = []
    for stale in stale_engines(key):
        stale.unlink(missing_ok=True)
        removed.append(stale.name)
    reference = OnnxEngine(onnx, label, avatar.resolution, sequential, providers=["CPUExecutionProvider"])
    frames = conditioning_frames(avatar, PARITY_FRAMES, correspondence_sources(reference))
    if record and record.get("status") == "passed" and plan.is_file() and not rebuild:
        return TensorRTResult(plan, precision, float(record["max_abs_error"]), removed, notes)
    attempts = [False, True] if precision == "fp16" else [False]
    record_path(plan).unlink(missing_ok=True)  # from here until a verdict, the plan counts as unchecked
    try:
        return _build_and_check(onnx, label, plan, precision, attempts, reference, frames, sequential, removed, notes)
    except BaseException:
        if read_record(plan) is None:
            plan.unlink(missing_ok=True)  # an interrupted or failed build never leaves a plan behind
        raise


def _build_and_check(onnx, label, plan, precision, attempts, reference, frames, sequential, removed, notes) -> TensorRTResult:
    for fp32_norm in attempts:
        build_engine(onnx, label, plan, precision, fp32_norm)
        error = parity(reference, TensorRTEngine(plan, precision, sequential), frames)
        if error <= TOLERANCE[precision]:
            write_record(plan, "passed", max_abs_error=error, fp32_normalisation=fp32_norm, onnx=label)
            if fp32_norm:
                notes.append("normalisation layers run in fp32 (fp16 drifted)")
            return TensorRTResult(plan, precision, error, removed, notes)
        log.info("TensorRT %s engine differs from ONNX Runtime by %.3g%s", precision, error,
                 "; retrying with normalisation in fp32" if not fp32_norm and len(attempts) > 1 else "")
    plan.unlink(missing_ok=True)  # never leave a failed engine for live to pick up
    detail = f"max abs error {error:.3g} > {TOLERANCE[precision]:g} vs ONNX Runtime"
    write_record(plan, "rejected", detail=detail, max_abs_error=error)
    raise EngineError(f"TensorRT {precision} engine rejected: {detail}; live keeps using ONNX Runtime")
