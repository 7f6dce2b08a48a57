"""Metric logging: JSONL, TensorBoard and the progress bar of a run."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vasajax.train.distributed import is_main_process

log = logging.getLogger("vasajax.train")


class MetricLogger:
    """Progress bar (tqdm: step/s and ETA), TensorBoard scalars (tensorboardX) and ``metrics.jsonl``.

    Only process 0 writes; elsewhere every method is a no-op; ``progress=False`` drops the bar only.
    ``log(step, metrics)`` takes host floats or scalar arrays (converting them waits for the step that
    produced them: log every few steps).
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        total_steps: int,
        initial_step: int = 0,
        *,
        enabled: bool | None = None,
        progress: bool = True,
    ):
        self.enabled = is_main_process() if enabled is None else enabled
        self.workdir = Path(workdir)
        self._last = (initial_step, time.perf_counter())
        self.bar = self.tb = self.jsonl = None
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        self.workdir.mkdir(parents=True, exist_ok=True)
        if progress:
            self.bar = tqdm(total=total_steps, initial=initial_step, unit="step", dynamic_ncols=True, smoothing=0.1)
        try:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(str(self.workdir / "tb"))
        except ImportError:  # tensorboardX is optional
            log.warning("tensorboardX is not installed: no TensorBoard scalars")
        self.jsonl = open(self.workdir / "metrics.jsonl", "a")  # noqa: SIM115

    def advance(self, n: int = 1) -> None:
        """Move the progress bar by ``n`` steps (call every step; cheap)."""
        if self.bar is not None:
            self.bar.update(n)

    def log(self, step: int, metrics: Mapping[str, Any]) -> dict[str, float]:
        """Write scalars for ``step`` (adds ``steps_per_s`` since the previous call); returns them."""
        if not self.enabled:
            return {}
        now = time.perf_counter()
        row = {k: float(np.asarray(v)) for k, v in metrics.items()}
        if step > self._last[0]:
            row["steps_per_s"] = (step - self._last[0]) / max(now - self._last[1], 1e-9)
        self._last = (step, now)
        if self.tb is not None:
            for k, v in row.items():
                self.tb.add_scalar(k, v, step)
        self.jsonl.write(json.dumps({"step": step, "time": time.time(), **row}) + "\n")
        self.jsonl.flush()
        if self.bar is not None:
            shown = {k: f"{v:.4g}" for k, v in row.items() if k in ("loss", "g_loss", "d_loss", "l1", "psnr")}
            self.bar.set_postfix(shown, refresh=False)
        return row

    def close(self) -> None:
        """Flush and close every writer."""
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
        if self.jsonl is not None:
            self.jsonl.close()
        self.bar = self.tb = self.jsonl = None

    def __enter__(self) -> MetricLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
