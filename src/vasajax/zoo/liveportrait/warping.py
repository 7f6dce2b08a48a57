"""LivePortrait's warping module W (paper §3.1, after face-vid2vid, Wang et al. 2021): keypoints → dense 3D
flow and occlusion → the source volume warped and flattened to a 2D feature map for G.

Coordinates follow torch ``grid_sample``: the last axis of a grid is (x, y, z) in [-1, 1] along (W, H, D).
The identity grid is ``2·i/(n−1) − 1`` (corner-aligned, as upstream's ``make_coordinate_grid``), while the
sampling itself is ``grid_sample(..., align_corners=False)`` with zero padding (``vasajax.face.warp``), exactly
the mismatch upstream has; keypoints live in the same [-1, 1] space.

Dense motion: compress the volume to ``compress`` channels (1×1×1 conv, BN, ReLU); for every keypoint k build
the sparse motion ``p ↦ p − kp_driving[k] + kp_source[k]`` (plus the identity for the background), warp the
compressed volume with each, append the difference of Gaussian heatmaps (variance 0.01) of the driving and
source keypoints, run a 3D hourglass, and read (a) a softmax mask over the K+1 motions, whose weighted sum is
the deformation, and (b) an occlusion map from the hourglass output flattened over depth (7×7 conv, sigmoid).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vasajax.face.warp import grid_sample
from vasajax.zoo.liveportrait.config import DenseMotionConfig, WarpingConfig
from vasajax.zoo.liveportrait.layers import DownBlock, SameBlock2d, UpBlock3d, batch_norm, conv, flatten_depth


def coordinate_grid(d: int, h: int, w: int):
    """``D×H×W×3`` grid of (x, y, z), each ``2·i/(n−1) − 1`` (upstream ``make_coordinate_grid``)."""
    zs, ys, xs = (2 * (jnp.arange(n, dtype=jnp.float32) / (n - 1)) - 1 for n in (d, h, w))
    z, y, x = jnp.meshgrid(zs, ys, xs, indexing="ij")
    return jnp.stack([x, y, z], axis=-1)


def keypoint_heatmaps(kp_BxKx3, d: int, h: int, w: int, variance: float = 0.01):
    """Gaussians ``exp(−‖p − kp‖² / (2·variance))`` on the coordinate grid: ``B×K×D×H×W``."""
    diff = coordinate_grid(d, h, w)[None, None] - kp_BxKx3[:, :, None, None, None, :]
    return jnp.exp(-0.5 * jnp.sum(jnp.square(diff), axis=-1) / variance)


class Hourglass(nnx.Module):
    """3D U-Net: down blocks (pool H, W), up blocks with skip concatenation, conv3 → BN → ReLU at the end."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int, rngs: nnx.Rngs):
        be, mf = block_expansion, max_features

        def width(i):
            return min(mf, be * 2**i)

        self.down_blocks = nnx.List(
            [DownBlock(in_features if i == 0 else width(i), width(i + 1), 3, rngs) for i in range(num_blocks)]
        )
        ups = []
        for i in reversed(range(num_blocks)):
            ups.append(UpBlock3d((1 if i == num_blocks - 1 else 2) * width(i + 1), width(i), rngs))
        self.up_blocks = nnx.List(ups)
        self.out_filters = be + in_features
        self.conv = conv(self.out_filters, self.out_filters, 3, 3, rngs)
        self.norm = batch_norm(self.out_filters, rngs)

    def __call__(self, x):
        skips = [x]
        for blk in self.down_blocks:
            skips.append(blk(skips[-1]))
        out = skips.pop()
        for blk in self.up_blocks:
            out = jnp.concatenate([blk(out), skips.pop()], axis=-1)
        return jax.nn.relu(self.norm(self.conv(out)))


class DenseMotionNetwork(nnx.Module):
    def __init__(self, cfg: DenseMotionConfig, num_kp: int, feature_channel: int, occlusion: bool, rngs: nnx.Rngs):
        self.num_kp = num_kp
        in_features = (num_kp + 1) * (cfg.compress + 1)
        self.hourglass = Hourglass(cfg.block_expansion, in_features, cfg.num_blocks, cfg.max_features, rngs)
        out = self.hourglass.out_filters
        self.mask = conv(out, num_kp + 1, 7, 3, rngs)
        self.compress = conv(feature_channel, cfg.compress, 1, 3, rngs)
        self.norm = batch_norm(cfg.compress, rngs)
        self.occlusion = conv(out * cfg.reshape_depth, 1, 7, 2, rngs) if occlusion else None

    def __call__(self, vol_BxDxHxWxC, kp_driving_BxKx3, kp_source_BxKx3) -> dict[str, jax.Array]:
        """``deformation`` B×D×H×W×3 (a grid into the source volume), ``mask`` B×D×H×W×(K+1) and, if
        configured, ``occlusion_map`` B×H×W×1."""
        b, d, h, w, _ = vol_BxDxHxWxC.shape
        k = self.num_kp
        f = jax.nn.relu(self.norm(self.compress(vol_BxDxHxWxC)))  # B×D×H×W×c
        c = f.shape[-1]

        ident_DxHxWx3 = coordinate_grid(d, h, w)
        shift_BxKx3 = kp_source_BxKx3 - kp_driving_BxKx3
        to_source = ident_DxHxWx3[None, None] + shift_BxKx3[:, :, None, None, None, :]
        background = jnp.broadcast_to(ident_DxHxWx3, (b, 1, d, h, w, 3))
        sparse_BxK1xDxHxWx3 = jnp.concatenate([background, to_source], axis=1)

        # One gather over the K+1 grids stacked along depth (they all read the same compressed volume).
        grids = sparse_BxK1xDxHxWx3.reshape(b, (k + 1) * d, h, w, 3)
        deformed_BxK1xDxHxWxc = grid_sample(f, grids).reshape(b, k + 1, d, h, w, c)

        heat = keypoint_heatmaps(kp_driving_BxKx3, d, h, w) - keypoint_heatmaps(kp_source_BxKx3, d, h, w)
        heat_BxK1xDxHxW = jnp.concatenate([jnp.zeros((b, 1, d, h, w), heat.dtype), heat], axis=1)
        inp = jnp.concatenate([heat_BxK1xDxHxW[..., None], deformed_BxK1xDxHxWxc], axis=-1)  # B×(K+1)×D×H×W×(1+c)
        inp = inp.transpose(0, 2, 3, 4, 1, 5).reshape(b, d, h, w, (k + 1) * (1 + c))  # channel k·(1+c) + j

        pred = self.hourglass(inp)
        mask_BxDxHxWxK1 = jax.nn.softmax(self.mask(pred), axis=-1)
        deformation = jnp.einsum("bdhwk,bkdhwx->bdhwx", mask_BxDxHxWxK1, sparse_BxK1xDxHxWx3, precision="highest")
        out = {"mask": mask_BxDxHxWxK1, "deformation": deformation}
        if self.occlusion is not None:
            out["occlusion_map"] = jax.nn.sigmoid(self.occlusion(flatten_depth(pred)))
        return out


class WarpingNetwork(nnx.Module):
    def __init__(self, cfg: WarpingConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.dense_motion = DenseMotionNetwork(
            cfg.dense_motion, cfg.num_kp, cfg.reshape_channel, cfg.estimate_occlusion_map, rngs
        )
        self.third = SameBlock2d(cfg.max_features, cfg.out_channels, rngs, lrelu=True)
        self.fourth = conv(cfg.out_channels, cfg.out_channels, 1, 2, rngs)

    def __call__(self, vol_BxDxHxWxC, kp_source_BxKx3, kp_driving_BxKx3) -> dict[str, jax.Array]:
        """``out`` B×h×w×C' (G's input), ``deformation`` B×D×h×w×3, ``occlusion_map`` B×h×w×1 (or None)."""
        dm = self.dense_motion(vol_BxDxHxWxC, kp_driving_BxKx3, kp_source_BxKx3)
        warped = grid_sample(vol_BxDxHxWxC, dm["deformation"])
        out = self.fourth(self.third(flatten_depth(warped)))
        occlusion = dm.get("occlusion_map")
        if self.cfg.use_occlusion_map and occlusion is not None:
            out = out * occlusion
        return {"out": out, "deformation": dm["deformation"], "occlusion_map": occlusion}
