"""Stopping a long job at a clean point: Ctrl-C (SIGINT) and SIGTERM only set a flag, which
the job checks between steps, so a checkpoint never holds a half-applied step."""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(KeyboardInterrupt):
    """The job stopped on a signal after saving; `exit_code` follows the shell's 128 + N."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.exit_code = EXIT_CODES.get(signum, 128 + signum)


class StopFlag:
    signum: int | None = None

    @property
    def set(self) -> bool:
        return self.signum is not None


@contextmanager
def deferred_signals() -> Iterator[StopFlag]:
    """Within the block SIGINT/SIGTERM set the flag instead of raising (main thread only; a
    second Ctrl-C still interrupts at once)."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, _frame) -> None:
        if flag.set and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.signum = signum

    previous = {s: signal.signal(s, handler) for s in EXIT_CODES}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
