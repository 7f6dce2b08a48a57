"""Run every benchmark in ``benchmarks/`` with quick settings and summarise ALL results, each with its device.

    python benchmarks/run_all.py                  # quick run on this machine (~10 min on a 2-core CPU), summary
    python benchmarks/run_all.py --summary-only   # regenerate benchmarks/summary.md from the JSONs, run nothing
    python benchmarks/run_all.py --only motion audio

A quick run executes each benchmark (the settings in :data:`QUICK`; a new benchmark file is run with
``--quick`` when its ``--help`` offers it, otherwise listed as skipped) on a copy of ``benchmarks/``, so the
careful results already in ``benchmarks/results/`` are never overwritten by quick ones; the quick run's own
JSONs are gathered into one file, ``benchmarks/results/run_all-<device>-<date>.json``.

The summary (``benchmarks/summary.md``) reads every JSON in ``benchmarks/results/`` — per-benchmark files from
any device (2-core CPU, H100, …) and the quick-run files — and tabulates: parameters and GFLOPs per frame
(device-independent XLA counts), decode fps / encode latency, motion frames/s and ms per window, streaming
first-frame latency (when a benchmark reports one), training step time and samples/s, weak-scaling efficiency,
peak memory, and a roofline table: achieved FLOP/s over the device's dense bf16 peak (989 TFLOP/s for an H100
or H200 SXM). Every number names the device (and file) it came from.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "results"
SUMMARY = HERE / "summary.md"
NOTES = HERE / "notes.md"

QUICK: dict[str, list[str]] = {
    "face_latent.py": ["--configs", "tiny", "small", "paper", "--iters", "2"],
    "face_train_step.py": ["--config", "tiny", "--iters", "3"],
    "train.py": ["--config", "tiny", "--devices", "1", "--iters", "2"],
    "motion.py": ["--configs", "tiny", "small", "--steps", "10", "--repeats", "2"],
    "train_motion.py": ["--config", "tiny", "--devices", "1", "--iters", "3"],
    "audio.py": ["--quick"],
    "data.py": ["--quick"],
    "facetrack.py": ["--frames", "20"],
    "synth.py": ["--sizes", "128", "256", "--clips", "1", "--no-strip"],
    "provenance.py": ["--clips", "1", "--demo", ""],
    "animate.py": ["--configs", "tiny", "--seconds", "4"],
    "zoo.py": ["--size", "tiny", "--repeats", "2"],
}
"""Quick CPU settings per benchmark script (everything else in ``benchmarks/`` is probed for ``--quick``).
train.py / train_motion.py run on one device: with ``--devices 1 2`` on a CPU they set ``jax_num_cpu_devices``
after JAX has started and stop with a RuntimeError (run them by hand for weak scaling)."""

BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "RTX 4090": 165.2}
"""Dense bf16 tensor-core peak per device family (vendor specs; SXM parts)."""


# ----------------------------------------------------------------------------------------------- running


def device_name() -> str:
    """This machine's device label in the benchmarks' file-name style (no JAX import: nvidia-smi or the CPU)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=True).stdout.strip().splitlines()  # fmt: skip
        if out:
            return out[0].strip().replace(" ", "_")
    except (OSError, subprocess.SubprocessError):
        pass
    return f"cpu-{os.cpu_count()}core-{platform.machine()}"


def _accepts_quick(script: pathlib.Path) -> bool:
    try:
        r = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return False
    return "--quick" in r.stdout


def run_quick(only: Iterable[str] | None = None, timeout_s: float = 1200.0) -> pathlib.Path:
    """Run the benchmarks on a copy of ``benchmarks/`` and write ``results/run_all-<device>-<date>.json``."""
    scripts = sorted(p for p in HERE.glob("*.py") if p.name != pathlib.Path(__file__).name)
    if only:
        wanted = {o.removesuffix(".py") for o in only}
        scripts = [p for p in scripts if p.stem in wanted]
    dev, date = device_name(), datetime.date.today().isoformat()
    runs, docs = [], {}
    with tempfile.TemporaryDirectory(prefix="vasajax-bench-") as tmp:
        root = pathlib.Path(tmp)
        work = root / "benchmarks"
        shutil.copytree(HERE, work, ignore=shutil.ignore_patterns("results", "__pycache__", "summary.md"))
        (work / "results").mkdir()
        (root / "src").symlink_to(HERE.parent / "src")  # scripts put <root>/src on sys.path
        for script in scripts:
            args = QUICK.get(script.name)
            if args is None:
                if not _accepts_quick(script):
                    runs.append({"benchmark": script.stem, "skipped": "no quick setting known; run it yourself"})
                    print(f"[run_all] {script.name}: skipped (no quick setting known)", flush=True)
                    continue
                args = ["--quick"]
            cmd = [sys.executable, str(work / script.name), *args]
            print(f"[run_all] {script.name} {' '.join(args)}", flush=True)
            before = set((work / "results").glob("*.json"))
            t0 = time.perf_counter()
            try:
                r = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout_s)
                rc, tail = r.returncode, (r.stdout + r.stderr)[-2000:]
            except subprocess.TimeoutExpired:
                rc, tail = -1, f"timed out after {timeout_s:.0f} s"
            wall = time.perf_counter() - t0
            new = sorted(set((work / "results").glob("*.json")) - before)
            for p in new:
                docs[p.name] = json.loads(p.read_text())
            runs.append({"benchmark": script.stem, "args": args, "rc": rc, "wall_s": round(wall, 1),
                         "results": [p.name for p in new], **({"log_tail": tail} if rc else {})})  # fmt: skip
            print(f"[run_all]   rc={rc} in {wall:.0f} s -> {[p.name for p in new]}", flush=True)
    out = RESULTS / f"run_all-{dev}-{date}.json"
    if out.is_file():  # a partial run (--only) updates the day's file instead of replacing it
        old = json.loads(out.read_text())
        ran = {r["benchmark"] for r in runs}
        runs = [r for r in old.get("runs", []) if r["benchmark"] not in ran] + runs
        docs = {**{k: v for k, v in old.get("results", {}).items() if _kind(k) not in ran}, **docs}
    doc = {"benchmark": "run_all", "device": dev, "date": date, "python": platform.python_version(),
           "cpu_count": os.cpu_count(), "note": "quick settings (benchmarks/run_all.py QUICK); careful runs are "
           "the per-benchmark JSON files", "runs": runs, "results": docs}  # fmt: skip
    out.write_text(json.dumps(doc, indent=1) + "\n")
    return out


# ----------------------------------------------------------------------------------------------- summary


def device_label(doc: dict[str, Any], filename: str) -> str:
    """A readable device for a result file: the GPU's name, or "2-core CPU"."""
    info = doc.get("info") or doc.get("meta") or {}
    kind = doc.get("device_kind") or info.get("device_kind") or ""
    dev = str(doc.get("device") or info.get("device") or kind or filename)
    if kind and kind.lower() != "cpu":
        return kind
    if "cpu" in dev.lower() or kind.lower() == "cpu":
        n = doc.get("cpu_count") or info.get("cpu_count")
        if not n:
            digits = "".join(c for c in dev.split("core")[0] if c.isdigit())
            n = int(digits) if digits else None
        return f"{n}-core CPU" if n else "CPU"
    return dev.replace("_", " ")


def bf16_peak(device: str) -> float | None:
    for k, v in BF16_PEAK_TFLOPS.items():
        if k.lower() in device.lower():
            return v
    return None


def _f(x: Any, nd: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool) or not isinstance(x, int | float):
        return str(x)
    if x == 0:
        return "0"
    if isinstance(x, int) or (x.is_integer() and abs(x) < 1e6):
        return f"{int(x):,}"
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    return f"{x:.{nd}g}"


def _load(r: dict[str, Any], part: str | None = None) -> str:
    """A marker for a result taken under load (a row's ``contention``, written by ``benchmarks/timing.py``, or
    added by hand to an older row; ``part``: one of its ``parts``, e.g. decode): empty for a clean or unknown row."""
    c = r.get("contention")
    if isinstance(c, dict) and part and isinstance((c.get("parts") or {}).get(part), dict):
        c = c["parts"][part]
    if not isinstance(c, dict) or not c.get("contended"):
        return ""
    if c.get("measured") and c.get("others_share") is not None:
        text = f" ⚠ contended: other processes used {100 * c['others_share']:.0f}% of the CPUs"
    else:
        text = " ⚠ recorded under load"
    return text + (f" ({c['note']})" if c.get("note") else "")


def _rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = doc.get("rows") if isinstance(doc.get("rows"), list) else doc.get("results")
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def _gib(r: dict[str, Any]) -> float | None:
    if r.get("peak_memory_gib") is not None:
        return r["peak_memory_gib"]
    if r.get("peak_bytes_in_use"):
        return r["peak_bytes_in_use"] / 2**30
    return None


class Tables:
    """Rows for each summary table; ``add(table, row)`` with the table's columns as keys."""

    COLUMNS = {
        "size": ("model", "config", "params (M)", "GFLOP/frame", "note"),
        "infer": ("what", "config", "device", "dtype", "batch", "result", "peak mem (GiB)", "source"),
        "train": ("what", "config", "device", "dtype", "batch", "devices", "step (s)", "samples/s",
                  "scaling eff.", "peak mem (GiB)", "source"),
        "roofline": ("what", "config", "device", "dtype", "batch", "GFLOP/item", "achieved TFLOP/s",
                     "bf16 peak TFLOP/s", "fraction of peak", "source"),
        "stream": ("what", "config", "device", "dtype", "first frame (ms)", "steady fps", "source"),
        "other": ("what", "device", "result", "source"),
        "breakdown": ("what", "device", "batch", "step (s)", "parts (s, forward + backward)", "3D parts", "source"),
    }  # fmt: skip

    def __init__(self):
        self.rows: dict[str, list[dict[str, Any]]] = {k: [] for k in self.COLUMNS}
        self.seen_size: set[tuple] = set()

    def add(self, table: str, **row: Any) -> None:
        self.rows[table].append(row)

    def size(self, model: str, config: str, params: Any, gflop: Any, note: str, src: str) -> None:
        key = (model, config, note)
        if key not in self.seen_size:  # device-independent: list once
            self.seen_size.add(key)
            self.add("size", model=model, config=config, **{"params (M)": params, "GFLOP/frame": gflop}, note=note,
                     source=src)  # fmt: skip

    def roofline(self, what: str, r: dict[str, Any], dev: str, src: str, gflop: Any, tflops: Any) -> None:
        peak = bf16_peak(dev)
        if peak and tflops:
            nums = {"GFLOP/item": gflop, "achieved TFLOP/s": tflops, "bf16 peak TFLOP/s": peak}
            self.add("roofline", what=what, **nums, **{"fraction of peak": tflops / peak}, **_base(r, dev, src))


def _base(r: dict[str, Any], dev: str, src: str) -> dict[str, Any]:
    return {"config": r.get("config"), "device": dev, "dtype": r.get("dtype") or r.get("precision"),
            "batch": r.get("batch"), "source": src}  # fmt: skip


def _face_latent(t: Tables, doc, dev, src):
    for r in _rows(doc):
        t.size("face latent (stage 1)", r["config"], r.get("params_total_M"),
               f"decode {_f(r.get('decode_gflops_per_frame'))}, encode {_f(r.get('encode_gflops_per_frame'))}",
               f"{r.get('image_size')}² frames", src)  # fmt: skip
        if r.get("decode_fps") is not None:
            res = f"{_f(r['decode_fps'])} fps ({_f(r.get('decode_ms_per_frame'))} ms/frame){_load(r, 'decode')}"
            t.add("infer", what="face decode", result=res, **{"peak mem (GiB)": _gib(r)}, **_base(r, dev, src))
        if r.get("encode_ms_per_frame") is not None:
            res = f"{_f(r['encode_ms_per_frame'])} ms/frame{_load(r, 'encode')}"
            t.add("infer", what="face encode", result=res, **{"peak mem (GiB)": None}, **_base(r, dev, src))
        t.roofline("face decode", r, dev, src, r.get("decode_gflops_per_frame"), r.get("decode_tflops_achieved"))


def _motion(t: Tables, doc, dev, src):
    for r in _rows(doc):
        if r.get("steps") and r.get("gflops_per_frame") is not None:
            per_step = r["gflops_per_frame"] / r["steps"]
            t.size("motion DiT (stage 2)", r["config"], r.get("params_M"),
                   f"{_f(50 * per_step)} (50 steps), {_f(10 * per_step)} (10 steps)",
                   f"W={r.get('window')}+K={r.get('context')}, {r.get('layers')} layers × {r.get('width')}, "
                   "3 CFG branches per step", src)  # fmt: skip
        res = (f"{_f(r.get('motion_fps'))} motion frames/s ({_f(r.get('ms_per_window'))} ms/window, "
               f"{_f(r.get('realtime_factor'))}× real time){_load(r)}")  # fmt: skip
        what = f"motion window, {r.get('steps')} steps"
        t.add("infer", what=what, result=res, **{"peak mem (GiB)": _gib(r)}, **_base(r, dev, src))
        t.roofline(f"motion window, {r.get('steps')} steps", r, dev, src, r.get("gflops_per_window"),
                   r.get("achieved_tflops"))  # fmt: skip


def _animate(t: Tables, doc, dev, src):
    for r in _rows(doc):
        res = (f"{_f(r.get('fps'))} fps offline ({_f(r.get('s_per_audio_s'))} s per s of audio); streaming: first "
               f"frame {_f(1000 * r['first_frame_s'] if r.get('first_frame_s') is not None else None)} ms, then "
               f"{_f(r.get('steady_fps'))} fps{_load(r)}")  # fmt: skip
        size = "×".join(map(str, r.get("frame_size") or [])) or "?"
        row = {**_base(r, dev, src), "batch": r.get("decode_batch")}
        t.add("infer", what=f"animate end to end ({size}, {r.get('steps')} steps)", result=res,
              **{"peak mem (GiB)": r.get("peak_rss_gib")}, **row)  # fmt: skip
        if r.get("first_frame_s") is not None:
            t.add("stream", what="animate --stream", **row, **{"first frame (ms)": 1000 * r["first_frame_s"],
                  "steady fps": r.get("steady_fps")})  # fmt: skip
        if r.get("live_first_frame_after_audio_s") is not None:
            keeps = {True: " (keeps up)", False: " (falls behind)"}.get(r.get("live_keeps_up"), "")
            what = (f"animate live (`--audio -`: first window after {r.get('live_first_window_frames')} frames, "
                    "latency from the first audio sample, 20 ms packets in real time)")  # fmt: skip
            t.add("stream", what=what, **row, **{"first frame (ms)": 1000 * r["live_first_frame_after_audio_s"],
                  "steady fps": f"{_f(r.get('live_steady_fps'))}{keeps}"})  # fmt: skip


def _train_rows(what: str) -> Callable:
    def parse(t: Tables, doc, dev, src):
        for r in _rows(doc):
            samples = r.get("samples_per_s") or r.get("windows_per_s")
            gen, ren = r.get("generator"), r.get("renderer")
            label = what if gen in (None, "vasa") else f"{what}, {gen}'s DiT"
            label = label if ren in (None, "vasa") else f"{label}, {ren} renderer ({r.get('image_size')}² frames)"
            t.add("train", what=label, config=r.get("config"), device=dev, dtype=r.get("dtype") or r.get("precision"),
                  batch=r.get("batch"), devices=r.get("devices", 1), **{"step (s)": r.get("step_s"),
                  "samples/s": samples, "scaling eff.": r.get("weak_scaling_eff"), "peak mem (GiB)": _gib(r)},
                  source=src)  # fmt: skip

    return parse


def _train_face(t: Tables, doc, dev, src):
    """benchmarks/train_face.py: one stage-1 trainer step per design, and where its time goes (forward + backward
    of each component at the same batch)."""
    for design, d in (doc.get("designs") or {}).items():
        secs = dict(d.get("seconds") or {})
        step = next((v for k, v in secs.items() if k.startswith("trainer")), None)
        base = {"config": design, "device": dev, "dtype": "float32", "batch": doc.get("batch"), "source": src}
        t.add("train", what="stage-1 generator step, CPU recipe (L1 + SSIM + face SSIM, no GAN)", devices=1,
              **{"step (s)": step, "samples/s": d.get("samples_per_s"), "scaling eff.": None,
                 "peak mem (GiB)": None}, **base)  # fmt: skip
        parts = sorted(((v, k) for k, v in secs.items() if not k.startswith("trainer")), reverse=True)
        if parts and step:
            t.add("breakdown", what=f"stage-1 training step, {design}", **base, **{
                "step (s)": step, "parts (s, forward + backward)": ", ".join(f"{k} {_f(v)}" for v, k in parts),
                "3D parts": sum(v for v, k in parts if k.startswith(("G3D", "warp"))) / step})  # fmt: skip


def _demo_recipe(t: Tables, doc, dev, src):
    """A whole ``checkpoints/make_demo.sh`` run: the trainers' steady step times and every phase's seconds."""
    dev = str(doc.get("device", dev)).split(" (")[0]
    secs, put = dict(doc.get("seconds") or {}), dict(doc.get("throughput") or {})
    settings = doc.get("settings") or {}
    for stage, what in (("stage 1", "stage-1 full objective (G + D; trainer, GPU preset)"),
                        ("stage 2", "stage-2 DiT step (trainer)")):  # fmt: skip
        step = next((v for k, v in secs.items() if k.startswith(f"{stage}: per step")), None)
        rate = next((v for k, v in put.items() if k.startswith(stage)), None)
        per_step = [k for k in secs if k.startswith(f"{stage}: per step")]
        batch = next((int(m[1]) for k in per_step if (m := re.search(r"batch (\d+)", k))), None)
        if step is not None:
            t.add("train", what=what, config=str(settings.get(stage.replace(" ", ""), "")).split(",")[0], device=dev,
                  dtype="float32", batch=batch, devices=1, **{"step (s)": step, "samples/s": rate,
                  "scaling eff.": None, "peak mem (GiB)": None}, source=src)  # fmt: skip
    for k, v in secs.items():
        if ": per step" not in k:
            t.add("other", what=f"demo recipe: {k}", device=dev, result=f"{_f(v)} s", source=src)


def _audio(t: Tables, doc, dev, src):
    for k, v in doc.items():
        if k.endswith("_audio_s_per_s"):
            t.add("other", what=f"audio: {k.removesuffix('_audio_s_per_s')}", device=dev,
                  result=f"{_f(v)} s of audio per s", source=src)  # fmt: skip
    if doc.get("wav2vec2_base_params"):
        t.size("wav2vec2-base (audio)", "base", doc["wav2vec2_base_params"] / 1e6, None, "random init", src)


def _data(t: Tables, doc, dev, src):
    prep = doc.get("prep") or {}
    if prep:
        t.add("other", what="vasajax prep (256² clips)", device=dev,
              result=f"{_f(prep.get('frames_per_s_wall'))} frames/s", source=src)  # fmt: skip
    for name, r in (doc.get("loaders") or {}).items():
        rate = r.get("examples_per_s") or r.get("windows_per_s")
        t.add("other", what=f"loader: {name}", device=dev, result=f"{_f(rate)}/s (batch {r.get('batch')})", source=src)


def _facetrack(t: Tables, doc, dev, src):
    for name, r in (doc.get("results") or {}).items():
        ms = r.get("median_ms", r.get("ms"))
        t.add("other", what=f"facetrack: {name}", device=dev, result=f"{_f(ms)} ms", source=src)


def _synth(t: Tables, doc, dev, src):
    for r in _rows(doc):
        t.add("other", what=f"SynthTalk {r.get('size')}²", device=dev,
              result=f"{_f(r.get('video_s_per_compute_s'))} s of video per s ({_f(r.get('render_ms_per_frame'))} "
                     "ms/frame render)", source=src)  # fmt: skip


def _parts_load(r: dict[str, Any], *parts: str) -> str:
    """:func:`_load` of the first of ``parts`` that was timed under load (parts the row lacks are skipped)."""
    have = (r.get("contention") or {}).get("parts") or {}
    return next((m for p in parts if p in have and (m := _load(r, p))), "" if have else _load(r))


def _torch_column(r: dict, key: str, ratio_key: str, unit: str) -> str:
    """``"; torch CPU X unit (JAX/torch R)"`` when the row has the upstream torch timing ``key``, else ``""``."""
    if r.get(key) is None:
        return ""
    ratio = r.get(ratio_key)
    return f"; torch CPU {_f(r[key])} {unit}" + (f" (JAX/torch {_f(ratio)})" if ratio is not None else "")


def _zoo(t: Tables, doc, dev, src):
    """benchmarks/zoo.py: LivePortrait's renderer (encode F+M, render W+G; torch CPU beside it with --upstream) and
    JoyVASA's motion generator (a CFG window; the audio encoder)."""
    for r in _rows(doc):
        if r.get("model") == "liveportrait":
            t.size("LivePortrait (zoo)", r.get("config"), r.get("params_M"),
                   f"render (W+G) {_f(r.get('render_gflops_per_frame'))}, encode (F+M) {_f(r.get('encode_gflops'))}",
                   f"{r.get('image_size')}² source → {r.get('output_size')}² frame, {r.get('num_kp')} keypoints",
                   src)  # fmt: skip
            torch = _torch_column(r, "torch_render_ms_per_frame", "jax_over_torch_render", "ms/frame")
            res = (f"{_f(r.get('render_fps'))} fps ({_f(r.get('render_ms_per_frame'))} ms/frame){torch}"
                   f"{_parts_load(r, 'render', 'torch_render')}")  # fmt: skip
            t.add("infer", what="LivePortrait render (W+G)", result=res, **{"peak mem (GiB)": _gib(r)},
                  **_base(r, dev, src))  # fmt: skip
            torch = _torch_column(r, "torch_encode_ms", "jax_over_torch_encode", "ms")
            res = f"{_f(r.get('encode_ms'))} ms per source image{torch}{_parts_load(r, 'encode', 'torch_encode')}"
            t.add("infer", what="LivePortrait encode (F+M)", result=res, **{"peak mem (GiB)": None},
                  **{**_base(r, dev, src), "batch": 1})  # fmt: skip
            t.roofline("LivePortrait render (W+G)", r, dev, src, r.get("render_gflops_per_frame"),
                       r.get("render_tflops_achieved"))  # fmt: skip
        elif r.get("model") == "joyvasa":
            cfg = "no CFG" if not r.get("cfg_scale") else f"CFG {r['cfg_scale']:g}, {r.get('cfg_branches')} branches"
            t.size("JoyVASA DiT (zoo)", r.get("config"), r.get("params_M"),
                   f"{_f(r.get('gflops_per_frame'))} ({r.get('steps')} steps; {_f(r.get('gflops_per_window'))} "
                   "per window)", f"W={r.get('window')}+K={r.get('context')}, {r.get('layers')} layers × "
                   f"{r.get('width')}, {cfg}", src)  # fmt: skip
            enc = r.get("audio_encoder") or {}
            t.size("JoyVASA audio encoder (zoo)", r.get("config"), r.get("audio_params_M"),
                   f"{_f(r.get('audio_gflops_per_audio_s'))} per s of audio",
                   f"HuBERT, {enc.get('layers')} layers × {enc.get('hidden_size')}", src)  # fmt: skip
            torch = _torch_column(r, "torch_ms_per_window", "jax_over_torch_window", "ms/window")
            res = (f"{_f(r.get('motion_fps'))} motion frames/s ({_f(r.get('ms_per_window'))} ms/window, "
                   f"{_f(r.get('realtime_factor'))}× real time; {_f(r.get('realtime_factor_with_audio'))}× with "
                   f"the audio encoder){torch}{_load(r, 'window')}")  # fmt: skip
            t.add("infer", what=f"JoyVASA window, {r.get('steps')} steps, {cfg}", result=res,
                  **{"peak mem (GiB)": _gib(r)}, **_base(r, dev, src))  # fmt: skip
            torch = _torch_column(r, "torch_audio_ms_per_audio_s", "jax_over_torch_audio", "ms per s of audio")
            res = (f"{_f(r.get('audio_s_per_s'))} s of audio per s ({_f(r.get('audio_ms_per_audio_s'))} ms per s "
                   f"of audio){torch}{_load(r, 'audio')}")  # fmt: skip
            t.add("infer", what="JoyVASA audio encoder (HuBERT)", result=res, **{"peak mem (GiB)": None},
                  **_base(r, dev, src))  # fmt: skip
            t.roofline(f"JoyVASA window, {r.get('steps')} steps", r, dev, src, r.get("gflops_per_window"),
                       r.get("achieved_tflops"))  # fmt: skip


def _generic(t: Tables, doc, dev, src):
    """Unknown benchmarks: list streaming/latency numbers and fps-like numbers found anywhere in the file."""
    found = []

    def walk(x, path):
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, f"{path}.{k}" if path else k)
        elif isinstance(x, list):
            for i, v in enumerate(x[:20]):
                walk(v, f"{path}[{i}]")
        elif isinstance(x, int | float) and not isinstance(x, bool):
            key = path.lower()
            if any(s in key for s in ("first_frame", "latency", "fps", "per_s", "step_s", "psnr", "detect")):
                found.append((path, x))

    walk(doc, "")
    for path, v in found[:30]:
        t.add("other", what=f"{src.split('-')[0]}: {path}", device=dev, result=_f(v), source=src)


PARSERS: dict[str, Callable] = {
    "face_latent": _face_latent,
    "animate": _animate,
    "motion": _motion,
    "face_train_step": _train_rows("stage-1 L1 step (no GAN/perceptual)"),
    "train": _train_rows("stage-1 full step (G + D)"),
    "train_motion": _train_rows("stage-2 step (x0 loss, CFG dropout, EMA)"),
    "audio": _audio,
    "data": _data,
    "facetrack": _facetrack,
    "synth": _synth,
    "zoo": _zoo,
    "train_face": _train_face,
    "demo_recipe": _demo_recipe,
}


def _kind(name: str) -> str:
    for k in sorted(PARSERS, key=len, reverse=True):
        if name.startswith(k + "-"):
            return k
    return name.split("-")[0]


def collect(results: pathlib.Path = RESULTS) -> Tables:
    """Parse every JSON in ``results`` (quick-run files contribute their embedded results, marked "quick")."""
    t = Tables()
    for path in sorted(results.glob("*.json")):
        doc = json.loads(path.read_text())
        if doc.get("benchmark") == "run_all":
            for name, sub in sorted((doc.get("results") or {}).items()):
                _parse(t, name, sub, f"{path.name} (quick): {name}")
            continue
        _parse(t, path.name, doc, path.name)
    return t


def _parse(t: Tables, name: str, doc: dict[str, Any], src: str) -> None:
    dev = device_label(doc, name)
    try:
        PARSERS.get(_kind(name), _generic)(t, doc, dev, src)
    except (KeyError, TypeError, ValueError) as e:  # a changed schema must not break the whole summary
        t.add("other", what=f"{name}: unreadable ({type(e).__name__}: {e})", device=dev, result="–", source=src)


def _table(cols: tuple[str, ...], rows: list[dict[str, Any]]) -> list[str]:
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            pct = c in ("fraction of peak", "3D parts") and v is not None
            cells.append(f"{100 * v:.1f}%" if pct else _f(v))
        out.append("| " + " | ".join(cells) + " |")
    return out


def summary_markdown(t: Tables) -> str:
    lines = [
        "# vasajax benchmark summary",
        "",
        "Generated by `python benchmarks/run_all.py --summary-only` from every JSON in `benchmarks/results/`; "
        'do not edit by hand. Every number names the device that produced it ("2-core CPU" = the shared '
        '2-core x86-64 development machine, usually busy with other jobs). Rows marked "(quick)" come from '
        "`run_all.py`'s short settings and are noisier than the per-benchmark runs.",
        "",
        "Rows marked ⚠ were timed under load. The CPU-timed benchmarks (`motion.py`, `face_latent.py`, `animate.py`, "
        "`zoo.py`) "
        "time through `benchmarks/timing.py`: during each timed call it measures the CPU time other processes used "
        "(`/proc/stat` busy time of the CPUs this process may run on, minus its own), and `others_share` = that / "
        "(wall × cores). A call with `others_share` > 0.1 is contended: retried (up to `--max-tries`) and left out "
        "of the median; whole clips (`animate.py`) are not repeated but flagged. Each row's `contention` records "
        "`others_share`, the calls discarded, the load average before/after and `measured` (false where "
        "`/proc/stat` is missing: load average only); `contended: true` means no clean call was possible. Rows "
        "from before this (no `contention` field) were not checked.",
        "",
        "## Model sizes and FLOPs (device-independent)",
        "",
        "GFLOPs are XLA's HLO cost-analysis counts of the lowered functions (the motion DiT's are counted from "
        "the layer shapes; see `benchmarks/motion.py`).",
        "",
        *_table(Tables.COLUMNS["size"], t.rows["size"]),
        "",
        "## Inference speed",
        "",
        *_table(Tables.COLUMNS["infer"], t.rows["infer"]),
        "",
        "## Streaming first-frame latency",
        "",
        "From the first audio chunk to the first frame, the portrait already encoded (VASA-1: 170 ms at 512² on an "
        "RTX 4090, with 40 fps after it).",
        "",
        *_table(Tables.COLUMNS["stream"], t.rows["stream"]),
        "",
        "## Training",
        "",
        "Weak scaling keeps the per-device batch fixed; efficiency = t(1 device) / t(n devices). On the CPU the "
        '"devices" are simulated and share two cores, so efficiency there only shows that the sharded step runs.',
        "",
        *_table(Tables.COLUMNS["train"], t.rows["train"]),
        "",
        "Where a stage-1 training step goes (`benchmarks/train_face.py`: forward + backward of each component at "
        "the trainer's batch; 3D parts = G3D and the two warps):",
        "",
        *_table(Tables.COLUMNS["breakdown"], t.rows["breakdown"]),
        "",
        "## Roofline (GPU)",
        "",
        "Achieved FLOP/s = counted FLOPs / measured time; the peak is the device's dense bf16 tensor-core spec "
        "(989 TFLOP/s for H100 SXM; a bf16 8192³ matmul reached ~798 TFLOP/s on the lent H100). fp32 rows are "
        "shown against the same bf16 peak.",
        "",
        *_table(Tables.COLUMNS["roofline"], t.rows["roofline"]),
        "",
        "## Data, audio, tracking, SynthTalk and other",
        "",
        *_table(Tables.COLUMNS["other"], t.rows["other"]),
        "",
    ]
    if NOTES.exists():  # what a table cannot say (history, caveats), written by hand in benchmarks/notes.md
        lines += ["## Notes", "", f"From `benchmarks/{NOTES.name}` (hand-written).", "", NOTES.read_text().strip(), ""]
    return "\n".join(lines)


def write_summary(results: pathlib.Path = RESULTS, out: pathlib.Path = SUMMARY) -> pathlib.Path:
    out.write_text(summary_markdown(collect(results)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--summary-only", action="store_true", help="only regenerate summary.md from the JSONs")
    ap.add_argument("--only", nargs="+", default=None, help="run only these benchmarks (names without .py)")
    ap.add_argument("--timeout", type=float, default=1200.0, help="seconds per benchmark before it is stopped")
    ap.add_argument("--results", default=str(RESULTS), help="folder of result JSONs")
    ap.add_argument("--out", default=str(SUMMARY), help="summary markdown path")
    args = ap.parse_args(argv)
    if not args.summary_only:
        path = run_quick(args.only, args.timeout)
        print(f"[run_all] wrote {path}")
    out = write_summary(pathlib.Path(args.results), pathlib.Path(args.out))
    print(f"[run_all] wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
