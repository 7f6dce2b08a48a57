"""Pose and control metrics (VASA-1 §4.2 and table 5): ΔP, gaze error E_g, head-distance error E_d.

- **ΔP, pose variation intensity** (§4.2): "the average of the pose angle differences between adjacent frames.
  Averaged over all the frames of all generated videos". We take |Δ| of each Euler angle (yaw, pitch, roll)
  between frames t and t+1, in degrees, and average over the three angles and over every frame pair of every
  video (pooled, so long videos weigh more, as "over all the frames" says). The paper does not say whether the
  three angles are averaged or combined into one rotation angle; we average them (the trainer's
  ``train.motion.delta_p_deg`` does the same). Poses are re-extracted from the frames by the face tracker,
  as the paper does for every method.
- **E_g, main-gaze error** (table 5): the angle in degrees between the requested gaze direction and the
  gaze measured in the generated video. Both are (θ, φ) spherical angles (``facetrack.labels.gaze_from_landmarks``
  convention). A per-frame request (T×2) is compared frame by frame; a single (2,) request — VASA-1's "main
  gaze" — is compared with the video's main gaze, the mean of its per-frame unit gaze vectors.
- **E_d, head-distance error** (table 5): mean absolute difference between requested and measured normalized
  head distance (``facetrack.labels.head_distance``; the generated frame is the crop), per frame or against the
  clip mean like E_g.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vasajax.errors import UserError


def angle_diffs_deg(pose_Tx3: np.ndarray) -> np.ndarray:
    """|Δ yaw|, |Δ pitch|, |Δ roll| between adjacent frames, degrees: ``(T−1)×3``. Extra columns (translation)
    are ignored; frames with NaN (no face) drop the pairs they are part of."""
    p = np.asarray(pose_Tx3, np.float64)
    if p.ndim != 2 or p.shape[1] < 3:
        raise UserError(f"pose must be T×3 (yaw, pitch, roll in radians) or wider, got shape {p.shape}")
    d = np.degrees(np.abs(np.diff(p[:, :3], axis=0)))
    return d[np.all(np.isfinite(d), axis=1)]


def delta_p(poses: Sequence[np.ndarray] | np.ndarray) -> float:
    """ΔP in degrees over one pose sequence (T×≥3, radians) or a list of them (pooled over all frame pairs)."""
    seqs = [poses] if isinstance(poses, np.ndarray) and poses.ndim == 2 else list(poses)
    diffs = [angle_diffs_deg(p) for p in seqs]
    diffs = [d for d in diffs if len(d)]
    if not diffs:
        return float("nan")
    return float(np.concatenate(diffs).mean())


def gaze_vector(theta_phi_Nx2: np.ndarray) -> np.ndarray:
    """Unit direction vectors (x right, y up, z towards the camera) of (θ, φ) gaze angles in radians."""
    a = np.asarray(theta_phi_Nx2, np.float64)
    th, ph = a[..., 0], a[..., 1]
    return np.stack([np.sin(th) * np.cos(ph), np.sin(ph), np.cos(th) * np.cos(ph)], -1)


def angle_between_deg(a_Nx2: np.ndarray, b_Nx2: np.ndarray) -> np.ndarray:
    """Angle in degrees between gaze directions given as (θ, φ) radians (broadcasts)."""
    u, v = gaze_vector(a_Nx2), gaze_vector(b_Nx2)
    return np.degrees(np.arccos(np.clip(np.sum(u * v, -1), -1.0, 1.0)))


def main_gaze(gaze_Tx2: np.ndarray) -> np.ndarray:
    """The clip's main gaze (θ, φ): direction of the mean of its valid per-frame unit gaze vectors."""
    g = np.asarray(gaze_Tx2, np.float64)
    g = g[np.all(np.isfinite(g), axis=-1)]
    if not len(g):
        return np.full(2, np.nan)
    m = gaze_vector(g).mean(0)
    m /= max(np.linalg.norm(m), 1e-12)
    return np.array([np.arctan2(m[0], m[2]), np.arcsin(np.clip(m[1], -1, 1))])


def gaze_error_deg(requested: np.ndarray, measured_Tx2: np.ndarray) -> float:
    """E_g: angle (degrees) between requested and measured gaze; (2,) request → vs. the main gaze, T×2 →
    mean over frames where both are valid."""
    req, meas = np.asarray(requested, np.float64), np.asarray(measured_Tx2, np.float64)
    if req.shape == (2,):
        return float(angle_between_deg(req, main_gaze(meas)))
    if req.shape != meas.shape:
        raise UserError(f"requested gaze has shape {req.shape}; give (2,) or one row per frame {meas.shape}")
    err = angle_between_deg(req, meas)
    return float(np.nanmean(err)) if np.isfinite(err).any() else float("nan")


def distance_error(requested: float | np.ndarray, measured_T: np.ndarray) -> float:
    """E_d: |requested − measured| normalized head distance; scalar request → vs. the clip's mean distance."""
    req, meas = np.asarray(requested, np.float64), np.asarray(measured_T, np.float64)
    if req.ndim == 0:
        return float(abs(req - np.nanmean(meas)))
    if req.shape != meas.shape:
        raise UserError(f"requested distance has shape {req.shape}; give a number or one per frame {meas.shape}")
    return float(np.nanmean(np.abs(req - meas)))
