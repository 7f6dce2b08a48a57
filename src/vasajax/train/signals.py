"""Stop at the next step boundary with a checkpoint: on SIGTERM/SIGINT (preemption) or at a wall-clock limit."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from vasajax.train.distributed import any_process

log = logging.getLogger("vasajax.train")


class StopSignal:
    """Turns SIGTERM / SIGINT into a request to save and exit at the next step boundary.

    SLURM sends SIGTERM before a job's time limit or on pre-emption (``#SBATCH --signal=TERM@120``); Ctrl-C
    sends SIGINT. The first signal sets ``requested``; a second SIGINT interrupts at once (KeyboardInterrupt).
    ``should_stop()`` agrees across processes (any process signalled → all stop at the same step), so every
    process joins the final collective save. Handlers are installed only in the main thread and restored on exit.

    ``time_limit`` (seconds, counted from ``start_clock()``, else from ``__enter__``): also stop at the first step
    boundary after it, e.g. to fit a fixed budget of accelerator time (``--time-limit``); ``timed_out`` says
    whether that is why. The trainers start the clock after their first step, so compilation is not counted
    (on one H200 it took 158 of a 200 s budget for stage 1's full objective).
    """

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT), *, time_limit: float | None = None):
        if time_limit is not None and time_limit < 0:
            raise ValueError(f"time_limit must be >= 0 seconds, not {time_limit}")
        self.signals = signals
        self.time_limit = time_limit
        self.requested = False
        self.timed_out = False
        self.signum: int | None = None
        self._deadline: float | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested, self.signum = True, signum
        log.warning("received %s: will save a checkpoint and stop after this step", signal.Signals(signum).name)

    def should_stop(self) -> bool:
        """Whether any process was signalled (a collective when multi-process: call it on every step)."""
        if self._deadline is not None and not self.timed_out and time.monotonic() >= self._deadline:
            self.timed_out = True
            log.warning(
                "time limit of %.0f s reached: will save a checkpoint and stop after this step", self.time_limit
            )
        return any_process(self.requested or self.timed_out)

    def start_clock(self) -> None:
        """(Re)start the time limit's clock now."""
        if self.time_limit is not None:
            self._deadline = time.monotonic() + self.time_limit

    def __enter__(self) -> StopSignal:
        self.start_clock()
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()
