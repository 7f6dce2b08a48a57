"""Evaluate an export on held-out SynthTalk: VASA-1's table 1 (generated vs real) and table 5 (CFG ablation).

    vasajax heldout --checkpoint checkpoints/demo --data runs/demo/synthtalk/heldout \\
        --out runs/eval-demo [--num-clips 6]

1. **Reference.** The first ``--num-clips`` held-out clip records (sentences never trained on; odd clips speak
   with the held-out voice; the held-out portrait when the data has one) are written as real SynthTalk videos:
   ``real/<stem>.mp4`` (frames + speech), ``.wav``, ``.json`` (portrait name and espeak-ng phoneme timings) and
   ``.npz`` (true per-frame gaze and head distance: the conditions ``vasajax eval`` scores against).
2. **Generated.** For each CFG setting (``--settings``, default: none / audio only / the export's default /
   strong audio), every clip's portrait (the bundled photo it was made from) is animated with that clip's
   speech, gaze forward and the export's default distance, seed 0: ``gen-<setting>/<stem>.mp4``.
3. **Metrics.** ``vasajax.eval.report.evaluate_videos`` on every folder (MediaPipe tracking of the frames):
   lip-sync offset/confidence/r, phoneme-timing r, ΔP, gaze and distance error against what was requested
   (the truth for the real clips). ``report.write_report`` writes ``OUT/table1.{md,json}`` (real vs the
   default setting) and ``OUT/table5.{md,json}`` (one summary row per setting).

Caveat written into the tables: SynthTalk is synthetic (two portraits, espeak-ng voices); numbers here compare
models and settings on it and say nothing about real faces.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
from collections.abc import Sequence
from typing import Any

import numpy as np

from vasajax import media
from vasajax.data import clips
from vasajax.errors import UserError
from vasajax.eval import report
from vasajax.image import PORTRAITS
from vasajax.pipeline import Animator
from vasajax.stages import describe

DEFAULT_SETTINGS = ("none:0:0", "audio:0.5:0", "default", "strong-audio:1.0:1.0")
"""``name:λ_audio:λ_gaze`` (``default``: the export's own scales)."""


def parse_setting(text: str) -> tuple[str, float | None, float | None]:
    """``"name:la:lg"`` → ``(name, la, lg)``; ``"default"`` → ``("default", None, None)``."""
    if text == "default":
        return "default", None, None
    parts = text.split(":")
    if len(parts) != 3:
        raise UserError(f"setting {text!r}: expected NAME:LAMBDA_AUDIO:LAMBDA_GAZE or 'default'")
    try:
        return parts[0], float(parts[1]), float(parts[2])
    except ValueError:
        raise UserError(f"setting {text!r}: the λ values must be numbers") from None


def write_reference(data: str | pathlib.Path, out: str | pathlib.Path, num_clips: int) -> list[dict[str, Any]]:
    """Write the first ``num_clips`` SynthTalk clip records of ``data`` as real videos under ``out``; returns
    one dict per clip (stem, portrait name, held-out factors, frames)."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = clips.read_manifest(data)
    if manifest.get("kind") != "clip":
        kind = manifest.get("kind")
        raise UserError(f"{data} holds {kind} records; pass SynthTalk clip shards (vasajax synth --shards)")
    fps = float(manifest.get("fps", 25))
    held = {e.get("source"): (e.get("synth") or {}).get("heldout", []) for e in manifest.get("records", [])}
    info = []
    for k, rec in enumerate(clips.read_records(manifest, data)):
        if k >= num_clips:
            break
        gt = rec.ground_truth
        if "synth/meta_json" not in gt:
            raise UserError(f"{data}: record {rec.source} has no SynthTalk ground truth; this needs SynthTalk shards")
        meta = json.loads(bytes(np.asarray(gt["synth/meta_json"], np.uint8)).decode("utf-8"))
        stem = f"clip{k:03d}"
        media.write_wav(out / f"{stem}.wav", rec.audio_N, sample_rate=16_000, subtype="PCM_16")
        with media.VideoWriter(out / f"{stem}.mp4", fps=fps, audio=rec.audio_N, crf=18) as w:
            w.write(rec.frames_TxSxSx3)
        # The truth the tracker is scored against (eye-in-head gaze, head distance), as `vasajax synth` writes it.
        truth = {"gaze": gt.get("synth/gaze_Tx2"), "distance": gt.get("synth/distance_T")}
        np.savez(out / f"{stem}.npz", **{k: np.asarray(v) for k, v in truth.items() if v is not None})
        meta = {**meta, "portrait": rec.identity}
        (out / f"{stem}.json").write_text(json.dumps(meta, ensure_ascii=False))
        n = int(len(rec.frames_TxSxSx3))
        info.append({"stem": stem, "portrait": rec.identity, "source": rec.source, "frames": n,
                     "heldout": ["sentence", *held.get(rec.source, [])]})  # fmt: skip
    if not info:
        raise UserError(f"no clip records in {data}")
    return info


def generate(
    animator, ref_dir: pathlib.Path, out_dir: pathlib.Path, clips_info: Sequence[dict[str, Any]], *,
    cfg_audio: float | None, cfg_gaze: float | None, seed: int = 0, start: str = "portrait",
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Animate each clip's portrait with its speech into ``out_dir``; returns the requested conditions per stem
    (forward gaze, the export's default distance) for the gaze/distance errors."""
    out_dir.mkdir(parents=True, exist_ok=True)
    conditions = {}
    for c in clips_info:
        stem = c["stem"]
        if c["portrait"] not in PORTRAITS:
            raise UserError(f"portrait {c['portrait']!r} of {stem} is not a bundled portrait")
        vid = animator.animate(PORTRAITS[c["portrait"]], ref_dir / f"{stem}.wav", seed=seed,
                               cfg_audio=cfg_audio, cfg_gaze=cfg_gaze, start=start)  # fmt: skip
        vid.save(out_dir / f"{stem}.mp4")
        shutil.copy(ref_dir / f"{stem}.json", out_dir / f"{stem}.json")  # portrait name (identity metric)
        dist = (animator.generator.conditions or {}).get("distance")
        t = len(vid.frames)
        conditions[stem] = {"gaze": [[0.0, 0.0]] * t}  # camera space: (0, 0) = into the camera
        if dist:
            conditions[stem]["distance"] = [float(dist)] * t
    return conditions


def run(checkpoint: str | None, data: str, out: str, *, num_clips: int = 6,
        settings: Sequence[str] = DEFAULT_SETTINGS, start: str = "portrait") -> dict[str, Any]:  # fmt: skip
    out_p = pathlib.Path(out)
    ref = out_p / "real"
    clips_info = write_reference(data, ref, num_clips)
    animator = Animator.from_pretrained(checkpoint)
    parsed = [parse_setting(s) for s in settings]
    truth = report.synthtalk_conditions(ref)
    real = report.evaluate_videos(ref, None, conditions=truth, label="real SynthTalk (held-out)")
    d = animator.export.diffusion if animator.export is not None else None  # VASA-1's DiT: its CFG defaults
    results = {}
    for name, la, lg in parsed:
        gdir = out_p / f"gen-{name}"
        conds = generate(animator, ref, gdir, clips_info, cfg_audio=la, cfg_gaze=lg, start=start)
        if d is not None:
            la_eff = d.lambda_audio if la is None else la
            lg_eff = d.lambda_gaze if lg is None else lg
            label = f"vasajax demo, λ_A={la_eff:g}, λ_g={lg_eff:g}"
        else:  # another generator: its own scales
            label = f"generator {animator.generator.name}" + (f", cfg_audio={la:g}" if la is not None else "")
        label += " (default)" if name == "default" else ""
        results[name] = report.evaluate_videos(gdir, ref, conditions=conds, label=label)
    heldout = sorted({f for c in clips_info for f in c["heldout"]})  # always the sentence; voice/portrait by clip
    stage_list = describe((animator.renderer, animator.generator, animator.audio))
    notes = [
        f"{len(clips_info)} held-out SynthTalk clips ({', '.join(heldout)} held out; "
        f"{sum(1 for c in clips_info if 'voice' in c['heldout'])} with the held-out voice), checkpoint "
        f"{animator.renderer.image_size}² '{checkpoint or 'checkpoints/demo'}' ({stage_list}), seed 0, "
        + (f"{d.steps} DDIM steps, " if d is not None else "")
        + f"first window started from the {'portrait' if start == 'portrait' else 'DiT alone'}.",
        "Generated videos request forward gaze and the export's default distance: gaze_err/dist_err measure how "
        "well the control is obeyed; for the real clips they measure the tracker against SynthTalk's truth.",
        "SynthTalk is synthetic (2 portraits, espeak-ng voices): compare settings and models on it, not with "
        "the paper's VoxCeleb2/OneMin-32 numbers.",
    ]
    default_name = next((n for n, *_ in parsed if n == "default"), parsed[0][0])
    table1 = report.write_report([real, results[default_name]], out_p / "table1", notes)
    table5 = report.write_report(list(results.values()), out_p / "table5", notes)
    return {"table1": table1, "table5": table5, "clips": clips_info}


def cli_main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vasajax heldout", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None, help="export folder (default: the shipped checkpoints/demo)")
    ap.add_argument("--data", required=True, help="held-out SynthTalk clip shards (vasajax synth --shards …/heldout)")
    ap.add_argument("--out", required=True, help="output folder (videos, table1.md/json, table5.md/json)")
    ap.add_argument("--num-clips", type=int, default=6)
    ap.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS), help="NAME:λ_A:λ_g or 'default'")
    ap.add_argument("--start", choices=("portrait", "free"), default="portrait", help="Animator start (first window)")
    args = ap.parse_args(argv)
    doc = run(args.checkpoint, args.data, args.out, num_clips=args.num_clips, settings=args.settings, start=args.start)
    print("Table 1 (held-out SynthTalk)\n" + report.markdown_table(doc["table1"]["summary"], first="set"))
    print("\nTable 5 (CFG ablation)\n" + report.markdown_table(doc["table5"]["summary"], first="set"))
    return 0


if __name__ == "__main__":
    from vasajax.cli import run

    raise SystemExit(run(cli_main))
