"""Export folders for the zoo's stages: the writer ``vasajax convert`` uses (and tests call without ``.pth``).

An export is a folder with ``manifest.json`` (``export_format.FORMAT``; ``stages`` names the registry entries;
``files`` lists every other file with its sha256 and size, checked by ``load.load_stages``) and, per model, one
safetensors file of its variables (dotted NNX paths → arrays, every variable: params, BatchNorm statistics,
spectral-norm vectors) and one JSON config. Files:

- ``liveportrait.safetensors`` (F, M, W, G, and S when converted) and ``liveportrait.json``
  (``{"config": LivePortraitConfig, "crop": CropConfig, "retargeting": bool}``);
- ``joyvasa.safetensors`` (the DiT under ``dit.``, its noise schedule under ``schedule.``, the motion template
  under ``template.``) and ``joyvasa.json`` (``{"config": JoyVASAConfig, "num_kp": K}``);
- ``joyvasa_audio.safetensors`` (the HuBERT / wav2vec2 encoder) and ``joyvasa_audio.json``
  (``{"config": Wav2Vec2Config}``).

Folder writes are atomic: everything goes to a temporary sibling folder that replaces the destination at the end.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from vasajax import config_io, params
from vasajax import export_format as ef
from vasajax.errors import UserError
from vasajax.zoo.joyvasa.schedule import BUFFERS
from vasajax.zoo.liveportrait.config import default_crop

LP_WEIGHTS, LP_CONFIG = "liveportrait.safetensors", "liveportrait.json"
JV_WEIGHTS, JV_CONFIG = "joyvasa.safetensors", "joyvasa.json"
AUDIO_WEIGHTS, AUDIO_CONFIG = "joyvasa_audio.safetensors", "joyvasa_audio.json"


def module_tensors(module: nnx.Module, prefix: str = "") -> dict[str, np.ndarray]:
    """Every variable of ``module`` as ``{prefix + dotted path: float32/int array}``."""
    state = nnx.to_pure_dict(nnx.split(module)[1])
    return {prefix + params.dotted(p): np.asarray(v) for p, v in params.flatten(state).items()}


def restore_module(factory: Callable[[], nnx.Module], tensors: Mapping[str, np.ndarray], what: str) -> nnx.Module:
    """``factory()``'s module (built abstractly, no initialisers run) with every variable from ``tensors``;
    a missing or mis-shaped one is a ``UserError`` naming it (a damaged or mismatched export)."""
    graphdef, state = nnx.split(nnx.eval_shape(factory))
    flat = params.flatten(nnx.to_pure_dict(state))
    new = {}
    for path, abstract in flat.items():
        name = params.dotted(path)
        if name not in tensors:
            raise UserError(f"{what}: the export lacks {name!r}; re-run vasajax convert")
        arr = np.asarray(tensors[name])
        if tuple(arr.shape) != tuple(abstract.shape):
            raise UserError(f"{what}: {name!r} has shape {arr.shape}, the config needs {tuple(abstract.shape)}")
        new[path] = jax.numpy.asarray(arr, abstract.dtype)
    pure = params.unflatten(new)
    nnx.replace_by_pure_dict(state, pure)
    return nnx.merge(graphdef, state)


def read_json(directory: Path, name: str) -> dict:
    p = Path(directory) / name
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{p} is missing or not JSON ({e.__class__.__name__}); re-run vasajax convert") from None


def write_export(
    dest: str | os.PathLike,
    files: Mapping[str, tuple[dict[str, np.ndarray], dict] | dict],
    stages: Mapping[str, str],
    provenance: Mapping[str, Any],
) -> Path:
    """Atomically write an export folder (``export_format.write_folder``): ``files`` maps a file name to
    ``(tensors, metadata)`` (safetensors) or to a JSON-able dict; the manifest names ``stages`` and lists every
    file's sha256 and size."""
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise UserError(f"{dest} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / ef.MANIFEST_FILE).is_file():
        raise UserError(f"{dest} is a non-empty folder that is not an export; choose another output folder")
    return ef.write_folder(dest, files, {"stages": dict(stages), "provenance": dict(provenance)})


# ------------------------------------------------------------------------------------------------ per model


def liveportrait_files(cfg, model, crop=None) -> dict:
    """The renderer's two files (``LivePortraitConfig``, ``LivePortrait``, optional ``CropConfig``)."""

    crop = crop or default_crop(cfg)
    meta = {"model": "liveportrait"}
    return {
        LP_WEIGHTS: (module_tensors(model), meta),
        LP_CONFIG: {
            "config": cfg.to_dict(),
            "crop": config_io.to_dict(crop),
            "retargeting": model.retargeting is not None,
        },
    }


def joyvasa_files(cfg, dit, schedule, template: Mapping[str, np.ndarray], num_kp: int = 21) -> dict:
    """The motion generator's two files (``JoyVASAConfig``, ``JoyVASADiT``, ``Schedule``, template arrays)."""

    tensors = module_tensors(dit, "dit.")
    tensors |= {f"schedule.{b}": np.asarray(getattr(schedule, b), np.float32) for b in BUFFERS}
    tensors |= {f"template.{k}": np.asarray(v, np.float32) for k, v in template.items()}
    cfg_d = config_io.to_dict(cfg)
    return {JV_WEIGHTS: (tensors, {"model": "joyvasa"}), JV_CONFIG: {"config": cfg_d, "num_kp": int(num_kp)}}


def audio_files(enc_cfg, encoder) -> dict:
    return {
        AUDIO_WEIGHTS: (module_tensors(encoder), {"model": "joyvasa-audio"}),
        AUDIO_CONFIG: {"config": config_io.to_dict(enc_cfg)},
    }


def write_liveportrait_export(dest, cfg, model, provenance: Mapping[str, Any], crop=None) -> Path:
    """A renderer-only export (``stages``: renderer liveportrait, motion space liveportrait)."""
    stages = {"renderer": "liveportrait", "motion_space": "liveportrait"}
    return write_export(dest, liveportrait_files(cfg, model, crop), stages, provenance)


def write_joyvasa_export(
    dest, lp_cfg, lp_model, jv_cfg, dit, schedule, template, enc_cfg, encoder, provenance: Mapping[str, Any]
) -> Path:
    """One export with all three stages: LivePortrait renderer, JoyVASA motion generator, its audio encoder."""
    files = {
        **liveportrait_files(lp_cfg, lp_model),
        **joyvasa_files(jv_cfg, dit, schedule, template, lp_cfg.motion.num_kp),
        **audio_files(enc_cfg, encoder),
    }
    stages = {
        "renderer": "liveportrait",
        "motion": "joyvasa",
        "audio": "joyvasa-hubert",
        "motion_space": "liveportrait",
    }
    return write_export(dest, files, stages, provenance)
