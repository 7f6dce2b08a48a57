"""LivePortrait's SPADE generator G (paper §3.1, after SPADE, Park et al. 2019): warped 2D features → image.

``B×h×w×C`` → 3×3 conv to 2C → six SPADE residual blocks at 2C → 2× nearest upsample → SPADE block to C → 2×
upsample → SPADE block to ``out_channels`` → LeakyReLU 0.2 → 3×3 conv (to 12 channels and a 2× pixel shuffle
when ``upscale > 1``) → sigmoid. Every SPADE block is modulated by the input features themselves (nearest-resized
to the block's resolution); its convolutions carry torch's spectral norm in eval form (``layers.SpectralConv``).
The released model maps 64×64×256 to a 512² image.
"""

from __future__ import annotations

import jax
from flax import nnx

from vasajax.zoo.liveportrait.config import GeneratorConfig
from vasajax.zoo.liveportrait.layers import SpectralConv, conv, instance_norm, pixel_shuffle, upsample_hw

N_MIDDLE = 6


class SPADE(nnx.Module):
    """``instance_norm(x) · (1 + γ(seg)) + β(seg)`` with γ, β from a small conv net on the resized segmap."""

    def __init__(self, norm_nc: int, label_nc: int, hidden: int, rngs: nnx.Rngs):
        self.mlp_shared = conv(label_nc, hidden, 3, 2, rngs)
        self.mlp_gamma = conv(hidden, norm_nc, 3, 2, rngs)
        self.mlp_beta = conv(hidden, norm_nc, 3, 2, rngs)

    def __call__(self, x_BxHxWxC, seg_BxhxwxL):
        f = x_BxHxWxC.shape[1] // seg_BxhxwxL.shape[1]
        seg = upsample_hw(seg_BxhxwxL, f) if f > 1 else seg_BxhxwxL
        actv = jax.nn.relu(self.mlp_shared(seg))
        return instance_norm(x_BxHxWxC) * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nnx.Module):
    def __init__(self, fin: int, fout: int, label_nc: int, hidden: int, rngs: nnx.Rngs):
        fmid = min(fin, fout)
        self.conv_0 = SpectralConv(fin, fmid, 3, rngs)
        self.conv_1 = SpectralConv(fmid, fout, 3, rngs)
        self.norm_0 = SPADE(fin, label_nc, hidden, rngs)
        self.norm_1 = SPADE(fmid, label_nc, hidden, rngs)
        if fin != fout:
            self.conv_s = SpectralConv(fin, fout, 1, rngs, bias=False)
            self.norm_s = SPADE(fin, label_nc, hidden, rngs)
        else:
            self.conv_s = self.norm_s = None

    def __call__(self, x, seg):
        skip = x if self.conv_s is None else self.conv_s(self.norm_s(x, seg))
        dx = self.conv_0(jax.nn.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(jax.nn.leaky_relu(self.norm_1(dx, seg), 0.2))
        return skip + dx


class SPADEDecoder(nnx.Module):
    def __init__(self, cfg: GeneratorConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        c, hid = cfg.in_channels, cfg.spade_hidden
        self.fc = conv(c, 2 * c, 3, 2, rngs)
        self.G_middle = nnx.List([SPADEResnetBlock(2 * c, 2 * c, c, hid, rngs) for _ in range(N_MIDDLE)])
        self.up_0 = SPADEResnetBlock(2 * c, c, c, hid, rngs)
        self.up_1 = SPADEResnetBlock(c, cfg.out_channels, c, hid, rngs)
        self.conv_img = conv(cfg.out_channels, 12 if cfg.upscale > 1 else 3, 3, 2, rngs)

    def __call__(self, feature_BxhxwxC):
        """``B×h×w×C`` → image ``B×H×W×3`` in [0, 1]."""
        seg = feature_BxhxwxC
        x = self.fc(seg)
        for blk in self.G_middle:
            x = blk(x, seg)
        x = self.up_0(upsample_hw(x), seg)
        x = self.up_1(upsample_hw(x), seg)
        x = self.conv_img(jax.nn.leaky_relu(x, 0.2))
        if self.cfg.upscale > 1:
            x = pixel_shuffle(x, 2)
        return jax.nn.sigmoid(x)
