"""The loading layer: the three stages of a model (``vasajax.stages``) from an export folder.

An export names its stages in ``manifest.json`` (``{"stages": {"renderer": ..., "motion": ..., "motion_space":
...}}``); without that section it is VASA-1's (``checkpoint_export``: face.safetensors + motion.safetensors +
config.json), loaded in one pass and shared by the three VASA entries. Any other combination is loaded entry by
entry through the registries, each entry reading its own files from the folder after every file listed in the
manifest has been checked against its sha256. Training run folders load through ``vasajax.train`` (``export``
turns a pair of runs into an export).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vasajax import checkpoint_export as ce
from vasajax.errors import UserError
from vasajax.face.stage import VasaRenderer
from vasajax.motion.stage import VasaMotionGenerator, audio_encoder
from vasajax.stages import AUDIO_ENCODERS, MOTION_GENERATORS, RENDERERS, check_compatible

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "demo"
"""The shipped demo checkpoint (``$VASAJAX_CHECKPOINT`` overrides it)."""


def resolve_checkpoint(path: str | os.PathLike | None) -> Path:
    """``path``, else ``$VASAJAX_CHECKPOINT``, else the shipped demo checkpoint; must exist."""
    if path is None:
        path = os.environ.get("VASAJAX_CHECKPOINT") or DEFAULT_CHECKPOINT
        if not Path(path).is_dir():
            raise UserError(
                f"no checkpoint at {path} (the demo checkpoint is not installed); pass --checkpoint DIR "
                "with an export made by vasajax.checkpoint_export.save_export"
            )
    return Path(path).expanduser()


@dataclasses.dataclass(frozen=True)
class Stages:
    """A loaded model: its renderer, motion generator and audio encoder, and where they came from."""

    renderer: Any
    generator: Any
    audio: Any
    manifest: dict
    path: Path | None = None
    export: ce.Export | None = None
    """The VASA export when all three stages are VASA-1's (configs, both models), else None."""


def stage_names(manifest: Mapping[str, Any]) -> dict[str, str]:
    """``{"renderer", "motion", "audio"}`` entry names an export's manifest declares (VASA's by default; the audio
    entry of a VASA export follows its ``AudioConfig.kind``, so it is left to the config: ``""``)."""
    st = manifest.get("stages") or {}
    if not isinstance(st, Mapping):
        raise UserError("manifest.json: 'stages' is not an object; the checkpoint is damaged")
    return {"renderer": str(st.get("renderer", "vasa")), "motion": str(st.get("motion", "vasa")),
            "audio": str(st.get("audio", ""))}  # fmt: skip


def from_export(export: ce.Export) -> Stages:
    """The three VASA stages of a loaded VASA export."""
    renderer, generator = VasaRenderer.from_export(export), VasaMotionGenerator.from_export(export)
    audio = audio_encoder(export.audio)
    check_compatible(renderer, generator, audio, generator.audio_dim if export.audio.kind == "logmel" else None)
    return Stages(renderer, generator, audio, export.manifest, export.path, export)


def load_stages(directory, *, expect: Mapping[str, Any] | None = None) -> Stages:
    """All three stages of the export at ``directory`` (see the module docstring). ``expect``: config sections a
    VASA export must match (``checkpoint_export.load_export``)."""
    d = Path(directory).expanduser()
    manifest_path = d / ce.MANIFEST_FILE
    manifest = {}
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            manifest = {}  # load_export names the damage
    names = stage_names(manifest if isinstance(manifest, dict) else {})
    if names["renderer"] == "vasa" and names["motion"] == "vasa" and names["audio"] in ("", "logmel", "wav2vec2"):
        return from_export(ce.load_export(d, expect=expect))
    manifest = ce.verify_export(d, required=())
    renderer = RENDERERS.load(names["renderer"], d, manifest)
    generator = MOTION_GENERATORS.load(names["motion"], d, manifest)
    audio = AUDIO_ENCODERS.load(names["audio"] or "logmel", d, manifest)
    check_compatible(renderer, generator, audio, getattr(generator, "audio_dim", None))
    return Stages(renderer, generator, audio, manifest, d)
