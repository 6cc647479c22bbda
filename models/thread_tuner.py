"""Training's torch thread count, chosen by measurement while it runs (DESIGN 12).

On two cores a 2-thread op that waits for a core another process holds stalls the whole
step (a run fell from 4.4 to 14.5 minutes beside one busy process; with one thread it took
7.6). Which count is faster depends on what else the machine is doing, and that changes
while a run goes, so every `period` seconds the tuner times a few steps at each candidate
count and keeps the fastest until the next probe.
"""
from __future__ import annotations

import os
import time
from statistics import median_high
from collections.abc import Callable

import torch


def thread_candidates(cores: int) -> list[int]:
    """All cores, half of them, and one (distinct, most first)."""
    return sorted({max(1, cores), max(1, cores // 2), 1}, reverse=True)


class ThreadTuner:
    """before_step() sets the count for the coming step; after_step(seconds, frames) records it.

    Probing: `probe` steps at each candidate, compared by seconds per generated frame (steps
    differ in sequence length); then the fastest runs until `period` seconds have passed."""

    def __init__(self, candidates: list[int], period: float = 180.0, probe: int = 6,
                 set_threads: Callable[[int], None] = torch.set_num_threads, clock: Callable[[], float] = time.perf_counter) -> None:
        self.candidates, self.period, self.probe = candidates, period, probe
        self.set_threads, self.clock = set_threads, clock
        self.chosen = candidates[0]
        self.history: list[dict[int, float]] = []  # seconds per frame of each candidate, per probe
        self._queue: list[int] = []
        self._timings: dict[int, list[float]] = {}
        self._next_probe = clock()
        self._current: int | None = None

    @property
    def active(self) -> bool:
        return len(self.candidates) > 1

    def before_step(self) -> None:
        if not self.active:
            return
        if not self._queue and self.clock() >= self._next_probe:
            self._queue = [n for n in self.candidates for _ in range(self.probe)]
            self._timings = {n: [] for n in self.candidates}
        wanted = self._queue[0] if self._queue else self.chosen
        if wanted != self._current:
            self.set_threads(wanted)
            self._current = wanted

    def after_step(self, seconds: float, frames: int) -> dict[int, float] | None:
        """Record the step; returns a probe's seconds per frame of each count when it completes."""
        if not self._queue:
            return None
        self._timings[self._queue.pop(0)].append(seconds / max(frames, 1))
        if self._queue:
            return None
        # the first step at a new count pays for waking its threads: drop it
        cost = {n: median_high(t[1:] or t) for n, t in self._timings.items()}
        self.history.append(cost)
        self.chosen = min(cost, key=cost.get)
        self._next_probe = self.clock() + self.period
        return cost


def training_threads(requested: int | None, on_cpu: bool = True) -> ThreadTuner:
    """A fixed count when asked for (--threads, or OMP_NUM_THREADS as under torchrun) or when
    the work is on a GPU, else a tuner over this machine's cores."""
    if requested:
        torch.set_num_threads(requested)
        return ThreadTuner([requested])
    if os.environ.get("OMP_NUM_THREADS") or not on_cpu:
        return ThreadTuner([torch.get_num_threads()])
    return ThreadTuner(thread_candidates(os.cpu_count() or 1))
