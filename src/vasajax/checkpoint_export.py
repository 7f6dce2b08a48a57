"""Inference exports: what ``vasajax animate`` loads (DESIGN.md "Checkpoints"; the models of VASA-1 §3.1–3.2).

The folder format (file names, ``manifest.json``, ``config.json`` sections, bfloat16 safetensors) is described and
checked in :mod:`vasajax.export_format`; each stage reads its own part of a folder (``vasajax.face.export_part``:
``face.safetensors``; ``vasajax.motion.export_part``: ``motion.safetensors``, ``load_motion_part`` for a DiT that
ships beside another renderer). This module is the whole VASA-1 export built on them, and the one import for its
callers (training, loading, the zoo, notebooks): it re-exports the format's names and the motion part's.

``save_export`` writes one from trained models; ``random_export`` writes one with random weights for any
configs without building the models (tests, speed benchmarks). ``load_export`` checks, and explains in one
line (``UserError``): a missing file, a file whose sha256 or size differs from the manifest (damaged or
edited), an unknown format, a config field this version does not know, a tensor missing, extra or of another
shape than the config builds (names the tensor and both shapes), stage 1 and 2 disagreeing on the motion
latent size, and, with ``expect=``, a config that differs from the one the caller needs (names the field and
both values). ``VasaRendererEntry`` is the renderer registry's ``"vasa"`` entry: the face part and the crop, the
one section ``vasajax.face`` cannot read itself (``CropConfig`` is ``facetrack``'s).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
from flax import nnx

from vasajax import config_io
from vasajax import export_format as ef
from vasajax.errors import UserError
from vasajax.export_format import (
    CONFIG_FILE,
    FACE_FILE,
    FORMAT,
    MANIFEST_FILE,
    MOTION_FILE,
    config_mismatch,
    model_tensors,
    verify_export,
)
from vasajax.face.config import FaceConfig
from vasajax.face.export_part import load_face_model, load_face_part
from vasajax.face.model import FaceLatentModel
from vasajax.face.stage import VasaRenderer
from vasajax.facetrack.crop import CropConfig
from vasajax.motion.audio import AudioConfig
from vasajax.motion.diffusion import DiffusionConfig
from vasajax.motion.dit import MotionConfig, MotionDiT
from vasajax.motion.export_part import (
    MOTION_SECTIONS,
    MotionPart,
    check_audio,
    load_motion_model,
    load_motion_part,
)
from vasajax.params import read_safetensors, write_safetensors

__all__ = [
    "CONFIG_CLASSES",
    "CONFIG_FILE",
    "FACE_FILE",
    "FORMAT",
    "MANIFEST_FILE",
    "MOTION_FILE",
    "MOTION_SECTIONS",
    "Export",
    "MotionPart",
    "VasaRendererEntry",
    "config_mismatch",
    "load_crop",
    "load_export",
    "load_motion_part",
    "model_tensors",
    "random_export",
    "random_tensors",
    "read_safetensors",
    "save_export",
    "verify_export",
    "write_safetensors",
]

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


# ------------------------------------------------------------------------------------------ save


def save_export(
    directory: str | os.PathLike,
    face_model: FaceLatentModel,
    motion_model: MotionDiT,
    configs: Mapping[str, Any] | None = None,
    manifest_extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write an export folder (see ``vasajax.export_format``); returns its path.

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
    for name, var in ef.flat_state(nnx.eval_shape(make)):
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
    files = {
        FACE_FILE: (face_tensors, {"model": "face"}),
        MOTION_FILE: (motion_tensors, {"model": "motion"}),
        CONFIG_FILE: _config_json(face_cfg, motion_cfg, configs),
    }
    return ef.write_folder(directory, files, manifest_extra)


def _config_json(face_cfg: FaceConfig, motion_cfg: MotionConfig, configs: Mapping[str, Any]) -> dict:
    """config.json of a VASA export: every section, defaults filled in (see ``save_export``)."""
    return {
        "format": FORMAT,
        "face": config_io.to_dict(face_cfg),
        "motion": config_io.to_dict(motion_cfg),
        "audio": config_io.to_dict(configs.get("audio") or AudioConfig.small()),
        "crop": config_io.to_dict(configs.get("crop") or CropConfig(size=face_cfg.image_size)),
        "diffusion": config_io.to_dict(configs.get("diffusion") or DiffusionConfig.paper()),
        "conditions": dict(configs.get("conditions") or {}),
    }


# ------------------------------------------------------------------------------------------ load


def load_export(directory: str | os.PathLike, *, expect: Mapping[str, Any] | None = None) -> Export:
    """Load and check an export folder (see the module docstring for every check).

    ``expect``: optional ``{"face": FaceConfig, "motion": MotionConfig, ...}`` the caller needs; a differing
    field raises ``UserError`` naming it. Every config is checked before either part's weights are read.
    """
    d = Path(directory).expanduser()
    manifest = verify_export(d)
    raw = ef.read_config(d)
    cfgs = ef.config_sections(d, raw, CONFIG_CLASSES)
    _check_expected(d, cfgs, expect or {})
    face_cfg, motion_cfg, audio_cfg = cfgs["face"], cfgs["motion"], cfgs["audio"]
    if face_cfg.motion_dim != motion_cfg.motion_dim:
        raise UserError(
            f"checkpoint {d}: face motion latent has {face_cfg.motion_dim} dims, the motion DiT "
            f"{motion_cfg.motion_dim}; its two stages do not belong together"
        )
    check_audio(d, audio_cfg, motion_cfg)
    return Export(
        face_model=load_face_model(d, face_cfg),
        motion_model=load_motion_model(d, motion_cfg),
        face=face_cfg,
        motion=motion_cfg,
        audio=audio_cfg,
        crop=cfgs["crop"],
        diffusion=cfgs["diffusion"],
        conditions=dict(raw.get("conditions") or {}),
        manifest=manifest,
        path=d,
    )


def _check_expected(d: Path, cfgs: Mapping[str, Any], expect: Mapping[str, Any]) -> None:
    for section, want in expect.items():
        if section not in cfgs:
            raise ValueError(f"load_export: unknown config section {section!r}")
        why = config_mismatch(cfgs[section], want)
        if why:
            raise UserError(f"checkpoint {d} has another {section} config: {why}; use a matching checkpoint")


def load_crop(directory: str | os.PathLike) -> CropConfig:
    """config.json's ``crop``: how photos are cut to what the export's renderer was trained on."""
    d = Path(directory).expanduser()
    return ef.config_sections(d, ef.read_config(d), {"crop": CropConfig})["crop"]


class VasaRendererEntry:
    """Renderer entry ``"vasa"`` of ``stages.RENDERERS``: ``load`` gives a ``VasaRenderer`` from an export's face
    part and crop, without the motion DiT (``vasajax.face`` reads the face part; the crop is read here)."""

    name = "vasa"

    @staticmethod
    def load(directory: Path, manifest: Mapping[str, Any]) -> VasaRenderer:
        """The renderer of the export at ``directory``; ``manifest``: the already verified manifest."""
        crop = load_crop(directory)
        return VasaRenderer.from_part(load_face_part(directory, manifest), crop)
