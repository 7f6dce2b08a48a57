"""Face tracking on the bundled portraits, robust image loading, the shared crop, and label conventions."""

import subprocess
import sys
import time
import warnings

import cv2
import numpy as np
import PIL.Image
import pytest

from vasajax import modelfiles
from vasajax.errors import UserError
from vasajax.facetrack.crop import (
    CropConfig,
    apply_crop,
    crop_params,
    crop_to_image_coords,
    image_to_crop_coords,
    paste_crop,
    smooth_crops,
)
from vasajax.facetrack.labels import clip_labels, frame_labels, gaze_from_landmarks, pose_from_matrix
from vasajax.facetrack.landmarks import BLENDSHAPE_NAMES, LEFT_EYE, RIGHT_EYE, eye_centres
from vasajax.facetrack.tracker import FaceTracker, MediaPipeHang, _guarded, find_faces, track_image
from vasajax.image import PORTRAITS, load_image

# Generous face regions (x0, y0, x1, y1) drawn by hand on the bundled portraits.
FACE_REGION = {"astronaut": (150, 40, 310, 210), "grace_hopper": (140, 100, 390, 370)}


@pytest.fixture(scope="module")
def model():
    try:
        return modelfiles.face_landmarker_path()
    except UserError:
        pytest.skip("face_landmarker.task is not cached; run `make models` first")


@pytest.fixture(scope="module")
def tracker(model):
    with FaceTracker(mode="image") as t:
        yield t


@pytest.fixture(scope="module")
def astronaut():
    return load_image(PORTRAITS["astronaut"])


@pytest.fixture(scope="module")
def astronaut_obs(tracker, astronaut):
    return track_image(astronaut, tracker=tracker)


def _rotate(img, degrees):
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)  # positive = counter-clockwise
    return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE)


def _head(name, scale=1.0):
    """The bundled portrait's head and shoulders (a generous box around its face), scaled."""
    img = load_image(PORTRAITS[name])
    x0, y0, x1, y1 = FACE_REGION[name]
    pad = (x1 - x0) // 2
    head = img[max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad]
    return cv2.resize(head, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


# --- tracking ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_landmarks_on_bundled_portraits(tracker, name):
    obs = track_image(PORTRAITS[name], tracker=tracker)
    assert obs.landmarks.shape == (478, 3) and obs.landmarks.dtype == np.float32
    assert np.isfinite(obs.landmarks).all()
    x0, y0, x1, y1 = obs.box
    rx0, ry0, rx1, ry1 = FACE_REGION[name]
    assert rx0 <= x0 < x1 <= rx1 and ry0 <= y0 < y1 <= ry1, obs.box
    assert x1 - x0 > 0.4 * (rx1 - rx0) and y1 - y0 > 0.4 * (ry1 - ry0)
    for eye in (RIGHT_EYE, LEFT_EYE):  # iris centre between its eye's corners
        xs = sorted(obs.landmarks[[eye["outer"], eye["inner"]], 0])
        assert xs[0] < obs.landmarks[eye["iris"], 0] < xs[1]
    assert obs.landmarks[RIGHT_EYE["iris"], 0] < obs.landmarks[LEFT_EYE["iris"], 0]  # subject's right = left
    assert obs.blendshapes.shape == (52,) and 0 <= obs.blendshapes.min() and obs.blendshapes.max() <= 1
    assert len(BLENDSHAPE_NAMES) == 52
    np.testing.assert_allclose(obs.matrix[3], [0, 0, 0, 1], atol=1e-6)
    r = obs.matrix[:3, :3]
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=2e-2)
    assert obs.matrix[2, 3] < -20  # the head is in front of the camera (−z), tens of cm away


def test_no_face_gives_one_line_user_error(tracker, tmp_path):
    flat = tmp_path / "flat.png"
    PIL.Image.fromarray(np.full((128, 160, 3), 90, np.uint8)).save(flat)
    with pytest.raises(UserError, match="no face found in .*flat.png") as e:
        track_image(flat, tracker=tracker)
    assert "\n" not in str(e.value)
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    assert tracker.detect(noise) == []
    assert tracker.detect(np.zeros((20, 30, 3), np.uint8)) == []  # tiny frames: no face, not an error


def test_several_faces_warn_and_the_largest_wins(tracker, astronaut):
    hopper = cv2.resize(load_image(PORTRAITS["grace_hopper"]), (256, 300), interpolation=cv2.INTER_AREA)
    canvas = np.full((512, 512 + 256, 3), 200, np.uint8)
    canvas[:, :512] = astronaut
    canvas[100:400, 512:] = hopper
    with pytest.warns(UserWarning, match="2 faces"):
        obs = track_image(canvas, tracker=tracker)
    assert obs.box[2] < 512  # the astronaut's face (larger here) is the one returned


def test_video_mode_and_timestamps(model, astronaut):
    with FaceTracker(mode="video", max_faces=1) as video:
        first = video.detect(astronaut)
        second = video.detect(astronaut)  # auto timestamp: previous + 40 ms
        assert len(first) == len(second) == 1
        np.testing.assert_allclose(first[0].landmarks[:, :2], second[0].landmarks[:, :2], atol=3.0)
        with pytest.raises(ValueError, match="increase"):
            video.detect(astronaut, timestamp_ms=10)
        # a cut: the face jumps 80 px; video mode follows the old position, a reset re-detects
        jumped = np.ascontiguousarray(np.roll(astronaut, 80, axis=1))
        with FaceTracker(mode="image", max_faces=1) as still:
            expect = still.detect(jumped)[0].landmarks[:, :2]
        video.reset()
        after = video.detect(jumped, timestamp_ms=0)
        assert np.abs(after[0].landmarks[:, :2] - expect).mean() < 0.5
    with pytest.raises(RuntimeError, match="closed"):
        video.detect(astronaut)


def test_damaged_model_and_hangs_become_user_errors(tmp_path):
    bad = tmp_path / "face_landmarker.task"
    bad.write_bytes(b"PK\x03\x04" + b"\0" * 1000)
    with pytest.raises(UserError, match="sha256"):
        FaceTracker(model_path=bad)
    t0 = time.perf_counter()
    with pytest.raises(UserError, match="did not finish within 0.2 s"):
        _guarded(lambda: time.sleep(3), 0.2, "detection")
    assert time.perf_counter() - t0 < 1.0
    with pytest.raises(KeyError):  # errors inside the guarded call surface unchanged
        _guarded(lambda: {}["x"], 1.0, "detection")


def test_hung_detection_abandons_the_tracker(model, astronaut):
    tracker = FaceTracker()
    real, tracker.timeout_s = tracker._landmarker, 0.2

    class Hanging:
        def detect(self, image):
            time.sleep(2)

    tracker._landmarker = Hanging()
    with pytest.raises(MediaPipeHang, match="did not finish"):
        tracker.detect(astronaut)
    with pytest.raises(RuntimeError, match="closed"):
        tracker.detect(astronaut)
    tracker.close()  # a no-op now: never touches the hung graph
    real.close()


def test_unclosed_tracker_exits_cleanly(model, tmp_path):
    script = tmp_path / "forget_close.py"
    script.write_text(
        "import numpy as np\n"
        "from vasajax.facetrack.tracker import FaceTracker\n"
        "from vasajax.image import PORTRAITS, load_image\n"
        "t = FaceTracker()\n"
        "print(len(t.detect(load_image(PORTRAITS['astronaut']))))\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "1", proc.stderr[-2000:]
    assert "Exception ignored" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]


# --- loading images ----------------------------------------------------------------------------------------


def test_odd_colour_modes_load(tmp_path, astronaut):
    gray = np.asarray(PIL.Image.fromarray(astronaut).convert("L"))
    cases = {
        "gray.png": PIL.Image.fromarray(gray),
        "la.png": PIL.Image.fromarray(astronaut).convert("LA"),
        "rgba.png": PIL.Image.fromarray(astronaut).convert("RGBA"),
        "palette.png": PIL.Image.fromarray(astronaut).convert("P"),
        "palette.gif": PIL.Image.fromarray(astronaut).convert("P"),
        "cmyk.jpg": PIL.Image.fromarray(astronaut).convert("CMYK"),
        "gray16.png": PIL.Image.fromarray(gray.astype(np.uint16) * 257),
    }
    for name, im in cases.items():
        im.save(tmp_path / name)
        out = load_image(tmp_path / name)
        assert out.shape == (512, 512, 3) and out.dtype == np.uint8, name
        ref = astronaut if name[:2] in ("rg", "pa", "cm") else np.repeat(gray[..., None], 3, -1)
        err = np.abs(out.astype(int) - ref).mean()
        assert err < (25 if name.startswith("palette") else 6), (name, err)  # palettes quantize colours
    np.testing.assert_array_equal(load_image(tmp_path / "gray16.png")[..., 0], gray)
    # transparent pixels are composited over white
    rgba = np.zeros((80, 80, 4), np.uint8)
    PIL.Image.fromarray(rgba).save(tmp_path / "clear.png")
    assert (load_image(tmp_path / "clear.png") == 255).all()


def test_exif_orientation_is_applied(tmp_path, astronaut):
    stored = PIL.Image.fromarray(astronaut[:, :400]).transpose(PIL.Image.Transpose.ROTATE_90)  # 400 wide → tall
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    stored.save(tmp_path / "rotated.png", exif=exif)
    np.testing.assert_array_equal(load_image(tmp_path / "rotated.png"), astronaut[:, :400])


def test_bad_files_give_one_line_user_errors(tmp_path, astronaut):
    (tmp_path / "notes.jpg").write_text("this is not an image")
    PIL.Image.fromarray(astronaut).save(tmp_path / "whole.png")
    (tmp_path / "truncated.png").write_bytes((tmp_path / "whole.png").read_bytes()[:20000])
    PIL.Image.fromarray(astronaut[:40, :300]).save(tmp_path / "small.png")
    for name, pattern in [
        ("notes.jpg", "cannot read"),
        ("truncated.png", "cannot read"),
        ("small.png", "at least 64 px"),
        ("missing.png", "not found"),
    ]:
        with pytest.raises(UserError, match=pattern) as e:
            load_image(tmp_path / name)
        assert "\n" not in str(e.value) and name in str(e.value)


# --- the crop ----------------------------------------------------------------------------------------------


def test_crop_coordinates_match_pixels():
    img = np.zeros((300, 400, 3), np.uint8)
    img[120, 250] = 255  # pixel (row 120, col 250) covers [250, 251) × [120, 121): centre (250.5, 120.5)
    for params, size in [((240.0, 130.0, 64.0), 128), ((255.0, 110.0, 300.0), 64)]:
        crop = apply_crop(img, params, size, border="black")
        w = crop[..., 0].astype(float)
        ys, xs = np.mgrid[:size, :size]
        centroid = np.array([(xs * w).sum(), (ys * w).sum()]) / w.sum() + 0.5  # pixel centres at +0.5
        expect = image_to_crop_coords(np.array([250.5, 120.5]), params, size)
        np.testing.assert_allclose(centroid, expect, atol=0.35)
        np.testing.assert_allclose(crop_to_image_coords(expect, params, size), [250.5, 120.5], atol=1e-9)


def test_crop_border_modes_and_paste_back(astronaut):
    params = (40.0, 60.0, 200.0)  # reaches past the top-left corner
    black = apply_crop(astronaut, params, 100, border="black")
    edge = apply_crop(astronaut, params, 100, border="edge")
    assert (black[:5, :5] == 0).all() and edge[:5, :5].mean() > 20
    np.testing.assert_allclose(black[60:, 60:], edge[60:, 60:], atol=1)
    inner = (256.0, 200.0, 160.0)
    crop = apply_crop(astronaut, inner, 160)  # 1:1 scale
    pasted = paste_crop(np.zeros_like(astronaut), crop, inner)
    np.testing.assert_allclose(pasted[140:260, 196:316], astronaut[140:260, 196:316], atol=1)
    assert (pasted[:100] == 0).all()


def test_crop_frames_the_face(astronaut_obs, astronaut):
    cfg = CropConfig.small()
    cx, cy, side = crop_params(astronaut_obs.landmarks, cfg)
    x0, y0, x1, y1 = astronaut_obs.box
    assert cx - side / 2 < x0 and x1 < cx + side / 2 and cy - side / 2 < y0 and y1 < cy + side / 2
    assert 1.8 < side / (x1 - x0) < 3.5  # face centred with hair, chin and some shoulders
    lab = frame_labels(astronaut_obs, (cx, cy, side))
    inside = lab["landmarks"][:, :2]
    assert 0.15 < inside.min() and inside.max() < 0.85
    # crop params work on stacked frames, and the same crop scales with the face
    stacked = crop_params(np.stack([astronaut_obs.landmarks, astronaut_obs.landmarks * 2]), cfg)
    np.testing.assert_allclose(stacked[1], stacked[0] * 2, rtol=1e-9)
    assert CropConfig.tiny().size < CropConfig.small().size < CropConfig.paper().size


def test_smooth_crops_keeps_drift_and_fills_gaps():
    t = np.arange(50, dtype=float)
    linear = np.stack([100 + 2 * t, 80 - t, 200 * np.exp(0.01 * t)], 1)  # side: smoothed in log space
    smooth = smooth_crops(linear, sigma_s=0.4)
    np.testing.assert_allclose(smooth, linear, rtol=1e-9)  # no lag, no bias at the ends
    holes = linear.copy()
    holes[[0, 10, 11, 12]] = np.nan
    filled = smooth_crops(holes, sigma_s=0.0)
    np.testing.assert_allclose(filled[1:], linear[1:], rtol=1e-12)  # gaps inside: linear interpolation
    np.testing.assert_allclose(filled[0], linear[1], rtol=1e-12)  # gaps at the ends: nearest face
    fixed = smooth_crops(linear, sigma_s=None)
    assert (fixed == fixed[0]).all() and np.allclose(fixed[0], np.median(linear, 0), rtol=1e-4)
    with pytest.raises(UserError):
        smooth_crops(np.full((5, 3), np.nan))


def test_smoothed_crop_jitter_on_synthetic_video(tracker, astronaut):
    rng = np.random.default_rng(0)
    n, velocity = 24, np.array([1.5, 0.75])  # px per frame
    params = []
    for i in range(n):
        m = np.array([[1.0, 0, velocity[0] * i], [0, 1.0, velocity[1] * i]])
        frame = cv2.warpAffine(astronaut, m, (512, 512), borderMode=cv2.BORDER_REPLICATE).astype(float)
        frame = np.clip(frame + rng.normal(0, 6, frame.shape), 0, 255).astype(np.uint8)
        params.append(crop_params(tracker.detect(frame)[0].landmarks))
    raw = np.array(params)
    smooth = smooth_crops(raw, fps=25, sigma_s=0.15)
    truth = raw[:, :2].mean(0) + (np.arange(n)[:, None] - (n - 1) / 2) * velocity
    raw_jitter = np.abs(np.diff(raw[:, :2] - truth, axis=0)).mean()
    smooth_jitter = np.abs(np.diff(smooth[:, :2] - truth, axis=0)).mean()
    assert smooth_jitter < 0.35 * raw_jitter, (raw_jitter, smooth_jitter)
    assert np.abs(smooth[:, :2] - truth).max() < 2.0  # follows the motion without lag
    assert np.diff(np.log(smooth[:, 2])).std() < 0.5 * np.diff(np.log(raw[:, 2])).std()


# --- labels ------------------------------------------------------------------------------------------------


def _rotation(yaw, pitch, roll):
    cy, sy, cp, sp, cr, sr = (
        np.cos(yaw),
        np.sin(yaw),
        np.cos(pitch),
        np.sin(pitch),
        np.cos(roll),
        np.sin(roll),
    )
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return ry @ rx @ rz


def test_pose_from_matrix_inverts_the_documented_convention():
    for yaw, pitch, roll in [(0.3, -0.2, 0.1), (-0.7, 0.4, -0.5), (0.0, 0.0, 1.2)]:
        m = np.eye(4)
        m[:3, :3] = _rotation(yaw, pitch, roll) * 1.1  # a uniform scale is ignored
        m[:3, 3] = (1.0, -2.0, -50.0)
        np.testing.assert_allclose(pose_from_matrix(m), [yaw, pitch, roll, 1, -2, -50], atol=1e-5)


def test_pose_signs_on_rotated_and_flipped_portrait(tracker, astronaut, astronaut_obs):
    base = pose_from_matrix(astronaut_obs.matrix)
    rotated = _rotate(astronaut, 15)  # counter-clockwise in the image
    pose = pose_from_matrix(tracker.detect(rotated)[0].matrix)
    assert abs(pose[2] - base[2] - np.radians(15)) < 0.07  # roll > 0 = counter-clockwise
    flipped = pose_from_matrix(tracker.detect(np.ascontiguousarray(rotated[:, ::-1]))[0].matrix)
    assert abs(pose[0]) > 0.04 and abs(pose[2]) > 0.15
    np.testing.assert_allclose(flipped[[0, 2, 3]], -pose[[0, 2, 3]], atol=0.04, rtol=0.1)  # yaw, roll, tx
    np.testing.assert_allclose(flipped[[1, 4, 5]], pose[[1, 4, 5]], atol=0.04, rtol=0.1)  # pitch, ty, tz


def test_gaze_mapping(astronaut_obs):
    lm = astronaut_obs.landmarks.copy()
    base, _ = gaze_from_landmarks(lm)
    half_width = np.linalg.norm(lm[RIGHT_EYE["inner"], :2] - lm[RIGHT_EYE["outer"], :2]) / 2
    eye_r, eye_l = eye_centres(lm[:, :2])
    ax = (eye_l - eye_r) / np.linalg.norm(eye_l - eye_r)  # the face's x axis in the image
    ay = np.array([-ax[1], ax[0]])  # and its downward axis
    right = lm.copy()
    right[468:, :2] += 0.3 * half_width * ax  # irises move towards the image's right
    theta, phi = gaze_from_landmarks(right)[1] - base
    assert theta > 0.3 and abs(phi) < 0.02
    up = lm.copy()
    up[468:, :2] -= 0.2 * half_width * ay
    theta, phi = gaze_from_landmarks(up)[1] - base
    assert phi > 0.2 and abs(theta) < 0.02
    # camera-space gaze = eye-in-head direction rotated by the head pose
    m = np.eye(4)
    np.testing.assert_allclose(gaze_from_landmarks(lm, m)[0], base, atol=1e-6)
    m[:3, :3] = _rotation(0.4, 0.0, 0.0)
    cam, head = gaze_from_landmarks(lm, m)
    assert abs(cam[0] - (head[0] + 0.4)) < 0.01


def test_frame_and_clip_labels(astronaut_obs):
    params = crop_params(astronaut_obs.landmarks)
    lab = frame_labels(astronaut_obs, params)
    assert {k: np.shape(v) for k, v in lab.items()} == {
        "pose": (6,),
        "gaze": (2,),
        "gaze_head": (2,),
        "distance": (),
        "blendshapes": (52,),
        "landmarks": (478, 3),
    }
    wider = frame_labels(astronaut_obs, params * [1, 1, 2])
    np.testing.assert_allclose(wider["distance"], lab["distance"] / 2, rtol=1e-6)  # smaller face = farther
    other = dict(lab, blendshapes=np.zeros(52, np.float32))
    clip = clip_labels([lab, None, other])
    assert clip["pose"].shape == (3, 6) and np.isnan(clip["pose"][1]).all()
    np.testing.assert_array_equal(clip["valid"], [True, False, True])
    np.testing.assert_allclose(clip["emotion"], lab["blendshapes"] / 2, rtol=1e-6)
    with pytest.raises(UserError):
        clip_labels([None, None])


def test_label_extraction_is_warning_free(astronaut_obs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame_labels(astronaut_obs, crop_params(astronaut_obs.landmarks))


# --- finding faces in real photos ----------------------------------------------------------------------------


def test_group_photo_with_six_small_faces(tracker):
    """A 1280×886 'group photo' of six ~150 px faces: the whole-image look finds none (too small for the
    detector's view), the tile search finds all six; the warning numbers them and --face picks one."""
    canvas = np.random.default_rng(0).integers(150, 210, (886, 1280, 3), dtype=np.uint8)
    heads = [_head("astronaut", 0.95), _head("grace_hopper", 0.6)]
    centres = []
    for k in range(6):
        head = heads[k % 2]
        cy, cx = 220 + 440 * (k // 3), 213 + 427 * (k % 3)
        h, w = head.shape[:2]
        canvas[cy - h // 2 : cy - h // 2 + h, cx - w // 2 : cx - w // 2 + w] = head
        centres.append((cx, cy))
    assert tracker.detect(canvas) == []  # what `vasajax animate` saw before the tile search
    t0 = time.perf_counter()
    faces = find_faces(canvas, tracker=tracker)
    elapsed = time.perf_counter() - t0
    assert len(faces) == 6, [f.box for f in faces]
    for cx, cy in centres:  # every head found once, its landmarks in the photo's pixels
        hits = [f for f in faces if f.box[0] < cx < f.box[2] and f.box[1] - 40 < cy < f.box[3] + 40]
        assert len(hits) == 1, (cx, cy)
    assert all(f.image_hw == (886, 1280) for f in faces)
    assert [f.area for f in faces] == sorted((f.area for f in faces), reverse=True)
    with pytest.warns(UserWarning, match=r"6 faces in .* using face 2; choose another with --face N"):
        third = track_image(canvas, tracker=tracker, face=2)
    assert third.box == faces[2].box
    with pytest.raises(UserError, match="6 face.*no face 6"):
        track_image(canvas, tracker=tracker, face=6)
    print(f"group photo 1280×886, 6 faces: {elapsed:.2f} s")


def test_a_small_face_in_a_large_photo(tracker):
    """One ~70 px face in a 2560×1440 photo is found, with landmarks as good as on the portrait itself."""
    head = _head("grace_hopper", 0.3)
    canvas = np.full((1440, 2560, 3), 120, np.uint8)
    y, x = 900, 1700
    canvas[y : y + head.shape[0], x : x + head.shape[1]] = head
    faces = find_faces(canvas, tracker=tracker)
    assert len(faces) == 1
    x0, y0, x1, y1 = faces[0].box
    assert x <= x0 < x1 <= x + head.shape[1] and y <= y0 < y1 <= y + head.shape[0]
    assert 50 < x1 - x0 < 110
    alone = find_faces(np.ascontiguousarray(np.pad(head, ((100, 100), (100, 100), (0, 0)), mode="edge")),
                          tracker=tracker)  # fmt: skip
    ref = alone[0].landmarks[:, :2] - 100 + np.array([x, y])
    assert np.median(np.linalg.norm(faces[0].landmarks[:, :2] - ref, axis=1)) < 2.0
