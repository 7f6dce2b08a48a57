"""Where a stage-1 training step spends its time, per design: a profile of one step by component, then the whole
step of the real trainer.

    python benchmarks/train_face.py                                  # small vs small + pixel warp, 2-core CPU
    python benchmarks/train_face.py --designs small_warp --batch 16 --full-objective   # the GPU preset
    python benchmarks/train_face.py --designs small_warp --model warp_keypoints=32 --model landmark_flow=98

Each component is timed as forward + backward (``jax.grad`` of the sum of its output with respect to its
parameters and inputs) at the shapes one step of the CPU recipe uses (batch B of sources, B of drivers): the
appearance encoder (B images), the motion encoder (2B: source and driver), the identity encoder (B), the
to-canonical warp generator + trilinear resample, G3D, the to-driver warp generator + resample, G2D (with the
pixel warp where the design has it) and the image losses (L1 + multi-scale SSIM + face-crop SSIM + mouth L1 on the
decoded images). The last row is ``vasajax.train.face``'s jitted generator step (objective, AdamW, EMA) on
synthetic uint8 frames: what the design comparison in ``checkpoints/README.md`` pays per step. Components do not
add up exactly to the step (XLA fuses across them, the optimiser is outside them). Results are written to
``results/train_face-<device>-<date>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from face_latent import device_name, timeit  # noqa: E402
from vasajax.face import losses, warp  # noqa: E402
from vasajax.face.config import PRESETS  # noqa: E402
from vasajax.face.model import FaceLatentModel  # noqa: E402
from vasajax.train import common  # noqa: E402
from vasajax.train import face as face_train  # noqa: E402


def _fwd_bwd(module: nnx.Module, call):
    """jit(grad) of ``sum(call(module, *inputs))`` w.r.t. the module's params and the float inputs."""
    graphdef, params = nnx.split(module)

    def loss(p, *xs):
        out = call(nnx.merge(graphdef, p), *xs)
        return sum(jnp.sum(o.astype(jnp.float32)) for o in jax.tree.leaves(out))

    return jax.jit(jax.grad(loss, argnums=tuple(range(1 + 1)))), params


DESIGNS = dict(PRESETS)
"""Design name → FaceConfig factory: the presets, plus ``preset+name=value,…`` variants made by ``--model``."""


def profile(design: str, batch: int, iters: int) -> dict[str, float]:
    cfg = DESIGNS[design]()
    model = FaceLatentModel(cfg, rngs=nnx.Rngs(0))
    key = jax.random.key(0)
    b, s = batch, cfg.image_size
    img = jax.random.uniform(key, (b, s, s, 3))
    img2 = jnp.concatenate([img, img[::-1]])
    lat = model.encode(img)
    posed = model.appearance_encoder(img)
    d, h, w = posed.shape[1:4]
    rows: dict[str, float] = {}

    def run(name, module, call, x):
        fn, p = _fwd_bwd(module, call)
        rows[name] = timeit(fn, p, x, iters=iters)

    run("appearance encoder", model.appearance_encoder, lambda m, x: m(x), img)
    run("motion encoder (2B)", model.motion_encoder, lambda m, x: m(x), img2)
    run("identity encoder", model.identity_encoder, lambda m, x: m(x), img)
    run(
        "warp to canonical + resample",
        model,
        lambda m, v: warp.grid_sample(v, m.canonical_grid(lat.pose, lat.dyn, lat.identity, d, h, w)),
        posed,
    )
    run("G3D", model.g3d, lambda m, v: m(v), lat.appearance)
    if cfg.pixel_warp:
        both = jnp.concatenate([lat.appearance, lat.source_grid], axis=-1)
        c = lat.appearance.shape[-1]
        run("warp to driver + resample", model, lambda m, v: m.to_driver(v, lat.pose, lat.dyn, lat.identity), both)
        moved = model.to_driver(both, lat.pose, lat.dyn, lat.identity)
        run("G2D + pixel warp", model.g2d, lambda m, v: m(v[..., :c], lat.source, v[..., c:], dyn_BxZ=lat.dyn), moved)
    else:
        run(
            "warp to driver + resample",
            model,
            lambda m, v: m.to_driver(v, lat.pose, lat.dyn, lat.identity),
            lat.appearance,
        )
        run("G2D", model.g2d, lambda m, v: m(v), model.to_driver(lat.appearance, lat.pose, lat.dyn, lat.identity))

    lcfg = losses.FaceLossConfig.small(mouth_weight=10.0)
    crit = losses.FaceCritics(lcfg)
    box = jnp.tile(jnp.array([[0.35, 0.6, 0.65, 0.8]]), (b, 1))

    def image_loss(x):
        dist = crit.perceptual(jnp.concatenate([x, losses.face_zoom(x, 0.6)]), jnp.concatenate([img, img]), lcfg)
        return (
            10 * losses.l1(x, img).mean()
            + 20 * dist.mean()
            + 10 * losses.masked_l1(x, img, losses.box_mask(box, s, s)).mean()
        )

    rows["image losses"] = timeit(jax.jit(jax.grad(image_loss)), img[::-1], iters=iters)
    return rows


def trainer_step(design: str, batch: int, iters: int, full: bool) -> tuple[float, float]:
    """(seconds per generator step, compile seconds) of the real trainer step for the CPU recipe (or ``full``)."""
    cfg = face_train.FaceTrainConfig.small(batch_size=batch)
    model = DESIGNS[design]()
    pairs = dataclasses.replace(cfg.pairs, size=model.image_size)
    cfg = dataclasses.replace(cfg, model=model, pairs=pairs, adversarial=full)
    if not full:
        loss = dataclasses.replace(cfg.loss, transfer_weight=0.0, identity_weight=0.0, contrastive_weight=0.0)
        cfg = dataclasses.replace(cfg, loss=loss)
    mesh = common.make_mesh(1)
    t0 = time.perf_counter()
    steps = face_train.compiled_steps(cfg, mesh)
    state = steps.init()
    rng = np.random.default_rng(0)
    s = cfg.model.image_size
    batch_np = {k: rng.integers(0, 255, (batch, s, s, 3), dtype=np.uint8) for k in face_train.BATCH_KEYS}
    batch_np["driver_mouth_4"] = np.tile(np.array([[0.35, 0.6, 0.65, 0.8]], np.float32), (batch, 1))
    b = common.global_batch(batch_np, mesh, face_train.batch_keys(cfg))
    state, _, fakes = steps.gen(state, steps.critic_params, b)
    if steps.disc is not None:
        state, _ = steps.disc(state, b["driver"], fakes)
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - t0
    ts = []
    for _ in range(iters):
        t = time.perf_counter()
        state, _, fakes = steps.gen(state, steps.critic_params, b)
        if steps.disc is not None:
            state, _ = steps.disc(state, b["driver"], fakes)
        jax.block_until_ready(state)
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)), compile_s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--designs", nargs="+", default=["small", "small_warp"], choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--full-objective", action="store_true", help="GAN + transfer + identity + contrastive terms")
    ap.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a model option for every design (repeatable), as train-face --model; e.g. warp_keypoints=32",
    )
    args = ap.parse_args(argv)
    if args.model:
        from vasajax.train.face import parse_model_overrides

        named = []
        for base in args.designs:
            overrides = parse_model_overrides(args.model, PRESETS[base]())
            name = base + "+" + ",".join(args.model)
            DESIGNS[name] = lambda base=base, overrides=overrides: PRESETS[base](**overrides)
            named.append(name)
        args.designs = named
    dev = device_name()
    out = {"device": dev, "batch": args.batch, "date": datetime.date.today().isoformat(), "designs": {}}
    for design in args.designs:
        rows = profile(design, args.batch, args.iters)
        step, compile_s = trainer_step(design, args.batch, args.iters, args.full_objective)
        rows["trainer generator step" + (" (full objective + disc)" if args.full_objective else " (CPU recipe)")] = step
        out["designs"][design] = {
            "seconds": rows,
            "samples_per_s": args.batch / step,
            "compile_s": compile_s,
        }
        print(f"\n{design} on {dev}, batch {args.batch} (forward + backward, s)")
        for name, t in rows.items():
            print(f"  {name:48s} {t:8.3f}")
        print(f"  samples/s {args.batch / step:.2f}, compile {compile_s:.0f} s")
    path = pathlib.Path(__file__).parent / "results" / f"train_face-{dev}-{out['date']}.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
