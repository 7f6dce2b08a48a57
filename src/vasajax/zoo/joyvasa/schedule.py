"""JoyVASA's noise schedule (upstream ``DiffusionSchedule`` in ``src/modules/dit_talking_head.py``).

A DDPM forward process over T steps with β_0 = 0 prepended (index t = 0 is the clean sample):
α_t = 1 − β_t, ᾱ_t = Π_{s≤t} α_s, and two choices of the reverse-step standard deviation,
``sigmas_flex`` = √β_t and ``sigmas_inflex`` = √(β̃_t), β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t (the posterior's);
the sampler mixes them with ``flexibility`` (0 in upstream's inference: the posterior's σ).

β schedules: 'linear' (β_1 → β_T), 'quadratic', 'sigmoid', and 'cosine' (Nichol & Dhariwal 2021, s = 0.008,
β clipped to [1e-4, 0.999]). Upstream's inference builds 'cosine' but then loads the checkpoint's stored
buffers over it (they are registered buffers, so ``load_state_dict`` restores them): ``from_buffers`` reads
those, and ``convert`` prefers them. (Upstream's ``src/scheduler.py`` is a learning-rate warm-up for training,
not a noise schedule; nothing of it is needed for inference.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from vasajax.errors import UserError

BUFFERS = ("betas", "alphas", "alpha_bars", "sigmas_flex", "sigmas_inflex")


@dataclasses.dataclass(frozen=True, eq=False)
class Schedule:
    """Per-step float32 arrays of length T + 1 (index 0 = the clean sample)."""

    betas: np.ndarray
    alphas: np.ndarray
    alpha_bars: np.ndarray
    sigmas_flex: np.ndarray
    sigmas_inflex: np.ndarray

    @property
    def num_steps(self) -> int:
        return len(self.betas) - 1

    def sigmas(self, flexibility: float = 0.0) -> np.ndarray:
        """σ_t = flexibility · √β_t + (1 − flexibility) · √β̃_t."""
        if not 0.0 <= flexibility <= 1.0:
            raise UserError(f"flexibility must be in [0, 1], got {flexibility}")
        return (self.sigmas_flex * flexibility + self.sigmas_inflex * (1 - flexibility)).astype(np.float32)


def make_schedule(
    num_steps: int, mode: str = "cosine", beta_1: float = 1e-4, beta_T: float = 0.02, s: float = 0.008
) -> Schedule:
    """The schedule upstream's ``DiffusionSchedule(num_steps, mode)`` builds (computed in float64, stored f32)."""
    if mode == "linear":
        betas = np.linspace(beta_1, beta_T, num_steps)
    elif mode == "quadratic":
        betas = np.linspace(beta_1**0.5, beta_T**0.5, num_steps) ** 2
    elif mode == "sigmoid":
        betas = 1 / (1 + np.exp(-np.linspace(-5, 5, num_steps))) * (beta_T - beta_1) + beta_1
    elif mode == "cosine":
        x = np.linspace(0, num_steps, num_steps + 1)
        ab = np.cos((x / num_steps + s) / (1 + s) * np.pi * 0.5) ** 2
        ab = ab / ab[0]
        betas = np.clip(1 - ab[1:] / ab[:-1], 0.0001, 0.999)
    else:
        raise UserError(f"unknown JoyVASA diffusion schedule {mode!r}; use cosine, linear, quadratic or sigmoid")
    betas = np.concatenate([[0.0], betas])
    alphas = 1 - betas
    alpha_bars = np.exp(np.cumsum(np.log(alphas)))
    inflex = np.zeros_like(betas)
    inflex[1:] = (1 - alpha_bars[:-1]) / (1 - alpha_bars[1:]) * betas[1:]
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    return Schedule(f32(betas), f32(alphas), f32(alpha_bars), f32(np.sqrt(betas)), f32(np.sqrt(inflex)))


def from_buffers(buffers: Mapping[str, np.ndarray], prefix: str = "diffusion_sched.") -> Schedule | None:
    """The schedule stored in a checkpoint's ``diffusion_sched.*`` buffers, or None if it has none."""
    keys = [prefix + b for b in BUFFERS]
    if not all(k in buffers for k in keys):
        return None
    arrays = [np.asarray(buffers[k], np.float32).reshape(-1) for k in keys]
    if len({len(a) for a in arrays}) != 1 or len(arrays[0]) < 2:
        raise UserError(f"JoyVASA checkpoint: the {prefix}* buffers have inconsistent lengths; is the file intact?")
    return Schedule(*arrays)
