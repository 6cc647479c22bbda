"""The generator's state outside the graph: the 3-frame conditioning window and the two
previous outputs (DESIGN 7). Engine-agnostic: it calls any step function on numpy arrays."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

StepFn = Callable[..., np.ndarray]  # (window, prev[, corr]) -> output
WINDOW = 3
PREVIOUS = 2


def image_to_input(image: np.ndarray) -> np.ndarray:
    """uint8 (..., H, W, C) -> float32 (..., C, H, W) in [-1, 1] (one image or a batch)."""
    return np.moveaxis(image.astype(np.float32) / 127.5 - 1.0, -1, -3)


def conditioning_input(nmfc: np.ndarray, eyes: np.ndarray) -> np.ndarray:
    """One frame's NMFC and eye sketch as the generator's (6, H, W) input."""
    return image_to_input(np.concatenate([nmfc, eyes], -1))


def output_to_image(output: np.ndarray) -> np.ndarray:
    """float (C, H, W) in [-1, 1] -> uint8 (H, W, C)."""
    return np.clip((output.transpose(1, 2, 0) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


class GeneratorStepper:
    """Feeds a step function G(X[t-2:t], Y~[t-2:t-1]) frame by frame.

    At the start (or after reset) the window is filled with the first conditioning frame
    and the previous outputs are zeros, as in training. With sequential=False (a single
    frame model) the previous outputs stay zero. A generator with a mask output leaves the
    step's foreground mask (uint8 H x W, 255 = person) in `mask`; otherwise `mask` is None.
    """

    def __init__(self, step: StepFn, size: int = 256, sequential: bool = True) -> None:
        self.step_fn = step
        self.size = size
        self.sequential = sequential
        self.reset()

    def reset(self) -> None:
        self._window = np.zeros((1, WINDOW * 6, self.size, self.size), np.float32)
        self._prev = np.zeros((1, PREVIOUS * 3, self.size, self.size), np.float32)
        self._started = False
        self.mask: np.ndarray | None = None

    def __call__(self, nmfc: np.ndarray, eyes: np.ndarray, corr: np.ndarray | None = None) -> np.ndarray:
        """The next output frame (uint8 RGB) for this frame's NMFC and eye sketch (and, for a
        one-shot generator that takes it, correspondence)."""
        out = self.step(conditioning_input(nmfc, eyes), corr)
        self.mask = output_to_image(out[3:])[..., 0] if out.shape[0] > 3 else None
        return output_to_image(out[:3])

    def step(self, cond: np.ndarray, corr: np.ndarray | None = None) -> np.ndarray:
        """The raw output (C, H, W) in [-1, 1] for this frame's conditioning_input() (and
        correspondence, passed on to the step only when there is one); the live pipeline
        converts it on another thread."""
        if not self._started:  # the window starts filled with the first frame
            self._window[0] = np.tile(cond, (WINDOW, 1, 1))
            self._started = True
        else:  # shift in place (oldest first) and put this frame last: no per-frame allocation
            self._window[0, :-6] = self._window[0, 6:]
            self._window[0, -6:] = cond
        inputs = (self._window, self._prev) if corr is None else (self._window, self._prev, corr)
        out = np.asarray(self.step_fn(*inputs))[0]
        if self.sequential:
            self._prev[0, :-3] = self._prev[0, 3:]
            self._prev[0, -3:] = out[:3]
        return out
