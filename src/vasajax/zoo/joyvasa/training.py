"""JoyVASA's motion DiT, trained by vasajax: the trainable entry ``"joyvasa"`` of ``vasajax.stages.MOTION_TRAINING``.

``vasajax train-motion --generator joyvasa --data MOTION_SHARDS`` trains JoyVASA's architecture
(``zoo.joyvasa.dit.JoyVASADiT``: the DiffPoseTalk-style decoder with the audio alignment mask and the learned start
context) with its objective, on any motion shards ``encode-dataset`` writes — VASA-1's motion latents, or
LivePortrait's keypoint motion (``--renderer``), which is JoyVASA's own recipe — in the same loop, with the same
sharding, checkpoints and evaluation as VASA-1's DiT, so the two generators can be compared on one dataset.

**Objective** (upstream ``DitTalkingHead.forward`` plus the loss its trainer applies): a window of L frames with
the K frames before it; with probability ``p_start`` the context is the learned start motion/audio (a clip's first
window), else the true previous frames (the first K of the loader's W + K); the audio condition is replaced by
the learned null with probability ``p_null_audio`` (upstream's 0.1 for one guiding condition); t uniform in 1..T,
x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε; the network's last L rows regress x0 (``target="sample"``, upstream's default) or ε,
mean squared error, plus an optional velocity term (frame differences, ``velocity_weight``; 0 by default).

**What differs from the converted model** (``zoo.joyvasa.stage``): upstream normalises its 70 LivePortrait
coefficients with a motion template (standardised expression, min-max scaled pose) and feeds per-window HuBERT
states. A trained entry works in any motion space, so it standardises motion and audio per dimension with the
training set's statistics (kept in the model, like VASA-1's DiT), and reads the shards' per-frame audio features
(log-mel or wav2vec2) through JoyVASA's own linear audio map. JoyVASA has no gaze, distance or emotion condition;
those labels are ignored. ``JoyVASAConfig`` has no compute dtype: it trains in float32.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vasajax import config_io
from vasajax import export_format as ef
from vasajax.errors import UserError
from vasajax.motion.dit import NormStats
from vasajax.zoo.joyvasa import sample as jv_sample
from vasajax.zoo.joyvasa import template
from vasajax.zoo.joyvasa.config import JoyVASAConfig
from vasajax.zoo.joyvasa.dit import JoyVASADiT
from vasajax.zoo.joyvasa.schedule import make_schedule
from vasajax.zoo.joyvasa.stage import check_controls


@dataclasses.dataclass(frozen=True, kw_only=True)
class JoyVASATrainSettings:
    """JoyVASA's training objective and the sampler used for plots and evaluation."""

    p_null_audio: float = 0.1
    """Probability of the learned null audio (classifier-free guidance; upstream's 0.1 for one condition)."""
    p_start: float = 0.5
    """Probability that a window's context is the learned start motion/audio instead of the true previous frames
    (upstream trains on pairs of windows, the first from the start context)."""
    velocity_weight: float = 0.0
    """Weight of the frame-difference term on the predicted window (0: upstream's plain MSE)."""
    cfg_scale: float = 2.8
    """CFG scale of the sampler (upstream's inference default)."""
    pose_smoothing: float = 1.0
    """Weight of each new frame in an exponential moving average of the generated head pose (the motion's first
    ``pose_dim`` values) before rendering, carried across windows; 1 = none. Upstream smooths its pose this way with
    0.01 (``template.ema``); the exported generator (``joyvasa-trained``) applies it, evaluation plots do not."""

    def __post_init__(self):
        for name in ("p_null_audio", "p_start"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"JoyVASA training: {name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 < self.pose_smoothing <= 1.0:
            raise UserError(f"JoyVASA: pose_smoothing must be in (0, 1], got {self.pose_smoothing}")
        if self.velocity_weight < 0 or self.cfg_scale < 0:
            raise UserError("JoyVASA training: velocity_weight and cfg_scale must be ≥ 0")


class TrainableJoyVASA(nnx.Module):
    """JoyVASA's DiT with the training set's motion and audio statistics (``NormStats``, never trained)."""

    def __init__(self, cfg: JoyVASAConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.dit = JoyVASADiT(cfg, rngs=rngs)
        self.motion_mean = NormStats(jnp.zeros((cfg.motion_dim,)))
        self.motion_std = NormStats(jnp.ones((cfg.motion_dim,)))
        self.audio_mean = NormStats(jnp.zeros((cfg.audio_dim,)))
        self.audio_std = NormStats(jnp.ones((cfg.audio_dim,)))

    def set_norm_stats(self, stats: Mapping[str, np.ndarray]) -> None:
        for name in ("motion_mean", "motion_std", "audio_mean", "audio_std"):
            getattr(self, name).value = jnp.asarray(stats[name], jnp.float32)

    def normalize_motion(self, m):
        return (m - self.motion_mean.value) / self.motion_std.value

    def denormalize_motion(self, m):
        return m * self.motion_std.value + self.motion_mean.value

    def audio_tokens(self, audio_BxTxA):
        """Raw per-frame audio features → the DiT's audio condition (standardised, then JoyVASA's linear map)."""
        return self.dit.audio_features((audio_BxTxA - self.audio_mean.value) / self.audio_std.value)


def schedule_of(cfg: JoyVASAConfig):
    return make_schedule(cfg.num_diffusion_steps, cfg.schedule)


# ------------------------------------------------------------------------------------------------ export, stage

EXPORT_WEIGHTS = "motion_joyvasa.safetensors"
"""The trained DiT and its statistics in an export (beside any renderer's files)."""
EXPORT_SECTION = "motion_joyvasa"
"""config.json section: ``model`` (JoyVASAConfig), ``sampling`` (JoyVASATrainSettings), ``pose_dim``."""
STAGE_NAME = "joyvasa-trained"
"""Its entry in ``vasajax.stages.MOTION_GENERATORS``."""


def export_part(
    model: TrainableJoyVASA, settings: JoyVASATrainSettings, pose_dim: int, *, steps=None, cfg_audio=None,
    cfg_gaze=None,
) -> tuple[dict, dict]:  # fmt: skip
    """``({file: (tensors, metadata)}, {config.json section: dict})`` of a trained model for an export writer;
    ``cfg_audio`` sets the export's default CFG scale (JoyVASA has no gaze scale and samples all its steps)."""
    if steps is not None:
        raise UserError(f"--steps: a JoyVASA DiT samples all {model.cfg.num_diffusion_steps} steps of its schedule")
    if cfg_gaze is not None:
        raise UserError("--cfg-gaze: JoyVASA has no gaze condition")
    if cfg_audio is not None:
        if not np.isfinite(cfg_audio) or cfg_audio < 0:
            raise UserError(f"--cfg-audio must be a finite number ≥ 0, got {cfg_audio}")
        settings = dataclasses.replace(settings, cfg_scale=float(cfg_audio))
    section = {"model": config_io.to_dict(model.cfg), "sampling": config_io.to_dict(settings), "pose_dim": pose_dim}
    return {EXPORT_WEIGHTS: (ef.model_tensors(model), {"model": STAGE_NAME})}, {EXPORT_SECTION: section}


class JoyVASATraining:
    """Trainable entry ``"joyvasa"`` (see the module docstring); exported as generator ``"joyvasa-trained"``."""

    name = "joyvasa"
    stage_name = "joyvasa-trained"
    model_config = JoyVASAConfig
    diffusion_config = JoyVASATrainSettings
    batch_keys = ("motion", "audio")
    export_part = staticmethod(export_part)
    """Files and config.json sections of a trained model in an export (``vasajax export``)."""

    @staticmethod
    def presets(name: str) -> tuple[JoyVASAConfig, JoyVASATrainSettings]:
        """``tiny``: the parity fixture's sizes (2 layers, width 32, 8 + 4 frames, 10 steps); ``small``/``paper``:
        the released generator's (8 layers, width 512, 100 + 25 frames, 50 steps)."""
        if name not in ("tiny", "small", "paper"):
            raise UserError(f"no JoyVASA preset {name!r}")
        # a new model takes one position per token (upstream's code since 74290f6; the released weights predate it)
        return getattr(JoyVASAConfig, name)(pe_form="prefix"), JoyVASATrainSettings()

    @staticmethod
    def with_data_dims(cfg: JoyVASAConfig, motion_dim: int, audio_dim: int) -> JoyVASAConfig:
        return dataclasses.replace(cfg, motion_dim=motion_dim, audio_dim=audio_dim)

    @staticmethod
    def with_dtype(cfg: JoyVASAConfig, dtype: str) -> JoyVASAConfig:
        return cfg  # no compute dtype: float32 (module docstring)

    @staticmethod
    def windows(cfg: JoyVASAConfig) -> tuple[int, int]:
        return cfg.window, cfg.context

    @staticmethod
    def build(cfg: JoyVASAConfig, seed: int) -> TrainableJoyVASA:
        return TrainableJoyVASA(cfg, rngs=nnx.Rngs(seed))

    @staticmethod
    def split(model: TrainableJoyVASA):
        return nnx.split(model, nnx.Param, NormStats)

    @staticmethod
    def set_stats(model: TrainableJoyVASA, stats: Mapping[str, np.ndarray]) -> None:
        model.set_norm_stats(stats)

    @staticmethod
    def motion_stats(model: TrainableJoyVASA) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(model.motion_mean.get_value()), np.asarray(model.motion_std.get_value())

    @staticmethod
    def batch(b: Mapping[str, np.ndarray], cfg: JoyVASAConfig) -> dict[str, np.ndarray]:
        """Motion ``B×(K+L)×M`` and the audio rows of each frame concatenated, ``B×(K+L)×A``."""
        motion = np.asarray(b["motion_LxM"], np.float32)
        B, T, M = motion.shape
        audio = np.asarray(b["audio_feat_LRxF"], np.float32).reshape(B, T, -1)
        if M != cfg.motion_dim or audio.shape[-1] != cfg.audio_dim:
            raise UserError(
                f"data has motion dim {M} and audio dim {audio.shape[-1]} per frame, the JoyVASA DiT expects "
                f"{cfg.motion_dim} and {cfg.audio_dim}; use this run's data or start a new run folder"
            )
        return {"motion": motion, "audio": audio}

    @staticmethod
    def loss(params, batch, key, *, graphdef, rest, diffusion_cfg: JoyVASATrainSettings):
        """Pure: the objective of the module docstring → ``(loss, {"loss", "loss_x0", "loss_vel"})``."""
        model = nnx.merge(graphdef, params, rest)
        cfg, s = model.cfg, diffusion_cfg
        K, L = cfg.context, cfg.window
        motion = model.normalize_motion(batch["motion"].astype(jnp.float32))
        audio = model.audio_tokens(batch["audio"].astype(jnp.float32))
        B = motion.shape[0]
        prev_m, x0 = motion[:, :K], motion[:, K:]
        prev_a, win_a = audio[:, :K], audio[:, K:]
        k_start, k_null, k_t, k_eps = jax.random.split(key, 4)
        start_m, start_a = model.dit.start_context(B)
        from_start = (jax.random.uniform(k_start, (B,)) < s.p_start)[:, None, None]
        prev_m = jnp.where(from_start, start_m, prev_m)
        prev_a = jnp.where(from_start, start_a, prev_a)
        null = (jax.random.uniform(k_null, (B,)) < s.p_null_audio)[:, None, None]
        win_a = jnp.where(null, model.dit.null_audio(B), win_a)
        abar = jnp.asarray(schedule_of(cfg).alpha_bars, jnp.float32)
        t = jax.random.randint(k_t, (B,), 1, cfg.num_diffusion_steps + 1)
        eps = jax.random.normal(k_eps, x0.shape)
        ab = abar[t][:, None, None]
        x_t = jnp.sqrt(ab) * x0 + jnp.sqrt(1 - ab) * eps
        out = model.dit(x_t, win_a, prev_m, prev_a, t)[:, -L:]
        target = x0 if cfg.target == "sample" else eps
        loss_x0 = jnp.mean(jnp.square(out - target))
        if cfg.target == "sample" and s.velocity_weight:
            loss_vel = jnp.mean(jnp.square(jnp.diff(out, axis=1) - jnp.diff(x0, axis=1)))
        else:
            loss_vel = jnp.zeros(())
        total = loss_x0 + s.velocity_weight * loss_vel
        return total, {"loss": total, "loss_x0": loss_x0, "loss_vel": loss_vel}

    @staticmethod
    def generate(
        model: TrainableJoyVASA, audio_TxA, diffusion_cfg: JoyVASATrainSettings, *, gaze, distance, emotion, seed: int
    ) -> np.ndarray:
        """Motion ``T×M`` for one clip's per-frame audio rows, window after window as upstream samples: the first
        window from the learned start context, each later one from the last K frames (motion and audio) of the one
        before; x_T drawn once from ``key(seed)``, window w's step noises from ``fold_in(key, w + 1)``; the last
        window's audio padded with the features' mean. Gaze, distance and emotion are ignored (no such condition)."""
        return ClipSampler(model, diffusion_cfg.cfg_scale)(audio_TxA, seed)


@functools.lru_cache(maxsize=8)
def _jitted(graphdef: nnx.GraphDef, dit_graph: nnx.GraphDef, cfg: JoyVASAConfig, cfg_scale: float | None):
    """``(schedule, sample, tokens, denormalize)`` for one model structure and CFG scale: jitted once, the weights
    and statistics passed in (so evaluating or plotting a new checkpoint of the same run compiles nothing)."""
    schedule = schedule_of(cfg)
    sample = jax.jit(jv_sample.make_window_sampler(dit_graph, schedule, cfg_scale=cfg_scale, target=cfg.target))
    tokens = jax.jit(lambda state, a: nnx.merge(graphdef, state).audio_tokens(a))
    denormalize = jax.jit(lambda state, x0: nnx.merge(graphdef, state).denormalize_motion(x0))
    return schedule, sample, tokens, denormalize


class ClipSampler:
    """JoyVASA's window sampler (``sample.make_window_sampler``, all T steps, CFG on the audio) over a clip of
    per-frame audio rows, motion in the data's space; the jitted functions are shared by every model of one
    structure and scale (``_jitted``)."""

    def __init__(self, model: TrainableJoyVASA, cfg_scale: float | None):
        self.model, self.cfg = model, model.cfg
        graphdef, self.state = nnx.split(model)
        self.dit_params = nnx.state(model.dit)
        jitted = _jitted(graphdef, nnx.graphdef(model.dit), model.cfg, cfg_scale)
        self.schedule, self.sample, self.tokens, self.denormalize = jitted
        self.audio_pad = np.asarray(model.audio_mean.get_value(), np.float32)

    def stream(self, seed: int) -> WindowStream:
        return WindowStream(self, seed)

    def __call__(self, audio_TxA: np.ndarray, seed: int) -> np.ndarray:
        T = len(audio_TxA)
        if T == 0:
            return np.zeros((0, self.cfg.motion_dim), np.float32)
        st = self.stream(seed)
        return np.concatenate([*st.push(audio_TxA), *st.finish()], axis=1)[0, :T]


class WindowStream:
    """One clip: ``push`` per-frame audio rows, get ``1×L×M`` motion windows as each fills; ``finish`` pads the last
    with the features' mean and returns its real frames (x_T from ``key(seed)`` for every window, window w's step
    noises from ``fold_in(key, w + 1)``, the context the previous window's last K frames, the first the learned one)."""

    def __init__(self, sampler: ClipSampler, seed: int):
        cfg = sampler.cfg
        self.s = sampler
        self.key = jax.random.key(int(seed))
        self.x_T = jax.random.normal(self.key, (1, cfg.window, cfg.motion_dim))
        self.prev_m, self.prev_a = sampler.model.dit.start_context(1)
        self.buf = np.zeros((0, cfg.audio_dim), np.float32)
        self.w = 0

    def _window(self, rows_LxA: np.ndarray) -> np.ndarray:
        s, cfg = self.s, self.s.cfg
        win = s.tokens(s.state, jnp.asarray(rows_LxA[None]))
        z = jax.random.normal(jax.random.fold_in(self.key, self.w + 1), (s.schedule.num_steps - 1, *self.x_T.shape))
        x0 = s.sample(s.dit_params, win, self.prev_m, self.prev_a, self.x_T, z)
        self.prev_m, self.prev_a = x0[:, -cfg.context :], win[:, -cfg.context :]
        self.w += 1
        return np.asarray(s.denormalize(s.state, x0), np.float32)

    def push(self, audio_TxA: np.ndarray) -> list[np.ndarray]:
        a = np.asarray(audio_TxA, np.float32).reshape(-1, self.s.cfg.audio_dim) if np.size(audio_TxA) else None
        if a is None:
            return []
        self.buf = np.concatenate([self.buf, a])
        out, L = [], self.s.cfg.window
        while len(self.buf) >= L:
            rows, self.buf = self.buf[:L], self.buf[L:]
            out.append(self._window(rows))
        return out

    def finish(self) -> list[np.ndarray]:
        n = len(self.buf)
        if not n:
            return []
        pad = np.repeat(self.s.audio_pad[None], self.s.cfg.window - n, 0)
        rows, self.buf = np.concatenate([self.buf, pad]), self.buf[:0]
        return [self._window(rows)[:, :n]]


class TrainedJoyVASAGenerator:
    """Generator entry ``"joyvasa-trained"``: a JoyVASA DiT trained by ``train-motion --generator joyvasa``, in the
    motion space of the data it was trained on, reading the export's audio entry's per-frame features. No gaze,
    distance or emotion controls (their defaults are accepted); ``cfg_audio`` is its CFG scale; ``steps`` only the
    schedule's own count. It starts from its learned start context (``context = 0``: not primed with the portrait's
    motion); the Animator's relative pose moves the head around the portrait by the generated deviation from the
    training mean."""

    name = STAGE_NAME
    context = 0

    def __init__(self, model: TrainableJoyVASA, settings: JoyVASATrainSettings, motion_space: str, pose_dim: int):
        self.model, self.settings, self.cfg = model, settings, model.cfg
        self.motion_space, self.pose_dim = motion_space, int(pose_dim)
        self.motion_dim, self.audio_dim = self.cfg.motion_dim, self.cfg.audio_dim
        self.conditions = {"distance": None}

    @classmethod
    def load(cls, directory, manifest: Mapping) -> TrainedJoyVASAGenerator:
        d = Path(directory)
        raw = ef.read_config(d)
        if EXPORT_SECTION not in raw:
            raise UserError(f"{d}/{ef.CONFIG_FILE} has no '{EXPORT_SECTION}' section; the checkpoint is damaged")
        sec = raw[EXPORT_SECTION]
        cfg = config_io.from_dict(JoyVASAConfig, sec.get("model") or {}, what=f"config.json: {EXPORT_SECTION}.model")
        settings = config_io.from_dict(
            JoyVASATrainSettings, sec.get("sampling") or {}, what=f"{EXPORT_SECTION}.sampling"
        )
        tensors = ef.read_weights(d, EXPORT_WEIGHTS)
        model = ef.load_model(lambda: TrainableJoyVASA(cfg, rngs=nnx.Rngs(0)), tensors, f"{d}/{EXPORT_WEIGHTS}")
        space = str(((manifest or {}).get("stages") or {}).get("motion_space", "vasa"))
        return cls(model, settings, space, int(sec.get("pose_dim", 6)))

    def mean_pose(self) -> np.ndarray:
        return np.asarray(self.model.motion_mean.get_value(), np.float32)[: self.pose_dim]

    def stream(self, *, seed: int, context_motion=None, context_audio=None, steps=None, cfg_audio=None,
               cfg_gaze=None, gaze=None, distance=None, emotion=None, first_window=None) -> WindowStream:  # fmt: skip
        scale = check_controls(self.cfg.num_diffusion_steps, self.cfg.window, self.settings.cfg_scale, steps=steps,
                               cfg_audio=cfg_audio, cfg_gaze=cfg_gaze, gaze=gaze, distance=distance, emotion=emotion,
                               first_window=first_window)  # fmt: skip
        stream = ClipSampler(self.model, scale).stream(seed)
        alpha = float(self.settings.pose_smoothing)
        return stream if alpha >= 1.0 else PoseSmoothedStream(stream, self.pose_dim, alpha)


class PoseSmoothedStream:
    """A motion stream whose first ``pose_dim`` values pass through an exponential moving average (``alpha``: the
    new frame's weight; the first frame starts it), carried from window to window (upstream JoyVASA's pose EMA)."""

    def __init__(self, inner, pose_dim: int, alpha: float):
        self.inner, self.pose_dim, self.alpha = inner, int(pose_dim), float(alpha)
        self.state: np.ndarray | None = None

    def _smooth(self, windows: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for w in windows:
            w = np.array(w, np.float32, copy=True)
            pose = w[0, :, : self.pose_dim]
            if self.state is None:
                smooth = template.ema(pose, self.alpha)
            else:  # continue from the last smoothed frame
                smooth = template.ema(np.concatenate([self.state[None], pose]), self.alpha)[1:]
            w[0, :, : self.pose_dim] = smooth
            self.state = smooth[-1] if len(smooth) else self.state
            out.append(w)
        return out

    def push(self, audio_TxA: np.ndarray) -> list[np.ndarray]:
        return self._smooth(self.inner.push(audio_TxA))

    def finish(self) -> list[np.ndarray]:
        return self._smooth(self.inner.finish())
