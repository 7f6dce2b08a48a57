"""Optimiser (AdamW + cosine schedule), frozen parts, gradient accumulation over micro-batches, EMA, per-step keys."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from vasajax.errors import UserError
from vasajax.train.config import OptimConfig

log = logging.getLogger("vasajax.train")


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


def ema_update(ema: Any, params: Any, decay: float, step: jax.Array | int | None = None) -> Any:
    """``ema ← d·ema + (1 − d)·params`` (float leaves only).

    With ``step`` (updates before this one) the decay warms up, ``d = min(decay, (1 + step) / (10 + step))``, so
    the average forgets its starting point within a few hundred steps instead of ~1/(1 − decay): a 0.999 EMA
    without it still holds 0.999^3000 ≈ 5 % of the initial weights after 3,000 steps."""
    if step is not None:
        t = jnp.asarray(step, jnp.float32)
        decay = jnp.minimum(decay, (1.0 + t) / (10.0 + t))
    return jax.tree.map(lambda e, p: e + (1.0 - decay) * (p.astype(e.dtype) - e).astype(e.dtype), ema, params)


def strong_types(tree: Any) -> Any:
    """``tree`` with every weakly typed array made strongly typed (same dtype and values).

    Leaves built from Python scalars are weakly typed; a train step returns them strongly typed, so a fresh state
    with weak leaves makes ``jit`` trace and compile the whole step a second time at step 2 (minutes for stage 1).
    Init functions pass their state through this."""

    def strong(x):
        if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.number):
            return jax.lax.convert_element_type(x, x.dtype)
        return x

    return jax.tree.map(strong, tree)


def step_key(seed: int, step: jax.Array | int) -> jax.Array:
    """The random key of one step: ``fold_in(key(seed), step)`` — a pure function of (seed, step)."""
    return jax.random.fold_in(jax.random.key(seed), step)


def compute_dtype(precision: str) -> str:
    """The model's compute dtype for a ``RunConfig.precision`` (parameters always stay float32)."""
    return {"float32": "float32", "bfloat16": "bfloat16"}[precision]
