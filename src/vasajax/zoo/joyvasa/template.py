"""JoyVASA's motion template and the map from generated coefficients to LivePortrait keypoint parameters.

``motion_template.pkl`` is a pickled dict of numpy arrays: per-dimension statistics of LivePortrait motion
over JoyVASA's training set (upstream ``src/prepare_data/04_gen_template.py``): ``mean_*``, ``std_*``,
``max_*``, ``min_*``, ``abs_max_*`` for ``scale``, ``R``, ``t``, ``exp``, ``pitch``, ``yaw``, ``roll``, ``lip``,
``eyes``. Generation reads only these (``gen_motion_sequence``):

    coef[0:63]  exp   = coef · std_exp + mean_exp                   → 21 × 3
    coef[63]    scale = coef · (max − min) + min                      (min-max normalised, as t and angles)
    coef[64:67] t     (3; LivePortrait applies only tx, ty)
    coef[67]    pitch, coef[68] yaw, coef[69] roll   (degrees)

then ``R = rotation_matrix(pitch, yaw, roll)`` (LivePortrait's ``get_rotation_matrix``, transposed
R_z R_y R_x), and, with ``is_smooth_motion`` (upstream's default), an exponential moving average over frames
of scale, t, pitch, yaw, roll with weight ``alpha = 0.01`` on the new frame (``smooth_(…, method="ema")`` in
``src/utils/filter.py``: very strong; the expression is not smoothed), R recomputed from the smoothed angles.
The result drives LivePortrait's ``transform_keypoint`` (its port is the renderer's business).

The pickle is read with a restricted unpickler that builds only numpy arrays, dtypes and scalars (and the
builtin containers pickle makes without globals): a file with anything else is refused, never executed.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from vasajax.errors import UserError

NEEDED = (
    "mean_exp",
    "std_exp",
    *(f"{m}_{k}" for k in ("scale", "t", "pitch", "yaw", "roll") for m in ("min", "max")),
)
SMOOTH_ALPHA = 0.01
"""Upstream's EMA weight on the newest frame (``ExponentialMovingAverageFilter(alpha=0.01)``)."""

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),
}


class _NumpyOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_template(path: str | Path) -> dict[str, np.ndarray]:
    """The template's arrays (float32), checked for the keys generation needs."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"JoyVASA motion template {p} not found (JoyVASA/motion_template/motion_template.pkl)")
    try:
        obj = _NumpyOnly(io.BytesIO(p.read_bytes())).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as e:
        raise UserError(f"{p} is not a JoyVASA motion template (a pickle of numpy arrays only): {e}") from None
    if not isinstance(obj, dict):
        raise UserError(f"{p} is not a JoyVASA motion template (it holds a {type(obj).__name__}, not a dict)")
    missing = [k for k in NEEDED if k not in obj]
    if missing:
        raise UserError(f"{p} is not a JoyVASA motion template: it lacks {missing[0]!r}")
    return {str(k): np.asarray(v, np.float32) for k, v in obj.items() if isinstance(v, (np.ndarray, np.generic))}


def rotation_matrix(pitch_T: np.ndarray, yaw_T: np.ndarray, roll_T: np.ndarray) -> np.ndarray:
    """LivePortrait's ``get_rotation_matrix`` (angles in degrees) → ``T×3×3``: ``(R_z R_y R_x)ᵀ``."""
    x, y, z = (np.deg2rad(np.asarray(a, np.float32).reshape(-1)) for a in (pitch_T, yaw_T, roll_T))
    one, zero = np.ones_like(x), np.zeros_like(x)
    rx = np.stack([one, zero, zero, zero, np.cos(x), -np.sin(x), zero, np.sin(x), np.cos(x)], -1).reshape(-1, 3, 3)
    ry = np.stack([np.cos(y), zero, np.sin(y), zero, one, zero, -np.sin(y), zero, np.cos(y)], -1).reshape(-1, 3, 3)
    rz = np.stack([np.cos(z), -np.sin(z), zero, np.sin(z), np.cos(z), zero, zero, zero, one], -1).reshape(-1, 3, 3)
    return np.swapaxes(rz @ ry @ rx, -1, -2).astype(np.float32)


def ema(x_TxC: np.ndarray, alpha: float = SMOOTH_ALPHA) -> np.ndarray:
    """``s_0 = x_0``, ``s_i = alpha · x_i + (1 − alpha) · s_{i−1}`` (float32)."""
    x = np.asarray(x_TxC, np.float32)
    out = np.empty_like(x)
    s = None
    for i, v in enumerate(x):
        s = v if s is None else np.float32(alpha) * v + np.float32(1 - alpha) * s
        out[i] = s
    return out


def to_keypoint_params(
    motion_TxM: np.ndarray,
    template: dict[str, np.ndarray],
    *,
    smooth: bool = True,
    alpha: float = SMOOTH_ALPHA,
    num_kp: int = 21,
) -> dict[str, np.ndarray]:
    """Generated coefficients → LivePortrait keypoint parameters per frame.

    Columns are ``[exp (3K), scale, t (3), pitch, yaw, roll]`` (K = ``num_kp``: 21 upstream, 70 columns; other K
    for small test models). Returns ``exp`` ``T×K×3``, ``scale`` ``T×1``, ``t`` ``T×3``, ``pitch``/``yaw``/``roll``
    ``T×1`` (degrees) and ``R`` ``T×3×3``, all float32, as upstream's motion dict (stacked over frames).
    """
    c = np.asarray(motion_TxM, np.float32)
    e = 3 * int(num_kp)
    if c.ndim != 2 or c.shape[1] < e + 7:
        raise UserError(f"JoyVASA motion must be frames × {e + 7} (or more), got shape {c.shape}")

    def minmax(cols: slice, name: str) -> np.ndarray:
        lo, hi = template[f"min_{name}"].reshape(-1), template[f"max_{name}"].reshape(-1)
        return c[:, cols] * (hi - lo) + lo

    exp = c[:, 0:e] * template["std_exp"].reshape(-1) + template["mean_exp"].reshape(-1)
    pose = np.concatenate(
        [
            minmax(slice(e, e + 1), "scale"),
            minmax(slice(e + 1, e + 4), "t"),
            minmax(slice(e + 4, e + 5), "pitch"),
            minmax(slice(e + 5, e + 6), "yaw"),
            minmax(slice(e + 6, e + 7), "roll"),
        ],
        axis=1,
    ).astype(np.float32)
    if smooth:
        pose = ema(pose, alpha)
    scale, t, pitch, yaw, roll = pose[:, 0:1], pose[:, 1:4], pose[:, 4:5], pose[:, 5:6], pose[:, 6:7]
    return {
        "exp": exp.reshape(-1, int(num_kp), 3).astype(np.float32),
        "scale": scale,
        "t": t,
        "pitch": pitch,
        "yaw": yaw,
        "roll": roll,
        "R": rotation_matrix(pitch, yaw, roll),
    }
