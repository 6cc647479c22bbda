"""TensorRT engines: which checked plan this machine has for a generator or a DenseFaceReg
network, and running it.

Plans are built and checked only by `h2h export --trt` and `h2h export-facereg --trt` (export/tensorrt_export.py, with the
builder in engines/tensorrt_build.py) into this machine's cache, never in an avatar folder (a
plan is code). Running follows the TensorRT 10 name-based API, unchanged in 11: tensors are
found by name (`num_io_tensors`, `get_tensor_name`), bound with `set_tensor_address` and run
with `execute_async_v3` on a torch CUDA stream; inputs and outputs are bound by name."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .base import CORRESPONDENCE, EngineError, TensorSpec, correspondence_feed
from .cache import EngineKey, bytes_sha256, engine_path, read_record

log = logging.getLogger(__name__)
HOW_TO_GET = "on an NVIDIA machine run: H2H_GPU=1 bash scripts/setup.sh (CUDA torch, onnxruntime-gpu, TensorRT)"
PRECISIONS = ("fp16", "fp32")  # preferred first


def tensorrt_missing() -> str | None:
    """Why TensorRT cannot run here, or None when it can."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return f"TensorRT is not installed; {HOW_TO_GET}"
    except Exception as exc:  # a broken install (missing CUDA libraries) must not crash the app
        return f"TensorRT cannot be imported ({type(exc).__name__}: {exc}); {HOW_TO_GET}"
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"no CUDA GPU is available (torch {torch.__version__}, CUDA build {torch.version.cuda}); {HOW_TO_GET}"
    return None


def tensorrt_major() -> int:
    import tensorrt as trt

    return int(trt.__version__.split(".")[0])


def current_key(onnx: bytes, precision: str, kind: str = "generator") -> EngineKey:
    import tensorrt as trt
    import torch

    return EngineKey(
        gpu=torch.cuda.get_device_name(0),
        capability=tuple(torch.cuda.get_device_capability(0)),
        trt_version=trt.__version__,
        onnx_sha256=bytes_sha256(onnx),
        precision=precision,
        kind=kind,
    )


def checked_plan(onnx: bytes, kind: str = "generator") -> tuple[Path, str] | None:
    """(plan, precision) of a plan of `kind` this machine built for this GPU, TensorRT and ONNX
    whose parity check passed (fp16 preferred, fp32 accepted); None without one or without TensorRT."""
    if tensorrt_missing():
        return None
    for precision in PRECISIONS:
        plan = engine_path(current_key(onnx, precision, kind))
        record = read_record(plan)
        if plan.is_file() and record is not None and record.get("status") == "passed":
            return plan, precision
    return None


def load_checked(onnx: bytes, sequential: bool) -> "TensorRTEngine":
    """The checked engine for this generator; never builds (that is h2h export --trt)."""
    reason = tensorrt_missing()
    if reason:
        raise EngineError(reason)
    found = checked_plan(onnx)
    if found is None:
        raise EngineError("no checked TensorRT engine for this GPU and generator yet; run h2h export NAME --trt (minutes, once per GPU)")
    return TensorRTEngine(*found, sequential=sequential)


_LOGGER = []


def shared_logger():
    """One TensorRT logger for every runtime of the process, alive as long as it is (TensorRT
    keeps a single global logger)."""
    import tensorrt as trt

    if not _LOGGER:
        _LOGGER.append(trt.Logger(trt.Logger.WARNING))
    return _LOGGER[0]


class PlanEngine:
    """A deserialized engine with static shapes: one torch CUDA buffer per tensor, bound by
    tensor name, run on the engine's own stream; `required` names the tensors it must have."""

    def __init__(self, plan: Path, precision: str, required: set[str]) -> None:
        import tensorrt as trt
        import torch

        self._torch = torch
        self.runtime = trt.Runtime(shared_logger())
        self.engine = self.runtime.deserialize_cuda_engine(plan.read_bytes())
        if self.engine is None:
            raise EngineError(f"{plan.name}: TensorRT could not load this engine (built for another GPU or version?)")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        self.provider, self.precision = "TensorRT", precision
        self.inputs, self.outputs, self.buffers = [], [], {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            dtype = torch.float16 if self.engine.get_tensor_dtype(name) == trt.DataType.HALF else torch.float32
            self.buffers[name] = torch.empty(shape, dtype=dtype, device="cuda")
            self.context.set_tensor_address(name, self.buffers[name].data_ptr())
            spec = TensorSpec(name, shape, str(dtype).removeprefix("torch."))
            (self.inputs if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else self.outputs).append(spec)
        missing = required - set(self.buffers)
        if missing:
            raise EngineError(f"{plan.name}: the engine lacks the tensors {sorted(missing)}; build it again "
                              "(h2h export NAME --trt, or h2h export-facereg --trt)")

    def pinned(self, names: tuple[str, ...]) -> dict:
        """Page-locked float32 host buffers shaped like the engine's tensors `names` (those it has)."""
        return {name: self._torch.empty(self.buffers[name].shape, dtype=self._torch.float32).pin_memory()
                for name in names if name in self.buffers}

    def execute(self) -> None:
        """Run the engine on its stream (callers enqueue their copies there around it)."""
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise EngineError("TensorRT execution failed")


class TensorRTEngine(PlanEngine):
    """A generator step's plan (cond, prev[, corr] -> frame); host copies go through pinned buffers."""

    def __init__(self, plan: Path, precision: str = "fp16", sequential: bool = True) -> None:
        super().__init__(plan, precision, {"cond", "prev", "frame"})
        self.sequential = sequential
        self._host = self.pinned(("cond", "prev", CORRESPONDENCE, "frame"))

    def run_device(self, cond, prev, corr=None):
        """One step on CUDA tensors (cond, prev and, if the engine takes it, corr as float32 on
        the GPU; no corr or one of another shape: zeros) -> the frame on the GPU."""
        torch = self._torch
        caller = torch.cuda.current_stream()
        self.stream.wait_stream(caller)  # the inputs were written on the caller's stream
        with torch.cuda.stream(self.stream):
            self.buffers["cond"].copy_(cond, non_blocking=True)
            self.buffers["prev"].copy_(prev, non_blocking=True)
            if CORRESPONDENCE in self.buffers:
                target = self.buffers[CORRESPONDENCE]
                if corr is None or tuple(corr.shape) != tuple(target.shape):
                    target.zero_()
                else:
                    target.copy_(corr, non_blocking=True)
            self.execute()
        caller.wait_stream(self.stream)  # and the frame is read there after the engine is done
        return self.buffers["frame"]

    def run(self, cond: np.ndarray, prev: np.ndarray, corr: np.ndarray | None = None) -> np.ndarray:
        """numpy in and out through pinned host buffers allocated once."""
        torch = self._torch
        self._host["cond"].numpy()[:] = cond
        self._host["prev"].numpy()[:] = prev
        if CORRESPONDENCE in self._host:
            self._host[CORRESPONDENCE].numpy()[:] = correspondence_feed(tuple(self._host[CORRESPONDENCE].shape), corr)
        with torch.cuda.stream(self.stream):  # every upload on the engine's stream, ordered before its copies
            device_corr = self._host[CORRESPONDENCE].cuda(non_blocking=True) if CORRESPONDENCE in self._host else None
            out = self.run_device(self._host["cond"].cuda(non_blocking=True), self._host["prev"].cuda(non_blocking=True), device_corr)
            self._host["frame"].copy_(out.float(), non_blocking=True)
        self.stream.synchronize()
        return self._host["frame"].numpy().copy()


class FaceRegPlan(PlanEngine):
    """A DenseFaceReg network's plan (crop -> points, static batch), numpy in and out."""

    def __init__(self, plan: Path, precision: str = "fp32") -> None:
        super().__init__(plan, precision, {"crop", "points"})
        self._host = self.pinned(("crop", "points"))

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """(B, 3, H, W) float32 crops, B the plan's batch -> (B, points, 3)."""
        torch = self._torch
        if tuple(inputs.shape) != tuple(self._host["crop"].shape):
            raise ValueError(f"this plan reads crops of shape {tuple(self._host['crop'].shape)}, not {tuple(inputs.shape)}")
        self._host["crop"].numpy()[:] = inputs
        try:
            with torch.cuda.stream(self.stream):
                self.buffers["crop"].copy_(self._host["crop"], non_blocking=True)
                self.execute()
                self._host["points"].copy_(self.buffers["points"].float(), non_blocking=True)
        finally:
            self.stream.synchronize()  # no copy still reads the pinned buffers when the next call writes them
        return self._host["points"].numpy().copy()
