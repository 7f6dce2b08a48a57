"""Fit a stage-1 run's landmark-flow head with the rest of the model frozen (``vasajax fit-landmarks``).

    vasajax fit-landmarks --face-run runs/demo/face --data runs/demo/synthtalk/train --out runs/demo/face-marks

The landmark flow (``FaceConfig.landmark_flow``) places K face points from (pose, z_dyn, z_id) and moves the
pixels near them. Inside the full stage-1 step at batch 2 its MLP learns the points' average layout within a few
hundred steps but not how the lips follow z_dyn (measured on held-out frames after 450 steps: inner-lip gap r 0.20,
spread 0.004 against the truth's 0.03). The information is in the code: fitted on its own with a large batch, the
same head reaches r 0.89 in a minute. So, as ``train-painters`` does for the painters (and LivePortrait for its
retargeting modules):

1. **collect**: ``--frames-per-clip`` random frames of every training clip; the frozen encoders give each frame's
   (pose, z_dyn, z_id), and the clip records give the tracker's landmarks (``loader.FLOW_LANDMARKS``);
2. **fit**: only the head, L1 to the landmarks (grid units), Adam, ``--batch`` frames a step; the held-out frames of
   ``--eval-data`` (when given) are scored before and after: point error, and the inner-lip gap's correlation with
   the truth's;
3. **write**: a new run folder with the fitted head in params and EMA (``init_from`` names the frozen run).
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
from vasajax.data.loader import FLOW_LANDMARKS
from vasajax.errors import UserError
from vasajax.train import face as face_train
from vasajax.train.painters import write_run


@dataclasses.dataclass(frozen=True, kw_only=True)
class LandmarkFitConfig:
    frames_per_clip: int = 16
    """Random frames taken from each clip."""
    steps: int = 3000
    batch: int = 256
    lr: float = 1e-3
    seed: int = 0


def collect(model, data: str | Path, frames_per_clip: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``{"pose", "dyn", "identity": N×…, "points": N×K×2}``: the frozen model's codes of random frames of every clip,
    and the tracker's ``FLOW_LANDMARKS`` of the same frames in grid units."""
    manifest = clips.read_manifest(data)
    if manifest.get("kind") != "clip":
        raise UserError(f"{data} holds {manifest.get('kind')} records; pass clip shards")
    graphdef, params = nnx.split(model)

    @jax.jit
    def codes(p, frames):
        m = nnx.merge(graphdef, p)
        pose, dyn = m.encode_motion(frames)
        return pose, dyn, m.identity_encoder(frames)

    rng = np.random.default_rng(seed)
    out: dict[str, list] = {"pose": [], "dyn": [], "identity": [], "points": []}
    for rec in clips.read_records(manifest, data):
        landmarks = rec.ground_truth.get("landmarks_Tx478x3")
        if landmarks is None:
            raise UserError(f"clip {rec.source} has no tracker landmarks (prepare it with vasajax prep or synth)")
        frames = rec.frames_TxSxSx3
        if frames.shape[1] != model.cfg.image_size:
            raise UserError(f"clip {rec.source} has {frames.shape[1]}² frames; the model reads {model.cfg.image_size}²")
        # one shape per call (one compile): drawn with replacement when a clip is shorter
        idx = rng.choice(len(frames), size=frames_per_clip, replace=len(frames) < frames_per_clip)
        pose, dyn, ident = codes(params, jnp.asarray(frames[idx], jnp.float32) / 255.0)
        out["pose"].append(np.asarray(pose, np.float32))
        out["dyn"].append(np.asarray(dyn, np.float32))
        out["identity"].append(np.asarray(ident, np.float32))
        out["points"].append(2.0 * np.asarray(landmarks)[idx][:, list(FLOW_LANDMARKS), :2].astype(np.float32) - 1.0)
    if not out["pose"]:
        raise UserError(f"{data} has no clips")
    return {k: np.concatenate(v) for k, v in out.items()}


def score(head, frames: dict[str, np.ndarray]) -> dict[str, float]:
    """Point error (mean L1, grid units) and the inner-lip gap (points 13 → 14) against the truth: Pearson r and
    the spread (std) of each."""
    pred = np.asarray(head.points(*(jnp.asarray(frames[k]) for k in ("pose", "dyn", "identity"))))
    true = frames["points"]
    up, low = FLOW_LANDMARKS.index(13), FLOW_LANDMARKS.index(14)
    gap_p, gap_t = pred[:, low, 1] - pred[:, up, 1], true[:, low, 1] - true[:, up, 1]
    ok = gap_p.std() > 1e-9 and gap_t.std() > 1e-9
    return {
        "point_l1": round(float(np.abs(pred - true).mean()), 5),
        "lip_gap_r": round(float(np.corrcoef(gap_p, gap_t)[0, 1]), 4) if ok else float("nan"),
        "lip_gap_std": round(float(gap_p.std()), 5),
        "lip_gap_std_true": round(float(gap_t.std()), 5),
    }


def fit(model, frames: dict[str, np.ndarray], cfg: LandmarkFitConfig, heldout=None, log_every: int = 500):
    """Fit ``model.landmark_flow`` in place on ``frames`` (from :func:`collect`); returns the logged rows."""
    graphdef, params = nnx.split(model.landmark_flow)
    tx = optax.adam(cfg.lr)
    opt = tx.init(params)

    def loss_fn(p, pose, dyn, ident, points):
        return jnp.abs(nnx.merge(graphdef, p).points(pose, dyn, ident) - points).mean()

    @jax.jit
    def step(p, o, *batch):
        loss, g = jax.value_and_grad(loss_fn)(p, *batch)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o, loss

    keys = ("pose", "dyn", "identity", "points")
    n = len(frames["pose"])
    rng = np.random.default_rng(cfg.seed + 1)
    rows, t0 = [], time.time()
    if heldout is not None:
        rows.append({"step": 0, "heldout": score(model.landmark_flow, heldout)})
        print(json.dumps(rows[-1]), flush=True)
    for k in range(1, cfg.steps + 1):
        idx = rng.integers(0, n, cfg.batch)
        params, opt, loss = step(params, opt, *(jnp.asarray(frames[key][idx]) for key in keys))
        if k % log_every == 0 or k == cfg.steps:
            row = {"step": k, "seconds": round(time.time() - t0, 1), "l1": round(float(loss), 5)}
            if heldout is not None:
                row["heldout"] = score(nnx.merge(graphdef, params), heldout)
            rows.append(row)
            print(json.dumps(row), flush=True)
    nnx.update(model.landmark_flow, params)
    return rows


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vasajax fit-landmarks", description=__doc__.split("\n")[0])
    p.add_argument("--face-run", required=True, help="the frozen train-face run (its model has landmark_flow > 0)")
    p.add_argument("--data", required=True, help="clip shards with tracker landmarks (the run's training data)")
    p.add_argument("--eval-data", help="held-out clip shards, scored before and after the fit")
    p.add_argument("--out", required=True, help="new run folder to write")
    d = LandmarkFitConfig()
    p.add_argument("--frames-per-clip", type=int, default=d.frames_per_clip)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    return p


def cli_main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = LandmarkFitConfig(
        frames_per_clip=args.frames_per_clip, steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed
    )
    if not face_train.vasa_config(args.face_run, "fit-landmarks").model.landmark_flow:
        raise UserError(
            f"{args.face_run}'s model has no landmark flow; grow it first: train-face --init-from "
            f"{args.face_run} --model landmark_flow={len(FLOW_LANDMARKS)}"
        )
    model = face_train.load_model(args.face_run)
    t0 = time.time()
    frames = collect(model, args.data, cfg.frames_per_clip, cfg.seed)
    heldout = collect(model, args.eval_data, cfg.frames_per_clip, cfg.seed + 7) if args.eval_data else None
    print(f"{len(frames['pose'])} frames ({time.time() - t0:.0f} s)", flush=True)
    metrics = fit(model, frames, cfg, heldout)
    out = write_run(args.face_run, args.out, nnx.state(model.landmark_flow), metrics, part="landmark_flow")
    print(f"wrote {out}")
    return 0
