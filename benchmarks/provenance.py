"""Provenance watermark: PSNR cost, detection after h264 CRF 28 and 0.5× downscale, false positives.

    python benchmarks/provenance.py               # 20 SynthTalk clips at 256², ~2 s each; ~3 min on 2 CPU cores
    python benchmarks/provenance.py --clips 5

Makes ``--clips`` SynthTalk clips (bundled portraits alternating, sentences 0..N-1, seeds 0..N-1), writes each
twice with :class:`vasajax.video.VideoWriter` at CRF 18 — marked (``provenance.embed`` + the metadata tag)
and unmarked — then attacks both copies with the bundled ffmpeg:

* ``crf28``: re-encode h264 at CRF 28 (ffmpeg copies the tags);
* ``half``: downscale 0.5× (256² → 128²) and re-encode at CRF 23, tags stripped (``-map_metadata -1``);
* ``half_crf28``: both at once, tags stripped (a harsher extra);

and runs :func:`vasajax.provenance.detect_video` on each file. Detection rate = marked files whose
*watermark* (not the tag) is found; false positives = unmarked files where it is. A stress row repeats this
on ``--pan`` clips where the whole frame moves every frame (a drifting, zooming crop of the bundled
portraits) — harder for the encoder to keep the mark than a talking head on a still background. Writes
``benchmarks/results/provenance-<device>-<date>.json``; the numbers go to docs/provenance.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402

from vasajax import provenance, video  # noqa: E402
from vasajax.data import synth  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
ATTACKS = {
    "original": None,
    "crf28": ["-crf", "28"],
    "half": ["-vf", "scale=iw/2:ih/2", "-crf", "23", "-map_metadata", "-1"],
    "half_crf28": ["-vf", "scale=iw/2:ih/2", "-crf", "28", "-map_metadata", "-1"],
}


def device_name() -> str:
    return f"cpu-{os.cpu_count()}core-{platform.machine()}"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def attack(src: pathlib.Path, name: str) -> pathlib.Path:
    args = ATTACKS[name]
    if args is None:
        return src
    dst = src.with_name(f"{src.stem}.{name}.mp4")
    cmd = [video.ffmpeg_exe(), "-v", "error", "-y", "-i", str(src), *args, "-c:v", "libx264", "-pix_fmt", "yuv420p"]
    subprocess.run([*cmd, str(dst)], check=True)
    return dst


def pan_clip(image: np.ndarray, size: int, t: int) -> np.ndarray:
    """The whole frame drifts and zooms over the portrait, every frame."""
    side = min(image.shape[:2]) - 40
    frames = []
    for i in range(t):
        dy, dx, s = int(10 + 8 * np.sin(i / 5)), int(10 + 6 * np.cos(i / 7)), side - 2 * (i % 6)
        idx = (np.arange(size) * s / size).astype(int)
        frames.append(image[dy : dy + s, dx : dx + s][idx][:, idx, :3])
    return np.stack(frames)


def evaluate(frames: np.ndarray, audio: np.ndarray | None, folder: pathlib.Path, name: str) -> dict:
    t0 = time.perf_counter()
    marked = provenance.embed(frames)
    embed_s = time.perf_counter() - t0
    row = {"frames": len(frames), "psnr_db": psnr(marked, frames), "embed_ms_per_frame": 1e3 * embed_s / len(frames)}
    paths = {
        "marked": video.write_video(
            folder / f"{name}.m.mp4", marked, audio=audio, crf=18, metadata=provenance.metadata_tag()
        ),
        "plain": video.write_video(folder / f"{name}.u.mp4", frames, audio=audio, crf=18),
    }
    row["bytes_marked_over_plain"] = paths["marked"].stat().st_size / paths["plain"].stat().st_size
    detect_s = 0.0
    for kind, path in paths.items():
        for a in ATTACKS:
            p = attack(path, a)
            t0 = time.perf_counter()
            d = provenance.detect_video(p)
            detect_s += time.perf_counter() - t0
            row[f"{kind}_{a}"] = {"z": round(d.z, 2), "watermark": d.watermark.present, "tag": d.tag is not None}
    row["detect_s_per_video"] = detect_s / (2 * len(ATTACKS))
    return row


def summarise(rows: list[dict]) -> dict:
    out = {
        "clips": len(rows),
        "psnr_db_mean": float(np.mean([r["psnr_db"] for r in rows])),
        "psnr_db_min": float(np.min([r["psnr_db"] for r in rows])),
        "bytes_marked_over_plain_mean": float(np.mean([r["bytes_marked_over_plain"] for r in rows])),
        "embed_ms_per_frame": float(np.median([r["embed_ms_per_frame"] for r in rows])),
        "detect_s_per_video": float(np.median([r["detect_s_per_video"] for r in rows])),
    }
    for a in ATTACKS:
        zm = [r[f"marked_{a}"]["z"] for r in rows]
        zu = [r[f"plain_{a}"]["z"] for r in rows]
        out[a] = {
            "detected": sum(r[f"marked_{a}"]["watermark"] for r in rows),
            "false_positives": sum(r[f"plain_{a}"]["watermark"] for r in rows),
            "tag_found_marked": sum(r[f"marked_{a}"]["tag"] for r in rows),
            "z_marked_min": float(np.min(zm)),
            "z_marked_median": float(np.median(zm)),
            "z_plain_max": float(np.max(zu)),
            "z_plain_mean": float(np.mean(zu)),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--pan", type=int, default=4, help="extra whole-frame-motion clips (stress row)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/)")
    args = ap.parse_args()

    cfg = synth.SynthConfig(size=args.size, lead_in_s=0.3, tail_s=0.3, max_speech_s=1.4)
    images = synth.load_portraits()
    portraits = synth.prepare_portraits(images, cfg)
    sentences = synth.load_sentences("all")
    rows, pan_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        for i in range(args.clips):
            clip = synth.synthesize_clip(portraits[i % len(portraits)], sentences[i], seed=i, cfg=cfg)
            rows.append(evaluate(clip.frames, clip.audio, folder, f"clip{i:02d}"))
            r = rows[-1]
            print(
                f"clip {i:2d} ({r['frames']} frames): PSNR {r['psnr_db']:.1f} dB, z marked "
                + " ".join(f"{a}={r[f'marked_{a}']['z']:.1f}" for a in ATTACKS)
                + " | unmarked "
                + " ".join(f"{r[f'plain_{a}']['z']:.1f}" for a in ATTACKS),
                flush=True,
            )
        for i in range(args.pan):
            frames = pan_clip(images[i % len(images)][1], args.size, 50)
            pan_rows.append(evaluate(frames, None, folder, f"pan{i:02d}"))
    result = {
        "device": device_name(),
        "date": datetime.date.today().isoformat(),
        "config": {
            "grid": provenance.GRID,
            "strength": provenance.STRENGTH,
            "z_threshold": provenance.Z_THRESHOLD,
            "size": args.size,
            "write_crf": 18,
        },
        "synthtalk": summarise(rows),
        "pan_stress": summarise(pan_rows) if pan_rows else None,
        "per_clip": rows,
        "per_pan_clip": pan_rows,
    }
    default = ROOT / "benchmarks" / "results" / f"provenance-{device_name()}-{result['date']}.json"
    out = pathlib.Path(args.out or default)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    for name in ("synthtalk", "pan_stress"):
        s = result[name]
        if s is None:
            continue
        print(f"\n{name}: {s['clips']} clips, PSNR mean {s['psnr_db_mean']:.2f} dB (min {s['psnr_db_min']:.2f})")
        for a in ATTACKS:
            v = s[a]
            print(
                f"  {a:11s} detected {v['detected']}/{s['clips']}  false positives {v['false_positives']}/{s['clips']}"
                f"  z marked min {v['z_marked_min']:.1f} median {v['z_marked_median']:.1f}"
                f"  z unmarked max {v['z_plain_max']:.1f}"
            )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
