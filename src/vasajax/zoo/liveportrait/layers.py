"""Blocks shared by LivePortrait's networks, channels-last, with the numerics of the PyTorch originals.

* BatchNorm is always in inference form (running statistics, ε = 1e-5); InstanceNorm has no affine part and
  uses the biased variance (ε = 1e-5); LayerNorm computes ``mean((x − μ)²)`` (not the fast ``E[x²] − μ²``).
* ``SpectralConv`` is a convolution under torch's ``spectral_norm`` in eval mode: the kernel is
  ``kernel_orig / σ`` with ``σ = u · (W v)`` from the *stored* vectors u, v (no power iteration), W being the
  kernel as an ``O × (I·k·k)`` matrix in torch's order.
* Nearest upsampling by integer factors is a repeat; average pooling is a reshape-mean (even sizes).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


def batch_norm(c: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
    """BatchNorm in inference form (running statistics); its ``mean``/``var`` come from the converter. In training
    (``model.train()``) it normalises by the batch and updates the running statistics as torch does (momentum 0.1,
    flax's 0.9)."""
    return nnx.BatchNorm(c, use_running_average=True, momentum=0.9, epsilon=1e-5, rngs=rngs)


def conv(cin: int, cout: int, k: int, ndim: int, rngs: nnx.Rngs, *, stride: int = 1, bias: bool = True, groups=1):
    """A stride-1 conv with ``k // 2`` zero padding (torch ``padding=k//2``), or a strided unpadded one.
    Stride-1 3D convs are :class:`Conv3d` (same params, faster on CPU)."""
    if ndim == 3 and stride == 1 and groups == 1:
        return Conv3d(cin, cout, k, rngs, bias=bias)
    return nnx.Conv(
        cin,
        cout,
        (k,) * ndim,
        strides=stride,
        padding="SAME" if stride == 1 else "VALID",
        feature_group_count=groups,
        use_bias=bias,
        rngs=rngs,
    )


class Conv3d(nnx.Module):
    """Stride-1, ``k // 2``-padded 3D conv over ``B×D×H×W×C`` with ``nnx.Conv``'s params (``kernel`` k×k×k×I×O,
    ``bias``), computed as one 2D conv over every depth slice with the ``k`` depth taps stacked on the output
    channels, then a shifted sum over depth (the zero padding in depth is applied to the taps, so no zero slice
    goes through the conv). Same numbers as a 3D conv; on XLA:CPU 3-9× faster than XLA's own 3D conv.

    Kernels of size ≥ :data:`FFT_MIN_KERNEL` run on the CPU as :func:`conv3d_fft` instead (LivePortrait's 7×7×7
    mask conv at 16×64×64×142 → 22 on 2 cores: 0.42 s, against 1.0 s stacked and torch/oneDNN's 0.78 s); other
    platforms keep the stacked form (:func:`jax.lax.platform_dependent` picks at lowering)."""

    def __init__(self, cin: int, cout: int, k: int, rngs: nnx.Rngs, *, bias: bool = True):
        self.kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), (k, k, k, cin, cout), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((cout,), jnp.float32)) if bias else None

    def __call__(self, x_BxDxHxWxC):
        kernel = self.kernel[...]
        k = kernel.shape[0]
        if k == 1:
            y = jnp.einsum("bdhwi,io->bdhwo", x_BxDxHxWxC, kernel[0, 0, 0], precision="highest")
        elif k >= FFT_MIN_KERNEL:
            y = jax.lax.platform_dependent(x_BxDxHxWxC, kernel, cpu=conv3d_fft, default=conv3d_stacked)
        else:
            y = conv3d_stacked(x_BxDxHxWxC, kernel)
        return y if self.bias is None else y + self.bias[...]


FFT_MIN_KERNEL = 5
"""Smallest cubic kernel that :class:`Conv3d` runs through FFTs on the CPU (a 3×3×3 one is faster direct)."""


def conv3d_stacked(x_BxDxHxWxC, kernel_KxKxKxIxO):
    """Stride-1, ``k // 2``-padded 3D cross-correlation as one 2D conv with the depth taps on the outputs."""
    k, _, _, cin, cout = kernel_KxKxKxIxO.shape
    b, d, h, w, _ = x_BxDxHxWxC.shape
    p = k // 2
    w2 = kernel_KxKxKxIxO.transpose(1, 2, 3, 0, 4).reshape(k, k, cin, k * cout)  # kh×kw×I×(kz·O)
    x2 = x_BxDxHxWxC.reshape(b * d, h, w, cin)
    y = jax.lax.conv_general_dilated(x2, w2, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    # the depth padding's slices are zero and give zero taps: pad the taps, not the input (k − 1 fewer slices
    # through the 2D conv), then output slice j sums tap kz of input slice j + kz − p
    y = jnp.pad(y.reshape(b, d, h, w, k, cout), ((0, 0), (p, p), (0, 0), (0, 0), (0, 0), (0, 0)))
    return sum(y[:, kz : kz + d, :, :, kz] for kz in range(k))


def conv3d_fft(x_BxDxHxWxC, kernel_KxKxKxIxO, tile: int = 16):
    """The same correlation through 3D FFTs, for large kernels: the volume is cut into ``tile``×``tile`` columns
    (full depth) read with a ``k − 1`` halo, each column and the kernel are zero-padded to
    ``(D + k − 1) × (tile + k − 1)²`` and transformed, the channels are contracted per frequency (a batched
    complex matrix product), and the inverse transform's first ``D × tile × tile`` values are the outputs (the
    padding makes the circular correlation a linear one there). Multiplies fall from ``k³`` per output and
    channel pair to a few transforms plus one per frequency; float32 error ~1e-6 of the output's scale."""
    k, _, _, cin, cout = kernel_KxKxKxIxO.shape
    b, d, h, w, _ = x_BxDxHxWxC.shape
    p, t = k // 2, tile
    n_h, n_w = -(-h // t), -(-w // t)
    size = (d + k - 1, t + k - 1, t + k - 1)
    # columns B×nh×nw×D'×T×T×I, with the depth shifted by p so that output z reads input z + m − p at tap m
    x = jnp.pad(x_BxDxHxWxC, ((0, 0), (p, 0), (p, n_h * t + p - h), (p, n_w * t + p - w), (0, 0)))
    rows = jnp.stack([x[:, :, i * t : i * t + size[1]] for i in range(n_h)], axis=1)
    cols = jnp.stack([rows[:, :, :, :, j * t : j * t + size[2]] for j in range(n_w)], axis=2)
    x_f = jnp.fft.rfftn(cols, s=size, axes=(3, 4, 5))
    # correlation: the conjugate of the kernel's transform
    k_f = jnp.conj(jnp.fft.rfftn(kernel_KxKxKxIxO.transpose(3, 4, 0, 1, 2), s=size, axes=(2, 3, 4)))
    y_f = jnp.einsum("bnmzuvi,iozuv->bnmzuvo", x_f, k_f, precision="highest")
    y = jnp.fft.irfftn(y_f, s=size, axes=(3, 4, 5))[:, :, :, :d, :t, :t]  # B×nh×nw×D×t×t×O
    y = y.transpose(0, 3, 1, 4, 2, 5, 6).reshape(b, d, n_h * t, n_w * t, cout)
    return y[:, :, :h, :w]


def layer_norm(c: int, rngs: nnx.Rngs, eps: float = 1e-6) -> nnx.LayerNorm:
    return nnx.LayerNorm(c, epsilon=eps, use_fast_variance=False, rngs=rngs)


def instance_norm(x_BxHxWxC, eps: float = 1e-5):
    """Per-sample, per-channel normalisation over H and W (torch ``InstanceNorm2d(affine=False)``)."""
    mu = x_BxHxWxC.mean(axis=(1, 2), keepdims=True)
    var = jnp.square(x_BxHxWxC - mu).mean(axis=(1, 2), keepdims=True)
    return (x_BxHxWxC - mu) * jax.lax.rsqrt(var + eps)


def avg_pool_hw(x, f: int = 2):
    """Average-pool H and W (axes −3, −2) by ``f``, leaving any depth axis alone (torch AvgPool (1,2,2))."""
    *lead, h, w, c = x.shape
    return x.reshape(*lead, h // f, f, w // f, f, c).mean(axis=(-4, -2))


def upsample_hw(x, f: int = 2):
    """Nearest-neighbour upsampling of H and W (axes −3, −2) by ``f``."""
    return jnp.repeat(jnp.repeat(x, f, axis=-3), f, axis=-2)


def pixel_shuffle(x_BxHxWxCrr, r: int):
    """torch ``PixelShuffle(r)`` in NHWC: input channel ``c·r² + i·r + j`` goes to pixel ``(h·r + i, w·r + j)``."""
    b, h, w, crr = x_BxHxWxCrr.shape
    c = crr // (r * r)
    x = x_BxHxWxCrr.reshape(b, h, w, c, r, r).transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(b, h * r, w * r, c)


def flatten_depth(vol_BxDxHxWxC):
    """torch's ``view(B, C·D, H, W)`` of a ``B×C×D×H×W`` volume, in NHWC: channel ``c·D + d``."""
    b, d, h, w, c = vol_BxDxHxWxC.shape
    return vol_BxDxHxWxC.transpose(0, 2, 3, 4, 1).reshape(b, h, w, c * d)


def unflatten_depth(x_BxHxWxCD, c: int, d: int):
    """Inverse of :func:`flatten_depth`: torch's ``view(B, C, D, H, W)`` of a ``B×(C·D)×H×W`` map."""
    b, h, w, _ = x_BxHxWxCD.shape
    return x_BxHxWxCD.reshape(b, h, w, c, d).transpose(0, 4, 1, 2, 3)


class SpectralVector(nnx.Variable):
    """A stored power-iteration vector of torch's spectral norm (``weight_u`` / ``weight_v``); not trained."""


class SpectralConv(nnx.Module):
    """2D conv whose kernel is divided by its spectral norm estimate ``σ = u · (W v)`` (torch eval mode). With
    ``power_iteration`` set (``model.train(power_iteration=True)``: training), each call first runs one power
    iteration from the stored vectors and stores the new ones, gradients not flowing through them (torch's
    train mode)."""

    def __init__(self, cin: int, cout: int, k: int, rngs: nnx.Rngs, *, bias: bool = True):
        self.conv = conv(cin, cout, k, 2, rngs, bias=bias)
        self.u = SpectralVector(jnp.ones((cout,), jnp.float32) / cout**0.5)
        self.v = SpectralVector(jnp.ones((cin * k * k,), jnp.float32) / (cin * k * k) ** 0.5)
        self.power_iteration = False

    def __call__(self, x_BxHxWxC):
        kernel = self.conv.kernel[...]  # k×k×I×O
        w_OxN = kernel.transpose(3, 2, 0, 1).reshape(kernel.shape[-1], -1)  # torch O×I×k×k, flattened
        if self.power_iteration:
            w = jax.lax.stop_gradient(w_OxN.astype(jnp.float32))

            def unit(a):
                return a / (jnp.linalg.norm(a) + 1e-12)  # torch's normalize eps

            v = unit(jnp.dot(w.T, self.u[...], precision="highest"))
            self.v.value = v
            self.u.value = unit(jnp.dot(w, v, precision="highest"))
        sigma = jnp.dot(self.u[...], jnp.dot(w_OxN, self.v[...], precision="highest"), precision="highest")
        y = jax.lax.conv_general_dilated(
            x_BxHxWxC,
            kernel / sigma,
            (1, 1),
            "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return y if self.conv.bias is None else y + self.conv.bias[...]


class SameBlock2d(nnx.Module):
    """conv3 → BatchNorm → ReLU (or LeakyReLU 0.01), resolution kept."""

    def __init__(self, cin: int, cout: int, rngs: nnx.Rngs, *, lrelu: bool = False):
        self.conv = conv(cin, cout, 3, 2, rngs)
        self.norm = batch_norm(cout, rngs)
        self.lrelu = lrelu

    def __call__(self, x):
        x = self.norm(self.conv(x))
        return jax.nn.leaky_relu(x, 0.01) if self.lrelu else jax.nn.relu(x)


class DownBlock(nnx.Module):
    """conv3 → BatchNorm → ReLU → 2× average pool of H, W (2D, or 3D with depth kept)."""

    def __init__(self, cin: int, cout: int, ndim: int, rngs: nnx.Rngs):
        self.conv = conv(cin, cout, 3, ndim, rngs)
        self.norm = batch_norm(cout, rngs)

    def __call__(self, x):
        return avg_pool_hw(jax.nn.relu(self.norm(self.conv(x))))


class UpBlock3d(nnx.Module):
    """2× nearest upsampling of H, W → conv3 → BatchNorm → ReLU."""

    def __init__(self, cin: int, cout: int, rngs: nnx.Rngs):
        self.conv = conv(cin, cout, 3, 3, rngs)
        self.norm = batch_norm(cout, rngs)

    def __call__(self, x):
        return jax.nn.relu(self.norm(self.conv(upsample_hw(x))))


class ResBlock3d(nnx.Module):
    """Pre-activation residual block: (BatchNorm → ReLU → conv3) × 2, plus the input."""

    def __init__(self, c: int, rngs: nnx.Rngs):
        self.norm1 = batch_norm(c, rngs)
        self.conv1 = conv(c, c, 3, 3, rngs)
        self.norm2 = batch_norm(c, rngs)
        self.conv2 = conv(c, c, 3, 3, rngs)

    def __call__(self, x):
        h = self.conv1(jax.nn.relu(self.norm1(x)))
        return self.conv2(jax.nn.relu(self.norm2(h))) + x
