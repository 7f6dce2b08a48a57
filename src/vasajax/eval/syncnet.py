"""SyncNet (Chung & Zisserman, "Out of time", ACCV 2016 workshops) for VASA-1's Sync-C / Sync-D (§4.2).

The network of ``joonson/syncnet_python`` (``SyncNetModel.S``), channels-last in Flax NNX, with the evaluation
protocol of its ``SyncNetInstance.evaluate`` (also what Wav2Lip's LSE-C / LSE-D scripts run):

- lip tower: 5 consecutive 224×224 BGR face crops (pixel values 0–255, no normalisation) → 3D convs → 1024-d;
- audio tower: 13 MFCCs × 20 steps (0.2 s at 100 Hz; ``python_speech_features.mfcc`` of int16-scaled 16 kHz
  audio, reimplemented in ``vasajax.eval.mfcc``) → 2D convs → 1024-d;
- for every frame v: distances between the lip embedding of frames [v, v+5) and the audio embeddings of
  frames v−15 … v+15; mean over frames per offset; **Sync-D** = the minimum mean distance, **Sync-C** =
  median − minimum, offset = 15 − argmin (> 0: the video lags the audio).

No weights can be downloaded here, and nothing downloads them at run time. A user with the public
``syncnet_v2.model`` (a torch state dict) loads it with :func:`load_syncnet` — one key table, :data:`TABLE`,
maps its keys to ours (``.model``/``.pth`` through ``torch.load(weights_only=True)``, or a ``.safetensors``
with the same keys). Face crops come from MediaPipe landmark boxes (median-filtered over 13 frames, enlarged
by syncnet_python's crop scale 0.4) instead of its S3FD detector, so numbers can differ slightly from
papers' on the same video.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vasajax import params
from vasajax.errors import UserError
from vasajax.eval.mfcc import mfcc
from vasajax.params import Rule, conv, linear

VSHIFT = 15
CROP = 224
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


# ------------------------------------------------------------------------------------------ features


def face_crops(frames_TxHxWx3: np.ndarray, landmarks_Tx478xC: np.ndarray, crop_scale: float = 0.4) -> np.ndarray:
    """224×224 BGR crops (float32, 0–255) the way syncnet_python's ``crop_video`` cuts them from face boxes
    (here: MediaPipe landmark boxes, median-filtered over 13 frames; frames without a face reuse the nearest)."""
    import cv2
    from scipy.signal import medfilt

    lm = np.asarray(landmarks_Tx478xC, np.float64)[..., :2]
    ok = np.all(np.isfinite(lm), axis=(1, 2))
    if not ok.any():
        raise UserError("no face in any frame; SyncNet needs a visible face")
    lo, hi = lm.min(1), lm.max(1)
    box = np.stack([(lo[:, 0] + hi[:, 0]) / 2, (lo[:, 1] + hi[:, 1]) / 2, (hi - lo).max(1) / 2], 1)
    idx = np.arange(len(lm))
    box = np.stack([np.interp(idx, idx[ok], box[ok, j]) for j in range(3)], 1)
    k = min(13, len(box) - (1 - len(box) % 2))
    box = np.stack([medfilt(box[:, j], k) for j in range(3)], 1) if k >= 3 else box
    out = np.empty((len(lm), CROP, CROP, 3), np.float32)
    for i, (x, y, s) in enumerate(box):
        pad = int(s * (1 + 2 * crop_scale)) + 1
        img = np.pad(np.asarray(frames_TxHxWx3[i]), ((pad, pad), (pad, pad), (0, 0)), constant_values=110)
        mx, my = x + pad, y + pad
        crop = img[
            int(my - s) : int(my + s * (1 + 2 * crop_scale)),
            int(mx - s * (1 + crop_scale)) : int(mx + s * (1 + crop_scale)),
        ]
        out[i] = cv2.resize(crop, (CROP, CROP))[..., ::-1]
    return out


@functools.partial(jax.jit, static_argnums=0)
def _embed(graphdef, state, lips_Nx5xHxWx3, mfcc_Nx13x20x1):
    model = nnx.merge(graphdef, state)
    return model.lip(lips_Nx5xHxWx3), model.audio(mfcc_Nx13x20x1)


def embeddings(
    model: SyncNet, crops_TxHxWx3: np.ndarray, wave_16k: np.ndarray, batch: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """Lip and audio embeddings for every start frame v < min(T, len/640) − 5 (syncnet_python's loop)."""
    graphdef, state = nnx.split(model)
    cc = mfcc(np.asarray(wave_16k, np.float64) * 32768.0)  # syncnet_python reads int16 wavs
    n = min(len(crops_TxHxWx3), len(wave_16k) // 640) - 5
    if n < 1:
        raise UserError("video too short for SyncNet: it needs at least 6 frames with audio")
    lips, auds = [], []
    for i in range(0, n, batch):
        vs = np.arange(i, min(n, i + batch))
        pad = batch - len(vs)  # one jit shape: pad the last batch
        vsp = np.concatenate([vs, np.full(pad, vs[-1])])
        lip = np.stack([crops_TxHxWx3[v : v + 5] for v in vsp])
        aud = np.stack([cc[4 * v : 4 * v + 20] for v in vsp]).transpose(0, 2, 1)[..., None]
        el, ea = _embed(graphdef, state, jnp.asarray(lip), jnp.asarray(aud, jnp.float32))
        lips.append(np.asarray(el)[: len(vs)])
        auds.append(np.asarray(ea)[: len(vs)])
    return np.concatenate(lips), np.concatenate(auds)


def sync_scores(lip_NxD: np.ndarray, aud_NxD: np.ndarray, vshift: int = VSHIFT) -> dict[str, float]:
    """Sync-C, Sync-D and the offset from per-frame embeddings (``calc_pdist`` + ``evaluate`` of
    syncnet_python: Euclidean distances with torch's pairwise_distance eps 1e-6, audio zero-padded)."""
    lip, aud = np.asarray(lip_NxD, np.float64), np.asarray(aud_NxD, np.float64)
    audp = np.pad(aud, ((vshift, vshift), (0, 0)))
    win = 2 * vshift + 1
    dists = np.stack([np.linalg.norm(lip[i][None] - audp[i : i + win] + 1e-6, axis=1) for i in range(len(lip))])
    mdist = dists.mean(0)
    j = int(np.argmin(mdist))
    return {"sync_c": float(np.median(mdist) - mdist[j]), "sync_d": float(mdist[j]), "sync_offset": float(vshift - j)}


def evaluate(
    model: SyncNet, frames_TxHxWx3: np.ndarray, landmarks_Tx478xC: np.ndarray, wave_16k: np.ndarray
) -> dict[str, float]:
    """Sync-C / Sync-D / offset of one 25 fps video with 16 kHz audio."""
    lip, aud = embeddings(model, face_crops(frames_TxHxWx3, landmarks_Tx478xC), wave_16k)
    return sync_scores(lip, aud)
