"""VGG19 feature extractor (Simonyan & Zisserman 2015) for stage 1's perceptual loss (VASA-1 §3.1, MegaPortraits).

MegaPortraits weights an L1 distance between VGG19 activations of the prediction and the target by 20. This is
the ``features`` part of torchvision's ``vgg19`` up to ``relu5_1`` (13 of its 16 3×3 convolutions), channels-last,
with ImageNet normalisation inside: inputs are ``B×H×W×3`` RGB in [0, 1].

No VGG weights can be downloaded here, and nothing downloads them at run time. A user who has torchvision's
ImageNet ``vgg19`` state dict (``vgg19-dcbb9e9d.pth``, or the same tensors in a ``.safetensors`` file) converts it
with :func:`load_torchvision` — one key table, :data:`TABLE`, maps torchvision's ``features.<index>`` keys to ours.
``.pth`` files are read with ``torch.load(weights_only=True)`` (no arbitrary pickles). Without weights the
stage-1 losses fall back to multi-scale SSIM (see ``vasajax.face.losses``).

Layers of ``torchvision.models.vgg19().features`` (index: layer), of which we keep 0–29::

    0 conv1_1  1 relu1_1  2 conv1_2  3 relu  4 pool
    5 conv2_1  6 relu2_1  7 conv2_2  8 relu  9 pool
    10 conv3_1 11 relu3_1 12/14/16 conv3_2..4  13/15/17 relu  18 pool
    19 conv4_1 20 relu4_1 21/23/25 conv4_2..4  22/24/26 relu  27 pool
    28 conv5_1 29 relu5_1 (30–36: conv5_2..4, pool — unused)
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vasajax import params
from vasajax.params import Rule, conv

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision vgg19 "E" layout up to relu5_1: conv widths, "M" = 2×2 max pool.
LAYOUT: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512)
TORCH_CONV_INDICES: tuple[int, ...] = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28)
"""Index in ``vgg19().features`` of each of our convolutions ``convs[k]``."""
FEATURE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
_FEATURE_AFTER_CONV = {0: "relu1_1", 2: "relu2_1", 4: "relu3_1", 8: "relu4_1", 12: "relu5_1"}

# our param path → torchvision key (``vasajax.params`` rules): torch conv weights are O×I×kh×kw, ours kh×kw×I×O.
TABLE: tuple[Rule, ...] = tuple(
    rule
    for k, t in enumerate(TORCH_CONV_INDICES)
    for rule in (
        Rule(rf"convs\.{k}\.kernel", f"features.{t}.weight", conv),
        Rule(rf"convs\.{k}\.bias", f"features.{t}.bias"),
    )
)
IGNORED = (r"^classifier\.", r"^features\.(30|32|34)\.")
"""torchvision keys we do not need: the classifier and the convolutions after relu5_1."""


class VGG19(nnx.Module):
    """torchvision's VGG19 ``features[:30]``: ``images_BxHxWx3`` in [0, 1] → ``{relu1_1: ..., relu5_1: ...}``."""

    def __init__(self, *, rngs: nnx.Rngs, dtype=jnp.float32):
        widths = [w for w in LAYOUT if w != "M"]
        self.convs = nnx.List(
            [
                nnx.Conv(a, b, (3, 3), padding="SAME", dtype=dtype, rngs=rngs)
                for a, b in zip([3, *widths[:-1]], widths, strict=True)
            ]
        )

    def __call__(self, images_BxHxWx3, layers: tuple[str, ...] = FEATURE_LAYERS) -> dict[str, jax.Array]:
        x = (images_BxHxWx3 - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
        out: dict[str, jax.Array] = {}
        k = 0
        for item in LAYOUT:
            if item == "M":
                x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
                continue
            x = jax.nn.relu(self.convs[k](x))
            name = _FEATURE_AFTER_CONV.get(k)
            if name in layers:
                out[name] = x
                if len(out) == len(layers):
                    break
            k += 1
        return out


# ------------------------------------------------------------------------------------------ conversion


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Tensors of a torchvision state dict file (``.pth``/``.pt`` or ``.safetensors``) as float32 numpy arrays."""
    return params.read_state_dict(path, what="VGG19")


def convert(state_dict: Mapping[str, np.ndarray], *, dtype=jnp.float32) -> VGG19:
    """A :class:`VGG19` with the weights of a torchvision ``vgg19`` (or ``vgg19.features``) state dict."""
    sd = dict(state_dict)
    if not any(k.startswith("features.") for k in sd):  # a bare `features` Sequential's state dict
        sd = {f"features.{k}": v for k, v in sd.items()}
    return params.convert(lambda: VGG19(rngs=nnx.Rngs(0), dtype=dtype), sd, TABLE, model="VGG19", ignored=IGNORED)


def load_torchvision(path: str | os.PathLike, *, dtype=jnp.float32) -> VGG19:
    """A :class:`VGG19` with the weights of a local torchvision ``vgg19`` state dict file."""
    return convert(read_state_dict(path), dtype=dtype)
