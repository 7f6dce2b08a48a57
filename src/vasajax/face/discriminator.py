"""Multi-scale patch discriminator for stage 1's adversarial loss (VASA-1 §3.1 via MegaPortraits, pix2pixHD).

MegaPortraits trains its generator with a multi-scale patch GAN (hinge loss, weight 1) and a feature-matching
loss on the discriminator's activations (weight 40), after pix2pixHD (Wang et al. 2018). Each scale is a
PatchGAN: 4×4 stride-2 convolutions with LeakyReLU(0.2) (instance norm after the first), then a stride-1 4×4
conv and a 1-channel 4×4 conv whose output is a grid of per-patch logits. Scale ``s`` sees the image average-pooled
by ``2**s``. Unconditional: it judges frames, not (frame, source) pairs.

Images are ``B×H×W×3`` in [0, 1]. ``disc(images)`` returns one ``(logits_BxhxWx1, [features...])`` per scale; the
features (every hidden activation) feed the feature-matching loss in ``vasajax.face.losses``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from vasajax import config_io
from vasajax.face.blocks import avg_pool


@dataclasses.dataclass(frozen=True, kw_only=True)
class DiscConfig:
    """Sizes of the multi-scale patch discriminator."""

    num_scales: int = 2
    """Discriminators, each on the image downsampled 2× more than the previous (pix2pixHD: 2–3)."""
    base_channels: int = 64
    """Width of the first conv; doubles per stride-2 layer up to ``max_channels``."""
    max_channels: int = 512
    """Cap on the width of any layer."""
    num_layers: int = 3
    """Stride-2 convolutions per scale (pix2pixHD's ``n_layers_D``; the patch grows with it)."""
    dtype: str = "float32"
    """Compute dtype ("float32" or "bfloat16"); parameters and logits stay float32."""

    @classmethod
    def tiny(cls, **overrides) -> DiscConfig:
        """Tests and 64² smoke runs."""
        return cls(**{**dict(num_scales=2, base_channels=8, max_channels=32, num_layers=2), **overrides})

    @classmethod
    def small(cls, **overrides) -> DiscConfig:
        """The 256² demo."""
        return cls(**{**dict(num_scales=2, base_channels=32, max_channels=256, num_layers=3), **overrides})

    @classmethod
    def paper(cls, **overrides) -> DiscConfig:
        """512² (pix2pixHD's discriminator, 2 scales)."""
        return cls(**overrides)

    def to_dict(self) -> dict:
        """JSON-ready fields (``vasajax.config_io``)."""
        return config_io.to_dict(self)


class PatchGAN(nnx.Module):
    """One scale: ``images_BxHxWx3`` → ``(logits_Bxhxwx1, features)``."""

    def __init__(self, cfg: DiscConfig, *, rngs: nnx.Rngs):
        dt = jnp.dtype(cfg.dtype)
        widths = [min(cfg.base_channels * 2**i, cfg.max_channels) for i in range(cfg.num_layers + 1)]
        self.convs = nnx.List(
            [
                nnx.Conv(
                    cin, cout, (4, 4), strides=(2, 2) if i < cfg.num_layers else (1, 1), padding=1, dtype=dt, rngs=rngs
                )
                for i, (cin, cout) in enumerate(zip([3, *widths[:-1]], widths, strict=True))
            ]
        )
        # Instance norm (one group per channel) on every hidden conv but the first, as in pix2pixHD.
        self.norms = nnx.List([nnx.GroupNorm(w, num_groups=w, epsilon=1e-5, dtype=dt, rngs=rngs) for w in widths[1:]])
        self.out = nnx.Conv(widths[-1], 1, (4, 4), padding=1, dtype=dt, rngs=rngs)

    def __call__(self, images_BxHxWx3) -> tuple[jax.Array, list[jax.Array]]:
        x = images_BxHxWx3 * 2 - 1
        feats = []
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i > 0:
                x = self.norms[i - 1](x)
            x = jax.nn.leaky_relu(x, 0.2)
            feats.append(x)
        return self.out(x).astype(jnp.float32), feats


class PatchDiscriminator(nnx.Module):
    """Multi-scale patch discriminator: ``images`` → ``[(logits, features) per scale]``, finest scale first."""

    def __init__(self, cfg: DiscConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.scales = nnx.List([PatchGAN(cfg, rngs=rngs) for _ in range(cfg.num_scales)])

    def __call__(self, images_BxHxWx3) -> list[tuple[jax.Array, list[jax.Array]]]:
        x = images_BxHxWx3.astype(jnp.dtype(self.cfg.dtype))
        out = []
        for s, disc in enumerate(self.scales):
            if s > 0:
                x = avg_pool(x, (2, 2))
            out.append(disc(x))
        return out


def build(cfg: DiscConfig, seed: int = 0) -> PatchDiscriminator:
    """A freshly initialised discriminator."""
    return PatchDiscriminator(cfg, rngs=nnx.Rngs(seed))
