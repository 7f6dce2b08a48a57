"""Per-frame control labels from a face observation (VASA-1 §3.2 conditions, §4.2 metrics).

:func:`frame_labels` (pose, gaze, distance, blendshapes, crop landmarks) and :func:`clip_labels` (stacked
per-frame labels and the emotion offset = clip mean of the blendshapes; VASA-1 used HSEmotion coefficients, any
labeler that gives a per-frame vector can replace the blendshapes), from :func:`pose_from_matrix`,
:func:`gaze_from_landmarks` and :func:`head_distance`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vasajax.errors import UserError
from vasajax.facetrack.crop import image_to_crop_coords
from vasajax.facetrack.landmarks import LEFT_EYE, RIGHT_EYE, eye_centres
from vasajax.facetrack.tracker import FaceObservation

POSE_NAMES = ("yaw", "pitch", "roll", "tx", "ty", "tz")
# Iris offset (in half eye widths) → eyeball rotation: offset·(half fissure ≈ 15 mm) / (eyeball radius 12 mm).
GAZE_GAIN = 1.25


def pose_from_matrix(matrix: np.ndarray) -> np.ndarray:
    """[yaw, pitch, roll (radians), tx, ty, tz (cm)] from the landmarker's 4×4 head → camera matrix.

    R = Ry(yaw)·Rx(pitch)·Rz(roll) about the camera axes (x right, y up, z to the viewer), right-handed:
    yaw > 0 turns the nose towards the image's right, pitch > 0 tilts the nose down, roll > 0 turns the
    head counter-clockwise in the image. A horizontal flip of the image negates yaw, roll and tx.
    """
    m = np.asarray(matrix, np.float64)
    r = m[:3, :3] / np.cbrt(max(np.linalg.det(m[:3, :3]), 1e-12))  # drop any uniform scale
    yaw = np.arctan2(r[0, 2], r[2, 2])
    pitch = np.arcsin(np.clip(-r[1, 2], -1.0, 1.0))
    roll = np.arctan2(r[1, 0], r[1, 1])
    return np.array([yaw, pitch, roll, *m[:3, 3]], np.float32)


def gaze_from_landmarks(landmarks: np.ndarray, matrix: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Gaze angles (θ, φ) in radians: (in camera space, in the head's frame).

    Per eye, the iris centre's offset from the eye centre (corner midpoint horizontally, lid midpoint
    vertically) is measured along the face's image axes (x: eye to eye, y: perpendicular, down) in units of
    half the eye width, averaged over both eyes, and mapped to eyeball rotation by arcsin(1.25·offset)
    (half fissure ≈ 15 mm, eyeball radius ≈ 12 mm). The head-frame direction is rotated by the head pose
    (``matrix``) into camera space. θ > 0: looking towards the image's right; φ > 0: looking up;
    (0, 0) in camera space = looking into the camera.
    """
    pts = np.asarray(landmarks, np.float64)[:, :2]
    eye_r, eye_l = eye_centres(pts)
    ax = eye_l - eye_r
    ax /= max(np.linalg.norm(ax), 1e-9)
    ay = np.array([-ax[1], ax[0]])  # image-down for an upright face
    hs, vs = [], []
    for eye in (RIGHT_EYE, LEFT_EYE):
        o, i, u, l, c = (pts[eye[k]] for k in ("outer", "inner", "upper", "lower", "iris"))
        half = max(np.linalg.norm(i - o) / 2, 1e-9)
        hs.append((c - (o + i) / 2) @ ax / half)
        vs.append((c - (u + l) / 2) @ ay / half)
    theta_e = np.arcsin(np.clip(GAZE_GAIN * np.mean(hs), -1, 1))
    phi_e = np.arcsin(np.clip(-GAZE_GAIN * np.mean(vs), -1, 1))
    head = np.array([theta_e, phi_e], np.float32)
    if matrix is None:
        return head, head
    d = np.array([np.sin(theta_e) * np.cos(phi_e), np.sin(phi_e), np.cos(theta_e) * np.cos(phi_e)])
    rot = np.asarray(matrix, np.float64)[:3, :3]
    d = rot @ d / max(np.linalg.norm(rot @ d), 1e-9)
    cam = np.array([np.arctan2(d[0], d[2]), np.arcsin(np.clip(d[1], -1, 1))], np.float32)
    return cam, head


def head_distance(landmarks: np.ndarray, params: Sequence[float]) -> float:
    """Normalized head distance: 3D inter-ocular distance (eye corner midpoints, x/y/z in px) / crop side.

    Larger = face bigger in the crop (nearer). Using z keeps it nearly unchanged under yaw.
    """
    eye_r, eye_l = eye_centres(np.asarray(landmarks, np.float64))
    return float(np.linalg.norm(eye_l - eye_r) / float(params[2]))


def frame_labels(obs: FaceObservation, crop_params: Sequence[float]) -> dict[str, np.ndarray]:
    """Per-frame labels: ``pose`` (6,) [yaw, pitch, roll, tx, ty, tz]; ``gaze`` (2,) camera-space (θ, φ);
    ``gaze_head`` (2,) eye-in-head; ``distance`` () float; ``blendshapes`` (52,); ``landmarks`` (478, 3) in
    crop units (x, y in [0, 1] inside the crop; z scaled like x). All float32."""
    cam, head = gaze_from_landmarks(obs.landmarks, obs.matrix)
    lm = image_to_crop_coords(obs.landmarks, crop_params, 1)
    return {
        "pose": pose_from_matrix(obs.matrix),
        "gaze": cam,
        "gaze_head": head,
        "distance": np.float32(head_distance(obs.landmarks, crop_params)),
        "blendshapes": np.asarray(obs.blendshapes, np.float32),
        "landmarks": lm.astype(np.float32),
    }


def clip_labels(frames: Sequence[dict[str, np.ndarray] | None]) -> dict[str, np.ndarray]:
    """Stack per-frame labels (None = no face: NaN rows) into (T, …) arrays, plus per clip:
    ``valid`` (T,) bool and ``emotion`` (52,) = mean blendshapes over valid frames
    (VASA-1's emotion offset)."""
    template = next((f for f in frames if f is not None), None)
    if template is None:
        raise UserError("no frame of the clip has a face; skip this clip")
    out: dict[str, np.ndarray] = {}
    for key, ref in template.items():
        nan = np.full(np.shape(ref), np.nan, np.float32)
        out[key] = np.stack([np.asarray(f[key], np.float32) if f is not None else nan for f in frames])
    out["valid"] = np.array([f is not None for f in frames])
    out["emotion"] = out["blendshapes"][out["valid"]].mean(axis=0).astype(np.float32)
    return out
