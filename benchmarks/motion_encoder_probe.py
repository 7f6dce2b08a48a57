"""Can the stage-1 motion encoder see the mouth and the eyelids? A probe of its capacity, apart from the renderer.

    python benchmarks/motion_encoder_probe.py --face-run runs/demo/face --data runs/demo/synthtalk --minutes 5
    python benchmarks/motion_encoder_probe.py --face-run runs/demo/face --data ... --fresh --model enc_input_size=256
    python benchmarks/motion_encoder_probe.py --face-run runs/demo/face --data ... --fresh --target synth \
        --model motion_pool=flatten --model glimpse_channels=32,64      # the windows: jaw r 0.92 in 100 steps

The demo's renderer does not move the mouth because its dynamics code z_dyn hardly changes over a clip. This
separates the two halves of that failure. It takes a run's motion encoder (or, with ``--fresh``, a newly
initialised one, optionally with other model settings), trains *only* it to regress the tracker's 52 blendshape
coefficients from the image (L1 on ``z_dyn[:52]``, what ``FaceLossConfig.expression_weight`` adds to the full
objective; or, ``--target synth``, SynthTalk's ground-truth jaw, lip spread/rounding, blink and emotion), and
prints, every 50 steps, the held-out Pearson r of ``jawOpen``, ``eyeBlinkLeft`` and ``mouthFunnel`` (or of each
SynthTalk parameter) and the mean L1 against a constant predictor's. A design whose encoder cannot reach r ≈ 0.9 on
jawOpen here cannot render speech, whatever its decoder does. Frames: every 6th of ``DATA/train``, every 4th of
``DATA/heldout`` (SynthTalk shards with tracker labels), batch 16, Adam. Wall-clock bounded (``--minutes``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import platform
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402

PROBED = ("jawOpen", "eyeBlinkLeft", "mouthFunnel")
SYNTH = ("jaw", "lip_spread", "lip_round", "blink", "emotion", "yaw", "pitch")
"""``--target synth``: SynthTalk's own animation parameters (``synth/<name>_T``; yaw and pitch from
``synth/pose_Tx6``), noise-free and per frame. Head yaw/pitch move many pixels: a sanity check of the probe."""


def _frames(data, size: int, max_clips: int, every: int, target: str):
    from vasajax.eval.face_recon import _clips, _resize

    xs, ys = [], []
    for rec in _clips(data, max_clips):
        xs.append(_resize(rec.frames_TxSxSx3[::every], size))
        if target == "synth":
            gt = rec.ground_truth
            pose = np.asarray(gt["synth/pose_Tx6"], np.float32)
            y = np.stack([np.asarray(gt[f"synth/{n}_T"], np.float32) for n in SYNTH[:5]] + [pose[:, 0], pose[:, 1]], -1)
        else:
            y = np.asarray(rec.blendshapes_Tx52, np.float32)
        ys.append(y[::every])
    return np.concatenate(xs), np.concatenate(ys)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--face-run", required=True, help="train-face run folder (its config, and weights unless --fresh)")
    ap.add_argument("--data", required=True, help="folder with train/ and heldout/ SynthTalk shards")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--fresh", action="store_true", help="a newly initialised encoder instead of the run's")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=VALUE", help="with --fresh: model settings")
    ap.add_argument(
        "--target",
        choices=("blendshapes", "synth"),
        default="blendshapes",
        help="MediaPipe's 52 blendshapes, or SynthTalk's ground-truth jaw / lips / blink / emotion",
    )
    ap.add_argument("--json", help="write the trajectory here")
    args = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from vasajax.face.encoders import MotionEncoder
    from vasajax.facetrack.landmarks import BLENDSHAPE_NAMES
    from vasajax.train import face

    if args.fresh:
        mcfg = face.load_config(args.face_run).model_cfg
        mcfg = dataclasses.replace(mcfg, **face.parse_model_overrides(args.model, mcfg))
        enc = MotionEncoder(mcfg, rngs=nnx.Rngs(0))
    else:
        model = face.load_model(args.face_run)
        mcfg, enc = model.cfg, model.motion_encoder
    data = pathlib.Path(args.data)
    xt, yt = _frames(data / "train", mcfg.image_size, 10_000, 6, args.target)
    xh, yh = _frames(data / "heldout", mcfg.image_size, 10_000, 4, args.target)
    dims = yt.shape[1]
    if mcfg.dyn_dim < dims:
        raise SystemExit(f"error: the probe needs dyn_dim >= {dims}, this model has {mcfg.dyn_dim}")
    probed = (
        {n: BLENDSHAPE_NAMES.index(n) for n in PROBED}
        if args.target == "blendshapes"
        else dict(zip(SYNTH, range(dims)))
    )
    print(f"train frames {len(xt)}, held-out frames {len(xh)}, image {mcfg.image_size}², encoder input "
          f"{mcfg.enc_input_size}², channels {mcfg.enc_channels}", flush=True)  # fmt: skip
    graphdef, params, rest = nnx.split(enc, nnx.Param, ...)
    tx = optax.adam(args.lr)
    opt = tx.init(params)

    def dyn52(p, x):
        return nnx.merge(graphdef, p, rest)(x)[1][:, :dims]

    @jax.jit
    def step(p, o, x, y):
        loss, g = jax.value_and_grad(lambda p: jnp.abs(dyn52(p, x) - y).mean())(p)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o, loss

    predict = jax.jit(dyn52)
    const_l1 = float(np.abs(yh - np.median(yt, axis=0)).mean())

    def evaluate(p):
        z = np.concatenate(
            [np.asarray(predict(p, jnp.asarray(xh[i : i + 32], jnp.float32) / 255.0)) for i in range(0, len(xh), 32)]
        )
        out = {n: float(np.corrcoef(z[:, i], yh[:, i])[0, 1]) for n, i in probed.items()}
        return {**out, "l1": float(np.abs(z - yh).mean()), "l1_constant": const_l1}

    rng = np.random.default_rng(0)
    rows = [{"step": 0, "seconds": 0.0, **evaluate(params)}]
    print(json.dumps(rows[-1]), flush=True)
    t0, k = time.time(), 0
    while time.time() - t0 < args.minutes * 60:
        idx = rng.integers(0, len(xt), args.batch)
        params, opt, _ = step(params, opt, jnp.asarray(xt[idx], jnp.float32) / 255.0, jnp.asarray(yt[idx]))
        k += 1
        if k % 50 == 0:
            rows.append({"step": k, "seconds": round(time.time() - t0, 1), **evaluate(params)})
            print(json.dumps(rows[-1]), flush=True)
    result = {
        "face_run": args.face_run,
        "fresh": args.fresh,
        "target": args.target,
        "model": args.model,
        "lr": args.lr,
        "batch": args.batch,
        "device": f"{jax.devices()[0].device_kind} ({platform.processor() or platform.machine()})",
        "trajectory": rows,
    }
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
