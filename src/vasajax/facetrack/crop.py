"""The one face crop, shared by data preparation and inference.

:class:`CropConfig` and :func:`crop_params` place an axis-aligned square from the landmarks (head roll stays in
the image, as in VoxCeleb), sized from rotation-invariant face measures as in the FFHQ alignment (Karras et al.
2019); :func:`smooth_crops` steadies it over a clip; :func:`apply_crop` cuts it out, :func:`paste_crop` puts a
generated crop back; :func:`crop_to_image_coords` / :func:`image_to_crop_coords` map points between the two.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import cv2
import numpy as np
from scipy import ndimage

from vasajax.errors import UserError
from vasajax.facetrack.landmarks import MOUTH_CORNERS, eye_centres
from vasajax.image import to_uint8_rgb


@dataclasses.dataclass(frozen=True, kw_only=True)
class CropConfig:
    """The face crop used for training data and inference alike.

    Side = 2 · scale · max(2·|eye-to-eye|, 1.8·|eye-to-mouth|) (scale 1 = the FFHQ alignment crop); centre =
    eye midpoint + 0.1·eye-to-mouth, moved down by ``offset_y``·side. The default (1.35, 0.05) frames like the
    VoxCeleb / LivePortrait crops: the face centred with hair and chin, shoulders partly.
    """

    size: int = 256
    """Output side S in pixels."""
    scale: float = 1.35
    """Crop side relative to the FFHQ crop (larger = looser)."""
    offset_y: float = 0.05
    """Vertical shift of the crop centre as a fraction of the side; positive moves the crop down."""
    border: str = "edge"
    """Outside the image: "edge" repeats border pixels, "black" pads with zeros."""

    @classmethod
    def tiny(cls) -> CropConfig:
        return cls(size=64)

    @classmethod
    def small(cls) -> CropConfig:
        return cls(size=256)

    @classmethod
    def paper(cls) -> CropConfig:
        return cls(size=512)


def crop_params(landmarks: np.ndarray, cfg: CropConfig = CropConfig()) -> np.ndarray:  # noqa: B008
    """(cx, cy, side) in image pixels from (…, 478, 3) landmarks → (…, 3) float64 (leading dims kept)."""
    pts = np.asarray(landmarks, np.float64)[..., :2]
    eye_r, eye_l = eye_centres(pts)
    mouth = 0.5 * (pts[..., MOUTH_CORNERS[0], :] + pts[..., MOUTH_CORNERS[1], :])
    eye_mid = 0.5 * (eye_r + eye_l)
    e2e = np.linalg.norm(eye_l - eye_r, axis=-1)
    e2m = mouth - eye_mid
    side = 2.0 * cfg.scale * np.maximum(2.0 * e2e, 1.8 * np.linalg.norm(e2m, axis=-1))
    centre = eye_mid + 0.1 * e2m
    return np.stack([centre[..., 0], centre[..., 1] + cfg.offset_y * side, side], axis=-1)


def smooth_crops(params_Tx3: np.ndarray, *, fps: float = 25.0, sigma_s: float | None = 0.5) -> np.ndarray:
    """Temporally smooth per-frame crops so the crop does not jitter.

    Zero-phase Gaussian smoothing (no lag, unlike a causal one-euro filter) of cx, cy and log(side) with a
    standard deviation of ``sigma_s`` seconds; ends are padded by odd reflection, which keeps linear drifts
    unbiased up to the last frame. Rows with NaN (frames without a face) are first filled by linear
    interpolation. ``sigma_s=None`` gives one fixed crop for the whole clip (the median of cx, cy, log side):
    then all head motion, translation included, stays visible inside the crop, which suits training clips.
    """
    p = np.array(params_Tx3, np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"expected (T, 3) crop params, got {p.shape}")
    ok = np.isfinite(p).all(axis=1)
    if not ok.any():
        raise UserError("no frame of the clip has a face; cannot place a crop")
    p[ok, 2] = np.log(p[ok, 2])
    t = np.arange(len(p))
    p = np.stack([np.interp(t, t[ok], p[ok, c]) for c in range(3)], axis=1)
    if sigma_s is None:
        p[:] = np.median(p, axis=0)
    elif sigma_s > 0 and len(p) > 1:
        sigma = sigma_s * fps
        pad = min(len(p) - 1, int(np.ceil(4 * sigma)))
        padded = np.pad(p, ((pad, pad), (0, 0)), mode="reflect", reflect_type="odd")
        p = ndimage.gaussian_filter1d(padded, sigma, axis=0, mode="nearest")[pad : pad + len(p)]
    p[:, 2] = np.exp(p[:, 2])
    return p


def _crop_matrix(params: Sequence[float], size: int) -> np.ndarray:
    """2×3 affine from output-pixel indices to source-pixel indices (centre-of-pixel convention of cv2)."""
    cx, cy, side = (float(v) for v in params)
    s = side / size
    x0, y0 = cx - side / 2, cy - side / 2
    return np.array([[s, 0.0, x0 + 0.5 * s - 0.5], [0.0, s, y0 + 0.5 * s - 0.5]], np.float64)


def apply_crop(image: np.ndarray, params: Sequence[float], size: int = 256, border: str = "edge") -> np.ndarray:
    """Cut the square (cx, cy, side) out of ``image`` and resample it to uint8 size×size×3.

    Bilinear, with a Gaussian pre-filter (σ = (side/size − 1)/2 px) against aliasing when shrinking; outside
    the image the border is repeated ("edge") or black ("black").
    """
    img = to_uint8_rgb(image)
    mode = {"edge": cv2.BORDER_REPLICATE, "black": cv2.BORDER_CONSTANT}.get(border)
    if mode is None:
        raise ValueError(f"border must be 'edge' or 'black', got {border!r}")
    m = _crop_matrix(params, size)
    f = m[0, 0]
    sigma = max(0.0, (f - 1.0) / 2.0)
    if sigma > 0.3:  # blur only the source region the crop reads (plus the kernel's reach)
        cx, cy, side = (float(v) for v in params)
        reach = side / 2 + 4 * sigma + 2
        h, w = img.shape[:2]
        xa, xb = max(0, int(cx - reach)), min(w, int(np.ceil(cx + reach)))
        ya, yb = max(0, int(cy - reach)), min(h, int(np.ceil(cy + reach)))
        if xb - xa >= 2 and yb - ya >= 2:
            sub = cv2.GaussianBlur(img[ya:yb, xa:xb], (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REPLICATE)
            m = m.copy()
            m[:, 2] -= (xa, ya)
            img = sub
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(img, m, (size, size), flags=flags, borderMode=mode, borderValue=(0, 0, 0))


def crop_to_image_coords(points_Nx2: np.ndarray, params: Sequence[float], size: int) -> np.ndarray:
    """Map (…, 2+) crop pixel coordinates to image pixel coordinates (extra columns such as z scale too)."""
    cx, cy, side = (float(v) for v in params)
    s = side / size
    p = np.array(points_Nx2, np.float64) * s
    p[..., 0] += cx - side / 2
    p[..., 1] += cy - side / 2
    return p


def image_to_crop_coords(points_Nx2: np.ndarray, params: Sequence[float], size: int) -> np.ndarray:
    """Inverse of :func:`crop_to_image_coords`."""
    cx, cy, side = (float(v) for v in params)
    p = np.array(points_Nx2, np.float64)
    p[..., 0] -= cx - side / 2
    p[..., 1] -= cy - side / 2
    return p * (size / side)


def paste_crop(image: np.ndarray, crop: np.ndarray, params: Sequence[float], feather: float = 0.06) -> np.ndarray:
    """Paste a (generated) square crop back into the image, feathering the edge over ``feather``·size px."""
    img = to_uint8_rgb(image)
    crop = to_uint8_rgb(crop, name="crop")
    size = crop.shape[0]
    h, w = img.shape[:2]
    m = _crop_matrix(params, size)  # crop index → image index; warp the crop forward with it
    warped = cv2.warpAffine(crop, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    ramp = np.minimum(np.arange(size) + 0.5, size - 0.5 - np.arange(size)) / max(feather * size, 1e-6)
    ramp = np.clip(ramp, 0.0, 1.0).astype(np.float32)
    mask = cv2.warpAffine(np.outer(ramp, ramp), m, (w, h), flags=cv2.INTER_LINEAR)[..., None]
    out = img.astype(np.float32) * (1 - mask) + warped.astype(np.float32) * mask
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
