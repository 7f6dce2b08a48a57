"""The stage-1 part of an export folder (``vasajax.export_format``): ``face.safetensors`` and config.json's ``face``.

The crop a renderer frames photos with (config.json's ``crop``) is ``facetrack``'s config, which this package does
not import: ``vasajax.checkpoint_export`` reads it and hands it to ``VasaRenderer`` with this part.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flax import nnx

from vasajax import export_format as ef
from vasajax.face.config import FaceConfig
from vasajax.face.model import FaceLatentModel

FACE_CONFIG_CLASSES: dict[str, type] = {"face": FaceConfig}
"""The config.json section of the face part and the dataclass it rebuilds."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class FacePart:
    """The stage-1 half of an export: the face latent model and its config (``load_face_part``)."""

    face_model: FaceLatentModel
    face: FaceConfig
    manifest: dict
    path: Path


def load_face_model(d: Path, cfg: FaceConfig) -> FaceLatentModel:
    """The face latent model ``cfg`` builds, filled from ``face.safetensors`` (tensor names and shapes checked)."""
    tensors = ef.read_weights(d, ef.FACE_FILE)
    return ef.load_model(lambda: FaceLatentModel(cfg, rngs=nnx.Rngs(0)), tensors, f"{d}/{ef.FACE_FILE}")


def load_face_part(directory: str | os.PathLike, manifest: Mapping[str, Any] | None = None) -> FacePart:
    """Only the face latent model of an export: ``face.safetensors`` and config.json's ``face`` (no motion DiT).
    ``manifest``: the already verified manifest (else every listed file is checked here)."""
    d = Path(directory).expanduser()
    if manifest is None:
        manifest = ef.verify_export(d, required=(ef.FACE_FILE, ef.CONFIG_FILE))
    face_cfg = ef.config_sections(d, ef.read_config(d), FACE_CONFIG_CLASSES)["face"]
    return FacePart(face_model=load_face_model(d, face_cfg), face=face_cfg, manifest=dict(manifest), path=d)
