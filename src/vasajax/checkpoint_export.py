"""Inference exports: what ``vasajax animate`` loads (DESIGN.md "Checkpoints"; the models of VASA-1 §3.1–3.2).

Training checkpoints (orbax, with optimiser state and data-iterator position) are for resuming runs. An
*export* is what a user downloads: the weights that inference needs and nothing else, in a folder ::

    face.safetensors     stage-1 face latent model: nnx.Param leaves in bfloat16
    motion.safetensors   stage-2 motion DiT: nnx.Param leaves in bfloat16, NormStats in float32
    config.json          {"format", "face", "motion", "audio", "crop", "diffusion", "conditions"}
    manifest.json        {"format", "files": {name: {"sha256", "bytes"}}, ...manifest_extra}

Weights are safetensors files (no pickle), written and read with the ``safetensors`` library through
``vasajax.params`` (the one codec for exports and converted foreign weights). Tensor names
are the model's ``nnx`` state paths joined with ``/`` (``g2d/blocks/0/conv1/kernel``). Parameters are
saved in bfloat16 (half the bytes; inference computes in the config's dtype after a cast back to float32);
the DiT's normalisation statistics stay float32 because they de-normalise every generated frame.

``config.json`` holds every config as its dataclass fields, so the models are rebuilt exactly: ``face``
(``FaceConfig``), ``motion`` (``MotionConfig``), ``audio`` (``AudioConfig``), ``crop`` (``CropConfig``),
``diffusion`` (``DiffusionConfig``: the sampling defaults: steps, CFG scales) and ``conditions`` (optional
defaults for the control signals, e.g. ``{"distance": 0.21, "emotions": {"happy": [...52...]}}``).

A motion DiT can also ship beside another renderer (``vasajax export --renderer-export``): such an export has
the renderer's own files, ``motion.safetensors`` and a ``config.json`` with only ``motion``/``audio``/``diffusion``/
``conditions``; ``load_motion_part`` reads just that part (``VasaMotionGenerator.load``).

``save_export`` writes one from trained models; ``random_export`` writes one with random weights for any
configs without building the models (tests, speed benchmarks). ``load_export`` checks, and explains in one
line (``UserError``): a missing file, a file whose sha256 or size differs from the manifest (damaged or
edited), an unknown format, a config field this version does not know, a tensor missing, extra or of another
shape than the config builds (names the tensor and both shapes), stage 1 and 2 disagreeing on the motion
latent size, and, with ``expect=``, a config that differs from the one the caller needs (names the field and
both values).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import ml_dtypes
import numpy as np
from flax import nnx

from vasajax import config_io
from vasajax.errors import UserError
from vasajax.face.config import FaceConfig
from vasajax.face.model import FaceLatentModel
from vasajax.facetrack.crop import CropConfig
from vasajax.motion.audio import AudioConfig
from vasajax.motion.diffusion import DiffusionConfig
from vasajax.motion.dit import MotionConfig, MotionDiT
from vasajax.params import read_safetensors, write_safetensors

FORMAT = "vasajax-export/1"
"""Format tag in ``config.json``, ``manifest.json`` and each weight file's metadata."""
FACE_FILE, MOTION_FILE, CONFIG_FILE, MANIFEST_FILE = (
    "face.safetensors",
    "motion.safetensors",
    "config.json",
    "manifest.json",
)
CONFIG_CLASSES: dict[str, type] = {
    "face": FaceConfig,
    "motion": MotionConfig,
    "audio": AudioConfig,
    "crop": CropConfig,
    "diffusion": DiffusionConfig,
}
"""config.json sections and the dataclass each one rebuilds."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Export:
    """A loaded export: both models (float32 params, ready for ``nnx.split``) and every config."""

    face_model: FaceLatentModel
    """Stage 1: encoders, warps, G3D, G2D."""
    motion_model: MotionDiT
    """Stage 2: the motion DiT with its normalisation statistics."""
    face: FaceConfig
    """Config of ``face_model``."""
    motion: MotionConfig
    """Config of ``motion_model``."""
    audio: AudioConfig
    """How audio becomes the DiT's per-frame features."""
    crop: CropConfig
    """The face crop the models were trained on."""
    diffusion: DiffusionConfig
    """Sampling defaults (steps, sampler, CFG scales)."""
    conditions: dict
    """Optional control defaults (``distance``, ``gaze``, ``emotions``); may be empty."""
    manifest: dict
    """``manifest.json`` (file hashes plus whatever the exporter recorded: data, steps, metrics)."""
    path: Path
    """The export folder."""


# ------------------------------------------------------------------------------------------ safetensors


# ------------------------------------------------------------------------------------------ state ⇄ flat


def _flat_state(model: nnx.Module) -> list[tuple[str, nnx.Variable]]:
    """(``a/b/0/kernel``, variable) for every variable of the model (abstract or concrete), sorted."""
    flat = nnx.to_flat_state(nnx.state(model))
    return sorted(("/".join(str(k) for k in path), var) for path, var in flat)


def model_tensors(model: nnx.Module, param_dtype=ml_dtypes.bfloat16) -> dict[str, np.ndarray]:
    """Flat name → numpy array; ``nnx.Param`` leaves cast to ``param_dtype``, other variables float32."""
    out = {}
    for name, var in _flat_state(model):
        value = np.asarray(jax.device_get(var.get_value()))
        out[name] = value.astype(param_dtype if isinstance(var, nnx.Param) else np.float32)
    return out


def _load_model(make, tensors: Mapping[str, np.ndarray], what: str):
    """Build the model abstractly from its config and fill it from ``tensors``, checking names and shapes."""
    abstract = nnx.eval_shape(make)
    graphdef, state = nnx.split(abstract)
    flat = nnx.to_flat_state(state)
    names = {"/".join(str(k) for k in path) for path, _ in flat}
    missing, extra = sorted(names - set(tensors)), sorted(set(tensors) - names)
    hint = "the weights come from another config (re-export them with this config.json)"
    if missing:
        raise UserError(f"{what}: tensor {missing[0]} is missing ({len(missing)} in all); {hint}")
    if extra:
        raise UserError(f"{what}: unexpected tensor {extra[0]} ({len(extra)} in all); {hint}")
    filled = []
    for path, var in flat:
        name = "/".join(str(k) for k in path)
        want = var.get_value()
        got = tensors[name]
        if tuple(got.shape) != tuple(want.shape):
            raise UserError(
                f"{what}: tensor {name} has shape {tuple(got.shape)} but the config needs {tuple(want.shape)}; {hint}"
            )
        filled.append((path, var.replace(jax.numpy.asarray(got.astype(want.dtype)))))
    return nnx.merge(graphdef, nnx.from_flat_state(filled))


# ------------------------------------------------------------------------------------------ configs


def config_mismatch(have: Any, want: Any) -> str | None:
    """``"field: have X, need Y"`` for the first differing field of two configs of one class, else None."""
    for f in dataclasses.fields(want):
        a, b = getattr(have, f.name), getattr(want, f.name)
        if a != b:
            return f"{f.name}={a!r} in the checkpoint, {b!r} expected"
    return None


# ------------------------------------------------------------------------------------------ save / load


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_export(
    directory: str | os.PathLike,
    face_model: FaceLatentModel,
    motion_model: MotionDiT,
    configs: Mapping[str, Any] | None = None,
    manifest_extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write an export folder (see the module docstring); returns its path.

    ``configs``: ``audio`` (``AudioConfig``, default ``AudioConfig.small()``), ``crop`` (``CropConfig``,
    default: the face model's image size), ``diffusion`` (``DiffusionConfig``, default paper), optional
    ``conditions`` (a JSON-able dict of control defaults). Face and motion configs come from the models.
    ``manifest_extra``: JSON-able facts recorded in ``manifest.json`` (training data, steps, metrics).
    The folder is written under a temporary name and renamed into place, so it is never half-written;
    an existing export at ``directory`` is replaced.
    """
    return _write_export(
        directory, face_model.cfg, motion_model.cfg, model_tensors(face_model), model_tensors(motion_model),
        configs, manifest_extra,
    )  # fmt: skip


def random_tensors(make, seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights for the model ``make()`` builds, without building it (numpy; seconds even for paper).

    LeCun-normal kernels (std 1/√fan_in), zero biases, unit norm scales, N(0, 0.02) for other parameters
    (null embeddings, positional tables), identity normalisation statistics. Unlike the models' own
    initialisation nothing is zero-initialised, so outputs depend on every input (tests, benchmarks).
    """
    rng = np.random.default_rng(seed)
    out = {}
    for name, var in _flat_state(nnx.eval_shape(make)):
        shape = tuple(var.get_value().shape)
        leaf = name.rsplit("/", 1)[-1]
        if not isinstance(var, nnx.Param):
            a = np.ones(shape) if leaf.endswith("std") else np.zeros(shape)
            out[name] = a.astype(np.float32)
            continue
        if leaf == "kernel":
            a = rng.standard_normal(shape) / np.sqrt(max(1, int(np.prod(shape[:-1]))))
        elif leaf == "bias":
            a = np.zeros(shape)
        elif leaf == "scale":
            a = np.ones(shape)
        else:
            a = 0.02 * rng.standard_normal(shape)
        out[name] = a.astype(ml_dtypes.bfloat16)
    return out


def random_export(
    directory: str | os.PathLike,
    face: FaceConfig,
    motion: MotionConfig,
    configs: Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    manifest_extra: Mapping[str, Any] | None = None,
) -> Path:
    """An export with random weights (``random_tensors``) for the given configs: tests and speed benchmarks."""
    return _write_export(
        directory, face, motion,
        random_tensors(lambda: FaceLatentModel(face, rngs=nnx.Rngs(0)), seed),
        random_tensors(lambda: MotionDiT(motion, rngs=nnx.Rngs(0)), seed + 1),
        configs, {"weights": f"random (seed {seed})", **dict(manifest_extra or {})},
    )  # fmt: skip


def _write_export(directory, face_cfg, motion_cfg, face_tensors, motion_tensors, configs, manifest_extra) -> Path:
    configs = dict(configs or {})
    unknown = set(configs) - {"audio", "crop", "diffusion", "conditions"}
    if unknown:
        raise ValueError(f"save_export: unknown configs {sorted(unknown)}")
    if face_cfg.motion_dim != motion_cfg.motion_dim:
        raise UserError(
            f"face model motion latent has {face_cfg.motion_dim} dims but the motion DiT {motion_cfg.motion_dim}; "
            "train stage 2 on this stage-1 model's motion latents"
        )
    audio_cfg = configs.get("audio") or AudioConfig.small()
    crop_cfg = configs.get("crop") or CropConfig(size=face_cfg.image_size)
    cfg_json = {
        "format": FORMAT,
        "face": config_io.to_dict(face_cfg),
        "motion": config_io.to_dict(motion_cfg),
        "audio": config_io.to_dict(audio_cfg),
        "crop": config_io.to_dict(crop_cfg),
        "diffusion": config_io.to_dict(configs.get("diffusion") or DiffusionConfig.paper()),
        "conditions": dict(configs.get("conditions") or {}),
    }
    dest = Path(directory)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        meta = {"format": FORMAT}
        write_safetensors(tmp / FACE_FILE, face_tensors, {**meta, "model": "face"})
        write_safetensors(tmp / MOTION_FILE, motion_tensors, {**meta, "model": "motion"})
        (tmp / CONFIG_FILE).write_text(json.dumps(cfg_json, indent=1) + "\n")
        files = {
            name: {"sha256": _sha256(tmp / name), "bytes": (tmp / name).stat().st_size}
            for name in (FACE_FILE, MOTION_FILE, CONFIG_FILE)
        }
        manifest = {**dict(manifest_extra or {}), "format": FORMAT, "files": files}
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
        os.chmod(tmp, 0o755)
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old")
            os.replace(dest, old)
            os.replace(tmp, dest)
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
        else:
            os.replace(tmp, dest)
    except BaseException:
        for f in tmp.glob("*"):
            f.unlink()
        tmp.rmdir()
        raise
    return dest


def _read_json(path: Path, what: str) -> dict:
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({type(e).__name__}); the {what} is damaged") from None
    if not isinstance(d, dict):
        raise UserError(f"{path} is not a JSON object; the {what} is damaged")
    return d


def verify_export(directory: str | os.PathLike, required: Sequence[str] | None = None) -> dict:
    """Check every file against ``manifest.json`` (presence, size, sha256); returns the manifest. ``required``:
    the files the export must list (default: exactly VASA-1's three; other stages' exports name their own)."""
    d = Path(directory).expanduser()
    if not d.is_dir():
        raise UserError(f"checkpoint folder not found: {d}; pass --checkpoint DIR with an exported model")
    if not (d / MANIFEST_FILE).is_file():
        raise UserError(f"{d} is not a vasajax export (no {MANIFEST_FILE}); export one with save_export")
    manifest = _read_json(d / MANIFEST_FILE, "checkpoint manifest")
    if manifest.get("format") != FORMAT:
        raise UserError(f"{d}: export format {manifest.get('format')!r} is not {FORMAT!r}; re-export the model")
    files = manifest.get("files")
    need = set(required) if required is not None else {FACE_FILE, MOTION_FILE, CONFIG_FILE}
    if not isinstance(files, dict) or not need <= set(files) or (required is None and set(files) != need):
        raise UserError(f"{d}/{MANIFEST_FILE} does not list the export's files; the checkpoint is damaged")
    for name, info in files.items():
        p = d / name
        if not p.is_file():
            raise UserError(f"checkpoint file missing: {p}; re-download or re-export the checkpoint")
        if p.stat().st_size != info.get("bytes") or _sha256(p) != info.get("sha256"):
            raise UserError(
                f"checkpoint file {p} does not match its manifest (sha256/size differ): it is damaged or was "
                "changed; re-download or re-export the checkpoint"
            )
    return manifest


@dataclasses.dataclass(frozen=True, kw_only=True)
class MotionPart:
    """The stage-2 half of an export: the motion DiT and the configs it samples with (``load_motion_part``)."""

    motion_model: MotionDiT
    motion: MotionConfig
    audio: AudioConfig
    diffusion: DiffusionConfig
    conditions: dict
    manifest: dict
    path: Path


MOTION_SECTIONS = ("motion", "audio", "diffusion")
"""The config.json sections a motion part needs (a mixed export has no ``face`` / ``crop``: its renderer's own)."""


def _check_audio(d: Path, audio_cfg: AudioConfig, motion_cfg: MotionConfig) -> None:
    if audio_cfg.kind == "logmel" and 2 * audio_cfg.n_mels != motion_cfg.audio_dim:
        raise UserError(
            f"checkpoint {d}: audio features have {2 * audio_cfg.n_mels} dims, the motion DiT expects "
            f"motion.audio_dim={motion_cfg.audio_dim}; the audio config does not belong to this model"
        )


def load_motion_part(directory: str | os.PathLike, manifest: Mapping[str, Any] | None = None) -> MotionPart:
    """Only the motion DiT of an export: ``motion.safetensors`` and config.json's ``motion``/``audio``/
    ``diffusion``/``conditions``, for exports that pair VASA's DiT with another renderer (no ``face.safetensors``).
    ``manifest``: the already verified manifest (else every listed file is checked here)."""
    d = Path(directory).expanduser()
    if manifest is None:
        manifest = verify_export(d, required=(MOTION_FILE, CONFIG_FILE))
    raw = _read_json(d / CONFIG_FILE, "checkpoint config")
    missing = [s for s in MOTION_SECTIONS if s not in raw]
    if missing:
        raise UserError(f"{d}/{CONFIG_FILE} has no '{missing[0]}' section; the checkpoint is damaged")
    cfgs = {s: config_io.from_dict(CONFIG_CLASSES[s], raw[s], what=f"config.json: {s}") for s in MOTION_SECTIONS}
    motion_cfg, audio_cfg = cfgs["motion"], cfgs["audio"]
    _check_audio(d, audio_cfg, motion_cfg)
    if not (d / MOTION_FILE).is_file():
        raise UserError(f"checkpoint file missing: {d / MOTION_FILE}; re-download or re-export the checkpoint")
    motion_t, _ = read_safetensors(d / MOTION_FILE)
    motion_model = _load_model(lambda: MotionDiT(motion_cfg, rngs=nnx.Rngs(0)), motion_t, f"{d}/{MOTION_FILE}")
    return MotionPart(
        motion_model=motion_model, motion=motion_cfg, audio=audio_cfg, diffusion=cfgs["diffusion"],
        conditions=dict(raw.get("conditions") or {}), manifest=dict(manifest), path=d,
    )  # fmt: skip


def motion_part_files(motion_model: MotionDiT, configs: Mapping[str, Any]) -> dict[str, Any]:
    """``motion.safetensors`` (tensors, metadata) and ``config.json`` (dict) of a motion part, in the layout
    ``zoo.export.write_export`` writes; ``configs``: ``audio``, ``diffusion`` (default paper), ``conditions``."""
    cfg_json = {
        "format": FORMAT,
        "motion": config_io.to_dict(motion_model.cfg),
        "audio": config_io.to_dict(configs["audio"]),
        "diffusion": config_io.to_dict(configs.get("diffusion") or DiffusionConfig.paper()),
        "conditions": dict(configs.get("conditions") or {}),
    }
    _check_audio(Path("<new export>"), configs["audio"], motion_model.cfg)
    return {MOTION_FILE: (model_tensors(motion_model), {"model": "motion"}), CONFIG_FILE: cfg_json}


def load_export(directory: str | os.PathLike, *, expect: Mapping[str, Any] | None = None) -> Export:
    """Load and check an export folder (see the module docstring for every check).

    ``expect``: optional ``{"face": FaceConfig, "motion": MotionConfig, ...}`` the caller needs; a differing
    field raises ``UserError`` naming it.
    """
    d = Path(directory).expanduser()
    manifest = verify_export(d)
    raw = _read_json(d / CONFIG_FILE, "checkpoint config")
    missing = [s for s in CONFIG_CLASSES if s not in raw]
    if missing:
        raise UserError(f"{d}/{CONFIG_FILE} has no '{missing[0]}' section; the checkpoint is damaged")
    cfgs = {s: config_io.from_dict(cls, raw[s], what=f"config.json: {s}") for s, cls in CONFIG_CLASSES.items()}
    for section, want in (expect or {}).items():
        if section not in cfgs:
            raise ValueError(f"load_export: unknown config section {section!r}")
        why = config_mismatch(cfgs[section], want)
        if why:
            raise UserError(f"checkpoint {d} has another {section} config: {why}; use a matching checkpoint")
    face_cfg, motion_cfg, audio_cfg = cfgs["face"], cfgs["motion"], cfgs["audio"]
    if face_cfg.motion_dim != motion_cfg.motion_dim:
        raise UserError(
            f"checkpoint {d}: face motion latent has {face_cfg.motion_dim} dims, the motion DiT "
            f"{motion_cfg.motion_dim}; its two stages do not belong together"
        )
    _check_audio(d, audio_cfg, motion_cfg)
    face_t, _ = read_safetensors(d / FACE_FILE)
    motion_t, _ = read_safetensors(d / MOTION_FILE)
    face_model = _load_model(lambda: FaceLatentModel(face_cfg, rngs=nnx.Rngs(0)), face_t, f"{d}/{FACE_FILE}")
    motion_model = _load_model(lambda: MotionDiT(motion_cfg, rngs=nnx.Rngs(0)), motion_t, f"{d}/{MOTION_FILE}")
    conditions = raw.get("conditions") or {}
    return Export(
        face_model=face_model,
        motion_model=motion_model,
        face=face_cfg,
        motion=motion_cfg,
        audio=audio_cfg,
        crop=cfgs["crop"],
        diffusion=cfgs["diffusion"],
        conditions=dict(conditions),
        manifest=manifest,
        path=d,
    )
