"""The smooth S-curve shared by the portrait rig (mouth deformation bases) and the motion (blink shapes)."""

from __future__ import annotations

import numpy as np


def smoothstep(x: np.ndarray, a: float, b: float) -> np.ndarray:
    """0 below ``a``, 1 above ``b``, and 3t² − 2t³ of t = (x − a) / (b − a) between."""
    t = np.clip((x - a) / (b - a), 0.0, 1.0)
    return t * t * (3 - 2 * t)
