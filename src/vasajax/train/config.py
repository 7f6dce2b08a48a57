"""Run and optimiser configs of both trainers, and their JSON form (saved with every run)."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

log = logging.getLogger("vasajax.train")


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
