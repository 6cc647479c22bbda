"""PyTorch eager engine: the trained generator step on the CPU or a CUDA GPU (development)."""
from __future__ import annotations

import numpy as np
import torch

from ..models.avatar_files import AvatarFiles
from ..models.checkpoint import load_generator
from .base import EngineError, generator_specs


class TorchEngine:
    """run(cond, prev) -> frame, numpy float32 in and out, as every engine."""

    precision = "fp32"

    def __init__(self, files: AvatarFiles, run: str = "main", device: str = "cpu", size: int = 256) -> None:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise EngineError(f"the PyTorch engine was asked to run on {device}, but torch {torch.__version__} sees no CUDA GPU")
        self.generator, self.meta = load_generator(files, run)
        self.device = torch.device(device)
        self.generator.to(self.device)
        self.provider = f"PyTorch ({self.device.type})"
        self.sequential = bool(self.meta.get("sequential", True))
        self.inputs, self.outputs = generator_specs(size, out_channels=self.generator.config.out_channels)

    @torch.inference_mode()
    def run_device(self, cond: torch.Tensor, prev: torch.Tensor, corr: torch.Tensor | None = None) -> torch.Tensor:
        """One step on tensors already on this engine's device (a trained avatar's generator
        takes no correspondence: `corr` is ignored)."""
        return self.generator(cond, prev)

    @torch.inference_mode()
    def run(self, cond: np.ndarray, prev: np.ndarray, corr: np.ndarray | None = None) -> np.ndarray:
        out = self.generator(torch.from_numpy(cond).to(self.device), torch.from_numpy(prev).to(self.device))
        return out.float().cpu().numpy()
