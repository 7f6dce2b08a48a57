"""Building blocks shared by the face model: pre-activation residual blocks in 2D and 3D, pooling, upsampling.

MegaPortraits (Drobyshev et al. 2022, supplementary) builds every network from ResBlock2D / ResBlock3D:
GroupNorm → ReLU → conv3 → GroupNorm → ReLU → conv3, plus a 1×1 projection on the skip path when the width
changes. Layouts are channels-last: ``x_BxHxWxC`` and ``x_BxDxHxWxC``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx


def group_norm(channels: int, groups: int, dtype, rngs: nnx.Rngs) -> nnx.GroupNorm:
    """GroupNorm with ``gcd(groups, channels)`` groups, so narrow layers still normalise."""
    return nnx.GroupNorm(channels, num_groups=math.gcd(groups, channels), epsilon=1e-5, dtype=dtype, rngs=rngs)


class ResBlock(nnx.Module):
    """Pre-activation residual block in ``ndim`` spatial dimensions (2 or 3)."""

    def __init__(self, cin: int, cout: int, *, ndim: int, groups: int, dtype, rngs: nnx.Rngs):
        k = (3,) * ndim
        self.norm1 = group_norm(cin, groups, dtype, rngs)
        self.conv1 = nnx.Conv(cin, cout, k, padding="SAME", dtype=dtype, rngs=rngs)
        self.norm2 = group_norm(cout, groups, dtype, rngs)
        self.conv2 = nnx.Conv(cout, cout, k, padding="SAME", dtype=dtype, rngs=rngs)
        self.skip = nnx.Conv(cin, cout, (1,) * ndim, dtype=dtype, rngs=rngs) if cin != cout else None

    def __call__(self, x):
        h = self.conv1(jax.nn.relu(self.norm1(x)))
        h = self.conv2(jax.nn.relu(self.norm2(h)))
        return h + (self.skip(x) if self.skip is not None else x)


def ResBlock2D(cin: int, cout: int, *, groups: int, dtype, rngs: nnx.Rngs) -> ResBlock:  # noqa: N802
    return ResBlock(cin, cout, ndim=2, groups=groups, dtype=dtype, rngs=rngs)


def ResBlock3D(cin: int, cout: int, *, groups: int, dtype, rngs: nnx.Rngs) -> ResBlock:  # noqa: N802
    return ResBlock(cin, cout, ndim=3, groups=groups, dtype=dtype, rngs=rngs)


def avg_pool(x, factors: tuple[int, ...]):
    """Average-pool the spatial axes of a channels-last tensor by integer ``factors`` (one per spatial axis)."""
    b, *spatial, c = x.shape
    shape = [b]
    for s, f in zip(spatial, factors, strict=True):
        shape += [s // f, f]
    x = x.reshape(*shape, c)
    return x.mean(axis=tuple(2 + 2 * i for i in range(len(spatial))))


def upsample_nearest(x, factors: tuple[int, ...]):
    """Nearest-neighbour upsampling of the spatial axes of a channels-last tensor."""
    for axis, f in enumerate(factors, start=1):
        if f != 1:
            x = jnp.repeat(x, f, axis=axis)
    return x
