"""Stop on SIGTERM/SIGINT at the next step boundary with a checkpoint (preemption)."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from vasajax.train.distributed import any_process

log = logging.getLogger("vasajax.train")


class StopSignal:
    """Turns SIGTERM / SIGINT into a request to save and exit at the next step boundary.

    SLURM sends SIGTERM before a job's time limit or on pre-emption (``#SBATCH --signal=TERM@120``); Ctrl-C
    sends SIGINT. The first signal sets ``requested``; a second SIGINT interrupts at once (KeyboardInterrupt).
    ``should_stop()`` agrees across processes (any process signalled → all stop at the same step), so every
    process joins the final collective save. Handlers are installed only in the main thread and restored on exit.
    """

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)):
        self.signals = signals
        self.requested = False
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested, self.signum = True, signum
        log.warning("received %s: will save a checkpoint and stop after this step", signal.Signals(signum).name)

    def should_stop(self) -> bool:
        """Whether any process was signalled (a collective when multi-process: call it on every step)."""
        return any_process(self.requested)

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()
