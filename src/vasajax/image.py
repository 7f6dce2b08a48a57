"""Reading images: a photo file or an array → uint8 H×W×3 RGB; the bundled sample portraits.

:func:`load_image` reads a file (EXIF-rotated upright; grayscale, alpha, palette, CMYK and 16-bit handled) and
:func:`to_uint8_rgb` converts an array; both raise one-line ``UserError``\\ s. ``PORTRAITS`` are the bundled
public-domain photos (``assets/PROVENANCE.md``).
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import PIL.Image
import PIL.ImageOps

from vasajax.errors import UserError

ASSETS = pathlib.Path(__file__).parent / "assets"
PORTRAITS = {"astronaut": ASSETS / "astronaut.png", "grace_hopper": ASSETS / "grace_hopper.jpg"}
MIN_IMAGE_SIDE = 64


def to_uint8_rgb(image: np.ndarray, name: str = "image", min_side: int = 0) -> np.ndarray:
    """uint8 H×W×3 RGB from uint8/uint16/float (in [0, 1]) arrays that are H×W, H×W×1, H×W×3 or H×W×4.

    Raises a UserError for other shapes, or when a side is under ``min_side`` pixels.
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise UserError(f"{name} has shape {a.shape}; expected an H×W×3 RGB image")
    a = a[..., :3]
    if a.dtype == np.uint16:
        a = (a.astype(np.float32) / 257.0).round()
    elif a.dtype.kind == "f":
        a = np.clip(a, 0.0, 1.0) * 255.0 + 0.5
    elif a.dtype.kind in "b":
        a = a * 255
    if min(a.shape[:2]) < min_side:
        raise UserError(f"{name} is {a.shape[1]}×{a.shape[0]} px; use a portrait of at least {min_side} px")
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)


def _pil_to_rgb(im: PIL.Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit / 32-bit grayscale
        a = np.asarray(im, dtype=np.float64)
        hi = 1.0 if im.mode == "F" and a.max() <= 1.0 else (65535.0 if a.max() > 255 else 255.0)
        a = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=-1)
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in (
        "RGBA",
        "LA",
        "PA",
        "RGBa",
        "La",
    ):  # composite over white: transparent portraits stay clean
        im = im.convert("RGBA")
        bg = PIL.Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = PIL.Image.alpha_composite(bg, im)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 H×W×3 RGB, EXIF-rotated upright.

    Handles grayscale, RGBA/LA (composited over white), palette, CMYK, 16-bit. Raises a one-line
    ``UserError`` for a missing, corrupt or non-image file, or one smaller than 64 px.
    """
    p = pathlib.Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"image not found: {p}")
    try:
        with PIL.Image.open(p) as im:
            im.load()
            im = PIL.ImageOps.exif_transpose(im) or im
            rgb = _pil_to_rgb(im)
    except PIL.Image.DecompressionBombError as e:
        raise UserError(f"{p} is too large to be a photo ({e}); resize it below 50 megapixels") from e
    except Exception as e:  # noqa: BLE001 - Pillow raises many types for damaged files
        raise UserError(f"cannot read {p} as an image ({type(e).__name__}); use a PNG or JPEG photo") from e
    return to_uint8_rgb(rgb, name=str(p), min_side=MIN_IMAGE_SIDE)
