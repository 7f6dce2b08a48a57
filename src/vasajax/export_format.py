"""The export folder format: files, manifest, config sections and weight tensors, without any model in it.

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
``conditions``.

This module is the bottom layer of exports: it knows the file names, the manifest (``write_folder``,
``verify_export``), how a config section and a weight file are read, and how any ``nnx`` model is filled from
tensors with its names and shapes checked (``load_model``). It imports no model: each stage reads its own part
(``vasajax.face.export_part``, ``vasajax.motion.export_part``) and ``vasajax.checkpoint_export`` puts the parts
together into a whole export. Every damage is a one-line ``UserError`` that says what to do.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import ml_dtypes
import numpy as np
from flax import nnx

from vasajax import config_io
from vasajax.errors import UserError
from vasajax.params import read_safetensors, write_safetensors

FORMAT = "vasajax-export/1"
"""Format tag in ``config.json``, ``manifest.json`` and each weight file's metadata."""
FACE_FILE, MOTION_FILE, CONFIG_FILE, MANIFEST_FILE = (
    "face.safetensors",
    "motion.safetensors",
    "config.json",
    "manifest.json",
)

# ------------------------------------------------------------------------------------------ state ⇄ flat


def flat_state(model: nnx.Module) -> list[tuple[str, nnx.Variable]]:
    """(``a/b/0/kernel``, variable) for every variable of the model (abstract or concrete), sorted."""
    flat = nnx.to_flat_state(nnx.state(model))
    return sorted(("/".join(str(k) for k in path), var) for path, var in flat)


def model_tensors(model: nnx.Module, param_dtype=ml_dtypes.bfloat16) -> dict[str, np.ndarray]:
    """Flat name → numpy array; ``nnx.Param`` leaves cast to ``param_dtype``, other variables float32."""
    out = {}
    for name, var in flat_state(model):
        value = np.asarray(jax.device_get(var.get_value()))
        out[name] = value.astype(param_dtype if isinstance(var, nnx.Param) else np.float32)
    return out


def load_model(make: Callable[[], nnx.Module], tensors: Mapping[str, np.ndarray], what: str):
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


def read_weights(directory: Path, name: str) -> dict[str, np.ndarray]:
    """The tensors of the weight file ``name`` in an export folder (a missing file says to re-download)."""
    path = directory / name
    if not path.is_file():
        raise UserError(f"checkpoint file missing: {path}; re-download or re-export the checkpoint")
    tensors, _ = read_safetensors(path)
    return tensors


# ------------------------------------------------------------------------------------------ configs


def config_mismatch(have: Any, want: Any) -> str | None:
    """``"field: have X, need Y"`` for the first differing field of two configs of one class, else None."""
    for f in dataclasses.fields(want):
        a, b = getattr(have, f.name), getattr(want, f.name)
        if a != b:
            return f"{f.name}={a!r} in the checkpoint, {b!r} expected"
    return None


def read_json(path: Path, what: str) -> dict:
    """A JSON object from ``path``; unreadable or not an object is a ``UserError`` calling the ``what`` damaged."""
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({type(e).__name__}); the {what} is damaged") from None
    if not isinstance(d, dict):
        raise UserError(f"{path} is not a JSON object; the {what} is damaged")
    return d


def read_config(directory: Path) -> dict:
    """An export's ``config.json`` as a dict (sections not parsed yet)."""
    return read_json(directory / CONFIG_FILE, "checkpoint config")


def config_sections(directory: Path, raw: Mapping[str, Any], classes: Mapping[str, type]) -> dict[str, Any]:
    """``{section: config}`` for each ``classes`` section of the ``config.json`` dict ``raw``: a missing section
    (checked for all before any is parsed) or a field this version does not know is a ``UserError``."""
    missing = [s for s in classes if s not in raw]
    if missing:
        raise UserError(f"{directory}/{CONFIG_FILE} has no '{missing[0]}' section; the checkpoint is damaged")
    return {s: config_io.from_dict(cls, raw[s], what=f"config.json: {s}") for s, cls in classes.items()}


# ------------------------------------------------------------------------------------------ folder ⇄ manifest


def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_folder(
    directory: str | os.PathLike,
    files: Mapping[str, tuple[Mapping[str, np.ndarray], Mapping[str, Any]] | Mapping[str, Any]],
    manifest_extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write an export folder: ``files`` maps a name to ``(tensors, metadata)`` (a safetensors file tagged with
    ``FORMAT``) or to a JSON-able dict; ``manifest.json`` lists each file's sha256 and size after
    ``manifest_extra``. The folder is written under a temporary name and renamed into place, so it is never
    half-written; an existing export at ``directory`` is replaced. Returns its path."""
    dest = Path(directory)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        _write_files(tmp, files, manifest_extra)
        os.chmod(tmp, 0o755)
        _replace_folder(tmp, dest)
    except BaseException:
        for f in tmp.glob("*"):
            f.unlink()
        tmp.rmdir()
        raise
    return dest


def _write_files(folder: Path, files: Mapping[str, Any], manifest_extra: Mapping[str, Any] | None) -> None:
    for name, content in files.items():
        if isinstance(content, tuple):
            tensors, meta = content
            write_safetensors(folder / name, tensors, {"format": FORMAT, **meta})
        else:
            (folder / name).write_text(json.dumps(content, indent=1) + "\n")
    listed = {name: {"sha256": sha256(folder / name), "bytes": (folder / name).stat().st_size} for name in files}
    manifest = {**dict(manifest_extra or {}), "format": FORMAT, "files": listed}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")


def _replace_folder(new: Path, dest: Path) -> None:
    """Move the finished folder ``new`` to ``dest``, removing the export that was there."""
    if not dest.exists():
        os.replace(new, dest)
        return
    old = dest.with_name(f".{dest.name}.old")
    os.replace(dest, old)
    os.replace(new, dest)
    for f in old.iterdir():
        f.unlink()
    old.rmdir()


def verify_export(directory: str | os.PathLike, required: Sequence[str] | None = None) -> dict:
    """Check every file against ``manifest.json`` (presence, size, sha256); returns the manifest. ``required``:
    the files the export must list (default: exactly VASA-1's three; other stages' exports name their own)."""
    d = Path(directory).expanduser()
    if not d.is_dir():
        raise UserError(f"checkpoint folder not found: {d}; pass --checkpoint DIR with an exported model")
    if not (d / MANIFEST_FILE).is_file():
        raise UserError(f"{d} is not a vasajax export (no {MANIFEST_FILE}); export one with save_export")
    manifest = read_json(d / MANIFEST_FILE, "checkpoint manifest")
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
        if p.stat().st_size != info.get("bytes") or sha256(p) != info.get("sha256"):
            raise UserError(
                f"checkpoint file {p} does not match its manifest (sha256/size differ): it is damaged or was "
                "changed; re-download or re-export the checkpoint"
            )
    return manifest
