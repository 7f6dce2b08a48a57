"""Motion diffusion transformer H(X_t, t, C) -> X0 (VASA-1 §3.2, §4 "implementation details").

The denoiser sees one sliding window of W motion frames plus K context frames from the previous window:

    tokens (K + W, width):  [ X_pre·W_x + A_pre·W_a + e_ctx  |  X_t·W_x + A·W_a + X_pre[-1]·W_l ]
                            (positions: rotary embeddings in attention)
    global condition c:     emb(t) + emb(gaze θ,φ) + emb(head distance) + emb(emotion offset)
    blocks:                 pre-LN transformer encoder blocks with adaLN-Zero modulation by c (DiT,
                            Peebles & Xie 2023, which VASA-1 cites for its transformer)
    output:                 the W window tokens -> X0 estimate (zero-initialised, i.e. the data mean)

The paper gives the size (8 layers, width 512, 8 heads) and that H predicts X0, not the noise; it does not
say how conditions enter the network. Per-frame signals (audio, context motion/audio) are summed into the
frame tokens so that frame i of the window attends to its own audio directly; per-clip signals (timestep,
gaze, distance, emotion) modulate every block through adaLN-Zero, the DiT recipe for global conditions.

Condition dropout / classifier-free guidance (§3.2, eq. 2): each condition has a learned null embedding that
replaces it when ``cond.null.<name>`` is True. Conditions: ``audio`` (A, per frame, with ``audio_mask`` for
trailing frames that are absent: those use the null too), ``context`` (X_pre and A_pre together, one flag,
as the paper drops them together), ``gaze``, ``distance``, ``emotion``.

Seams: context frames use the same input projections as window frames (the denoiser's local smoothing
then reaches across the seam; rotary position embeddings make "neighbouring frame" a relative notion), and
every window token also gets an embedding of the last context frame, a direct path for continuity that
cut the toy test's seam jump by a quarter at equal training time.

Motion normalisation: the diffusion runs on normalised motion ``(x - mean) / std`` with per-dimension
statistics of the training set. They live in the model as ``NormStats`` variables (not ``nnx.Param``, so
optimisers skip them, but checkpoints and ``nnx.split`` carry them): ``motion_mean``, ``motion_std``,
``audio_mean``, ``audio_std``. Set them once from training data:
``model.set_norm_stats(compute_norm_stats(motion, audio, gaze, distance))`` (with ``condition_norm``, every preset,
the gaze and distance conditions are standardised too: ``gaze_mean``, ... ``distance_std``).
The DiT's inputs X_t and output X0 are normalised; the raw-space conditions X_pre and A, A_pre are
normalised inside ``__call__``. ``vasajax.motion.diffusion`` and ``generate`` convert at the boundaries.

Window defaults (the paper gives none; DESIGN.md lists peers' 25+5, 50+10, 80 overlap 10, 100+25):
W = 80 frames (3.2 s at 25 fps), K = 16 (0.64 s). K + W = 96 frames = 3.84 s fits the shortest VoxCeleb2
utterances (4 s), so every training clip yields a window with full context. 3.2 s spans a spoken phrase,
which paces head motion; fewer seams per second than W = 25/50 (seams are where users see jitter), and a
long window keeps a GPU busy per step (throughput). tiny() uses W = 16, K = 4 to keep tests fast. small() (the
CPU demo) uses W = 50, K = 10: a 2 s first window halves the streaming first-frame latency on a CPU, and
SynthTalk's short clips (55–135 frames) all hold a window with its context.
K = 16 gives the next window position, velocity and the phase of the ongoing head movement.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from vasajax.errors import UserError

CONDITION_NAMES = ("audio", "context", "gaze", "distance", "emotion")
CONDITION_CLIP = 3.0
"""With ``MotionConfig.condition_norm``: standardised gaze/distance are clipped to ± this many standard deviations."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class MotionConfig:
    """Size and interface of the motion DiT."""

    motion_dim: int = 70
    """Motion latent per frame: [yaw, pitch, roll (rad), tx, ty, tz] + z_dyn (stage-1 dyn dim + 6)."""
    audio_dim: int = 160
    """Audio feature per video frame (log-mel: 2 × 80 bins stacked; wav2vec2: 768 or 1024)."""
    gaze_dim: int = 2
    """Main gaze direction (θ, φ), spherical coordinates in radians."""
    distance_dim: int = 1
    """Normalised head-to-camera distance (a scalar)."""
    emotion_dim: int = 52
    """Emotion offset: clip mean of MediaPipe's 52 blendshape coefficients."""
    window: int = 80
    """W: frames generated per window (see the module docstring for the choice)."""
    context: int = 16
    """K: frames of motion and audio carried from the previous window as condition (K <= W)."""
    num_layers: int = 8
    """Transformer blocks."""
    width: int = 512
    """Token embedding width."""
    num_heads: int = 8
    """Attention heads (width must divide)."""
    mlp_ratio: float = 4.0
    """MLP hidden width = mlp_ratio × width."""
    time_freq_dim: int = 256
    """Sinusoidal timestep features fed to the timestep MLP."""
    dtype: str = "float32"
    """Compute dtype of matmuls ('float32' or 'bfloat16'); params, norms and softmax stay float32."""
    condition_norm: bool = False
    """Standardise the gaze and distance conditions by their training statistics (``gaze_mean``/``gaze_std``,
    ``distance_mean``/``distance_std``, kept like the motion's) before their embeddings. Every preset turns it on.
    Raw, they are a few hundredths of a radian / of the crop side, and a default-initialised linear layer turns
    them into a vanishing share of the global condition: the session-9/12 demo DiTs, trained without it, ignored
    the gaze control (±11° requested, < 0.5° tracked). False only for exports made before it existed."""

    def __post_init__(self):
        if self.width % self.num_heads:
            raise UserError(
                f"MotionConfig: width {self.width} is not divisible by num_heads {self.num_heads}; pick a divisor"
            )
        if not 0 <= self.context <= self.window:
            raise UserError(f"MotionConfig: context K={self.context} must be in [0, window W={self.window}]")

    @classmethod
    def tiny(cls, **kw) -> MotionConfig:
        """Tests and smoke runs: seconds on 2 CPU cores (stage-1 tiny: 8 dyn dims)."""
        return cls(
            **{
                **dict(
                    motion_dim=14,
                    window=16,
                    context=4,
                    num_layers=2,
                    width=64,
                    num_heads=4,
                    time_freq_dim=64,
                    condition_norm=True,
                ),
                **kw,
            }
        )

    @classmethod
    def small(cls, **kw) -> MotionConfig:
        """The shipped demo (stage-1 small: 64 dyn dims); W = 50, K = 10 (see the module docstring)."""
        small = dict(motion_dim=70, num_layers=6, width=256, num_heads=4, window=50, context=10, condition_norm=True)
        return cls(**{**small, **kw})

    @classmethod
    def paper(cls, **kw) -> MotionConfig:
        """VASA-1 §4: 8 layers, width 512, 8 heads (stage-1 paper: 128 dyn dims)."""
        return cls(**{**dict(motion_dim=134, num_layers=8, width=512, num_heads=8, condition_norm=True), **kw})


class CondNull(NamedTuple):
    """Per-sample flags (bool[B]): True replaces that condition by its learned null embedding (∅)."""

    audio: jax.Array
    context: jax.Array
    gaze: jax.Array
    distance: jax.Array
    emotion: jax.Array

    @classmethod
    def none(cls, batch: int) -> CondNull:
        """All conditions present."""
        return cls(*(jnp.zeros((batch,), bool) for _ in CONDITION_NAMES))


class Conditions(NamedTuple):
    """C = [X_pre, A_pre; A, g, d, e] for one batch of windows (raw, un-normalised values)."""

    audio_BxWxA: jax.Array
    audio_mask_BxW: jax.Array
    """bool; False = this audio frame is absent (trailing drop, padding of the last window) -> null."""
    motion_pre_BxKxM: jax.Array
    audio_pre_BxKxA: jax.Array
    gaze_Bx2: jax.Array
    distance_Bx1: jax.Array
    emotion_BxE: jax.Array
    null: CondNull


def empty_conditions(cfg: MotionConfig, batch: int, audio_BxWxA: jax.Array | None = None) -> Conditions:
    """Conditions with only audio given (or nothing): context, gaze, distance, emotion are ∅."""
    B, W, K = batch, cfg.window, cfg.context
    audio = jnp.zeros((B, W, cfg.audio_dim)) if audio_BxWxA is None else audio_BxWxA
    null = CondNull(
        audio=jnp.full((B,), audio_BxWxA is None),
        context=jnp.ones((B,), bool),
        gaze=jnp.ones((B,), bool),
        distance=jnp.ones((B,), bool),
        emotion=jnp.ones((B,), bool),
    )
    return Conditions(
        audio,
        jnp.ones((B, W), bool),
        jnp.zeros((B, K, cfg.motion_dim)),
        jnp.zeros((B, K, cfg.audio_dim)),
        jnp.zeros((B, cfg.gaze_dim)),
        jnp.zeros((B, cfg.distance_dim)),
        jnp.zeros((B, cfg.emotion_dim)),
        null,
    )


class NormStats(nnx.Variable):
    """Data statistics kept with the model but never trained (optimisers select ``nnx.Param``)."""


def compute_norm_stats(
    motion_NxM, audio_NxA, gaze_Nx2=None, distance_N=None, eps: float = 1e-3
) -> dict[str, jax.Array]:
    """Per-dimension mean/std over training frames (any leading shape, last axis = feature); with ``gaze_Nx2``
    and ``distance_N`` also the conditions' (``MotionConfig.condition_norm``).

    std is floored at ``eps`` (dims that never move, e.g. a fixed tz, would otherwise blow up).
    """

    def stats(x, dim):
        x = jnp.asarray(x, jnp.float32).reshape(-1, dim)
        return x.mean(0), jnp.maximum(x.std(0), eps)

    out = {}
    out["motion_mean"], out["motion_std"] = stats(motion_NxM, motion_NxM.shape[-1])
    out["audio_mean"], out["audio_std"] = stats(audio_NxA, audio_NxA.shape[-1])
    if gaze_Nx2 is not None:
        out["gaze_mean"], out["gaze_std"] = stats(gaze_Nx2, jnp.shape(gaze_Nx2)[-1])
    if distance_N is not None:
        out["distance_mean"], out["distance_std"] = stats(distance_N, 1)
    return out


def timestep_features(t_B: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
    """Sinusoidal features of integer diffusion timesteps (Vaswani et al. / DDPM)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    ang = t_B.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.cos(ang), jnp.sin(ang)], axis=-1)


def _layer_norm(x, eps: float = 1e-6):
    """Parameter-free LayerNorm in float32 (adaLN supplies scale and shift)."""
    x32 = x.astype(jnp.float32)
    mu = x32.mean(-1, keepdims=True)
    var = jnp.square(x32 - mu).mean(-1, keepdims=True)
    return ((x32 - mu) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


def _rope(x_BxLxHxd, base: float = 10_000.0):
    """Rotary position embedding (Su et al. 2021) over the frame axis, rotate-half form, in float32."""
    L, d = x_BxLxHxd.shape[1], x_BxLxHxd.shape[-1]
    freqs = base ** (-jnp.arange(0, d // 2, dtype=jnp.float32) / (d // 2))
    ang_Lxd = jnp.arange(L, dtype=jnp.float32)[:, None] * freqs[None]
    cos, sin = jnp.cos(ang_Lxd)[None, :, None], jnp.sin(ang_Lxd)[None, :, None]
    x1, x2 = jnp.split(x_BxLxHxd.astype(jnp.float32), 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1).astype(x_BxLxHxd.dtype)


def _linear(din, dout, rngs, dtype, zero=False):
    init = nnx.initializers.zeros_init() if zero else nnx.initializers.xavier_uniform()
    return nnx.Linear(din, dout, kernel_init=init, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)


class DiTBlock(nnx.Module):
    """Pre-LN self-attention + MLP, both gated by adaLN-Zero modulation from the global condition."""

    def __init__(self, cfg: MotionConfig, *, rngs: nnx.Rngs):
        d, dt = cfg.width, jnp.dtype(cfg.dtype)
        self.num_heads = cfg.num_heads
        self.qkv = _linear(d, 3 * d, rngs, dt)
        self.proj = _linear(d, d, rngs, dt)
        hidden = int(cfg.mlp_ratio * d)
        self.fc1 = _linear(d, hidden, rngs, dt)
        self.fc2 = _linear(hidden, d, rngs, dt)
        self.ada = _linear(d, 6 * d, rngs, dt, zero=True)

    def __call__(self, x_BxLxD, c_BxD):
        B, L, D = x_BxLxD.shape
        H = self.num_heads
        mods = self.ada(nnx.silu(c_BxD))[:, None, :].astype(jnp.float32)
        sh1, sc1, g1, sh2, sc2, g2 = jnp.split(mods, 6, axis=-1)
        h = (_layer_norm(x_BxLxD).astype(jnp.float32) * (1 + sc1) + sh1).astype(x_BxLxD.dtype)
        q, k, v = jnp.split(self.qkv(h).reshape(B, L, 3 * H, D // H), 3, axis=2)
        q, k = _rope(q), _rope(k)
        logits_BxHxLxL = jnp.einsum("blhd,bmhd->bhlm", q, k).astype(jnp.float32) / math.sqrt(D // H)
        attn = jax.nn.softmax(logits_BxHxLxL, axis=-1).astype(v.dtype)
        o = jnp.einsum("bhlm,bmhd->blhd", attn, v).reshape(B, L, D)
        x_BxLxD = x_BxLxD + (g1 * self.proj(o).astype(jnp.float32)).astype(x_BxLxD.dtype)
        h = (_layer_norm(x_BxLxD).astype(jnp.float32) * (1 + sc2) + sh2).astype(x_BxLxD.dtype)
        h = self.fc2(nnx.gelu(self.fc1(h), approximate=True))
        return x_BxLxD + (g2 * h.astype(jnp.float32)).astype(x_BxLxD.dtype)


class MotionDiT(nnx.Module):
    """H(X_t, t, C): predicts the clean (normalised) motion window X0."""

    def __init__(self, cfg: MotionConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d, dt = cfg.width, jnp.dtype(cfg.dtype)
        M, A = cfg.motion_dim, cfg.audio_dim
        # Per-frame inputs.
        self.in_x = _linear(M, d, rngs, dt)
        self.in_last = _linear(M, d, rngs, dt)
        self.in_audio = _linear(A, d, rngs, dt)
        self.context_type = nnx.Param(0.02 * jax.random.normal(rngs.params(), (d,)))
        # Global condition c = t + gaze + distance + emotion.
        self.t_fc1 = _linear(cfg.time_freq_dim, d, rngs, dt)
        self.t_fc2 = _linear(d, d, rngs, dt)
        self.in_gaze = _linear(cfg.gaze_dim, d, rngs, dt)
        self.in_distance = _linear(cfg.distance_dim, d, rngs, dt)
        self.in_emotion = _linear(cfg.emotion_dim, d, rngs, dt)
        # Learned nulls (∅), one per condition, in embedding space.
        null = lambda: nnx.Param(0.02 * jax.random.normal(rngs.params(), (d,)))  # noqa: E731
        self.null_audio, self.null_context = null(), null()
        self.null_gaze, self.null_distance, self.null_emotion = null(), null(), null()
        self.blocks = nnx.List([DiTBlock(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
        self.out_ada = _linear(d, 2 * d, rngs, dt, zero=True)
        self.out = _linear(d, M, rngs, dt, zero=True)
        # Data statistics (identity until set from training data).
        self.motion_mean = NormStats(jnp.zeros((M,)))
        self.motion_std = NormStats(jnp.ones((M,)))
        self.audio_mean = NormStats(jnp.zeros((A,)))
        self.audio_std = NormStats(jnp.ones((A,)))
        if cfg.condition_norm:
            self.gaze_mean, self.gaze_std = NormStats(jnp.zeros((cfg.gaze_dim,))), NormStats(jnp.ones((cfg.gaze_dim,)))
            self.distance_mean = NormStats(jnp.zeros((cfg.distance_dim,)))
            self.distance_std = NormStats(jnp.ones((cfg.distance_dim,)))

    # -- normalisation -------------------------------------------------------------------------------------
    def set_norm_stats(self, stats: dict[str, jax.Array]) -> None:
        """Store statistics from ``compute_norm_stats`` (call once before training). With ``condition_norm`` the
        gaze/distance statistics are needed too."""
        names = ["motion_mean", "motion_std", "audio_mean", "audio_std"]
        if self.cfg.condition_norm:
            names += ["gaze_mean", "gaze_std", "distance_mean", "distance_std"]
            if "gaze_mean" not in stats or "distance_mean" not in stats:
                raise UserError(
                    "condition_norm needs gaze and distance statistics: compute_norm_stats(..., gaze, distance)"
                )
        for name in names:
            getattr(self, name).value = jnp.asarray(stats[name], jnp.float32).reshape(getattr(self, name).value.shape)

    def normalize_motion(self, motion_BxTxM):
        return (motion_BxTxM - self.motion_mean.value) / self.motion_std.value

    def denormalize_motion(self, motion_BxTxM):
        return motion_BxTxM * self.motion_std.value + self.motion_mean.value

    def normalize_audio(self, audio_BxTxA):
        return (audio_BxTxA - self.audio_mean.value) / self.audio_std.value

    def normalize_conditions(self, gaze_Bx2, distance_Bx1):
        """Gaze and distance as the embeddings see them: with ``condition_norm`` standardised and clipped to
        ±``CONDITION_CLIP`` standard deviations (a request beyond what the data shows acts as the data's edge, not
        as an input the model never saw: SynthTalk's head distance varies by ~1 %, so "25 % farther" would be ~25σ);
        without it raw."""
        if not self.cfg.condition_norm:
            return gaze_Bx2, distance_Bx1
        gaze = (gaze_Bx2 - self.gaze_mean.value) / self.gaze_std.value
        distance = (distance_Bx1 - self.distance_mean.value) / self.distance_std.value
        return jnp.clip(gaze, -CONDITION_CLIP, CONDITION_CLIP), jnp.clip(distance, -CONDITION_CLIP, CONDITION_CLIP)

    # -- forward -------------------------------------------------------------------------------------------
    def __call__(self, x_t_BxWxM: jax.Array, t_B: jax.Array, cond: Conditions) -> jax.Array:
        """X0 estimate (normalised, float32) from the normalised noisy window X_t at integer timesteps t."""
        cfg, dt = self.cfg, jnp.dtype(self.cfg.dtype)
        B = x_t_BxWxM.shape[0]
        null = cond.null

        def pick(is_null_B, emb, null_emb):  # emb: B×...×D
            shape = (B,) + (1,) * (emb.ndim - 1)
            return jnp.where(is_null_B.reshape(shape), null_emb.value.astype(emb.dtype), emb)

        # Window tokens: noisy motion + audio (frame-wise ∅ where the audio frame is absent).
        audio = self.in_audio(self.normalize_audio(cond.audio_BxWxA).astype(dt))
        audio_absent_BxW = null.audio[:, None] | ~cond.audio_mask_BxW
        audio = jnp.where(audio_absent_BxW[..., None], self.null_audio.value.astype(audio.dtype), audio)
        win_BxWxD = self.in_x(x_t_BxWxM.astype(dt)) + audio
        # Context tokens: last K generated frames and their audio, or ∅ (first window / dropped).
        # Same projections as the window, so the denoiser's local smoothing reaches across the seam.
        motion_pre_BxKxM = self.normalize_motion(cond.motion_pre_BxKxM)
        ctx_BxKxD = self.in_x(motion_pre_BxKxM.astype(dt))
        ctx_BxKxD = ctx_BxKxD + self.in_audio(self.normalize_audio(cond.audio_pre_BxKxA).astype(dt))
        ctx_BxKxD = pick(null.context, ctx_BxKxD, self.null_context) + self.context_type.value.astype(dt)
        if cfg.context:  # every window token also sees where the previous window ended (continuity path)
            last_BxD = self.in_last(motion_pre_BxKxM[:, -1].astype(dt))
            win_BxWxD = win_BxWxD + jnp.where(null.context[:, None], 0.0, last_BxD)[:, None]
        tok_BxLxD = jnp.concatenate([ctx_BxKxD, win_BxWxD], axis=1)

        # Global condition.
        c = self.t_fc2(nnx.silu(self.t_fc1(timestep_features(t_B, cfg.time_freq_dim).astype(dt))))
        gaze_Bx2, distance_Bx1 = self.normalize_conditions(cond.gaze_Bx2, cond.distance_Bx1)
        c = c + pick(null.gaze, self.in_gaze(gaze_Bx2.astype(dt)), self.null_gaze)
        c = c + pick(null.distance, self.in_distance(distance_Bx1.astype(dt)), self.null_distance)
        c = c + pick(null.emotion, self.in_emotion(cond.emotion_BxE.astype(dt)), self.null_emotion)

        for block in self.blocks:
            tok_BxLxD = block(tok_BxLxD, c)
        shift, scale = jnp.split(self.out_ada(nnx.silu(c))[:, None, :].astype(jnp.float32), 2, axis=-1)
        h = _layer_norm(tok_BxLxD[:, cfg.context :]).astype(jnp.float32) * (1 + scale) + shift
        return self.out(h.astype(dt)).astype(jnp.float32)


def count_params(model: nnx.Module) -> int:
    """Trainable parameters (``nnx.Param`` leaves)."""
    return sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
