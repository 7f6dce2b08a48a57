"""Stage-1 encoders (VASA-1 §3.1, MegaPortraits §3): appearance, motion (pose + dynamics) and identity.

* ``AppearanceEncoder`` — E_app: image → *posed* appearance volume ``V_BxDxHxWxC``. A 7×7 stem, ResBlock2Ds
  each followed by a 2× average pool, GroupNorm–ReLU–1×1 conv to C·D channels, a reshape that lifts the
  feature map into depth, then ResBlock3Ds.
* ``MotionEncoder`` — image → head pose ``[yaw, pitch, roll, tx, ty, tz]`` (bounded by tanh) and the facial
  dynamics code ``z_dyn``. MegaPortraits used pretrained ResNets here; ours trains from scratch with the
  same role (pose can be supervised by tracked labels in the trainer).
* ``IdentityEncoder`` — image → identity code ``z_id`` (VASA-1's identity latent; MegaPortraits' global
  descriptor).

The motion and identity encoders share one convolutional trunk design (``ImageEncoder``) but not weights.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vasajax.face.blocks import ResBlock2D, ResBlock3D, avg_pool, group_norm
from vasajax.face.config import FaceConfig


class AppearanceEncoder(nnx.Module):
    """E_app: ``images_BxHxWx3`` in [0, 1] → posed volume ``B×D×(H/2^n)×(W/2^n)×C``."""

    def __init__(self, cfg: FaceConfig, *, rngs: nnx.Rngs):
        dt = cfg.jnp_dtype
        self.cfg = cfg
        self.stem = nnx.Conv(3, cfg.app_stem, (7, 7), padding="SAME", dtype=dt, rngs=rngs)
        widths = (cfg.app_stem, *cfg.app_channels)
        self.down = nnx.List(
            [ResBlock2D(a, b, groups=cfg.groups, dtype=dt, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])]
        )
        self.norm = group_norm(widths[-1], cfg.groups, dt, rngs)
        self.lift = nnx.Conv(widths[-1], cfg.vol_channels * cfg.vol_depth, (1, 1), dtype=dt, rngs=rngs)
        self.res3d = nnx.List(
            [
                ResBlock3D(cfg.vol_channels, cfg.vol_channels, groups=cfg.groups, dtype=dt, rngs=rngs)
                for _ in range(cfg.app_res3d)
            ]
        )

    def __call__(self, images_BxHxWx3):
        x = self.stem(images_BxHxWx3 * 2 - 1)
        for block in self.down:
            x = avg_pool(block(x), (2, 2))
        x = self.lift(jax.nn.relu(self.norm(x)))
        b, h, w, _ = x.shape
        vol = x.reshape(b, h, w, self.cfg.vol_depth, self.cfg.vol_channels).transpose(0, 3, 1, 2, 4)
        for block in self.res3d:
            vol = block(vol)
        return vol


class ImageEncoder(nnx.Module):
    """A ResNet-style trunk: resize → stride-2 7×7 stem → ResBlock2D + pool per width → global mean → linear."""

    def __init__(self, cfg: FaceConfig, out_dim: int, *, rngs: nnx.Rngs, zero_head: bool = False, pool: str = "mean"):
        dt = cfg.jnp_dtype
        self.size = cfg.enc_input_size
        self.pool = pool
        ch = cfg.enc_channels
        self.stem = nnx.Conv(3, ch[0], (7, 7), strides=(2, 2), padding="SAME", dtype=dt, rngs=rngs)
        self.blocks = nnx.List(
            [ResBlock2D(a, b, groups=cfg.groups, dtype=dt, rngs=rngs) for a, b in zip(ch[:1] + ch[:-1], ch)]
        )
        self.norm = group_norm(ch[-1], cfg.groups, dt, rngs)
        init = nnx.initializers.zeros if zero_head else nnx.initializers.lecun_normal()
        side = cfg.enc_input_size // 2 ** (len(ch) + 1)
        features = ch[-1] * (side * side if pool == "flatten" else 1)
        self.head = nnx.Linear(features, out_dim, dtype=dt, kernel_init=init, rngs=rngs)

    def __call__(self, images_BxHxWx3):
        b, h, w, _ = images_BxHxWx3.shape
        x = images_BxHxWx3
        if (h, w) != (self.size, self.size):
            x = jax.image.resize(x, (b, self.size, self.size, 3), "linear", antialias=True)
        x = self.stem(x * 2 - 1)
        for block in self.blocks:
            x = avg_pool(block(x), (2, 2))
        x = jax.nn.relu(self.norm(x))
        # "flatten" scales by 1/sqrt(cells): Adam moves every head weight by ~lr a step, so without it the code
        # would jump by ~lr·cells·|x| a step (a warm-started renderer falls apart within 20 steps).
        x = x.reshape(b, -1) * (x.shape[1] * x.shape[2]) ** -0.5 if self.pool == "flatten" else x.mean(axis=(1, 2))
        return self.head(x).astype(jnp.float32)


GLIMPSES: dict[str, tuple[float, float, float, float]] = {
    "mouth": (0.605, 0.5, 0.25, 0.375),
    "eyes": (0.435, 0.5, 0.1875, 0.5),
}
"""Glimpse windows as (centre y, centre x, height, width), fractions of the crop side. With
``facetrack.crop.CropConfig``'s defaults (side = 2·1.35·2·eye distance, centre 0.1 of the way from the eyes to the mouth
and 0.05 of the side lower) the eyes sit at y ≈ 0.43 and the mouth at y ≈ 0.6 of every crop, so these windows
hold them whatever the identity; head turns move them by a few percent, which the windows' margins absorb."""


def glimpse_window(name: str, image_size: int, pools: int) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` in pixels of glimpse ``name`` in an ``image_size`` crop; height and width
    are rounded to multiples of ``2**(pools + 1)`` so the glimpse trunk's stem and pools divide them."""
    cy, cx, fh, fw = GLIMPSES[name]
    m = 2 ** (pools + 1)
    h, w = (max(m, m * round(f * image_size / m)) for f in (fh, fw))
    top = min(max(round(cy * image_size - h / 2), 0), image_size - h)
    left = min(max(round(cx * image_size - w / 2), 0), image_size - w)
    return top, left, h, w


class GlimpseEncoder(nnx.Module):
    """One fixed window of the full-resolution image → a flattened feature map → a (zero-initialised) code."""

    def __init__(self, cfg: FaceConfig, name: str, out_dim: int, *, rngs: nnx.Rngs):
        dt = cfg.jnp_dtype
        ch = cfg.glimpse_channels
        self.image_size = cfg.image_size
        self.window = glimpse_window(name, cfg.image_size, len(ch))
        self.stem = nnx.Conv(3, ch[0], (5, 5), strides=(2, 2), padding="SAME", dtype=dt, rngs=rngs)
        self.blocks = nnx.List(
            [ResBlock2D(a, b, groups=cfg.groups, dtype=dt, rngs=rngs) for a, b in zip(ch[:1] + ch[:-1], ch)]
        )
        self.norm = group_norm(ch[-1], cfg.groups, dt, rngs)
        self.squeeze = nnx.Conv(ch[-1], 16, (1, 1), dtype=dt, rngs=rngs)
        _, _, h, w = self.window
        cells = (h // 2 ** (len(ch) + 1)) * (w // 2 ** (len(ch) + 1))
        self.head = nnx.Linear(cells * 16, out_dim, dtype=dt, kernel_init=nnx.initializers.zeros, rngs=rngs)

    def __call__(self, images_BxHxWx3):
        b, h, w, _ = images_BxHxWx3.shape
        x = images_BxHxWx3
        if (h, w) != (self.image_size, self.image_size):
            x = jax.image.resize(x, (b, self.image_size, self.image_size, 3), "linear", antialias=True)
        top, left, gh, gw = self.window
        x = self.stem(x[:, top : top + gh, left : left + gw] * 2 - 1)
        for block in self.blocks:
            x = avg_pool(block(x), (2, 2))
        x = self.squeeze(jax.nn.relu(self.norm(x)))
        cells = x.shape[1] * x.shape[2]  # 1/sqrt(cells), as ImageEncoder's "flatten": steady steps under Adam
        return self.head(x.reshape(b, -1) * cells**-0.5).astype(jnp.float32)


class MotionEncoder(nnx.Module):
    """``images_BxHxWx3`` → ``(pose_Bx6, dyn_BxZ)``; angles in radians, translations in volume units.

    With ``pixel_warp`` its head starts at zero: a fresh model reads every face as frontal and neutral, both warps
    start as the identity, and the pixel-warp decoder starts by copying the source (instead of warping it by a
    random pose), which is where its fast start comes from."""

    def __init__(self, cfg: FaceConfig, *, rngs: nnx.Rngs):
        self.max_angle = cfg.max_angle
        self.max_shift = cfg.max_shift
        self.trunk = ImageEncoder(cfg, 6 + cfg.dyn_dim, rngs=rngs, zero_head=cfg.pixel_warp, pool=cfg.motion_pool)
        self.glimpses = nnx.List(
            [GlimpseEncoder(cfg, name, 6 + cfg.dyn_dim, rngs=rngs) for name in GLIMPSES] if cfg.glimpse_channels else []
        )

    def __call__(self, images_BxHxWx3):
        out = self.trunk(images_BxHxWx3)
        for glimpse in self.glimpses:
            out = out + glimpse(images_BxHxWx3)
        angles = jnp.tanh(out[:, :3]) * self.max_angle
        shifts = jnp.tanh(out[:, 3:6]) * self.max_shift
        return jnp.concatenate([angles, shifts], axis=-1), out[:, 6:]


class IdentityEncoder(nnx.Module):
    """``images_BxHxWx3`` → identity code ``z_id`` (``B×id_dim``)."""

    def __init__(self, cfg: FaceConfig, *, rngs: nnx.Rngs):
        self.trunk = ImageEncoder(cfg, cfg.id_dim, rngs=rngs)

    def __call__(self, images_BxHxWx3):
        return self.trunk(images_BxHxWx3)
