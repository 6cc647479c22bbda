"""TensorRT 10 engine: build from ONNX (FP16 by default, static shapes), cache in this
machine's per-user cache (never in an avatar folder: a plan is code), run with tensor
addresses and execute_async_v3 on torch CUDA buffers. Needs an NVIDIA GPU."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..models.io_utils import atomic_write_bytes
from .base import EngineError, TensorSpec
from .cache import EngineKey, bytes_sha256, engine_path

log = logging.getLogger(__name__)
HOW_TO_GET = "install an NVIDIA driver, a CUDA build of torch and `pip install tensorrt` (TensorRT 10)"


def tensorrt_missing() -> str | None:
    """Why TensorRT cannot run here, or None when it can."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return f"TensorRT is not installed; {HOW_TO_GET}"
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"no CUDA GPU is available; {HOW_TO_GET}"
    return None


def current_key(onnx: bytes, fp16: bool) -> EngineKey:
    import tensorrt as trt
    import torch

    return EngineKey(
        gpu=torch.cuda.get_device_name(0),
        capability=tuple(torch.cuda.get_device_capability(0)),
        trt_version=trt.__version__,
        onnx_sha256=bytes_sha256(onnx),
        precision="fp16" if fp16 else "fp32",
    )


def build_engine(onnx: bytes, label: str, out: Path, fp16: bool = True, workspace_gb: float = 2.0) -> Path:
    """Parse the (checked) ONNX bytes, build a serialized engine and write it atomically."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: always explicit batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse {label}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if fp16:
        if not builder.platform_has_fast_fp16:
            log.warning("this GPU has no fast FP16; building FP16 anyway")
        config.set_flag(trt.BuilderFlag.FP16)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"TensorRT failed to build an engine from {label}")
    atomic_write_bytes(out, bytes(serialized))
    return out


class TensorRTEngine:
    """A deserialized engine with static 1x shapes; buffers are torch CUDA tensors."""

    def __init__(self, plan: Path, sequential: bool = True, fp16: bool = True) -> None:
        import tensorrt as trt
        import torch

        self._torch = torch
        logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(logger)
        self.engine = self.runtime.deserialize_cuda_engine(plan.read_bytes())
        if self.engine is None:
            raise EngineError(f"{plan}: TensorRT could not load this engine (built for another GPU or version?)")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        self.provider = "TensorRT"
        self.precision = "fp16" if fp16 else "fp32"
        self.sequential = sequential
        self.inputs, self.outputs, self._buffers = [], [], {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            dtype = torch.float16 if self.engine.get_tensor_dtype(name) == trt.DataType.HALF else torch.float32
            buffer = torch.empty(shape, dtype=dtype, device="cuda")
            self._buffers[name] = buffer
            self.context.set_tensor_address(name, buffer.data_ptr())
            spec = TensorSpec(name, shape, str(dtype).removeprefix("torch."))
            (self.inputs if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else self.outputs).append(spec)

    def run(self, cond: np.ndarray, prev: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.cuda.stream(self.stream):
            for spec, array in zip(self.inputs, (cond, prev)):
                self._buffers[spec.name].copy_(torch.from_numpy(array), non_blocking=False)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise EngineError("TensorRT execution failed")
            out = self._buffers[self.outputs[0].name].float().cpu()
        self.stream.synchronize()
        return out.numpy()


def cached_plan(onnx: bytes, fp16: bool = True) -> Path | None:
    """This machine's plan for this GPU/TensorRT/ONNX, if it was built; None without TensorRT."""
    if tensorrt_missing():
        return None
    plan = engine_path(current_key(onnx, fp16))
    return plan if plan.is_file() else None


def load_or_build(onnx: bytes, label: str, sequential: bool, fp16: bool = True, build: bool = True) -> TensorRTEngine:
    """The engine for this GPU/TensorRT/ONNX from this machine's cache, built first when
    missing and allowed. `onnx` must already have passed check_generator_onnx."""
    reason = tensorrt_missing()
    if reason:
        raise EngineError(reason)
    plan = engine_path(current_key(onnx, fp16))
    if not plan.exists():
        if not build:
            raise EngineError(f"no TensorRT engine for this GPU/TensorRT/ONNX ({plan.name}); run h2h export --trt")
        log.info("building TensorRT engine %s (a few minutes, once per GPU)", plan.name)
        build_engine(onnx, label, plan, fp16)
    return TensorRTEngine(plan, sequential, fp16)
