"""The generator's window state kept on the engine's device (DESIGN 7, issue: lean copy path):
per frame only the uint8 NMFC + eye images go up (through a pinned buffer on CUDA) and the
uint8 frame comes down; normalisation, the 3-frame window and the previous outputs stay on the
device. Same contract and same frames as the numpy GeneratorStepper."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .stepper import PREVIOUS, WINDOW

DeviceStep = Callable[..., torch.Tensor]  # (window, prev[, corr]) -> frame


class DeviceStepper:
    """Feeds run_device(window, prev[, corr]) -> frame, all torch tensors on `device`."""

    def __init__(self, run_device: DeviceStep, size: int, sequential: bool, device: torch.device | str) -> None:
        self.run_device, self.size, self.sequential = run_device, size, sequential
        self.device = torch.device(device)
        pinned = self.device.type == "cuda"
        self._upload = torch.empty(size, size, 6, dtype=torch.uint8)
        self._download = torch.empty(size, size, 3, dtype=torch.uint8)
        if pinned:
            self._upload, self._download = self._upload.pin_memory(), self._download.pin_memory()
        self.reset()

    def reset(self) -> None:
        self._window = torch.zeros(1, WINDOW * 6, self.size, self.size, device=self.device)
        self._prev = torch.zeros(1, PREVIOUS * 3, self.size, self.size, device=self.device)
        self._started = False
        self.mask: np.ndarray | None = None

    @torch.inference_mode()
    def __call__(self, nmfc: np.ndarray, eyes: np.ndarray, corr: np.ndarray | None = None) -> np.ndarray:
        """The next output frame (uint8 RGB) for this frame's NMFC and eye sketch (and, for a
        one-shot generator that takes it, correspondence: a float map, uploaded as it is)."""
        self._upload.numpy()[..., :3] = nmfc
        self._upload.numpy()[..., 3:] = eyes
        cond = self._upload.to(self.device, non_blocking=True).permute(2, 0, 1).float().div_(127.5).sub_(1.0)
        if not self._started:
            self._window[0] = cond.repeat(WINDOW, 1, 1)
            self._started = True
        else:
            self._window[0, :-6] = self._window[0, 6:].clone()
            self._window[0, -6:] = cond
        inputs = (self._window, self._prev)
        if corr is not None:
            inputs += (torch.from_numpy(corr).to(self.device, non_blocking=True),)
        out = self.run_device(*inputs).float()
        if self.sequential:
            self._prev[0, :-3] = self._prev[0, 3:].clone()
            self._prev[0, -3:] = out[0, :3]
        pixels = ((out[0] + 1.0) * 127.5 + 0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0)
        self._download.copy_(pixels[..., :3], non_blocking=False)
        self.mask = pixels[..., 3].cpu().numpy() if out.shape[1] > 3 else None
        return self._download.numpy().copy()
