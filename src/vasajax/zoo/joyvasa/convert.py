"""JoyVASA's released files → our modules, driven by one key table (``vasajax.params``).

Files (as upstream lays them out under ``pretrained_weights/``):

* ``JoyVASA/motion_generator/*.pt``: ``torch.save({"args": argparse.Namespace, "model": state_dict, ...})``.
  Upstream's ``load_model`` builds ``DitTalkingHead`` from six of the args (``motion_feat_dim``,
  ``n_motions``, ``n_prev_motions``, ``feature_dim``, ``audio_model``, ``n_diff_steps``), drops the stored
  step-embedding table ``denoising_net.TE.pe`` and loads the rest with ``strict=False``. So the stored
  buffers win over freshly built ones: the noise schedule (``diffusion_sched.*``, read here by
  ``schedule.from_buffers``) and, if the file holds them, the audio encoder's weights (``audio_encoder.*``:
  they override the Hugging Face folder's, which still supplies the architecture, ``config.json``).
* ``JoyVASA/motion_template/motion_template.pkl``: see ``template``.
* the audio encoder folder (``chinese-hubert-base``, ``hubert-base-ls960`` or ``wav2vec2-base-960h``, in
  transformers format with ``model.safetensors``), read by ``vasajax.motion.wav2vec2_params``.

Reading the ``.pt``: its args hold a ``pathlib.PosixPath``, so torch ≥ 2.6's default ``weights_only`` load
refuses it. We do not fall back to a full unpickle (which runs whatever the file names): we keep
``weights_only=True`` and allow exactly two extra globals, ``argparse.Namespace`` and ``pathlib.PosixPath``
(``torch.serialization.safe_globals``). Both only hold data; a file naming anything else is refused with a
one-line error. This needs no subprocess, and a malicious file gets no further than torch's allow-list.
torch is imported only inside ``read_pt``; ``convert_motion_generator`` takes an in-memory numpy state dict.

Provenance (returned as a dict, for the integrator's export): source file, the args used, the
positional-encoding form, where the schedule and the audio-encoder weights came from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from vasajax import params
from vasajax.errors import UserError
from vasajax.motion import wav2vec2_params
from vasajax.motion.wav2vec2 import Wav2Vec2, Wav2Vec2Config
from vasajax.params import Rule, linear, same
from vasajax.zoo.joyvasa import schedule as schedule_lib
from vasajax.zoo.joyvasa.config import JoyVASAConfig
from vasajax.zoo.joyvasa.dit import JoyVASADiT, alignment_mask
from vasajax.zoo.joyvasa.template import read_template

MODEL = "JoyVASA motion generator"
_L = "denoising_net.transformer.layers.{0}."
_ATTN = {"self_attn": "self_attn", "cross_attn": "multihead_attn"}


def _q(w: np.ndarray) -> np.ndarray:
    """Query third of torch's packed ``in_proj`` (weights ``3D×D`` → ``D×D`` transposed; biases ``3D`` → ``D``)."""
    return linear(w[: len(w) // 3]) if w.ndim == 2 else w[: len(w) // 3]


def _kv(w: np.ndarray) -> np.ndarray:
    """Key and value thirds of torch's packed ``in_proj`` (→ ``D×2D`` transposed / ``2D``)."""
    return linear(w[len(w) // 3 :]) if w.ndim == 2 else w[len(w) // 3 :]


# our dotted path → upstream DitTalkingHead state-dict key
TABLE: tuple[Rule, ...] = (
    Rule(r"audio_feature_map\.kernel", "audio_feature_map.weight", linear),
    Rule(r"audio_feature_map\.bias", "audio_feature_map.bias"),
    Rule(r"(start_audio_feat|start_motion_feat|null_audio_feat)", "{0}", same),
    Rule(r"step_map_in\.kernel", "denoising_net.diff_step_map.0.weight", linear),
    Rule(r"step_map_in\.bias", "denoising_net.diff_step_map.0.bias"),
    Rule(r"step_map_out\.kernel", "denoising_net.diff_step_map.2.weight", linear),
    Rule(r"step_map_out\.bias", "denoising_net.diff_step_map.2.bias"),
    Rule(r"feature_proj\.kernel", "denoising_net.feature_proj.weight", linear),
    Rule(r"feature_proj\.bias", "denoising_net.feature_proj.bias"),
    *(
        Rule(rf"layers\.(\d+)\.{ours}\.{p}\.{leaf}", _L + f"{theirs}.in_proj_{kind}", fn)
        for ours, theirs in _ATTN.items()
        for p, fn in (("q", _q), ("kv", _kv))
        for leaf, kind in (("kernel", "weight"), ("bias", "bias"))
    ),
    *(
        Rule(rf"layers\.(\d+)\.{ours}\.out\.kernel", _L + f"{theirs}.out_proj.weight", linear)
        for ours, theirs in _ATTN.items()
    ),
    *(Rule(rf"layers\.(\d+)\.{ours}\.out\.bias", _L + f"{theirs}.out_proj.bias") for ours, theirs in _ATTN.items()),
    Rule(r"layers\.(\d+)\.(linear1|linear2)\.kernel", _L + "{1}.weight", linear),
    Rule(r"layers\.(\d+)\.(linear1|linear2)\.bias", _L + "{1}.bias"),
    Rule(r"layers\.(\d+)\.(norm1|norm2|norm3)\.scale", _L + "{1}.weight"),
    Rule(r"layers\.(\d+)\.(norm1|norm2|norm3)\.bias", _L + "{1}.bias"),
    Rule(r"motion_dec_in\.kernel", "denoising_net.motion_dec.0.weight", linear),
    Rule(r"motion_dec_in\.bias", "denoising_net.motion_dec.0.bias"),
    Rule(r"motion_dec_out\.kernel", "denoising_net.motion_dec.2.weight", linear),
    Rule(r"motion_dec_out\.bias", "denoising_net.motion_dec.2.bias"),
)

# Stored tensors with no parameter here: constant sinusoid tables (recomputed), the alignment mask (checked
# against the config), the schedule (read by schedule.from_buffers) and the audio encoder (converted apart).
IGNORED = (
    r"^denoising_net\.TE\.pe$",
    r"^denoising_net\.PE\.pe$",
    r"^denoising_net\.alignment_mask$",
    r"^diffusion_sched\.",
    r"^audio_encoder\.",
)
_REQUIRED_ARGS = ("motion_feat_dim", "n_motions", "n_prev_motions", "feature_dim", "n_diff_steps")


def config_from_args(args: Mapping[str, Any], *, pe_form: str = "constant", **overrides) -> JoyVASAConfig:
    """Our config from a checkpoint's training args, as upstream's ``load_model`` reads them."""
    missing = [k for k in _REQUIRED_ARGS if args.get(k) is None]
    if missing:
        raise UserError(f"{MODEL} args lack {missing[0]!r}; is it a JoyVASA motion_generator .pt?")
    kw: dict[str, Any] = dict(
        motion_dim=int(args["motion_feat_dim"]),
        window=int(args["n_motions"]),
        context=int(args["n_prev_motions"]),
        width=int(args["feature_dim"]),
        num_diffusion_steps=int(args["n_diff_steps"]),
        pe_form=pe_form,
    )
    if args.get("fps") is not None:
        kw["fps"] = int(args["fps"])
    if args.get("pad_mode") is not None:
        kw["pad_mode"] = str(args["pad_mode"])
    if args.get("audio_model") is not None:
        kw["audio_model"] = str(args["audio_model"])
    return JoyVASAConfig(**{**kw, **overrides})


def convert_dit(state: Mapping[str, np.ndarray], cfg: JoyVASAConfig) -> JoyVASADiT:
    """``JoyVASADiT`` with the weights of an upstream ``DitTalkingHead`` state dict (numpy arrays)."""
    if "denoising_net.alignment_mask" in state:
        stored = np.asarray(state["denoising_net.alignment_mask"]).astype(bool)
        want = ~alignment_mask(cfg.context + cfg.window, cfg.align_mask_width)  # upstream stores "masked"
        if stored.shape != want.shape or not np.array_equal(stored, want):
            raise UserError(
                f"{MODEL}: the stored alignment mask {stored.shape} is not the width-{cfg.align_mask_width} "
                f"mask for {cfg.context}+{cfg.window} frames; the checkpoint and the config disagree"
            )
    return params.convert(
        lambda: JoyVASADiT(cfg, rngs=nnx.Rngs(0)), state, TABLE, model=MODEL, ignored=IGNORED, unused="error"
    )


def audio_encoder_state(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The ``audio_encoder.*`` tensors of a motion-generator state dict, prefix stripped (may be empty)."""
    p = "audio_encoder."
    return {k[len(p) :]: v for k, v in state.items() if k.startswith(p)}


def convert_motion_generator(
    state: Mapping[str, np.ndarray],
    args: Mapping[str, Any],
    *,
    pe_form: str = "constant",
    source: str = "<memory>",
    **overrides,
) -> tuple[JoyVASAConfig, JoyVASADiT, schedule_lib.Schedule, dict[str, Any]]:
    """``(config, dit, schedule, provenance)`` from an in-memory state dict (numpy) and its training args.

    ``pe_form`` defaults to "constant", the form the released (Nov 2024) weights were trained with.
    """
    cfg = config_from_args(args, pe_form=pe_form, **overrides)
    dit = convert_dit(state, cfg)
    stored = schedule_lib.from_buffers(state)
    built = schedule_lib.make_schedule(cfg.num_diffusion_steps, cfg.schedule)
    if stored is not None and stored.num_steps != cfg.num_diffusion_steps:
        raise UserError(
            f"{MODEL}: the stored schedule has {stored.num_steps} steps, the args say {cfg.num_diffusion_steps}"
        )
    sched = stored if stored is not None else built
    matches = bool(np.allclose(sched.alpha_bars, built.alpha_bars, rtol=1e-4, atol=1e-6))
    provenance = {
        "model": "joyvasa-motion-generator",
        "source": source,
        "args": {k: _jsonable(v) for k, v in args.items()},
        "pe_form": cfg.pe_form,
        "pe_form_note": "constant = pe[:, L] (upstream before 74290f6, what the Nov 2024 weights were trained "
        "with); prefix = pe[:, :L]",
        "schedule": ("stored buffers" if stored is not None else "rebuilt")
        + f", {cfg.schedule} "
        + ("matches" if matches else "DIFFERS from the rebuilt one"),
        "audio_encoder_tensors_in_checkpoint": len(audio_encoder_state(state)),
    }
    return cfg, dit, sched, provenance


def _jsonable(v: Any) -> Any:
    try:
        json.dumps(v)
        return v
    except TypeError:
        return str(v)


def read_pt(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(state dict as float32 numpy, args as a dict)`` of a JoyVASA ``motion_generator/*.pt``."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{MODEL} file {p} not found (JoyVASA/motion_generator/*.pt)")
    import argparse
    import pathlib

    import torch  # lazily: only this reader needs it

    allowed = [argparse.Namespace, pathlib.PosixPath, pathlib.PurePosixPath]
    try:
        with torch.serialization.safe_globals(allowed):
            data = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (torch raises many types; all mean "not a loadable file")
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        why = next((ln for ln in lines if "Unsupported global" in ln), lines[0] if lines else type(e).__name__)
        raise UserError(
            f"{p} is not a loadable {MODEL} checkpoint ({why}); only tensors, argparse.Namespace and "
            "pathlib.PosixPath are read"
        ) from None
    if not isinstance(data, dict) or "model" not in data or "args" not in data:
        raise UserError(f"{p} is not a {MODEL} checkpoint (no 'args' and 'model' inside)")
    args = data["args"]
    args = dict(vars(args)) if isinstance(args, argparse.Namespace) else dict(args)
    state = {}
    for k, v in data["model"].items():
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu()
            state[k] = v.numpy() if v.dtype == torch.bool else v.float().numpy()
    return state, args


def convert_audio_encoder(
    cfg: Wav2Vec2Config,
    checkpoint_state: Mapping[str, np.ndarray] | None = None,
    folder_state: Mapping[str, np.ndarray] | None = None,
) -> tuple[Wav2Vec2, str]:
    """``(encoder, where its weights came from)``: the motion generator's ``audio_encoder.*`` tensors override
    the Hugging Face folder's (upstream loads them last); if they are complete, the folder's are not needed."""
    override = wav2vec2_params.canonical_hf_state(audio_encoder_state(checkpoint_state or {}))
    if override:
        try:
            return wav2vec2_params.convert(override, cfg), "motion-generator checkpoint"
        except UserError:
            if folder_state is None:
                raise
    if folder_state is None:
        raise UserError("JoyVASA audio encoder: no weights (the checkpoint holds none; give the encoder folder)")
    merged = {**wav2vec2_params.canonical_hf_state(folder_state), **override}
    return wav2vec2_params.convert(merged, cfg), "folder" + (" + checkpoint overrides" if override else "")


def load_audio_encoder(
    folder: str | Path, checkpoint_state: Mapping[str, np.ndarray] | None = None
) -> tuple[Wav2Vec2Config, Wav2Vec2, str]:
    """The audio encoder: architecture from ``folder/config.json``; weights from the motion generator's
    checkpoint when it holds them all, else from the folder's ``model.safetensors`` (with the checkpoint's
    tensors overriding). Returns ``(config, encoder, weight source)``."""
    cfg = wav2vec2_params.read_config(folder)
    try:
        model, source = convert_audio_encoder(cfg, checkpoint_state)
    except UserError:
        model, source = convert_audio_encoder(cfg, checkpoint_state, wav2vec2_params.read_safetensors(folder))
    return cfg, model, source


def load(
    weights_dir: str | Path,
    audio_dir: str | Path,
    *,
    generator: str = "motion_generator_hubert_chinese.pt",
    pe_form: str = "constant",
) -> dict[str, Any]:
    """Everything generation needs from upstream's layout: ``weights_dir`` is ``pretrained_weights/JoyVASA``.

    Returns ``{"config", "dit", "schedule", "encoder_config", "encoder", "template", "provenance"}``.
    """
    root = Path(weights_dir)
    pt = root / "motion_generator" / generator
    state, args = read_pt(pt)
    cfg, dit, sched, prov = convert_motion_generator(state, args, pe_form=pe_form, source=str(pt))
    enc_cfg, encoder, enc_source = load_audio_encoder(audio_dir, state)
    if enc_cfg.hidden_size != cfg.audio_dim:
        raise UserError(f"audio encoder in {audio_dir} has width {enc_cfg.hidden_size}; JoyVASA needs {cfg.audio_dim}")
    template = read_template(root / "motion_template" / "motion_template.pkl")
    prov["audio_encoder"] = {"folder": str(audio_dir), "weights": enc_source}
    return dict(
        config=cfg, dit=dit, schedule=sched, encoder_config=enc_cfg, encoder=encoder, template=template, provenance=prov
    )
