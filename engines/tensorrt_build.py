"""Building a TensorRT plan from checked ONNX bytes, for TensorRT 10 and 11.

- TensorRT 10 (weakly typed networks, the default of `create_network(0)`): fp16 through
  `BuilderFlag.FP16`; when fp16 drifts, normalisation layers are pinned to fp32 with
  `ILayer.precision` / `set_output_type` under `BuilderFlag.OBEY_PRECISION_CONSTRAINTS`
  (TensorRT 10 Python API, IBuilderConfig and ILayer).
- TensorRT 11 removed `BuilderFlag.FP16`, the precision-constraint flags and
  `platform_has_fast_fp16`; every network is strongly typed and precision comes from the
  ONNX's own tensor types (NVIDIA, "Migrating from TensorRT 10.x to 11.x", Python API). Our
  export is fp32, so TensorRT 11 builds fp32 (an fp16 engine there needs an fp16 ONNX).
- The timing cache (`create_timing_cache`, `set_timing_cache`, `get_timing_cache().serialize()`)
  is kept in this machine's engine cache, so a rebuild reuses the kernel timings."""
from __future__ import annotations

import logging
from pathlib import Path

from ..models.io_utils import atomic_write_bytes
from .base import EngineError
from .tensorrt_engine import shared_logger, tensorrt_major

log = logging.getLogger(__name__)


def buildable_precision(fp16: bool) -> tuple[str, str | None]:
    """The precision this TensorRT can build from our fp32 ONNX, and why it differs if it does."""
    if fp16 and tensorrt_major() >= 11:
        return "fp32", "TensorRT 11 takes precision from the ONNX's types and the export is fp32; building fp32"
    return ("fp16" if fp16 else "fp32"), None


def build_engine(onnx: bytes, label: str, out: Path, precision: str, fp32_norm: bool = False, workspace_gb: float = 2.0,
                 tf32: bool = True) -> Path:
    """Parse the (checked) ONNX bytes, build a serialized engine and write it atomically. Without
    `tf32`, fp32 layers keep their full precision: TensorRT otherwise may round their inputs to
    TF32's 10-bit mantissa on Ampere and later GPUs (`BuilderFlag.TF32`, on by default)."""
    import tensorrt as trt

    major = tensorrt_major()
    logger = shared_logger()
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # 10.x: weakly typed (explicit batch); 11.x: always strongly typed
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse {label}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    # timings are only valid for one device, CUDA and TensorRT version: named by the plan's machine part
    timing_file = out.parent / f"{out.name.split(f'.{precision}.')[0]}.timing-cache.bin"
    timing = config.create_timing_cache(timing_file.read_bytes() if timing_file.is_file() else b"")
    if not config.set_timing_cache(timing, ignore_mismatch=False):  # a cache from elsewhere: start afresh
        timing = config.create_timing_cache(b"")
        config.set_timing_cache(timing, ignore_mismatch=False)
    if not tf32 and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    if precision == "fp16":
        if major >= 11:
            raise EngineError("TensorRT 11 has no fp16 builder flag; build fp32 (h2h export --trt --fp32)")
        config.set_flag(trt.BuilderFlag.FP16)
        if fp32_norm:
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
            for i in range(network.num_layers):
                layer = network.get_layer(i)
                if layer.type == trt.LayerType.NORMALIZATION:
                    layer.precision = trt.float32
                    layer.set_output_type(0, trt.float32)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"TensorRT failed to build an engine from {label}")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, bytes(serialized))
    atomic_write_bytes(timing_file, bytes(config.get_timing_cache().serialize()))
    return out
