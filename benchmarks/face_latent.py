"""Stage-1 face latent model benchmark: parameters, GFLOPs per frame, and speed of encode / decode.

    python benchmarks/face_latent.py                       # tiny + small on this machine (+ paper FLOPs)
    python benchmarks/face_latent.py --configs paper --dtype bfloat16 --batch 32   # on a GPU

Prints a table and writes ``benchmarks/results/face_latent-<device>-<date>.json``. FLOPs come from XLA's cost
analysis of the compiled function (per frame = total / batch); timings are the median of ``--iters`` clean runs
after a warm-up, with ``block_until_ready``: a run during which other processes used more than
``--contended-share`` (0.1) of the CPUs is retried and left out (``benchmarks/timing.py``; calls shorter than 0.5 s
are timed in runs of ``inner`` and divided). Each timed row records ``contention`` (encode and decode parts,
others' share, calls discarded, load average); ``contended: true`` means no clean call was possible.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from vasajax.face.config import PRESETS  # noqa: E402
from vasajax.face.model import FaceLatentModel, count_params, decode_fn, encode_fn  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from timing import CONTENDED_SHARE, Timing, combine, load_snapshot, marker, measure, merge_rows  # noqa: E402


def device_name() -> str:
    d = jax.devices()[0]
    if d.platform == "cpu":
        return f"cpu-{os.cpu_count()}core-{platform.machine()}"
    return d.device_kind.replace(" ", "_")


def flops_of(lowered) -> float:
    """FLOPs from XLA's HLO cost analysis of a *lowered* (not compiled) function.

    The lowered count is device-independent. A GPU-compiled executable's cost analysis leaves out the
    convolutions that run as cuDNN custom calls, which undercounts this model by ~300×.
    """
    cost = lowered.cost_analysis()
    if isinstance(cost, list | tuple):  # older JAX returned a list with one dict
        cost = cost[0] if cost else None
    return float(cost.get("flops", float("nan"))) if cost else float("nan")


def peak_memory_gib() -> float | None:
    """The device's peak bytes in use (GPUs keep it; the CPU backend does not: None)."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # not implemented on every backend / version
        stats = {}
    return stats["peak_bytes_in_use"] / 2**30 if "peak_bytes_in_use" in stats else None


def timed(fn, *args, iters: int, max_tries: int | None = None, threshold: float = CONTENDED_SHARE) -> Timing:
    """One warm-up call, then the median of ``iters`` clean calls (``benchmarks/timing.py``: a call during which
    other processes used more than ``threshold`` of the CPUs is retried, up to ``max_tries``, and left out)."""
    return measure(lambda: fn(*args), repeats=iters, max_tries=max_tries, block=jax.block_until_ready,
                   threshold=threshold)  # fmt: skip


def timeit(fn, *args, iters: int) -> float:
    """Seconds per call, as :func:`timed` measures them, for callers that keep a plain number
    (``train_face.py``); a contended result is printed, since the number cannot say so."""
    t = timed(fn, *args, iters=iters)
    if t.contended or t.discarded:
        print(f"[timeit] {getattr(fn, '__name__', 'call')}: {marker(t.contention())}, {t.discarded} discarded")
    return t.median_s


def bench_config(
    name: str, dtype: str, batch: int, iters: int, run: bool, max_tries: int | None = None,
    threshold: float = CONTENDED_SHARE,
) -> dict:  # fmt: skip
    cfg = PRESETS[name](dtype=dtype)
    abstract_model = nnx.eval_shape(lambda: FaceLatentModel(cfg, rngs=nnx.Rngs(0)))
    graphdef, abstract_params = nnx.split(abstract_model)
    per_module = {
        k: count_params(nnx.state(getattr(abstract_model, k)))
        for k in vars(abstract_model)
        if isinstance(getattr(abstract_model, k), nnx.Module)
    }
    s = cfg.image_size
    img = jax.ShapeDtypeStruct((batch, s, s, 3), jnp.float32)
    enc = jax.jit(lambda p, x: encode_fn(graphdef, p, x))
    dec = jax.jit(lambda p, a, i, po, dy: decode_fn(graphdef, p, a, i, po, dy))
    lat = jax.eval_shape(enc, abstract_params, img)
    # Decode the way the product does: one portrait's appearance broadcast to a batch of poses.
    app1 = jax.ShapeDtypeStruct((1, *lat.appearance.shape[1:]), lat.appearance.dtype)
    id1 = jax.ShapeDtypeStruct((1, *lat.identity.shape[1:]), lat.identity.dtype)
    t0 = time.perf_counter()
    enc_l = enc.lower(abstract_params, img)
    dec_l = dec.lower(abstract_params, app1, id1, lat.pose, lat.dyn)
    enc_c, dec_c = enc_l.compile(), dec_l.compile()
    compile_s = time.perf_counter() - t0
    row = dict(
        config=name,
        dtype=dtype,
        image_size=s,
        batch=batch,
        volume=list(cfg.vol_shape),
        params_total_M=count_params(abstract_params) / 1e6,
        params_per_module_M={k: v / 1e6 for k, v in per_module.items()},
        encode_gflops_per_frame=flops_of(enc_l) / batch / 1e9,
        decode_gflops_per_frame=flops_of(dec_l) / batch / 1e9,
        compile_s=compile_s,
    )
    if run:
        model = FaceLatentModel(cfg, rngs=nnx.Rngs(0))
        _, params = nnx.split(model)
        x = jax.random.uniform(jax.random.key(0), (batch, s, s, 3))
        enc_timing = timed(enc_c, params, x, iters=iters, max_tries=max_tries, threshold=threshold)
        latv = enc_c(params, x)
        a1, i1 = latv.appearance[:1], latv.identity[:1]
        dec_timing = timed(
            dec_c, params, a1, i1, latv.pose, latv.dyn, iters=iters, max_tries=max_tries, threshold=threshold
        )
        enc_t, dec_t = enc_timing.median_s, dec_timing.median_s
        row.update(
            encode_ms_per_frame=1e3 * enc_t / batch,
            decode_ms_per_frame=1e3 * dec_t / batch,
            decode_fps=batch / dec_t,
            decode_tflops_achieved=row["decode_gflops_per_frame"] * batch / dec_t / 1e3,
            peak_memory_gib=peak_memory_gib(),
            contention=combine({"encode": enc_timing.contention(), "decode": dec_timing.contention()}),
        )
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="+", default=["tiny", "small", "paper"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--batch", type=int, default=None, help="frames per call (default: 1 on CPU, 32 on GPU)")
    ap.add_argument("--iters", type=int, default=5, help="timed calls per setting (median of the clean ones)")
    ap.add_argument("--max-tries", type=int, default=None, help="timed calls at most per setting (default 2 × iters)")
    ap.add_argument("--contended-share", type=float, default=CONTENDED_SHARE,
                    help="a call is contended (retried, discarded) when other processes used more than this share "
                         "of the CPUs meanwhile (benchmarks/timing.py)")  # fmt: skip
    ap.add_argument(
        "--no-run",
        nargs="*",
        default=None,
        help="configs to size only (default on CPU: paper, whose timing takes minutes)",
    )
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/face_latent-<dev>-<date>.json)")
    args = ap.parse_args(argv)
    dev = device_name()
    on_cpu = jax.devices()[0].platform == "cpu"
    batch = args.batch or (1 if on_cpu else 32)
    no_run = set(args.no_run if args.no_run is not None else (["paper"] if on_cpu else []))
    print(f"device: {dev} ({jax.devices()[0].device_kind}), jax {jax.__version__}, batch {batch}, {args.dtype}")
    load_at_start = load_snapshot()
    print(f"load at start: {load_at_start}")
    rows = []
    for name in args.configs:
        row = bench_config(
            name, args.dtype, batch, args.iters, run=name not in no_run, max_tries=args.max_tries,
            threshold=args.contended_share,
        )  # fmt: skip
        rows.append(row)
        timing = (
            f"encode {row['encode_ms_per_frame']:8.1f} ms/frame  decode {row['decode_ms_per_frame']:8.2f} "
            f"ms/frame ({row['decode_fps']:.1f} fps, {row['decode_tflops_achieved']:.2f} TFLOP/s)  "
            f"[{marker(row['contention'])}, {row['contention']['discarded']} discarded]"
            if "decode_fps" in row
            else "(sized only)"
        )
        print(
            f"{name:6s} {row['params_total_M']:8.2f} M params  encode {row['encode_gflops_per_frame']:8.2f} "
            f"GFLOP/frame  decode {row['decode_gflops_per_frame']:7.2f} GFLOP/frame  {timing}"
        )
        print("        per module (M):", {k: round(v, 3) for k, v in row["params_per_module_M"].items()})
    out = pathlib.Path(
        args.out
        or pathlib.Path(__file__).parent / "results" / f"face_latent-{dev}-{datetime.date.today().isoformat()}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    key = lambda r: (r["config"], r.get("dtype"), r.get("batch"))  # noqa: E731
    if out.exists():  # keep earlier rows of the same file unless re-measured now (and not clean → contended)
        rows = merge_rows(json.loads(out.read_text())["rows"], rows, key)
    out.write_text(
        json.dumps(
            dict(
                benchmark="face_latent",
                device=dev,
                device_kind=jax.devices()[0].device_kind,
                jax=jax.__version__,
                date=datetime.datetime.now().isoformat(timespec="seconds"),
                load_at_start=load_at_start,
                rows=rows,
            ),
            indent=2,
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
