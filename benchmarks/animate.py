"""End-to-end animation speed: seconds of compute per second of audio, fps, streaming first-frame latency.

What ``vasajax animate`` does per clip after the models are loaded and compiled (VASA-1's project page
reports 45 fps offline, 40 fps online and 170 ms start latency at 512² on an RTX 4090): encode the portrait
once, sample the motion windows (sliding-window DiT with CFG), decode frames in jitted batches, watermark.
Random-init exports (``checkpoint_export.random_export``) of the tiny / small / paper presets, or a real
export with ``--checkpoint`` (speed does not depend on training). Each setting runs once to compile, then is timed:

* ``s_per_audio_s``: wall seconds of generation per second of audio (offline ``animate``; the issue's CPU
  target for the demo checkpoint is ≤ 10); ``cpu_s_per_audio_s``: process CPU seconds (all threads) per
  second of audio, which a busy shared machine inflates less than wall time (idle 2 cores: wall ≈ CPU / 2
  at best),
* ``fps``: frames per wall second, ``first_frame_s``: streaming latency from the first audio chunk to the
  first frame (the portrait already encoded; add W/fps seconds of audio arrival for a live microphone),
  ``steady_fps``: frames per second after the first,
* live mode (``live_*``): 3 s of speech released in real time in 20 ms packets, the first motion window
  sampled after ``LIVE_FIRST_WINDOW`` frames (``vasajax animate --audio -``): ``live_first_frame_after_audio_s``
  from the first audio sample's arrival to the first frame (VASA-1: 0.17 s; this project's goal ≤ 0.3 s on the
  2-core CPU for tiny/small), ``live_steady_fps`` and whether generation kept up with the speech,
* ``encode_s``: the portrait (crop + encode), ``peak_rss_gib``: the process's peak resident memory,
* ``contention``: the share of the CPUs other processes used during the offline, streaming and live runs
  (``benchmarks/timing.py``; ``parts`` per run); whole clips are not repeated, so a run during which others took
  more than 0.1 of the CPUs is kept but flagged ``contended: true`` (re-run it on an idle machine),
* with ``--long-seconds``: resident memory at each tenth of a long streamed clip (frames dropped as they come,
  like ``vasajax animate`` writing them): flat memory means ``rss_growth_after_first_tenth_gib`` ≈ 0.

    python benchmarks/animate.py                                  # tiny and small, CPU
    python benchmarks/animate.py --configs paper --seconds 8      # on a GPU
    python benchmarks/animate.py --checkpoint checkpoints/demo --seconds 10
    python benchmarks/animate.py --configs tiny --long-seconds 600     # memory over 10 minutes of audio

Writes ``benchmarks/results/animate-<device>-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import resource
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from vasajax import checkpoint_export as ce  # noqa: E402
from vasajax.face.config import FaceConfig  # noqa: E402
from vasajax.image import PORTRAITS  # noqa: E402
from vasajax.motion.audio import AudioConfig  # noqa: E402
from vasajax.motion.diffusion import DiffusionConfig  # noqa: E402
from vasajax.motion.dit import MotionConfig  # noqa: E402
from vasajax.pipeline import Animator  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from timing import Watch, combine, load_snapshot, marker  # noqa: E402

SR = 16_000


def device_name() -> str:
    d = jax.devices()[0]
    if d.platform == "cpu":
        return f"cpu-{os.cpu_count()}core-{platform.machine()}"
    return d.device_kind.replace(" ", "_")


def speech(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    tone = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((180, 360, 900, 2400), 1))
    return (0.1 * env * tone + 0.01 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)


def make_random_export(name: str, root: pathlib.Path, dtype: str) -> pathlib.Path:
    audio = {"tiny": AudioConfig.tiny, "small": AudioConfig.small, "paper": AudioConfig.small}[name]()
    face = getattr(FaceConfig, name)(dtype=dtype)
    motion = getattr(MotionConfig, name)(audio_dim=2 * audio.n_mels, motion_dim=face.motion_dim, dtype=dtype)
    diffusion = getattr(DiffusionConfig, name)()
    return ce.random_export(root / name, face, motion, {"audio": audio, "diffusion": diffusion})


def bench(anim: Animator, seconds: float, decode_batch: int) -> dict:
    wave = speech(seconds)
    image = PORTRAITS["astronaut"]
    anim.decode_batch = decode_batch
    anim.animate(image, wave[: int(0.5 * SR)], crop="center", seed=0)  # compile everything once
    t = time.perf_counter()
    portrait = anim.prepare(image, crop="center")
    np.asarray(portrait.latent.appearance)
    encode_s = time.perf_counter() - t
    t, c = time.perf_counter(), time.process_time()
    with Watch() as w_offline:  # whole-clip runs are not repeated: contention is recorded and flagged, not retried
        video = anim.animate(portrait, wave, seed=0)
    offline_s, cpu_s = time.perf_counter() - t, time.process_time() - c
    chunks = [wave[i : i + SR // 10] for i in range(0, wave.size, SR // 10)]  # 100 ms chunks, like a microphone
    with Watch() as w_stream:
        fs = anim.stream(portrait, chunks, seed=0)
        n = sum(len(b) for b in fs)
    assert n == len(video.frames)
    with Watch() as w_live:
        live = bench_live(anim, portrait)
    return {
        "seconds_audio": seconds,
        "frames": int(n),
        "frame_size": list(video.frames.shape[1:3]),
        "decode_batch": decode_batch,
        "steps": anim.generator.diffusion.steps,  # the Animator talks to stages (bf67e78); VASA's generator
        "window": anim.motion_cfg.window,
        "encode_s": round(encode_s, 4),
        "offline_s": round(offline_s, 3),
        "s_per_audio_s": round(offline_s / seconds, 3),
        "cpu_s_per_audio_s": round(cpu_s / seconds, 3),
        "fps": round(n / offline_s, 2),
        "first_frame_s": round(fs.first_frame_s, 4),
        "steady_fps": round(fs.steady_fps, 2),
        "stream_s_per_audio_s": round(fs.elapsed_s / seconds, 3),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        **live,
        "contention": combine(
            {"offline": w_offline.contention(), "stream": w_stream.contention(), "live": w_live.contention()}
        ),
    }


def paced(wave: np.ndarray, packet_s: float = 0.02):
    """Audio as a live source delivers it: ``packet_s`` packets, each released when it would have been spoken."""
    n = int(packet_s * SR)
    t0 = time.perf_counter()
    for i in range(0, wave.size, n):
        wait = t0 + (i + n) / SR - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        yield wave[i : i + n]


def bench_live(anim: Animator, portrait, seconds: float = 3.0) -> dict:
    """Live mode: audio arriving in real time (20 ms packets), the first motion window after
    ``LIVE_FIRST_WINDOW`` frames; first frame measured from the first audio sample's arrival."""
    from vasajax.pipeline import LIVE_FIRST_WINDOW

    wave = speech(seconds)
    warm_s = anim.warm_up(portrait, seed=0, first_window=LIVE_FIRST_WINDOW)
    fs = anim.stream(portrait, paced(wave), seed=0, first_window=LIVE_FIRST_WINDOW)
    n = sum(len(b) for b in fs)
    return {
        "live_first_window_frames": LIVE_FIRST_WINDOW,
        "live_warm_up_s": round(warm_s, 2),
        "live_first_frame_after_audio_s": round(fs.first_frame_after_audio_s, 4),
        "live_frames": int(n),
        "live_steady_fps": round(fs.steady_fps, 2),
        "live_keeps_up": bool(fs.elapsed_s <= seconds + 1.0),
    }


def rss_gib() -> float:
    """Current resident memory of this process (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def bench_long(anim: Animator, seconds: float) -> dict:
    """Stream ``seconds`` of audio (made on the fly, 10 s chunks) and drop the frames: does memory stay flat?"""
    chunk = speech(10.0)
    n_chunks = int(np.ceil(seconds / 10.0))
    fs = anim.stream(PORTRAITS["astronaut"], (chunk for _ in range(n_chunks)), crop="center", seed=0)
    samples, total, t = [], n_chunks * 250, time.perf_counter()
    for batch in fs:
        del batch
        if fs.frames >= (len(samples) + 1) * total / 10:
            samples.append(round(rss_gib(), 3))
    return {
        "long_audio_s": n_chunks * 10.0,
        "long_frames": fs.frames,
        "long_wall_s": round(time.perf_counter() - t, 1),
        "rss_gib_at_each_tenth": samples,
        "rss_growth_after_first_tenth_gib": round(samples[-1] - samples[0], 3),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="+", default=["tiny", "small"], choices=["tiny", "small", "paper", "none"])
    p.add_argument("--checkpoint", help="also benchmark this export (--configs none: only it)")
    p.add_argument("--seconds", type=float, nargs="+", help="audio seconds per config (default tiny 10, else 4)")
    p.add_argument("--decode-batch", type=int, default=8)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--long-seconds", type=float, default=0, help="also stream this much audio, recording RSS")
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    load_at_start = load_snapshot()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        targets = []
        for name in [c for c in args.configs if c != "none"]:
            targets.append((name, make_random_export(name, pathlib.Path(tmp), args.dtype)))
        if args.checkpoint:
            targets.append((f"checkpoint {pathlib.Path(args.checkpoint).name}", pathlib.Path(args.checkpoint)))
        for i, (name, path) in enumerate(targets):
            seconds = args.seconds[min(i, len(args.seconds) - 1)] if args.seconds else (10.0 if name == "tiny" else 4.0)
            t = time.perf_counter()
            anim = Animator.from_pretrained(path)
            load_s = time.perf_counter() - t
            t = time.perf_counter()
            row = {"config": name, "dtype": anim.face_cfg.dtype, "load_s": round(load_s, 2)}
            row.update(bench(anim, seconds, args.decode_batch))
            if args.long_seconds and name == "tiny":
                row.update(bench_long(anim, args.long_seconds))
            row["total_bench_s"] = round(time.perf_counter() - t, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
            print(f"[{name}] contention: {marker(row['contention'])}", flush=True)
    if not args.no_save:
        dev = device_name()
        out = ROOT / "benchmarks" / "results" / f"animate-{dev}-{datetime.date.today()}.json"
        meta = {"benchmark": "animate", "device": dev, "jax": jax.__version__}
        meta["date"] = datetime.datetime.now().isoformat(timespec="seconds")
        la = load_at_start["loadavg"]
        meta["note"] = (
            f"load average at start {la[0]:.1f} on {os.cpu_count()} cores (shared machine)" if la else "shared machine"
        )
        meta["load_at_start"] = load_at_start
        out.write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
