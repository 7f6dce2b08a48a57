"""wav2vec 2.0 / HuBERT speech encoder in Flax NNX (inference port).

VASA-1 §3.2 conditions its motion diffusion transformer on "audio features ... for which we use a pretrained
feature extractor Wav2Vec2" (Baevski et al. 2020, "wav2vec 2.0: A Framework for Self-Supervised Learning of
Speech Representations", NeurIPS). This file is that encoder, numerically matching Hugging Face
``transformers.Wav2Vec2Model`` / ``HubertModel`` (Hsu et al. 2021; same architecture) in eval mode:

```
wave_BxN ─► conv feature encoder (7 strided 1-D convs, total stride 320 → 50 Hz at 16 kHz; GELU;
            "group": GroupNorm on conv 0 only (base) | "layer": LayerNorm after every conv (large, lv60))
         ─► feature projection (LayerNorm, Linear → hidden)
         ─► + positional conv embedding (grouped conv, kernel 128, weight norm folded at conversion, GELU)
         ─► transformer encoder: post-LN layers (base) or pre-LN layers + final LayerNorm ("stable LN")
```

Sequence lengths: ``num_output_frames(num_samples, cfg)`` (VALID convs). Dropout, SpecAugment masking,
padding masks and the adapter are training/fine-tuning features and are not ported. Weights come from a local
Hugging Face checkpoint through ``vasajax.motion.wav2vec2_params``; nothing downloads. Layouts are
channels-last (``B×T×C``).

Pure functional use (what the audio front end does)::

    graphdef, params = nnx.split(model)
    out = jax.jit(apply)(graphdef, params, wave_BxN)   # apply merges inside
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from vasajax.errors import UserError

_ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # torch's exact (erf) GELU, HF "gelu"
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "swish": jax.nn.silu,
    "silu": jax.nn.silu,
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Wav2Vec2Config:
    """Architecture of a wav2vec2/HuBERT encoder; field names follow Hugging Face's ``config.json``."""

    model_type: str = "wav2vec2"
    """"wav2vec2" or "hubert" (same network; only informational here)."""
    conv_dim: tuple[int, ...] = (512, 512, 512, 512, 512, 512, 512)
    """Output channels of each conv of the feature encoder."""
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    """Kernel size of each conv (receptive field 400 samples = 25 ms at 16 kHz for the default)."""
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    """Stride of each conv (product 320 = 20 ms hop at 16 kHz for the default)."""
    conv_bias: bool = False
    """Whether the feature-encoder convs have a bias (True in the "layer" norm checkpoints)."""
    feat_extract_norm: str = "group"
    """"group": GroupNorm (one group per channel) after conv 0 only; "layer": LayerNorm after every conv."""
    feat_extract_activation: str = "gelu"
    """Activation of the feature encoder and of the positional conv."""
    feat_proj_layer_norm: bool = True
    """LayerNorm before the feature projection (always on in wav2vec2; a HuBERT config option)."""
    hidden_size: int = 768
    """Transformer width."""
    num_hidden_layers: int = 12
    """Number of transformer layers."""
    num_attention_heads: int = 12
    """Attention heads (hidden_size must divide evenly)."""
    intermediate_size: int = 3072
    """Feed-forward inner width."""
    hidden_act: str = "gelu"
    """Feed-forward activation."""
    layer_norm_eps: float = 1e-5
    """Epsilon of the projection and transformer LayerNorms (feature-encoder norms use torch's 1e-5)."""
    num_conv_pos_embeddings: int = 128
    """Kernel size of the positional conv embedding (even → one output sample trimmed, as in HF)."""
    num_conv_pos_embedding_groups: int = 16
    """Groups of the positional conv."""
    do_stable_layer_norm: bool = False
    """False: post-LN layers, LayerNorm before the stack (base). True: pre-LN layers, LN after (large)."""

    def __post_init__(self):
        n = len(self.conv_dim)
        if not (len(self.conv_kernel) == len(self.conv_stride) == n and n > 0):
            raise UserError("wav2vec2 config: conv_dim, conv_kernel and conv_stride must have the same length")
        if self.feat_extract_norm not in ("group", "layer"):
            raise UserError(
                f"wav2vec2 config: feat_extract_norm must be 'group' or 'layer', got {self.feat_extract_norm!r}"
            )
        for act in (self.feat_extract_activation, self.hidden_act):
            if act not in _ACTIVATIONS:
                raise UserError(
                    f"wav2vec2 config: activation {act!r} is not supported; use one of {sorted(_ACTIVATIONS)}"
                )
        if self.hidden_size % self.num_attention_heads:
            raise UserError("wav2vec2 config: hidden_size must be a multiple of num_attention_heads")

    @property
    def total_stride(self) -> int:
        """Samples per output frame (320 → 50 Hz at 16 kHz)."""
        s = 1
        for x in self.conv_stride:
            s *= x
        return s

    @property
    def receptive_field(self) -> int:
        """Samples seen by one output frame of the feature encoder (400 for the default convs)."""
        rf, jump = 1, 1
        for k, s in zip(self.conv_kernel, self.conv_stride):
            rf += (k - 1) * jump
            jump *= s
        return rf

    @classmethod
    def base(cls) -> Wav2Vec2Config:
        """wav2vec2-base / hubert-base (95 M parameters): group norm, post-LN transformer."""
        return cls()

    @classmethod
    def large(cls) -> Wav2Vec2Config:
        """wav2vec2-large-lv60 / hubert-large (317 M): layer norm convs with bias, stable (pre-LN) layers."""
        return cls(
            conv_bias=True,
            feat_extract_norm="layer",
            hidden_size=1024,
            num_hidden_layers=24,
            num_attention_heads=16,
            intermediate_size=4096,
            do_stable_layer_norm=True,
        )

    @classmethod
    def tiny(cls) -> Wav2Vec2Config:
        """Tests: real 320 stride and 400-sample receptive field, 2 layers of width 32."""
        return cls(
            conv_dim=(16,) * 7,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=4,
        )

    @classmethod
    def small(cls) -> Wav2Vec2Config:
        """The demo's choice: wav2vec2-base."""
        return cls.base()

    @classmethod
    def paper(cls) -> Wav2Vec2Config:
        """VASA-1 says only "Wav2Vec2"; we take the base model (the usual talking-face choice)."""
        return cls.base()

    @classmethod
    def from_hf(cls, hf: Mapping[str, Any]) -> Wav2Vec2Config:
        """Reads a Hugging Face ``config.json`` dict (Wav2Vec2Config or HubertConfig)."""
        model_type = hf.get("model_type", "wav2vec2")
        if model_type not in ("wav2vec2", "hubert"):
            raise UserError(f"config.json has model_type {model_type!r}; only 'wav2vec2' and 'hubert' are supported")
        if hf.get("add_adapter", False):
            raise UserError("config.json has add_adapter=true; wav2vec2 adapters are not supported")
        if hf.get("adapter_attn_dim") is not None:
            raise UserError("config.json sets adapter_attn_dim (MMS attention adapters); not supported")
        if hf.get("conv_pos_batch_norm", False):
            raise UserError(
                "config.json has conv_pos_batch_norm=true; only the weight-norm positional conv is supported"
            )
        kw: dict[str, Any] = {"model_type": model_type}
        for f in dataclasses.fields(cls):
            if f.name in hf and f.name != "model_type":
                v = hf[f.name]
                kw[f.name] = tuple(v) if isinstance(v, list) else v
        if model_type == "wav2vec2":
            kw["feat_proj_layer_norm"] = True
        return cls(**kw)


def num_output_frames(num_samples: int, cfg: Wav2Vec2Config) -> int:
    """Frames out of the feature encoder for ``num_samples`` of input (VALID convs, floor)."""
    n = num_samples
    for k, s in zip(cfg.conv_kernel, cfg.conv_stride):
        n = (n - k) // s + 1
        if n <= 0:
            return 0
    return n


def _layer_norm(dim: int, eps: float, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(dim, epsilon=eps, use_fast_variance=False, rngs=rngs)


class ConvLayer(nnx.Module):
    """Conv1d (VALID, strided) → optional GroupNorm/LayerNorm → activation."""

    def __init__(self, cfg: Wav2Vec2Config, i: int, *, rngs: nnx.Rngs):
        c_in = cfg.conv_dim[i - 1] if i > 0 else 1
        c_out = cfg.conv_dim[i]
        self.conv = nnx.Conv(
            c_in,
            c_out,
            (cfg.conv_kernel[i],),
            (cfg.conv_stride[i],),
            padding="VALID",
            use_bias=cfg.conv_bias,
            rngs=rngs,
        )
        if cfg.feat_extract_norm == "layer":
            self.norm = _layer_norm(c_out, 1e-5, rngs)
        elif i == 0:  # GroupNorm with one group per channel: normalises each channel over time
            self.norm = nnx.GroupNorm(c_out, num_groups=c_out, epsilon=1e-5, use_fast_variance=False, rngs=rngs)
        else:
            self.norm = None
        self.act = _ACTIVATIONS[cfg.feat_extract_activation]

    def __call__(self, x_BxTxC: jax.Array) -> jax.Array:
        x_BxTxC = self.conv(x_BxTxC)
        if self.norm is not None:
            x_BxTxC = self.norm(x_BxTxC)
        return self.act(x_BxTxC)


class Attention(nnx.Module):
    """Bidirectional multi-head self-attention (no mask: every input is a full, unpadded clip)."""

    def __init__(self, cfg: Wav2Vec2Config, *, rngs: nnx.Rngs):
        d = cfg.hidden_size
        self.num_heads = cfg.num_attention_heads
        self.q_proj = nnx.Linear(d, d, rngs=rngs)
        self.k_proj = nnx.Linear(d, d, rngs=rngs)
        self.v_proj = nnx.Linear(d, d, rngs=rngs)
        self.out_proj = nnx.Linear(d, d, rngs=rngs)

    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        B, T, D = x_BxTxD.shape
        H = self.num_heads
        q_BxTxHxK = self.q_proj(x_BxTxD).reshape(B, T, H, D // H)
        k_BxTxHxK = self.k_proj(x_BxTxD).reshape(B, T, H, D // H)
        v_BxTxHxK = self.v_proj(x_BxTxD).reshape(B, T, H, D // H)
        logits_BxHxTxS = jnp.einsum("bthk,bshk->bhts", q_BxTxHxK * (D // H) ** -0.5, k_BxTxHxK)
        w_BxHxTxS = jax.nn.softmax(logits_BxHxTxS, axis=-1)
        o_BxTxHxK = jnp.einsum("bhts,bshk->bthk", w_BxHxTxS, v_BxTxHxK)
        return self.out_proj(o_BxTxHxK.reshape(B, T, D))


class EncoderLayer(nnx.Module):
    """Transformer layer; post-LN (base) or pre-LN (``do_stable_layer_norm``)."""

    def __init__(self, cfg: Wav2Vec2Config, *, rngs: nnx.Rngs):
        d = cfg.hidden_size
        self.pre_ln = cfg.do_stable_layer_norm
        self.attention = Attention(cfg, rngs=rngs)
        self.layer_norm = _layer_norm(d, cfg.layer_norm_eps, rngs)
        self.intermediate_dense = nnx.Linear(d, cfg.intermediate_size, rngs=rngs)
        self.output_dense = nnx.Linear(cfg.intermediate_size, d, rngs=rngs)
        self.final_layer_norm = _layer_norm(d, cfg.layer_norm_eps, rngs)
        self.act = _ACTIVATIONS[cfg.hidden_act]

    def _ffn(self, x: jax.Array) -> jax.Array:
        return self.output_dense(self.act(self.intermediate_dense(x)))

    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        if self.pre_ln:
            x_BxTxD = x_BxTxD + self.attention(self.layer_norm(x_BxTxD))
            return x_BxTxD + self._ffn(self.final_layer_norm(x_BxTxD))
        x_BxTxD = self.layer_norm(x_BxTxD + self.attention(x_BxTxD))
        return self.final_layer_norm(x_BxTxD + self._ffn(x_BxTxD))


class Wav2Vec2(nnx.Module):
    """wav2vec2/HuBERT encoder. ``model(wave_BxN)`` → ``(last_hidden_BxTxD, hidden_states)``.

    ``hidden_states`` is a tuple of ``num_hidden_layers + 1`` arrays ``B×T×D``: the transformer input (after
    the positional embedding, and after the pre-stack LayerNorm in the post-LN variant), then each layer's
    output. As in transformers ≥ 5, the stable-layer-norm variant's last entry is *before* the final
    LayerNorm (``last_hidden_BxTxD`` is after it); transformers 4.x put the normalised one there instead.
    """

    def __init__(self, cfg: Wav2Vec2Config, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.conv_layers = nnx.List([ConvLayer(cfg, i, rngs=rngs) for i in range(len(cfg.conv_dim))])
        c = cfg.conv_dim[-1]
        self.feature_norm = _layer_norm(c, cfg.layer_norm_eps, rngs) if cfg.feat_proj_layer_norm else None
        self.feature_proj = nnx.Linear(c, cfg.hidden_size, rngs=rngs)
        k = cfg.num_conv_pos_embeddings
        # "same" padding k//2 both sides, then HF trims one sample when k is even: (k//2, k//2 - (k even)).
        self.pos_conv = nnx.Conv(
            cfg.hidden_size,
            cfg.hidden_size,
            (k,),
            padding=[(k // 2, k // 2 - (k % 2 == 0))],
            feature_group_count=cfg.num_conv_pos_embedding_groups,
            rngs=rngs,
        )
        self.encoder_norm = _layer_norm(cfg.hidden_size, cfg.layer_norm_eps, rngs)
        self.layers = nnx.List([EncoderLayer(cfg, rngs=rngs) for _ in range(cfg.num_hidden_layers)])

    def features(self, wave_BxN: jax.Array) -> jax.Array:
        """Conv feature encoder: ``B×N`` samples → ``B×T×conv_dim[-1]`` at 50 Hz."""
        x_BxTxC = wave_BxN[..., None]
        for layer in self.conv_layers:
            x_BxTxC = layer(x_BxTxC)
        return x_BxTxC

    def __call__(self, wave_BxN: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        return self.encode(self.features(wave_BxN))

    def encode(self, x_BxTxC: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        """Everything after the conv feature encoder: ``B×T×conv_dim[-1]`` features → ``__call__``'s outputs.

        Split from ``__call__`` so that a caller can resample the 50 Hz conv features first (JoyVASA's and
        FaceFormer's encoders interpolate them to the video frame rate before the transformer).
        """
        if self.feature_norm is not None:
            x_BxTxC = self.feature_norm(x_BxTxC)
        x_BxTxD = self.feature_proj(x_BxTxC)
        x_BxTxD = x_BxTxD + _ACTIVATIONS[self.cfg.feat_extract_activation](self.pos_conv(x_BxTxD))
        stable = self.cfg.do_stable_layer_norm
        if not stable:
            x_BxTxD = self.encoder_norm(x_BxTxD)
        hidden = [x_BxTxD]
        for layer in self.layers:
            x_BxTxD = layer(x_BxTxD)
            hidden.append(x_BxTxD)
        if stable:
            x_BxTxD = self.encoder_norm(x_BxTxD)
        return x_BxTxD, tuple(hidden)


def apply(graphdef: nnx.GraphDef, params: nnx.State, wave_BxN: jax.Array) -> tuple[jax.Array, tuple]:
    """Pure forward pass of a split ``Wav2Vec2`` (jit this; ``graphdef`` is static)."""
    return nnx.merge(graphdef, params)(wave_BxN)


def make_forward(model: Wav2Vec2):
    """Returns ``(forward, params)`` where ``forward = jax.jit(lambda params, wave_BxN: ...)`` is pure."""
    graphdef, params = nnx.split(model)

    @jax.jit
    def forward(params: nnx.State, wave_BxN: jax.Array) -> tuple[jax.Array, tuple]:
        return apply(graphdef, params, wave_BxN)

    return forward, params
