"""LivePortrait's released PyTorch weights → ``vasajax.zoo.liveportrait`` modules, one key table per network.

Files (Hugging Face ``KwaiVGI/LivePortrait``, downloaded by the user; nothing here downloads)::

    <src>/base_models/appearance_feature_extractor.pth   F  (a plain state dict)
    <src>/base_models/motion_extractor.pth               M  (keys under ``detector.``)
    <src>/base_models/warping_module.pth                 W
    <src>/base_models/spade_generator.pth                G  (spectral norm: ``weight_orig``, ``weight_u``, ``weight_v``)
    <src>/retargeting_models/stitching_retargeting_module.pth   S: a dict of three state dicts,
        ``retarget_shoulder`` (stitching), ``retarget_mouth`` (lip), ``retarget_eye`` (eye), whose keys may carry
        DDP's ``module.`` (upstream ``load_model`` strips every ``module.``)

``<src>`` is ``pretrained_weights/liveportrait`` (or its parent ``pretrained_weights``). Layouts: torch
``Conv{2,3}d`` ``O×I×k…`` → ``k…×I×O``, ``Linear`` ``O×I`` → ``I×O``; BatchNorm ``weight/bias/running_mean/
running_var`` → ``scale/bias/mean/var`` (``num_batches_tracked`` is ignored); GRN's ``1×1×1×C`` gamma/beta → ``C``.
Spectral norm is kept in eval form: ``weight_orig`` and the stored ``u``/``v`` are copied, σ is computed at
run time exactly as torch's eval mode does (no power iteration). Reading ``.pth`` needs torch (imported lazily,
``weights_only=True``); :func:`convert_state_dicts` takes numpy state dicts and needs no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from vasajax import params
from vasajax.errors import UserError
from vasajax.params import Rule, conv, linear, same
from vasajax.zoo.liveportrait.appearance import AppearanceFeatureExtractor
from vasajax.zoo.liveportrait.config import LivePortraitConfig
from vasajax.zoo.liveportrait.generator import SPADEDecoder
from vasajax.zoo.liveportrait.model import LivePortrait
from vasajax.zoo.liveportrait.motion import MotionExtractor
from vasajax.zoo.liveportrait.retargeting import StitchingRetargeting
from vasajax.zoo.liveportrait.warping import WarpingNetwork

MODULES = ("appearance_feature_extractor", "motion_extractor", "warping_module", "spade_generator")
RETARGETING = "stitching_retargeting_module"
FILES = {name: f"base_models/{name}.pth" for name in MODULES} | {RETARGETING: f"retargeting_models/{RETARGETING}.pth"}
IGNORED = (r"num_batches_tracked$",)
"""torch BatchNorm's step counter: unused in eval mode."""
_RETARGET_PREFIXES = {"stitching": "retarget_shoulder", "lip": "retarget_mouth", "eye": "retarget_eye"}


def _flat(w: np.ndarray) -> np.ndarray:
    """GRN's ``1×1×1×C`` → ``C``."""
    return w.reshape(-1)


def _leaf_rules(ours: str, theirs: str) -> tuple[Rule, ...]:
    """Conv / BatchNorm / LayerNorm leaves under our prefix regex ``ours`` → their prefix template ``theirs``."""
    return (
        Rule(ours + r"\.kernel", theirs + ".weight", conv),
        Rule(ours + r"\.bias", theirs + ".bias"),
        Rule(ours + r"\.scale", theirs + ".weight"),
        Rule(ours + r"\.mean", theirs + ".running_mean"),
        Rule(ours + r"\.var", theirs + ".running_var"),
    )


def appearance_rules(cfg: LivePortraitConfig | None = None) -> tuple[Rule, ...]:
    return (
        *_leaf_rules(r"resblocks_3d\.(\d+)\.(\w+)", "resblocks_3d.3dr{0}.{1}"),
        *_leaf_rules(r"([\w.]+?)", "{0}"),  # first.conv, first.norm, down_blocks.i.conv/norm, second
    )


def motion_rules(cfg: LivePortraitConfig | None = None) -> tuple[Rule, ...]:
    return (
        *_leaf_rules(r"downsample\.0\.conv", "detector.downsample_layers.0.0"),
        *_leaf_rules(r"downsample\.0\.norm", "detector.downsample_layers.0.1"),
        *_leaf_rules(r"downsample\.(\d+)\.norm", "detector.downsample_layers.{0}.0"),
        *_leaf_rules(r"downsample\.(\d+)\.conv", "detector.downsample_layers.{0}.1"),
        Rule(r"stages\.(\d+)\.(\d+)\.grn\.(gamma|beta)", "detector.stages.{0}.{1}.grn.{2}", _flat),
        Rule(r"stages\.(\d+)\.(\d+)\.(pwconv\d)\.kernel", "detector.stages.{0}.{1}.{2}.weight", linear),
        *_leaf_rules(r"stages\.(\d+)\.(\d+)\.(\w+)", "detector.stages.{0}.{1}.{2}"),  # dwconv, norm, pwconv bias
        Rule(r"heads\.(\w+)\.kernel", "detector.fc_{0}.weight", linear),
        Rule(r"heads\.(\w+)\.bias", "detector.fc_{0}.bias"),
        *_leaf_rules(r"norm", "detector.norm"),
    )


def warping_rules(cfg: LivePortraitConfig | None = None) -> tuple[Rule, ...]:
    dm = "dense_motion_network"
    return (
        *_leaf_rules(r"dense_motion\.hourglass\.(down_blocks\.\d+\.\w+)", dm + ".hourglass.encoder.{0}"),
        *_leaf_rules(r"dense_motion\.hourglass\.(up_blocks\.\d+\.\w+)", dm + ".hourglass.decoder.{0}"),
        *_leaf_rules(r"dense_motion\.hourglass\.(conv|norm)", dm + ".hourglass.decoder.{0}"),
        *_leaf_rules(r"dense_motion\.(mask|compress|norm|occlusion)", dm + ".{0}"),
        *_leaf_rules(r"(third\.conv|third\.norm|fourth)", "{0}"),
    )


def generator_rules(cfg: LivePortraitConfig) -> tuple[Rule, ...]:
    rules = []
    for ours_block, theirs_block in ((r"G_middle\.(\d+)", "G_middle_{0}"), (r"(up_\d)", "{0}")):
        rules += [
            Rule(ours_block + r"\.(conv_\w)\.conv\.kernel", theirs_block + ".{1}.weight_orig", conv),
            Rule(ours_block + r"\.(conv_\w)\.conv\.bias", theirs_block + ".{1}.bias"),
            Rule(ours_block + r"\.(conv_\w)\.u", theirs_block + ".{1}.weight_u"),
            Rule(ours_block + r"\.(conv_\w)\.v", theirs_block + ".{1}.weight_v"),
            *_leaf_rules(ours_block + r"\.(norm_\w)\.mlp_shared", theirs_block + ".{1}.mlp_shared.0"),  # Sequential
            *_leaf_rules(ours_block + r"\.(norm_\w)\.(mlp_gamma|mlp_beta)", theirs_block + ".{1}.{2}"),
        ]
    img = "conv_img.0" if cfg.generator.upscale > 1 else "conv_img"
    return (*rules, *_leaf_rules(r"conv_img", img), *_leaf_rules(r"fc", "fc"))


def retargeting_rules(cfg: LivePortraitConfig) -> tuple[Rule, ...]:
    """Their keys are ``<file prefix>.mlp.<2i>.{weight,bias}`` (Linear, ReLU, Linear, ...; ``module.`` stripped)."""
    rules = []
    for ours, theirs in _RETARGET_PREFIXES.items():
        mlp = getattr(cfg.retargeting, ours)
        for i in range(len(mlp.hidden_sizes) + 1):
            rules += [
                Rule(rf"{ours}\.layers\.{i}\.kernel", f"{theirs}.mlp.{2 * i}.weight", linear),
                Rule(rf"{ours}\.layers\.{i}\.bias", f"{theirs}.mlp.{2 * i}.bias", same),
            ]
    return tuple(rules)


# name → (constructor from the whole config, key table, attribute of LivePortrait)
_NETS: dict[str, tuple[Callable, Callable, str]] = {
    "appearance_feature_extractor": (
        lambda c: AppearanceFeatureExtractor(c.appearance, rngs=nnx.Rngs(0)),
        appearance_rules,
        "appearance",
    ),
    "motion_extractor": (lambda c: MotionExtractor(c.motion, rngs=nnx.Rngs(0)), motion_rules, "motion"),
    "warping_module": (lambda c: WarpingNetwork(c.warping, rngs=nnx.Rngs(0)), warping_rules, "warping"),
    "spade_generator": (lambda c: SPADEDecoder(c.generator, rngs=nnx.Rngs(0)), generator_rules, "generator"),
    RETARGETING: (lambda c: StitchingRetargeting(c.retargeting, rngs=nnx.Rngs(0)), retargeting_rules, "retargeting"),
}


def rules_for(name: str, cfg: LivePortraitConfig) -> tuple[Rule, ...]:
    """The key table of network ``name`` (one of ``MODULES`` or ``RETARGETING``)."""
    return _NETS[name][1](cfg)


def make(name: str, cfg: LivePortraitConfig) -> Callable[[], nnx.Module]:
    """A factory of our network ``name`` at ``cfg``'s sizes with zero-filled (numpy) variables, for
    ``params.convert`` (which overwrites every one) and ``variable_shapes``. Skipping the random initialisers
    saves one compiled initializer per parameter shape (seconds per network on CPU)."""

    def build():
        graphdef, state = nnx.split(nnx.eval_shape(lambda: _NETS[name][0](cfg)))
        return nnx.merge(graphdef, jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), state))

    return build


def variable_shapes(factory: Callable[[], nnx.Module]) -> dict[str, tuple[int, ...]]:
    """``{dotted path: shape}`` of *every* variable (params, BatchNorm statistics, spectral-norm vectors), built
    abstractly; ``params.param_shapes`` covers only ``nnx.Param``."""
    state = nnx.split(nnx.eval_shape(factory))[1]
    return {params.dotted(p): tuple(v.shape) for p, v in params.flatten(nnx.to_pure_dict(state)).items()}


def canonical_retargeting(checkpoint: Mapping) -> dict[str, np.ndarray]:
    """The retargeting file → flat ``retarget_*.<key>`` with every ``module.`` removed, as upstream ``load_model``
    reads it: only the three sub-state-dicts ``retarget_shoulder``/``retarget_mouth``/``retarget_eye`` (anything
    else at the top level is not read upstream either). Already-flat input (``retarget_*.<key>``) is accepted."""
    out: dict[str, np.ndarray] = {}
    for prefix in _RETARGET_PREFIXES.values():
        sub = checkpoint.get(prefix)
        if isinstance(sub, Mapping):
            items = sub.items()
        else:  # flat
            items = ((k[len(prefix) + 1 :], v) for k, v in checkpoint.items() if k.startswith(prefix + "."))
        for k, v in items:
            out[f"{prefix}.{k.replace('module.', '')}"] = v
    return out


def convert_module(name: str, state_dict: Mapping[str, np.ndarray], cfg: LivePortraitConfig) -> nnx.Module:
    """One network with the weights of its (numpy) state dict; ``UserError`` names a missing key or bad shape."""
    if name == RETARGETING:
        state_dict = canonical_retargeting(state_dict)
    return params.convert(
        make(name, cfg), state_dict, rules_for(name, cfg), model=f"LivePortrait {name}", ignored=IGNORED
    )


def convert_state_dicts(
    state_dicts: Mapping[str, Mapping[str, np.ndarray]], cfg: LivePortraitConfig | None = None
) -> LivePortrait:
    """The whole model from numpy state dicts keyed by ``MODULES`` (and optionally ``RETARGETING``)."""
    cfg = cfg or LivePortraitConfig.full()
    parts = {}
    for name, (_, _, attr) in _NETS.items():
        if name in state_dicts:
            parts[attr] = convert_module(name, state_dicts[name], cfg)
        elif name != RETARGETING:
            raise UserError(f"LivePortrait weights: no state dict for {name}")
    return LivePortrait(cfg, parts=parts)


def read_pth(path: str | Path) -> dict:
    """A ``.pth`` state dict as numpy (nested dicts kept). Missing or unreadable files raise ``UserError``."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p} not found; download LivePortrait's weights (Hugging Face KwaiVGI/LivePortrait) there")
    try:
        import torch
    except ImportError:
        raise UserError(f"reading {p} needs torch (pip install torch, CPU build is enough)") from None
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (torch raises many kinds; all mean "not a readable checkpoint")
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{p} is not a readable torch checkpoint ({first})") from None
    if not isinstance(obj, Mapping):
        raise UserError(f"{p} does not hold a state dict (found {type(obj).__name__})")

    def to_numpy(d):  # tensors and nested state dicts; other entries (an epoch counter, ...) are dropped
        out = {}
        for k, v in d.items():
            if isinstance(v, Mapping):
                out[k] = to_numpy(v)
            elif isinstance(v, torch.Tensor):
                out[k] = v.detach().float().numpy()
        return out

    return to_numpy(obj)


def _root(src_dir: str | Path) -> Path:
    d = Path(src_dir)
    for cand in (d, d / "liveportrait", d / "pretrained_weights" / "liveportrait"):
        if (cand / "base_models").is_dir():
            return cand
    raise UserError(f"{d} has no base_models/ folder; point at pretrained_weights/liveportrait")


def load_liveportrait(
    src_dir: str | Path, cfg: LivePortraitConfig | None = None, *, retargeting: bool = True
) -> tuple[LivePortraitConfig, LivePortrait]:
    """``(cfg, model)`` from the released files under ``src_dir`` (see the module docstring). The retargeting
    file is optional when ``retargeting`` is false; any problem is a one-line ``UserError`` naming the file."""
    cfg = cfg or LivePortraitConfig.full()
    root = _root(src_dir)
    names = [*MODULES, RETARGETING] if retargeting else list(MODULES)
    parts = {}
    for name in names:
        path = root / FILES[name]
        try:
            parts[_NETS[name][2]] = convert_module(name, read_pth(path), cfg)
        except UserError as e:
            msg = str(e)
            raise UserError(msg if str(path) in msg else f"{path}: {msg}") from None
    return cfg, LivePortrait(cfg, parts=parts)
