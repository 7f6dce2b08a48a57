"""LivePortrait's motion extractor M (paper §3.1): a ConvNeXt-V2 (Woo et al. 2023) with linear heads.

One image ``B×H×W×3`` in [0, 1] → canonical keypoints ``kp`` (B×3K), head-pose logits ``pitch``/``yaw``/``roll``
(B×66 bins, see ``keypoints.headpose_to_degrees``), translation ``t`` (B×3), expression ``exp`` (B×3K) and
``scale`` (B×1). Backbone: a 4×4/4 stem + LayerNorm, then four stages of ConvNeXt-V2 blocks (7×7 depthwise conv,
LayerNorm, 4× MLP with GELU and Global Response Normalisation) with LayerNorm + 2×2/2 conv between stages; the
head reads the LayerNorm'd global average.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vasajax.zoo.liveportrait.config import MotionConfig
from vasajax.zoo.liveportrait.layers import conv, layer_norm

HEADS = ("kp", "pitch", "yaw", "roll", "t", "exp", "scale")


class GRN(nnx.Module):
    """Global Response Normalisation: ``γ · (x · N(x)) + β + x`` with ``N`` the per-channel L2 norm over H, W
    divided by its mean over channels."""

    def __init__(self, c: int):
        self.gamma = nnx.Param(jnp.zeros((c,), jnp.float32))
        self.beta = nnx.Param(jnp.zeros((c,), jnp.float32))

    def __call__(self, x_BxHxWxC):
        g = jnp.sqrt(jnp.sum(jnp.square(x_BxHxWxC), axis=(1, 2), keepdims=True))
        n = g / (g.mean(axis=-1, keepdims=True) + 1e-6)
        return self.gamma[...] * (x_BxHxWxC * n) + self.beta[...] + x_BxHxWxC


class Block(nnx.Module):
    """ConvNeXt-V2 block: dwconv7 → LayerNorm → Linear 4C → GELU → GRN → Linear C, plus the input."""

    def __init__(self, c: int, rngs: nnx.Rngs):
        self.dwconv = conv(c, c, 7, 2, rngs, groups=c)
        self.norm = layer_norm(c, rngs)
        self.pwconv1 = nnx.Linear(c, 4 * c, rngs=rngs)
        self.grn = GRN(4 * c)
        self.pwconv2 = nnx.Linear(4 * c, c, rngs=rngs)

    def __call__(self, x):
        h = self.pwconv1(self.norm(self.dwconv(x)))
        h = self.grn(jax.nn.gelu(h, approximate=False))
        return x + self.pwconv2(h)


class Downsample(nnx.Module):
    """Stem (conv 4×4/4 → LayerNorm) or between stages (LayerNorm → conv 2×2/2)."""

    def __init__(self, cin: int, cout: int, stem: bool, rngs: nnx.Rngs):
        self.stem = stem
        self.conv = conv(cin, cout, 4 if stem else 2, 2, rngs, stride=4 if stem else 2)
        self.norm = layer_norm(cout if stem else cin, rngs)

    def __call__(self, x):
        return self.norm(self.conv(x)) if self.stem else self.conv(self.norm(x))


class MotionExtractor(nnx.Module):
    def __init__(self, cfg: MotionConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        dims = cfg.dims
        self.downsample = nnx.List(
            [Downsample(3, dims[0], True, rngs)] + [Downsample(dims[i], dims[i + 1], False, rngs) for i in range(3)]
        )
        self.stages = nnx.List([nnx.List([Block(dims[i], rngs) for _ in range(cfg.depths[i])]) for i in range(4)])
        self.norm = layer_norm(dims[-1], rngs)
        k, bins = cfg.num_kp, cfg.num_bins
        sizes = {"kp": 3 * k, "pitch": bins, "yaw": bins, "roll": bins, "t": 3, "exp": 3 * k, "scale": 1}
        self.heads = nnx.Dict({name: nnx.Linear(dims[-1], sizes[name], rngs=rngs) for name in HEADS})

    def features(self, image_BxHxWx3):
        x = image_BxHxWx3
        for down, stage in zip(self.downsample, self.stages, strict=True):
            x = down(x)
            for blk in stage:
                x = blk(x)
        return self.norm(x.mean(axis=(1, 2)))

    def __call__(self, image_BxHxWx3) -> dict[str, jax.Array]:
        """Raw head outputs (logits for the pose bins; ``kp``/``exp`` flat B×3K), as upstream returns them."""
        f = self.features(image_BxHxWx3)
        return {name: self.heads[name](f) for name in HEADS}
