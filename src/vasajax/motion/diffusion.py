"""Diffusion for the motion DiT: noise schedule, x0 loss with condition dropout, CFG, DDPM/DDIM samplers.

VASA-1 §3.2 and §4. Forward process q(X_t | X_{t-1}) = N(√(1-β_t) X_{t-1}, β_t I) (DDPM, Ho et al. 2020);
the network H predicts X0 and is trained with

    L = E_{t, X0, C} ‖X0 − H(X_t, t, C)‖²                                                (eq. 1)

Each condition is dropped (replaced by its learned null) with p = 0.1, X_pre/A_pre together with p = 0.5,
and trailing audio frames are dropped at random so the last, short window of a clip is in distribution.
An optional velocity term λ_v ‖ΔX0 − ΔH‖² (frame differences) favours smooth motion; it is off by default.

Sampling uses multi-condition classifier-free guidance exactly as eq. 2,

    X̂0 = (1 + Σ_c λ_c) · H(X_t, t, C) − Σ_c λ_c · H(X_t, t, C | c = ∅),

with every branch stacked along the batch axis into one forward pass (conditions with λ_c = 0 add no
branch). Samplers on an evenly respaced subset of the T training steps, any step count: DDPM ancestral
(the posterior q(X_s | X_t, X̂0)) and DDIM with η (Song et al. 2020; η = 1 equals DDPM, η = 0 is
deterministic given X_T). Both run as one ``lax.scan``.

Noise schedule: cosine (Nichol & Dhariwal 2021), T = 1000. The paper says only "DDPM". The linear schedule
was tuned for 256² images; on a 134-d motion vector it leaves almost no signal for the last third of the
steps, so a 50-step sampler wastes its budget there. Cosine spreads the log-SNR evenly, and JoyVASA (the
closest open peer) uses it too. ``schedule="linear"`` is available for ablations.

Everything here is in the DiT's normalised motion space (see ``dit.py``); ``loss_fn`` normalises the batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vasajax.errors import UserError
from vasajax.motion.dit import CONDITION_NAMES, Conditions, CondNull, MotionConfig

Denoiser = Callable[[jax.Array, jax.Array, Conditions], jax.Array]
"""H(x_t_BxWxM, t_B, cond) -> x0_BxWxM, all in normalised motion space."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class DiffusionConfig:
    """Training and sampling settings of the motion diffusion."""

    num_train_steps: int = 1000
    """T: discrete diffusion steps of the forward process."""
    schedule: str = "cosine"
    """β schedule: 'cosine' (Nichol & Dhariwal 2021) or 'linear' (DDPM, 1e-4 → 0.02)."""
    p_drop: float = 0.1
    """Training dropout probability of each of audio, gaze, distance, emotion (VASA-1 §3.2)."""
    p_drop_context: float = 0.5
    """Training dropout probability of X_pre and A_pre (dropped together; VASA-1 §3.2)."""
    p_drop_audio_tail: float = 0.1
    """Probability that a training window loses its last n ~ U{1, …, W−1} audio frames (masked to ∅)."""
    velocity_weight: float = 0.0
    """Weight of the velocity (frame-difference) term; 0 disables it."""
    steps: int = 50
    """Sampling steps (VASA-1 §4 uses 50)."""
    sampler: str = "ddim"
    """'ddim' (with ``eta``) or 'ddpm' (ancestral)."""
    eta: float = 0.0
    """DDIM stochasticity: 0 = deterministic given X_T, 1 = DDPM."""
    lambda_audio: float = 0.5
    """CFG scale of the audio A (VASA-1 §4 default 0.5)."""
    lambda_gaze: float = 1.0
    """CFG scale of the main gaze g (VASA-1 §4 default 1.0)."""
    lambda_distance: float = 0.0
    """CFG scale of the head distance d."""
    lambda_emotion: float = 0.0
    """CFG scale of the emotion offset e."""
    lambda_context: float = 0.0
    """CFG scale of X_pre/A_pre."""

    def __post_init__(self):
        if self.schedule not in ("cosine", "linear"):
            raise UserError(f"DiffusionConfig.schedule must be 'cosine' or 'linear', not {self.schedule!r}")
        if self.sampler not in ("ddim", "ddpm"):
            raise UserError(f"DiffusionConfig.sampler must be 'ddim' or 'ddpm', not {self.sampler!r}")
        if not 1 <= self.steps <= self.num_train_steps:
            raise UserError(f"DiffusionConfig.steps={self.steps} must be in [1, {self.num_train_steps}]")

    @property
    def guidance(self) -> dict[str, float]:
        """λ_c per condition name (all of ``CONDITION_NAMES``)."""
        return {name: getattr(self, f"lambda_{name}") for name in CONDITION_NAMES}

    @classmethod
    def tiny(cls, **kw) -> DiffusionConfig:
        """Tests: 10 sampling steps."""
        return cls(**{**dict(steps=10), **kw})

    @classmethod
    def small(cls, **kw) -> DiffusionConfig:
        """Demo on CPU: 25 steps."""
        return cls(**{**dict(steps=25), **kw})

    @classmethod
    def paper(cls, **kw) -> DiffusionConfig:
        """VASA-1 §4: 50 steps, λ_A = 0.5, λ_g = 1.0."""
        return cls(**kw)


# -- schedule ------------------------------------------------------------------------------------------------
def alphas_cumprod(dcfg: DiffusionConfig) -> np.ndarray:
    """ᾱ_t for t = 0 … T−1 (float32, computed in float64): ᾱ_0 ≈ 1 (almost clean), ᾱ_{T−1} ≈ 0."""
    T = dcfg.num_train_steps
    if dcfg.schedule == "linear":
        betas = np.linspace(1e-4, 0.02, T, dtype=np.float64)
    else:
        f = lambda u: np.cos((u + 0.008) / 1.008 * np.pi / 2) ** 2  # noqa: E731
        u = np.arange(T + 1, dtype=np.float64) / T
        betas = np.minimum(1 - f(u[1:]) / f(u[:-1]), 0.999)
    return np.cumprod(1 - betas).astype(np.float32)


def sampling_timesteps(dcfg: DiffusionConfig) -> tuple[np.ndarray, np.ndarray]:
    """(t, s) pairs of the respaced reverse chain: t from T−1 down to 0, s = next t (−1 = clean)."""
    ts = np.round(np.linspace(dcfg.num_train_steps - 1, 0, dcfg.steps)).astype(np.int32)
    return ts, np.concatenate([ts[1:], np.array([-1], np.int32)])


def q_sample(x0_BxWxM, t_B, noise_BxWxM, abar_T):
    """X_t = √ᾱ_t X0 + √(1−ᾱ_t) ε."""
    ab = abar_T[t_B][:, None, None]
    return jnp.sqrt(ab) * x0_BxWxM + jnp.sqrt(1 - ab) * noise_BxWxM


# -- training ------------------------------------------------------------------------------------------------
def drop_conditions(cond: Conditions, rng: jax.Array, dcfg: DiffusionConfig) -> Conditions:
    """Training-time condition dropout (VASA-1 §3.2), ORed into ``cond.null``; trailing audio drop."""
    B, W = cond.audio_mask_BxW.shape
    k_drop, k_tail, k_n = jax.random.split(rng, 3)
    p = jnp.array([dcfg.p_drop_context if n == "context" else dcfg.p_drop for n in CONDITION_NAMES])
    drop_BxC = jax.random.uniform(k_drop, (B, len(CONDITION_NAMES))) < p
    null = CondNull(*(old | drop_BxC[:, i] for i, old in enumerate(cond.null)))
    tail_B = jax.random.uniform(k_tail, (B,)) < dcfg.p_drop_audio_tail
    n_B = jax.random.randint(k_n, (B,), 1, max(W, 2))
    keep_BxW = jnp.arange(W)[None] < jnp.where(tail_B, W - n_B, W)[:, None]
    return cond._replace(null=null, audio_mask_BxW=cond.audio_mask_BxW & keep_BxW)


def diffusion_loss(
    denoise: Denoiser,
    x0_BxWxM: jax.Array,
    cond: Conditions,
    rng: jax.Array,
    dcfg: DiffusionConfig,
    frame_mask_BxW: jax.Array | None = None,
    last_pre_BxM: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Eq. 1 on normalised motion: sample t and ε, noise X0, denoise, masked mean squared error.

    ``cond`` is used as given (apply ``drop_conditions`` first for training). ``last_pre_BxM`` (normalised
    last context frame) lets the velocity term also cover the seam X_pre[-1] → X0[0] where the context is on.
    """
    B, W, M = x0_BxWxM.shape
    k_t, k_eps = jax.random.split(rng)
    abar = jnp.asarray(alphas_cumprod(dcfg))
    t_B = jax.random.randint(k_t, (B,), 0, dcfg.num_train_steps)
    x_t = q_sample(x0_BxWxM, t_B, jax.random.normal(k_eps, x0_BxWxM.shape), abar)
    pred = denoise(x_t, t_B, cond)
    mask = jnp.ones((B, W), jnp.float32) if frame_mask_BxW is None else frame_mask_BxW.astype(jnp.float32)
    loss_x0 = (jnp.square(pred - x0_BxWxM).mean(-1) * mask).sum() / jnp.maximum(mask.sum(), 1.0)
    metrics = {"loss_x0": loss_x0}
    loss = loss_x0
    if dcfg.velocity_weight > 0:
        vmask = mask[:, 1:] * mask[:, :-1]
        if last_pre_BxM is not None:  # prepend the seam; the frame difference there cancels when off
            seam_B = (~cond.null.context).astype(jnp.float32) * mask[:, 0]
            vmask = jnp.concatenate([seam_B[:, None], vmask], axis=1)
            pred = jnp.concatenate([last_pre_BxM[:, None], pred], axis=1)
            x0_BxWxM = jnp.concatenate([last_pre_BxM[:, None], x0_BxWxM], axis=1)
        dv = jnp.diff(pred, axis=1) - jnp.diff(x0_BxWxM, axis=1)
        loss_vel = (jnp.square(dv).mean(-1) * vmask).sum() / jnp.maximum(vmask.sum(), 1.0)
        metrics["loss_vel"] = loss_vel
        loss = loss + dcfg.velocity_weight * loss_vel
    metrics["loss"] = loss
    return loss, metrics


def batch_conditions(batch: dict[str, jax.Array], cfg: MotionConfig) -> tuple[jax.Array, Conditions]:
    """Split a training batch into (raw target window X0, conditions).

    ``batch``: ``motion`` B×(K+W)×M and ``audio`` B×(K+W)×A (the first K frames are the context X_pre/A_pre,
    the last W the window to generate), optional ``gaze`` B×2, ``distance`` B×1, ``emotion`` B×E (absent =
    always ∅) and ``frame_mask`` B×(K+W) (False on padding: no loss, audio ∅).
    """
    K, W = cfg.context, cfg.window
    motion, audio = batch["motion"], batch["audio"]
    if motion.shape[1] != K + W or audio.shape[1] != K + W:
        raise UserError(
            f"motion batch has {motion.shape[1]} frames, audio {audio.shape[1]}; the DiT needs "
            f"K + W = {K + W} (context {K} + window {W})"
        )
    B = motion.shape[0]
    mask = batch.get("frame_mask", jnp.ones((B, K + W), bool)).astype(bool)

    def opt(name, dim):
        if name in batch:
            return batch[name].reshape(B, dim).astype(jnp.float32), jnp.zeros((B,), bool)
        return jnp.zeros((B, dim)), jnp.ones((B,), bool)

    (g, ng), (d, nd), (e, ne) = (
        opt("gaze", cfg.gaze_dim),
        opt("distance", cfg.distance_dim),
        opt("emotion", cfg.emotion_dim),
    )
    null = CondNull(
        audio=jnp.zeros((B,), bool),
        context=~mask[:, :K].all(1) if K else jnp.ones((B,), bool),
        gaze=ng,
        distance=nd,
        emotion=ne,
    )
    cond = Conditions(audio[:, K:], mask[:, K:], motion[:, :K], audio[:, :K], g, d, e, null)
    return motion[:, K:], cond


def loss_fn(
    params: nnx.State,
    batch: dict[str, jax.Array],
    rng: jax.Array,
    *,
    graphdef: nnx.GraphDef,
    rest: nnx.State,
    dcfg: DiffusionConfig,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Pure training loss of the motion DiT: condition dropout + eq. 1 (+ optional velocity term).

    Split once with ``graphdef, params, rest = nnx.split(model, nnx.Param, ...)``; differentiate w.r.t.
    ``params`` only (``rest`` holds the normalisation statistics). Batch format: ``batch_conditions``.
    """
    model = nnx.merge(graphdef, params, rest)
    x0_raw, cond = batch_conditions(batch, model.cfg)
    frame_mask_BxW = cond.audio_mask_BxW  # padding only, before the trailing-audio drop
    k_drop, k_diff = jax.random.split(rng)
    cond = drop_conditions(cond, k_drop, dcfg)
    x0 = model.normalize_motion(x0_raw.astype(jnp.float32))
    last_pre = model.normalize_motion(cond.motion_pre_BxKxM[:, -1].astype(jnp.float32)) if model.cfg.context else None
    return diffusion_loss(model, x0, cond, k_diff, dcfg, frame_mask_BxW, last_pre)


# -- sampling ------------------------------------------------------------------------------------------------
def guided_x0(denoise: Denoiser, x_t_BxWxM, t_B, cond: Conditions, dcfg: DiffusionConfig, scales=None) -> jax.Array:
    """Eq. 2 with all guidance branches in one batched forward pass (conditions with λ_c = 0 are skipped).

    ``scales`` (optional, one value per ``CONDITION_NAMES``, may be traced) replaces the λ values of the branches
    ``dcfg`` enables: the branches are static (which conditions are guided), the scales are data, so a jitted
    sampler does not recompile when only a scale changes."""
    branches = [n for n, v in dcfg.guidance.items() if v != 0.0]
    if not branches:
        return denoise(x_t_BxWxM, t_B, cond)
    if scales is None:
        lam = {n: dcfg.guidance[n] for n in branches}
    else:
        lam = {n: scales[CONDITION_NAMES.index(n)] for n in branches}
    names = branches
    n = len(names)
    branch_nulls = [cond.null] + [cond.null._replace(**{c: jnp.ones_like(cond.null.audio)}) for c in names]
    stacked_null = CondNull(*(jnp.concatenate(f) for f in zip(*branch_nulls)))
    tile = lambda a: jnp.concatenate([a] * (n + 1), axis=0)  # noqa: E731
    cond_all = jax.tree.map(tile, cond._replace(null=None))._replace(null=stacked_null)
    x0_all = denoise(tile(x_t_BxWxM), tile(t_B), cond_all)
    x0_all = x0_all.reshape((n + 1,) + x_t_BxWxM.shape)
    weights = jnp.stack([1.0 + sum(lam.values())] + [-lam[c] for c in names]).astype(jnp.float32)
    return jnp.tensordot(weights, x0_all, axes=1)


def sample(
    denoise: Denoiser,
    cond: Conditions,
    rng: jax.Array,
    dcfg: DiffusionConfig,
    shape: tuple[int, int, int],
    x_T: jax.Array | None = None,
    scales=None,
) -> jax.Array:
    """Reverse diffusion from X_T ~ N(0, I) (or the given ``x_T``) to X̂0 of ``shape`` = (B, W, M).

    Runs ``dcfg.steps`` guided steps in one ``lax.scan``; ``rng`` supplies X_T and the per-step noise.
    ``scales``: traced CFG scales (see :func:`guided_x0`).
    """
    abar = jnp.asarray(alphas_cumprod(dcfg))
    ts, ss = sampling_timesteps(dcfg)
    k_T, k_loop = jax.random.split(rng)
    x = jax.random.normal(k_T, shape) if x_T is None else x_T.astype(jnp.float32)
    B = shape[0]

    def step(x_t, inp):
        i, t, s = inp
        ab_t = abar[t]
        ab_s = jnp.where(s >= 0, abar[jnp.maximum(s, 0)], 1.0)
        x0 = guided_x0(denoise, x_t, jnp.full((B,), t), cond, dcfg, scales)
        var = (1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)  # posterior variance β̃ of the respaced step
        z = jax.random.normal(jax.random.fold_in(k_loop, i), shape)
        if dcfg.sampler == "ddpm":
            beta = 1 - ab_t / ab_s
            mean = (jnp.sqrt(ab_s) * beta * x0 + jnp.sqrt(1 - beta) * (1 - ab_s) * x_t) / (1 - ab_t)
            return mean + jnp.sqrt(var) * z, None
        eps = (x_t - jnp.sqrt(ab_t) * x0) / jnp.sqrt(1 - ab_t)
        sigma = dcfg.eta * jnp.sqrt(var)
        x_s = jnp.sqrt(ab_s) * x0 + jnp.sqrt(jnp.maximum(1 - ab_s - sigma**2, 0.0)) * eps + sigma * z
        return x_s, None

    x, _ = jax.lax.scan(step, x, (jnp.arange(len(ts)), jnp.asarray(ts), jnp.asarray(ss)))
    return x
