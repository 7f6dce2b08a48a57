"""VASA-1's stage 2 behind ``vasajax.stages``: the motion DiT as a motion generator, log-mel and wav2vec2 as audio
encoders."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from vasajax import export_format as ef
from vasajax.errors import UserError
from vasajax.motion.audio import AudioConfig, LogMelStream, feature_dim, frame_features
from vasajax.motion.diffusion import DiffusionConfig
from vasajax.motion.dit import MotionDiT
from vasajax.motion.emotion import emotion_vector
from vasajax.motion.export_part import load_motion_part
from vasajax.motion.generate import MotionStream
from vasajax.stages import AUDIO_ENCODERS


class VasaMotionGenerator:
    """Generator entry ``"vasa"``: the motion DiT (eq. 2 guidance over gaze, distance, emotion), sampling one sliding
    window at a time (``MotionStream``)."""

    name = "vasa"
    pose_dim = 6

    def __init__(
        self, model: MotionDiT, diffusion: DiffusionConfig, conditions: dict | None = None, *, motion_space="vasa"
    ):
        self.model = model
        self.cfg = model.cfg
        self.diffusion = diffusion
        self.conditions = dict(conditions or {})
        self.motion_space = motion_space
        self.motion_dim = int(self.cfg.motion_dim)
        self.audio_dim = int(self.cfg.audio_dim)
        self.context = int(self.cfg.context)
        self.window = int(self.cfg.window)

    @classmethod
    def from_export(cls, export) -> VasaMotionGenerator:
        space = str(((export.manifest or {}).get("stages") or {}).get("motion_space", "vasa"))
        return cls(export.motion_model, export.diffusion, export.conditions, motion_space=space)

    @classmethod
    def load(cls, directory: Path, manifest: dict) -> VasaMotionGenerator:
        """Only its own part of the export (``motion.export_part.load_motion_part``: ``motion.safetensors`` and the
        motion/audio/diffusion configs), so it loads beside any renderer, with or without ``face.safetensors``."""

        return cls.from_export(load_motion_part(directory, manifest))

    def mean_pose(self) -> np.ndarray:
        return np.asarray(self.model.motion_mean.get_value(), np.float32)[: self.pose_dim]

    def stream(
        self,
        *,
        seed: int,
        context_motion=None,
        context_audio=None,
        steps: int | None = None,
        cfg_audio: float | None = None,
        cfg_gaze: float | None = None,
        gaze=None,
        distance=None,
        emotion=None,
        first_window: int | None = None,
    ) -> MotionStream:
        """A ``MotionStream`` with the controls checked: ``gaze`` (θ, φ radians), ``distance`` (> 0), ``emotion``
        (``pipeline.emotion_vector`` forms), ``cfg_audio``/``cfg_gaze`` (λ_A, λ_g of eq. 2), ``steps``."""

        mc, dcfg = self.cfg, self.diffusion
        over = {}
        if steps is not None:
            if not 1 <= int(steps) <= dcfg.num_train_steps:
                raise UserError(f"steps must be in 1..{dcfg.num_train_steps}, got {steps}")
            over["steps"] = int(steps)
        if cfg_audio is not None:
            over["lambda_audio"] = float(cfg_audio)
        if cfg_gaze is not None:
            over["lambda_gaze"] = float(cfg_gaze)
        dcfg = dataclasses.replace(dcfg, **over)
        if gaze is not None:
            gaze = np.asarray(gaze, np.float32).reshape(-1)
            if gaze.shape != (mc.gaze_dim,) or not np.all(np.isfinite(gaze)):
                raise UserError(f"gaze must be {mc.gaze_dim} finite angles in radians (θ, φ), got {gaze.tolist()}")
        if distance is not None:
            distance = float(distance)
            if not np.isfinite(distance) or distance <= 0:
                raise UserError(f"distance must be a positive number (inter-ocular / crop side), got {distance}")
        emo = emotion_vector(emotion, mc.emotion_dim, self.conditions.get("emotions"))
        return MotionStream(
            self.model, dcfg, gaze=gaze, distance=distance, emotion=emo, seed=int(seed),
            first_window=first_window, context_motion=context_motion, context_audio=context_audio,
        )  # fmt: skip


class LogMelEncoder:
    """Audio entry ``"logmel"``: two 50 Hz log-mel slots per video frame; streaming-exact (``LogMelStream``)."""

    name = "logmel"

    def __init__(self, cfg: AudioConfig):
        self.cfg = cfg
        self.fps = float(cfg.fps)
        self.feature_dim = feature_dim(cfg)

    @classmethod
    def load(cls, directory: Path, manifest: dict) -> LogMelEncoder:
        return cls(_audio_config(directory))

    def features(self, wave_16k: np.ndarray) -> np.ndarray:
        return frame_features(wave_16k, self.cfg)

    def stream(self) -> LogMelStream:
        return LogMelStream(self.cfg)


class WholeClipStream:
    """A ``FeatureStream`` for encoders that are not streaming-exact: buffers every chunk, computes at ``finish``."""

    def __init__(self, features):
        self._features = features
        self._chunks: list[np.ndarray] = []
        self.num_samples = 0

    def push(self, chunk: np.ndarray) -> np.ndarray:
        a = np.asarray(chunk, np.float32).reshape(-1)
        self._chunks.append(a)
        self.num_samples += a.size
        return np.zeros((0, 0), np.float32)

    def finish(self) -> np.ndarray:
        if not self.num_samples:
            return np.zeros((0, 0), np.float32)
        return self._features(np.concatenate(self._chunks))


class Wav2Vec2Encoder(LogMelEncoder):
    """Audio entry ``"wav2vec2"`` (VASA-1's choice; a local Hugging Face checkpoint): attends over long spans, so
    the stream takes the whole clip before it emits (``WholeClipStream``)."""

    name = "wav2vec2"

    def stream(self) -> WholeClipStream:
        return WholeClipStream(self.features)


def audio_encoder(cfg: AudioConfig):
    """The built-in audio entry for an ``AudioConfig``."""

    return AUDIO_ENCODERS.get(cfg.kind)(cfg)


def _audio_config(directory: Path) -> AudioConfig:
    """config.json's ``audio`` section of an export folder."""
    d = Path(directory)
    return ef.config_sections(d, ef.read_config(d), {"audio": AudioConfig})["audio"]
