"""Face tracking, the one face crop, and per-frame control labels (VASA-1 §3.2 conditions, §4 data).

VASA-1 trains on face-cropped talking videos and conditions its motion generator on the main eye gaze
direction g (spherical angles), a normalized head-to-camera distance d and an emotion offset e (§3.2);
its metrics need head pose (ΔP, §4.2). This module gets all of them from MediaPipe Tasks' FaceLandmarker
(478 landmarks incl. iris, 52 blendshapes, 4×4 facial transformation matrix):

- :class:`FaceTracker` (IMAGE or VIDEO running mode) → :class:`FaceObservation` per face, largest first.
- :func:`load_image` / :func:`find_faces` / :func:`track_image`: any photo (faces down to ``MIN_FACE_PX``, a
  tile search when the whole image shows none), one face picked, one-line ``UserError``\\ s.
- The crop, shared by data preparation and inference: :class:`CropConfig`, :func:`crop_params`,
  :func:`smooth_crops`, :func:`apply_crop`, :func:`crop_to_image_coords` / :func:`image_to_crop_coords`,
  :func:`paste_crop`. Axis-aligned square crops (head roll stays in the image, as in VoxCeleb), sized from
  rotation-invariant face measures as in the FFHQ alignment (Karras et al. 2019).
- Labels: :func:`frame_labels` (pose, gaze, distance, blendshapes, crop landmarks) and :func:`clip_labels`
  (stacked per-frame labels and the emotion offset = clip mean of the blendshapes; VASA-1 used HSEmotion
  coefficients, any labeler that gives a per-frame vector can replace the blendshapes).

Coordinates: image pixels are continuous with pixel (i, j) covering [j, j+1) × [i, i+1), i.e. MediaPipe's
normalized coordinates times the width/height. Camera space (the landmarker's matrix): x right, y up,
z towards the viewer, centimetres; the canonical head (``modelfiles.canonical_mesh``) faces +z.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import pathlib
import threading
import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np
import PIL.Image
import PIL.ImageOps
from scipy import ndimage

from vasajax import modelfiles
from vasajax.errors import UserError

ASSETS = pathlib.Path(__file__).parent / "assets"
PORTRAITS = {"astronaut": ASSETS / "astronaut.png", "grace_hopper": ASSETS / "grace_hopper.jpg"}
MIN_IMAGE_SIDE = 64
NUM_LANDMARKS = 478
NUM_BLENDSHAPES = 52
POSE_NAMES = ("yaw", "pitch", "roll", "tx", "ty", "tz")
BLENDSHAPE_NAMES: tuple[str, ...] = tuple(
    """
    _neutral browDownLeft browDownRight browInnerUp browOuterUpLeft browOuterUpRight cheekPuff
    cheekSquintLeft cheekSquintRight eyeBlinkLeft eyeBlinkRight eyeLookDownLeft eyeLookDownRight
    eyeLookInLeft eyeLookInRight eyeLookOutLeft eyeLookOutRight eyeLookUpLeft eyeLookUpRight
    eyeSquintLeft eyeSquintRight eyeWideLeft eyeWideRight jawForward jawLeft jawOpen jawRight mouthClose
    mouthDimpleLeft mouthDimpleRight mouthFrownLeft mouthFrownRight mouthFunnel mouthLeft
    mouthLowerDownLeft mouthLowerDownRight mouthPressLeft mouthPressRight mouthPucker mouthRight
    mouthRollLower mouthRollUpper mouthShrugLower mouthShrugUpper mouthSmileLeft mouthSmileRight
    mouthStretchLeft mouthStretchRight mouthUpperUpLeft mouthUpperUpRight noseSneerLeft noseSneerRight
    """.split()
)
"""Names of the 52 blendshape scores, in MediaPipe's output order."""

# Landmark ids (MediaPipe face mesh). "Right" = the subject's right eye, which appears on the image's left.
RIGHT_EYE = {"outer": 33, "inner": 133, "upper": 159, "lower": 145, "iris": 468}
LEFT_EYE = {"outer": 263, "inner": 362, "upper": 386, "lower": 374, "iris": 473}
MOUTH_CORNERS = (61, 291)
# Iris offset (in half eye widths) → eyeball rotation: offset·(half fissure ≈ 15 mm) / (eyeball radius 12 mm).
GAZE_GAIN = 1.25


# --- images ----------------------------------------------------------------------------------------------


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


# --- tracker ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FaceObservation:
    """One detected face.

    Attributes:
        landmarks: (478, 3) float32 pixels; x, y in the image, z relative depth scaled like x
            (smaller = nearer).
            0-467 follow the canonical mesh, 468-472 right iris (centre first), 473-477 left iris.
        blendshapes: (52,) float32 ARKit-style scores in [0, 1] (names in ``BLENDSHAPE_NAMES``).
        matrix: (4, 4) float32 canonical head → camera space (x right, y up, z to viewer, cm).
        box: (x0, y0, x1, y1) landmark bounding box in pixels.
        image_hw: (height, width) of the image the face was found in.
    """

    landmarks: np.ndarray
    blendshapes: np.ndarray
    matrix: np.ndarray
    box: tuple[float, float, float, float]
    image_hw: tuple[int, int]

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return (x1 - x0) * (y1 - y0)


class MediaPipeHang(UserError):
    """A MediaPipe call did not return in time (its thread is abandoned; the tracker is unusable)."""


def _guarded(fn: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Run ``fn`` in a daemon thread; a hang (a damaged model can hang MediaPipe) becomes a UserError.

    MediaPipe ≥ 0.10.30 calls its C API through ctypes, which releases the GIL, so the wait can time out.
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=run, daemon=True, name="vasajax-mediapipe")
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise MediaPipeHang(
            f"MediaPipe {what} did not finish within {timeout_s:g} s; the model file may be damaged: "
            f"delete it and {modelfiles.FETCH_HINT}"
        )
    if "error" in box:
        raise box["error"]
    return box["value"]


_LIVE_TRACKERS: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_live_trackers() -> None:
    """Close trackers the caller forgot, before interpreter teardown makes MediaPipe's finalizer fail noisily."""
    for tracker in list(_LIVE_TRACKERS):
        try:
            tracker.close()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


class FaceTracker:
    """MediaPipe FaceLandmarker wrapper; use as ``with FaceTracker() as ft: faces = ft.detect(img)``.

    Args:
        model_path: a ``face_landmarker.task``; default: ``$VASAJAX_FACE_LANDMARKER`` or the user cache (never
            downloads; see :mod:`vasajax.modelfiles`).
        mode: "image" (independent images) or "video" (frames in time order; tracks between frames, faster).
            Video mode follows the face from the previous frame: after a shot cut or a jump of tens of pixels
            its first frame can be off by many pixels or miss the face. Call :meth:`reset` at cuts.
        max_faces: most faces returned per image.
        min_confidence: detection / presence / tracking threshold.
        fps: frame rate used to invent timestamps in video mode when ``detect`` gets none.
        timeout_s: limit for creating the landmarker and for each call.
    """

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        *,
        mode: str = "image",
        max_faces: int = 4,
        min_confidence: float = 0.5,
        fps: float = 25.0,
        timeout_s: float = 60.0,
    ):
        if mode not in ("image", "video"):
            raise ValueError(f"mode must be 'image' or 'video', got {mode!r}")
        self.mode, self.fps, self.timeout_s = mode, fps, timeout_s
        self.model_path = modelfiles.face_landmarker_path(model_path)
        self._last_ts: int | None = None
        self._landmarker = None
        import mediapipe as mp  # deferred: importing mediapipe costs ~1 s
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions

        self._mp, self._vision = mp, vision
        running = vision.RunningMode.VIDEO if mode == "video" else vision.RunningMode.IMAGE
        self._options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.model_path)),
            running_mode=running,
            num_faces=max_faces,
            min_face_detection_confidence=min_confidence,
            min_face_presence_confidence=min_confidence,
            min_tracking_confidence=min_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        self._landmarker = self._create()
        _LIVE_TRACKERS.add(self)

    def _create(self) -> Any:
        create = self._vision.FaceLandmarker.create_from_options
        try:
            return _guarded(lambda: create(self._options), self.timeout_s, "model loading")
        except (RuntimeError, ValueError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserError(f"cannot load {self.model_path} ({msg}); delete it and {modelfiles.FETCH_HINT}") from e

    def reset(self) -> None:
        """Forget the tracked face (video mode: call at shot cuts); timestamps may start again from 0."""
        self.close()
        self._last_ts = None
        self._landmarker = self._create()

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass

    def close(self) -> None:
        """Release MediaPipe's graph (idempotent). Not thread-guarded: it also runs from ``__del__`` at
        interpreter exit, when no thread can start; a tracker whose call hung is abandoned, never closed."""
        lm, self._landmarker = self._landmarker, None
        if lm is not None:
            lm.close()

    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return _guarded(fn, self.timeout_s, "detection")
        except MediaPipeHang:
            self._landmarker = None  # closing a hung graph would hang too
            raise

    def detect(self, image_uint8_HxWx3: np.ndarray, timestamp_ms: int | None = None) -> list[FaceObservation]:
        """Faces in one image, largest first. Video mode: timestamps increase; None = previous + 1/fps."""
        if self._landmarker is None:
            raise RuntimeError("FaceTracker is closed")
        img = to_uint8_rgb(image_uint8_HxWx3)
        h, w = img.shape[:2]
        mp_image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=img)
        lm = self._landmarker
        if self.mode == "video":
            if timestamp_ms is None:
                step = max(1, round(1000.0 / self.fps))
                timestamp_ms = 0 if self._last_ts is None else self._last_ts + step
            timestamp_ms = int(timestamp_ms)
            if self._last_ts is not None and timestamp_ms <= self._last_ts:
                raise ValueError(f"video timestamps must increase: {timestamp_ms} ms after {self._last_ts} ms")
            self._last_ts = timestamp_ms
            result = self._call(lambda: lm.detect_for_video(mp_image, timestamp_ms))
        else:
            result = self._call(lambda: lm.detect(mp_image))
        faces = []
        for k, pts in enumerate(result.face_landmarks):
            xyz = np.array([(p.x, p.y, p.z) for p in pts], np.float32) * np.array([w, h, w], np.float32)
            bs = np.array([c.score for c in result.face_blendshapes[k]], np.float32)
            mat = np.asarray(result.facial_transformation_matrixes[k], np.float32).reshape(4, 4)
            (x0, y0), (x1, y1) = xyz[:, :2].min(0), xyz[:, :2].max(0)
            box = (float(x0), float(y0), float(x1), float(y1))
            faces.append(FaceObservation(landmarks=xyz, blendshapes=bs, matrix=mat, box=box, image_hw=(h, w)))
        return sorted(faces, key=lambda f: -f.area)


MIN_FACE_PX = 64
"""Smallest face (landmark box side, pixels) :func:`find_faces` looks for when the whole-image look finds none."""


def _shift(obs: FaceObservation, dx: float, dy: float, image_hw: tuple[int, int]) -> FaceObservation:
    """An observation made in a window at (dx, dy) of a larger image, in that image's pixels. The matrix stays
    the window's (its camera model is the window's; pose angles are unaffected, translation is approximate)."""
    lm = obs.landmarks + np.array([dx, dy, 0.0], np.float32)
    x0, y0, x1, y1 = obs.box
    box = (x0 + dx, y0 + dy, x1 + dx, y1 + dy)
    return FaceObservation(landmarks=lm, blendshapes=obs.blendshapes, matrix=obs.matrix, box=box, image_hw=image_hw)


def _starts(length: int, side: int) -> list[int]:
    """Window starts covering ``length`` with windows of ``side`` at half-window steps (the last flush right)."""
    if length <= side:
        return [0]
    starts = list(range(0, length - side, side // 2))
    return starts + [length - side]


def _overlaps(a: FaceObservation, b: FaceObservation) -> bool:
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a.box, b.box
    iw, ih = max(0.0, min(ax1, bx1) - max(ax0, bx0)), max(0.0, min(ay1, by1) - max(ay0, by0))
    return iw * ih > 0.3 * min(a.area, b.area)


def _merge(faces: list[FaceObservation]) -> list[FaceObservation]:
    """Largest first, dropping each face that overlaps a larger one already kept."""
    kept: list[FaceObservation] = []
    for f in sorted(faces, key=lambda f: -f.area):
        if not any(_overlaps(f, g) for g in kept):
            kept.append(f)
    return kept


def _refine(tracker: FaceTracker, image: np.ndarray, obs: FaceObservation) -> FaceObservation:
    """Look again on a square window 3× the face around it: the face then fills the detector's view, as in a
    portrait, and a face cut by a tile border is seen whole. Keeps ``obs`` if the second look misses it."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = obs.box
    side = int(min(max(h, w), 3 * max(x1 - x0, y1 - y0)))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    wx, wy = int(np.clip(cx - side / 2, 0, max(0, w - side))), int(np.clip(cy - side / 2, 0, max(0, h - side)))
    faces = [
        _shift(f, wx, wy, (h, w)) for f in tracker.detect(np.ascontiguousarray(image[wy : wy + side, wx : wx + side]))
    ]
    hits = [f for f in faces if _overlaps(f, obs)]
    return max(hits, key=lambda f: f.area) if hits else obs


def find_faces(
    image: np.ndarray, *, tracker: FaceTracker | None = None, min_face_px: int = MIN_FACE_PX
) -> list[FaceObservation]:
    """Every face in a photo, largest first, in the photo's pixels.

    MediaPipe's detector sees a downscaled copy of its input and misses faces smaller than about a fifth of
    it, so a group photo or a wide shot finds nothing. When the whole image yields no face, the search looks at
    overlapping square tiles (half-tile steps) of decreasing size — half the short side, then halving — down to
    tiles of ``5 × min_face_px``, stopping at the first size that finds a face; each face found is looked at
    again on a window three times its size (:func:`_refine`) and duplicates from overlapping tiles are merged.
    Cost: one detection for a portrait; a few hundred small ones for a 4K photo with one 64 px face.
    """
    img = to_uint8_rgb(image)
    if tracker is None:
        with FaceTracker(mode="image") as own:
            return find_faces(img, tracker=own, min_face_px=min_face_px)
    if tracker.mode != "image":
        raise ValueError("find_faces needs an image-mode tracker")
    faces = tracker.detect(img)
    h, w = img.shape[:2]
    side = min(h, w) // 2
    smallest = 5 * int(min_face_px)
    while not faces and side >= MIN_IMAGE_SIDE:
        found: list[FaceObservation] = []
        for y in _starts(h, side):
            for x in _starts(w, side):
                found += [
                    _shift(f, x, y, (h, w))
                    for f in tracker.detect(np.ascontiguousarray(img[y : y + side, x : x + side]))
                ]
        # Overlapping tiles see a face up to four times: merge, refine each face once, merge what refining joined.
        faces = _merge([_refine(tracker, img, f) for f in _merge(found)])
        if side <= smallest:
            break
        side = max(side // 2, smallest)
    return sorted(faces, key=lambda f: -f.area)


def track_image(
    image_or_path: np.ndarray | str | os.PathLike, *, tracker: FaceTracker | None = None, face: int = 0
) -> FaceObservation:
    """One face of a photo (:func:`find_faces`): the largest, or the ``face``-th largest (0 = the largest).

    Several faces → a warning that numbers them (largest first) and says how to pick another; no face or a
    ``face`` number out of range → a one-line UserError."""
    if isinstance(image_or_path, np.ndarray):
        name, image = "the given image", to_uint8_rgb(image_or_path, min_side=MIN_IMAGE_SIDE)
    else:
        name, image = str(image_or_path), load_image(image_or_path)
    faces = find_faces(image, tracker=tracker)
    if not faces:
        raise UserError(
            f"no face found in {name}; use a photo with a clearly visible, roughly frontal face of at least "
            f"{MIN_FACE_PX} px"
        )
    if not 0 <= face < len(faces):
        raise UserError(f"{name} has {len(faces)} face(s), numbered 0..{len(faces) - 1} largest first; no face {face}")
    if len(faces) > 1:
        where = ", ".join(f"{k}: {_describe(f)}" for k, f in enumerate(faces))
        warnings.warn(
            f"{len(faces)} faces in {name} ({where}); using face {face}; choose another with --face N",
            stacklevel=2,
        )
    return faces[face]


def _describe(f: FaceObservation) -> str:
    x0, y0, x1, y1 = f.box
    return f"{round(x1 - x0)} px at ({round((x0 + x1) / 2)}, {round((y0 + y1) / 2)})"


# --- the crop ----------------------------------------------------------------------------------------------


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


def _eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(…, 3) midpoints of each eye's corners: (subject's right = image left, subject's left)."""
    r = 0.5 * (landmarks[..., RIGHT_EYE["outer"], :] + landmarks[..., RIGHT_EYE["inner"], :])
    l = 0.5 * (landmarks[..., LEFT_EYE["outer"], :] + landmarks[..., LEFT_EYE["inner"], :])
    return r, l


def crop_params(landmarks: np.ndarray, cfg: CropConfig = CropConfig()) -> np.ndarray:  # noqa: B008
    """(cx, cy, side) in image pixels from (…, 478, 3) landmarks → (…, 3) float64 (leading dims kept)."""
    pts = np.asarray(landmarks, np.float64)[..., :2]
    eye_r, eye_l = _eye_centres(pts)
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


# --- labels ------------------------------------------------------------------------------------------------


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
    eye_r, eye_l = _eye_centres(pts)
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
    eye_r, eye_l = _eye_centres(np.asarray(landmarks, np.float64))
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
