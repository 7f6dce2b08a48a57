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
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from flax import nnx

from vasajax.errors import UserError
from vasajax.motion.wav2vec2 import Wav2Vec2, Wav2Vec2Config


def _same(w: np.ndarray) -> np.ndarray:
    return w


def _linear(w: np.ndarray) -> np.ndarray:
    return w.T


def _conv(w: np.ndarray) -> np.ndarray:
    return w.transpose(2, 1, 0)


# (regex on our flattened param path, Hugging Face key template filled with the regex groups, transform)
TABLE: tuple[tuple[str, str, Callable[[np.ndarray], np.ndarray]], ...] = (
    (r"conv_layers\.(\d+)\.conv\.kernel", "feature_extractor.conv_layers.{0}.conv.weight", _conv),
    (r"conv_layers\.(\d+)\.conv\.bias", "feature_extractor.conv_layers.{0}.conv.bias", _same),
    (r"conv_layers\.(\d+)\.norm\.scale", "feature_extractor.conv_layers.{0}.layer_norm.weight", _same),
    (r"conv_layers\.(\d+)\.norm\.bias", "feature_extractor.conv_layers.{0}.layer_norm.bias", _same),
    (r"feature_norm\.scale", "feature_projection.layer_norm.weight", _same),
    (r"feature_norm\.bias", "feature_projection.layer_norm.bias", _same),
    (r"feature_proj\.kernel", "feature_projection.projection.weight", _linear),
    (r"feature_proj\.bias", "feature_projection.projection.bias", _same),
    (r"pos_conv\.kernel", "encoder.pos_conv_embed.conv.weight", _conv),  # after weight-norm folding
    (r"pos_conv\.bias", "encoder.pos_conv_embed.conv.bias", _same),
    (r"encoder_norm\.scale", "encoder.layer_norm.weight", _same),
    (r"encoder_norm\.bias", "encoder.layer_norm.bias", _same),
    (
        r"layers\.(\d+)\.attention\.(q|k|v|out)_proj\.kernel",
        "encoder.layers.{0}.attention.{1}_proj.weight",
        _linear,
    ),
    (
        r"layers\.(\d+)\.attention\.(q|k|v|out)_proj\.bias",
        "encoder.layers.{0}.attention.{1}_proj.bias",
        _same,
    ),
    (r"layers\.(\d+)\.(layer_norm|final_layer_norm)\.scale", "encoder.layers.{0}.{1}.weight", _same),
    (r"layers\.(\d+)\.(layer_norm|final_layer_norm)\.bias", "encoder.layers.{0}.{1}.bias", _same),
    (
        r"layers\.(\d+)\.(intermediate_dense|output_dense)\.kernel",
        "encoder.layers.{0}.feed_forward.{1}.weight",
        _linear,
    ),
    (
        r"layers\.(\d+)\.(intermediate_dense|output_dense)\.bias",
        "encoder.layers.{0}.feed_forward.{1}.bias",
        _same,
    ),
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


def _flatten(tree: Mapping, prefix: tuple = ()) -> dict[tuple, object]:
    flat = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            flat.update(_flatten(v, (*prefix, k)))
        else:
            flat[(*prefix, k)] = v
    return flat


def _unflatten(flat: Mapping[tuple, object]) -> dict:
    tree: dict = {}
    for path, v in flat.items():
        node = tree
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = v
    return tree


def _rule(name: str) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """The Hugging Face key and transform for our parameter ``name`` (first matching TABLE row)."""
    for pattern, template, transform in TABLE:
        m = re.fullmatch(pattern, name)
        if m:
            return template.format(*m.groups()), transform
    raise UserError(f"internal: no conversion rule for parameter {name!r}; extend wav2vec2_params.TABLE")


def convert(hf: Mapping[str, np.ndarray], cfg: Wav2Vec2Config) -> tuple[nnx.GraphDef, nnx.State]:
    """Maps a Hugging Face state dict (numpy arrays) onto our model; returns ``(graphdef, params)``.

    Raises ``UserError`` naming the key when a weight is missing or its shape does not match ``cfg``.
    Unused base-model keys (other than ``IGNORED``) produce a warning.
    """
    hf = canonical_hf_state(hf)
    abstract = nnx.eval_shape(lambda: Wav2Vec2(cfg, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    ours = _flatten(nnx.to_pure_dict(state))
    used: set[str] = set()
    new: dict[tuple, np.ndarray] = {}
    for path, leaf in ours.items():
        name = ".".join(str(p) for p in path)
        key, transform = _rule(name)
        if key not in hf:
            raise UserError(
                f"checkpoint lacks weight {key!r} needed for {name}; is it a wav2vec2/HuBERT checkpoint "
                "matching its config.json?"
            )
        value = transform(np.asarray(hf[key], dtype=np.float32))
        if tuple(value.shape) != tuple(leaf.shape):
            raise UserError(
                f"checkpoint weight {key!r} has shape {tuple(hf[key].shape)} but config.json implies "
                f"{tuple(leaf.shape)} (after layout change); checkpoint and config.json disagree"
            )
        new[path] = value
        used.add(key)
    leftover = [k for k in hf if k not in used and not any(re.search(p, k) for p in IGNORED)]
    if leftover:
        warnings.warn(f"wav2vec2 checkpoint: {len(leftover)} unused weights, e.g. {leftover[:3]}", stacklevel=2)
    nnx.replace_by_pure_dict(state, _unflatten(new))
    return graphdef, state


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
    graphdef, params = convert(read_safetensors(checkpoint), cfg)
    return cfg, nnx.merge(graphdef, params)
