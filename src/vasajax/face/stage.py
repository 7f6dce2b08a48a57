"""VASA-1's stage 1 as a ``vasajax.stages.Renderer``: the face latent model behind the renderer interface.

The registry's ``"vasa"`` renderer entry that loads it from an export folder is
``checkpoint_export.VasaRendererEntry``: the face part is read here (``face.export_part``), the crop there.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vasajax.face.export_part import FacePart
from vasajax.face.model import FaceLatent, FaceLatentModel, decode_fn, encode_fn


@functools.cache
def jitted_encode_decode():
    """(encode, decode): the face model's pure functions, jitted once per process with the graphdef static, so
    every renderer of one config shares the compiled code."""
    return jax.jit(encode_fn, static_argnums=0), jax.jit(decode_fn, static_argnums=0)


@functools.partial(jax.jit, static_argnames="graphdef")
def encode_motion_fn(graphdef: nnx.GraphDef, params: nnx.State, frames_BxSxSx3: jax.Array) -> jax.Array:
    """Pure: uint8 frames → motion latents ``B×(6+dyn)`` with the stage-1 motion encoder (frames of another size
    are resized to the model's first)."""
    model = nnx.merge(graphdef, params)
    x = frames_BxSxSx3.astype(jnp.float32) / 255.0
    if x.shape[1] != model.cfg.image_size:
        b, s = x.shape[0], model.cfg.image_size
        x = jax.image.resize(x, (b, s, s, 3), "linear", antialias=True)
    pose, dyn = model.encode_motion(x.astype(model.cfg.jnp_dtype))
    return jnp.concatenate([pose, dyn], axis=-1).astype(jnp.float32)


class VasaRenderer:
    """Renderer entry ``"vasa"``: encode a crop into a ``FaceLatent``; decode ``[pose (6), dyn]`` motion."""

    name = "vasa"
    pose_dim = 6

    def __init__(self, model: FaceLatentModel, crop, *, motion_space: str = "vasa"):
        self.model = model
        self.cfg = model.cfg
        self.crop = crop
        self.motion_space = motion_space
        self.image_size = int(self.cfg.image_size)
        self.motion_dim = int(self.cfg.motion_dim)
        self.graphdef, self.params = nnx.split(model)

    @classmethod
    def from_export(cls, export) -> VasaRenderer:
        """From a loaded ``checkpoint_export.Export``."""
        return cls(export.face_model, export.crop, motion_space=_space(export.manifest))

    @classmethod
    def from_part(cls, part: FacePart, crop) -> VasaRenderer:
        """From an export's face part (``face.export_part.load_face_part``) and its ``facetrack.crop.CropConfig``."""
        return cls(part.face_model, crop, motion_space=_space(part.manifest))

    def encode_portrait(self, crop_1xSxSx3: np.ndarray) -> FaceLatent:
        encode, _ = jitted_encode_decode()
        return encode(self.graphdef, self.params, jnp.asarray(crop_1xSxSx3, jnp.float32) / 255.0)

    def portrait_motion(self, state: FaceLatent) -> np.ndarray:
        return np.concatenate([np.asarray(state.pose[0], np.float32), np.asarray(state.dyn[0], np.float32)])

    def render(self, state: FaceLatent, motion_BxM: np.ndarray) -> np.ndarray:
        _, decode = jitted_encode_decode()
        m = np.asarray(motion_BxM)
        out = decode(
            self.graphdef, self.params, state.appearance, state.identity, jnp.asarray(m[:, :6]),
            jnp.asarray(m[:, 6:]), state.source, state.source_grid, state.source_points,
        )  # fmt: skip
        return np.asarray(out)

    def encode_motion(self, frames_BxSxSx3: np.ndarray) -> np.ndarray:
        return np.asarray(encode_motion_fn(self.graphdef, self.params, jnp.asarray(frames_BxSxSx3)))


def _space(manifest: Any) -> str:
    stages = (manifest or {}).get("stages") or {}
    return str(stages.get("motion_space", "vasa"))
