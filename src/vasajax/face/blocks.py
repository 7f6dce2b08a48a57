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


def conv3d_same(x_BxDxHxWxC, kernel_KxKxKxIxO, precision=None):
    """Stride-1, ``k // 2``-padded 3D convolution (cross-correlation, as ``lax.conv_general_dilated``), computed as
    one 2D conv over every depth slice with the ``k`` depth taps stacked on the output channels, then a shifted
    sum over depth (the depth padding is applied to the taps, so no zero slice goes through the conv).

    The same numbers as a 3D conv up to float rounding; on XLA:CPU about 2× faster for the face model's 3×3×3
    convs (and 9× for LivePortrait's 7×7×7 one), because XLA's 2D convolutions are better tuned than its 3D ones.
    ``kernel`` is ``nnx.Conv``'s layout (k×k×k×I×O)."""
    k, _, _, cin, cout = kernel_KxKxKxIxO.shape
    b, d, h, w, _ = x_BxDxHxWxC.shape
    if k == 1:
        return jnp.einsum("bdhwi,io->bdhwo", x_BxDxHxWxC, kernel_KxKxKxIxO[0, 0, 0], precision=precision)
    p = k // 2
    taps = kernel_KxKxKxIxO.transpose(1, 2, 3, 0, 4).reshape(k, k, cin, k * cout)  # kh×kw×I×(kz·O)
    y = jax.lax.conv_general_dilated(
        x_BxDxHxWxC.reshape(b * d, h, w, cin), taps, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=precision,
    )  # fmt: skip
    y = jnp.pad(y.reshape(b, d, h, w, k, cout), ((0, 0), (p, p), (0, 0), (0, 0), (0, 0), (0, 0)))
    return sum(y[:, kz : kz + d, :, :, kz] for kz in range(k))  # output slice j: tap kz of input slice j + kz − p


class Conv3d(nnx.Conv):
    """``nnx.Conv`` with a k×k×k kernel, stride 1 and ``"SAME"`` padding (same parameters, same init, so
    checkpoints and exports are unchanged), computed by :func:`conv3d_same` on the CPU and as XLA's 3D
    convolution elsewhere (cuDNN's 3D kernels are good)."""

    def __init__(self, cin: int, cout: int, k: int = 3, **kw):
        super().__init__(cin, cout, (k, k, k), padding="SAME", **kw)

    def __call__(self, x_BxDxHxWxC):
        if jax.default_backend() != "cpu" or x_BxDxHxWxC.ndim != 5:
            return super().__call__(x_BxDxHxWxC)
        bias = self.bias[...] if self.bias is not None else None
        x, kernel, bias = nnx.nn.dtypes.promote_dtype((x_BxDxHxWxC, self.kernel[...], bias), dtype=self.dtype)
        y = conv3d_same(x, kernel, precision=self.precision)
        return y if bias is None else y + bias


def group_norm(channels: int, groups: int, dtype, rngs: nnx.Rngs) -> nnx.GroupNorm:
    """GroupNorm with ``gcd(groups, channels)`` groups, so narrow layers still normalise."""
    return nnx.GroupNorm(channels, num_groups=math.gcd(groups, channels), epsilon=1e-5, dtype=dtype, rngs=rngs)


class ResBlock(nnx.Module):
    """Pre-activation residual block in ``ndim`` spatial dimensions (2 or 3)."""

    def __init__(self, cin: int, cout: int, *, ndim: int, groups: int, dtype, rngs: nnx.Rngs):
        k = (3,) * ndim
        self.norm1 = group_norm(cin, groups, dtype, rngs)
        if ndim == 3:
            self.conv1 = Conv3d(cin, cout, 3, dtype=dtype, rngs=rngs)
        else:
            self.conv1 = nnx.Conv(cin, cout, k, padding="SAME", dtype=dtype, rngs=rngs)
        self.norm2 = group_norm(cout, groups, dtype, rngs)
        if ndim == 3:
            self.conv2 = Conv3d(cout, cout, 3, dtype=dtype, rngs=rngs)
        else:
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
