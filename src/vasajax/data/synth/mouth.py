"""The mouth painter: a dark cavity, upper teeth and a tongue, painted where the lips of a rendered frame part."""

from __future__ import annotations

import cv2
import numpy as np

from vasajax.data.synth.landmarks import LOWER_INNER, UPPER_INNER


def _fill(mask: np.ndarray, pts_Px2: np.ndarray) -> None:
    cv2.fillPoly(mask, [np.round(pts_Px2 * 16 - 8).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)


def paint_mouth(img: np.ndarray, lm: np.ndarray, unit: float) -> None:
    """Paint the mouth interior (dark cavity, upper teeth, tongue) where the lips part."""
    gap = float(np.linalg.norm(lm[13, :2] - lm[14, :2]))
    if gap < 0.25:
        return
    poly = np.concatenate([lm[list(UPPER_INNER), :2], lm[list(LOWER_INNER)[-2:0:-1], :2]])
    size = img.shape[0]
    (x0, y0), (x1, y1) = np.clip(np.floor(poly.min(0)) - 3, 0, size), np.clip(np.ceil(poly.max(0)) + 3, 0, size)
    x0, y0, x1, y1 = int(x0), int(y0), int(x1), int(y1)
    if x1 <= x0 or y1 <= y0:
        return
    win = img[y0:y1, x0:x1]  # work in a window around the mouth; points relative to it
    off = np.array([x0, y0], np.float64)
    up, poly = lm[list(UPPER_INNER), :2] - off, poly - off
    hw = (y1 - y0, x1 - x0)
    cavity = np.zeros(hw, np.uint8)
    _fill(cavity, poly)
    m = cavity.astype(np.float32)[..., None] / 255.0
    down = (lm[14, :2] - lm[13, :2]) / gap
    centre = 0.5 * (lm[13, :2] + lm[14, :2]) - off
    width = float(np.linalg.norm(up[-1] - up[0]))
    # Dark, warm cavity, darker towards the corners.
    ys, xs = np.mgrid[: hw[0], : hw[1]] + 0.5
    across = np.abs((xs - centre[0]) * down[1] - (ys - centre[1]) * down[0]) / (0.5 * width + 1e-6)
    shade = np.clip(1.0 - 0.7 * across**2, 0.25, 1.0)[..., None].astype(np.float32)
    layer = np.array([0.23, 0.07, 0.08], np.float32) * shade * 255
    # Tongue: a dull red mound rising from the lower lip.
    tongue = np.zeros(hw, np.uint8)
    tc = lm[14, :2] - off - down * 0.15 * gap
    centre_fx = (int(tc[0] * 16 - 8), int(tc[1] * 16 - 8))
    axes_fx = (int(0.3 * width * 16), int(0.35 * gap * 16))
    angle = -float(np.degrees(np.arctan2(down[0], -down[1])))
    cv2.ellipse(tongue, centre_fx, axes_fx, angle, 0, 360, 255, -1, cv2.LINE_AA, 4)
    tw = tongue.astype(np.float32)[..., None] / 255.0 * min(1.0, gap / (0.12 * unit))
    layer = layer * (1 - tw) + tw * np.array([0.5, 0.2, 0.22], np.float32) * shade * 255
    # Teeth: a band under the upper lip, narrower than the mouth.
    tooth = min(0.4 * gap, 0.06 * unit)
    inner = centre + (up[1:-1] - centre) * np.array([0.82, 1.0])  # (lower teeth stay hidden by the lip)
    band = np.zeros(hw, np.uint8)
    _fill(band, np.concatenate([inner, inner[::-1] + tooth * down]))
    bw = cv2.GaussianBlur(band, (3, 3), 0.6).astype(np.float32)[..., None] / 255.0
    layer = layer * (1 - bw) + bw * np.array([0.86, 0.8, 0.7], np.float32) * np.clip(shade * 1.1, 0, 1) * 255
    win[:] = np.clip(win * (1 - m) + layer * m + 0.5, 0, 255).astype(np.uint8)
