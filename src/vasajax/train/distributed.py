"""Multi-process (multi-host) set-up: ``jax.distributed`` with SLURM detection, gloo on CPU, and small collectives."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import jax
import numpy as np

from vasajax.errors import UserError

log = logging.getLogger("vasajax.train")


def init_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: list[int] | None = None,
    timeout_s: int = 300,
) -> bool:
    """Join a multi-process JAX job if there is one; returns True when ``jax.distributed`` was initialised.

    In order: explicit arguments; the environment variables ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``
    and ``JAX_PROCESS_ID``; a SLURM step with more than one task (``srun``; JAX reads the SLURM variables
    itself). Otherwise this is a single-process run and nothing happens. On CPU the cross-process collectives
    use gloo. Call it before anything else touches JAX devices.
    """
    env = os.environ
    coordinator_address = coordinator_address or env.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and env.get("JAX_NUM_PROCESSES"):
        num_processes = int(env["JAX_NUM_PROCESSES"])
    if process_id is None and env.get("JAX_PROCESS_ID"):
        process_id = int(env["JAX_PROCESS_ID"])
    slurm = int(env.get("SLURM_NTASKS", env.get("SLURM_NPROCS", "1"))) > 1 and "SLURM_STEP_ID" in env
    if coordinator_address is None and not slurm:
        return False
    if _cpu_only():
        _use_gloo()
    kw: dict[str, Any] = dict(initialization_timeout=timeout_s)
    if coordinator_address is not None:
        if num_processes is None or process_id is None:
            raise UserError("a coordinator address needs --num-processes and --process-id (or JAX_* variables)")
        kw.update(coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id)
    if local_device_ids is not None:
        kw["local_device_ids"] = local_device_ids
    jax.distributed.initialize(**kw)
    log.info("jax.distributed: process %d of %d", jax.process_index(), jax.process_count())
    return True


def _cpu_only() -> bool:
    plat = os.environ.get("JAX_PLATFORMS") or getattr(jax.config, "jax_platforms", None) or ""
    return str(plat).strip().lower() == "cpu"


def _use_gloo() -> None:
    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except Exception as e:  # an option renamed in some JAX version: the default may already be gloo
        log.warning("could not select gloo CPU collectives: %s", e)


def is_main_process() -> bool:
    """True on the process that writes logs, samples and config files (process 0)."""
    return jax.process_index() == 0


def gather_json(obj: Any) -> list[Any]:
    """Every process's JSON-serialisable ``obj``, as a list indexed by process (a collective: call everywhere)."""
    if jax.process_count() == 1:
        return [obj]
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(obj).encode(), np.uint8)
    lengths = np.asarray(multihost_utils.process_allgather(np.array([data.size], np.int32))).reshape(-1)
    padded = np.zeros(int(lengths.max()), np.uint8)
    padded[: data.size] = data
    rows = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(lengths), -1)
    return [json.loads(bytes(rows[i, : lengths[i]]).decode()) for i in range(len(lengths))]


def any_process(flag: bool) -> bool:
    """True if ``flag`` is True on any process (a collective: call it on every process at the same point)."""
    if jax.process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils

    return bool(np.asarray(multihost_utils.process_allgather(np.array([int(flag)], np.int32))).max())
