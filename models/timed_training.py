"""The loop shared by the small time-bounded trainers (the upsampler, DenseFaceReg): steps
until a budget of minutes (total over resumes) or steps, a progress bar over seconds,
checkpoints on the way, and a clean stop on Ctrl-C or SIGTERM after saving."""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from .checkpoint import CheckpointError
from .interrupts import Interrupted, deferred_signals
from .io_utils import atomic_write_bytes

log = logging.getLogger(__name__)


SAMPLE_FILE = "samples.png"


class TimedTrainer:
    """Subclasses set net, optimizer, folder, minutes, progress, step, elapsed and implement
    train_step and save; their resumable state is folder/state_file."""

    desc = "training"
    state_file = "state.pt"
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    folder: Path
    minutes: float
    progress: bool
    step: int
    elapsed: float

    def write_samples(self, sheet: np.ndarray) -> None:
        """folder/samples.png (atomically): a BGR sheet for looking at the run."""
        atomic_write_bytes(self.folder / SAMPLE_FILE, cv2.imencode(".png", sheet)[1].tobytes())

    def train_step(self) -> dict[str, float]:
        raise NotImplementedError

    def saved_config(self, state: dict, build: Callable[..., object], check: Callable[[str], object]):
        """The training config stored in `state`, built by `build` and its preset checked by `check`."""
        try:
            config = build(**state["config"])
            check(config.preset)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{self.folder / self.state_file}: its settings do not fit this version ({exc}); train without --resume") from exc
        return config

    def restore(self, state: dict, key: str) -> None:
        """The network (state[key]), optimiser, step and elapsed time of a checkpoint."""
        try:
            self.net.load_state_dict(state[key])
            self.optimizer.load_state_dict(state["optimizer"])
            self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{self.folder / self.state_file}: does not fit this {self.desc} ({type(exc).__name__}); train without --resume") from exc

    def cosine_lr(self, base: float) -> None:
        """The learning rate decays from `base` to 0 along a half cosine over the time budget."""
        fraction = min(self.elapsed / max(self.minutes * 60, 1e-6), 1.0)
        for group in self.optimizer.param_groups:
            group["lr"] = base * 0.5 * (1 + math.cos(math.pi * fraction))

    def save(self) -> None:
        raise NotImplementedError

    def run(self, checkpoint_minutes: float = 2.0, max_steps: int | None = None) -> dict:
        """Train until `minutes` in total (or `max_steps` in total), checkpointing on the way."""
        self.net.train()
        losses = self.run_loop(checkpoint_minutes, max_steps)
        log.info("%s: %d steps in %.1f min, %s", self.desc, self.step, self.elapsed / 60,
                 ", ".join(f"{k} {v:.4f}" for k, v in losses.items()))
        return {"step": self.step, "minutes": self.elapsed / 60, "losses": losses, "folder": str(self.folder)}

    def run_loop(self, checkpoint_minutes: float, max_steps: int | None) -> dict[str, float]:
        """Train until the budget is spent; the last step's losses."""
        self.folder.mkdir(parents=True, exist_ok=True)
        budget = self.minutes * 60
        bar = tqdm(total=round(budget), initial=min(round(self.elapsed), round(budget)), unit="s", desc=self.desc,
                   disable=not self.progress)
        losses: dict[str, float] = {}
        last_ckpt = time.perf_counter()
        with deferred_signals() as stop:
            try:
                while self.elapsed < budget and not stop.set and (max_steps is None or self.step < max_steps):
                    t0 = time.perf_counter()
                    losses = self.train_step()
                    self.step += 1
                    self.elapsed += time.perf_counter() - t0
                    bar.update(min(round(self.elapsed), bar.total) - bar.n)
                    bar.set_postfix(step=self.step, **{k: f"{v:.4f}" for k, v in losses.items()})
                    if time.perf_counter() - last_ckpt >= checkpoint_minutes * 60:
                        self.save()
                        last_ckpt = time.perf_counter()
            finally:
                bar.close()
            self.save()
            if stop.set:
                raise Interrupted(stop.signum)
        return losses
