"""The stage-1 face latent model of VASA-1 (§3.1), built after MegaPortraits (Drobyshev et al. 2022).

A face image is factored into four latents:

* ``appearance`` — a *canonical* 3D feature volume ``D×H×W×C`` (pose and expression removed),
* ``identity``   — a global identity code ``z_id``,
* ``pose``       — head pose ``[yaw, pitch, roll, tx, ty, tz]``,
* ``dyn``        — facial dynamics ``z_dyn`` (lips, eyes, brows, expression).

``encode``: E_app lifts the image to a posed volume; the motion and identity encoders read pose, dyn and z_id;
the to-canonical warp (rigid ``R_s p + t_s`` plus the flow of W_s→c) resamples the posed volume into canonical
space, and G3D refines it. ``decode``: W_c→d's flow plus the inverse rigid transform of the target pose
resamples the canonical volume into the target pose, and G2D renders it. Encoding a portrait once and decoding
many (pose, dyn) pairs is what makes stage 2's generation cheap: a frame costs one warp generator, one trilinear
resample and G2D.

Pure use (DESIGN.md: NNX with a functional core)::

    graphdef, params = nnx.split(model)
    encode = jax.jit(lambda p, x: nnx.merge(graphdef, p).encode(x))
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from vasajax.face import warp
from vasajax.face.config import FaceConfig
from vasajax.face.encoders import AppearanceEncoder, IdentityEncoder, MotionEncoder
from vasajax.face.renderer import G2D, G3D, WarpGenerator


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FaceLatent:
    """The four latent factors of a batch of faces (a pytree, so it passes through ``jit``)."""

    appearance: jax.Array  # B×D×H×W×C canonical volume
    identity: jax.Array  # B×id_dim
    pose: jax.Array  # B×6: yaw, pitch, roll (rad), tx, ty, tz
    dyn: jax.Array  # B×dyn_dim

    @property
    def motion(self) -> jax.Array:
        """Stage 2's per-frame motion latent ``[pose, dyn]`` (B×(6+dyn_dim))."""
        return jnp.concatenate([self.pose, self.dyn], axis=-1)


class FaceLatentModel(nnx.Module):
    """Encoders, warp generators, G3D and G2D of the face latent space. Images are ``B×H×W×3`` in [0, 1]."""

    def __init__(self, cfg: FaceConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.appearance_encoder = AppearanceEncoder(cfg, rngs=rngs)
        self.motion_encoder = MotionEncoder(cfg, rngs=rngs)
        self.identity_encoder = IdentityEncoder(cfg, rngs=rngs)
        self.warp_to_canonical = WarpGenerator(cfg, rngs=rngs)
        self.warp_to_driver = WarpGenerator(cfg, rngs=rngs)
        self.g3d = G3D(cfg, rngs=rngs)
        self.g2d = G2D(cfg, rngs=rngs)

    # ------------------------------------------------------------------ encoding
    def encode_motion(self, images_BxHxWx3) -> tuple[jax.Array, jax.Array]:
        """Only the motion latents ``(pose_Bx6, dyn_BxZ)`` — what stage 2 trains on; cheap."""
        return self.motion_encoder(images_BxHxWx3)

    def to_canonical(self, posed_vol, pose_Bx6, dyn_BxZ, id_BxI):
        """Remove pose and dynamics from a posed volume: ``V_c(p) = V_s(R_s p + t_s + δ_s(p))``."""
        d, h, w, _ = posed_vol.shape[1:]
        grid = warp.posed_grid(pose_Bx6, d, h, w) + self.warp_to_canonical(pose_Bx6, dyn_BxZ, id_BxI)
        return warp.grid_sample(posed_vol, grid)

    def encode(self, images_BxHxWx3) -> FaceLatent:
        """Images → :class:`FaceLatent` with the canonical (G3D-refined) appearance volume."""
        x = images_BxHxWx3.astype(self.cfg.jnp_dtype)
        posed = self.appearance_encoder(x)
        pose, dyn = self.motion_encoder(x)
        identity = self.identity_encoder(x)
        canonical = self.g3d(self.to_canonical(posed, pose, dyn, identity))
        return FaceLatent(appearance=canonical, identity=identity, pose=pose, dyn=dyn)

    # ------------------------------------------------------------------ decoding
    def to_driver(self, canonical_vol, pose_Bx6, dyn_BxZ, id_BxI):
        """Impose pose and dynamics on a canonical volume: ``V_d(q) = V_c(R_dᵀ(q − t_d) + δ_d(q))``."""
        d, h, w, _ = canonical_vol.shape[1:]
        grid = warp.unposed_grid(pose_Bx6, d, h, w) + self.warp_to_driver(pose_Bx6, dyn_BxZ, id_BxI)
        return warp.grid_sample(canonical_vol, grid)

    def decode(self, appearance, identity, pose, dyn) -> jax.Array:
        """Canonical volume + identity + target pose/dyn → images ``B×H×W×3`` in [0, 1] (float32).

        ``appearance`` and ``identity`` may have batch 1 and are then broadcast to the batch of ``pose``.
        """
        b = pose.shape[0]
        if appearance.shape[0] != b:
            appearance = jnp.broadcast_to(appearance, (b, *appearance.shape[1:]))
        if identity.shape[0] != b:
            identity = jnp.broadcast_to(identity, (b, *identity.shape[1:]))
        dt = self.cfg.jnp_dtype
        vol = self.to_driver(appearance.astype(dt), pose.astype(dt), dyn.astype(dt), identity.astype(dt))
        return self.g2d(vol)

    def reenact(self, source_BxHxWx3, driver_BxHxWx3) -> jax.Array:
        """Animate ``source`` with the pose and dynamics of ``driver`` (self- or cross-identity reenactment)."""
        src = self.encode(source_BxHxWx3)
        pose, dyn = self.motion_encoder(driver_BxHxWx3.astype(self.cfg.jnp_dtype))
        return self.decode(src.appearance, src.identity, pose, dyn)

    def __call__(self, images_BxHxWx3):
        """Autoencode (self-reconstruction): ``decode(encode(x))``."""
        lat = self.encode(images_BxHxWx3)
        return self.decode(lat.appearance, lat.identity, lat.pose, lat.dyn)


# ---------------------------------------------------------------------- pure functions
def encode_fn(graphdef: nnx.GraphDef, params: nnx.State, images_BxHxWx3) -> FaceLatent:
    """Pure form of :meth:`FaceLatentModel.encode`: jit with ``graphdef`` closed over or static."""
    return nnx.merge(graphdef, params).encode(images_BxHxWx3)


def decode_fn(graphdef: nnx.GraphDef, params: nnx.State, appearance, identity, pose, dyn) -> jax.Array:
    """Pure form of :meth:`FaceLatentModel.decode`."""
    return nnx.merge(graphdef, params).decode(appearance, identity, pose, dyn)


def jitted(model: FaceLatentModel):
    """``(params, encode, decode)``: the model's params and jitted pure encode/decode taking them first.

    >>> params, encode, decode = jitted(model)
    >>> lat = encode(params, images); frames = decode(params, lat.appearance, lat.identity, lat.pose, lat.dyn)
    """
    graphdef, params = nnx.split(model)
    encode = jax.jit(lambda p, x: encode_fn(graphdef, p, x))
    decode = jax.jit(lambda p, a, i, po, dy: decode_fn(graphdef, p, a, i, po, dy))
    return params, encode, decode


def build(cfg: FaceConfig, seed: int = 0) -> FaceLatentModel:
    """A freshly initialised model."""
    return FaceLatentModel(cfg, rngs=nnx.Rngs(seed))


def abstract(cfg: FaceConfig) -> FaceLatentModel:
    """The model with shape-only parameters (no memory): for sizing the paper config."""
    return nnx.eval_shape(lambda: FaceLatentModel(cfg, rngs=nnx.Rngs(0)))


def count_params(tree) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(tree) if hasattr(x, "size"))
