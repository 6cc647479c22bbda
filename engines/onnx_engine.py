"""ONNX Runtime engine on the best execution provider this build offers (engines/runtimes.py).

The model is handed to ONNX Runtime as checked bytes (never a path into an avatar folder),
so the file cannot change between the check and the load; ONNX Runtime's TensorRT cache
lives in this machine's per-user cache, never beside the model."""
from __future__ import annotations

import logging
import os

import numpy as np

from .base import CORRESPONDENCE, EngineError, TensorSpec, correspondence_feed
from .cache import bytes_sha256, ort_tensorrt_cache
from .onnx_check import check_generator_onnx
from .runtimes import choose_providers, create_session, runtime_problem

log = logging.getLogger(__name__)


def session_options(threads: int | None = None):
    """Latency-tuned options: full graph optimisation, sequential execution, intra-op
    threads = the machine's cores (2 threads ran 1.2-1.6x faster than 1 here), and no
    spinning: between frames ORT's idle workers would otherwise busy-wait on the cores the
    face tracker and renderer need (on 2 cores beside one busy process, the generator step
    took 22 ms spinning against 16 ms without; docs/RESULTS.md, "Speed of the live path")."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads or max(1, min(os.cpu_count() or 1, 8))
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def open_session(model: bytes, label: str, fp16: bool = True, threads: int | None = None,
                 providers: list[str] | None = None):
    """(session, provider choice, provider label, precision) for checked ONNX bytes on the
    best provider this build offers (or the `providers` asked for)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise EngineError(runtime_problem() or f"ONNX Runtime cannot be imported ({exc})") from exc
    problem = runtime_problem()
    sha256 = bytes_sha256(model)
    explicit_trt = bool(providers) and "TensorrtExecutionProvider" in providers
    choice = choose_providers(providers or ort.get_available_providers(), fp16, ort_tensorrt_cache(sha256), sha256, explicit_trt)
    if problem:
        choice.reasons.append(problem)
    try:
        session = create_session(model, session_options(threads), choice, label)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise EngineError(f"{label}: ONNX Runtime cannot load it ({type(exc).__name__}); run h2h export again") from exc
    active = session.get_providers()[0]
    precision = "fp16" if fp16 and active == "TensorrtExecutionProvider" else "fp32"
    return session, choice, f"ONNX Runtime ({active})", precision


class OnnxEngine:
    """An ONNX Runtime session on the exported generator step.

    `model` is the ONNX file's bytes; `label` names it in messages; `size` is the avatar's
    resolution, which the generator-step check (no external data, cond/prev[/corr] -> frame) uses."""

    def __init__(self, model: bytes, label: str, size: int = 256, sequential: bool = True, fp16: bool = True,
                 threads: int | None = None, providers: list[str] | None = None) -> None:
        check_generator_onnx(model, size, label)
        self.session, self.choice, self.provider, self.precision = open_session(model, label, fp16, threads, providers)
        self.sequential = sequential
        self.inputs = [TensorSpec(i.name, tuple(i.shape), "float32") for i in self.session.get_inputs()]
        self.outputs = [TensorSpec(o.name, tuple(o.shape), "float32") for o in self.session.get_outputs()]
        self._corr_shape = next((i.shape for i in self.inputs if i.name == CORRESPONDENCE), None)

    def run(self, cond: np.ndarray, prev: np.ndarray, corr: np.ndarray | None = None) -> np.ndarray:
        """Inputs bound by name (the generator step's `cond`, `prev` and, if it takes one,
        `corr`), never by position."""
        feeds = {"cond": np.ascontiguousarray(cond, np.float32), "prev": np.ascontiguousarray(prev, np.float32)}
        if self._corr_shape is not None:
            feeds[CORRESPONDENCE] = correspondence_feed(self._corr_shape, corr)
        return self.session.run(["frame"], feeds)[0]
