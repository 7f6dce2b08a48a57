"""Stage-1 training-step cost: the real ``vasajax.train.face`` step (whole generator objective + discriminator
update, AdamW, EMA) jitted with its shardings, on synthetic uint8 frames.

    python benchmarks/train.py --config tiny small                 # 2-core CPU
    python benchmarks/train.py --config paper --bf16 --batch 8     # one GPU
    python benchmarks/train.py --config tiny --devices 1 2 4       # weak scaling (simulated CPU devices)
    python benchmarks/train.py --renderer liveportrait --config small   # another trainable renderer's step

Reports generator + discriminator step time, samples/s, GFLOPs per step (XLA cost analysis of the lowered
steps), compile time and peak device memory; ``--devices`` keeps the per-device batch fixed and reports the
weak-scaling efficiency t(1)/t(n) (simulated CPU devices share the same cores, so on CPU this checks that the
sharded step runs, not real scaling). Results are appended to ``results/train-<device>-<date>.json``.
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


LABELS = {"driver_mouth_4": [0.3, 0.6, 0.7, 0.8], "source_pose_6": [0.0] * 6, "driver_pose_6": [0.0] * 6}
"""Constant stand-ins for the loader's per-example labels an objective may read (a mouth box, tracker poses)."""


def bench(name: str, n_dev: int, per_device: int, bf16: bool, gan: bool, iters: int, renderer: str = "vasa") -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from face_latent import device_name, flops_of, peak_memory_gib
    from vasajax.face.model import count_params
    from vasajax.train import common, face

    run = {"batch_size": per_device * n_dev, "precision": "bfloat16" if bf16 else "float32"}
    cfg = dataclasses.replace(face.FaceTrainConfig.preset(name, renderer=renderer, **run), adversarial=gan)
    mesh = common.make_mesh(1, devices=jax.devices()[:n_dev])
    t0 = time.perf_counter()
    steps = face.compiled_steps(cfg, mesh)
    state = steps.init()
    s, b = cfg.entry.frame_size(cfg.model), cfg.run.batch_size
    rng = np.random.default_rng(0)
    keys = face.batch_keys(cfg)
    unknown = [k for k in keys if k not in face.BATCH_KEYS and k not in LABELS]
    if unknown:
        raise SystemExit(f"benchmarks/train.py has no stand-in for the labels {unknown}")
    host = {k: rng.integers(0, 256, (b, s, s, 3), dtype=np.uint8) for k in face.BATCH_KEYS}
    host |= {k: np.tile(np.asarray(LABELS[k], np.float32), (b, 1)) for k in keys if k in LABELS}
    batch = common.global_batch(host, mesh, keys)
    abstract_batch = {k: jax.ShapeDtypeStruct(v.shape, jnp.asarray(v).dtype) for k, v in host.items() if k in keys}
    gflops = flops_of(steps.gen.lower(steps.abstract, steps.critic_params, abstract_batch)) / 1e9

    def one(state):
        state, m, fakes = steps.gen(state, steps.critic_params, batch)
        if steps.disc is not None:
            state, _ = steps.disc(state, batch["driver"], fakes)
        return state, m

    state, m = one(state)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(iters):
        t1 = time.perf_counter()
        state, m = one(state)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t1)
    dt = float(np.median(times))
    n_params = count_params(state["gen"]["params"])
    return dict(
        config=name,
        renderer=renderer,
        image_size=s,
        devices=n_dev,
        batch=b,
        precision=run["precision"],
        gan=gan,
        params_M=n_params / 1e6,
        step_s=dt,
        samples_per_s=b / dt,
        gen_gflops_per_step=gflops,
        compile_s=compile_s,
        peak_memory_gib=peak_memory_gib(),
        loss=float(m["loss"]),
        device=device_name(),
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", nargs="+", default=["tiny"], choices=("tiny", "small", "paper"))
    ap.add_argument("--batch", type=int, default=2, help="batch per device")
    ap.add_argument("--devices", type=int, nargs="+", default=[1], help="mesh sizes (weak scaling)")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--no-gan", action="store_true", help="generator losses only (no discriminator)")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--renderer", default="vasa", help="trainable renderer (vasajax.stages.RENDERER_TRAINING)")
    args = ap.parse_args(argv)
    import jax

    if max(args.devices) > 1:  # must precede any backend use; only the CPU backend reads it
        jax.config.update("jax_num_cpu_devices", max(args.devices))
    from face_latent import device_name

    rows = []
    for name in args.config:
        base = None
        for n in args.devices:
            row = bench(name, n, args.batch, args.bf16, not args.no_gan, args.iters, args.renderer)
            base = base or row["step_s"]
            row["weak_scaling_eff"] = base / row["step_s"]
            rows.append(row)
            print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    dev = device_name()
    out = pathlib.Path(__file__).parent / "results" / f"train-{dev}-{datetime.date.today().isoformat()}.json"
    prev = json.loads(out.read_text())["rows"] if out.exists() else []
    out.write_text(json.dumps(dict(benchmark="train", device=dev, jax=jax.__version__, rows=prev + rows), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
