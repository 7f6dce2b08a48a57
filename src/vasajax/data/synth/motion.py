"""Motion sampling: a clip's per-frame animation parameters from its phoneme timings and a seed (head sway and
nods, blinks, gaze shifts, smile, and the viseme-driven jaw and lips)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.ndimage

from vasajax.data import visemes
from vasajax.data.speech import PAUSE
from vasajax.data.synth.config import SynthConfig
from vasajax.data.synth.curves import smoothstep


def _noise(rng: np.random.Generator, n: int, sigma_frames: float) -> np.ndarray:
    """Gaussian-smoothed white noise with unit standard deviation (in expectation)."""
    pad = int(4 * sigma_frames) + 1
    x = scipy.ndimage.gaussian_filter1d(rng.standard_normal(n + 2 * pad), sigma_frames)[pad:-pad]
    return x * np.sqrt(2 * np.sqrt(np.pi) * sigma_frames)


def _blinks(rng: np.random.Generator, t: np.ndarray, fps: float, interval: tuple[float, float]) -> np.ndarray:
    """Eyelid closure in [0, 1]: fast close (~80 ms), brief hold, slower open (~170 ms); peaks on frames."""
    out = np.zeros_like(t)
    peak = rng.uniform(0.3, min(2.0, interval[1]))
    while peak < t[-1] + 0.2:
        p = np.round(peak * fps) / fps  # the fully closed instant falls on a frame
        close, hold, open_ = rng.uniform(0.06, 0.1), rng.uniform(0.0, 0.04), rng.uniform(0.13, 0.22)
        x = np.where(t < p, 1 - (p - t) / close, np.where(t < p + hold, 1.0, 1 - (t - p - hold) / open_))
        out = np.maximum(out, smoothstep(x, 0.0, 1.0))
        peak += rng.uniform(0.25, 0.45) if rng.random() < 0.1 else rng.uniform(*interval)  # some double blinks
    return out


def sample_motion(
    phonemes: Sequence[tuple[str, float, float]], n_frames: int, cfg: SynthConfig, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Per-frame animation parameters (float32 arrays of length ``n_frames``, radians for angles).

    ``phonemes`` are (name, start_s, end_s) on the clip's time axis. Returns yaw, pitch, roll (head, relative
    to the portrait), tx, ty (fractions of S), scale, jaw, spread, round, viseme, blink, gaze_yaw,
    gaze_pitch (eyes relative to the head, ``facetrack.labels.gaze_from_landmarks``'s convention: +yaw looks to the
    image right, +pitch looks up), smile and speaking.
    """
    fps, t = cfg.fps, np.arange(n_frames) / cfg.fps
    speaking = np.zeros(n_frames)
    for name, a, b in phonemes:
        if name != PAUSE:
            speaking[(t >= a) & (t < b)] = 1.0
    activity = scipy.ndimage.gaussian_filter1d(speaking, 0.3 * fps)
    articulation = rng.uniform(0.8, 1.15)
    m = visemes.mouth_tracks(list(phonemes), t, articulation=articulation)

    deg = np.pi / 180
    yaw = (
        cfg.head_yaw_deg * deg * (_noise(rng, n_frames, 0.7 * fps) + 0.4 * activity * _noise(rng, n_frames, 0.15 * fps))
    )
    pitch = (
        cfg.head_pitch_deg
        * deg
        * (_noise(rng, n_frames, 0.6 * fps) + 0.3 * activity * _noise(rng, n_frames, 0.12 * fps))
    )
    roll = cfg.head_roll_deg * deg * _noise(rng, n_frames, 0.8 * fps) + 0.15 * yaw
    for name, a, _ in phonemes:  # nods on stressed syllables: chin down, then back (~0.4 s)
        if "ˈ" in name and rng.random() < cfg.nod_prob:
            width, amp = rng.uniform(0.3, 0.5), cfg.nod_deg * deg * rng.uniform(0.6, 1.4)
            x = (t - a + 0.05) / width
            pitch += amp * np.where((x > 0) & (x < 1), 0.5 * (1 - np.cos(2 * np.pi * x)), 0.0)
    tx = cfg.translate_frac * _noise(rng, n_frames, 0.8 * fps)
    ty = cfg.translate_frac * _noise(rng, n_frames, 0.8 * fps)
    scale = np.exp(cfg.scale_frac * _noise(rng, n_frames, 1.0 * fps))

    blink = _blinks(rng, t, fps, cfg.blink_interval_s)

    # Gaze: fixations with quick saccades; half the shifts return to the camera. The eyes also
    # counter-rotate against head yaw/pitch (they keep looking where they were looking).
    gyaw, gpitch = np.zeros(n_frames), np.zeros(n_frames)
    cur, tc = np.zeros(2), rng.uniform(0.2, cfg.gaze_interval_s[1])
    gmax = cfg.gaze_deg * deg
    while tc < t[-1]:
        nxt = rng.uniform(-0.15, 0.15, 2) * gmax if rng.random() < 0.5 else rng.uniform(-1, 1, 2) * gmax
        nxt[1] *= 0.6
        s = np.clip((t - tc) * fps / 1.5, 0, 1)  # saccade over ~1.5 frames
        gyaw = np.where(t >= tc, cur[0] + (nxt[0] - cur[0]) * s, gyaw)
        gpitch = np.where(t >= tc, cur[1] + (nxt[1] - cur[1]) * s, gpitch)
        cur, tc = nxt, tc + rng.uniform(*cfg.gaze_interval_s)
    gyaw = np.clip(gyaw - 0.5 * yaw + 0.01 * _noise(rng, n_frames, 2.0), -1.2 * gmax, 1.2 * gmax)
    gpitch = np.clip(gpitch + 0.5 * pitch + 0.01 * _noise(rng, n_frames, 2.0), -0.8 * gmax, 0.8 * gmax)

    level = rng.uniform(0.3, 1.0) if rng.random() < cfg.smile_prob else 0.0
    smile = np.clip(level * (1 + 0.15 * _noise(rng, n_frames, 1.0 * fps)), 0, 1)
    out = dict(yaw=yaw, pitch=pitch, roll=roll, tx=tx, ty=ty, scale=scale, blink=blink, gaze_yaw=gyaw)
    out.update(gaze_pitch=gpitch, smile=smile, speaking=speaking, jaw=m["jaw"], spread=m["spread"], round=m["round"])
    out = {k: np.asarray(v, np.float32) for k, v in out.items()}
    out["viseme"] = m["viseme"]
    return out
