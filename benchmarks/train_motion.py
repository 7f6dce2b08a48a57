"""Stage-2 training-step cost: the real ``vasajax.train.motion`` step (x0 loss with condition dropout, AdamW,
EMA) jitted with its shardings, on synthetic windows.

    python benchmarks/train_motion.py --config tiny small            # 2-core CPU
    python benchmarks/train_motion.py --config paper --bf16          # one GPU
    python benchmarks/train_motion.py --config tiny --devices 1 2 4  # weak scaling (simulated CPU devices)
    python benchmarks/train_motion.py --config small --generator vasa joyvasa \
        --model num_layers=6 --model width=256 --model num_heads=4 --model window=50 --model context=10
                                                                     # JoyVASA's DiT at VASA small's size

Reports step time, windows/s, frames/s (windows × W), GFLOPs per step (XLA cost analysis of the lowered
step), compile time and peak device memory; ``--devices`` keeps the per-device batch fixed and reports the
weak-scaling efficiency t(1)/t(n) (on simulated CPU devices the cores are shared, so this checks that the
sharded step works, not real scaling). Results are appended to ``results/train_motion-<device>-<date>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", nargs="+", default=["tiny"], choices=("tiny", "small", "paper"))
    ap.add_argument("--batch", type=int, default=None, help="global batch (default: the preset's)")
    ap.add_argument("--devices", type=int, nargs="+", default=[1], help="mesh sizes (weak scaling)")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--generator", nargs="+", default=["vasa"], help="trainable generators (stages.MOTION_TRAINING)")
    ap.add_argument("--model", action="append", default=[], metavar="KEY=VALUE",
                    help="model config override for non-VASA generators (ints), e.g. width=256")  # fmt: skip
    args = ap.parse_args(argv)
    import jax

    if max(args.devices) > 1:  # must precede any backend use; only the CPU backend reads it
        jax.config.update("jax_num_cpu_devices", max(args.devices))
    import numpy as np

    from face_latent import device_name, flops_of, peak_memory_gib
    from vasajax.motion.dit import count_params
    from vasajax.train import common
    from vasajax.train import motion as tm

    dev = device_name()
    rows = []
    over = {k: int(v) for k, v in (kv.split("=", 1) for kv in args.model)}
    for name, gen in ((c, g) for c in args.config for g in args.generator):
        base_step = None
        for n in args.devices:
            cfg = tm.PRESETS[name](gen, precision="bfloat16" if args.bf16 else "float32")
            if gen != "vasa" and over:
                cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **over))
            per_dev = (args.batch or cfg.run.batch_size) // args.devices[0]
            cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, batch_size=per_dev * n))
            mesh = common.make_mesh(1, jax.devices()[:n])
            graphdef, _, _, init, step = tm.compiled(cfg, mesh)
            m = cfg.model
            B, L = cfg.run.batch_size, m.window + m.context
            rng = np.random.default_rng(0)
            host = {
                "motion": rng.standard_normal((B, L, m.motion_dim)).astype(np.float32),
                "audio": rng.standard_normal((B, L, m.audio_dim)).astype(np.float32),
                "gaze": rng.standard_normal((B, 2)).astype(np.float32),
                "distance": rng.random((B, 1)).astype(np.float32),
                "emotion": rng.random((B, getattr(m, "emotion_dim", 52))).astype(np.float32),
            }
            host = {k: host[k] for k in cfg.entry.batch_keys}
            zeros, ones = (lambda d: np.zeros(d, np.float32)), (lambda d: np.ones(d, np.float32))
            stats = dict(motion_mean=zeros(m.motion_dim), motion_std=ones(m.motion_dim),
                         audio_mean=zeros(m.audio_dim), audio_std=ones(m.audio_dim), gaze_mean=zeros(2),
                         gaze_std=ones(2), distance_mean=zeros(1), distance_std=ones(1))  # fmt: skip
            state = init(stats)
            batch = common.global_batch(host, mesh, cfg.entry.batch_keys)
            t0 = time.perf_counter()
            lowered = step.lower(state, batch)
            gflops = flops_of(lowered) / 1e9
            state, metrics = step(state, batch)  # compiles (same cache as the trainer)
            jax.block_until_ready(metrics["loss"])
            compile_s = time.perf_counter() - t0
            times = []
            for _ in range(args.iters):
                t0 = time.perf_counter()
                state, metrics = step(state, batch)
                jax.block_until_ready(metrics["loss"])
                times.append(time.perf_counter() - t0)
            dt = float(np.median(times))
            base_step = dt if base_step is None else base_step
            row = dict(
                config=name, generator=gen, devices=n, batch=B, window=m.window, context=m.context,
                precision=cfg.run.precision, params_M=count_params(tm.sampling_model(cfg, state)) / 1e6,
                step_s=dt, windows_per_s=B / dt, frames_per_s=B * m.window / dt, gflops_per_step=gflops,
                compile_s=compile_s, peak_memory_gib=peak_memory_gib(), weak_scaling_eff=base_step / dt,
                loss=float(metrics["loss"]),
            )  # fmt: skip
            rows.append(row)
            print(f"device: {dev}  " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                 for k, v in row.items()), flush=True)  # fmt: skip
    out = pathlib.Path(__file__).parent / "results" / f"train_motion-{dev}-{datetime.date.today().isoformat()}.json"
    prev = json.loads(out.read_text())["rows"] if out.exists() else []
    meta = dict(benchmark="train_motion", device=dev, jax=jax.__version__, cpu_count=os.cpu_count())
    out.write_text(json.dumps(dict(**meta, rows=prev + rows), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
