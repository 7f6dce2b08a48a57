"""Face tracking benchmark: MediaPipe FaceLandmarker ms per image (IMAGE and VIDEO mode) and the label path.

    python benchmarks/facetrack.py                # on this machine, ~20 s
    python benchmarks/facetrack.py --frames 200   # longer runs, steadier medians

Times ``FaceTracker.detect`` on the bundled portraits (IMAGE mode: every image detected from scratch; VIDEO
mode: a synthetic clip of the astronaut drifting a few pixels per frame, so the landmarker tracks between
frames), tracker start-up, the per-frame data-preparation path (crop params + 256² crop + labels), and
``find_faces`` on photos where the whole-image look finds nothing: a 1280×886 group photo of six ~150 px faces,
a 3840×2160 photo with one ~60 px face, and the same 4K photo with no face (the full tile search).
Prints a table and writes ``benchmarks/results/facetrack-<device>-<date>.json``. MediaPipe runs on the CPU
(XNNPACK) whatever accelerator JAX sees, so the device name is the CPU's.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from vasajax.facetrack.crop import CropConfig, apply_crop, crop_params  # noqa: E402
from vasajax.facetrack.labels import frame_labels  # noqa: E402
from vasajax.facetrack.tracker import FaceTracker, find_faces  # noqa: E402
from vasajax.image import PORTRAITS, load_image  # noqa: E402


def device_name() -> str:
    return f"cpu-{os.cpu_count()}core-{platform.machine()}"


def timed_ms(fn, n: int) -> dict[str, float]:
    """Median / p90 / mean milliseconds of ``n`` calls of ``fn`` (after one warm-up call)."""
    fn()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    return {
        "median_ms": statistics.median(ts),
        "p90_ms": ts[int(0.9 * (n - 1))],
        "mean_ms": statistics.fmean(ts),
    }


def drifting_clip(image: np.ndarray, n: int) -> list[np.ndarray]:
    """The image translated by (1.5, 0.75) px per frame (wrapping back every 40 frames)."""
    h, w = image.shape[:2]
    out = []
    for i in range(n):
        k = i % 40
        m = np.array([[1.0, 0, 1.5 * k], [0, 1.0, 0.75 * k]])
        out.append(cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REPLICATE))
    return out


def group_photo(portraits: dict[str, np.ndarray]) -> np.ndarray:
    """1280×886: a 3×2 grid of the bundled portraits shrunk so that each face is about 150 px."""
    canvas = np.random.default_rng(0).integers(150, 210, (886, 1280, 3), dtype=np.uint8)
    small = [cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) for img, f in
             ((portraits["astronaut"], 0.75), (portraits["grace_hopper"], 0.5))]  # fmt: skip
    for k in range(6):
        img = small[k % 2][:400, :400]
        y, x = 20 + 440 * (k // 3), 13 + 427 * (k % 3)
        canvas[y : y + img.shape[0], x : x + img.shape[1]] = img[: 886 - y, : 1280 - x]
    return canvas


def wide_shot(portraits: dict[str, np.ndarray], face: bool) -> np.ndarray:
    """3840×2160 grey, with (``face``) Grace Hopper shrunk to a ~60 px face near the lower right."""
    canvas = np.full((2160, 3840, 3), 120, np.uint8)
    if face:
        img = cv2.resize(portraits["grace_hopper"], None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
        canvas[1500 : 1500 + img.shape[0], 3000 : 3000 + img.shape[1]] = img
    return canvas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100, help="timed calls per measurement")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/facetrack-<device>-<date>)")
    args = ap.parse_args()
    n = args.frames
    portraits = {name: load_image(path) for name, path in PORTRAITS.items()}
    results: dict[str, dict] = {}

    t0 = time.perf_counter()
    with FaceTracker(mode="image", max_faces=4) as tracker:
        results["startup_image_mode_incl_mediapipe_import"] = {"ms": (time.perf_counter() - t0) * 1e3}
        for name, img in portraits.items():
            r = timed_ms(lambda img=img: tracker.detect(img), n)
            results[f"image_mode/{name}_{img.shape[1]}x{img.shape[0]}"] = r
        img = portraits["astronaut"]
        obs = tracker.detect(img)[0]
        cfg = CropConfig.small()

        def prep_frame():
            p = crop_params(obs.landmarks, cfg)
            apply_crop(img, p, cfg.size)
            frame_labels(obs, p)

        results["labels+crop_256/astronaut"] = timed_ms(prep_frame, n)
    with FaceTracker(mode="image", max_faces=1) as tracker:
        results["image_mode_max1/astronaut_512x512"] = timed_ms(lambda: tracker.detect(portraits["astronaut"]), n)

    with FaceTracker(mode="image") as tracker:
        photos = {
            "group_1280x886_6faces": group_photo(portraits),
            "wide_3840x2160_1face": wide_shot(portraits, True),
            "wide_3840x2160_nofaces": wide_shot(portraits, False),
        }
        for name, photo in photos.items():
            r = timed_ms(lambda photo=photo: find_faces(photo, tracker=tracker), max(3, n // 20))
            r["faces"] = len(find_faces(photo, tracker=tracker))
            results[f"find_faces/{name}"] = r

    clip = drifting_clip(portraits["astronaut"], n + 1)
    for max_faces in (1, 4):
        with FaceTracker(mode="video", max_faces=max_faces) as video:
            frames = iter(clip)
            r = timed_ms(lambda video=video, frames=frames: video.detect(next(frames)), n)
            results[f"video_mode_max{max_faces}/astronaut_512x512_drifting"] = r

    print(f"{'measurement':<48} {'median ms':>10} {'p90 ms':>8}")
    for k, v in results.items():
        med = v.get("median_ms", v.get("ms"))
        print(f"{k:<48} {med:>10.2f} {v.get('p90_ms', float('nan')):>8.2f}")
    import mediapipe

    date = datetime.date.today().isoformat()
    out = pathlib.Path(args.out or pathlib.Path(__file__).parent / "results" / f"facetrack-{device_name()}-{date}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "device": device_name(),
        "date": date,
        "mediapipe": mediapipe.__version__,
        "python": platform.python_version(),
        "frames_per_measurement": n,
        "note": "MediaPipe FaceLandmarker (XNNPACK, CPU); shared machine, other jobs may add noise",
    }
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
