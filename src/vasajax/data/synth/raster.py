"""The mesh rasteriser: :func:`render_frame` warps the portrait piecewise-affinely so its landmarks, control
rings and fixed border land where a frame puts them (each pixel finds its covering triangle, then samples the
photo through that triangle's affine map), slides the eyeballs for gaze and paints the mouth interior."""

from __future__ import annotations

import functools

import cv2
import numpy as np

from vasajax.data.synth.landmarks import EYE_CORNERS, EYES
from vasajax.data.synth.mouth import paint_mouth
from vasajax.data.synth.portrait import Portrait


def _triangle_map(dst_Px2: np.ndarray, tris_Kx3: np.ndarray, size: int) -> np.ndarray:
    """S×S int32: index of the triangle covering each pixel (later triangles drawn on top), -1 if none."""
    tid = np.full((size, size), -1, np.int32)
    fixed = np.round(dst_Px2 * 16 - 8).astype(np.int32)  # 4 fractional bits; cv2 puts pixel centres at j
    for k, tri in enumerate(tris_Kx3):
        cv2.fillConvexPoly(tid, fixed[tri], k, lineType=cv2.LINE_8, shift=4)
    return tid


def _affines(src_Px2: np.ndarray, dst_Px2: np.ndarray, tris_Kx3: np.ndarray) -> np.ndarray:
    """K×2×3 maps from destination pixel (x, y, 1) to source coordinates, one per triangle."""
    d = np.concatenate([dst_Px2[tris_Kx3], np.ones((len(tris_Kx3), 3, 1))], -1)  # K×3×3
    s = src_Px2[tris_Kx3]  # K×3×2
    det = np.linalg.det(d)
    ok = np.abs(det) > 1e-6
    m = np.zeros((len(tris_Kx3), 2, 3))
    m[ok] = np.swapaxes(np.linalg.solve(d[ok], s[ok]), 1, 2)
    m[~ok, :, 2] = s[~ok].mean(1)
    return m


def render_frame(p: Portrait, lm: np.ndarray, ring: np.ndarray, eye_shift: np.ndarray | None = None) -> np.ndarray:
    """Warp the portrait so its landmarks land on ``lm`` (478×3) and its ring on ``ring``; S×S×3 uint8.

    ``eye_shift`` (2×2, pixels; from :func:`pose_landmarks`) slides each eyeball's texture rigidly inside
    its eye opening (gaze); ``lm``'s iris points already include it.
    """
    size = p.image.shape[0]
    eye_shift = np.zeros((2, 2)) if eye_shift is None else np.asarray(eye_shift, np.float64)
    warp_lm = lm[:, :2].copy()
    for e, (_, _, iris, _) in enumerate(EYES):
        warp_lm[iris] -= eye_shift[e]  # the eye interior warps with the lids; the iris slides on top
    src = np.concatenate([p.landmarks[:, :2], p.ring_src[:, :2], p.border])
    dst = np.concatenate([warp_lm, ring[:, :2], p.border])
    order = np.argsort(-lm[p.face_tris, 2].mean(1), kind="stable")
    tris = np.concatenate([p.outer_tris, p.face_tris[order]])
    tri_eye = np.concatenate([np.full(len(p.outer_tris), -1, np.int32), p.face_eye[order]])
    tid = _triangle_map(dst, tris, size)
    aff = _affines(src, dst, tris)
    # Per-pixel source coordinates; uncovered pixels (tid = -1) pick the appended identity map.
    coef = np.concatenate([aff.reshape(-1, 6), [[1, 0, 0, 0, 1, 0]]]).astype(np.float32)
    coef[:, [2, 5]] -= 0.5  # back to cv2's pixel-index coordinates
    xs, ys = _pixel_centres(size)
    c = np.take(coef, tid, axis=0, mode="wrap")  # S×S×6; -1 wraps to the identity row
    map_x = c[..., 0] * xs + c[..., 1] * ys + c[..., 2]
    map_y = c[..., 3] * xs + c[..., 4] * ys + c[..., 5]
    img = cv2.remap(p.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    eye = np.take(np.append(tri_eye, -1), tid, mode="wrap")
    if np.any(eye_shift) and (eye >= 0).any():
        ys_, xs_ = np.nonzero(eye >= 0)
        shift = eye_shift[eye[ys_, xs_]].astype(np.float32)
        mx, my = (map_x[ys_, xs_] - shift[:, 0])[None], (map_y[ys_, xs_] - shift[:, 1])[None]
        ball = cv2.remap(p.eye_texture, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        img[ys_, xs_] = ball[0]
    paint_mouth(img, lm, float(np.linalg.norm(lm[EYE_CORNERS[1], :2] - lm[EYE_CORNERS[0], :2])))
    return img


@functools.cache
def _pixel_centres(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[:size, :size].astype(np.float32) + 0.5  # continuous coordinates of pixel centres
    xs.flags.writeable = ys.flags.writeable = False
    return xs, ys
