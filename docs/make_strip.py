"""Write a frame strip (PNG) of a video: ``python docs/make_strip.py out/demo.mp4 docs/demo_strip.png [N]``.

Used for the README's picture of ``make demo``. Top row: N frames evenly spaced over the video, side by side.
Bottom row: the mouth of 2·N *consecutive* frames (from the loudest stretch of the clip's speech, zoomed), so
a reader sees whether the lips open and close with the syllables, not only whether the face looks right. The
mouth box comes from MediaPipe's lip landmarks on the middle frame; the printed per-frame mouth opening (inner-lip
gap / eye-corner distance, tracked on every frame) is the number behind the picture.
"""

import sys

import numpy as np
from PIL import Image

from vasajax.data.loader import LIP_LANDMARKS
from vasajax.facetrack.landmarks import mouth_opening
from vasajax.eval.report import read_video
from vasajax.facetrack.tracker import FaceTracker


def _mouth_row(frames: np.ndarray, tracker: FaceTracker, count: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` consecutive mouth crops (one row, ``width`` px wide) from where the mouth moves most."""
    opening = np.full(len(frames), np.nan, np.float32)
    for i, frame in enumerate(frames):
        faces = tracker.detect(frame)
        if faces:
            opening[i] = float(mouth_opening(faces[0].landmarks[None])[0])
    filled = np.nan_to_num(opening, nan=float(np.nanmean(opening)) if np.isfinite(opening).any() else 0.0)
    spread = [np.std(filled[s : s + count]) for s in range(max(1, len(frames) - count + 1))]
    start = int(np.argmax(spread))
    ref = tracker.detect(frames[min(start + count // 2, len(frames) - 1)])
    if not ref:  # no face to locate the mouth: fall back to the lower-middle of the frame
        h, w = frames.shape[1:3]
        x0, y0, x1, y1 = 0.3 * w, 0.55 * h, 0.7 * w, 0.85 * h
    else:
        lips = ref[0].landmarks[list(LIP_LANDMARKS), :2]
        (x0, y0), (x1, y1) = lips.min(0), lips.max(0)
        cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.85 * (x1 - x0)
        x0, x1, y0, y1 = cx - half, cx + half, cy - 0.6 * half, cy + 0.6 * half
    cell = width // count
    crops = [
        np.asarray(Image.fromarray(f).crop((int(x0), int(y0), int(x1), int(y1))).resize((cell, int(cell * 0.6))))
        for f in frames[start : start + count]
    ]
    return np.concatenate(crops, axis=1), opening[start : start + count]


def main(src: str, dst: str, n: int = 8) -> None:
    frames, _ = read_video(src)
    idx = np.linspace(0, len(frames) - 1, n).round().astype(int)
    top = np.concatenate([frames[i] for i in idx], axis=1)
    with FaceTracker(mode="video") as tracker:
        mouths, opening = _mouth_row(frames, tracker, min(2 * n, len(frames)), top.shape[1])
    pad = np.full((mouths.shape[0], top.shape[1] - mouths.shape[1], 3), 255, np.uint8)
    Image.fromarray(np.concatenate([top, np.concatenate([mouths, pad], axis=1)], axis=0)).save(dst, optimize=True)
    print(f"wrote {dst}: frames {idx.tolist()} of {len(frames)}; mouth row opening {np.round(opening, 3).tolist()}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 8)
