"""Data pipeline throughput: `vasajax prep`, shard write/read per frame codec, grain loaders.

    .venv/bin/python benchmarks/data.py            # ~1-2 minutes on a 2-core CPU
    .venv/bin/python benchmarks/data.py --quick    # smaller, for a smoke run

Measures, on this machine's CPU:
- prep: frames/s (wall) and frames per CPU-second ("per core") for a synthetic 512² talking-head video
  (the astronaut portrait drifting, a tone as audio) prepared at 256², 4-second clips;
- shards: encode+write and read+decode MB/s (of raw frame data) and bytes per clip for raw / PNG / JPEG q95
  frames in the record, and JPEG with split frames (one ArrayRecord record per frame, what prep writes);
  the time to fetch a stage-1 example's 2 frames + labels by random access;
- loaders: stage-1 pair examples/s (JPEG 256² records, in-record vs split frames) and stage-2 windows/s.
Writes ``benchmarks/results/data-<device>-<date>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vasajax import media
from vasajax.data import clips, loader, prep


def device_name() -> str:
    return f"cpu-{os.cpu_count()}core-{platform.machine()}"


def cpu_seconds() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def portrait(size: int) -> np.ndarray:
    import skimage.data
    from PIL import Image

    return np.asarray(Image.fromarray(skimage.data.astronaut()).resize((size, size), Image.BICUBIC))


def make_video(path: Path, seconds: float, size: int = 512, fps: int = 25) -> None:
    import soundfile as sf

    img = portrait(size)
    n = int(seconds * fps)
    t = np.arange(int(seconds * clips.SAMPLE_RATE)) / clips.SAMPLE_RATE
    wav = path.with_suffix(".wav")
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t)).astype(np.float32), 16000)
    with media.VideoWriter(path, fps=fps, audio=wav, crf=20, preset="veryfast") as w:
        for i in range(n):
            dx = int(12 * np.sin(i / 20))
            dy = int(6 * np.sin(i / 13))
            w.write(np.roll(img, (dy, dx), axis=(0, 1)))
    wav.unlink()


def bench_prep(tmp: Path, seconds: float) -> dict:
    vids = tmp / "videos"
    vids.mkdir()
    make_video(vids / "talk.mp4", seconds)
    cfg = prep.PrepConfig.small()
    prep.prepare(vids, tmp / "warm", prep.PrepConfig.tiny(), progress=False, limit=1)  # imports, model load
    c0, t0 = cpu_seconds(), time.perf_counter()
    report = prep.prepare(vids, tmp / "prepared", cfg, progress=False)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    frames = report["summary"]["frames_decoded"]
    return {
        "video": f"{seconds:g} s, 512x512, 25 fps, h264",
        "config": "PrepConfig.small() (256², 100-frame clips, JPEG q95)",
        "frames": frames,
        "clips": report["summary"]["clips"],
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "frames_per_s_wall": round(frames / wall, 1),
        "frames_per_cpu_s": round(frames / cpu, 1),
    }


def synthetic_clip(T: int, S: int, i: int) -> clips.ClipRecord:
    img = portrait(S)
    rng = np.random.default_rng(i)
    f32 = np.float32
    return clips.ClipRecord(
        frames_TxSxSx3=np.stack([np.roll(img, (t // 4, t // 3), axis=(0, 1)) for t in range(T)]),
        audio_N=(0.1 * rng.standard_normal(T * clips.SAMPLES_PER_FRAME)).astype(f32),
        pose_Tx6=rng.standard_normal((T, 6)).astype(f32),
        gaze_Tx2=rng.standard_normal((T, 2)).astype(f32),
        distance_T=rng.random(T).astype(f32),
        blendshapes_Tx52=rng.random((T, 52)).astype(f32),
        emotion_52=rng.random(52).astype(f32),
        identity=f"id{i % 4}",
        source=f"v{i}.mp4",
        clip_index=i,
        ground_truth={"landmarks_Tx478x3": rng.random((T, 478, 3)).astype(np.float16)},
    )


def bench_shards(tmp: Path, n_clips: int, T: int, S: int) -> dict:
    recs = [synthetic_clip(T, S, i) for i in range(n_clips)]
    raw_mb = n_clips * T * S * S * 3 / 1e6
    out = {"clips": n_clips, "frames_per_clip": T, "size": S, "raw_frame_MB": round(raw_mb, 2)}
    for name, codec, split in [("raw", "raw", False), ("png", "png", False), ("jpeg", "jpeg", False),
                               ("jpeg-split", "jpeg", True)]:  # fmt: skip
        d = tmp / f"shards-{name}"
        t0 = time.perf_counter()
        with clips.ShardWriter(d, "b", max_bytes=256 << 20) as w:
            for r in recs:
                w.write_record(r, codec=codec, quality=95, split_frames=split)
        write_s = time.perf_counter() - t0
        clips.write_manifest(d / "manifest.json", clips.make_manifest("clip", w.shards))
        m = clips.read_manifest(d)
        t0 = time.perf_counter()
        for _ in clips.read_records(m, d):
            pass
        read_s = time.perf_counter() - t0
        src = loader.RecordSource(d)
        t0 = time.perf_counter()
        for i in range(len(src)):
            e = src[i]
            e.frames([3, T - 5])
            e.array("pose_Tx6")
        two_s = (time.perf_counter() - t0) / len(src)
        out[name] = {
            "bytes_per_clip": int(m["totals"]["bytes"] / n_clips),
            "write_MB_per_s": round(raw_mb / write_s, 1),
            "read_decode_MB_per_s": round(raw_mb / read_s, 1),
            "random_access_2_frames_ms": round(two_s * 1e3, 2),
        }
    return out


def synthetic_motion(T: int, i: int) -> clips.MotionRecord:
    rng = np.random.default_rng(i)
    f32 = np.float32
    return clips.MotionRecord(
        motion_TxM=rng.standard_normal((T, 6 + 128)).astype(f32),
        audio_feat_UxF=rng.standard_normal((2 * T, 80)).astype(f32),
        feats_per_frame=2,
        feature_kind="logmel80",
        gaze_Tx2=rng.standard_normal((T, 2)).astype(f32),
        distance_T=rng.random(T).astype(f32),
        emotion_52=rng.random(52).astype(f32),
        identity=f"id{i % 4}",
        source=f"v{i}.mp4",
        clip_index=i,
    )


def bench_loaders(tmp: Path, n_batches: int) -> dict:
    out = {}
    cfg = loader.LoaderConfig(batch_size=16, shard_index=0, shard_count=1, read_threads=2, prefetch=32)
    for name in ("jpeg", "jpeg-split"):
        it = iter(loader.face_pairs(tmp / f"shards-{name}", cfg))
        next(it)
        t0 = time.perf_counter()
        for _ in range(n_batches):
            next(it)
        dt = time.perf_counter() - t0
        out[f"stage1_pairs_{name}"] = {
            "records": f"{name} q95 256², 100 frames",
            "batch": 16,
            "examples_per_s": round(16 * n_batches / dt, 1),
            "note": "source + driver + cross-identity frame per example, one process, 2 read threads",
        }
    d = tmp / "motion"
    with clips.ShardWriter(d, "m") as w:
        for i in range(32):
            w.write_record(synthetic_motion(250, i))
    clips.write_manifest(d / "manifest.json", clips.make_manifest("motion", w.shards))
    cfg2 = loader.LoaderConfig(batch_size=64, shard_index=0, shard_count=1)
    it = iter(loader.motion_windows(d, cfg2, loader.WindowsConfig.paper()))
    next(it)
    t0 = time.perf_counter()
    for _ in range(n_batches):
        next(it)
    dt = time.perf_counter() - t0
    out["stage2_windows"] = {"window": "W=80 + K=10, M=134, 80 mel", "batch": 64,
                             "windows_per_s": round(64 * n_batches / dt, 1)}  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/data-<dev>-<date>.json)")
    a = ap.parse_args(argv)
    dev = device_name()
    res: dict = {
        "benchmark": "data",
        "device": dev,
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        res["shards"] = bench_shards(tmp, 8 if a.quick else 24, 100, 256)
        print(json.dumps(res["shards"], indent=1))
        res["loaders"] = bench_loaders(tmp, 5 if a.quick else 20)
        print(json.dumps(res["loaders"], indent=1))
        res["prep"] = bench_prep(tmp, 4.0 if a.quick else 12.0)
        print(json.dumps(res["prep"], indent=1))
    out = Path(a.out or Path(__file__).parent / "results" / f"data-{dev}-{time.strftime('%Y-%m-%d')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
