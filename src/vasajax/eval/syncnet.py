"""SyncNet (Chung & Zisserman, "Out of time", ACCV 2016 workshops): the network and its weights.

The network of ``joonson/syncnet_python`` (``SyncNetModel.S``), channels-last in Flax NNX:

- lip tower: 5 consecutive 224×224 BGR face crops (pixel values 0–255, no normalisation) → 3D convs → 1024-d;
- audio tower: 13 MFCCs × 20 steps (0.2 s at 100 Hz) → 2D convs → 1024-d.

How the two embeddings become VASA-1's Sync-C / Sync-D (§4.2) is ``vasajax.eval.syncnet_score``; the MFCCs are
``vasajax.eval.mfcc``.

No weights can be downloaded here, and nothing downloads them at run time. A user with the public
``syncnet_v2.model`` (a torch state dict) loads it with :func:`load_syncnet` — one key table, :data:`TABLE`,
maps its keys to ours (``.model``/``.pth`` through ``torch.load(weights_only=True)``, or a ``.safetensors``
with the same keys).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vasajax import params
from vasajax.errors import UserError
from vasajax.params import Rule, conv, linear

# Layer layout of syncnet_python's S: ("conv", out, kernel, stride, padding) / ("pool", kernel, stride, padding).
# Each conv is followed by BatchNorm + ReLU; the torch Sequential index of each conv is in *_CONV_INDICES.
AUDIO_LAYOUT = (
    ("conv", 64, (3, 3), (1, 1), (1, 1)), ("pool", (1, 1), (1, 1), (0, 0)),
    ("conv", 192, (3, 3), (1, 1), (1, 1)), ("pool", (3, 3), (1, 2), (0, 0)),
    ("conv", 384, (3, 3), (1, 1), (1, 1)),
    ("conv", 256, (3, 3), (1, 1), (1, 1)),
    ("conv", 256, (3, 3), (1, 1), (1, 1)), ("pool", (3, 3), (2, 2), (0, 0)),
    ("conv", 512, (5, 4), (1, 1), (0, 0)),
)  # fmt: skip
LIP_LAYOUT = (
    ("conv", 96, (5, 7, 7), (1, 2, 2), (0, 0, 0)), ("pool", (1, 3, 3), (1, 2, 2), (0, 0, 0)),
    ("conv", 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), ("pool", (1, 3, 3), (1, 2, 2), (0, 1, 1)),
    ("conv", 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)),
    ("conv", 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)),
    ("conv", 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)), ("pool", (1, 3, 3), (1, 2, 2), (0, 0, 0)),
    ("conv", 512, (1, 6, 6), (1, 1, 1), (0, 0, 0)),
)  # fmt: skip
CONV_INDICES = (0, 4, 8, 11, 14, 18)
"""Index of each conv in ``netcnnaud`` / ``netcnnlip`` (its BatchNorm is at index + 1); same for both towers."""


_BN = (("scale", "weight"), ("bias", "bias"), ("mean", "running_mean"), ("var", "running_var"))


def _table() -> tuple[Rule, ...]:
    rows = []
    for ours, theirs in (("audio", "netcnnaud"), ("lip", "netcnnlip")):
        for k, t in enumerate(CONV_INDICES):
            rows += [Rule(rf"{ours}\.convs\.{k}\.kernel", f"{theirs}.{t}.weight", conv)]
            rows += [Rule(rf"{ours}\.convs\.{k}\.bias", f"{theirs}.{t}.bias")]
            rows += [Rule(rf"{ours}\.norms\.{k}\.{a}", f"{theirs}.{t + 1}.{b}") for a, b in _BN]
    for ours, theirs in (("audio", "netfcaud"), ("lip", "netfclip")):
        for name, t in (("fc1", 0), ("fc2", 3)):
            rows += [Rule(rf"{ours}\.{name}\.kernel", f"{theirs}.{t}.weight", linear)]
            rows += [Rule(rf"{ours}\.{name}\.bias", f"{theirs}.{t}.bias")]
        rows += [Rule(rf"{ours}\.fc_norm\.{a}", f"{theirs}.1.{b}") for a, b in _BN]
    return tuple(rows)


TABLE: tuple[Rule, ...] = _table()
"""Our variable path → syncnet_python state-dict key (``vasajax.params`` rules; BatchNorm statistics included)."""
IGNORED = (r"num_batches_tracked$",)


class Tower(nnx.Module):
    """One SyncNet stream: convs (+BN, ReLU) with max-pools, flatten, Linear–BN–ReLU–Linear."""

    def __init__(self, layout: tuple, in_ch: int, embed: int = 1024, *, rngs: nnx.Rngs):
        self.layout = tuple(layout)
        convs, norms, ch = [], [], in_ch
        for item in layout:
            if item[0] == "conv":
                _, out, k, s, p = item
                convs.append(nnx.Conv(ch, out, k, strides=s, padding=tuple((q, q) for q in p), rngs=rngs))
                norms.append(nnx.BatchNorm(out, use_running_average=True, epsilon=1e-5, rngs=rngs))
                ch = out
        self.convs, self.norms = nnx.List(convs), nnx.List(norms)
        self.fc1 = nnx.Linear(ch, 512, rngs=rngs)
        self.fc_norm = nnx.BatchNorm(512, use_running_average=True, epsilon=1e-5, rngs=rngs)
        self.fc2 = nnx.Linear(512, embed, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        k = 0
        for item in self.layout:
            if item[0] == "conv":
                x = jax.nn.relu(self.norms[k](self.convs[k](x)))
                k += 1
            else:
                _, win, stride, pad = item
                x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, *win, 1), (1, *stride, 1),
                                          [(0, 0), *[(q, q) for q in pad], (0, 0)])  # fmt: skip
        x = x.reshape(x.shape[0], -1)  # spatial size is 1 here, so the order matches torch's view()
        return self.fc2(jax.nn.relu(self.fc_norm(self.fc1(x))))


class SyncNet(nnx.Module):
    """``audio(mfcc_Nx13x20x1)`` and ``lip(crops_Nx5x224x224x3)`` → N×1024 embeddings (eval-mode BatchNorm)."""

    def __init__(self, *, embed: int = 1024, rngs: nnx.Rngs):
        self.audio = Tower(AUDIO_LAYOUT, 1, embed, rngs=rngs)
        self.lip = Tower(LIP_LAYOUT, 3, embed, rngs=rngs)


# ------------------------------------------------------------------------------------------ conversion


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """syncnet_python weights (``syncnet_v2.model``: a torch state dict; or ``.safetensors``) as numpy arrays."""
    return params.read_state_dict(path, what="SyncNet (syncnet_python syncnet_v2.model)")


def convert(state_dict: Mapping[str, np.ndarray]) -> SyncNet:
    """A :class:`SyncNet` with the weights of a syncnet_python ``S`` state dict (via :data:`TABLE`)."""
    sd = {k.removeprefix("__S__."): v for k, v in state_dict.items()}  # SyncNetInstance saves with a prefix
    if "netfcaud.3.bias" not in sd:
        raise UserError("SyncNet weights lack 'netfcaud.3.bias'; expected syncnet_python's syncnet_v2.model")
    embed = int(np.shape(sd["netfcaud.3.bias"])[0])
    return params.convert(lambda: SyncNet(embed=embed, rngs=nnx.Rngs(0)), sd, TABLE, model="SyncNet", ignored=IGNORED)


def load_syncnet(path: str | os.PathLike) -> SyncNet:
    """A :class:`SyncNet` with the weights of a local syncnet_python state dict file."""
    return convert(read_state_dict(path))
