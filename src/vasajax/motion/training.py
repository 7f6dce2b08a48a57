"""VASA-1's motion DiT as a trainable entry (``vasajax.stages.MOTION_TRAINING["vasa"]``).

``vasajax train-motion`` runs one loop for every trainable motion generator (``vasajax.train.motion``: mesh,
sharded state, orbax checkpoints with exact resume, EMA, logging, plots, evaluation). What is particular to a
model comes from its entry (``vasajax.stages.MotionTraining``): its configs and presets, how it is built and
given the data's statistics, how a loader batch becomes its inputs, its loss, and how it samples a clip for
plots and evaluation. This is the entry of the DiT of ``vasajax.motion.dit``: eq. 1's x0 loss with the
condition dropouts of §3.2 (``diffusion.loss_fn``), sampled with ``generate.generate_motion`` (sliding windows,
CFG), exported as ``motion.safetensors`` (``vasajax export``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np
from flax import nnx

from vasajax import config_io
from vasajax import export_format as ef
from vasajax.errors import UserError
from vasajax.motion import diffusion, generate
from vasajax.motion.diffusion import DiffusionConfig
from vasajax.motion.dit import MotionConfig, MotionDiT, NormStats


class VasaMotionTraining:
    """Trainable entry ``"vasa"``: VASA-1's motion DiT (the default of ``train-motion``)."""

    name = "vasa"
    stage_name = "vasa"
    model_config = MotionConfig
    diffusion_config = DiffusionConfig
    batch_keys = ("motion", "audio", "gaze", "distance", "emotion")
    """Arrays of a training batch (``batch``), in ``diffusion.batch_conditions``' format."""

    @staticmethod
    def presets(name: str) -> tuple[MotionConfig, DiffusionConfig]:
        """``tiny``/``small`` add the velocity (frame-difference) term with weight 1 to eq. 1 (measured on SynthTalk,
        tiny, 3000 steps, 24 held-out clips: ΔP of generated motion 0.37° → 0.28°, truth 0.21°, mouth-opening r
        0.84 → 0.87); ``paper`` keeps VASA-1's plain x0 loss and 50 sampling steps."""
        if name == "paper":
            return MotionConfig.paper(), DiffusionConfig.paper()
        return getattr(MotionConfig, name)(), getattr(DiffusionConfig, name)(velocity_weight=1.0)

    @staticmethod
    def with_data_dims(cfg: MotionConfig, motion_dim: int, audio_dim: int) -> MotionConfig:
        return dataclasses.replace(cfg, motion_dim=motion_dim, audio_dim=audio_dim)

    @staticmethod
    def with_dtype(cfg: MotionConfig, dtype: str) -> MotionConfig:
        return dataclasses.replace(cfg, dtype=dtype)

    @staticmethod
    def windows(cfg: MotionConfig) -> tuple[int, int]:
        """``(W, K)``: frames generated per window, frames of context before it."""
        return cfg.window, cfg.context

    @staticmethod
    def build(cfg: MotionConfig, seed: int) -> MotionDiT:
        return MotionDiT(cfg, rngs=nnx.Rngs(seed))

    @staticmethod
    def split(model: MotionDiT) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
        """``(graphdef, trained params, the rest)``: the optimiser sees only the params."""
        return nnx.split(model, nnx.Param, NormStats)

    @staticmethod
    def set_stats(model: MotionDiT, stats: Mapping[str, np.ndarray]) -> None:
        model.set_norm_stats(stats)

    @staticmethod
    def motion_stats(model: MotionDiT) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension mean and std of the training motion (evaluation's normalised error)."""
        return np.asarray(model.motion_mean.get_value()), np.asarray(model.motion_std.get_value())

    @staticmethod
    def batch(b: Mapping[str, np.ndarray], cfg: MotionConfig) -> dict[str, np.ndarray]:
        """A ``loader.motion_windows`` batch → the DiT's training batch (``diffusion.batch_conditions`` format).

        ``audio``: the R feature rows of each video frame concatenated (B×L×R·F); ``gaze``/``distance``: the
        window's main gaze and mean head distance (over its W frames, not the context); ``emotion``: the clip's.
        """
        motion = np.asarray(b["motion_LxM"], np.float32)
        B, L, M = motion.shape
        audio = np.asarray(b["audio_feat_LRxF"], np.float32).reshape(B, L, -1)
        if M != cfg.motion_dim or audio.shape[-1] != cfg.audio_dim:
            raise UserError(
                f"data has motion dim {M} and audio dim {audio.shape[-1]} per frame, the DiT expects "
                f"{cfg.motion_dim} and {cfg.audio_dim}; use this run's data or start a new run folder"
            )
        K = cfg.context
        return {
            "motion": motion,
            "audio": audio,
            "gaze": np.asarray(b["gaze_Lx2"], np.float32)[:, K:].mean(1),
            "distance": np.asarray(b["distance_L"], np.float32)[:, K:].mean(1, keepdims=True),
            "emotion": np.asarray(b["emotion_52"], np.float32),
        }

    @staticmethod
    def loss(params, batch, key, *, graphdef, rest, diffusion_cfg: DiffusionConfig):
        """Pure: eq. 1 with condition dropout (``diffusion.loss_fn``) → ``(loss, metrics)``."""
        return diffusion.loss_fn(params, batch, key, graphdef=graphdef, rest=rest, dcfg=diffusion_cfg)

    @staticmethod
    def export_part(
        model: MotionDiT, diffusion_cfg: DiffusionConfig, pose_dim: int, *, steps=None, cfg_audio=None, cfg_gaze=None
    ):
        """``motion.safetensors`` and config.json's ``motion``/``diffusion`` sections (the layout of
        ``motion.export_part``), with the export's sampling defaults (``sampling_defaults``)."""
        dcfg = sampling_defaults(diffusion_cfg, steps, cfg_audio, cfg_gaze)
        sections = {"motion": config_io.to_dict(model.cfg), "diffusion": config_io.to_dict(dcfg)}
        return {ef.MOTION_FILE: (ef.model_tensors(model), {"model": "motion"})}, sections

    @staticmethod
    def generate(
        model: MotionDiT, audio_TxA: np.ndarray, diffusion_cfg: DiffusionConfig, *, gaze, distance, emotion, seed: int
    ) -> np.ndarray:
        """Motion ``T×M`` for one clip's audio rows and conditions (sliding windows, CFG)."""
        return generate.generate_motion(
            model, audio_TxA, diffusion_cfg, gaze=gaze, distance=distance, emotion=emotion, seed=seed
        )[0]


def sampling_defaults(diffusion_cfg: DiffusionConfig, steps=None, cfg_audio=None, cfg_gaze=None) -> DiffusionConfig:
    """The run's diffusion config with an export's default sampling steps and CFG scales (λ_A, λ_g of VASA-1's
    eq. 2) where given: what ``vasajax animate`` uses when the user passes none."""
    changes: dict[str, float | int] = {}
    if steps is not None:
        changes["steps"] = int(steps)
    for name, value in (("lambda_audio", cfg_audio), ("lambda_gaze", cfg_gaze)):
        if value is not None:
            if not math.isfinite(value) or value < 0:
                raise UserError(f"--{name.replace('lambda_', 'cfg-')} must be a finite number ≥ 0, got {value}")
            changes[name] = float(value)
    return dataclasses.replace(diffusion_cfg, **changes)
