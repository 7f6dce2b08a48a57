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
from vasajax.face.encoders import GLIMPSES, AppearanceEncoder, IdentityEncoder, MotionEncoder
from vasajax.face.renderer import G2D, G3D, KeypointWarp, LandmarkFlow, PatchPainter, WarpGenerator


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FaceLatent:
    """The latent factors of a batch of faces (a pytree, so it passes through ``jit``).

    With ``FaceConfig.pixel_warp`` the appearance factor has two more parts, the source image and, for each
    canonical voxel, the point of that image it was lifted from; the pure volume decoder leaves them ``None``.
    """

    appearance: jax.Array  # B×D×H×W×C canonical volume
    identity: jax.Array  # B×id_dim
    pose: jax.Array  # B×6: yaw, pitch, roll (rad), tx, ty, tz
    dyn: jax.Array  # B×dyn_dim
    source: jax.Array | None = None  # B×S×S×3 source image in [0, 1] (pixel_warp only)
    source_grid: jax.Array | None = None  # B×D×H×W×2 canonical voxel → source image point (x, y) (pixel_warp only)
    source_points: jax.Array | None = None  # B×K×2 the source's face points (landmark_flow only)

    @property
    def motion(self) -> jax.Array:
        """Stage 2's per-frame motion latent ``[pose, dyn]`` (B×(6+dyn_dim))."""
        return jnp.concatenate([self.pose, self.dyn], axis=-1)

    @property
    def appearance_state(self) -> tuple:
        """What a decode needs besides motion: ``(appearance, identity, source, source_grid, source_points)``."""
        return self.appearance, self.identity, self.source, self.source_grid, self.source_points


class FaceLatentModel(nnx.Module):
    """Encoders, warp generators, G3D and G2D of the face latent space. Images are ``B×H×W×3`` in [0, 1]."""

    def __init__(self, cfg: FaceConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.appearance_encoder = AppearanceEncoder(cfg, rngs=rngs)
        self.motion_encoder = MotionEncoder(cfg, rngs=rngs)
        self.identity_encoder = IdentityEncoder(cfg, rngs=rngs)
        warp_generator = KeypointWarp if cfg.warp_keypoints else WarpGenerator
        self.warp_to_canonical = warp_generator(cfg, rngs=rngs)
        self.warp_to_driver = warp_generator(cfg, rngs=rngs)
        self.g3d = G3D(cfg, rngs=rngs)
        self.g2d = G2D(cfg, rngs=rngs)
        if cfg.landmark_flow:
            self.landmark_flow = LandmarkFlow(cfg, rngs=rngs)
        self.painters = nnx.List(
            [PatchPainter(cfg, name, rngs=rngs) for name in GLIMPSES] if cfg.patch_channels else []
        )

    # ------------------------------------------------------------------ encoding
    def encode_motion(self, images_BxHxWx3) -> tuple[jax.Array, jax.Array]:
        """Only the motion latents ``(pose_Bx6, dyn_BxZ)`` — what stage 2 trains on; cheap."""
        return self.motion_encoder(images_BxHxWx3)

    def canonical_grid(self, pose_Bx6, dyn_BxZ, id_BxI, d: int, h: int, w: int):
        """Where each canonical voxel ``p`` lies in the posed source volume: ``R_s p + t_s + δ_s(p)``, B×D×H×W×3."""
        return warp.posed_grid(pose_Bx6, d, h, w) + self.warp_to_canonical(pose_Bx6, dyn_BxZ, id_BxI)

    def to_canonical(self, posed_vol, pose_Bx6, dyn_BxZ, id_BxI):
        """Remove pose and dynamics from a posed volume: ``V_c(p) = V_s(R_s p + t_s + δ_s(p))``."""
        d, h, w, _ = posed_vol.shape[1:]
        return warp.grid_sample(posed_vol, self.canonical_grid(pose_Bx6, dyn_BxZ, id_BxI, d, h, w))

    def encode(self, images_BxHxWx3) -> FaceLatent:
        """Images → :class:`FaceLatent` with the canonical (G3D-refined) appearance volume.

        The posed volume is lifted from the image feature map without moving it, so a posed voxel at (x, y, z)
        shows the image point (x, y): the x, y of the canonical grid are where each canonical voxel came from in
        the source image (what the pixel-warp decoder carries along as ``source_grid``).
        """
        x = images_BxHxWx3.astype(self.cfg.jnp_dtype)
        posed = self.appearance_encoder(x)
        pose, dyn = self.motion_encoder(x)
        identity = self.identity_encoder(x)
        grid = self.canonical_grid(pose, dyn, identity, *posed.shape[1:4])
        canonical = self.g3d(warp.grid_sample(posed, grid))
        if not self.cfg.pixel_warp:
            return FaceLatent(appearance=canonical, identity=identity, pose=pose, dyn=dyn)
        return FaceLatent(
            appearance=canonical,
            identity=identity,
            pose=pose,
            dyn=dyn,
            source=images_BxHxWx3.astype(jnp.float32),
            source_grid=grid[..., :2].astype(jnp.float32),
            source_points=self.landmark_flow.points(pose, dyn, identity) if self.cfg.landmark_flow else None,
        )

    # ------------------------------------------------------------------ decoding
    def to_driver(self, canonical_vol, pose_Bx6, dyn_BxZ, id_BxI):
        """Impose pose and dynamics on a canonical volume: ``V_d(q) = V_c(R_dᵀ(q − t_d) + δ_d(q))``."""
        d, h, w, _ = canonical_vol.shape[1:]
        grid = warp.unposed_grid(pose_Bx6, d, h, w) + self.warp_to_driver(pose_Bx6, dyn_BxZ, id_BxI)
        return warp.grid_sample(canonical_vol, grid)

    def decode(
        self,
        appearance,
        identity,
        pose,
        dyn,
        source=None,
        source_grid=None,
        source_points=None,
        return_flow=False,
        paint=True,
    ):
        """Canonical volume + identity + target pose/dyn → images ``B×H×W×3`` in [0, 1] (float32).

        ``appearance``, ``identity`` (and ``source``, ``source_grid``) may have batch 1 and are then broadcast to
        the batch of ``pose``. ``source`` and ``source_grid`` (from :meth:`encode`) are required by, and only
        used by, the pixel-warp decoder (``FaceConfig.pixel_warp``). ``return_flow`` (pixel warp): return
        ``(images, flow_BxHxWx2)``, the flow being the source-image point (grid units) each output pixel reads.
        ``paint=False``: without the patch painters' corrections (what they are fitted on, ``train-painters``).
        ``source_points`` (from :meth:`encode`) is required by, and only used by, ``FaceConfig.landmark_flow``.
        """
        b = pose.shape[0]

        def batch(x):
            return x if x is None or x.shape[0] == b else jnp.broadcast_to(x, (b, *x.shape[1:]))

        appearance, identity, source, source_grid, source_points = map(
            batch, (appearance, identity, source, source_grid, source_points)
        )
        dt = self.cfg.jnp_dtype
        if not self.cfg.pixel_warp:
            vol = self.to_driver(appearance.astype(dt), pose.astype(dt), dyn.astype(dt), identity.astype(dt))
            out = self.g2d(vol, dyn_BxZ=dyn.astype(dt), return_flow=return_flow)
            return self._paint(out, dyn, return_flow) if paint else out
        if source is None or source_grid is None:
            raise ValueError("the pixel-warp decoder needs the latent's source and source_grid (from encode)")
        # One trilinear sample moves the features and the source-image points they came from together.
        c = appearance.shape[-1]
        both = jnp.concatenate([appearance.astype(jnp.float32), source_grid.astype(jnp.float32)], axis=-1)
        moved = self.to_driver(both, pose.astype(dt), dyn.astype(dt), identity.astype(dt))
        extra = None
        if self.cfg.landmark_flow:
            if source_points is None:
                raise ValueError("the landmark flow needs the latent's source_points (from encode)")
            driver_points = self.landmark_flow.points(pose, dyn, identity)
            extra = self.landmark_flow(source_points, driver_points, source.shape[1])
        out = self.g2d(
            moved[..., :c].astype(dt),
            source=source,
            points_BxDxHxWx2=moved[..., c:],
            dyn_BxZ=dyn.astype(dt),
            return_flow=return_flow,
            extra_flow=extra,
        )
        return self._paint(out, dyn, return_flow) if paint else out

    def _paint(self, out, dyn, return_flow: bool):
        """The patch painters' corrections (``FaceConfig.patch_channels``) on G2D's images (and flow, untouched)."""
        if not self.painters:
            return out
        images = out[0] if return_flow else out
        for painter in self.painters:
            images = painter(images, dyn.astype(self.cfg.jnp_dtype))
        return (images, out[1]) if return_flow else images

    def reenact(self, source_BxHxWx3, driver_BxHxWx3, driver_ref_BxHxWx3=None) -> jax.Array:
        """Animate ``source`` with the pose and dynamics of ``driver`` (self- or cross-identity reenactment).

        ``driver_ref`` (a reference frame of each driver's own clip, e.g. its first): *relative* motion, the
        driver's change from its reference applied to the source's own motion (:func:`relative_motion`), so what
        the driver's codes say about its own face (a motion code that also carries identity) cancels out."""
        src = self.encode(source_BxHxWx3)
        if driver_ref_BxHxWx3 is None:
            pose, dyn = self.motion_encoder(driver_BxHxWx3.astype(self.cfg.jnp_dtype))
            return self.decode_latent(src, pose, dyn)
        b = driver_BxHxWx3.shape[0]  # driver and reference frames through the motion encoder in one batch
        both = jnp.concatenate([driver_BxHxWx3, driver_ref_BxHxWx3]).astype(self.cfg.jnp_dtype)
        pose, dyn = self.motion_encoder(both)
        return self.decode_latent(src, *relative_motion(src.pose, src.dyn, pose[:b], dyn[:b], pose[b:], dyn[b:]))

    def decode_latent(self, lat: FaceLatent, pose, dyn) -> jax.Array:
        """``decode`` with the appearance factors of ``lat`` and the given motion."""
        return self.decode(lat.appearance, lat.identity, pose, dyn, lat.source, lat.source_grid, lat.source_points)

    def __call__(self, images_BxHxWx3):
        """Autoencode (self-reconstruction): ``decode(encode(x))``."""
        lat = self.encode(images_BxHxWx3)
        return self.decode_latent(lat, lat.pose, lat.dyn)


# ---------------------------------------------------------------------- pure functions
def encode_fn(graphdef: nnx.GraphDef, params: nnx.State, images_BxHxWx3) -> FaceLatent:
    """Pure form of :meth:`FaceLatentModel.encode`: jit with ``graphdef`` closed over or static."""
    return nnx.merge(graphdef, params).encode(images_BxHxWx3)


def relative_motion(source_pose, source_dyn, pose, dyn, ref_pose, ref_dyn):
    """``(source_pose + pose − ref_pose, source_dyn + dyn − ref_dyn)``: a driver's motion relative to its own
    reference frame, carried onto the source's motion (LivePortrait's relative driving; the face model's
    ``reenact(..., driver_ref)``). With the source as its own reference this is the absolute motion; across
    identities it removes the driver's face layout (eye spacing, mouth width) that its motion codes hold, which
    the points of ``FaceConfig.landmark_flow`` would otherwise carry onto the source's face."""
    return source_pose + (pose - ref_pose), source_dyn + (dyn - ref_dyn)


def decode_fn(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    appearance,
    identity,
    pose,
    dyn,
    source=None,
    source_grid=None,
    source_points=None,
) -> jax.Array:
    """Pure form of :meth:`FaceLatentModel.decode`."""
    return nnx.merge(graphdef, params).decode(appearance, identity, pose, dyn, source, source_grid, source_points)


def jitted(model: FaceLatentModel):
    """``(params, encode, decode)``: the model's params and jitted pure encode/decode taking them first.

    >>> params, encode, decode = jitted(model)
    >>> lat = encode(params, images)
    >>> frames = decode(params, lat.appearance, lat.identity, lat.pose, lat.dyn, lat.source, lat.source_grid,
    ...                 lat.source_points)
    """
    graphdef, params = nnx.split(model)
    encode = jax.jit(lambda p, x: encode_fn(graphdef, p, x))
    decode = jax.jit(lambda p, a, i, po, dy, s=None, g=None, k=None: decode_fn(graphdef, p, a, i, po, dy, s, g, k))
    return params, encode, decode


def build(cfg: FaceConfig, seed: int = 0) -> FaceLatentModel:
    """A freshly initialised model."""
    return FaceLatentModel(cfg, rngs=nnx.Rngs(seed))


def abstract(cfg: FaceConfig) -> FaceLatentModel:
    """The model with shape-only parameters (no memory): for sizing the paper config."""
    return nnx.eval_shape(lambda: FaceLatentModel(cfg, rngs=nnx.Rngs(0)))


def count_params(tree) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(tree) if hasattr(x, "size"))
