"""The MediaPipe FaceLandmarker wrapper and finding faces in any photo.

:class:`FaceTracker` (IMAGE or VIDEO running mode) → :class:`FaceObservation` per face, largest first;
:func:`find_faces` (a tile search for small faces when the whole image shows none) and :func:`track_image`
(one face of a photo, one-line ``UserError``\\ s). Every MediaPipe call runs under a timeout (:func:`_guarded`):
a damaged model file can hang it. MediaPipe is imported when the first tracker is made (it costs ~1 s).
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import threading
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from vasajax import modelfiles
from vasajax.errors import UserError
from vasajax.image import MIN_IMAGE_SIDE, load_image, to_uint8_rgb


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
