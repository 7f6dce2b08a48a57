"""Sync-C / Sync-D (VASA-1 §4.2; Wav2Lip's LSE-C / LSE-D): the evaluation protocol of syncnet_python.

``SyncNetInstance.evaluate`` of ``joonson/syncnet_python``, on a :class:`vasajax.eval.syncnet.SyncNet`:

- face crops: 224×224 BGR, cut the way its ``crop_video`` cuts them (box enlarged by crop scale 0.4), from
  MediaPipe landmark boxes median-filtered over 13 frames instead of its S3FD detector — numbers can differ
  slightly from papers' on the same video;
- MFCCs of int16-scaled 16 kHz audio (``vasajax.eval.mfcc``), 20 steps (0.2 s) per video frame;
- for every frame v: distances between the lip embedding of frames [v, v+5) and the audio embeddings of
  frames v−15 … v+15; mean over frames per offset; **Sync-D** = the minimum mean distance, **Sync-C** =
  median − minimum, offset = 15 − argmin (> 0: the video lags the audio).
"""

from __future__ import annotations

import functools

import cv2
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from scipy.signal import medfilt

from vasajax.errors import UserError
from vasajax.eval.mfcc import mfcc
from vasajax.eval.syncnet import SyncNet

VSHIFT = 15
"""Offsets searched on each side, in video frames."""
CROP = 224


def face_crops(frames_TxHxWx3: np.ndarray, landmarks_Tx478xC: np.ndarray, crop_scale: float = 0.4) -> np.ndarray:
    """224×224 BGR crops (float32, 0–255) the way syncnet_python's ``crop_video`` cuts them from face boxes
    (here: MediaPipe landmark boxes, median-filtered over 13 frames; frames without a face reuse the nearest)."""
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
