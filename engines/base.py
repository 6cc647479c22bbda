"""The engine interface (DESIGN 7): one generator step, numpy float32 in and out."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class EngineError(Exception):
    """An engine that cannot be built or loaded; the message says what to do."""


def failure(exc: BaseException) -> str:
    """An exception as one short line for a fallback's reason: its type and its first line."""
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str


class Engine(Protocol):
    """A loaded generator step: run(cond (1, 18, H, W), prev (1, 6, H, W)) -> (1, 3, H, W), or
    (1, 4, H, W) for generators that also predict the foreground mask (RGB first). A one-shot
    generator may also take `corr` (1, 3K, H, W), the driver's exact correspondence to its K
    photos (ConditioningRenderer.render_correspondence). Engines whose generator has no such
    input ignore `corr`; those whose generator has one feed zeros when `corr` is None or of
    another shape, and the generator then finds its own correspondence from the NMFC."""

    provider: str  # e.g. "TensorRT", "ONNX Runtime (CPUExecutionProvider)", "PyTorch (cpu)"
    precision: str  # "fp32" | "fp16"
    sequential: bool  # False for single-frame models: prev stays zero
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def run(self, cond: np.ndarray, prev: np.ndarray, corr: np.ndarray | None = None) -> np.ndarray: ...


CORRESPONDENCE = "corr"


def correspondence_sources(engine: Engine) -> int:
    """How many photos' correspondence the engine's step takes (0: it takes none)."""
    return next((spec.shape[1] // 3 for spec in engine.inputs if spec.name == CORRESPONDENCE), 0)


def correspondence_feed(shape: tuple[int, ...], corr: np.ndarray | None) -> np.ndarray:
    """`corr` when it has the engine's input shape, else zeros: no correspondence."""
    if corr is None or corr.shape != tuple(shape):
        return np.zeros(shape, np.float32)
    return np.ascontiguousarray(corr, np.float32)


def predicts_mask(engine: Engine) -> bool:
    """Whether the generator step also outputs the foreground mask (a fourth channel)."""
    return bool(engine.outputs) and engine.outputs[0].shape[1] > 3


def generator_specs(
    size: int, window: int = 3, previous: int = 2, out_channels: int = 3
) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The fixed input/output specs of the exported generator step."""
    return (
        [TensorSpec("cond", (1, window * 6, size, size), "float32"), TensorSpec("prev", (1, previous * 3, size, size), "float32")],
        [TensorSpec("frame", (1, out_channels, size, size), "float32")],
    )
