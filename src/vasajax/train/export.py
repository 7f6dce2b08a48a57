"""``vasajax export``: two training runs → one inference export (what ``vasajax animate`` loads).

A stage-1 run (``train-face``) and a stage-2 run (``train-motion``) hold orbax checkpoints with optimiser state
and data-iterator positions; users need only the sampling weights. This command writes the export folder
described in :mod:`vasajax.checkpoint_export` (bf16 params, every config, a sha256 manifest)::

    vasajax export --face-run runs/face --motion-run runs/motion --motion-data data/motion/train \\
        --out checkpoints/demo [--steps 25] [--note "..."]

A motion run trained on another renderer's motion (``encode-dataset --renderer EXPORT``: JoyVASA's recipe, VASA's
DiT on LivePortrait's 70-dim motion) is exported beside that renderer instead of a face run::

    vasajax export --renderer-export checkpoints/liveportrait --motion-run runs/motion-lp \
        --motion-data data/motion-lp --out checkpoints/vasa-on-liveportrait

which copies the renderer export's files and adds ``motion.safetensors`` + ``config.json`` (motion, audio,
diffusion, conditions); its manifest names ``{"renderer": "liveportrait", "motion": "vasa", "audio": "logmel",
"motion_space": "liveportrait"}`` and ``vasajax animate --checkpoint`` loads it entry by entry.

A face run of another trainable renderer (``train-face --renderer liveportrait``) is written through its entry
(``RendererTraining.export_files``: for LivePortrait, the files ``vasajax convert liveportrait`` writes); alone it
makes a renderer-only export, the input of ``encode-dataset --renderer``::

    vasajax export --face-run runs/lp --out checkpoints/lp-trained

and with a motion run trained on that renderer's motion, one export of both (as ``--renderer-export`` does).

It records in ``manifest.json`` where the weights came from: both runs' configs, final step and last logged
metrics, the motion data's audio features and dimension names, and the training data each run read. The audio
feature config is taken from the motion data's manifest (the DiT only understands the features it was trained
on); the default head distance (``conditions.distance``) is the training data's mean, so a portrait is animated
at the framing the model saw most.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from vasajax import checkpoint_export as ce
from vasajax import config_io, params
from vasajax import export_format as ef
from vasajax.data import clips
from vasajax.errors import UserError
from vasajax.facetrack.crop import CropConfig
from vasajax.load import stage_names
from vasajax.motion.audio import AudioConfig, feature_dim
from vasajax.motion.training import sampling_defaults
from vasajax.train import encode_dataset as ed
from vasajax.train import face as face_train
from vasajax.train import motion as motion_train
from vasajax.zoo import export as zoo_export


def _last_metrics(workdir: Path) -> dict[str, Any]:
    """The last line of a run's ``metrics.jsonl`` (empty when there is none)."""
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return {}
    last = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                last = json.loads(line)
            except json.JSONDecodeError:
                continue
    return {k: v for k, v in last.items() if k != "time"}


def _mean_distance(motion_data: Path, max_records: int = 200) -> float | None:
    """Mean per-frame head distance over (up to ``max_records``) motion records."""

    manifest = clips.read_manifest(motion_data)
    vals = []
    for k, rec in enumerate(clips.read_records(manifest, motion_data)):
        if k >= max_records:
            break
        vals.append(np.asarray(rec.distance_T, np.float64).ravel())
    if not vals:
        return None
    v = np.concatenate(vals)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


def _portable_paths(*inputs: Path):
    """``path → str`` for the manifest without this machine's layout: relative to the working directory when
    inside it, else relative to the inputs' common folder, written ``WORK_DIR/...`` (``make_demo.sh``'s name)."""
    cwd = Path.cwd().resolve()
    absolute = [Path(p).resolve() for p in inputs]
    root = Path(os.path.commonpath([str(p) for p in absolute])) if absolute else cwd
    if root in absolute:  # one input contains the others: name the folder above it
        root = root.parent

    def portable(path: Path) -> str:
        full = Path(path).resolve()
        for base, prefix in ((cwd, ""), (root, "WORK_DIR/")):
            if full.is_relative_to(base):
                return prefix + full.relative_to(base).as_posix()
        return full.name

    return portable


def _warm_start_chain(run: Path) -> list[Path]:
    """The runs ``run`` was warm-started from (``train-face --init-from``), nearest first, while their folders
    still hold a config.json."""
    chain: list[Path] = []
    while True:
        cfg_path = run / "config.json"
        parent = json.loads(cfg_path.read_text()).get("init_from") if cfg_path.exists() else None
        if not parent or Path(parent) in chain or not (Path(parent) / "config.json").exists():
            return chain
        run = Path(parent)
        chain.append(run)


def _run_facts(workdir: Path, portable) -> dict[str, Any]:
    return {"workdir": portable(workdir), "config": json.loads((workdir / "config.json").read_text()),
            "last_metrics": _last_metrics(workdir)}  # fmt: skip


def export_renderer(face_run: str | Path, out: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
    """A renderer-only export of a face run (EMA weights of its latest checkpoint), written by its renderer entry
    (``RendererTraining.export_files``); ``RENDERERS`` loads it, ``encode-dataset --renderer`` reads motion with it."""
    face_run = Path(face_run)
    entry = face_train.load_config(face_run).entry
    model = face_train.load_model(face_run)
    files = entry.export_files(model.cfg, model)
    stages = {"renderer": entry.stage_name, "motion_space": entry.motion_space}
    facts = {"face_run": _run_facts(face_run, _portable_paths(face_run)), **dict(extra or {})}
    return zoo_export.write_export(out, files, stages, facts)


def export_runs(
    face_run: str | Path,
    motion_run: str | Path,
    motion_data: str | Path,
    out: str | Path,
    *,
    sampling_steps: int | None = None,
    cfg_audio: float | None = None,
    cfg_gaze: float | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the export of a face run and a motion run (EMA weights of their latest checkpoints) to ``out``."""

    face_run, motion_run, motion_data = Path(face_run), Path(motion_run), Path(motion_data)
    if face_train.load_config(face_run).renderer != "vasa":  # another renderer: its export, then the motion part
        with tempfile.TemporaryDirectory(prefix="vasajax-renderer-") as tmp:
            renderer_export = export_renderer(face_run, Path(tmp) / "renderer")
            return export_with_renderer(
                renderer_export,
                motion_run,
                motion_data,
                out,
                sampling_steps=sampling_steps,
                cfg_audio=cfg_audio,
                cfg_gaze=cfg_gaze,
                extra={"face_run": _run_facts(face_run, _portable_paths(face_run, motion_run)), **dict(extra or {})},
            )
    face_model = face_train.load_model(face_run)
    motion_model = motion_train.load_model(motion_run)
    run_cfg = motion_train.load_config(motion_run)
    if face_model.cfg.motion_dim != motion_model.cfg.motion_dim:
        raise UserError(
            f"the face run's motion latent has {face_model.cfg.motion_dim} dims, the motion run's DiT "
            f"{motion_model.cfg.motion_dim}: the motion run was not trained on this face run's latents"
        )
    manifest = clips.read_manifest(motion_data)
    if manifest.get("kind") != "motion":
        kind = manifest.get("kind")
        raise UserError(f"{motion_data} holds {kind} records; --motion-data needs encode-dataset output")
    data_cfg = manifest.get("config") or {}
    audio = config_io.from_dict(AudioConfig, data_cfg.get("audio") or {}, what="motion data audio")
    if feature_dim(audio) != motion_model.cfg.audio_dim:
        raise UserError(
            f"{motion_data}'s audio features have {feature_dim(audio)} values per frame, the motion run's DiT "
            f"expects {motion_model.cfg.audio_dim}: pass the motion data the motion run trained on"
        )
    conditions: dict[str, Any] = {}
    dist = _mean_distance(motion_data)
    if dist is not None:
        conditions["distance"] = round(dist, 5)

    chain = _warm_start_chain(face_run)
    portable = _portable_paths(face_run, motion_run, motion_data, *chain)

    def run_facts(workdir: Path) -> dict[str, Any]:
        cfg = json.loads((workdir / "config.json").read_text())
        facts = {"workdir": portable(workdir), "config": cfg, "last_metrics": _last_metrics(workdir)}
        if cfg.get("init_from"):  # a warm start: record the run it started from, and that run's, ...
            parent = Path(cfg["init_from"])
            cfg["init_from"] = portable(parent)
            if parent in chain:
                facts["init_from"] = run_facts(parent)
        return facts

    clip_data = data_cfg.get("clip_data")
    facts = {
        "face_run": run_facts(face_run),
        "motion_run": run_facts(motion_run),
        "motion_data": {
            "path": portable(motion_data),
            "motion_names": manifest.get("motion_names"),
            "totals": manifest.get("totals"),
            "clip_data": portable(Path(clip_data)) if clip_data and Path(clip_data).is_absolute() else clip_data,
        },
        **dict(extra or {}),
    }
    if run_cfg.generator != "vasa":  # another trainable generator on this face run's motion (a mixed export)
        sampling = dict(steps=sampling_steps, cfg_audio=cfg_audio, cfg_gaze=cfg_gaze)
        pose_dim = face_model.cfg.pose_dim
        wfiles, sections = run_cfg.entry.export_part(motion_model, run_cfg.diffusion, pose_dim, **sampling)
        cfg_json = {"format": ef.FORMAT, "face": config_io.to_dict(face_model.cfg),
                    "crop": config_io.to_dict(CropConfig(size=face_model.cfg.image_size)),
                    "audio": config_io.to_dict(audio), "conditions": conditions, **sections}  # fmt: skip
        files = {ef.FACE_FILE: (ef.model_tensors(face_model), {"model": "face"}), **wfiles, ef.CONFIG_FILE: cfg_json}
        stages = {"renderer": "vasa", "motion": run_cfg.entry.stage_name, "audio": audio.kind, "motion_space": "vasa"}
        return ef.write_folder(Path(out).expanduser(), files, {"stages": stages, **facts})
    diffusion = sampling_defaults(run_cfg.diffusion, sampling_steps, cfg_audio, cfg_gaze)
    return ce.save_export(
        out,
        face_model,
        motion_model,
        configs={
            "audio": audio,
            "crop": CropConfig(size=face_model.cfg.image_size),
            "diffusion": diffusion,
            "conditions": conditions,
        },
        manifest_extra=facts,
    )


def _motion_data(motion_data: Path, motion_model):
    """(manifest, AudioConfig) of a motion run's shards, checked against its DiT."""

    manifest = clips.read_manifest(motion_data)
    if manifest.get("kind") != "motion":
        kind = manifest.get("kind")
        raise UserError(f"{motion_data} holds {kind} records; --motion-data needs encode-dataset output")
    audio = config_io.from_dict(
        AudioConfig, (manifest.get("config") or {}).get("audio") or {}, what="motion data audio"
    )
    if feature_dim(audio) != motion_model.cfg.audio_dim:
        raise UserError(
            f"{motion_data}'s audio features have {feature_dim(audio)} values per frame, the motion run's DiT "
            f"expects {motion_model.cfg.audio_dim}: pass the motion data the motion run trained on"
        )
    return manifest, audio


def export_with_renderer(
    renderer_export: str | Path,
    motion_run: str | Path,
    motion_data: str | Path,
    out: str | Path,
    *,
    sampling_steps: int | None = None,
    cfg_audio: float | None = None,
    cfg_gaze: float | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """A motion run (EMA weights, latest checkpoint) trained on ``renderer_export``'s motion, written with that
    renderer's files into one export (see the module docstring). The motion data must come from
    ``encode-dataset --renderer`` with a renderer of the same motion space and size."""

    renderer_export, motion_run, motion_data = Path(renderer_export), Path(motion_run), Path(motion_data)
    renderer = ed.load_renderer(renderer_export)
    r_manifest = ce.verify_export(renderer_export, required=())
    motion_model = motion_train.load_model(motion_run)
    manifest, audio = _motion_data(motion_data, motion_model)
    space = manifest.get("motion_space") or "vasa"
    if space != renderer.motion_space or motion_model.cfg.motion_dim != renderer.motion_dim:
        raise UserError(
            f"the motion run's DiT makes {motion_model.cfg.motion_dim}-dim motion in space {space!r} "
            f"({motion_data}), the renderer {renderer.name} reads {renderer.motion_dim}-dim "
            f"{renderer.motion_space!r}: encode the clips with encode-dataset --renderer {renderer_export}"
        )
    run_cfg = motion_train.load_config(motion_run)
    conditions: dict[str, Any] = {}
    dist = _mean_distance(motion_data)
    if dist is not None:
        conditions["distance"] = round(dist, 5)
    files: dict[str, Any] = {}
    for name in r_manifest["files"]:
        if name in (ce.MOTION_FILE, ce.CONFIG_FILE, ce.FACE_FILE):
            raise UserError(f"{renderer_export} already holds {name}: pass a renderer-only export (vasajax convert)")
        if name.endswith(".safetensors"):
            tensors, meta = params.read_safetensors(renderer_export / name)
            files[name] = (tensors, {k: v for k, v in meta.items() if k != "format"})
        else:
            files[name] = zoo_export.read_json(renderer_export, name)
    sampling = dict(steps=sampling_steps, cfg_audio=cfg_audio, cfg_gaze=cfg_gaze)
    wfiles, sections = run_cfg.entry.export_part(motion_model, run_cfg.diffusion, renderer.pose_dim, **sampling)
    cfg_json = {"format": ef.FORMAT, "audio": config_io.to_dict(audio), "conditions": conditions, **sections}
    files |= {**wfiles, ce.CONFIG_FILE: cfg_json}
    portable = _portable_paths(renderer_export, motion_run, motion_data)
    stages = {"renderer": stage_names(r_manifest)["renderer"], "motion": run_cfg.entry.stage_name, "audio": audio.kind,
              "motion_space": renderer.motion_space}  # fmt: skip
    provenance = {
        "renderer_export": {"path": portable(renderer_export), "provenance": r_manifest.get("provenance")},
        "motion_run": _run_facts(motion_run, portable),
        "motion_data": {
            "path": portable(motion_data),
            "motion_names": manifest.get("motion_names"),
            "totals": manifest.get("totals"),
        },  # fmt: skip
        **dict(extra or {}),
    }
    return zoo_export.write_export(out, files, stages, provenance)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vasajax export", description=__doc__.split("\n")[0])
    face = p.add_mutually_exclusive_group(required=True)
    face.add_argument("--face-run", help="train-face run folder")
    face.add_argument(
        "--renderer-export",
        metavar="EXPORT",
        help="instead of a face run: a renderer-only export (vasajax convert liveportrait) whose motion the motion "
        "run was trained on (encode-dataset --renderer)",
    )
    p.add_argument(
        "--motion-run",
        help="train-motion run folder (without it, a face run of any renderer makes a renderer-only export)",
    )
    p.add_argument("--motion-data", help="the motion shards the motion run trained on (with --motion-run)")
    p.add_argument("--out", required=True, help="export folder to write (replaced atomically if it exists)")
    p.add_argument("--steps", type=int, help="default diffusion sampling steps of the export")
    p.add_argument("--cfg-audio", type=float, help="default audio CFG scale λ_A (default: the motion run's)")
    p.add_argument("--cfg-gaze", type=float, help="default gaze CFG scale λ_g (default: the motion run's)")
    p.add_argument("--note", action="append", default=[], help="free text recorded in the manifest (repeatable)")
    p.add_argument("--facts", help="JSON file of extra facts for the manifest (commands, evaluation, ...)")
    return p


def cli_main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    extra: dict[str, Any] = {}
    if args.note:
        extra["notes"] = args.note
    if args.facts:
        try:
            extra.update(json.loads(Path(args.facts).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"--facts {args.facts}: {e}") from None
    if args.motion_run is None:
        if args.face_run is None:
            raise UserError("--renderer-export needs --motion-run and --motion-data (it is already a renderer export)")
        out = export_renderer(args.face_run, args.out, extra=extra)
        print(f"wrote {out} (renderer only)")
        return 0
    if args.motion_data is None:
        raise UserError("--motion-run needs --motion-data: the motion shards it trained on")
    export, face = export_runs, args.face_run
    if args.renderer_export:
        export, face = export_with_renderer, args.renderer_export
    out = export(
        face,
        args.motion_run,
        args.motion_data,
        args.out,
        sampling_steps=args.steps,
        cfg_audio=args.cfg_audio,
        cfg_gaze=args.cfg_gaze,
        extra=extra,
    )
    files = json.loads((out / "manifest.json").read_text())["files"]
    total = sum(f["bytes"] for f in files.values())
    print(f"wrote {out} ({total / 1e6:.1f} MB: {', '.join(sorted(files))})")
    return 0
