"""SynthTalk speed: seconds of video made per second of compute, and a frame strip for the docs.

    python benchmarks/synth.py                    # 128², 256², 512²; ~1 min on 2 CPU cores
    python benchmarks/synth.py --sizes 256 --clips 5

For each size, makes ``--clips`` clips (bundled portraits, train sentences, random voices; seeds 0..N-1)
and times the stages: espeak-ng speech, motion sampling + rendering, and writing (x264/AAC mp4, wav, npz).
Portrait tracking and rigging is timed once per size (it is cached per portrait in ``vasajax synth``).
Writes ``benchmarks/results/synth-<device>-<date>.json`` and ``docs/synthtalk_strip.png`` (two clips,
every third frame, with the ground-truth mouth opening and blink under each frame). Everything runs on
the CPU (numpy + OpenCV), whatever accelerator JAX sees.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from vasajax.data import speech  # noqa: E402
from vasajax.data.synth import clip as synth_clip  # noqa: E402 (bench_size times the speech inside it)
from vasajax.data.synth.config import SynthConfig  # noqa: E402
from vasajax.data.synth.inputs import load_portraits, load_sentences  # noqa: E402
from vasajax.data.synth.portrait import prepare_portraits  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


def device_name() -> str:
    return f"cpu-{os.cpu_count()}core-{platform.machine()}"


def bench_size(size: int, n_clips: int, images, sentences) -> dict:
    cfg = dataclasses.replace(SynthConfig(), size=size)
    t0 = time.perf_counter()
    portraits = prepare_portraits(images, cfg)
    prep_s = time.perf_counter() - t0
    totals = {"speech_s": 0.0, "render_s": 0.0, "write_s": 0.0, "video_s": 0.0, "frames": 0}
    orig_speech = synth_clip.synthesize_speech

    def timed_speech(*a, **k):
        t = time.perf_counter()
        out = orig_speech(*a, **k)
        totals["speech_s"] += time.perf_counter() - t
        return out

    synth_clip.synthesize_speech = timed_speech
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(n_clips):
                rng = np.random.default_rng([0, i])
                t = time.perf_counter()
                clip = synth_clip.synthesize_clip(
                    portraits[i % len(portraits)],
                    sentences[int(rng.integers(len(sentences)))],
                    speech.Voice.random(rng),
                    seed=i,
                    cfg=cfg,
                )
                totals["render_s"] += time.perf_counter() - t
                t = time.perf_counter()
                synth_clip.write_clip(clip, tmp, f"c{i}", crf=cfg.crf)
                totals["write_s"] += time.perf_counter() - t
                totals["frames"] += len(clip.frames)
                totals["video_s"] += len(clip.frames) / cfg.fps
    finally:
        synth_clip.synthesize_speech = orig_speech
    totals["render_s"] -= totals["speech_s"]  # synthesize_clip's time less the speech inside it
    compute = totals["speech_s"] + totals["render_s"] + totals["write_s"]
    return {
        "size": size,
        "clips": n_clips,
        "video_s": round(totals["video_s"], 2),
        "frames": totals["frames"],
        "portrait_prep_s": round(prep_s, 3),
        "speech_s": round(totals["speech_s"], 3),
        "motion_render_s": round(totals["render_s"], 3),
        "write_s": round(totals["write_s"], 3),
        "render_ms_per_frame": round(1e3 * totals["render_s"] / totals["frames"], 2),
        "video_s_per_compute_s": round(totals["video_s"] / compute, 2),
    }


def frame_strip(images, out: pathlib.Path, size: int = 256, thumb: int = 128, n: int = 10) -> int:
    """Two clips, every third frame from 0.4 s on, with the ground-truth mouth opening and blink as bars."""
    cfg = dataclasses.replace(SynthConfig(), size=size)
    portraits = prepare_portraits(images, cfg)
    rows = []
    texts = ("Why is the sky blue during the day and red at sunset?", "Good morning, everybody, and welcome!")
    voices = (speech.Voice(name="en-us", variant="f3", rate=165), speech.Voice(name="en", variant="m3", rate=160))
    for k, (p, text, voice) in enumerate(zip(portraits, texts, voices)):
        clip = synth_clip.synthesize_clip(p, text, voice, seed=2 + k, cfg=cfg)
        gt = clip.ground_truth
        tiles = []
        for i in range(10, 10 + 3 * n, 3):
            tile = cv2.resize(clip.frames[i], (thumb, thumb), interpolation=cv2.INTER_AREA)
            bar = np.full((14, thumb, 3), 255, np.uint8)
            w_mouth = int(min(gt["mouth_open"][i] / 0.25, 1.0) * (thumb - 4))
            bar[2:7, 2 : 2 + w_mouth] = (200, 40, 40)  # mouth opening (red)
            bar[8:13, 2 : 2 + int(gt["blink"][i] * (thumb - 4))] = (40, 40, 200)  # blink (blue)
            tiles.append(np.concatenate([tile, bar], 0))
        rows.append(np.concatenate(tiles, 1))
    strip = np.concatenate(rows, 0)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return out.stat().st_size


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--clips", type=int, default=3)
    ap.add_argument("--no-strip", action="store_true", help="skip docs/synthtalk_strip.png")
    args = ap.parse_args(argv)
    images = load_portraits()
    sentences = load_sentences("train")
    results = []
    for size in args.sizes:
        r = bench_size(size, args.clips, images, sentences)
        results.append(r)
        print(
            f"{size:4d}²  {r['video_s']:6.1f} s video  speech {r['speech_s']:.2f} s"
            f"  render {r['motion_render_s']:.2f} s"
            f" ({r['render_ms_per_frame']:.1f} ms/frame)  write {r['write_s']:.2f} s  →"
            f" {r['video_s_per_compute_s']:.2f} s video per s compute"
        )
    doc = {
        "benchmark": "synth",
        "device": device_name(),
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "note": "SynthTalk clip generation on the CPU (espeak-ng + numpy/OpenCV warp + ffmpeg x264/AAC)",
        "results": results,
    }
    if not args.no_strip:
        doc["strip_bytes"] = frame_strip(images, ROOT / "docs" / "synthtalk_strip.png")
        print(f"docs/synthtalk_strip.png: {doc['strip_bytes'] / 1024:.0f} KB")
    out = ROOT / "benchmarks" / "results" / f"synth-{doc['device']}-{doc['date']}.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
