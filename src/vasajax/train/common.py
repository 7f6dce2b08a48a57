"""Trainer infrastructure shared by both stages: mesh, sharding, multi-host, optimiser, EMA, checkpoints, logging.

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
    ckpt = Checkpointer(workdir, config_to_dict(cfg), keep=run.keep_checkpoints)
    state, shardings = init_sharded(init_fn, mesh)            # or ckpt.restore(...) when ckpt.latest_step
    with StopSignal() as stop, MetricLogger(workdir, run.steps, start) as log:
        for step in range(start, run.steps):
            state, metrics = train_step(state, global_batch(next(it), mesh), step_key(run.seed, step))
            log.log(step + 1, metrics)
            if ckpt.should_save(step + 1) or stop.should_stop():
                ckpt.save(step + 1, state, it.get_state())
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from vasajax.errors import UserError

log = logging.getLogger("vasajax.train")

DATA_AXES = ("data", "fsdp")
"""Mesh axes that split the batch (all of them: fsdp devices also see different examples)."""


# ----------------------------------------------------------------------------------------------- configs


@dataclasses.dataclass(frozen=True, kw_only=True)
class OptimConfig:
    """AdamW with linear warm-up then cosine decay, global-norm clipping, gradient accumulation and an EMA."""

    lr: float = 2e-4
    """Peak learning rate (MegaPortraits: 2e-4)."""
    lr_end: float = 1e-6
    """Final learning rate of the cosine decay (MegaPortraits: 1e-6)."""
    warmup_steps: int = 1000
    """Linear warm-up from 0 to ``lr`` over this many optimiser steps."""
    b1: float = 0.5
    """Adam β1 (0.5 is the usual GAN setting; MegaPortraits does not state theirs)."""
    b2: float = 0.999
    """Adam β2."""
    eps: float = 1e-8
    """Adam ε."""
    weight_decay: float = 1e-2
    """Decoupled weight decay (AdamW), applied to every parameter."""
    clip_norm: float | None = 1.0
    """Clip gradients to this global L2 norm before the update; None disables clipping."""
    accum_steps: int = 1
    """Gradient accumulation: each step splits its global batch into this many micro-batches (lower memory)."""
    ema_decay: float | None = 0.999
    """Decay of the exponential moving average of the parameters; None keeps no EMA."""

    def __post_init__(self):
        if self.accum_steps < 1:
            raise ValueError("accum_steps must be >= 1")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ValueError("ema_decay must be in [0, 1)")

    @classmethod
    def tiny(cls, **overrides) -> OptimConfig:
        """Tests and minute-long CPU runs: a higher rate and a short warm-up."""
        return cls(**{"lr": 1e-3, "lr_end": 1e-4, "warmup_steps": 5, "ema_decay": 0.9, **overrides})

    @classmethod
    def small(cls, **overrides) -> OptimConfig:
        """The 256² demo."""
        return cls(**{"lr": 2e-4, "warmup_steps": 500, "ema_decay": 0.999, **overrides})

    @classmethod
    def paper(cls, **overrides) -> OptimConfig:
        """MegaPortraits: AdamW, cosine 2e-4 → 1e-6."""
        return cls(**{"lr": 2e-4, "warmup_steps": 2000, "ema_decay": 0.9999, **overrides})


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Length, batch, parallelism, precision and bookkeeping of one training run."""

    steps: int
    """Optimiser steps of the whole run (the cosine schedule ends here); ``--stop-after`` can end a job earlier."""
    batch_size: int
    """Global batch (all processes and devices together); must divide by the device count × accum_steps."""
    seed: int = 0
    """Seed of the initialisation, the data order and every per-step random key."""
    fsdp: int = 1
    """Size of the mesh's ``fsdp`` axis (1 = pure data parallel, params replicated)."""
    fsdp_min_size: int = 2**18
    """Arrays with fewer elements than this stay replicated even when ``fsdp > 1``."""
    precision: str = "float32"
    """Compute dtype: "float32", or "bfloat16" (mixed precision: params, optimiser state, losses in float32)."""
    log_every: int = 10
    """Steps between logged scalars (progress bar, TensorBoard, metrics.jsonl)."""
    ckpt_every: int = 1000
    """Steps between checkpoints (one is also written at the end and on SIGTERM/SIGINT)."""
    keep_checkpoints: int = 3
    """Most recent checkpoints kept on disk."""
    async_checkpoints: bool = True
    """Write checkpoints in a background thread while training continues."""
    sample_every: int = 1000
    """Steps between sample images / plots written to the run folder (0 disables them)."""

    def __post_init__(self):
        if self.precision not in ("float32", "bfloat16"):
            raise ValueError("precision must be 'float32' or 'bfloat16'")
        if self.steps < 1 or self.batch_size < 1 or self.fsdp < 1:
            raise ValueError("steps, batch_size and fsdp must be >= 1")

    @classmethod
    def tiny(cls, **overrides) -> RunConfig:
        """Tests: a few steps, small batches, frequent logs."""
        kw = dict(steps=20, batch_size=4, log_every=1, ckpt_every=10, sample_every=10, keep_checkpoints=2)
        return cls(**{**kw, **overrides})

    @classmethod
    def small(cls, **overrides) -> RunConfig:
        """The demo on one machine."""
        return cls(**{"steps": 20_000, "batch_size": 24, "log_every": 20, "ckpt_every": 500, **overrides})

    @classmethod
    def paper(cls, **overrides) -> RunConfig:
        """MegaPortraits' 256² phase: 200K iterations at batch 24 (then 512², 300K at 16), bf16."""
        kw = dict(steps=200_000, batch_size=24, precision="bfloat16", log_every=50, ckpt_every=2000)
        return cls(**{**kw, **overrides})


def config_to_dict(cfg: Any) -> Any:
    """A (nested) config dataclass as JSON-ready data: tuples become lists, dataclasses dicts, keys sorted."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        cfg = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, Mapping):
        return {str(k): config_to_dict(v) for k, v in sorted(cfg.items())}
    if isinstance(cfg, list | tuple):
        return [config_to_dict(v) for v in cfg]
    if isinstance(cfg, np.generic):
        return cfg.item()
    return cfg


def run_overrides(args: Any) -> dict[str, Any]:
    """``RunConfig`` overrides from the trainers' shared command-line options (only those given)."""
    out: dict[str, Any] = {}
    for name, key in (("steps", "steps"), ("batch", "batch_size"), ("seed", "seed"), ("fsdp", "fsdp")):
        if getattr(args, name) is not None:
            out[key] = getattr(args, name)
    for name in ("log_every", "ckpt_every", "sample_every"):
        if getattr(args, name) is not None:
            out[name] = getattr(args, name)
    if args.bf16:
        out["precision"] = "bfloat16"
    return out


def config_diff(old: Any, new: Any, prefix: str = "") -> str | None:
    """The first differing key of two JSON-like configs, as ``"a.b: old → new"``; None if they are equal."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            if k not in old or k not in new:
                where = "new" if k not in old else "missing"
                return f"{prefix}{k}: {where} key"
            d = config_diff(old[k], new[k], f"{prefix}{k}.")
            if d:
                return d
        return None
    if old != new:
        return f"{prefix.rstrip('.')}: {json.dumps(old)} → {json.dumps(new)}"
    return None


# ----------------------------------------------------------------------------------------------- processes


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


# ----------------------------------------------------------------------------------------------- mesh, sharding


def make_mesh(fsdp: int = 1, devices: list | None = None) -> Mesh:
    """A 2-D mesh ``('data', 'fsdp')`` over ``devices`` (default: all devices of all processes).

    ``fsdp`` consecutive devices (on GPUs: of one node when fsdp divides the per-node count) share the shards
    of each large parameter; ``data`` = device count // fsdp.
    """
    devices = list(jax.devices() if devices is None else devices)
    if fsdp < 1 or len(devices) % fsdp:
        raise UserError(f"--fsdp {fsdp} must divide the number of devices ({len(devices)})")
    return Mesh(np.array(devices, dtype=object).reshape(len(devices) // fsdp, fsdp), DATA_AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over every device of the mesh."""
    return NamedSharding(mesh, P(DATA_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device."""
    return NamedSharding(mesh, P())


def fsdp_spec(shape: tuple[int, ...], fsdp: int, min_size: int) -> P:
    """PartitionSpec of one array under FSDP: its largest axis divisible by ``fsdp`` goes to ``'fsdp'``."""
    if fsdp <= 1 or math.prod(shape) < min_size:
        return P()
    axes = [i for i in np.argsort(shape, kind="stable")[::-1] if shape[i] % fsdp == 0]
    if not axes:
        return P()
    spec: list[str | None] = [None] * len(shape)
    spec[int(axes[0])] = "fsdp"
    return P(*spec)


def fsdp_shardings(tree: Any, mesh: Mesh, min_size: int = 2**18) -> Any:
    """NamedShardings for a tree of arrays (or ShapeDtypeStructs): replicated, or split over ``'fsdp'``.

    The rule depends on the shape only, so an optimiser's moment estimates get their parameter's sharding.
    """
    fsdp = mesh.shape["fsdp"]
    return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(tuple(x.shape), fsdp, min_size)), tree)


def init_sharded(init_fn: Callable[[], Any], mesh: Mesh, min_size: int = 2**18) -> tuple[Any, Any]:
    """Run ``init_fn`` (no arguments, returns a tree of arrays) under ``jit`` straight into its shardings.

    No process ever holds the full unsharded state, which matters for the paper config with ``fsdp > 1``.
    Returns ``(state, shardings)``.
    """
    shardings = fsdp_shardings(jax.eval_shape(init_fn), mesh, min_size)
    return jax.jit(init_fn, out_shardings=shardings)(), shardings


def global_batch(local: Mapping[str, np.ndarray], mesh: Mesh, keys: tuple[str, ...] | None = None) -> dict:
    """This process's slice of the batch (numpy, leading axis = local batch) → global arrays on the mesh."""
    sharding = batch_sharding(mesh)
    keys = tuple(local) if keys is None else keys
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(local[k])) for k in keys}


def local_batch_size(global_batch_size: int, mesh: Mesh, accum_steps: int = 1) -> int:
    """The per-process batch for a global one; a UserError when it does not split evenly."""
    n_dev, n_proc = mesh.devices.size, jax.process_count()
    if global_batch_size % (n_dev * accum_steps):
        raise UserError(
            f"--batch {global_batch_size} must be a multiple of devices × accumulation steps ({n_dev} × {accum_steps})"
        )
    return global_batch_size // n_proc


def to_host(tree: Any) -> Any:
    """Arrays (possibly spread over processes) → numpy, gathered on every process (a collective if multi-host)."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    from jax.experimental import multihost_utils

    return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


# ----------------------------------------------------------------------------------------------- optimisation


def lr_schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    """Linear warm-up to ``cfg.lr``, then cosine decay to ``cfg.lr_end`` at ``total_steps``."""
    warmup = max(0, min(cfg.warmup_steps, total_steps - 1))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=cfg.lr,
        warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1),
        end_value=cfg.lr_end,
    )


def make_optimizer(cfg: OptimConfig, total_steps: int, *, lr_scale: float = 1.0) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW on the warm-up + cosine schedule (one update per train step).

    Gradient accumulation is done inside the train step (``accumulate``), so a step is always one update of
    one global batch; this keeps step counts, schedules and checkpoints independent of ``accum_steps``.
    """
    sched = lr_schedule(dataclasses.replace(cfg, lr=cfg.lr * lr_scale, lr_end=cfg.lr_end * lr_scale), total_steps)
    parts = [] if cfg.clip_norm is None else [optax.clip_by_global_norm(cfg.clip_norm)]
    parts.append(optax.adamw(sched, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay))
    return optax.chain(*parts)


def _part_prefixes(parts: Sequence[str]) -> tuple[str, ...]:
    return tuple(f"['{p}']" for p in parts)


def keep_frozen(new: Any, old: Any, parts: Sequence[str]) -> Any:
    """``new`` with the leaves under the top-level ``parts`` taken from ``old`` (e.g. an EMA that must not move
    for frozen parts)."""
    prefixes = _part_prefixes(parts)
    return jax.tree_util.tree_map_with_path(
        lambda path, n, o: o if jax.tree_util.keystr(path).startswith(prefixes) else n, new, old
    )


def freeze_parts(tx: optax.GradientTransformation, parts: Sequence[str]) -> optax.GradientTransformation:
    """``tx`` for every parameter except those under the top-level model ``parts`` (``nnx.State`` keys), which get
    zero updates (no AdamW moments are kept for them, no weight decay). A part that names no parameter is a
    ``UserError`` when the optimiser state is created. (Their EMA: ``keep_frozen``.)"""
    prefixes = _part_prefixes(parts)

    def labels(params):
        found = {p: False for p in parts}

        def label(path, _):
            key = jax.tree_util.keystr(path)
            for part, prefix in zip(parts, prefixes):
                if key.startswith(prefix):
                    found[part] = True
                    return "frozen"
            return "train"

        out = jax.tree_util.tree_map_with_path(label, params)
        missing = [p for p, hit in found.items() if not hit]
        if missing:
            top = sorted(
                {jax.tree_util.keystr(path[:1]) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
            )
            raise UserError(f"--freeze {missing[0]}: no such model part (parts: {', '.join(t[2:-2] for t in top)})")
        return out

    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


def split_microbatches(batch: Any, accum_steps: int) -> Any:
    """B×… → accum×(B/accum)×…, taking every accum-th example so each micro-batch spans every device."""

    def split(x):
        b = x.shape[0]
        if b % accum_steps:
            raise ValueError(f"batch {b} does not split into {accum_steps} micro-batches")
        return jnp.swapaxes(x.reshape(b // accum_steps, accum_steps, *x.shape[1:]), 0, 1)

    return jax.tree.map(split, batch)


def accumulate(
    grad_fn: Callable[[Any, Any, jax.Array], tuple[tuple[jax.Array, Any], Any]],
    params: Any,
    batch: Any,
    key: jax.Array,
    accum_steps: int,
    *,
    has_extra: bool = False,
) -> tuple[tuple[jax.Array, Any], Any]:
    """Mean of ``grad_fn(params, microbatch, key_k)`` over ``accum_steps`` micro-batches (a ``lax.scan``).

    ``grad_fn`` is ``jax.value_and_grad(loss, has_aux=True)``-shaped: ``((loss, metrics), grads)``, or with
    ``has_extra`` ``((loss, (metrics, extra)), grads)`` where ``extra`` holds per-example outputs (leading axis
    a multiple of the micro-batch) that are reassembled in batch order instead of averaged. With
    ``accum_steps == 1`` it is called once on the whole batch with ``key`` itself.
    """
    if accum_steps == 1:
        return grad_fn(params, batch, key)
    micro = split_microbatches(batch, accum_steps)

    def body(carry, xs):
        k, mb = xs
        (loss, aux), grads = grad_fn(params, mb, jax.random.fold_in(key, k))
        metrics, extra = aux if has_extra else (aux, None)
        carry = jax.tree.map(jnp.add, carry, (loss, metrics, grads))
        return carry, extra

    mb0 = jax.tree.map(lambda x: x[0], micro)
    (loss0, aux0), grads0 = jax.eval_shape(grad_fn, params, mb0, key)
    metrics0 = aux0[0] if has_extra else aux0
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (loss0, metrics0, grads0))
    total, extra = jax.lax.scan(body, zeros, (jnp.arange(accum_steps), micro))
    loss, metrics, grads = jax.tree.map(lambda x: x / accum_steps, total)
    if not has_extra:
        return (loss, metrics), grads
    return (loss, (metrics, merge_microbatches(extra, batch))), grads


def merge_microbatches(extra: Any, batch: Any) -> Any:
    """Inverse of ``split_microbatches`` for per-example outputs: accum×(k·b)×… → (k·B)×… in batch order.

    An output with k rows per example (e.g. two generated images per example, stacked as [all first; all
    second]) keeps that block layout over the whole batch."""

    def merge(x):
        accum, rows = x.shape[:2]
        b = jax.tree.leaves(batch)[0].shape[0] // accum
        k = rows // b
        x = x.reshape(accum, k, b, *x.shape[2:])  # micro m, block j, example i (global i·accum + m)
        x = jnp.transpose(x, (1, 2, 0, *range(3, x.ndim)))  # block, i, m
        return x.reshape(k * b * accum, *x.shape[3:])

    return jax.tree.map(merge, extra)


def ema_update(ema: Any, params: Any, decay: float) -> Any:
    """``ema ← decay·ema + (1 − decay)·params`` (float leaves only)."""
    return jax.tree.map(lambda e, p: e + (1.0 - decay) * (p.astype(e.dtype) - e), ema, params)


def step_key(seed: int, step: jax.Array | int) -> jax.Array:
    """The random key of one step: ``fold_in(key(seed), step)`` — a pure function of (seed, step)."""
    return jax.random.fold_in(jax.random.key(seed), step)


def compute_dtype(precision: str) -> str:
    """The model's compute dtype for a ``RunConfig.precision`` (parameters always stay float32)."""
    return {"float32": "float32", "bfloat16": "bfloat16"}[precision]


# ----------------------------------------------------------------------------------------------- checkpoints


BOOKKEEPING_KEYS = ("log_every", "sample_every", "ckpt_every", "keep_checkpoints", "async_checkpoints")
"""``run`` settings a resumed run may change: how often it logs, samples and checkpoints, not what it computes."""


def _without_bookkeeping(config: Mapping[str, Any]) -> dict:
    config = dict(config)
    if isinstance(config.get("run"), dict):
        config["run"] = {k: v for k, v in config["run"].items() if k not in BOOKKEEPING_KEYS}
    return config


def check_config(
    workdir: str | os.PathLike, config: Mapping[str, Any], upgrade: Callable[[dict], dict] | None = None
) -> None:
    """Write ``workdir/config.json`` on a new run; on an existing one, a UserError if ``config`` differs.

    ``upgrade`` (e.g. ``lambda d: FaceTrainConfig.from_dict(d).to_dict()``) fills a stored config written before a
    field existed with that field's default before comparing, so adding an option with a neutral default does not
    orphan older runs; a stored value that differs from the new one is still an error. The ``run`` section's
    bookkeeping (``BOOKKEEPING_KEYS``: logging, sampling and checkpoint intervals) may change on a resume."""
    path = Path(workdir) / "config.json"
    config = json.loads(json.dumps(config))  # what a reload will see (tuples → lists)
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise UserError(f"{path} is not valid JSON; delete it or use a new --workdir") from None
        if upgrade is not None:
            old = json.loads(json.dumps(upgrade(old)))
        diff = config_diff(_without_bookkeeping(old), _without_bookkeeping(config))
        if diff:
            raise UserError(
                f"{workdir} holds a run with another config ({diff}); use the same options to resume, "
                "or a new --workdir"
            )
        return
    if is_main_process():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"config.json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)


class Checkpointer:
    """orbax ``CheckpointManager`` for one run folder: ``workdir/checkpoints/<step>/{state,data,config}``.

    * ``state``: the train state pytree (params, optimiser state, EMA, step …), saved sharded by orbax and
      restored straight onto the shardings of an abstract target (``jax.ShapeDtypeStruct(..., sharding=…)``);
    * ``data``: ``{"processes": [iterator state of process 0, 1, …]}`` (JSON, gathered from every process);
    * ``config``: the run config (JSON), also kept as ``workdir/config.json`` and checked on start.

    Saves are asynchronous (``wait()`` blocks until the last one is on disk); the last ``keep`` are kept.
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        config: Mapping[str, Any],
        *,
        keep: int = 3,
        every: int = 1000,
        async_save: bool = True,
        upgrade: Callable[[dict], dict] | None = None,
    ):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.workdir = Path(workdir).absolute()
        self.config = json.loads(json.dumps(config))
        self.every = every
        check_config(self.workdir, self.config, upgrade)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=async_save)
        handlers = {
            "state": ocp.StandardCheckpointHandler(),
            "data": ocp.JsonCheckpointHandler(),
            "config": ocp.JsonCheckpointHandler(),
        }
        self.manager = ocp.CheckpointManager(self.workdir / "checkpoints", options=options, item_handlers=handlers)

    @property
    def latest_step(self) -> int | None:
        """Step of the newest complete checkpoint, or None."""
        return self.manager.latest_step()

    def should_save(self, step: int) -> bool:
        """True every ``every`` steps."""
        return self.every > 0 and step % self.every == 0

    def save(self, step: int, state: Any, data_state: Any = None) -> None:
        """Save ``state`` and this process's ``data_state`` (JSON) at ``step`` (a collective: call everywhere)."""
        ocp = self._ocp
        data = {"processes": gather_json(data_state), "process_count": jax.process_count()}
        if step in self.manager.all_steps():
            return
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=ocp.args.JsonSave(data),
                config=ocp.args.JsonSave(self.config),
            ),
            force=True,
        )

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, Any]:
        """``(state, data_state)`` of ``step`` (default: latest) onto ``abstract_state``'s shardings.

        ``abstract_state`` is a tree of ``jax.ShapeDtypeStruct`` with ``sharding`` set (``abstract_like``).
        ``data_state`` is this process's iterator state, or None when the process count changed since the save
        (the data order then restarts; a warning says so).
        """
        ocp = self._ocp
        step = self.latest_step if step is None else step
        if step is None:
            raise UserError(f"no checkpoint in {self.workdir}")
        self._check_fits(step, abstract_state)
        out = self.manager.restore(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()),
        )
        data = out["data"] or {}
        procs = data.get("processes") or []
        if len(procs) != jax.process_count():
            log.warning(
                "checkpoint was written by %d processes, this job has %d: data order restarts",
                len(procs),
                jax.process_count(),
            )
            return out["state"], None
        return out["state"], procs[jax.process_index()]

    def _check_fits(self, step: int, abstract_state: Any) -> None:
        """ValueError naming the first array ``abstract_state`` wants that step ``step`` lacks or stores with another
        shape. Checked from the stored metadata before any array is read: a failed orbax restore would leave its
        read coroutines pending (they surface later as "Event loop is closed" warnings)."""
        stored = self.manager.item_metadata(step)["state"]
        if stored is None:  # an orbax version without per-array metadata: let restore find out
            return

        def shapes(tree) -> dict[str, tuple]:
            flat = jax.tree_util.tree_flatten_with_path(tree)[0]
            return {".".join(_key_name(k) for k in p): tuple(x.shape) for p, x in flat}

        have, want = shapes(stored), shapes(abstract_state)
        for name, shape in want.items():
            if name not in have:
                raise ValueError(f"checkpoint step {step} has no array {name}")
            if have[name] != shape:
                raise ValueError(f"checkpoint step {step} stores {name} as {have[name]}, wanted {shape}")

    def wait(self) -> None:
        """Block until every pending asynchronous save is complete."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        """Finish pending saves and release the manager."""
        self.manager.wait_until_finished()
        self.manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _key_name(key: Any) -> str:
    """One pytree path entry as a plain name (dict key, sequence index or attribute: orbax stores all three as
    dict keys)."""
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def abstract_like(tree: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs of ``tree`` (arrays or shape structs) carrying ``shardings`` — a restore target."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


# ----------------------------------------------------------------------------------------------- signals


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


# ----------------------------------------------------------------------------------------------- logging


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
