"""Trainer infrastructure shared by both stages, in one namespace: ``config``, ``distributed``, ``sharding``, ``optim``,
``checkpoint``, ``signals`` and ``metrics`` hold the code (one idea per file); this module re-exports them so a
trainer reads ``common.make_mesh``, ``common.Checkpointer``, ... .

VASA-1 trains its face latent space (§3.1) and motion diffusion model (§3.2) on many GPUs; MegaPortraits' recipe
(AdamW, cosine 2e-4 → 1e-6) is what ``OptimConfig`` encodes. This module holds the plumbing that both trainers
(``vasajax.train.face``, ``vasajax.train.motion``) share, as plain functions and three small classes, so that a
trainer stays a short script (DESIGN.md: one pure ``train_step`` jitted once with shardings and donation).

Parallelism (DESIGN.md: ``jax.jit`` + a device mesh, never ``pmap``)::

    mesh = make_mesh(fsdp=1)              # axes ('data', 'fsdp'); data = devices // fsdp
    batch → P(('data', 'fsdp'))           # the global batch is split over every device
    params, optimiser state → fsdp_shardings(...)
                                          # replicated when fsdp = 1; else each large array split over 'fsdp'
                                          # on its largest divisible axis (ZeRO-3 style, XLA inserts gathers)

The same code runs on 1 CPU, N GPUs and many hosts: ``init_distributed()`` joins the processes (SLURM is
detected; or explicit coordinator arguments; CPU collectives use gloo), every process reads its own slice of the
data (``loader`` shards by ``jax.process_index()``) and ``global_batch`` assembles the global array with
``jax.make_array_from_process_local_data``.

Exact resume: a checkpoint holds the train state (params, optimiser state, EMA, step), each process's data-iterator
state (JSON) and the run config (JSON). Per-step randomness is ``step_key(seed, step)`` (``fold_in``), never
Python-side random state, so 6 straight steps and 3 + kill + resume 3 give bitwise identical params on CPU.

Typical loop (see ``vasajax.train.face`` for a complete one)::

    init_distributed()
    mesh = make_mesh(run.fsdp)
    ckpt = Checkpointer(workdir, cfg.to_dict(), keep=run.keep_checkpoints)
    state, shardings = init_sharded(init_fn, mesh)            # or ckpt.restore(...) when ckpt.latest_step
    with StopSignal() as stop, MetricLogger(workdir, run.steps, start) as log:
        for step in range(start, run.steps):
            state, metrics = train_step(state, global_batch(next(it), mesh), step_key(run.seed, step))
            log.log(step + 1, metrics)
            if ckpt.should_save(step + 1) or stop.should_stop():
                ckpt.save(step + 1, state, it.get_state())
"""

from __future__ import annotations

from vasajax.config_io import to_dict as config_to_dict  # noqa: F401
from vasajax.train.checkpoint import (  # noqa: F401
    BOOKKEEPING_KEYS,
    Checkpointer,
    _key_name,
    _without_bookkeeping,
    abstract_like,
    check_config,
)
from vasajax.train.config import (  # noqa: F401
    OptimConfig,
    RunConfig,
    config_diff,
    log,  # noqa: F401
    run_overrides,
)
from vasajax.train.distributed import (  # noqa: F401
    _cpu_only,
    _use_gloo,
    any_process,
    gather_json,
    init_distributed,
    is_main_process,
)
from vasajax.train.metrics import (  # noqa: F401
    MetricLogger,
)
from vasajax.train.optim import (  # noqa: F401
    _part_prefixes,
    accumulate,
    compute_dtype,
    ema_update,
    freeze_parts,
    keep_frozen,
    lr_schedule,
    make_optimizer,
    merge_microbatches,
    split_microbatches,
    step_key,
    strong_types,
)
from vasajax.train.sharding import (  # noqa: F401
    DATA_AXES,
    batch_sharding,
    fsdp_shardings,
    fsdp_spec,
    global_batch,
    init_sharded,
    local_batch_size,
    make_mesh,
    replicated,
    to_host,
)
from vasajax.train.signals import (  # noqa: F401
    StopSignal,
)
