"""Fit a stage-1 run's patch painters with the rest of the model frozen (``vasajax train-painters``).

    vasajax train-painters --face-run runs/demo/face --data runs/demo/synthtalk/train --out runs/demo/face-painted

The painters (``FaceConfig.patch_channels``) repaint the mouth and eye windows of the rendered frame from z_dyn.
Inside the full stage-1 step they barely learn on a CPU: at batch 2 the image loss's gradient for a few hundred
mouth pixels is mostly noise (measured: their last layer moved by ~2e-4 in 140 steps). LivePortrait trains its
lip and eye retargeting modules the same way, after the base model and with it frozen. Here:

1. **collect**: for every training clip, one random source frame and ``--pairs-per-clip`` random driver frames;
   the frozen model renders each self-reenactment *without* the painters, and the painters' windows of that
   render, of the true driver frame, and the driver's z_dyn are kept (a few MB);
2. **fit**: only the painters, on those windows: L1 to the truth, Adam, batches of ``--batch`` windows (cheap:
   ~1 % of a full stage-1 step per sample);
3. **write**: a new run folder holding the frozen run's checkpoint with the fitted painters in both the params
   and the EMA (``init_from`` names the frozen run, so ``export`` records the chain); everything that loads a
   run (``encode-dataset``, ``export``, ``eval``) takes it as it is.

The frozen run must already have painters (``--model patch_channels=32``; grow them with ``train-face
--init-from``: they start at zero, so the grown run renders as before).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from vasajax.data import clips
from vasajax.errors import UserError
from vasajax.face.model import FaceLatentModel
from vasajax.train import common
from vasajax.train import face as face_train


@dataclasses.dataclass(frozen=True, kw_only=True)
class PainterFitConfig:
    pairs_per_clip: int = 8
    """Driver frames per training clip (one random source frame each clip)."""
    steps: int = 1500
    batch: int = 32
    lr: float = 1e-3
    seed: int = 0


def _frames(rec, size: int) -> np.ndarray:
    f = rec.frames_TxSxSx3
    if f.shape[1] != size:
        raise UserError(f"clip {rec.source} has {f.shape[1]}² frames; the model renders {size}²")
    return f


def collect(model, data: str | Path, cfg: PainterFitConfig) -> dict[str, np.ndarray]:
    """``{"dyn": N×Z, "base_<i>": N×h×w×3, "truth_<i>": ...}`` (uint8 windows) for painter ``i``."""
    manifest = clips.read_manifest(data)
    if manifest.get("kind") != "clip":
        raise UserError(f"{data} holds {manifest.get('kind')} records; pass clip shards")
    graphdef, params = nnx.split(model)

    @jax.jit
    def render(p, src, drv):
        m = nnx.merge(graphdef, p)
        lat = m.encode(src)
        pose, dyn = m.encode_motion(drv)
        base = m.decode(
            lat.appearance, lat.identity, pose, dyn, lat.source, lat.source_grid, lat.source_points, paint=False
        )
        return dyn, [painter.crop(base) for painter in m.painters], [painter.crop(drv) for painter in m.painters]

    rng = np.random.default_rng(cfg.seed)
    k = cfg.pairs_per_clip
    out: dict[str, list] = {"dyn": []}
    for rec in clips.read_records(manifest, data):
        frames = _frames(rec, model.cfg.image_size)
        t = len(frames)
        src = rng.integers(t)
        drv = rng.choice(t, size=min(k, t), replace=False)
        # Pad to k drivers so every call has one shape (one compile).
        drv = np.resize(drv, k)
        x = jnp.asarray(frames[np.r_[src, drv]], jnp.float32) / 255.0
        dyn, bases, truths = render(params, x[:1], x[1:])
        out["dyn"].append(np.asarray(dyn))
        for i, (b, tr) in enumerate(zip(bases, truths, strict=True)):
            out.setdefault(f"base_{i}", []).append((np.asarray(b) * 255 + 0.5).astype(np.uint8))
            out.setdefault(f"truth_{i}", []).append((np.asarray(tr) * 255 + 0.5).astype(np.uint8))
    if not out["dyn"]:
        raise UserError(f"{data} has no clips")
    return {name: np.concatenate(v) for name, v in out.items()}


def fit(model, pairs: dict[str, np.ndarray], cfg: PainterFitConfig, log_every: int = 100) -> list[dict]:
    """Fit ``model.painters`` in place on ``pairs`` (from :func:`collect`); returns the logged metrics."""
    graphdef, params = nnx.split(model.painters)
    tx = optax.adam(cfg.lr)
    opt = tx.init(params)
    n_painters = len(model.painters)

    def loss_fn(p, batch):
        painters = nnx.merge(graphdef, p)
        losses = [
            jnp.abs(painters[i].paint_window(batch[f"base_{i}"], batch["dyn"]) - batch[f"truth_{i}"]).mean()
            for i in range(n_painters)
        ]
        return sum(losses), jnp.stack(losses)

    @jax.jit
    def step(p, o, batch):
        (loss, parts), g = jax.value_and_grad(loss_fn, has_aux=True)(p, batch)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o, parts

    def as_batch(idx):
        b = {"dyn": jnp.asarray(pairs["dyn"][idx])}
        for i in range(n_painters):
            for kind in ("base", "truth"):
                b[f"{kind}_{i}"] = jnp.asarray(pairs[f"{kind}_{i}"][idx], jnp.float32) / 255.0
        return b

    n = len(pairs["dyn"])
    rng = np.random.default_rng(cfg.seed + 1)
    copy = [
        float(np.abs(pairs[f"base_{i}"].astype(np.float32) - pairs[f"truth_{i}"]).mean() / 255)
        for i in range(n_painters)
    ]
    rows, t0 = [], time.time()
    for k in range(1, cfg.steps + 1):
        params, opt, parts = step(params, opt, as_batch(rng.integers(0, n, cfg.batch)))
        if k % log_every == 0 or k == cfg.steps:
            row = {"step": k, "seconds": round(time.time() - t0, 1), "l1": [round(float(v), 5) for v in parts]}
            row["l1_unpainted"] = [round(v, 5) for v in copy]
            rows.append(row)
            print(json.dumps(row), flush=True)
    nnx.update(model.painters, params)
    return rows


def write_run(
    base_run: str | Path, out: str | Path, part_state: nnx.State, metrics: list[dict], part: str = "painters"
) -> Path:
    """A new run folder: ``base_run``'s latest checkpoint with one model part (``part``: the painters, or the
    landmark flow of ``fit-landmarks``) replaced in params and EMA."""
    base_run, out = Path(base_run), Path(out)
    if (out / "checkpoints").exists():
        raise UserError(f"{out} already holds checkpoints; choose a new --out")
    cfg, gen = face_train._restore_gen(base_run)
    base_ckpt = common.Checkpointer(base_run, cfg.to_dict(), async_save=False)
    try:
        step = base_ckpt.latest_step
    finally:
        base_ckpt.close()
    cfg = dataclasses.replace(cfg, init_from=str(base_run.absolute()))

    graphdef, _ = nnx.split(nnx.eval_shape(lambda: FaceLatentModel(cfg.model_cfg, rngs=nnx.Rngs(0))))

    def painted(tree):
        model = nnx.merge(graphdef, tree)
        nnx.update(getattr(model, part), part_state)
        return nnx.split(model)[1]

    gen = dict(gen)
    gen["params"] = painted(gen["params"])
    if "ema" in gen:
        gen["ema"] = painted(gen["ema"])
    state = {"step": jnp.asarray(step, jnp.int32), "gen": gen}
    if cfg.adversarial:
        state["disc"] = jax.eval_shape(lambda: face_train.init_state(cfg))["disc"]
        state["disc"] = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), state["disc"])
    out.mkdir(parents=True, exist_ok=True)
    ckpt = common.Checkpointer(out, cfg.to_dict(), async_save=False)
    try:
        ckpt.save(step, state)
        ckpt.wait()
    finally:
        ckpt.close()
    with open(out / "metrics.jsonl", "w") as f:
        for row in metrics:
            f.write(json.dumps({part: row}) + "\n")
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vasajax train-painters", description=__doc__.split("\n")[0])
    p.add_argument("--face-run", required=True, help="the frozen train-face run (its model has patch_channels > 0)")
    p.add_argument("--data", required=True, help="clip shards (the run's training data)")
    p.add_argument("--out", required=True, help="new run folder to write")
    d = PainterFitConfig()
    p.add_argument("--pairs-per-clip", type=int, default=d.pairs_per_clip)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument(
        "--pairs-cache", help=".npz of collected pairs: loaded if it exists, else written (refits skip step 1)"
    )
    return p


def cli_main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = PainterFitConfig(
        pairs_per_clip=args.pairs_per_clip, steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed
    )
    if not face_train.vasa_config(args.face_run, "fit-painters").model.patch_channels:
        raise UserError(
            f"{args.face_run}'s model has no patch painters; grow them first: train-face --init-from "
            f"{args.face_run} --model patch_channels=32 (they start at zero)"
        )
    model = face_train.load_model(args.face_run)
    t0 = time.time()
    cache = Path(args.pairs_cache) if args.pairs_cache else None
    if cache is not None and cache.exists():
        with np.load(cache) as f:
            pairs = dict(f)
    else:
        pairs = collect(model, args.data, cfg)
        if cache is not None:
            np.savez(cache, **pairs)
    print(f"{len(pairs['dyn'])} pairs ({time.time() - t0:.0f} s)", flush=True)
    metrics = fit(model, pairs, cfg)
    out = write_run(args.face_run, args.out, nnx.state(model.painters), metrics)
    print(json.dumps({"out": str(out), **metrics[-1]}))
    return 0
