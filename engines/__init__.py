"""Inference back-ends behind one interface (DESIGN 7): TensorRT, ONNX Runtime, PyTorch."""
from .base import Engine, EngineError, TensorSpec
from .select import engine_status, load

__all__ = ["Engine", "EngineError", "TensorSpec", "engine_status", "load"]
