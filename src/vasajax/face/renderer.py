"""Stage-1 generators (VASA-1 §3.1, MegaPortraits §3): warp generators, the 3D refiner G3D and the 2D decoder G2D.

* ``WarpGenerator`` — (pose, z_dyn, z_id) → non-rigid 3D flow ``δ_BxDxHxWx3``. As in MegaPortraits the code
  goes through a "1×1 conv" (a dense layer on the code vector) to C·D values reshaped to a ``D0×1×1×C0``
  column; we broadcast it over a small ``D0×H0×W0`` grid with a learned positional embedding (the column alone
  has no spatial extent), then ResBlock3Ds with upsampling reach the volume's resolution, and GroupNorm–ReLU–
  conv3–tanh gives the flow. The last conv starts at zero, so a fresh model warps by the rigid pose alone.
* ``KeypointWarp`` — the same map from K implicit 3D keypoints (``FaceConfig.warp_keypoints``): learned
  positions, displacements read from the code by an MLP, spread by Gaussian soft assignment (FOMM, LivePortrait).
* ``G3D`` — a 3D U-Net (ResBlock3D per level, 2× down/up, skip connections) that refines the canonical volume.
* ``G2D`` — folds depth into channels (D·C), a 1×1 projection, ResBlock2Ds, upsampling ResBlock2Ds, and a
  GroupNorm–ReLU–conv3–sigmoid to RGB in [0, 1]. With ``FaceConfig.pixel_warp`` it is also a warping renderer:
  a 1×1 head at volume resolution predicts, per pixel, softmax weights over depth and a residual flow; the
  weighted source-image points carried by the warped volume plus the residual make a 2D flow, bilinearly
  upsampled to the image; the source image warped by it enters the last convolution beside the features, which
  outputs RGB and an occlusion mask ``m``: ``out = m · warped + (1 − m) · rgb``. The heads start neutral
  (uniform depth weights, zero residual) and the mask starts at σ(2) ≈ 0.88, so a fresh decoder already shows
  the source face moved by the 3D warps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vasajax.face import warp
from vasajax.face.blocks import ResBlock2D, ResBlock3D, avg_pool, group_norm, upsample_nearest
from vasajax.face.config import FaceConfig
from vasajax.face.encoders import glimpse_window

DYN_2D_CHANNELS = 32
"""Channels of the coarse z_dyn map of ``FaceConfig.dyn_2d``."""

MASK_BIAS = 2.0
"""Initial occlusion-mask logit of the pixel-warp decoder (σ(2) ≈ 0.88 of each pixel from the warped source)."""


FINE_FLOW_SCALE = 0.1
"""Scale of the full-resolution residual flow of ``FaceConfig.fine_flow`` (grid units per unit of its head)."""


def log_area_ratio(flow_BxHxWx2: jax.Array) -> jax.Array:
    """``B×H×W×1``: log of how much source area each output pixel's neighbourhood reads (the Jacobian determinant of
    the flow, both in grid units; 0 for the identity, ≪ 0 where the flow stretches a thin source strip over a wide
    output region, e.g. closed lips over an open mouth), clipped to [−4, 2]. Forward differences, edge-padded."""
    f = flow_BxHxWx2.astype(jnp.float32)
    h, w = f.shape[1:3]
    dx = jnp.concatenate([f[:, :, 1:] - f[:, :, :-1], f[:, :, -1:] - f[:, :, -2:-1]], axis=2) * (w / 2)
    dy = jnp.concatenate([f[:, 1:] - f[:, :-1], f[:, -1:] - f[:, -2:-1]], axis=1) * (h / 2)
    det = dx[..., 0] * dy[..., 1] - dx[..., 1] * dy[..., 0]
    return jnp.clip(jnp.log(jnp.abs(det) + 1e-3), -4.0, 2.0)[..., None]


class WarpGenerator(nnx.Module):
    """Motion code → 3D flow at the appearance volume's resolution, in normalised grid units."""

    def __init__(self, cfg: FaceConfig, *, rngs: nnx.Rngs):
        dt = cfg.jnp_dtype
        code_dim = cfg.pose_dim + cfg.dyn_dim + cfg.id_dim
        c0, d0, s0 = cfg.warp_base_channels, cfg.warp_base_depth, cfg.warp_base_size
        self.c0, self.d0 = c0, d0
        self.project = nnx.Linear(code_dim, c0 * d0, dtype=dt, rngs=rngs)
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (d0, s0, s0, c0)))
        factors, depth = [], d0
        for _ in cfg.warp_channels:
            factors.append(2 if depth < cfg.vol_depth else 1)
            depth *= factors[-1]
        self.depth_factors = tuple(factors)
        widths = (c0, *cfg.warp_channels)
        self.blocks = nnx.List(
            [ResBlock3D(a, b, groups=cfg.groups, dtype=dt, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])]
        )
        self.norm = group_norm(widths[-1], cfg.groups, dt, rngs)
        self.out = nnx.Conv(
            widths[-1], 3, (3, 3, 3), padding="SAME", dtype=dt, kernel_init=nnx.initializers.zeros, rngs=rngs
        )

    def __call__(self, pose_Bx6, dyn_BxZ, id_BxI):
        code = jnp.concatenate([pose_Bx6, dyn_BxZ, id_BxI], axis=-1)
        col = self.project(code).reshape(-1, self.d0, 1, 1, self.c0)
        x = col + self.pos[...].astype(col.dtype)
        for f, block in zip(self.depth_factors, self.blocks):
            x = block(upsample_nearest(x, (f, 2, 2)))
        return jnp.tanh(self.out(jax.nn.relu(self.norm(x)))).astype(jnp.float32)


KEYPOINT_WIDTH = 0.2
"""Initial Gaussian width of each implicit keypoint (grid units; the volume spans [-1, 1])."""

BACKGROUND_LOGIT = -2.0
"""Initial soft-assignment logit of the static background component of :class:`KeypointWarp`."""


class KeypointWarp(nnx.Module):
    """Motion code → 3D flow from K implicit keypoints (``FaceConfig.warp_keypoints``), a drop-in for
    :class:`WarpGenerator` with the same call and output (``B×D×H×W×3``, grid units).

    Keypoint ``k`` sits at ``c_k + o_k(z_id)`` (learned positions plus an identity offset, so each face places
    its keypoints on its own features) and moves by ``Δ_k = tanh(MLP(pose, z_dyn, z_id))_k``. A voxel ``p`` takes
    ``δ(p) = Σ_k w_k(p) Δ_k`` with ``w = softmax(−|p − c_k − o_k|² / 2σ_k², b)``: the nearest keypoints carry it,
    and a background component ``b`` (zero displacement) keeps far voxels still. The displacement and offset
    layers start at zero, so a fresh model warps by the rigid pose alone, like the convolutional generator.
    """

    def __init__(self, cfg: FaceConfig, *, rngs: nnx.Rngs):
        k, hidden = cfg.warp_keypoints, cfg.warp_base_channels
        zeros = nnx.initializers.zeros
        self.k = k
        self.shape = (cfg.vol_depth, cfg.vol_size, cfg.vol_size)
        spread = jnp.array([0.6, 0.6, 0.5])
        self.centres = nnx.Param(spread * jax.random.uniform(rngs.params(), (k, 3), minval=-1.0, maxval=1.0))
        self.log_width = nnx.Param(jnp.full((k,), jnp.log(KEYPOINT_WIDTH)))
        self.background = nnx.Param(jnp.array(BACKGROUND_LOGIT))
        self.offset = nnx.Linear(cfg.id_dim, k * 3, kernel_init=zeros, rngs=rngs)
        self.hidden1 = nnx.Linear(cfg.pose_dim + cfg.dyn_dim + cfg.id_dim, hidden, rngs=rngs)
        self.hidden2 = nnx.Linear(hidden, hidden, rngs=rngs)
        self.shift = nnx.Linear(hidden, k * 3, kernel_init=zeros, rngs=rngs)

    def keypoints(self, id_BxI) -> jax.Array:
        """Where each face's keypoints sit, ``B×K×3`` (grid units)."""
        return self.centres[...][None] + self.offset(id_BxI.astype(jnp.float32)).reshape(-1, self.k, 3)

    def displacements(self, pose_Bx6, dyn_BxZ, id_BxI) -> jax.Array:
        """How far each keypoint moves, ``B×K×3`` (grid units, within ±1)."""
        code = jnp.concatenate([pose_Bx6, dyn_BxZ, id_BxI], axis=-1).astype(jnp.float32)
        h = jax.nn.relu(self.hidden2(jax.nn.relu(self.hidden1(code))))
        return jnp.tanh(self.shift(h)).reshape(-1, self.k, 3)

    def weights(self, id_BxI) -> jax.Array:
        """Soft assignment of every voxel to the keypoints, ``B×D×H×W×K`` (the background's share is the rest)."""
        grid = warp.identity_grid(*self.shape)
        kp = self.keypoints(id_BxI)
        d2 = jnp.sum((grid[None, :, :, :, None, :] - kp[:, None, None, None]) ** 2, axis=-1)
        logits = -d2 / (2 * jnp.exp(2 * self.log_width[...]))
        bg = jnp.broadcast_to(self.background[...], logits.shape[:-1] + (1,))
        return jax.nn.softmax(jnp.concatenate([logits, bg], axis=-1), axis=-1)[..., :-1]

    def __call__(self, pose_Bx6, dyn_BxZ, id_BxI):
        w = self.weights(id_BxI)
        return jnp.einsum("bdhwk,bkc->bdhwc", w, self.displacements(pose_Bx6, dyn_BxZ, id_BxI))


class LandmarkFlow(nnx.Module):
    """(pose, z_dyn, z_id) → K face points, and the full-resolution flow that carries each driver point's
    neighbourhood to its source position (``FaceConfig.landmark_flow``)."""

    def __init__(self, cfg: FaceConfig, *, rngs: nnx.Rngs):
        k, hidden = cfg.landmark_flow, 256
        self.k, self.width = k, cfg.landmark_flow_width
        self.hidden1 = nnx.Linear(cfg.pose_dim + cfg.dyn_dim + cfg.id_dim, hidden, rngs=rngs)
        self.hidden2 = nnx.Linear(hidden, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, k * 2, kernel_init=nnx.initializers.zeros, rngs=rngs)
        self.background = nnx.Param(jnp.array(BACKGROUND_LOGIT - 1.0))

    def points(self, pose_Bx6, dyn_BxZ, id_BxI) -> jax.Array:
        """``B×K×2`` face points (x, y) in grid units (the image spans [-1, 1])."""
        code = jnp.concatenate([pose_Bx6, dyn_BxZ, id_BxI], axis=-1).astype(jnp.float32)
        h = jax.nn.relu(self.hidden2(jax.nn.relu(self.hidden1(code))))
        return self.out(h).reshape(-1, self.k, 2)

    def __call__(self, source_points_BxKx2, driver_points_BxKx2, size: int) -> tuple[jax.Array, jax.Array]:
        """``(weight B×size×size×1, target B×size×size×2)`` (grid units): output pixel ``q`` near driver point
        ``p_k`` reads the source at ``s_k + (q − p_k)`` (the point's local translation, FOMM's first-order motion
        without the Jacobian); ``target = Σ_k w_k(q) (s_k + q − p_k)`` and ``weight = Σ_k w_k(q)``, the share the
        points take from the decoder's own flow: ``flow = (1 − weight) · flow + target``."""
        q = warp.identity_grid(1, size, size)[0, ..., :2]  # size×size×2 pixel centres, (x, y)
        p = driver_points_BxKx2.astype(jnp.float32)
        d2 = jnp.sum((q[None, :, :, None] - p[:, None, None]) ** 2, axis=-1)  # B×S×S×K
        logits = -d2 / (2 * self.width**2)
        bg = jnp.broadcast_to(self.background[...], logits.shape[:-1] + (1,))
        w = jax.nn.softmax(jnp.concatenate([logits, bg], axis=-1), axis=-1)[..., :-1]
        weight = w.sum(axis=-1, keepdims=True)
        target = weight * q[None] + jnp.einsum("bhwk,bkc->bhwc", w, source_points_BxKx2.astype(jnp.float32) - p)
        return weight, target


class G3D(nnx.Module):
    """3D U-Net refiner, ``vol_BxDxHxWxC`` → same shape (residual)."""

    def __init__(self, cfg: FaceConfig, *, rngs: nnx.Rngs):
        dt = cfg.jnp_dtype
        ch = cfg.g3d_channels
        g = cfg.groups
        self.enc = nnx.List(
            [ResBlock3D(a, b, groups=g, dtype=dt, rngs=rngs) for a, b in zip((cfg.vol_channels, *ch[:-1]), ch)]
        )
        self.dec = nnx.List(
            [ResBlock3D(ch[i + 1] + ch[i], ch[i], groups=g, dtype=dt, rngs=rngs) for i in reversed(range(len(ch) - 1))]
        )
        self.norm = group_norm(ch[0], g, dt, rngs)
        self.out = nnx.Conv(ch[0], cfg.vol_channels, (1, 1, 1), dtype=dt, rngs=rngs)

    def __call__(self, vol_BxDxHxWxC):
        skips = []
        x = vol_BxDxHxWxC
        for i, block in enumerate(self.enc):
            if i > 0:
                x = avg_pool(x, (2, 2, 2))
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.dec, reversed(skips[:-1])):
            x = block(jnp.concatenate([upsample_nearest(x, (2, 2, 2)), skip], axis=-1))
        return vol_BxDxHxWxC + self.out(jax.nn.relu(self.norm(x)))


class G2D(nnx.Module):
    """Volume ``B×D×H×W×C`` → image ``B×(H·2^u)×(W·2^u)×3`` in [0, 1] (a warping renderer with ``pixel_warp``)."""

    def __init__(self, cfg: FaceConfig, *, rngs: nnx.Rngs):
        dt = cfg.jnp_dtype
        g = cfg.groups
        self.pixel_warp = cfg.pixel_warp
        self.project = nnx.Conv(cfg.vol_channels * cfg.vol_depth, cfg.g2d_channels, (1, 1), dtype=dt, rngs=rngs)
        self.blocks = nnx.List(
            [
                ResBlock2D(cfg.g2d_channels, cfg.g2d_channels, groups=g, dtype=dt, rngs=rngs)
                for _ in range(cfg.g2d_blocks)
            ]
        )
        widths = (cfg.g2d_channels, *cfg.g2d_up_channels)
        self.up = nnx.List([ResBlock2D(a, b, groups=g, dtype=dt, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])
        self.norm = group_norm(widths[-1], g, dt, rngs)
        self.dyn_2d = cfg.dyn_2d
        if cfg.dyn_2d:
            self.dyn_size, self.dyn_up = cfg.dyn_2d_size, cfg.vol_size // cfg.dyn_2d_size
            self.dyn_gain = cfg.dyn_2d_gain
            self.dyn_map = nnx.Linear(cfg.dyn_dim, cfg.dyn_2d_size**2 * DYN_2D_CHANNELS, dtype=dt, rngs=rngs)
            # zero init: the branch starts neutral, so a model grown from one without it (train-face --init-from)
            # starts from that model's images
            self.dyn_proj = nnx.Conv(
                DYN_2D_CHANNELS, cfg.g2d_channels, (1, 1), dtype=dt, kernel_init=nnx.initializers.zeros, rngs=rngs
            )
        if not cfg.pixel_warp:
            self.out = nnx.Conv(widths[-1], 3, (3, 3), padding="SAME", dtype=dt, rngs=rngs)
            return
        zeros = nnx.initializers.zeros
        # Depth weights (vol_depth logits) and a residual flow (2) per volume pixel; zero init = neutral.
        # With static_flow, one more logit: the pixel stays where it is.
        self.static_flow = cfg.static_flow
        n_flow = cfg.vol_depth + int(cfg.static_flow) + 2
        self.flow_head = nnx.Conv(cfg.g2d_channels, n_flow, (1, 1), dtype=dt, kernel_init=zeros, rngs=rngs)
        mask_bias = lambda key, shape, dtype=jnp.float32: jnp.array([0.0, 0.0, 0.0, MASK_BIAS], dtype)  # noqa: E731
        self.out = nnx.Conv(widths[-1] + 3, 4, (3, 3), padding="SAME", dtype=dt, bias_init=mask_bias, rngs=rngs)
        self.fine_flow = cfg.fine_flow
        if cfg.fine_flow:
            self.fine_head = nnx.Conv(widths[-1], 2, (3, 3), padding="SAME", dtype=dt, kernel_init=zeros, rngs=rngs)
        self.stretch_cue = cfg.stretch_cue
        if cfg.stretch_cue:
            c = widths[-1]
            self.interior_in = nnx.Conv(c + 4, c, (3, 3), padding="SAME", dtype=dt, rngs=rngs)
            self.interior_mid = nnx.Conv(c, c, (3, 3), padding="SAME", dtype=dt, rngs=rngs)
            self.interior_out = nnx.Conv(c, 4, (3, 3), padding="SAME", dtype=dt, kernel_init=zeros, rngs=rngs)

    def flow(self, feat_BxHxWxF, points_BxDxHxWx2, size: int) -> jax.Array:
        """2D flow ``B×size×size×2`` (source-image points, grid units) from volume-resolution features."""
        head = self.flow_head(feat_BxHxWxF).astype(jnp.float32)
        d = points_BxDxHxWx2.shape[1]
        n = d + int(self.static_flow)
        weights_BxHxWxN = jax.nn.softmax(head[..., :n], axis=-1)
        points = points_BxDxHxWx2.astype(jnp.float32)
        flow = jnp.einsum("bhwd,bdhwc->bhwc", weights_BxHxWxN[..., :d], points) + head[..., n:]
        b = flow.shape[0]
        flow = jax.image.resize(flow, (b, size, size, 2), "linear")
        if self.static_flow:
            # the "stay" weight is upsampled, the identity it blends in is exact at full resolution
            stay = jax.image.resize(weights_BxHxWxN[..., d:], (b, size, size, 1), "linear")
            flow = flow + stay * warp.identity_grid(1, size, size)[0, ..., :2]
        return flow

    def __call__(
        self, vol_BxDxHxWxC, source=None, points_BxDxHxWx2=None, dyn_BxZ=None, return_flow=False, extra_flow=None
    ):
        """The image; with ``return_flow`` (pixel warp only) also the 2D flow ``B×S×S×2`` it warped the source
        by (for each output pixel, the source-image point it reads, grid units). ``extra_flow`` (pixel warp only):
        ``(weight, target)`` of :class:`LandmarkFlow`, blended in before the warp (``FaceConfig.landmark_flow``)."""
        b, d, h, w, c = vol_BxDxHxWxC.shape
        x = vol_BxDxHxWxC.transpose(0, 2, 3, 1, 4).reshape(b, h, w, d * c)
        x = self.project(x)
        if self.dyn_2d:
            if dyn_BxZ is None:
                raise ValueError("G2D with dyn_2d needs the dynamics code")
            s = self.dyn_size
            coarse = self.dyn_map(self.dyn_gain * dyn_BxZ.astype(x.dtype)).reshape(b, s, s, DYN_2D_CHANNELS)
            x = x + self.dyn_proj(upsample_nearest(coarse, (self.dyn_up, self.dyn_up)))
        for block in self.blocks:
            x = block(x)
        feat = x
        for block in self.up:
            x = block(upsample_nearest(x, (2, 2)))
        x = jax.nn.relu(self.norm(x))
        if not self.pixel_warp:
            if return_flow:
                raise ValueError("only the pixel-warp decoder has a 2D flow")
            return jax.nn.sigmoid(self.out(x).astype(jnp.float32))
        flow = self.flow(feat, points_BxDxHxWx2, x.shape[1])
        if self.fine_flow:
            flow = flow + FINE_FLOW_SCALE * self.fine_head(x).astype(jnp.float32)
        if extra_flow is not None:
            weight, target = extra_flow
            flow = (1 - weight) * flow + target
        warped = warp.grid_sample_2d(source.astype(jnp.float32), flow)
        seen = jnp.concatenate([x, (warped * 2 - 1).astype(x.dtype)], axis=-1)
        y = self.out(seen).astype(jnp.float32)
        if self.stretch_cue:
            cue = jax.lax.stop_gradient(log_area_ratio(flow)).astype(x.dtype)
            h = jax.nn.relu(self.interior_in(jnp.concatenate([seen, cue], axis=-1)))
            y = y + self.interior_out(jax.nn.relu(self.interior_mid(h))).astype(jnp.float32)
        mask = jax.nn.sigmoid(y[..., 3:])
        image = mask * warped + (1 - mask) * jax.nn.sigmoid(y[..., :3])
        return (image, flow) if return_flow else image


class PatchPainter(nnx.Module):
    """Repaints one glimpse window (``encoders.GLIMPSES``) of a rendered frame from the dynamics code.

    ``images_BxHxWx3`` (the decoder's output, [0, 1]) and ``dyn_BxZ`` → the images with the window corrected:
    a 4×4-patch convolution reads the window at 1/4 resolution, a linear map places ``gain · z_dyn`` on the same
    grid, a 3×3 conv and a ResBlock2D mix them, and a zero-initialised 3×3 conv predicts 16 sub-pixels × RGB per
    cell. Their mean is the cell's smooth correction (bilinearly upsampled 4×); their deviations from it are detail,
    added at a quarter of its weight (a bare pixel shuffle painted in visible 4×4 blocks). The sum is scaled by
    ``patch_out_gain`` and faded out towards the
    window's border so no seam appears."""

    def __init__(self, cfg: FaceConfig, name: str, *, rngs: nnx.Rngs):
        dt = cfg.jnp_dtype
        ch = cfg.patch_channels
        self.window = glimpse_window(name, cfg.image_size, 2)
        _, _, h, w = self.window
        self.grid = (h // 4, w // 4)
        self.code_gain, self.out_gain = cfg.patch_code_gain, cfg.patch_out_gain
        self.read = nnx.Conv(3, ch, (4, 4), strides=(4, 4), padding="VALID", dtype=dt, rngs=rngs)
        self.code = nnx.Linear(cfg.dyn_dim, self.grid[0] * self.grid[1] * 8, dtype=dt, rngs=rngs)
        self.mix = nnx.Conv(ch + 8, ch, (3, 3), padding="SAME", dtype=dt, rngs=rngs)
        self.block = ResBlock2D(ch, ch, groups=cfg.groups, dtype=dt, rngs=rngs)
        self.out = nnx.Conv(ch, 48, (3, 3), padding="SAME", dtype=dt, kernel_init=nnx.initializers.zeros, rngs=rngs)

    def feather(self) -> jax.Array:
        """``h×w×1`` weights: 1 inside, falling linearly to 0 (at the border pixels) over the outer eighth."""
        _, _, h, w = self.window

        def ramp(n):
            edge = max(n // 8, 1)
            i = jnp.arange(n, dtype=jnp.float32)
            return jnp.clip(jnp.minimum(i, n - 1 - i) / edge, 0.0, 1.0)

        return (ramp(h)[:, None] * ramp(w)[None, :])[..., None]

    def __call__(self, images_BxHxWx3, dyn_BxZ):
        top, left, h, w = self.window
        new = self.paint_window(images_BxHxWx3[:, top : top + h, left : left + w], dyn_BxZ)
        return images_BxHxWx3.at[:, top : top + h, left : left + w].set(new)

    def crop(self, images_BxHxWx3):
        """This painter's window of full frames, ``B×h×w×3``."""
        top, left, h, w = self.window
        return images_BxHxWx3[:, top : top + h, left : left + w]

    def paint_window(self, win_Bxhxwx3, dyn_BxZ):
        """The corrected window (what ``__call__`` pastes back)."""
        win = win_Bxhxwx3
        b, h, w, _ = win.shape
        gh, gw = self.grid
        x = jax.nn.relu(self.read(win.astype(self.read.kernel.dtype) * 2 - 1))
        code = self.code(self.code_gain * dyn_BxZ.astype(x.dtype)).reshape(b, gh, gw, 8)
        x = self.block(self.mix(jnp.concatenate([x, code], axis=-1)))
        y = self.out(jax.nn.relu(x)).astype(jnp.float32).reshape(b, gh, gw, 16, 3) * self.out_gain
        mean = y.mean(axis=3)
        detail = (y - mean[:, :, :, None]).reshape(b, gh, gw, 4, 4, 3).transpose(0, 1, 3, 2, 4, 5)
        d = jax.image.resize(mean, (b, h, w, 3), "linear") + 0.25 * detail.reshape(b, h, w, 3)
        return jnp.clip(win + d * self.feather(), 0.0, 1.0)
