"""Stage-1 generators (VASA-1 §3.1, MegaPortraits §3): warp generators, the 3D refiner G3D and the 2D decoder G2D.

* ``WarpGenerator`` — (pose, z_dyn, z_id) → non-rigid 3D flow ``δ_BxDxHxWx3``. As in MegaPortraits the code
  goes through a "1×1 conv" (a dense layer on the code vector) to C·D values reshaped to a ``D0×1×1×C0``
  column; we broadcast it over a small ``D0×H0×W0`` grid with a learned positional embedding (the column alone
  has no spatial extent), then ResBlock3Ds with upsampling reach the volume's resolution, and GroupNorm–ReLU–
  conv3–tanh gives the flow. The last conv starts at zero, so a fresh model warps by the rigid pose alone.
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
        self.flow_head = nnx.Conv(cfg.g2d_channels, cfg.vol_depth + 2, (1, 1), dtype=dt, kernel_init=zeros, rngs=rngs)
        mask_bias = lambda key, shape, dtype=jnp.float32: jnp.array([0.0, 0.0, 0.0, MASK_BIAS], dtype)  # noqa: E731
        self.out = nnx.Conv(widths[-1] + 3, 4, (3, 3), padding="SAME", dtype=dt, bias_init=mask_bias, rngs=rngs)

    def flow(self, feat_BxHxWxF, points_BxDxHxWx2, size: int) -> jax.Array:
        """2D flow ``B×size×size×2`` (source-image points, grid units) from volume-resolution features."""
        head = self.flow_head(feat_BxHxWxF).astype(jnp.float32)
        d = points_BxDxHxWx2.shape[1]
        weights_BxHxWxD = jax.nn.softmax(head[..., :d], axis=-1)
        flow = jnp.einsum("bhwd,bdhwc->bhwc", weights_BxHxWxD, points_BxDxHxWx2.astype(jnp.float32)) + head[..., d:]
        b = flow.shape[0]
        return jax.image.resize(flow, (b, size, size, 2), "linear")

    def __call__(self, vol_BxDxHxWxC, source=None, points_BxDxHxWx2=None, dyn_BxZ=None, return_flow=False):
        """The image; with ``return_flow`` (pixel warp only) also the 2D flow ``B×S×S×2`` it warped the source
        by (for each output pixel, the source-image point it reads, grid units)."""
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
        warped = warp.grid_sample_2d(source.astype(jnp.float32), flow)
        y = self.out(jnp.concatenate([x, (warped * 2 - 1).astype(x.dtype)], axis=-1)).astype(jnp.float32)
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
