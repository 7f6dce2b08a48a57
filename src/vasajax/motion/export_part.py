"""The stage-2 part of an export folder (``vasajax.export_format``): ``motion.safetensors`` and config.json's
``motion``/``audio``/``diffusion``/``conditions``.

A VASA export holds it beside the face part; a mixed export (``vasajax export --renderer-export``) holds it beside
another renderer's files, with no ``face.safetensors`` and no ``face``/``crop`` sections. ``load_motion_part`` reads
just this part (``VasaMotionGenerator.load``); ``motion.training.VasaMotionTraining.export_part`` lays it out for a
folder writer.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flax import nnx

from vasajax import export_format as ef
from vasajax.errors import UserError
from vasajax.motion.audio import AudioConfig
from vasajax.motion.diffusion import DiffusionConfig
from vasajax.motion.dit import MotionConfig, MotionDiT

MOTION_CONFIG_CLASSES: dict[str, type] = {"motion": MotionConfig, "audio": AudioConfig, "diffusion": DiffusionConfig}
"""The config.json sections of the motion part and the dataclass each one rebuilds."""
MOTION_SECTIONS = tuple(MOTION_CONFIG_CLASSES)
"""The config.json sections a motion part needs (a mixed export has no ``face`` / ``crop``: its renderer's own)."""


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


def check_audio(d: Path, audio_cfg: AudioConfig, motion_cfg: MotionConfig) -> None:
    """``UserError`` when log-mel features (two slots per frame) do not have the DiT's ``audio_dim``."""
    if audio_cfg.kind == "logmel" and 2 * audio_cfg.n_mels != motion_cfg.audio_dim:
        raise UserError(
            f"checkpoint {d}: audio features have {2 * audio_cfg.n_mels} dims, the motion DiT expects "
            f"motion.audio_dim={motion_cfg.audio_dim}; the audio config does not belong to this model"
        )


def load_motion_model(d: Path, cfg: MotionConfig) -> MotionDiT:
    """The motion DiT ``cfg`` builds, filled from ``motion.safetensors`` (tensor names and shapes checked)."""
    tensors = ef.read_weights(d, ef.MOTION_FILE)
    return ef.load_model(lambda: MotionDiT(cfg, rngs=nnx.Rngs(0)), tensors, f"{d}/{ef.MOTION_FILE}")


def load_motion_part(directory: str | os.PathLike, manifest: Mapping[str, Any] | None = None) -> MotionPart:
    """Only the motion DiT of an export: ``motion.safetensors`` and config.json's ``motion``/``audio``/
    ``diffusion``/``conditions``, for exports that pair VASA's DiT with another renderer (no ``face.safetensors``).
    ``manifest``: the already verified manifest (else every listed file is checked here)."""
    d = Path(directory).expanduser()
    if manifest is None:
        manifest = ef.verify_export(d, required=(ef.MOTION_FILE, ef.CONFIG_FILE))
    raw = ef.read_config(d)
    cfgs = ef.config_sections(d, raw, MOTION_CONFIG_CLASSES)
    motion_cfg, audio_cfg = cfgs["motion"], cfgs["audio"]
    check_audio(d, audio_cfg, motion_cfg)
    return MotionPart(
        motion_model=load_motion_model(d, motion_cfg), motion=motion_cfg, audio=audio_cfg,
        diffusion=cfgs["diffusion"], conditions=dict(raw.get("conditions") or {}), manifest=dict(manifest), path=d,
    )  # fmt: skip
