"""JoyVASA's motion diffusion transformer (``DitTalkingHead`` + ``DenoisingNetwork``) as NNX modules.

JoyVASA (Cao et al. 2024, "JoyVASA: Portrait and Animal Image Animation with Diffusion-Based Audio-Driven
Facial Dynamics and Head Motion Generation", arXiv 2411.09209, §3.2) generates LivePortrait motion
coefficients from audio with a DiffPoseTalk-style transformer decoder (Sun et al. 2024). Per window of
``L = window`` frames with ``K = context`` frames carried over from the previous window:

```
noisy motion x_t (L×M) ─┐
prev motion (K×M) ──────┴► concat (K+L)×M ─► feature_proj ─► + sinusoid position term (see pe_form)
                                                            + step embedding MLP(sin(t)) (one vector)
prev audio (K×D) ─┐                                               │ tgt
audio feats (L×D) ┴► concat (K+L)×D ─────────────── memory ──────►│
                                         8 × post-LN decoder layer: self-attention (no mask),
                                             cross-attention with the alignment mask (token i sees audio
                                             frame i only), GELU MLP ×4
                                         ─► motion_dec: Linear D→D/2, GELU, Linear → M   ((K+L)×M)
```

The window's prediction is the last L rows. ``audio feats`` are the encoder's hidden states mapped by
``audio_feature_map`` (``audio_dim → D``). Learned tensors beside the layers: ``start_motion_feat`` and
``start_audio_feat`` (the "previous" motion and audio of the first window) and ``null_audio_feat`` (the
unconditional audio for classifier-free guidance).

The position term: upstream's ``PositionalEncoding.forward`` added ``pe[:, L]`` — a single row, L = sequence
length, the same vector for every token — until commit 74290f6 (2025-12-09) made it the usual ``pe[:, :L]``.
The released weights were trained with the former; ``pe_form`` selects (default "constant"). Either way the
transformer has no other position signal except the alignment mask (which ties token i to audio frame i).
Dropout (p = 0.1 in upstream's layers) is an identity in eval mode and is not ported. ``indicator`` is not
ported either: upstream's network ignores it unless built with ``use_indicator``, which ``load_model`` never
sets.

Pure use: ``graphdef, params = nnx.split(model)``; ``denoise_fn(graphdef)`` gives a jittable
``(params, x_t, audio, prev_motion, prev_audio, step) → x0`` with ``nnx.merge`` inside.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vasajax.zoo.joyvasa.config import JoyVASAConfig


def _gelu(x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x, approximate=False)  # torch's default (erf) GELU


def sinusoid(positions: jax.Array, dim: int) -> jax.Array:
    """Rows ``positions`` of the vanilla sinusoid table: ``[..., 2i] = sin(p·ω_i)``, ``[..., 2i+1] = cos(p·ω_i)``,
    ``ω_i = 10000^(-2i/dim)`` (float32, as upstream builds it)."""
    omega = jnp.exp(jnp.arange(0, dim, 2, dtype=jnp.float32) * (-math.log(10000.0) / dim))
    angle = positions.astype(jnp.float32)[..., None] * omega
    return jnp.stack([jnp.sin(angle), jnp.cos(angle)], axis=-1).reshape(*angle.shape[:-1], dim)


def alignment_mask(length: int, width: int) -> np.ndarray:
    """``length × length`` bool, True where token i may attend to audio frame j: ``max(0, i-w+1) <= j < i+w``
    (upstream's ``enc_dec_mask`` with frame width 1, expansion w - 1, inverted). ``width <= 0``: all True."""
    i = np.arange(length)[:, None]
    j = np.arange(length)[None, :]
    if width <= 0:
        return np.ones((length, length), bool)
    return (j >= np.maximum(0, i - (width - 1))) & (j < i + width)


class Attention(nnx.Module):
    """torch ``nn.MultiheadAttention`` (batch first): q from the queries, k and v from the keys."""

    def __init__(self, dim: int, num_heads: int, *, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.q = nnx.Linear(dim, dim, rngs=rngs)
        self.kv = nnx.Linear(dim, 2 * dim, rngs=rngs)
        self.out = nnx.Linear(dim, dim, rngs=rngs)

    def __call__(self, x_BxTxD: jax.Array, mem_BxSxD: jax.Array, allowed_TxS: np.ndarray | None) -> jax.Array:
        B, T, D = x_BxTxD.shape
        S = mem_BxSxD.shape[1]
        H = self.num_heads
        q_BxTxHxK = self.q(x_BxTxD).reshape(B, T, H, D // H)
        k_BxSxD, v_BxSxD = jnp.split(self.kv(mem_BxSxD), 2, axis=-1)
        k_BxSxHxK = k_BxSxD.reshape(B, S, H, D // H)
        v_BxSxHxK = v_BxSxD.reshape(B, S, H, D // H)
        logits_BxHxTxS = jnp.einsum("bthk,bshk->bhts", q_BxTxHxK * (D // H) ** -0.5, k_BxSxHxK)
        if allowed_TxS is not None:
            logits_BxHxTxS = jnp.where(allowed_TxS, logits_BxHxTxS, -jnp.inf)
        w_BxHxTxS = jax.nn.softmax(logits_BxHxTxS, axis=-1)
        o_BxTxHxK = jnp.einsum("bhts,bshk->bthk", w_BxHxTxS, v_BxSxHxK)
        return self.out(o_BxTxHxK.reshape(B, T, D))


class DecoderLayer(nnx.Module):
    """torch ``nn.TransformerDecoderLayer`` (post-LN, GELU, eval): self-attn, cross-attn, MLP, each + LN."""

    def __init__(self, cfg: JoyVASAConfig, *, rngs: nnx.Rngs):
        d = cfg.width
        self.self_attn = Attention(d, cfg.num_heads, rngs=rngs)
        self.cross_attn = Attention(d, cfg.num_heads, rngs=rngs)
        self.linear1 = nnx.Linear(d, cfg.mlp_ratio * d, rngs=rngs)
        self.linear2 = nnx.Linear(cfg.mlp_ratio * d, d, rngs=rngs)
        self.norm1 = nnx.LayerNorm(d, epsilon=1e-5, use_fast_variance=False, rngs=rngs)
        self.norm2 = nnx.LayerNorm(d, epsilon=1e-5, use_fast_variance=False, rngs=rngs)
        self.norm3 = nnx.LayerNorm(d, epsilon=1e-5, use_fast_variance=False, rngs=rngs)

    def __call__(self, x_BxTxD: jax.Array, mem_BxSxD: jax.Array, allowed_TxS: np.ndarray | None) -> jax.Array:
        x_BxTxD = self.norm1(x_BxTxD + self.self_attn(x_BxTxD, x_BxTxD, None))
        x_BxTxD = self.norm2(x_BxTxD + self.cross_attn(x_BxTxD, mem_BxSxD, allowed_TxS))
        return self.norm3(x_BxTxD + self.linear2(_gelu(self.linear1(x_BxTxD))))


class JoyVASADiT(nnx.Module):
    """The denoiser H(x_t, t, audio, prev motion, prev audio) → x0 (or noise) and its learned conditions."""

    def __init__(self, cfg: JoyVASAConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d, m, k = cfg.width, cfg.motion_dim, cfg.context
        self.audio_feature_map = nnx.Linear(cfg.audio_dim, d, rngs=rngs)
        self.start_audio_feat = nnx.Param(jax.random.normal(rngs.params(), (1, k, d)))
        self.start_motion_feat = nnx.Param(jax.random.normal(rngs.params(), (1, k, m)))
        self.null_audio_feat = nnx.Param(jax.random.normal(rngs.params(), (1, 1, d)))
        self.step_map_in = nnx.Linear(d, d, rngs=rngs)
        self.step_map_out = nnx.Linear(d, d, rngs=rngs)
        self.feature_proj = nnx.Linear(m, d, rngs=rngs)
        self.layers = nnx.List([DecoderLayer(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
        self.motion_dec_in = nnx.Linear(d, d // 2, rngs=rngs)
        self.motion_dec_out = nnx.Linear(d // 2, m, rngs=rngs)

    def audio_features(self, hidden_BxLxA: jax.Array) -> jax.Array:
        """Audio-encoder hidden states at the frame rate → the DiT's audio condition ``B×L×width``."""
        return self.audio_feature_map(hidden_BxLxA)

    def start_context(self, batch: int) -> tuple[jax.Array, jax.Array]:
        """``(prev_motion_BxKxM, prev_audio_BxKxD)`` of a clip's first window: the learned start tensors."""
        cfg = self.cfg
        return (
            jnp.broadcast_to(self.start_motion_feat[...], (batch, cfg.context, cfg.motion_dim)),
            jnp.broadcast_to(self.start_audio_feat[...], (batch, cfg.context, cfg.width)),
        )

    def null_audio(self, batch: int) -> jax.Array:
        """The unconditional audio features ``B×L×width`` (one learned vector repeated)."""
        return jnp.broadcast_to(self.null_audio_feat[...], (batch, self.cfg.window, self.cfg.width))

    def __call__(
        self,
        x_t_BxLxM: jax.Array,
        audio_BxLxD: jax.Array,
        prev_motion_BxKxM: jax.Array,
        prev_audio_BxKxD: jax.Array,
        step_B: jax.Array,
    ) -> jax.Array:
        """The network's output for context and window, ``B×(K+L)×M`` (upstream's ``denoising_net``)."""
        cfg = self.cfg
        step_BxD = self.step_map_out(_gelu(self.step_map_in(sinusoid(step_B, cfg.width))))
        x_BxTxD = self.feature_proj(jnp.concatenate([prev_motion_BxKxM, x_t_BxLxM], axis=1))
        T = x_BxTxD.shape[1]
        if cfg.pe_form == "constant":
            pos_TxD = sinusoid(jnp.full((1,), T), cfg.width)
        else:
            pos_TxD = sinusoid(jnp.arange(T), cfg.width)
        x_BxTxD = x_BxTxD + pos_TxD + step_BxD[:, None]
        mem_BxTxD = jnp.concatenate([prev_audio_BxKxD, audio_BxLxD], axis=1)
        allowed = alignment_mask(T, cfg.align_mask_width) if cfg.align_mask_width > 0 else None
        for layer in self.layers:
            x_BxTxD = layer(x_BxTxD, mem_BxTxD, allowed)
        return self.motion_dec_out(_gelu(self.motion_dec_in(x_BxTxD)))


def denoise_fn(graphdef: nnx.GraphDef):
    """``(params, x_t, audio, prev_motion, prev_audio, step) → B×(K+L)×M``: pure, for ``jax.jit``."""

    def denoise(params, x_t_BxLxM, audio_BxLxD, prev_motion_BxKxM, prev_audio_BxKxD, step_B):
        return nnx.merge(graphdef, params)(x_t_BxLxM, audio_BxLxD, prev_motion_BxKxM, prev_audio_BxKxD, step_B)

    return denoise
