"""Mixed-precision training: autocast to bf16 (or fp16 with a gradient scaler) on GPUs, plain
fp32 on CPUs unless asked (torch.amp: autocast and GradScaler)."""
from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto: bf16 on a GPU that has it, else fp16 on a GPU; fp32 on a CPU."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"  # native bf16 only (Ampere+)


class MixedPrecision:
    """Autocast for forward passes and losses; backward/step through a GradScaler per optimiser
    (active for fp16 only, whose small gradients would underflow)."""

    def __init__(self, precision: str, device: torch.device) -> None:
        self.precision = resolve_precision(precision, device)
        self.device_type = device.type
        self.dtype = DTYPES[self.precision]
        self.scalers: dict[str, torch.amp.GradScaler] = {}

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def _scaler(self, name: str) -> torch.amp.GradScaler:
        if name not in self.scalers:
            self.scalers[name] = torch.amp.GradScaler(self.device_type, enabled=self.precision == "fp16")
        return self.scalers[name]

    def backward_step(self, name: str, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        scaler = self._scaler(name)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def state_dict(self) -> dict:
        return {name: scaler.state_dict() for name, scaler in self.scalers.items() if scaler.is_enabled()}

    def load_state_dict(self, state: dict) -> None:
        for name, values in state.items():
            self._scaler(name).load_state_dict(values)
