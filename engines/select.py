"""Pick the best engine an avatar and this machine allow: TensorRT, ONNX Runtime, PyTorch."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from .base import Engine, EngineError

log = logging.getLogger(__name__)
CHOICES = ("auto", "trt", "onnx", "torch")
ONNX_FILE = "generator.onnx"
ONNX_META = "generator.onnx.json"
INT8_FILE = "generator.int8.onnx"


def _onnx_meta(engines: Path) -> dict:
    try:
        return json.loads((engines / ONNX_META).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def engine_status(avatar_path: Path) -> str:
    """What the avatar can run on, for listings: TensorRT, ONNX, PyTorch or none."""
    engines = avatar_path / "engines"
    if any(engines.glob("generator.*.plan")):
        return "TensorRT"
    if (engines / ONNX_FILE).is_file():
        return "ONNX"
    if any((avatar_path / "checkpoints").glob("*/generator.safetensors")):
        return "PyTorch"
    return "none"


def load(avatar_path: Path, prefer: str = "auto", run: str | None = None, fp16: bool = True, int8: bool = True) -> Engine:
    """The engine to drive this avatar with; each fallback is logged with its reason.

    run=None takes whatever run was exported (PyTorch falls back to run "main"); a named run
    uses the exported engines only if they were exported from that run."""
    if prefer not in CHOICES:
        raise EngineError(f"unknown engine {prefer!r}; choose one of {', '.join(CHOICES)}")
    engines = avatar_path / "engines"
    onnx = engines / ONNX_FILE
    meta = _onnx_meta(engines)
    sequential = bool(meta.get("sequential", True))
    reasons = []
    if run is not None and onnx.is_file() and meta.get("run", run) != run:
        reasons.append(f"exported engines are of run '{meta.get('run')}', not '{run}'")
        prefer = "torch" if prefer == "auto" else prefer
        if prefer != "torch":
            raise EngineError(f"{reasons[0]}; run h2h export --run {run} first")
    if prefer in ("auto", "trt"):
        from .tensorrt_engine import load_or_build, tensorrt_missing

        reason = tensorrt_missing() or (None if onnx.is_file() else f"no {ONNX_FILE}; run h2h export first")
        if reason is None:
            try:
                return load_or_build(onnx, sequential, fp16)
            except EngineError as exc:
                reason = str(exc)
        if prefer == "trt":
            raise EngineError(f"TensorRT engine unavailable: {reason}")
        reasons.append(f"TensorRT skipped ({reason})")
    if prefer in ("auto", "onnx"):
        from .onnx_engine import OnnxEngine

        if onnx.is_file():
            try:
                engine = OnnxEngine(onnx, sequential, fp16)
                if int8 and engine.provider.endswith("(CPUExecutionProvider)") and (engines / INT8_FILE).is_file():
                    engine = OnnxEngine(engines / INT8_FILE, sequential, fp16=False)  # 2.6x faster on CPUs
                    engine.precision = "int8"
                _log_choice(engine, reasons)
                return engine
            except EngineError as exc:
                reasons.append(f"ONNX Runtime skipped ({exc})")
        else:
            reasons.append(f"ONNX Runtime skipped (no {ONNX_FILE}; run h2h export)")
        if prefer == "onnx":
            raise EngineError("; ".join(reasons))
    from .torch_engine import TorchEngine

    try:
        engine = TorchEngine(avatar_path / "checkpoints" / (run or "main"))
    except Exception as exc:
        raise EngineError("; ".join([*reasons, f"PyTorch: {exc}"])) from exc
    _log_choice(engine, reasons)
    return engine


def _log_choice(engine: Engine, reasons: list[str]) -> None:
    for reason in reasons:
        log.info("%s", reason)
    log.info("engine: %s, %s", engine.provider, engine.precision)
