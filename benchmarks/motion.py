"""Motion DiT speed: ms per sliding window, motion frames per second, parameters, GFLOPs, memory.

One window = W frames sampled with N denoising steps and the CFG branches of the paper's defaults
(λ_A = 0.5, λ_g = 1.0: three branches, stacked on the batch axis in one forward per step), i.e. exactly
what ``vasajax.motion.generate`` runs per window. Random weights: speed does not depend on training.

    python benchmarks/motion.py                                   # tiny small paper × 10 50 steps
    python benchmarks/motion.py --configs paper --steps 50 --dtype bfloat16 --batch 1 8

Needs only jax, flax and numpy (``src/`` is put on ``sys.path``; no install needed). Prints a table and
writes ``benchmarks/results/motion-<device>-<date>.json`` (rows of an earlier run of the same day and
device are kept unless this run measured the same setting). GFLOPs per window: counted from the layer
shapes (``analytic_flops_per_forward`` × CFG branches × batch × N), and as XLA's cost analysis reports
them (``xla_gflops_per_window``: one guided call × N, because XLA counts a ``lax.scan`` body once; on
GPUs it misses most of the cuBLAS matmuls, on CPU it agrees with the count within a few per cent).

Timing goes through ``benchmarks/timing.py``: a window during which other processes used more than
``--contended-share`` (0.1) of the CPUs is retried (up to ``--max-tries``) and left out; ``ms_per_window`` is the
median of the clean windows (windows shorter than 0.5 s are timed in runs of ``contention.inner`` and divided).
Every row records ``contention`` (others' share of the CPUs, windows discarded, load average before/after);
``contention.contended: true`` means no clean window was possible and the numbers were taken under load.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import json
import os
import pathlib
import platform
import re
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from vasajax.motion.diffusion import DiffusionConfig, guided_x0  # noqa: E402
from vasajax.motion.dit import Conditions, CondNull, MotionConfig, MotionDiT, count_params  # noqa: E402
from vasajax.motion.generate import sample_window  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from timing import CONTENDED_SHARE, load_snapshot, marker, measure, merge_rows  # noqa: E402

FPS = 25.0  # video frame rate of the motion


def _conditions(cfg: MotionConfig, batch: int) -> Conditions:
    """All conditions present (a middle window: context from the previous one)."""
    k = jax.random.split(jax.random.key(0), 6)
    B, W, K = batch, cfg.window, cfg.context
    return Conditions(
        jax.random.normal(k[0], (B, W, cfg.audio_dim)), jnp.ones((B, W), bool),
        jax.random.normal(k[1], (B, K, cfg.motion_dim)), jax.random.normal(k[2], (B, K, cfg.audio_dim)),
        jax.random.normal(k[3], (B, 2)), jax.random.normal(k[4], (B, 1)),
        jax.random.normal(k[5], (B, cfg.emotion_dim)), CondNull.none(B),
    )  # fmt: skip


def analytic_flops_per_forward(cfg: MotionConfig) -> float:
    """FLOPs (2 × multiply-adds) of one DiT forward for one sample, from the layer shapes."""
    W, K, d, M, A = cfg.window, cfg.context, cfg.width, cfg.motion_dim, cfg.audio_dim
    L, h = K + W, int(cfg.mlp_ratio * d)
    inputs = L * (M + A) * d + M * d + cfg.time_freq_dim * d + d * d + (2 + 1 + cfg.emotion_dim) * d
    block = L * d * 3 * d + L * d * d + 2 * L * d * h + 2 * L * L * d + d * 6 * d
    return 2.0 * (inputs + cfg.num_layers * block + d * 2 * d + W * d * M)


def _cost(compiled) -> dict:
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, list | tuple) else ca
    return dict(ca or {})


def _memory_analysis(compiled) -> int | None:
    try:
        m = compiled.memory_analysis()
        return int(m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes)
    except Exception:  # not implemented on every backend / version
        return None


def bench_one(
    name: str, steps: int, batch: int, dtype: str, repeats: int, max_tries: int | None = None,
    threshold: float = CONTENDED_SHARE,
) -> dict:  # fmt: skip
    cfg = dataclasses.replace(getattr(MotionConfig, name)(), dtype=dtype)
    dcfg = DiffusionConfig.paper(steps=steps)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: MotionDiT(cfg, rngs=nnx.Rngs(0))))
    state = jax.jit(lambda: nnx.split(MotionDiT(cfg, rngs=nnx.Rngs(0)))[1])()
    n_params = count_params(nnx.merge(graphdef, state))
    cond = _conditions(cfg, batch)
    rng = jax.random.key(1)
    branches = 1 + sum(v != 0 for v in dcfg.guidance.values())

    # Cost of one guided denoiser call (all CFG branches batched).
    x = jnp.zeros((batch, cfg.window, cfg.motion_dim))
    t = jnp.full((batch,), 500)
    one = jax.jit(lambda s, x, t, c: guided_x0(nnx.merge(graphdef, s), x, t, c, dcfg))
    xla_flops_step = _cost(one.lower(state, x, t, cond).compile()).get("flops", float("nan"))
    flops_step = branches * batch * analytic_flops_per_forward(cfg)

    t0 = time.perf_counter()
    compiled = sample_window.lower(graphdef, state, cond, rng, dcfg).compile()
    compile_s = time.perf_counter() - t0
    mem_static = _memory_analysis(compiled)
    calls = itertools.count()
    timed = measure(  # one warm-up call (jit cache fill), then `repeats` clean windows (see benchmarks/timing.py)
        lambda: sample_window(graphdef, state, cond, jax.random.fold_in(rng, next(calls)), dcfg),
        repeats=repeats, max_tries=max_tries, block=jax.block_until_ready, threshold=threshold,
    )  # fmt: skip
    cpu_s = timed.self_cpu_s  # CPU seconds per window (all threads of this process), over the windows reported
    ms = 1000 * timed.median_s
    frames = batch * cfg.window
    stats = jax.devices()[0].memory_stats() or {}
    return dict(
        config=name, steps=steps, batch=batch, dtype=dtype, window=cfg.window, context=cfg.context,
        motion_dim=cfg.motion_dim, layers=cfg.num_layers, width=cfg.width, heads=cfg.num_heads,
        cfg_branches=branches, params=n_params, params_M=n_params / 1e6,
        gflops_per_step=flops_step / 1e9, gflops_per_window=steps * flops_step / 1e9,
        gflops_per_frame=steps * flops_step / 1e9 / frames, xla_gflops_per_window=steps * xla_flops_step / 1e9,
        ms_per_window=ms, ms_per_window_min=1000 * timed.min_s, compile_s=compile_s, process_cpu_s_per_window=cpu_s,
        motion_fps=frames / (ms / 1000), realtime_factor=frames / (ms / 1000) / FPS,
        achieved_tflops=steps * flops_step / (ms / 1000) / 1e12,
        compiled_memory_bytes=mem_static, peak_bytes_in_use=stats.get("peak_bytes_in_use"),
        contention=timed.contention(),
    )  # fmt: skip


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["tiny", "small", "paper"], choices=["tiny", "small", "paper"])
    ap.add_argument("--steps", nargs="+", type=int, default=[10, 50])
    ap.add_argument("--batch", nargs="+", type=int, default=[1], help="clips sampled together per window")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--repeats", type=int, default=5, help="timed windows per setting (median of the clean ones)")
    ap.add_argument(
        "--max-tries", type=int, default=None, help="timed windows at most per setting (default 2 × repeats)"
    )
    ap.add_argument("--contended-share", type=float, default=CONTENDED_SHARE,
                    help="a window is contended (retried, discarded) when other processes used more than this share "
                         "of the CPUs meanwhile (benchmarks/timing.py)")  # fmt: skip
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for the JSON result")
    args = ap.parse_args(argv)

    dev = jax.devices()[0]
    info = dict(
        device_kind=dev.device_kind, platform=dev.platform, num_devices=jax.device_count(),
        cpu_count=os.cpu_count(), jax=jax.__version__, python=platform.python_version(),
        date=datetime.date.today().isoformat(), command=" ".join(sys.argv), load_at_start=load_snapshot(),
    )  # fmt: skip
    print(f"device: {dev.device_kind} ({dev.platform}), jax {jax.__version__}, {os.cpu_count()} CPUs")
    print(f"load at start: {info['load_at_start']}")
    rows = []
    head = (
        f"{'config':6} {'steps':>5} {'B':>3} {'dtype':8} {'W':>3} {'params':>8} {'GFLOP/win':>10} "
        f"{'ms/win':>9} {'frames/s':>9} {'×realtime':>9} {'TFLOP/s':>8} {'compile s':>9}  contention"
    )
    print(head)
    for name in args.configs:
        for steps in args.steps:
            for batch in args.batch:
                r = bench_one(name, steps, batch, args.dtype, args.repeats, args.max_tries, args.contended_share)
                rows.append(r)
                print(
                    f"{name:6} {steps:>5} {batch:>3} {args.dtype:8} {r['window']:>3} {r['params_M']:>7.2f}M "
                    f"{r['gflops_per_window']:>10.1f} {r['ms_per_window']:>9.1f} {r['motion_fps']:>9.0f} "
                    f"{r['realtime_factor']:>9.1f} {r['achieved_tflops']:>8.2f} {r['compile_s']:>9.1f}  "
                    f"{marker(r['contention'])}, {r['contention']['discarded']} discarded",
                    flush=True,
                )
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if dev.platform == "cpu":  # same naming as the other benchmarks' results
        slug = f"cpu-{os.cpu_count()}core-{platform.machine()}"
    else:
        slug = re.sub(r"[^A-Za-z0-9]+", "-", dev.device_kind).strip("-").lower()
    path = out / f"motion-{slug}-{info['date']}.json"
    key = lambda r: (r["config"], r["steps"], r["batch"], r["dtype"])  # noqa: E731
    if path.exists():  # keep earlier rows of the same day unless re-measured now (and not clean → contended)
        rows = merge_rows(json.loads(path.read_text())["results"], rows, key)
    path.write_text(json.dumps(dict(info=info, results=rows), indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
