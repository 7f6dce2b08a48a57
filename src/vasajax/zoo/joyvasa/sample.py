"""JoyVASA's sampling: ancestral DDPM over all T steps with classifier-free guidance, window after window.

One window (upstream ``DitTalkingHead.sample``, x0 target): starting from x_T, for t = T … 1

    x̂0 = H(x_t, t, ∅_audio) + s · (H(x_t, t, audio) − H(x_t, t, ∅_audio))        (both branches in one batch)
    x_{t−1} = c0_t · x_t + c1_t · x̂0 + σ_t · z_t,   z_t ~ N(0, I) for t > 1, z_1 = 0
    c0_t = (1 − ᾱ_{t−1}) √α_t / (1 − ᾱ_t),   c1_t = (1 − α_t) √ᾱ_{t−1} / (1 − ᾱ_t)

(the DDPM posterior mean; for a noise target, x_{t−1} = (x_t − (1 − α_t)/√(1 − ᾱ_t) · ε̂) / √α_t + σ_t z_t).
With the single guiding condition upstream has (audio), its "incremental" and "independent" CFG modes are
the same formula; ``cfg_scale=None`` turns guidance off (one conditional branch). Upstream's inference uses
s = 2.8 (``ArgumentConfig.cfg_scale``), σ = the posterior's (flexibility 0) and no dynamic thresholding.

A clip (upstream ``LivePortraitWrapper.gen_motion_sequence``): the 16 kHz waveform gets 1280 zeros in front
and 640 behind (2 frames and 1 frame at 25 fps), is cut into windows of L frames with no overlap (the last
padded with zeros, or its last sample for ``pad_mode="replicate"``), and each window's audio is encoded on its
own. The first window's context is the learned start motion/audio; each later window takes the last K
frames of the previous window's generated motion and of its audio features. Upstream draws x_T once and
reuses it for every window (``motion_at_T`` is passed back in); the step noises z are fresh for every
step of every window. Frames generated for the padding of the last window are dropped, so a clip of N
samples gives ``L · n_windows − n_padding_frames`` ≈ N / 640 + 3 frames, and frame k + 2 lines up with the
audio at k / 25 s.

Deterministic: give a PRNG ``key`` (x_T from ``key``, window w's step noises from ``fold_in(key, w + 1)``),
or explicit ``noise`` (x_T and each window's ``(T − 1) × B × L × M`` step noises, t = T … 2).

Use: ``gen = ClipGenerator(dit, schedule, encoder)`` traces the encoder, the audio map and the window sampler
once; ``gen(wave_N, key=key)`` returns the clip's ``frames × 70`` coefficients, ``gen.stream(...)`` yields
them window by window (4 s of motion per window; the first after one encoder pass and T × 2 DiT passes).
``template.to_keypoint_params`` turns them into LivePortrait's pitch/yaw/roll, exp, t, scale.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vasajax.errors import UserError
from vasajax.motion.wav2vec2 import Wav2Vec2
from vasajax.zoo.joyvasa.audio import encode_fn
from vasajax.zoo.joyvasa.dit import JoyVASADiT, denoise_fn
from vasajax.zoo.joyvasa.schedule import Schedule

FRONT_PAD = 1280
"""Zero samples upstream puts before the clip (2 frames at 25 fps)."""
BACK_PAD = 640
"""Zero samples after the clip (1 frame)."""


def step_coefficients(schedule: Schedule, target: str = "sample", flexibility: float = 0.0) -> dict[str, np.ndarray]:
    """Per-step float32 ``c0``, ``c1``, ``sigma`` for t = T … 1 (the order the sampler visits them)."""
    t = np.arange(schedule.num_steps, 0, -1)
    alpha, ab, ab_prev = schedule.alphas[t], schedule.alpha_bars[t], schedule.alpha_bars[t - 1]
    if target == "sample":
        c0 = (1 - ab_prev) * np.sqrt(alpha) / (1 - ab)
        c1 = (1 - alpha) * np.sqrt(ab_prev) / (1 - ab)
    elif target == "noise":
        c0 = 1 / np.sqrt(alpha)
        c1 = (1 - alpha) / np.sqrt(1 - ab)
    else:
        raise UserError(f"unknown JoyVASA target {target!r}")
    return {"t": t.astype(np.int32), "c0": c0, "c1": c1, "sigma": schedule.sigmas(flexibility)[t]}


def make_window_sampler(
    graphdef: nnx.GraphDef,
    schedule: Schedule,
    *,
    cfg_scale: float | None = 2.8,
    target: str = "sample",
    flexibility: float = 0.0,
):
    """``sample(params, audio_BxLxD, prev_motion_BxKxM, prev_audio_BxKxD, x_T_BxLxM, z_SxBxLxM) → x0_BxLxM``.

    ``z`` holds the step noises for t = T … 2 (S = T − 1). Pure; jit it (one trace per batch size).
    """
    denoise = denoise_fn(graphdef)
    coef = step_coefficients(schedule, target, flexibility)

    def sample(params, audio_BxLxD, prev_motion_BxKxM, prev_audio_BxKxD, x_T_BxLxM, z_SxBxLxM):
        B, L, _ = x_T_BxLxM.shape
        if cfg_scale is None:
            audio_in, reps = audio_BxLxD, 1
        else:
            null = nnx.merge(graphdef, params).null_audio(B).astype(audio_BxLxD.dtype)
            audio_in, reps = jnp.concatenate([null, audio_BxLxD]), 2
        prev_m = jnp.concatenate([prev_motion_BxKxM] * reps)
        prev_a = jnp.concatenate([prev_audio_BxKxD] * reps)
        z_TxBxLxM = jnp.concatenate([z_SxBxLxM, jnp.zeros_like(x_T_BxLxM)[None]])

        def step(x_BxLxM, xs):
            t, c0, c1, sigma, z_BxLxM = xs
            out = denoise(params, jnp.concatenate([x_BxLxM] * reps), audio_in, prev_m, prev_a, jnp.full((B * reps,), t))
            out = out[:, -L:]
            if cfg_scale is None:
                pred = out
            else:
                uncond, cond = out[:B], out[B:]
                pred = uncond + cfg_scale * (cond - uncond)
            if target == "sample":
                x_next = c0 * x_BxLxM + c1 * pred + sigma * z_BxLxM
            else:
                x_next = c0 * (x_BxLxM - c1 * pred) + sigma * z_BxLxM
            return x_next, None

        xs = (coef["t"], coef["c0"], coef["c1"], coef["sigma"], z_TxBxLxM)
        x0, _ = jax.lax.scan(step, x_T_BxLxM, xs)
        return x0

    return sample


@dataclasses.dataclass(frozen=True)
class ClipPlan:
    """How upstream cuts a clip into windows."""

    wave: np.ndarray
    """The padded waveform, ``n_windows × window_samples`` samples."""
    num_windows: int
    num_frames: int
    """Frames kept (the padding frames of the last window dropped)."""


def plan_clip(wave_N: np.ndarray, window: int, fps: int = 25, sample_rate: int = 16000, pad_mode: str = "zero"):
    """Pads a 1-D waveform as ``gen_motion_sequence`` does and returns the window plan."""
    wave = np.asarray(wave_N, np.float32)
    if wave.ndim != 1:
        raise UserError(f"JoyVASA expects a mono waveform (1-D), got shape {wave.shape}")
    wave = np.pad(wave, (FRONT_PAD, BACK_PAD))
    unit = sample_rate / fps
    window_samples = round(unit * window)
    clip_len = int(len(wave) / sample_rate * fps)
    n = 1 if clip_len <= window else math.ceil(clip_len / window)
    pad = window_samples * n - len(wave)
    pad_frames = math.ceil(pad / unit)
    if pad > 0:
        value = 0.0 if pad_mode == "zero" else float(wave[-1])
        wave = np.pad(wave, (0, pad), constant_values=value)
    windows = np.stack([wave[round(i * window * unit) : round((i + 1) * window * unit)] for i in range(n)])
    return ClipPlan(windows, n, n * window - max(pad_frames, 0))


def draw_noise(key: jax.Array, num_windows: int, num_steps: int, shape: tuple[int, ...]):
    """``(x_T, [z_w for each window])`` from a PRNG key (see the module docstring)."""
    x_T = jax.random.normal(key, shape)
    zs = [jax.random.normal(jax.random.fold_in(key, w + 1), (num_steps - 1, *shape)) for w in range(num_windows)]
    return x_T, zs


class ClipGenerator:
    """Upstream's clip loop with its jitted pieces traced once: ``gen(wave_N, key=...)`` → ``frames × M``.

    ``stream`` yields each window's kept frames as soon as it is sampled (the last window without its
    padding frames), for streaming; ``__call__`` concatenates them.
    """

    def __init__(
        self,
        dit: JoyVASADiT,
        schedule: Schedule,
        encoder: Wav2Vec2,
        *,
        cfg_scale: float | None = 2.8,
        flexibility: float = 0.0,
    ):
        self.cfg, self.schedule = dit.cfg, schedule
        enc_graph, self.enc_params = nnx.split(encoder)
        graphdef, self.params = nnx.split(dit)
        self.encode = jax.jit(encode_fn(enc_graph, self.cfg.window, self.cfg.fps))
        self.sample = jax.jit(
            make_window_sampler(
                graphdef, schedule, cfg_scale=cfg_scale, target=self.cfg.target, flexibility=flexibility
            )
        )
        self.map_audio = jax.jit(lambda p, h: nnx.merge(graphdef, p).audio_features(h))
        self.start = dit.start_context(1)

    def stream(self, wave_N: np.ndarray, *, key: jax.Array | None = None, noise=None):
        cfg = self.cfg
        plan = plan_clip(wave_N, cfg.window, cfg.fps, cfg.sample_rate, cfg.pad_mode)
        if noise is None:
            if key is None:
                raise UserError("JoyVASA generation needs a PRNG key or explicit noise")
            noise = draw_noise(key, plan.num_windows, self.schedule.num_steps, (1, cfg.window, cfg.motion_dim))
        x_T, zs = noise
        if len(zs) < plan.num_windows:
            raise UserError(f"JoyVASA generation: noise for {len(zs)} windows, the clip needs {plan.num_windows}")
        prev_motion, prev_audio = self.start
        for w in range(plan.num_windows):
            audio = self.map_audio(self.params, self.encode(self.enc_params, jnp.asarray(plan.wave[w : w + 1])))
            motion = self.sample(self.params, audio, prev_motion, prev_audio, x_T, zs[w])
            prev_motion, prev_audio = motion[:, -cfg.context :], audio[:, -cfg.context :]
            keep = plan.num_frames - w * cfg.window
            yield np.asarray(motion[0, :keep])

    def __call__(self, wave_N: np.ndarray, *, key: jax.Array | None = None, noise=None) -> np.ndarray:
        return np.concatenate(list(self.stream(wave_N, key=key, noise=noise)))


def generate(
    dit: JoyVASADiT,
    schedule: Schedule,
    encoder: Wav2Vec2,
    wave_N: np.ndarray,
    *,
    key: jax.Array | None = None,
    noise: tuple[jax.Array, list[jax.Array]] | None = None,
    cfg_scale: float | None = 2.8,
    flexibility: float = 0.0,
) -> np.ndarray:
    """A clip's motion coefficients ``frames × motion_dim`` (normalised; see ``template``) from 16 kHz audio.

    One-shot convenience; reuse a ``ClipGenerator`` to avoid tracing again for every clip.
    """
    gen = ClipGenerator(dit, schedule, encoder, cfg_scale=cfg_scale, flexibility=flexibility)
    return gen(wave_N, key=key, noise=noise)
