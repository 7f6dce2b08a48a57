"""JoyVASA's audio front end: HuBERT / wav2vec2 hidden states at the video frame rate.

Upstream (``DitTalkingHead.extract_audio_feature`` with its ``hubert.py`` / ``wav2vec2.py`` wrappers of the
transformers models) does, per window of ``L`` frames (``L · 640`` samples at 16 kHz, 25 fps):

1. ``pad_audio``: reflect-pad so that the conv encoder yields a whole number of 20 ms frames (for a window
   of exactly ``n · 320`` samples: 20 samples reflected on each side, twice — the second pad reflects the
   first — i.e. 80 samples, so 64000 samples give 200 conv frames);
2. the conv feature encoder (50 Hz), truncated to ``round(2L · 50 / fps)`` frames and linearly resampled to
   ``2L`` frames (a no-op at 25 fps, where 2L frames is exactly 50 Hz);
3. the rest of the encoder (projection, positional conv, transformer): the *last* hidden state;
4. linear resampling from ``2L`` to ``L`` frames (torch ``F.interpolate(mode="linear",
   align_corners=False)``: the mean of frames 2i and 2i+1).

The DiT's ``audio_feature_map`` then maps the result to its width (``JoyVASADiT.audio_features``). The encoder
is ``vasajax.motion.wav2vec2.Wav2Vec2`` (the same network as transformers' ``HubertModel`` /
``Wav2Vec2Model``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from vasajax.motion.wav2vec2 import Wav2Vec2


def pad_audio(wave_BxN: jax.Array, unit: int = 320, threshold: int = 80) -> jax.Array:
    """Upstream's ``pad_audio``: reflect padding (applied twice) and an edge sample, from the static length."""
    n = wave_BxN.shape[-1]
    side = math.ceil((unit * (n // unit) + threshold - n) / 2)
    if side < 0:
        return wave_BxN
    reflect, replicate = side // 2, side % 2
    widths = [(0, 0)] * (wave_BxN.ndim - 1)
    if reflect > 0:
        wave_BxN = jnp.pad(wave_BxN, [*widths, (reflect, reflect)], mode="reflect")
        wave_BxN = jnp.pad(wave_BxN, [*widths, (reflect, reflect)], mode="reflect")
    if replicate > 0:
        wave_BxN = jnp.pad(wave_BxN, [*widths, (1, 1)], mode="edge")
    return wave_BxN


def resample_linear(x_BxTxC: jax.Array, size: int) -> jax.Array:
    """torch ``F.interpolate(x, size, mode="linear", align_corners=False)`` along the time axis (channels-last)."""
    n = x_BxTxC.shape[1]
    if n == size:
        return x_BxTxC
    src = jnp.maximum((jnp.arange(size, dtype=jnp.float32) + 0.5) * (n / size) - 0.5, 0.0)
    i0 = jnp.floor(src).astype(jnp.int32)
    i1 = jnp.minimum(i0 + 1, n - 1)
    w1 = (src - i0)[None, :, None]
    return x_BxTxC[:, i0] * (1 - w1) + x_BxTxC[:, i1] * w1


def encode_window(encoder: Wav2Vec2, wave_BxN: jax.Array, frames: int, fps: int = 25) -> jax.Array:
    """Steps 1–4 above: ``B×N`` samples of one window → last hidden states ``B×frames×hidden``."""
    feats_BxTxC = encoder.features(pad_audio(wave_BxN))
    feats_BxTxC = feats_BxTxC[:, : round(2 * frames * 50 / fps)]
    feats_BxTxC = resample_linear(feats_BxTxC, 2 * frames)
    hidden_BxTxD, _ = encoder.encode(feats_BxTxC)
    return resample_linear(hidden_BxTxD, frames)


def encode_fn(graphdef: nnx.GraphDef, frames: int, fps: int = 25):
    """``(params, wave_BxN) → B×frames×hidden``: pure, for ``jax.jit``."""

    def encode(params, wave_BxN):
        return encode_window(nnx.merge(graphdef, params), wave_BxN, frames, fps)

    return encode
