"""LivePortrait as a ``vasajax.stages.Renderer``: entry ``"liveportrait"``, motion space ``"liveportrait"``.

**The motion vector** (one layout for every stage of this space; pose first, so ``pose="relative"`` works)::

    [pitch, yaw, roll (degrees), tx, ty, tz, scale, exp (K × 3, row-major: kp0 x y z, kp1 x y z, ...)]

``motion_dim = 7 + 3K`` (70 for the released model, K = 21), ``pose_dim = 6``. These are M's refined outputs
(``get_kp_info``); tz is carried but not applied (LivePortrait's Eq. 2 uses only tx, ty); scale is not pose:
it stays absolute under ``pose="relative"``.

**State** (``encode_portrait``): F's appearance volume, the source's canonical keypoints ``x_c,s``, its
transformed keypoints ``x_s`` and its own 70-vector. **Render**: ``x_d = transform_keypoint(x_c,s, motion)``,
then, when the export holds the retargeting module S, LivePortrait's stitching ``x_d ← stitching(x_s, x_d)``
(upstream ``LivePortraitWrapper.stitching``, as its pipeline applies it with ``flag_stitching`` and no eye/lip
retargeting, driving multiplier 1), then W and G.

**Sizes.** ``image_size`` is M/F's input (256 for the released model); ``render`` returns G's native output,
``output_size`` (512), not resized: the ``Animator`` resizes (``--size``, default the crop side ``image_size``)
or pastes the frame back into the photo at full resolution (``--paste-back``), so nothing is thrown away here.
Use ``--size 512`` for the native resolution of crop frames.

**Crop.** Upstream crops around the bounding box of its own 2D landmarks (``scale=2.3``, ``vy_ratio=-0.125``,
InsightFace + its 203-point detector); facetrack has MediaPipe landmarks and an eye/mouth-based square, whose
default (scale 1.35, offset_y 0.05) was chosen to frame like VoxCeleb / LivePortrait crops (face centred with
hair and chin). The two are not identical (no measurement of the difference was made); the crop is stored in
the export (``liveportrait.json``) and can be changed there.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vasajax import config_io, params
from vasajax.errors import UserError
from vasajax.facetrack.crop import CropConfig
from vasajax.zoo import export
from vasajax.zoo.liveportrait import keypoints as kp_lib
from vasajax.zoo.liveportrait.config import LivePortraitConfig, default_crop
from vasajax.zoo.liveportrait.model import LivePortrait

MOTION_SPACE = "liveportrait"
POSE_DIM = 6


def motion_dim(num_kp: int) -> int:
    """``7 + 3K``."""
    return 7 + 3 * int(num_kp)


def to_vector(info: dict) -> jax.Array:
    """M's refined outputs (``pitch``/``yaw``/``roll`` B×1, ``t`` B×3, ``scale`` B×1, ``exp`` B×K×3) → ``B×(7+3K)``."""
    b = info["exp"].shape[0]
    parts = [info["pitch"], info["yaw"], info["roll"], info["t"], info["scale"], info["exp"].reshape(b, -1)]
    return jnp.concatenate([jnp.reshape(p, (b, -1)).astype(jnp.float32) for p in parts], axis=1)


def motion_names(num_kp: int) -> list[str]:
    """Names of the ``7 + 3K`` motion dimensions (``exp3_y``: keypoint 3's y offset)."""
    return ["pitch", "yaw", "roll", "tx", "ty", "tz", "scale"] + [
        f"exp{k}_{c}" for k in range(int(num_kp)) for c in "xyz"
    ]


def from_vector(m_BxM: jax.Array) -> dict:
    """Inverse of :func:`to_vector`."""
    b = m_BxM.shape[0]
    return {
        "pitch": m_BxM[:, 0:1],
        "yaw": m_BxM[:, 1:2],
        "roll": m_BxM[:, 2:3],
        "t": m_BxM[:, 3:6],
        "scale": m_BxM[:, 6:7],
        "exp": m_BxM[:, 7:].reshape(b, -1, 3),
    }


def _as_input(graphdef, frames, size):
    model_in = frames.astype(jnp.float32) / 255.0 if frames.dtype == jnp.uint8 else frames.astype(jnp.float32)
    if model_in.shape[1] != size or model_in.shape[2] != size:
        model_in = jax.image.resize(model_in, (model_in.shape[0], size, size, 3), "linear", antialias=True)
    return model_in


@functools.partial(jax.jit, static_argnames="graphdef")
def encode_fn(graphdef: nnx.GraphDef, state: nnx.State, crop_1xSxSx3: jax.Array) -> dict:
    """Pure: a uint8 crop → the renderer state (volume, canonical and source keypoints, motion vector)."""
    model = nnx.merge(graphdef, state)
    x = _as_input(graphdef, crop_1xSxSx3, model.cfg.image_size)
    info = model.extract_motion(x)
    kp_s = kp_lib.transform_keypoint(
        info["kp"], info["pitch"], info["yaw"], info["roll"], info["exp"], info["scale"], info["t"]
    )
    return {"volume": model.extract_appearance(x), "kp_canonical": info["kp"], "kp_source": kp_s,
            "motion": to_vector(info)}  # fmt: skip


@functools.partial(jax.jit, static_argnames="graphdef")
def render_fn(graphdef: nnx.GraphDef, state: nnx.State, portrait: dict, motion_BxM: jax.Array) -> jax.Array:
    """Pure: the renderer state + ``B`` motion vectors → ``B×out×out×3`` frames in [0, 1] (see the module doc)."""
    model = nnx.merge(graphdef, state)
    b = motion_BxM.shape[0]
    d = from_vector(motion_BxM.astype(jnp.float32))
    kp_c = jnp.broadcast_to(portrait["kp_canonical"], (b, *portrait["kp_canonical"].shape[1:]))
    kp_s = jnp.broadcast_to(portrait["kp_source"], kp_c.shape)
    kp_d = kp_lib.transform_keypoint(kp_c, d["pitch"], d["yaw"], d["roll"], d["exp"], d["scale"], d["t"])
    if model.retargeting is not None:
        kp_d = kp_lib.stitch(model.retargeting, kp_s, kp_d)
    vol = jnp.broadcast_to(portrait["volume"], (b, *portrait["volume"].shape[1:]))
    return model.render(vol, kp_s, kp_d)


@functools.partial(jax.jit, static_argnames="graphdef")
def encode_motion_fn(graphdef: nnx.GraphDef, state: nnx.State, frames_BxSxSx3: jax.Array) -> jax.Array:
    """Pure: uint8 face crops (any square size; resized to the input size) → ``B×(7+3K)`` motion vectors."""
    model = nnx.merge(graphdef, state)
    return to_vector(model.extract_motion(_as_input(graphdef, frames_BxSxSx3, model.cfg.image_size)))


class LivePortraitRenderer:
    """Renderer entry ``"liveportrait"`` (see the module docstring for the motion layout, sizes and crop)."""

    name = "liveportrait"
    motion_space = MOTION_SPACE
    pose_dim = POSE_DIM

    def __init__(self, model: LivePortrait, crop=None):
        self.model = model
        self.cfg: LivePortraitConfig = model.cfg
        self.crop = crop or default_crop(self.cfg)
        self.image_size = int(self.cfg.image_size)
        self.output_size = int(self.cfg.output_size)
        self.num_kp = int(self.cfg.motion.num_kp)
        self.motion_dim = motion_dim(self.num_kp)
        self.motion_names = motion_names(self.num_kp)
        self.stitching = model.retargeting is not None
        self.graphdef, self.params = nnx.split(model)

    @classmethod
    def load(cls, directory: Path, manifest: dict) -> LivePortraitRenderer:
        """From an export written by ``vasajax.zoo.export`` (``liveportrait.json`` + ``liveportrait.safetensors``)."""

        d = Path(directory)
        meta = export.read_json(d, export.LP_CONFIG)
        try:
            cfg = LivePortraitConfig.from_dict(meta["config"])
            crop = config_io.from_dict(CropConfig, meta["crop"], what="crop") if "crop" in meta else default_crop(cfg)
            retargeting = bool(meta.get("retargeting", True))
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(
                f"{d / export.LP_CONFIG} is not a LivePortrait config ({e}); re-run vasajax convert"
            ) from None
        tensors, _ = params.read_safetensors(d / export.LP_WEIGHTS)
        model = export.restore_module(
            lambda: LivePortrait(cfg, rngs=nnx.Rngs(0), retargeting=retargeting), tensors, "LivePortrait export"
        )
        return cls(model, crop)

    def encode_portrait(self, crop_1xSxSx3: np.ndarray) -> dict[str, Any]:
        return encode_fn(self.graphdef, self.params, jnp.asarray(crop_1xSxSx3))

    def portrait_motion(self, state: dict) -> np.ndarray:
        return np.asarray(state["motion"][0], np.float32)

    def render(self, state: dict, motion_BxM: np.ndarray) -> np.ndarray:
        m = np.asarray(motion_BxM, np.float32)
        if m.ndim != 2 or m.shape[1] != self.motion_dim:
            raise UserError(f"LivePortrait renders {self.motion_dim}-dim motion, got shape {m.shape}")
        return np.asarray(render_fn(self.graphdef, self.params, state, jnp.asarray(m)))

    def encode_motion(self, frames_BxSxSx3: np.ndarray) -> np.ndarray:
        return np.asarray(encode_motion_fn(self.graphdef, self.params, jnp.asarray(frames_BxSxSx3)))
