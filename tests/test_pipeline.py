"""vasajax.pipeline (Animator) and vasajax.checkpoint_export on a random-init tiny export.

One export and one Animator for the module, one set of jit shapes (encode 1×64², decode batches of 8, one
DiT window with 4 steps), 1.5 s of audio (38 frames, 3 windows of 16).
"""

import itertools
import json

import numpy as np
import PIL.Image
import pytest

import vasajax
from vasajax import checkpoint_export as ce
from vasajax import export_format, modelfiles
from vasajax.errors import UserError
from vasajax.face.config import FaceConfig
from vasajax.facetrack.landmarks import BLENDSHAPE_NAMES
from vasajax.image import PORTRAITS, load_image
from vasajax.motion.audio import AudioConfig, num_video_frames
from vasajax.motion.diffusion import DiffusionConfig
from vasajax.motion.dit import MotionConfig
from vasajax.pipeline import Animator, emotion_vector

SR = 16_000
ASTRONAUT = PORTRAITS["astronaut"]


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """An amplitude-modulated harmonic tone with noise: log-mel features that change over time."""
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    tone = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((180, 360, 900, 2400), 1))
    return (0.1 * env * tone + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def make_export(path):
    return ce.random_export(
        path,
        FaceConfig.tiny(),
        MotionConfig.tiny(audio_dim=32),
        {"audio": AudioConfig.tiny(), "diffusion": DiffusionConfig.tiny(steps=4)},
        seed=0,
    )


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return make_export(tmp_path_factory.mktemp("export") / "tiny")


@pytest.fixture(scope="module")
def anim(export_dir):
    return vasajax.Animator.from_pretrained(export_dir)


@pytest.fixture(scope="module")
def wave():
    return speechlike(1.5)


@pytest.fixture(scope="module")
def video0(anim, wave):
    return anim.animate(ASTRONAUT, wave, crop="center", seed=0)


# ------------------------------------------------------------------------------------------ generation


def test_video_shape_duration_and_motion(anim, video0, wave):
    v = video0
    T = num_video_frames(wave.size, 25, SR)
    assert v.frames.shape == (T, 64, 64, 3) and v.frames.dtype == np.uint8
    assert abs(v.duration_s - wave.size / SR) <= 1 / v.fps  # duration = audio duration ± 1 frame
    assert v.motion.shape == (T, anim.motion_cfg.motion_dim) and np.isfinite(v.motion).all()
    assert v.frames.std(axis=0).mean() > 1.0  # the face moves: frames are not all the same
    np.testing.assert_array_equal(v.audio, wave)


def test_video_save_has_audio_and_provenance_tag(video0, tmp_path):
    from vasajax import media, provenance

    out = video0.save(tmp_path / "v.mp4")
    info = media.probe(out)
    assert info.has_audio and provenance.has_tag(info.metadata) and (info.width, info.height) == (64, 64)
    frames, _, _ = media.read_video(out, stack=True)
    assert len(frames) == len(video0.frames)


def test_same_seed_same_frames_other_seed_other_frames(anim, video0, wave):
    again = anim.animate(ASTRONAUT, wave, crop="center", seed=0)
    np.testing.assert_array_equal(again.frames, video0.frames)
    other = anim.animate(ASTRONAUT, wave, crop="center", seed=1)
    assert np.abs(other.frames.astype(int) - video0.frames).mean() > 1.0


def test_stream_equals_offline_for_any_chunking(anim, video0, wave):
    cuts = [0, 1000, 1001, 7777, 20000, wave.size]
    fs = anim.stream(ASTRONAUT, (wave[a:b] for a, b in itertools.pairwise(cuts)), crop="center", seed=0)
    batches = list(fs)
    assert all(len(b) <= anim.decode_batch for b in batches)
    np.testing.assert_array_equal(np.concatenate(batches), video0.frames)
    assert fs.frames == len(video0.frames) and 0 < fs.first_frame_s <= fs.elapsed_s and fs.steady_fps > 0


def test_stream_consumes_audio_lazily(anim):
    """Unbounded audio: frames come out after about one window of audio, so memory does not grow with length."""
    consumed = []

    def endless():
        for i in itertools.count():
            consumed.append(i)
            yield speechlike(0.16, seed=i)  # 4 frames per chunk

    portrait = anim.prepare(ASTRONAUT, crop="center")
    batches = list(itertools.islice(anim.stream(portrait, endless(), seed=0), 4))  # 2 windows of 16 frames
    assert sum(len(b) for b in batches) == 32
    assert len(consumed) <= 2 * 16 // 4 + 1  # 8 chunks, +1 for the log-mel look-ahead of 200 samples


def test_pose_is_relative_to_the_portrait(anim, wave):
    portrait = anim.prepare(ASTRONAUT, crop="center")
    # Unprimed: the DiT samples the same motion for both; only the pose offset differs.
    rel = anim.animate(portrait, wave[:8000], seed=0, start="free")
    ab = anim.animate(portrait, wave[:8000], seed=0, pose="absolute", start="free")
    mean6 = np.asarray(anim.motion_model.motion_mean.get_value())[:6]
    offset = np.asarray(portrait.latent.pose)[0] - mean6
    assert rel.motion.shape == (13, 14)
    np.testing.assert_allclose(rel.motion[:, :6] - ab.motion[:, :6], np.broadcast_to(offset, (13, 6)), atol=1e-5)
    np.testing.assert_array_equal(rel.motion[:, 6:], ab.motion[:, 6:])
    assert np.abs(offset).max() > 1e-3 and not np.array_equal(rel.frames, ab.frames)


def test_first_window_starts_from_the_portrait(anim, wave, monkeypatch):
    """start="portrait" (default) primes the first window's context with the portrait's motion (pose in the DiT's
    space, i.e. the motion mean under relative pose) over silence; start="free" samples it with no context."""
    import vasajax.motion.generate as gen

    seen = []
    real_init = gen.MotionStream.__init__

    def spy(self, *a, **kw):
        seen.append((kw.get("context_motion"), kw.get("context_audio")))
        real_init(self, *a, **kw)

    monkeypatch.setattr(gen.MotionStream, "__init__", spy)
    portrait = anim.prepare(ASTRONAUT, crop="center")
    primed = anim.animate(portrait, wave[:8000], seed=0)
    free = anim.animate(portrait, wave[:8000], seed=0, start="free")
    (m, a), (m_free, a_free) = seen
    assert m_free is None and a_free is None
    mean = np.asarray(anim.motion_model.motion_mean.get_value())
    np.testing.assert_allclose(m[:6], mean[:6], atol=1e-5)  # the portrait's pose is the DiT's mean pose
    np.testing.assert_array_equal(m[6:], np.asarray(portrait.latent.dyn)[0])
    assert a.shape == (anim.motion_cfg.context, anim.motion_cfg.audio_dim) and np.isfinite(a).all()
    assert primed.frames.shape == free.frames.shape and not np.array_equal(primed.frames, free.frames)
    np.testing.assert_array_equal(anim.animate(portrait, wave[:8000], seed=0).frames, primed.frames)
    with pytest.raises(UserError, match="start must be"):
        anim.animate(portrait, wave[:8000], seed=0, start="middle")


def test_paste_back_keeps_the_photo_outside_the_face(anim, wave):
    photo = load_image(ASTRONAUT)  # 512²
    crop = (256.0, 200.0, 160.0)
    v = anim.animate(photo, wave[:4000], crop=crop, seed=0, paste_back=True, size=128)
    assert v.frames.shape == (7, 128, 128, 3)
    small = photo[::4, ::4].astype(int)  # the face crop covers x, y in [176, 336) × [120, 280) of 512
    far = np.abs(v.frames[:, 100:, :30].astype(int) - small[None, 100:, :30]).mean()
    near = np.abs(v.frames[:, 40:60, 54:74].astype(int) - small[None, 40:60, 54:74]).mean()
    assert far < 12 and near > 2 * far  # the mark (2.5 levels) and resampling outside; a new face inside


def test_controls_are_checked_before_any_work(anim):
    portrait = anim.prepare(ASTRONAUT, crop="center")
    bad = [
        dict(gaze=(0.1,)),
        dict(gaze=(0.0, float("nan"))),
        dict(distance=-1.0),
        dict(size=33),
        dict(steps=0),
        dict(emotion="furious"),
        dict(pose="sideways"),
    ]
    for kw in bad:
        with pytest.raises(UserError):
            anim.frames(portrait, [np.zeros(1600, np.float32)], **kw)
    with pytest.raises(UserError, match="no samples"):
        list(anim.frames(portrait, []))
    with pytest.raises(UserError, match="NaN"):
        list(anim.frames(portrait, [np.full(1600, np.nan, np.float32)]))


def test_emotion_vector():
    assert emotion_vector("neutral", 52) is None and emotion_vector(None, 52) is None
    happy = emotion_vector("Happy", 52)
    assert happy[BLENDSHAPE_NAMES.index("mouthSmileLeft")] > 0.3 and happy.sum() > 1
    pairs = emotion_vector("jawOpen=0.5, eyeBlinkLeft=1", 52)
    assert pairs[BLENDSHAPE_NAMES.index("jawOpen")] == 0.5 and pairs.sum() == 1.5
    np.testing.assert_array_equal(emotion_vector("1,2,3", 3), [1, 2, 3])
    np.testing.assert_array_equal(emotion_vector("calm", 2, {"calm": [0.5, 0.25]}), [0.5, 0.25])
    for bad, dim in (("1,2", 3), ("jaw=1", 52), ("happy", 8), ("x=1", 8), ("1,a", 2)):
        with pytest.raises(UserError):
            emotion_vector(bad, dim)


# ------------------------------------------------------------------------------------------ portraits


def test_image_formats_work(anim, tmp_path):
    rgb = load_image(ASTRONAUT)
    gray = np.asarray(PIL.Image.fromarray(rgb).convert("L"))
    files = {
        "gray.png": PIL.Image.fromarray(gray),
        "rgba.png": PIL.Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])),
        "cmyk.jpg": PIL.Image.fromarray(rgb).convert("CMYK"),
        "sixteen.png": PIL.Image.fromarray(gray.astype(np.uint16) * 257),
    }
    for name, im in files.items():
        im.save(tmp_path / name)
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90° clockwise
    PIL.Image.fromarray(np.rot90(rgb, 1)).save(tmp_path / "exif.jpg", exif=exif, quality=95)
    for name in [*files, "exif.jpg"]:
        p = anim.prepare(tmp_path / name, crop="center")
        assert p.image.shape == (512, 512, 3) and p.crop.shape == (64, 64, 3), name
        assert np.isfinite(np.asarray(p.latent.pose)).all(), name
    upright = anim.prepare(tmp_path / "exif.jpg", crop="center").image
    assert np.abs(upright.astype(int) - rgb).mean() < 8  # EXIF orientation applied


def test_bad_images(anim, tmp_path):
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    PIL.Image.new("RGB", (40, 40)).save(tmp_path / "small.png")
    for name, msg in (("corrupt.png", "cannot read"), ("small.png", "at least 64"), ("missing.png", "not found")):
        with pytest.raises(UserError, match=msg):
            anim.prepare(tmp_path / name, crop="center")
    for crop in ((1.0, 2.0, -5.0), (1.0, 2.0), "middle"):
        with pytest.raises(UserError, match="crop must be"):
            anim.prepare(ASTRONAUT, crop=crop)


needs_landmarker = pytest.mark.skipif(
    not modelfiles.is_valid(modelfiles.cache_dir() / "face_landmarker.task"),
    reason="face_landmarker.task is not cached; run `make models` first",
)


@needs_landmarker
def test_face_detection_crop_several_faces_and_no_face(anim):
    rgb = load_image(ASTRONAUT)
    p = anim.prepare(rgb)
    cx, cy, side = p.crop_params
    assert 180 < cx < 330 and 100 < cy < 300 and 150 < side < 450 and 0.05 < p.distance < 0.5
    import cv2

    hopper = load_image(PORTRAITS["grace_hopper"])[:512]
    two = np.full((768, 768, 3), 255, np.uint8)  # (MediaPipe's detector misses smaller faces here)
    two[:512, :512], two[512:, 512:] = rgb, cv2.resize(hopper, (256, 256), interpolation=cv2.INTER_AREA)
    with pytest.warns(UserWarning, match="2 faces"):
        p2 = anim.prepare(two)
    assert p2.crop_params[0] < 384 and p2.crop_params[1] < 384  # the astronaut's face box is the larger
    with pytest.raises(UserError, match="no face"):
        anim.prepare(np.full((128, 128, 3), 128, np.uint8))


# ------------------------------------------------------------------------------------------ export


def test_export_roundtrip_bf16_and_safetensors_interop(export_dir, tmp_path):
    d = export_dir
    loaded = ce.load_export(d)
    face_t, _ = ce.read_safetensors(d / ce.FACE_FILE)
    got = ce.model_tensors(loaded.face_model)
    assert set(got) == set(face_t) and all(got[k].dtype == face_t[k].dtype for k in got)
    again = ce.save_export(tmp_path / "again", loaded.face_model, loaded.motion_model, {"audio": loaded.audio})
    for name in (ce.FACE_FILE, ce.MOTION_FILE):  # bf16 → float32 → bf16 is exact: same bytes
        assert (again / name).read_bytes() == (d / name).read_bytes()
    assert loaded.audio == AudioConfig.tiny() and loaded.diffusion.steps == 4 and loaded.face == FaceConfig.tiny()
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    ref = safetensors_numpy.load_file(str(d / ce.MOTION_FILE))
    ours, meta = ce.read_safetensors(d / ce.MOTION_FILE)
    assert meta["format"] == ce.FORMAT and set(ref) == set(ours)
    for k in ref:
        np.testing.assert_array_equal(ref[k], ours[k])
    assert ours["motion_std"].dtype == np.float32 and ours["in_x/kernel"].dtype.name == "bfloat16"


def test_safetensors_keep_scalars_zero_dimensional(tmp_path):
    """A 0-d parameter (e.g. a learned background logit) is stored with shape [] and read back 0-d."""
    import ml_dtypes

    tensors = {"bg": np.array(-3.5, ml_dtypes.bfloat16), "v": np.arange(3, dtype=np.float32)}
    ce.write_safetensors(tmp_path / "t.safetensors", tensors)
    got, _ = ce.read_safetensors(tmp_path / "t.safetensors")
    assert got["bg"].shape == () and float(got["bg"]) == -3.5 and got["v"].shape == (3,)
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    ref = ce.write_safetensors(tmp_path / "f.safetensors", {"x": np.array(2.0, np.float32)})
    assert ref is None and safetensors_numpy.load_file(str(tmp_path / "f.safetensors"))["x"].shape == ()


def _rehash(d):
    m = json.loads((d / ce.MANIFEST_FILE).read_text())
    for name in m["files"]:
        m["files"][name] = {"sha256": export_format.sha256(d / name), "bytes": (d / name).stat().st_size}
    (d / ce.MANIFEST_FILE).write_text(json.dumps(m))


def test_export_errors_name_the_problem(export_dir, tmp_path):
    import shutil

    def copy(name):
        dst = tmp_path / name
        shutil.copytree(export_dir, dst)
        return dst

    with pytest.raises(UserError, match="not found"):
        ce.load_export(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no manifest.json"):
        ce.load_export(tmp_path / "empty")
    d = copy("damaged")
    raw = bytearray((d / ce.FACE_FILE).read_bytes())
    raw[-3] ^= 0xFF
    (d / ce.FACE_FILE).write_bytes(bytes(raw))
    with pytest.raises(UserError, match="face.safetensors does not match its manifest"):
        ce.load_export(d)
    d = copy("missing")
    (d / ce.MOTION_FILE).unlink()
    with pytest.raises(UserError, match="missing: .*motion.safetensors"):
        ce.load_export(d)
    with pytest.raises(UserError, match=r"another face config: image_size=64 in the checkpoint, 256 expected"):
        ce.load_export(export_dir, expect={"face": FaceConfig.small()})
    d = copy("other-config")  # weights of the tiny face model under a config with a wider identity code
    cfg = json.loads((d / ce.CONFIG_FILE).read_text())
    cfg["face"]["id_dim"] = 24
    (d / ce.CONFIG_FILE).write_text(json.dumps(cfg))
    _rehash(d)
    with pytest.raises(UserError, match=r"face.safetensors: tensor \S+ has shape \(.*\) but the config needs"):
        ce.load_export(d)
    cfg["face"]["id_dim"] = 16
    cfg["motion"]["motion_dim"] = 20
    (d / ce.CONFIG_FILE).write_text(json.dumps(cfg))
    _rehash(d)
    with pytest.raises(UserError, match="14 dims, the motion DiT 20"):
        ce.load_export(d)
    cfg["motion"]["motion_dim"] = 14
    cfg["face"]["warp_speed"] = 1
    (d / ce.CONFIG_FILE).write_text(json.dumps(cfg))
    _rehash(d)
    with pytest.raises(UserError, match="face: field 'warp_speed' is unknown"):
        ce.load_export(d)


def test_missing_default_checkpoint(monkeypatch, tmp_path):
    monkeypatch.setenv("VASAJAX_CHECKPOINT", str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="no checkpoint at .*nowhere.*--checkpoint"):
        Animator.from_pretrained(None)


def test_import_vasajax_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, vasajax; light = 'jax' not in sys.modules; A = vasajax.Animator; "
        "print(light, A.__name__, 'jax' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout.split()
    # ``import vasajax`` (and so ``vasajax --help``) stays free of JAX; the Animator's module imports its stages
    # (and with them JAX) at the top, where a reader sees them
    assert out == ["True", "Animator", "True"]
