"""Hugging Face wav2vec2/HuBERT checkpoint → ``vasajax.motion.wav2vec2`` params, driven by one key table.

Input: a local directory with ``config.json`` and ``model.safetensors`` (or a sharded
``model.safetensors.index.json``), as written by ``save_pretrained(..., safe_serialization=True)`` or
downloaded by the user from the Hub beforehand. Nothing here downloads, and pickled ``pytorch_model.bin``
files are refused (convert them to safetensors first). Checkpoints of ``Wav2Vec2Model``/``HubertModel`` and of
the task models that wrap them (``Wav2Vec2ForCTC``, ``Wav2Vec2ForPreTraining``, ...; their weights sit under
``wav2vec2.``/``hubert.``) are accepted; heads, quantizer and the SpecAugment mask embedding are ignored.

Layouts: torch ``Conv1d`` weights ``O×I×K`` become channels-last kernels ``K×I×O``; ``Linear`` ``O×I`` becomes
``I×O``. The positional conv's weight norm (``dim=2``: one gain per kernel tap) is folded:
``weight = g · v / ‖v‖`` with the norm over the output and input-channel axes, per tap.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from flax import nnx

from vasajax import params
from vasajax.errors import UserError
from vasajax.motion.wav2vec2 import Wav2Vec2, Wav2Vec2Config
from vasajax.params import Rule, conv, linear

# our flattened param path → Hugging Face key (the regex groups fill the template) and layout transform
TABLE: tuple[Rule, ...] = (
    Rule(r"conv_layers\.(\d+)\.conv\.kernel", "feature_extractor.conv_layers.{0}.conv.weight", conv),
    Rule(r"conv_layers\.(\d+)\.conv\.bias", "feature_extractor.conv_layers.{0}.conv.bias"),
    Rule(r"conv_layers\.(\d+)\.norm\.scale", "feature_extractor.conv_layers.{0}.layer_norm.weight"),
    Rule(r"conv_layers\.(\d+)\.norm\.bias", "feature_extractor.conv_layers.{0}.layer_norm.bias"),
    Rule(r"feature_norm\.scale", "feature_projection.layer_norm.weight"),
    Rule(r"feature_norm\.bias", "feature_projection.layer_norm.bias"),
    Rule(r"feature_proj\.kernel", "feature_projection.projection.weight", linear),
    Rule(r"feature_proj\.bias", "feature_projection.projection.bias"),
    Rule(r"pos_conv\.kernel", "encoder.pos_conv_embed.conv.weight", conv),  # after weight-norm folding
    Rule(r"pos_conv\.bias", "encoder.pos_conv_embed.conv.bias"),
    Rule(r"encoder_norm\.scale", "encoder.layer_norm.weight"),
    Rule(r"encoder_norm\.bias", "encoder.layer_norm.bias"),
    Rule(r"layers\.(\d+)\.attention\.(q|k|v|out)_proj\.kernel", "encoder.layers.{0}.attention.{1}_proj.weight", linear),
    Rule(r"layers\.(\d+)\.attention\.(q|k|v|out)_proj\.bias", "encoder.layers.{0}.attention.{1}_proj.bias"),
    Rule(r"layers\.(\d+)\.(layer_norm|final_layer_norm)\.scale", "encoder.layers.{0}.{1}.weight"),
    Rule(r"layers\.(\d+)\.(layer_norm|final_layer_norm)\.bias", "encoder.layers.{0}.{1}.bias"),
    Rule(
        r"layers\.(\d+)\.(intermediate_dense|output_dense)\.kernel",
        "encoder.layers.{0}.feed_forward.{1}.weight",
        linear,
    ),
    Rule(r"layers\.(\d+)\.(intermediate_dense|output_dense)\.bias", "encoder.layers.{0}.feed_forward.{1}.bias"),
)

# Hugging Face keys of the base model that have no counterpart here, on purpose.
IGNORED = (r"masked_spec_embed",)
_PREFIXES = ("wav2vec2.", "hubert.")
_POS = "encoder.pos_conv_embed.conv."


def fold_weight_norm(g: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``g · v / ‖v‖`` for torch weight norm with ``dim=2`` on a ``O×I×K`` conv weight (g is ``1×1×K``)."""
    v = v.astype(np.float64)
    norm = np.sqrt(np.sum(v * v, axis=(0, 1), keepdims=True))
    return (g.astype(np.float64) * v / norm).astype(np.float32)


def canonical_hf_state(hf: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Strips a task-model prefix (``wav2vec2.``/``hubert.``) and folds the positional conv's weight norm."""
    for p in _PREFIXES:
        if any(k.startswith(p) for k in hf):
            hf = {k[len(p) :]: v for k, v in hf.items() if k.startswith(p)}
            break
    out = dict(hf)
    for g_key, v_key in (
        ("parametrizations.weight.original0", "parametrizations.weight.original1"),
        ("weight_g", "weight_v"),
    ):
        if _POS + g_key in out and _POS + v_key in out:
            out[_POS + "weight"] = fold_weight_norm(out.pop(_POS + g_key), out.pop(_POS + v_key))
    return out


def convert(hf: Mapping[str, np.ndarray], cfg: Wav2Vec2Config) -> Wav2Vec2:
    """Our model with a Hugging Face state dict's weights (numpy arrays, float32).

    Raises ``UserError`` naming the key when a weight is missing or its shape does not match ``cfg``.
    Unused base-model keys (other than ``IGNORED``) produce a warning.
    """
    return params.convert(
        lambda: Wav2Vec2(cfg, rngs=nnx.Rngs(0)),
        canonical_hf_state(hf),
        TABLE,
        model="wav2vec2/HuBERT",
        ignored=IGNORED,
        unused="warn",
    )


def read_config(checkpoint: str | Path) -> Wav2Vec2Config:
    """Our config from ``<checkpoint>/config.json`` (``checkpoint`` is the directory or a file inside it)."""
    path = Path(checkpoint)
    d = path if path.is_dir() else path.parent
    cfg_file = d / "config.json"
    if not cfg_file.is_file():
        raise UserError(
            f"no config.json in {d}; point the audio config at a Hugging Face wav2vec2 checkpoint "
            "directory (config.json + model.safetensors)"
        )
    try:
        hf_cfg = json.loads(cfg_file.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {cfg_file}: {e}") from None
    return Wav2Vec2Config.from_hf(hf_cfg)


def read_safetensors(checkpoint: str | Path) -> dict[str, np.ndarray]:
    """All tensors of a checkpoint directory (single or sharded safetensors) as numpy arrays."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(checkpoint)
    d = path if path.is_dir() else path.parent
    if path.is_file() and path.suffix == ".safetensors":
        files = [path]
    elif (d / "model.safetensors").is_file():
        files = [d / "model.safetensors"]
    elif (d / "model.safetensors.index.json").is_file():
        index = json.loads((d / "model.safetensors.index.json").read_text())
        files = [d / f for f in sorted(set(index["weight_map"].values()))]
    elif (d / "pytorch_model.bin").exists():
        raise UserError(
            f"{d} has only pytorch_model.bin (pickle, not loaded for safety); convert it once with "
            "transformers: Model.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)"
        )
    else:
        raise UserError(f"no model.safetensors in {d}; point the audio config at a local wav2vec2 checkpoint")
    out: dict[str, np.ndarray] = {}
    for f in files:
        try:
            out.update(load_file(str(f)))
        except (SafetensorError, OSError, ValueError) as e:
            raise UserError(f"cannot read {f}: {e}") from None
    return out


def load(checkpoint: str | Path) -> tuple[Wav2Vec2Config, Wav2Vec2]:
    """Config and ``Wav2Vec2`` model with the checkpoint's weights (float32)."""
    cfg = read_config(checkpoint)
    return cfg, convert(read_safetensors(checkpoint), cfg)
