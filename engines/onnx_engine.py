"""ONNX Runtime engine: TensorRT, CUDA and CPU execution providers, in that order.

The model is handed to ONNX Runtime as checked bytes (never a path into an avatar folder),
so the file cannot change between the check and the load; ONNX Runtime's TensorRT cache
lives in this machine's per-user cache, never beside the model."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from .base import EngineError, TensorSpec
from .cache import bytes_sha256, ort_tensorrt_cache
from .onnx_check import check_generator_onnx

log = logging.getLogger(__name__)
PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def session_options(threads: int | None = None):
    """Latency-tuned options: full graph optimisation, sequential execution, intra-op
    threads = the machine's cores (2 threads ran 1.2-1.6x faster than 1 here)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads or max(1, min(os.cpu_count() or 1, 8))
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return opts


def choose_providers(available: list[str], fp16: bool, cache_dir: Path) -> list:
    """Preferred providers that this onnxruntime build has, with their options."""
    chosen: list = []
    for name in PREFERRED:
        if name not in available:
            continue
        if name == "TensorrtExecutionProvider":
            cache_dir.mkdir(parents=True, exist_ok=True)
            chosen.append((name, {"trt_fp16_enable": fp16, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir)}))
        else:
            chosen.append(name)
    return chosen


class OnnxEngine:
    """An ONNX Runtime session on the exported generator step.

    `model` is the ONNX file's bytes; `label` names it in messages; `size` (the avatar's
    resolution) turns on the generator-step check, which refuses external data."""

    def __init__(self, model: bytes, label: str, size: int | None = 256, sequential: bool = True, fp16: bool = True,
                 threads: int | None = None, providers: list[str] | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise EngineError("onnxruntime is not installed; pip install onnxruntime (or onnxruntime-gpu)") from exc
        if size is not None:
            check_generator_onnx(model, size, label)
        available = providers or ort.get_available_providers()
        chosen = choose_providers(available, fp16, ort_tensorrt_cache(bytes_sha256(model)))
        try:
            self.session = ort.InferenceSession(model, session_options(threads), providers=chosen)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise EngineError(f"{label}: ONNX Runtime cannot load it ({type(exc).__name__}); run h2h export again") from exc
        active = self.session.get_providers()[0]
        self.provider = f"ONNX Runtime ({active})"
        self.precision = "fp16" if fp16 and active == "TensorrtExecutionProvider" else "fp32"
        self.sequential = sequential
        self.inputs = [TensorSpec(i.name, tuple(i.shape), "float32") for i in self.session.get_inputs()]
        self.outputs = [TensorSpec(o.name, tuple(o.shape), "float32") for o in self.session.get_outputs()]
        self._names = [i.name for i in self.inputs]

    def run(self, cond: np.ndarray, prev: np.ndarray) -> np.ndarray:
        feeds = dict(zip(self._names, (np.ascontiguousarray(cond, np.float32), np.ascontiguousarray(prev, np.float32))))
        return self.session.run(None, feeds)[0]
