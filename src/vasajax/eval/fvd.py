"""Fréchet Video Distance on 25-frame clips, FVD25 (Unterthiner et al. 2019; VASA-1 §4.2, tables 2 and 5).

FVD fits a Gaussian to I3D (Kinetics-400) features of real and of generated clips and reports their Fréchet
distance ‖μ_r − μ_g‖² + Tr(Σ_r + Σ_g − 2(Σ_r Σ_g)^½). VASA-1 uses 2K clips of 25 consecutive frames each.

No I3D weights can be downloaded here and nothing downloads them at run time: the user passes the TorchScript
I3D that the StyleGAN-V FVD code uses (``i3d_torchscript.pt``; called as ``detector(videos, rescale=False,
resize=False, return_features=True)`` on ``B×3×T×224×224`` float videos in [−1, 1], 400-d features) — or any
callable ``clips_Bx25xHxWx3 uint8 → B×D`` features. Reading the TorchScript file needs torch (a CPU wheel is
enough). Without a checkpoint ``vasajax eval`` leaves FVD out and says what to pass. FVD needs many clips to
be meaningful (the bias of the covariance estimate is large below a few hundred); the report gives the
number of clips beside the value.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from vasajax.errors import UserError

CLIP_FRAMES = 25
I3D_SIZE = 224
NO_CHECKPOINT = (
    "FVD needs an I3D checkpoint: pass --i3d i3d_torchscript.pt (StyleGAN-V's TorchScript I3D) and --real-videos "
    "DIR; nothing is downloaded"
)


def clips_of(frames_TxHxWx3: np.ndarray, length: int = CLIP_FRAMES, stride: int | None = None) -> list[np.ndarray]:
    """Non-overlapping (or ``stride``-spaced) runs of ``length`` consecutive frames; a shorter video gives none."""
    stride = stride or length
    t = len(frames_TxHxWx3)
    return [np.asarray(frames_TxHxWx3[s : s + length]) for s in range(0, t - length + 1, stride)]


def resize_clip(clip_TxHxWx3: np.ndarray, size: int = I3D_SIZE) -> np.ndarray:
    """Each frame resized to size×size (area interpolation when shrinking), uint8."""
    import cv2

    clip = np.asarray(clip_TxHxWx3, np.uint8)
    if clip.shape[1:3] == (size, size):
        return clip
    interp = cv2.INTER_AREA if clip.shape[1] > size else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (size, size), interpolation=interp) for f in clip])


def load_i3d(path: str | os.PathLike) -> Callable[[np.ndarray], np.ndarray]:
    """Feature function of a TorchScript I3D (StyleGAN-V's protocol): uint8 clips B×T×H×W×3 → B×D float64."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"I3D checkpoint {path!r} not found; {NO_CHECKPOINT}")
    try:
        import torch
    except ImportError as e:
        raise UserError("the TorchScript I3D needs torch (pip install torch, the CPU wheel is enough)") from e
    try:
        net = torch.jit.load(path, map_location="cpu").eval()
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"cannot load {path!r} as a TorchScript module ({type(e).__name__}); {NO_CHECKPOINT}") from e

    def features(clips_BxTxHxWx3: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(clips_BxTxHxWx3)).float() / 127.5 - 1.0
        x = x.permute(0, 4, 1, 2, 3)  # B×3×T×H×W
        with torch.no_grad():
            out = net(x, rescale=False, resize=False, return_features=True)
        return out.double().cpu().numpy().reshape(len(x), -1)

    return features


def video_features(
    features: Callable[[np.ndarray], np.ndarray], clips: Sequence[np.ndarray], batch: int = 8
) -> np.ndarray:
    """Features of each clip (resized to 224²) in batches: N×D."""
    if not clips:
        raise UserError(f"no {CLIP_FRAMES}-frame clips for FVD; videos must have at least {CLIP_FRAMES} frames")
    out = [features(np.stack([resize_clip(c) for c in clips[i : i + batch]])) for i in range(0, len(clips), batch)]
    return np.concatenate(out).astype(np.float64)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2(Σ1Σ2)^½), the matrix root by ``scipy.linalg.sqrtm`` (real part)."""
    import scipy.linalg

    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    s1, s2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    covmean, _ = scipy.linalg.sqrtm(s1 @ s2, disp=False)
    if not np.all(np.isfinite(covmean)):  # singular product: the usual ε-regularisation
        eps = 1e-6 * np.eye(len(s1))
        covmean = scipy.linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = np.real(covmean)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def fvd_from_features(real_NxD: np.ndarray, fake_MxD: np.ndarray) -> float:
    """FVD between two feature sets (each needs ≥ 2 clips)."""
    if len(real_NxD) < 2 or len(fake_MxD) < 2:
        raise UserError("FVD needs at least 2 clips on each side (a few hundred for a stable value)")
    stats = [(f.mean(0), np.cov(f, rowvar=False)) for f in (np.asarray(real_NxD), np.asarray(fake_MxD))]
    return frechet_distance(stats[0][0], stats[0][1], stats[1][0], stats[1][1])
