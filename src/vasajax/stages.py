"""The three stages of a talking-face model, as small interfaces, and the registry that names their entries.

A talking-face model here is three swappable parts (DESIGN.md stage 1-3; the zoo's foreign models split the same
way):

- an **audio encoder**: 16 kHz waveform → per-video-frame features ``T×A`` (whole clips, and a streaming form);
- a **motion generator**: audio features + conditions (+ the portrait's own motion as context) → per-frame
  motion ``T×M``, one window at a time (``push``/``finish``), so offline and live generation share the code;
- a **renderer**: a face crop → an appearance state (once per portrait); appearance + motion → frames; and
  frames → motion (how a dataset's clips become the generator's training data).

``Animator`` (``vasajax.pipeline``), ``encode-dataset`` and the evaluation tools talk to stages only through
these interfaces. The motion vector's first ``pose_dim`` entries are head pose (what ``pose="relative"`` offsets
by the portrait's own pose); a renderer and a generator fit together when their ``motion_space`` names agree.

Entries are registered by name (``RENDERERS``, ``MOTION_GENERATORS``, ``AUDIO_ENCODERS``), each as a class with
``load(directory, manifest)``, or as a lazy ``"module:attr"`` string so that listing them imports nothing heavy.
Motion generators that ``vasajax train-motion`` can train have a second entry in ``MOTION_TRAINING``
(``MotionTraining``: configs, build, batch, loss, sampling; ``train-motion --generator NAME``), and renderers that
``vasajax train-face`` can train one in ``RENDERER_TRAINING`` (``RendererTraining``; ``train-face --renderer NAME``).
An export's ``manifest.json`` names its stages (``{"stages": {"renderer": "vasa", ...}}``; absent: VASA-1's).
Adding a model touches its own files and one line here (or one ``register`` call in user code: see
``tests/test_stages.py``, which animates with a renderer defined in the test).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from vasajax.errors import UserError


@runtime_checkable
class FeatureStream(Protocol):
    """Incremental audio features: ``push`` 16 kHz samples, get the rows that are complete; ``finish`` the rest."""

    num_samples: int

    def push(self, chunk: np.ndarray) -> np.ndarray: ...
    def finish(self) -> np.ndarray: ...


@runtime_checkable
class AudioEncoder(Protocol):
    name: str
    fps: float
    """Feature rows (= video frames) per second."""
    feature_dim: int

    def features(self, wave_16k: np.ndarray) -> np.ndarray:
        """A whole clip's features, ``T×A`` float32 with ``T = num_video_frames(len(wave))``."""
        ...

    def stream(self) -> FeatureStream:
        """A fresh streaming featurizer (the same rows as ``features`` when the encoder is streaming-exact)."""
        ...


@runtime_checkable
class MotionStreamLike(Protocol):
    """Windows of motion as audio features arrive: lists of ``1×T×M`` arrays."""

    def push(self, audio_TxA: np.ndarray) -> list[np.ndarray]: ...
    def finish(self) -> list[np.ndarray]: ...


@runtime_checkable
class MotionGenerator(Protocol):
    name: str
    motion_space: str
    """Names the motion vector's meaning; a renderer of the same space decodes it."""
    motion_dim: int
    pose_dim: int
    context: int
    """Frames of lead-in (motion + audio) a window conditions on; 0 = none."""
    conditions: Mapping[str, Any]
    """Control defaults recorded with the model (e.g. ``distance``, ``emotions``)."""

    def mean_pose(self) -> np.ndarray:
        """The mean generated head pose, ``pose_dim`` values (what ``pose="relative"`` subtracts)."""
        ...

    def stream(self, *, seed: int, context_motion=None, context_audio=None, **controls) -> MotionStreamLike:
        """A motion stream for one clip; ``controls`` are the model's (gaze, distance, emotion, CFG scales,
        steps, first_window for VASA's DiT); an unknown or invalid control raises ``UserError``."""
        ...


@runtime_checkable
class Renderer(Protocol):
    name: str
    motion_space: str
    motion_dim: int
    pose_dim: int
    image_size: int
    """Side of the square face crops it reads and renders."""
    crop: Any
    """``facetrack.crop.CropConfig``: how a photo is cut to what it was trained on."""

    def encode_portrait(self, crop_1xSxSx3: np.ndarray) -> Any:
        """A face crop (float32 in [0, 1]) → the appearance state every frame is rendered from (a pytree)."""
        ...

    def portrait_motion(self, state: Any) -> np.ndarray:
        """The portrait's own motion, ``motion_dim`` values (for relative pose and for priming the generator)."""
        ...

    def render(self, state: Any, motion_BxM: np.ndarray) -> np.ndarray:
        """Frames ``B×S×S×3`` float32 in [0, 1] for ``B`` motion vectors."""
        ...

    def encode_motion(self, frames_BxSxSx3: np.ndarray) -> np.ndarray:
        """uint8 face crops → their motion, ``B×M`` float32."""
        ...


class MotionTraining(Protocol):
    """What ``vasajax train-motion`` needs of a trainable motion generator (``vasajax.motion.training`` is VASA-1's
    DiT; ``vasajax.zoo.joyvasa.training`` JoyVASA's). The loop (mesh, sharded state, checkpoints, EMA, plots,
    evaluation) is ``vasajax.train.motion``'s; the entry's functions are static, the model an ``nnx.Module``."""

    name: str
    model_config: type
    """Dataclass of the model's sizes (JSON in the run's ``config.json``, ``vasajax.config_io``)."""
    diffusion_config: type
    """Dataclass of its schedule, loss and sampler settings."""
    batch_keys: tuple[str, ...]

    def presets(self, name: str) -> tuple[Any, Any]:
        """``(model config, diffusion config)`` of preset ``tiny``, ``small`` or ``paper``."""
        ...

    def with_data_dims(self, cfg: Any, motion_dim: int, audio_dim: int) -> Any: ...
    def with_dtype(self, cfg: Any, dtype: str) -> Any: ...
    def windows(self, cfg: Any) -> tuple[int, int]:
        """``(W, K)``: the loader cuts W + K frames, the first K the context."""
        ...

    def build(self, cfg: Any, seed: int) -> Any: ...
    def split(self, model: Any) -> tuple[Any, Any, Any]:
        """``(graphdef, params, rest)``: the optimiser trains ``params``; ``rest`` (statistics) travels along."""
        ...

    def set_stats(self, model: Any, stats: Mapping[str, np.ndarray]) -> None:
        """Statistics of the training data (``train.motion.norm_stats``: motion, audio, gaze, distance)."""
        ...

    def motion_stats(self, model: Any) -> tuple[np.ndarray, np.ndarray]: ...
    def batch(self, loader_batch: Mapping[str, np.ndarray], cfg: Any) -> dict[str, np.ndarray]:
        """A ``loader.motion_windows`` batch → the arrays ``loss`` reads (keys ``batch_keys``)."""
        ...

    def loss(self, params, batch, key, *, graphdef, rest, diffusion_cfg) -> tuple[Any, dict[str, Any]]:
        """Pure and jittable: ``(scalar loss, metrics)``."""
        ...

    def generate(self, model, audio_TxA, diffusion_cfg, *, gaze, distance, emotion, seed: int) -> np.ndarray:
        """Motion ``T×M`` for one clip's audio feature rows (plots and evaluation)."""
        ...

    stage_name: str
    """Its entry in ``MOTION_GENERATORS`` (what an export's manifest names)."""

    def export_part(self, model, diffusion_cfg, pose_dim: int, *, steps=None, cfg_audio=None, cfg_gaze=None):
        """``({file: (tensors, metadata)}, {config.json section: dict})`` for ``vasajax export``, with the export's
        default sampling settings where given. (VASA-1's DiT keeps its own export layout, ``checkpoint_export``.)"""
        ...


class RendererTraining(Protocol):
    """What ``vasajax train-face`` needs of a trainable renderer (``vasajax.face.training`` is VASA-1's face latent
    model; ``vasajax.zoo.liveportrait.training`` LivePortrait's F, M, W, G). The loop (mesh, sharded state, the
    patch discriminator and its step, checkpoints with exact resume, EMA, sample grids) is ``vasajax.train.face``'s;
    the entry's functions are static, the model an ``nnx.Module``."""

    name: str
    model_config: type
    """Dataclass of the model's sizes (JSON in the run's ``config.json``)."""
    loss_config: type
    """Dataclass of its objective's weights; has ``gan_weight``, ``feature_matching_weight`` and the perceptual
    settings ``vasajax.face.losses.build_critics`` reads (``perceptual``, ``vgg_weights``, ``ssim_scales``)."""

    precisions: tuple[str, ...]
    """Compute dtypes it supports, the first its default (``run.precision`` of a preset falls back to it)."""

    def presets(self, name: str, vgg_weights: str | None) -> tuple[Any, Any]:
        """``(model config, loss config)`` of preset ``name`` (``tiny``, ``small``, ``paper``, and the entry's own)."""
        ...

    def with_dtype(self, cfg: Any, dtype: str) -> Any: ...
    def frame_size(self, cfg: Any) -> int:
        """Side of the frames the loader gives (the renderer's output: what the loss compares)."""
        ...

    def build(self, cfg: Any, rngs: Any) -> Any: ...
    def trainable(self) -> Any:
        """``nnx`` filter of the variables the optimiser trains (the rest, e.g. fixed statistics, travel along)."""
        ...

    def batch_keys(self, loss_cfg: Any) -> tuple[str, ...]:
        """The ``loader.face_pairs`` fields the loss reads (frames ``source``, ``driver``, ``cross`` and labels)."""
        ...

    def loss(self, model, critics, disc, batch, loss_cfg, key) -> tuple[Any, tuple[dict[str, Any], Any]]:
        """Pure and jittable: ``(scalar loss, (metrics, fakes))``, ``fakes`` the images the discriminator judges."""
        ...

    def reenact(self, model, source, driver) -> Any:
        """``source`` driven by ``driver``'s motion (float images in [0, 1]): the sample grids and evaluation."""
        ...

    stage_name: str
    """Its entry in ``RENDERERS`` (what an export's manifest names)."""
    motion_space: str

    def export_files(self, cfg: Any, model: Any) -> dict[str, Any]:
        """``{file name: (tensors, metadata) or JSON dict}`` of a renderer export that ``RENDERERS`` loads."""
        ...


class Registry:
    """Name → entry class for one kind of stage; entries may be lazy ``"module:attr"`` strings."""

    def __init__(self, kind: str, entries: Mapping[str, str | type] | None = None):
        self.kind = kind
        self._entries: dict[str, str | type] = dict(entries or {})

    def register(self, name: str, entry: str | type | None = None):
        """``register("toy", ToyRenderer)``, or as a class decorator ``@REGISTRY.register("toy")``."""
        if entry is not None:
            self._entries[name] = entry
            return entry

        def deco(cls):
            self._entries[name] = cls
            return cls

        return deco

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> type:
        if name not in self._entries:
            raise UserError(f"no {self.kind} named {name!r}; known: {', '.join(self.names()) or 'none'}")
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module), attr)
            self._entries[name] = entry
        return entry

    def load(self, name: str, directory: Path, manifest: Mapping[str, Any]):
        """The entry ``name`` loaded from an export folder."""
        return self.get(name).load(Path(directory), manifest)


RENDERERS = Registry(
    "renderer",
    {
        "vasa": "vasajax.checkpoint_export:VasaRendererEntry",  # face.stage.VasaRenderer with the export's crop
        "liveportrait": "vasajax.zoo.liveportrait.stage:LivePortraitRenderer",
    },
)
MOTION_GENERATORS = Registry(
    "motion generator",
    {
        "vasa": "vasajax.motion.stage:VasaMotionGenerator",
        "joyvasa": "vasajax.zoo.joyvasa.stage:JoyVASAGenerator",
        "joyvasa-trained": "vasajax.zoo.joyvasa.training:TrainedJoyVASAGenerator",  # train-motion --generator joyvasa
    },
)
AUDIO_ENCODERS = Registry(
    "audio encoder",
    {
        "logmel": "vasajax.motion.stage:LogMelEncoder",
        "wav2vec2": "vasajax.motion.stage:Wav2Vec2Encoder",
        "joyvasa-hubert": "vasajax.zoo.joyvasa.stage:JoyVASAAudioEncoder",
    },
)


MOTION_TRAINING = Registry(
    "trainable motion generator",
    {"vasa": "vasajax.motion.training:VasaMotionTraining", "joyvasa": "vasajax.zoo.joyvasa.training:JoyVASATraining"},
)
RENDERER_TRAINING = Registry(
    "trainable renderer",
    {"vasa": "vasajax.face.training:VasaRendererTraining",
     "liveportrait": "vasajax.zoo.liveportrait.training:LivePortraitTraining"},
)  # fmt: skip


def check_compatible(renderer: Renderer, generator: MotionGenerator, audio: AudioEncoder, motion_audio_dim=None):
    """``UserError`` when the three stages cannot work together (motion space, sizes, frame rate)."""
    if renderer.motion_space != generator.motion_space or renderer.motion_dim != generator.motion_dim:
        raise UserError(
            f"the motion generator ({generator.name}) makes {generator.motion_dim}-dim motion in space "
            f"{generator.motion_space!r}; the renderer ({renderer.name}) reads {renderer.motion_dim}-dim "
            f"{renderer.motion_space!r}: train or convert the generator on this renderer's motion"
        )
    if renderer.pose_dim != generator.pose_dim:
        raise UserError(f"renderer and generator disagree on the head-pose dims ({renderer.pose_dim} vs "
                        f"{generator.pose_dim})")  # fmt: skip
    if motion_audio_dim is not None and int(motion_audio_dim) != int(audio.feature_dim):
        raise UserError(
            f"the audio encoder ({audio.name}) gives {audio.feature_dim}-dim features, the motion generator "
            f"expects {motion_audio_dim}: the audio config does not belong to this model"
        )


def describe(stages: Iterable[Any]) -> str:
    """``"renderer vasa · motion vasa · audio logmel"`` for logs and notebooks."""
    kinds = ("renderer", "motion", "audio")
    return " · ".join(f"{k} {getattr(s, 'name', '?')}" for k, s in zip(kinds, stages))
