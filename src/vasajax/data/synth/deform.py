"""Deformation: one frame's landmarks from its motion parameters (mouth shapes, eyelids and iris in the
face-local frame, then a rigid head rotation about a pivot behind the face) and where the control rings and
eyeballs go."""

from __future__ import annotations

import numpy as np

from vasajax.data.synth.config import SynthConfig
from vasajax.data.synth.landmarks import EYES
from vasajax.data.synth.portrait import Portrait


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Image axes (x right, y down, z away from the camera); the angle conventions of
    ``facetrack.labels.pose_from_matrix``: +yaw turns the nose to image right, +pitch tilts it down, +roll turns
    the head counter-clockwise in the image."""
    cy, sy, cp, sp, cr, sr = (
        np.cos(yaw),
        np.sin(yaw),
        np.cos(pitch),
        np.sin(pitch),
        np.cos(roll),
        np.sin(roll),
    )
    ry = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, sr, 0], [-sr, cr, 0], [0, 0, 1]])
    return rz @ rx @ ry


def pose_landmarks(p: Portrait, f: dict[str, float], cfg: SynthConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Landmarks (478×3), ring control points (R×3) and eyeball shifts (2×2) of one frame's parameters ``f``.

    Coordinates are continuous crop pixels (pixel (i, j) covers [j, j+1) × [i, i+1), as in ``facetrack``).
    Render with ``render_frame(p, *pose_landmarks(p, f, cfg))``.
    """
    b = p.bases
    d_loc = f["jaw"] * cfg.mouth_gap * b["jaw"] + f["spread"] * b["spread"] + f["round"] * b["round"]
    d_loc = d_loc + f["smile"] * b["smile"]
    lm = p.rest.copy()
    lm[:, :2] += (d_loc @ p.axes) * p.unit
    ex, ey = p.axes
    eye_shift = np.zeros((2, 3))
    for e, ((upper, lower, iris, iris_ring), spread) in enumerate(zip(EYES, p.lid_spread)):
        up, lo = lm[list(upper)], lm[list(lower)]
        g = lo - up
        lid_gaze = np.clip(-0.9 * f["gaze_pitch"], -0.15, 0.3)  # the upper lid follows the gaze down
        squint = 0.15 * f["smile"] * (1 - f["blink"])
        down = np.clip(0.9 * f["blink"] + lid_gaze * (1 - f["blink"]), -0.15, 0.9)
        rise = 0.1 * f["blink"] + squint
        new_up, new_lo = up + down * g, lo - rise * g
        lm[:, :2] += spread @ (new_up - up)[:, :2]
        opening = 1.0 - down - rise
        mid_old, mid_new = lo[4, :2], new_lo[4, :2]
        radius = 0.4 * np.linalg.norm(up[0, :2] - up[-1, :2])  # eyeball radius ≈ 0.8 half eye widths
        shift = radius * (np.sin(f["gaze_yaw"]) * ex - np.sin(f["gaze_pitch"]) * ey)
        ids = [iris, *iris_ring]
        rel = lm[ids, :2] + shift - mid_old
        rel_u, rel_v = rel @ ex, rel @ ey
        lm[ids, :2] = mid_new + np.outer(rel_u, ex) + np.outer(rel_v * max(opening, 0.02), ey)
        lm[list(upper)], lm[list(lower)] = new_up, new_lo
        eye_shift[e, :2] = (shift @ ex) * ex + (shift @ ey) * max(opening, 0.02) * ey
    rot = _rotation(f["yaw"], f["pitch"], f["roll"])
    shift3 = np.array([f["tx"], f["ty"], 0.0]) * cfg.size

    def rigid(x: np.ndarray) -> np.ndarray:
        return f["scale"] * (x - p.pivot) @ rot.T + p.pivot + shift3

    ring = p.ring_src + p.ring_weight[:, None] * (rigid(p.ring_src) - p.ring_src)
    return rigid(lm), ring, (f["scale"] * eye_shift @ rot.T)[:, :2]
