"""JoyVASA behind ``vasajax.stages``: generator entry ``"joyvasa"``, audio entry ``"joyvasa-hubert"``.

**Audio rows.** Upstream encodes each window's padded audio on its own (``sample.plan_clip``: 1280 zeros in front,
640 behind, cut into windows of L frames, the last padded). ``JoyVASAAudioEncoder.features`` does exactly that and
concatenates the windows' hidden states, so its rows are the ones upstream's DiT sees: ``n_windows · L`` rows, not
``num_video_frames(N)``. Each row carries one more column, a *shown* flag: 1 for the rows that become video
frames. Upstream's frame ``k + 2`` lines up with the audio at ``k / fps`` (the two frames of front padding), and the
last window's padding frames are dropped; here the shown rows are ``2 … 2 + T − 1`` with ``T =
num_video_frames(N)``, so frame ``k`` of the video is the motion of the audio at ``k / fps`` (upstream's clip is
these frames, two lead-in frames before them and about one after). The encoder is not streaming: ``stream()`` is a
``WholeClipStream`` (all rows at the end of the audio).

**Motion.** The generator samples each window as ``sample.ClipGenerator`` does (same noise from the seed: x_T
from ``key(seed)`` for every window, window w's step noises from ``fold_in(key, w + 1)``; the first window's
context is the learned start motion/audio, later ones the previous window's last K frames), maps the coefficients
with the template (``template.to_keypoint_params``) to the renderer's layout ``[pitch, yaw, roll, tx, ty, tz,
scale, exp (3K)]`` (``vasajax.zoo.liveportrait.stage``), and smooths scale, t and the angles with upstream's EMA
(alpha 0.01, ``is_smooth_motion``) carried across windows, over every frame upstream keeps (lead-in included), so
the smoothing is upstream's; the expression is not smoothed (as upstream).

**Pose, expression, scale: relative to the portrait.** ``mean_pose()`` is the template's mean pitch, yaw, roll and
t (``mean_*``; the middle of min/max where a template lacks them), so the Animator's ``pose="relative"`` drives
``portrait pose + generated − mean``. Expression and scale follow the same rule when the generator is given the
portrait's motion (``context_motion``: the Animator's default ``start="portrait"``): ``exp = portrait exp +
generated exp − mean_exp`` and ``scale = portrait scale · generated scale / mean_scale``; with ``start="free"``
they are absolute (the template's space). Upstream (LivePortrait's relative mode, JoyVASA's default
``flag_relative_motion``) is relative to the *first generated frame* instead: ``R_d,i R_d,0ᵀ R_s``, ``t_s + t_d,i −
t_d,0``, ``exp_s + exp_d,i − exp_d,0``, ``scale_s · scale_d,i / scale_d,0``. Here the face moves around the
portrait by the generated deviation from the data mean, not from a random first frame (which would make the
portrait's own pose and expression depend on the seed), and rotations add as angles (pitch/yaw/roll), not as
rotation matrices.

**Context.** ``context = 1``, used only to receive the portrait's motion (above): the DiT itself is not primed
with it. JoyVASA's first window starts from its learned start context, as upstream; feeding the DiT a still face
over silence would be a context it never saw in training. (The Animator also computes features of one frame of
silence for that context, one encoder pass, which are ignored.)

**Controls.** ``seed`` (deterministic), ``cfg_audio`` → the CFG scale (default 2.8, upstream's), ``steps``: only
the schedule's own count (JoyVASA samples every step of its DDPM schedule). ``gaze``, ``cfg_gaze``, ``distance``,
``emotion`` and ``first_window`` have no JoyVASA counterpart: their defaults are accepted, any other value is a
``UserError``.
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vasajax import config_io, params
from vasajax.errors import UserError
from vasajax.motion.audio import num_video_frames
from vasajax.motion.stage import WholeClipStream
from vasajax.motion.wav2vec2 import Wav2Vec2, Wav2Vec2Config
from vasajax.zoo import export
from vasajax.zoo.joyvasa import sample, template
from vasajax.zoo.joyvasa.audio import encode_fn
from vasajax.zoo.joyvasa.config import JoyVASAConfig
from vasajax.zoo.joyvasa.dit import JoyVASADiT
from vasajax.zoo.joyvasa.schedule import BUFFERS, Schedule
from vasajax.zoo.liveportrait.stage import MOTION_SPACE, POSE_DIM

DEFAULT_CFG = 2.8
"""Upstream's ``ArgumentConfig.cfg_scale``."""


def shown_rows(num_samples: int, cfg: JoyVASAConfig) -> np.ndarray:
    """Bool over the ``n_windows · L`` rows of a clip of ``num_samples``: the rows that become video frames."""
    plan = sample.plan_clip(np.zeros(num_samples, np.float32), cfg.window, cfg.fps, cfg.sample_rate, cfg.pad_mode)
    lead = round(sample.FRONT_PAD / cfg.samples_per_frame)
    T = num_video_frames(num_samples, cfg.fps, cfg.sample_rate)
    rows = np.arange(plan.num_windows * cfg.window)
    return (rows >= lead) & (rows < min(lead + T, plan.num_frames))


def _config(d: dict) -> JoyVASAConfig:
    return config_io.from_dict(JoyVASAConfig, d, what="joyvasa config")


def _wav2vec2_config(d: dict) -> Wav2Vec2Config:
    return config_io.from_dict(Wav2Vec2Config, d, what="joyvasa audio config")


class JoyVASAAudioEncoder:
    """Audio entry ``"joyvasa-hubert"``: per-window HuBERT / wav2vec2 hidden states + a shown-frame flag."""

    name = "joyvasa-hubert"

    def __init__(self, encoder: Wav2Vec2, cfg: JoyVASAConfig):
        self.encoder, self.cfg = encoder, cfg
        self.fps = float(cfg.fps)
        self.feature_dim = int(cfg.audio_dim) + 1
        graphdef, self.params = nnx.split(encoder)
        self._encode = jax.jit(encode_fn(graphdef, cfg.window, cfg.fps))

    @classmethod
    def load(cls, directory: Path, manifest: dict) -> JoyVASAAudioEncoder:

        d = Path(directory)
        cfg = _config(export.read_json(d, export.JV_CONFIG)["config"])
        enc_cfg = _wav2vec2_config(export.read_json(d, export.AUDIO_CONFIG)["config"])
        tensors, _ = params.read_safetensors(d / export.AUDIO_WEIGHTS)
        enc = export.restore_module(lambda: Wav2Vec2(enc_cfg, rngs=nnx.Rngs(0)), tensors, "JoyVASA audio export")
        return cls(enc, cfg)

    def features(self, wave_16k: np.ndarray) -> np.ndarray:
        """``n_windows · L × (audio_dim + 1)``: each window's hidden states (as upstream encodes it), shown flag."""
        cfg = self.cfg
        wave = np.asarray(wave_16k, np.float32).reshape(-1)
        plan = sample.plan_clip(wave, cfg.window, cfg.fps, cfg.sample_rate, cfg.pad_mode)
        hidden = [np.asarray(self._encode(self.params, jnp.asarray(plan.wave[w : w + 1])))[0]
                  for w in range(plan.num_windows)]  # fmt: skip
        shown = shown_rows(wave.size, cfg).astype(np.float32)[:, None]
        return np.concatenate([np.concatenate(hidden), shown], axis=1).astype(np.float32)

    def stream(self) -> WholeClipStream:
        return WholeClipStream(self.features)


def check_controls(num_steps: int, window: int, default_cfg: float, *, steps, cfg_audio, cfg_gaze, gaze, distance,
                   emotion, first_window) -> float:  # fmt: skip
    """The CFG scale of a JoyVASA stream (``cfg_audio`` or ``default_cfg``); ``UserError`` for a control JoyVASA does
    not have (gaze, its CFG scale, distance, emotion, live first windows) or another step count than its schedule's."""
    if steps is not None and int(steps) != num_steps:
        raise UserError(f"JoyVASA samples every step of its {num_steps}-step schedule; "
                        f"steps={steps} is not supported (leave --steps out)")  # fmt: skip
    if gaze is not None and np.any(np.asarray(gaze, np.float32) != 0):
        raise UserError("JoyVASA has no gaze control (leave --gaze at 0 0)")
    if cfg_gaze is not None:
        raise UserError("JoyVASA has no gaze control, so no gaze CFG scale (leave --cfg-gaze out)")
    if distance is not None:
        raise UserError("JoyVASA has no head-distance control (leave --distance out)")
    if emotion is not None and not (isinstance(emotion, str) and emotion == "neutral"):
        raise UserError("JoyVASA has no emotion control (leave --emotion at neutral)")
    if first_window is not None:
        raise UserError(f"JoyVASA generates whole {window}-frame windows; live first windows "
                        "(--live, audio from stdin) are not supported")  # fmt: skip
    scale = float(default_cfg if cfg_audio is None else cfg_audio)
    if not math.isfinite(scale) or scale < 0:
        raise UserError(f"cfg_audio must be a finite number ≥ 0, got {cfg_audio}")
    return scale


class JoyVASAGenerator:
    """Generator entry ``"joyvasa"`` (see the module docstring)."""

    name = "joyvasa"
    motion_space = MOTION_SPACE
    pose_dim = POSE_DIM
    context = 1
    """Only to receive the portrait's motion (relative expression and scale); see the module docstring."""

    def __init__(self, dit: JoyVASADiT, schedule: Schedule, tpl: dict[str, np.ndarray], num_kp: int = 21):
        self.dit, self.cfg, self.schedule, self.template = dit, dit.cfg, schedule, dict(tpl)
        self.num_kp = int(num_kp)
        if self.cfg.motion_dim != 3 * self.num_kp + 7:
            raise UserError(f"JoyVASA makes {self.cfg.motion_dim}-dim motion; {self.num_kp} keypoints need "
                            f"{3 * self.num_kp + 7}")  # fmt: skip
        self.motion_dim = self.cfg.motion_dim
        self.audio_dim = int(self.cfg.audio_dim) + 1
        self.conditions = {"distance": None}  # no distance control: the Animator's "auto" resolves to None
        self.graphdef, self.params = nnx.split(dit)
        self.map_audio = jax.jit(lambda p, h: nnx.merge(self.graphdef, p).audio_features(h))
        self.start = dit.start_context(1)
        self._samplers: dict[float, object] = {}

    @classmethod
    def load(cls, directory: Path, manifest: dict) -> JoyVASAGenerator:

        d = Path(directory)
        meta = export.read_json(d, export.JV_CONFIG)
        cfg = _config(meta["config"])
        tensors, _ = params.read_safetensors(d / export.JV_WEIGHTS)
        dit_t = {k[4:]: v for k, v in tensors.items() if k.startswith("dit.")}
        dit = export.restore_module(lambda: JoyVASADiT(cfg, rngs=nnx.Rngs(0)), dit_t, "JoyVASA export")
        try:
            sched = Schedule(*(np.asarray(tensors[f"schedule.{b}"], np.float32) for b in BUFFERS))
        except KeyError as e:
            raise UserError(f"{d / export.JV_WEIGHTS} lacks the noise schedule ({e}); re-run vasajax convert") from None
        tpl = {k[9:]: v for k, v in tensors.items() if k.startswith("template.")}
        return cls(dit, sched, tpl, int(meta.get("num_kp", 21)))

    def template_mean(self, name: str) -> np.ndarray:
        """The template's ``mean_<name>``, or the middle of its min and max where it has no mean."""
        t = self.template
        if f"mean_{name}" in t:
            return np.asarray(t[f"mean_{name}"], np.float32).reshape(-1)
        lo, hi = np.asarray(t[f"min_{name}"], np.float32), np.asarray(t[f"max_{name}"], np.float32)
        return (0.5 * (lo + hi)).reshape(-1)

    def mean_pose(self) -> np.ndarray:
        return np.concatenate([self.template_mean(k) for k in ("pitch", "yaw", "roll", "t")]).astype(np.float32)

    def sampler(self, cfg_scale: float):
        if cfg_scale not in self._samplers:
            fn = sample.make_window_sampler(self.graphdef, self.schedule, cfg_scale=cfg_scale, target=self.cfg.target)
            self._samplers[cfg_scale] = jax.jit(fn)
        return self._samplers[cfg_scale]

    def to_motion(self, coef_TxM: np.ndarray, ema_state: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients → ``T×(7+3K)`` in the renderer's layout, EMA continued from ``ema_state`` (the last smoothed
        ``[scale, t, pitch, yaw, roll]``); returns ``(motion, new state)``."""
        kp = template.to_keypoint_params(coef_TxM, self.template, smooth=False, num_kp=self.num_kp)
        pose = np.concatenate([kp["scale"], kp["t"], kp["pitch"], kp["yaw"], kp["roll"]], axis=1)
        if ema_state is None:
            pose = template.ema(pose)
        else:
            pose = template.ema(np.concatenate([ema_state[None], pose]))[1:]
        scale, t, angles = pose[:, 0:1], pose[:, 1:4], pose[:, 4:7]
        out = np.concatenate([angles, t, scale, kp["exp"].reshape(len(pose), -1)], axis=1).astype(np.float32)
        return out, pose[-1]

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
    ) -> JoyVASAStream:
        scale = check_controls(self.schedule.num_steps, self.cfg.window, DEFAULT_CFG, steps=steps, cfg_audio=cfg_audio,
                               cfg_gaze=cfg_gaze, gaze=gaze, distance=distance, emotion=emotion,
                               first_window=first_window)  # fmt: skip
        portrait = None
        if context_motion is not None:
            portrait = np.asarray(context_motion, np.float32).reshape(-1)
            if portrait.shape != (self.motion_dim,) or not np.all(np.isfinite(portrait)):
                raise UserError(f"context_motion must be the portrait's {self.motion_dim} motion values")
        return JoyVASAStream(self, int(seed), scale, portrait)


class JoyVASAStream:
    """One clip: ``push`` the audio entry's rows; a window is sampled for every L rows (see the module doc)."""

    def __init__(self, gen: JoyVASAGenerator, seed: int, cfg_scale: float, portrait: np.ndarray | None = None):
        cfg = gen.cfg
        self.gen, self.sample = gen, gen.sampler(cfg_scale)
        self.key = jax.random.key(seed)
        self.x_T = jax.random.normal(self.key, (1, cfg.window, cfg.motion_dim))
        self.prev_motion, self.prev_audio = gen.start
        self.buf = np.zeros((0, gen.audio_dim), np.float32)
        self.w = 0
        self.ema: np.ndarray | None = None
        self.exp_offset = self.scale_ratio = None
        if portrait is not None:  # relative expression and scale (module docstring)
            self.exp_offset = portrait[7:] - gen.template_mean("exp")
            self.scale_ratio = portrait[6] / max(float(gen.template_mean("scale")[0]), 1e-6)

    def push(self, audio_TxA: np.ndarray) -> list[np.ndarray]:
        a = np.asarray(audio_TxA, np.float32)
        if a.size == 0:
            return []
        if a.ndim != 2 or a.shape[1] != self.gen.audio_dim:
            raise UserError(f"JoyVASA needs the joyvasa-hubert audio rows ({self.gen.audio_dim} wide), got {a.shape}")
        self.buf = np.concatenate([self.buf, a])
        out = []
        L = self.gen.cfg.window
        while len(self.buf) >= L:
            window, self.buf = self.buf[:L], self.buf[L:]
            m = self._window(window)
            if len(m):
                out.append(m[None])
        return out

    def finish(self) -> list[np.ndarray]:
        if len(self.buf):
            raise UserError(f"JoyVASA audio rows end mid-window ({len(self.buf)} of {self.gen.cfg.window}); use "
                            "the joyvasa-hubert audio encoder")  # fmt: skip
        return []

    def _window(self, rows_LxA: np.ndarray) -> np.ndarray:
        gen, cfg = self.gen, self.gen.cfg
        hidden, shown = rows_LxA[:, :-1], rows_LxA[:, -1] > 0.5
        audio = gen.map_audio(gen.params, jnp.asarray(hidden[None]))
        z = jax.random.normal(jax.random.fold_in(self.key, self.w + 1), (gen.schedule.num_steps - 1, *self.x_T.shape))
        coef = self.sample(gen.params, audio, self.prev_motion, self.prev_audio, self.x_T, z)
        self.prev_motion, self.prev_audio = coef[:, -cfg.context :], audio[:, -cfg.context :]
        self.w += 1
        # the EMA runs over every row in order from the clip's first (as upstream's over the frames it keeps; the
        # last window's padding rows come after every shown row, so smoothing over them changes nothing shown)
        motion, self.ema = gen.to_motion(np.asarray(coef[0], np.float32), self.ema)
        motion = motion[shown]
        if self.exp_offset is not None:
            motion[:, 7:] += self.exp_offset
            motion[:, 6] *= self.scale_ratio
        return motion
