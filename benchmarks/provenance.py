"""Provenance watermark: PSNR, detection after every edit of issue 16 (alone and + h264 CRF 28), false positives.

    python benchmarks/provenance.py                 # 100 SynthTalk clips × 21 edits, marked and unmarked (hours)
    python benchmarks/provenance.py --clips 10      # what docs/provenance.md reports on the 2-core CPU (~25 min)

Makes ``--clips`` SynthTalk clips at 256² (bundled portraits alternating, sentences 0..N-1, seeds 0..N-1, ~3 s
each), writes each twice with :func:`vasajax.media.write_video` at CRF 18 — marked (``provenance.embed`` + the
metadata tag) and unmarked — then edits both copies with the bundled ffmpeg, metadata stripped
(``-map_metadata -1``), and runs :func:`vasajax.detect.detect_video` on each file. The edits (random
parameters drawn per clip from a seeded generator, the same for the marked and the unmarked copy):

* ``crf28``: re-encode h264 at CRF 28;
* ``crop``: a crop keeping 60–66 % of the area, at a random offset, square or a full-width strip;
* ``hflip``; ``rotate``: ±0.5–5°, about the centre, frame size kept (black corners);
* ``half`` (0.5×), ``double`` (2×), ``stretch`` (x and y scaled independently, each 0.5–2×);
* ``colour``: brightness ±0.08, contrast 0.85–1.2, saturation 0.6–1.5 (ffmpeg ``eq``);
* ``fps``: 12 or 15 fps; ``trim``: the last 2 s only;
* ``paste``: pasted unscaled into a 2× larger photo (the other bundled portrait) at a random offset.

Each edit is encoded at CRF 23 ("alone") and, as a second row, at CRF 28 ("+ crf28"). Detection rate = marked
files whose *watermark* is found (the tag is stripped); false positives = unmarked files where it is, with the
same search. ``--demo`` adds the same rows for ``out/demo.mp4``'s frames (``make demo``), the PSNR the issue
asks about. Writes ``benchmarks/results/provenance-<device>-<date>.json`` and prints the markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))

import imageio.v3 as iio  # noqa: E402
import numpy as np  # noqa: E402

from vasajax import detect, media, provenance  # noqa: E402
from vasajax.data.synth.clip import synthesize_clip  # noqa: E402
from vasajax.data.synth.config import SynthConfig  # noqa: E402
from vasajax.data.synth.inputs import load_portraits, load_sentences  # noqa: E402
from vasajax.data.synth.portrait import prepare_portraits  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
EDITS = ["crf28", "crop", "hflip", "rotate", "half", "double", "stretch", "colour", "fps", "trim", "paste"]


def device_name() -> str:
    return f"cpu-{os.cpu_count()}core-{platform.machine()}"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def edit_args(name: str, rng: np.random.Generator, h: int, w: int, photo: pathlib.Path) -> tuple[list, list, str]:
    """(input args, filter/output args, description) for one edit with parameters drawn from ``rng``."""
    if name == "crf28":
        return [], [], "re-encode"
    if name == "crop":
        if rng.random() < 0.5:
            s = int(np.sqrt(0.6 + 0.06 * rng.random()) * min(h, w)) // 2 * 2
            cw, ch = s, s
        else:
            cw, ch = w, int((0.6 + 0.06 * rng.random()) * h) // 2 * 2
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        return [], ["-vf", f"crop={cw}:{ch}:{x}:{y}"], f"crop {cw}×{ch} at ({x}, {y})"
    if name == "hflip":
        return [], ["-vf", "hflip"], "horizontal flip"
    if name == "rotate":
        a = float(rng.choice([-1, 1]) * rng.uniform(0.5, 5.0))
        return [], ["-vf", f"rotate={a:.3f}*PI/180"], f"rotate {a:+.2f}°"
    if name == "half":
        return [], ["-vf", "scale=iw/2:ih/2"], "0.5×"
    if name == "double":
        return [], ["-vf", "scale=iw*2:ih*2"], "2×"
    if name == "stretch":
        sx, sy = np.exp(rng.uniform(np.log(0.5), np.log(2.0), 2))
        nw, nh = int(w * sx) // 2 * 2, int(h * sy) // 2 * 2
        return [], ["-vf", f"scale={nw}:{nh}"], f"scale to {nw}×{nh}"
    if name == "colour":
        b, c, s = rng.uniform(-0.08, 0.08), rng.uniform(0.85, 1.2), rng.uniform(0.6, 1.5)
        return [], ["-vf", f"eq=brightness={b:.3f}:contrast={c:.3f}:saturation={s:.3f}"], f"eq {b:+.2f} {c:.2f} {s:.2f}"
    if name == "fps":
        f = int(rng.choice([12, 15]))
        return [], ["-vf", f"fps={f}"], f"{f} fps"
    if name == "trim":
        return ["-sseof", "-2"], [], "last 2 s"
    if name == "paste":
        x, y = int(rng.integers(0, w + 1)) // 2 * 2, int(rng.integers(0, h + 1)) // 2 * 2
        inputs = ["-loop", "1", "-i", str(photo)]
        return inputs, ["-filter_complex", f"[0:v][1:v]overlay={x}:{y}:shortest=1"], f"into {photo.stem} at ({x}, {y})"
    raise ValueError(name)


def run_edit(src: pathlib.Path, dst: pathlib.Path, pre: list, args: list, crf: int) -> None:
    # paste: the photo (in ``pre``) is input 0, the video input 1
    out = ["-an", "-map_metadata", "-1", "-c:v", "libx264", "-crf", str(crf), "-pix_fmt", "yuv420p", dst]
    media.run_ffmpeg(*pre, "-i", src, *args, *out)


def evaluate(frames: np.ndarray, audio, folder: pathlib.Path, name: str, rng: np.random.Generator, photo) -> dict:
    t0 = time.perf_counter()
    marked = provenance.embed(frames)
    embed_s = time.perf_counter() - t0
    row = {"frames": len(frames), "psnr_db": psnr(marked, frames), "embed_ms_per_frame": 1e3 * embed_s / len(frames)}
    h, w = frames.shape[1:3]
    paths = {
        "marked": media.write_video(folder / f"{name}.m.mp4", marked, audio=audio, metadata=provenance.metadata_tag()),
        "plain": media.write_video(folder / f"{name}.u.mp4", frames, audio=audio),
    }
    times = []
    for e in EDITS:
        pre, args, desc = edit_args(e, rng, h, w, photo)
        for crf, suffix in ((23, ""), (28, "+crf28")):
            if e == "crf28" and crf == 23:
                continue
            key = e if e == "crf28" else e + suffix
            row[key] = {"edit": desc}
            for kind, src in paths.items():
                dst = folder / f"{name}.{kind}.{key}.mp4"
                run_edit(src, dst, pre, args, crf)
                t0 = time.perf_counter()
                d = detect.detect_video(dst)
                times.append(time.perf_counter() - t0)
                wm = d.watermark
                row[key][kind] = {
                    "z": round(float(wm.z), 2),
                    "found": bool(wm.present),
                    "how": wm.edit if kind == "marked" else "",
                }
                dst.unlink()
    row["detect_s_median"] = float(np.median(times))
    return row


def rows_of() -> list[str]:
    out = []
    for e in EDITS:
        out += [e] if e == "crf28" else [e, e + "+crf28"]
    return out


def summarise(rows: list[dict]) -> dict:
    out = {
        "clips": len(rows),
        "psnr_db_mean": float(np.mean([r["psnr_db"] for r in rows])),
        "psnr_db_min": float(np.min([r["psnr_db"] for r in rows])),
        "embed_ms_per_frame": float(np.median([r["embed_ms_per_frame"] for r in rows])),
        "detect_s_median": float(np.median([r["detect_s_median"] for r in rows])),
    }
    for k in rows_of():
        zm = [r[k]["marked"]["z"] for r in rows]
        zu = [r[k]["plain"]["z"] for r in rows]
        out[k] = {
            "detected": int(sum(r[k]["marked"]["found"] for r in rows)),
            "false_positives": int(sum(r[k]["plain"]["found"] for r in rows)),
            "z_marked_min": float(np.min(zm)),
            "z_marked_median": float(np.median(zm)),
            "z_plain_max": float(np.max(zu)),
            "z_plain_all": zu,
            "undone": how_tally([r[k]["marked"].get("how", "") for r in rows]),
        }
    return out


def how_tally(hows: list[str]) -> dict[str, int]:
    """How often each kind of re-alignment won, from ``detect``'s sentences."""
    kinds = {"own grid": "frame grid", "crop": "crop", "rotation": "rotation", "larger frame": "inset"}
    tally: dict[str, int] = {}
    for how in hows:
        kind = next((v for k, v in kinds.items() if k in how), "?")
        kind += " + flip" if "flip" in how else ""
        tally[kind] = tally.get(kind, 0) + 1
    return tally


def table(s: dict) -> str:
    n = s["clips"]
    lines = [
        "| edit | detected | z marked: min / median | false positives | z unmarked: max | detect undid |",
        "|---|---|---|---|---|---|",
    ]
    for k in rows_of():
        v = s[k]
        undone = ", ".join(f"{kind} {c}" for kind, c in sorted(v.get("undone", {}).items(), key=lambda kv: -kv[1]))
        lines.append(
            f"| {k} | {v['detected']}/{n} | {v['z_marked_min']:.1f} / {v['z_marked_median']:.1f} "
            f"| {v['false_positives']}/{n} | {v['z_plain_max']:.1f} | {undone} |"
        )
    fp = sum(s[k]["false_positives"] for k in rows_of())
    tot = n * len(rows_of())
    det = sum(s[k]["detected"] for k in rows_of())
    lines.append(f"| **all** | **{det}/{tot}** | | **{fp}/{tot}** | | |")
    return "\n".join(lines)


def merge(paths: list[str], out: str | None) -> None:
    """One result from runs split with ``--first`` (e.g. on two machines, or one after another)."""
    runs = [json.loads(pathlib.Path(p).read_text()) for p in paths]
    rows = [r for run in runs for r in run["per_clip"]]
    result = {**runs[0], "synthtalk": summarise(rows), "merged_from": [str(p) for p in paths]}
    for r in rows:  # the tally above keeps what the sentences said; the per-clip rows keep the numbers
        for v in r.values():
            if isinstance(v, dict) and "marked" in v:
                v["marked"].pop("how", None)
                v["plain"].pop("how", None)
    result["per_clip"] = rows
    result["demo"] = next((run["demo"] for run in runs if run.get("demo")), None)
    default = ROOT / "benchmarks" / "results" / f"provenance-{result['device']}-{result['date']}.json"
    target = pathlib.Path(out or default)
    target.write_text(json.dumps(result, indent=None, separators=(",", ":")))
    print(table(result["synthtalk"]))
    print(f"\nwrote {target}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=100)
    ap.add_argument("--first", type=int, default=0, help="first clip index (to split a run)")
    ap.add_argument("--demo", default=str(ROOT / "out" / "demo.mp4"), help="make demo's output ('' to skip)")
    ap.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/)")
    ap.add_argument("--merge", nargs="+", help="combine the per-clip rows of earlier runs' JSON files (no new run)")
    args = ap.parse_args()
    if args.merge:
        return merge(args.merge, args.out)

    cfg = SynthConfig(size=256, lead_in_s=0.3, tail_s=0.3, max_speech_s=2.4)
    images = load_portraits()
    portraits = prepare_portraits(images, cfg)
    sentences = load_sentences("all")
    rows, demo_row = [], None
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        photos = []
        for i, (_name, img) in enumerate(images):  # each clip is pasted into the *other* portrait, 512²
            idx = (np.arange(512) * min(img.shape[:2]) / 512).astype(int)
            photos.append(folder / f"photo{i}.png")
            iio.imwrite(photos[-1], img[idx][:, idx, :3])
        for i in range(args.first, args.first + args.clips):
            t0 = time.perf_counter()
            clip = synthesize_clip(portraits[i % len(portraits)], sentences[i], seed=i, cfg=cfg)
            rng = np.random.default_rng(1000 + i)
            photo = photos[(i + 1) % len(photos)]
            rows.append(evaluate(clip.frames, clip.audio, folder, f"clip{i:03d}", rng, photo))
            r = rows[-1]
            missed = [k for k in rows_of() if not r[k]["marked"]["found"]]
            fps_ = [k for k in rows_of() if r[k]["plain"]["found"]]
            print(
                f"clip {i:3d} ({r['frames']} frames, {time.perf_counter() - t0:.0f} s): PSNR {r['psnr_db']:.1f} dB, "
                f"min z marked {min(r[k]['marked']['z'] for k in rows_of()):.1f}, missed {missed}, "
                f"max z unmarked {max(r[k]['plain']['z'] for k in rows_of()):.1f}, false positives {fps_}",
                flush=True,
            )
        if args.demo and pathlib.Path(args.demo).is_file():
            frames = np.stack(list(media.iter_frames(args.demo)))
            demo_row = evaluate(frames, None, folder, "demo", np.random.default_rng(7), photos[0])
    result = {
        "device": device_name(),
        "date": datetime.date.today().isoformat(),
        "config": {
            "tile": provenance.TILE,
            "tiles": provenance.TILES,
            "strength": provenance.STRENGTH,
            "z_threshold": provenance.Z_THRESHOLD,
            "num_decoys": provenance.NUM_DECOYS,
            "size": 256,
            "write_crf": 18,
            "first_clip": args.first,
        },
        "synthtalk": summarise(rows) if rows else None,  # --clips 0: the demo row only
        "demo": demo_row,
        "per_clip": rows,
    }
    default = ROOT / "benchmarks" / "results" / f"provenance-{device_name()}-{result['date']}.json"
    out = pathlib.Path(args.out or default)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=None, separators=(",", ":")))
    s = result["synthtalk"]
    if s:
        print(
            f"\nSynthTalk: {s['clips']} clips, PSNR mean {s['psnr_db_mean']:.2f} dB (min {s['psnr_db_min']:.2f}), "
            f"detect_video median {s['detect_s_median']:.2f} s per file"
        )
        print(table(s))
    if demo_row:
        n = len(rows_of())
        found = sum(demo_row[k]["marked"]["found"] for k in rows_of())
        fp = sum(demo_row[k]["plain"]["found"] for k in rows_of())
        zmin = min(demo_row[k]["marked"]["z"] for k in rows_of())
        print(
            f"\ndemo ({demo_row['frames']} frames): PSNR {demo_row['psnr_db']:.2f} dB, detected {found}/{n}, "
            f"false positives {fp}/{n}, min z {zmin:.1f}"
        )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
