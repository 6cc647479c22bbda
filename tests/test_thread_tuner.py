"""Training picks its torch thread count by timing steps, and probes again as load changes."""
import torch

from h2h.models.thread_tuner import ThreadTuner, thread_candidates, training_threads


class FakeMachine:
    """Step costs per thread count that change when 'another process' starts."""

    def __init__(self):
        self.now, self.threads, self.busy = 0.0, None, False

    def set_threads(self, n):
        self.threads = n

    def clock(self):
        return self.now

    def step(self, tuner, frames=4):
        tuner.before_step()
        per_frame = {2: 0.10, 1: 0.18}[self.threads] if not self.busy else {2: 0.60, 1: 0.20}[self.threads]
        self.now += per_frame * frames
        tuner.after_step(per_frame * frames, frames)


def test_the_fastest_count_is_kept_and_load_changes_the_choice():
    machine = FakeMachine()
    tuner = ThreadTuner([2, 1], period=60.0, probe=4, set_threads=machine.set_threads, clock=machine.clock)
    for _ in range(20):
        machine.step(tuner)
    assert tuner.chosen == 2 and tuner.history[0] == {2: 0.10, 1: 0.18}
    machine.busy = True  # a browser or the live app starts beside the run
    while len(tuner.history) < 2:
        machine.step(tuner)
    assert tuner.chosen == 1 and machine.threads == 1
    steps_before = len(tuner.history)
    machine.step(tuner)
    assert len(tuner.history) == steps_before and machine.threads == 1  # no probe until the period is over


def test_candidates_and_fixed_counts(monkeypatch):
    assert thread_candidates(2) == [2, 1] and thread_candidates(8) == [8, 4, 1] and thread_candidates(1) == [1]
    before = torch.get_num_threads()
    try:
        assert not training_threads(1).active and torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # torchrun sets it: each process keeps its share
        assert not training_threads(None).active
    finally:
        torch.set_num_threads(before)
