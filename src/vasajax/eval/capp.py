"""CAPP, Contrastive Audio and Pose Pretraining: an audio–head-pose alignment score (VASA-1 §4.2, §4.3).

VASA-1: "Inspired by CLIP, we jointly train a pose sequence encoder and an audio sequence encoder and predict
whether the input pose sequence and audio are paired. The audio encoder is initialized from a pretrained
Wav2Vec2 network and the pose encoder is a randomly initialized 6-layer transformer network. The input window
size is 3 seconds." The score is the cosine similarity of the two embeddings (0.608 for real VoxCeleb2 pairs,
falling towards 0 with frame shifts of more than two frames; tables 3–4).

Here: both encoders are pre-LN transformers over the window's video frames (75 at 25 fps) with learned
positions and mean pooling, then a linear projection to a unit-norm embedding; the pose encoder has 6 layers
in ``small()`` and ``paper()``. Pose input = yaw, pitch, roll (radians, as ``facetrack`` re-extracts them from
frames) → degrees minus the window mean, divided by 5, plus per-frame differences (so static head orientation
carries no signal). Audio input = per-frame ``vasajax.motion.audio.frame_features``: log-mel (``small()``,
no weights needed) or wav2vec2 features (``paper()``: VASA-1's pretrained encoder, here frozen, with a
transformer on top; needs a user's wav2vec2 checkpoint). CLIP loss with a learned temperature.

**Caveat and what training here gave.** The demonstration trainer (``python -m vasajax.eval.capp_train``) uses
SynthTalk, whose head motion is linked to speech only through nods on stressed syllables and faster sway while
speaking; a CAPP trained on it can only score that link, not real human audio–pose behaviour, and its scores
are not comparable with VASA-1's tables (trained on 2K hours of real video). Measured on the 2-core CPU
(``small``, batch 32, held-out sentences): with 345 clips and 400 steps (17 min) the training loss fell to
0.68 (positive-pair cosine 0.51) while held-out aligned pairs scored 0.011 — memorised clips, no transferable
link; with 2,588 clips and 500 steps (11 min) the loss barely left chance (3.81 → 3.69) and held-out pairs
scored 0.016, falling monotonically but negligibly with frame shifts (±4: 0.0159) and rising with pose-change
scale (×0.2: −0.053, ×3: +0.052: it mostly reads motion magnitude). So no checkpoint is shipped: a useful
CAPP needs far longer training (GPU) and real data; the model, loss, trainer and table-3/4 evaluation are
ready for that.

    model = CappModel(CappConfig.small(), rngs=nnx.Rngs(0))
    score = capp_score(model, pose_Tx3, audio_feats_TxA)        # mean cosine over 3 s windows
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vasajax.errors import UserError
from vasajax.motion.audio import AudioConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class CappConfig:
    """CAPP model sizes and inputs."""

    window: int = 75
    """Frames per window (3 s at 25 fps, as in VASA-1)."""
    pose_dim: int = 6
    """Pose features per frame: 3 centred angles + 3 angle differences (see :func:`pose_features`)."""
    audio_dim: int = 160
    """Audio features per frame (``motion.audio.feature_dim``: 160 for 80-bin log-mel, 1536 for wav2vec2-base)."""
    audio_kind: str = "logmel"
    """Which ``motion.audio.AudioConfig`` makes the audio features: "logmel" or "wav2vec2"."""
    width: int = 64
    """Transformer width of both encoders."""
    pose_layers: int = 6
    """Pose encoder depth (6 in VASA-1)."""
    audio_layers: int = 2
    """Audio encoder depth (on top of the fixed features)."""
    heads: int = 4
    """Attention heads."""
    embed: int = 64
    """Joint embedding size."""

    @classmethod
    def tiny(cls) -> CappConfig:
        """Tests: width 32, 2 + 1 layers, 25-frame windows."""
        return cls(window=25, audio_dim=32, width=32, pose_layers=2, audio_layers=1, heads=2, embed=32)

    @classmethod
    def small(cls) -> CappConfig:
        """The SynthTalk demonstration: 3 s windows, log-mel audio, 6-layer pose encoder (CPU-trainable)."""
        return cls()

    @classmethod
    def paper(cls) -> CappConfig:
        """VASA-1's setting: wav2vec2-base features (frozen here), 6-layer pose encoder, width 256."""
        return cls(audio_dim=1536, audio_kind="wav2vec2", width=256, audio_layers=2, heads=8, embed=256)


PRESETS = {"tiny": CappConfig.tiny, "small": CappConfig.small, "paper": CappConfig.paper}


class Block(nnx.Module):
    """Pre-LN transformer block: x + MHA(LN x), x + MLP(LN x)."""

    def __init__(self, width: int, heads: int, *, rngs: nnx.Rngs):
        self.ln1, self.ln2 = nnx.LayerNorm(width, rngs=rngs), nnx.LayerNorm(width, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(heads, width, decode=False, rngs=rngs)
        self.fc1, self.fc2 = nnx.Linear(width, 4 * width, rngs=rngs), nnx.Linear(4 * width, width, rngs=rngs)

    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        x = x_BxTxD + self.attn(self.ln1(x_BxTxD))
        return x + self.fc2(jax.nn.gelu(self.fc1(self.ln2(x))))


class SeqEncoder(nnx.Module):
    """Linear in, learned positions, transformer blocks, LN, mean over time, linear out, L2-normalised."""

    def __init__(self, din: int, layers: int, cfg: CappConfig, *, rngs: nnx.Rngs):
        self.proj = nnx.Linear(din, cfg.width, rngs=rngs)
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (cfg.window, cfg.width)))
        self.blocks = nnx.List([Block(cfg.width, cfg.heads, rngs=rngs) for _ in range(layers)])
        self.ln = nnx.LayerNorm(cfg.width, rngs=rngs)
        self.out = nnx.Linear(cfg.width, cfg.embed, rngs=rngs)

    def __call__(self, x_BxTxF: jax.Array) -> jax.Array:
        x = self.proj(x_BxTxF) + self.pos[...]
        for b in self.blocks:
            x = b(x)
        e = self.out(self.ln(x).mean(1))
        return e / jnp.linalg.norm(e, axis=-1, keepdims=True).clip(1e-6)


class CappModel(nnx.Module):
    """``model(pose_BxTxP, audio_BxTxA) -> (pose_emb_BxE, audio_emb_BxE)``, unit-norm; plus a learned logit
    scale (CLIP's temperature)."""

    def __init__(self, cfg: CappConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.pose = SeqEncoder(cfg.pose_dim, cfg.pose_layers, cfg, rngs=rngs)
        self.audio = SeqEncoder(cfg.audio_dim, cfg.audio_layers, cfg, rngs=rngs)
        self.logit_scale = nnx.Param(jnp.asarray(np.log(1 / 0.07), jnp.float32))

    def __call__(self, pose_BxTxP: jax.Array, audio_BxTxA: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.pose(pose_BxTxP), self.audio(audio_BxTxA)


def clip_loss(
    model: CappModel, pose_BxTxP: jax.Array, audio_BxTxA: jax.Array, pose_neg_BxTxP: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """Symmetric InfoNCE over the batch (pair i ↔ i positive) and the mean cosine of the positive pairs.

    ``pose_neg_BxTxP`` (optional): the same clips' poses shifted in time, extra negatives for each audio window
    (in-batch negatives alone come from other clips, so they teach little about fine timing)."""
    p, a = model(pose_BxTxP, audio_BxTxA)
    scale = jnp.exp(model.logit_scale[...].clip(0, np.log(100)))
    logits = scale * p @ a.T  # pose rows × audio columns
    audio_rows = logits.T
    if pose_neg_BxTxP is not None:
        audio_rows = jnp.concatenate([audio_rows, scale * a @ model.pose(pose_neg_BxTxP).T], axis=1)
    labels = jnp.arange(p.shape[0])
    lp = -jnp.mean(jax.nn.log_softmax(logits, axis=1)[labels, labels])
    la = -jnp.mean(jax.nn.log_softmax(audio_rows, axis=1)[labels, labels])
    return (lp + la) / 2, jnp.mean(jnp.sum(p * a, -1))


def pose_features(pose_Tx3: np.ndarray) -> np.ndarray:
    """yaw, pitch, roll (radians) → T×6: degrees minus the mean, / 5; and frame differences in degrees
    (first row repeats the second). NaN frames (no face) are filled by linear interpolation."""
    p = np.degrees(np.asarray(pose_Tx3, np.float64)[..., :3])
    ok = np.all(np.isfinite(p), axis=-1)
    if not ok.any():
        raise UserError("no frame with a head pose; CAPP needs a tracked face")
    if not ok.all():
        idx = np.arange(len(p))
        p = np.stack([np.interp(idx, idx[ok], p[ok, j]) for j in range(3)], -1)
    d = np.diff(p, axis=0)
    d = np.concatenate([d[:1], d], 0) if len(d) else np.zeros_like(p)
    return np.concatenate([(p - p.mean(0)) / 5.0, d], -1).astype(np.float32)


def windows(n: int, window: int, stride: int | None = None) -> list[int]:
    """Start frames of ``window``-frame windows every ``stride`` (default window/2) covering [0, n)."""
    if n < window:
        return []
    stride = stride or max(1, window // 2)
    starts = list(range(0, n - window + 1, stride))
    if starts[-1] != n - window:
        starts.append(n - window)
    return starts


@functools.partial(jax.jit, static_argnums=0)
def _embed(graphdef, state, pose_BxTxP, audio_BxTxA):
    return nnx.merge(graphdef, state)(pose_BxTxP, audio_BxTxA)


def pair_scores(model: CappModel, pose_BxTxP: np.ndarray, audio_BxTxA: np.ndarray) -> np.ndarray:
    """Cosine similarity of each (pose window, audio window) pair: B."""
    p, a = _embed(*nnx.split(model), jnp.asarray(pose_BxTxP), jnp.asarray(audio_BxTxA))
    return np.asarray(jnp.sum(p * a, -1))


def capp_score(model: CappModel, pose_Tx3: np.ndarray, audio_feats_TxA: np.ndarray) -> float:
    """CAPP of one video: mean cosine over its 3 s windows (half-overlapping); NaN if shorter than a window."""
    w = model.cfg.window
    n = min(len(pose_Tx3), len(audio_feats_TxA))
    starts = windows(n, w)
    if not starts:
        return float("nan")
    pf, af = pose_features(pose_Tx3[:n]), np.asarray(audio_feats_TxA[:n], np.float32)
    return float(
        pair_scores(model, np.stack([pf[s : s + w] for s in starts]), np.stack([af[s : s + w] for s in starts])).mean()
    )


def audio_config(cfg: CappConfig, checkpoint: str | None = None):
    """The ``motion.audio.AudioConfig`` whose ``frame_features`` this CAPP model reads."""

    return AudioConfig.small() if cfg.audio_kind == "logmel" else AudioConfig.paper(checkpoint)


# ------------------------------------------------------------------------------------------ checkpoints


def save(model: CappModel, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> None:
    """``path/config.json`` (config + ``meta``) and ``path/params.safetensors`` (float32)."""
    from safetensors.numpy import save_file

    out = pathlib.Path(path)
    out.mkdir(parents=True, exist_ok=True)
    flat = {".".join(map(str, k)): np.asarray(v) for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    save_file(flat, str(out / "params.safetensors"))
    doc = {"config": dataclasses.asdict(model.cfg), "meta": meta or {}}
    (out / "config.json").write_text(json.dumps(doc, indent=1) + "\n")


def load(path: str | os.PathLike) -> CappModel:
    """A :class:`CappModel` saved by :func:`save`."""
    from safetensors.numpy import load_file

    root = pathlib.Path(path)
    if not (root / "config.json").is_file() or not (root / "params.safetensors").is_file():
        raise UserError(f"{root} is not a CAPP checkpoint (config.json + params.safetensors); train one with "
                        "python -m vasajax.eval.capp_train")  # fmt: skip
    cfg = CappConfig(**json.loads((root / "config.json").read_text())["config"])
    model = nnx.eval_shape(lambda: CappModel(cfg, rngs=nnx.Rngs(0)))
    flat = load_file(str(root / "params.safetensors"))
    state = nnx.state(model, nnx.Param)
    for key, var in nnx.to_flat_state(state):
        name = ".".join(map(str, key))
        if name not in flat or tuple(flat[name].shape) != tuple(var.shape):
            raise UserError(f"CAPP checkpoint {root} does not match its config at {name}; re-train or re-save it")
        var.set_value(jnp.asarray(flat[name]))
    nnx.update(model, state)
    return model
