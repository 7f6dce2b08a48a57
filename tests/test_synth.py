"""SynthTalk: espeak-ng timings, viseme tracks, rendering, ground truth vs. the face tracker, I/O and CLI."""

import dataclasses
import json

import imageio.v3 as iio
import numpy as np
import pytest
import soundfile

from vasajax import cli, media
from vasajax.data import visemes
from vasajax.data.speech import PAUSE, SAMPLE_RATE, Voice, synthesize_speech
from vasajax.data.synth.cli import cli_main
from vasajax.data.synth.clip import SynthClip, synthesize_clip, write_clip
from vasajax.data.synth.config import SynthConfig
from vasajax.data.synth.deform import pose_landmarks
from vasajax.data.synth.inputs import load_portraits, load_sentences
from vasajax.data.synth.portrait import Portrait, prepare_portrait, prepare_portraits
from vasajax.data.synth.raster import render_frame
from vasajax.errors import UserError
from vasajax.facetrack.labels import gaze_from_landmarks, pose_from_matrix
from vasajax.facetrack.landmarks import mouth_opening
from vasajax.facetrack.tracker import FaceTracker, track_image

CFG = SynthConfig.tiny()
SENTENCE = "Hello, how are you? Papa saw a cat."


@pytest.fixture(scope="module")
def portrait() -> Portrait:
    (name, image), *_ = load_portraits()
    return prepare_portrait(image, CFG, name=name, landmarks=track_image(image).landmarks)


@pytest.fixture(scope="module")
def clip(portrait) -> SynthClip:
    return synthesize_clip(portrait, SENTENCE, Voice(name="en-us", variant="m3", rate=150), seed=3, cfg=CFG)


@pytest.fixture(scope="module")
def tracker():
    with FaceTracker(mode="image", max_faces=1) as t:
        yield t


def _track(tracker, frames) -> np.ndarray:
    """Landmarks the tracker finds on rendered frames (T×478×3); a missing face fails the test."""
    out = []
    for f in frames:
        faces = tracker.detect(f)
        assert faces, "the face tracker found no face on a rendered frame"
        out.append(faces[0].landmarks)
    return np.stack(out)


def test_espeak_phoneme_events_increase_inside_audio():
    s = synthesize_speech("The quick brown fox, however, jumps.", Voice(name="en", variant="f2", rate=170))
    assert s.audio_16k.dtype == np.float32 and np.isfinite(s.audio_16k).all()
    assert 1.0 < s.duration_s < 5.0 and np.sqrt(np.mean(s.audio_16k**2)) > 0.01
    starts = np.array([p.start_s for p in s.phonemes])
    ends = np.array([p.end_s for p in s.phonemes])
    assert len(starts) > 15 and np.all(np.diff(starts) > 0)
    assert np.all(ends > starts) and starts[0] >= 0 and ends[-1] <= s.duration_s + 1e-9
    names = [p.name for p in s.phonemes]
    assert PAUSE in names  # the comma pause is reported
    assert any("aʊ" in n for n in names) and "f" in names  # IPA names, 'brown' and 'fox'
    assert [w for w, _ in s.words][:3] == ["The", "quick", "brown"]


def test_speaking_rate_changes_duration():
    slow = synthesize_speech("One two three four five.", Voice(rate=110))
    fast = synthesize_speech("One two three four five.", Voice(rate=260))
    assert fast.duration_s < 0.7 * slow.duration_s


def test_viseme_tracks_open_on_vowels_close_on_bilabials():
    phon = [("_", 0.0, 0.3), ("m", 0.3, 0.4), ("ˈɑː", 0.4, 0.6), ("p", 0.6, 0.7), ("ə", 0.7, 0.8), ("_", 0.8, 1.4)]
    t = np.array([0.1, 0.35, 0.5, 0.65, 1.3])
    m = visemes.mouth_tracks(phon, t)
    jaw = m["jaw"]
    assert jaw[2] > 0.8 and jaw[2] > 3 * max(jaw[1], jaw[3])
    assert jaw[0] < 0.02 and jaw[4] < 0.02
    assert visemes.VISEME_NAMES[m["viseme"][2]] == "AA" and visemes.VISEME_NAMES[m["viseme"][1]] == "PBM"
    assert visemes.segments("aɪ")[0][0].cls != visemes.segments("aɪ")[1][0].cls  # diphthongs split


def test_clip_shapes_and_ground_truth(clip):
    t = len(clip.frames)
    assert clip.frames.shape == (t, CFG.size, CFG.size, 3) and clip.frames.dtype == np.uint8
    assert clip.audio.dtype == np.float32 and len(clip.audio) == round(t * SAMPLE_RATE / CFG.fps)
    gt = clip.ground_truth
    assert gt["pose"].shape == (t, 6) and gt["gaze"].shape == (t, 2) and gt["landmarks"].shape == (t, 478, 3)
    for k in ("mouth_open", "jaw", "blink", "emotion", "distance", "speaking", "phoneme", "viseme"):
        assert gt[k].shape == (t,), k
    assert all(np.isfinite(v).all() for v in gt.values())
    assert clip.frames.std(0).mean() > 1.0  # the face moves
    np.testing.assert_allclose(gt["mouth_open"], mouth_opening(gt["landmarks"]), atol=1e-6)
    names = clip.meta["phoneme_names"]
    assert {names[i] for i in gt["phoneme"] if i >= 0} == {p["name"] for p in clip.meta["phonemes"]} - {PAUSE}
    json.dumps(clip.meta)  # serialisable


def test_mouth_opens_on_vowels(clip):
    gt, fps = clip.ground_truth, clip.fps
    t = (np.arange(len(clip.frames)) + 0.0) / fps
    vowel, closed = np.zeros(len(t), bool), np.zeros(len(t), bool)
    for p in clip.meta["phonemes"]:
        inside = (t >= p["start_s"]) & (t < p["end_s"])
        if p["name"] != PAUSE and visemes.is_vowel(p["name"]) and p["end_s"] - p["start_s"] > 0.06:
            vowel |= inside
        elif p["name"] == PAUSE or p["name"] in ("p", "b", "m"):
            closed |= inside
    closed[: int(0.15 * fps)] = True  # lead-in silence
    assert vowel.sum() >= 4 and closed.sum() >= 4
    assert gt["mouth_open"][vowel].mean() > 2.5 * gt["mouth_open"][closed].mean()
    assert gt["mouth_open"][vowel].mean() > 0.08


def test_deterministic_by_seed(portrait, clip):
    voice = Voice(name="en-us", variant="m3", rate=150)
    again = synthesize_clip(portrait, SENTENCE, voice, seed=3, cfg=CFG)
    np.testing.assert_array_equal(again.frames, clip.frames)
    np.testing.assert_array_equal(again.audio, clip.audio)
    for k, v in clip.ground_truth.items():
        np.testing.assert_array_equal(again.ground_truth[k], v, err_msg=k)
    other = synthesize_clip(portrait, SENTENCE, voice, seed=4, cfg=CFG)
    assert not np.allclose(other.ground_truth["pose"], clip.ground_truth["pose"])


def test_tracker_measures_the_ground_truth_mouth_opening(clip, tracker):
    """The face tracker, run on the rendered frames, sees the mouth open and close as the ground truth says."""
    measured = mouth_opening(_track(tracker, clip.frames))
    truth = clip.ground_truth["mouth_open"]
    assert truth.std() > 0.02
    r = np.corrcoef(truth, measured)[0, 1]
    assert r > 0.8, f"tracker vs ground-truth mouth opening r={r:.3f}"


def _frames(portrait, **sweep) -> tuple[np.ndarray, np.ndarray]:
    base = dict(yaw=0.0, pitch=0.0, roll=0.0, tx=0.0, ty=0.0, scale=1.0, jaw=0.0, spread=0.0, round=0.0,
                blink=0.0, gaze_yaw=0.0, gaze_pitch=0.0, smile=0.0)  # fmt: skip
    (key, values), frames = next(iter(sweep.items())), []
    for v in values:
        frames.append(render_frame(portrait, *pose_landmarks(portrait, {**base, key: float(v)}, CFG)))
    return np.stack(frames), np.asarray(values)


def test_tracker_sees_rendered_head_pose_gaze_and_blinks(portrait, tracker):
    """Renderer conventions agree with facetrack's: yaw/roll/pitch, eye-in-head gaze and eyelid closure."""
    for key, values, index in (("yaw", np.linspace(-0.25, 0.25, 5), 0), ("roll", np.linspace(-0.2, 0.2, 3), 2)):
        frames, v = _frames(portrait, **{key: values})
        obs = _track(tracker, frames)
        measured = []
        for f in frames:
            measured.append(pose_from_matrix(tracker.detect(f)[0].matrix)[index])
        delta = np.asarray(measured) - measured[len(v) // 2]
        assert np.corrcoef(v, delta)[0, 1] > 0.95, (key, delta)
        np.testing.assert_allclose(delta, v, atol=0.5 * np.ptp(v) / 2 + 0.03, err_msg=key)
        assert obs.shape == (len(v), 478, 3)
    frames, v = _frames(portrait, gaze_yaw=np.array([-0.3, 0.0, 0.3]))
    gaze = np.array([gaze_from_landmarks(lm)[1][0] for lm in _track(tracker, frames)])
    assert gaze[0] < gaze[1] - 0.05 and gaze[2] > gaze[1] + 0.05, gaze
    frames, v = _frames(portrait, blink=np.array([0.0, 1.0]))
    lm = _track(tracker, frames)
    opening = np.linalg.norm(lm[:, 159, :2] - lm[:, 145, :2], axis=-1)
    assert opening[1] < 0.5 * opening[0], opening


def test_write_clip_round_trip(clip, tmp_path):
    paths = write_clip(clip, tmp_path, "c0")
    assert all(p.exists() and p.stat().st_size > 0 for p in paths.values())
    info = media.probe(paths["mp4"])
    video = media.read_frames(paths["mp4"])
    assert info.fps == CFG.fps and info.audio_codec == "aac" and info.video_codec == "h264"
    assert video.shape == clip.frames.shape
    assert np.abs(video.astype(float) - clip.frames).mean() < 6.0  # h264 at crf 20
    wav, sr = soundfile.read(paths["wav"], dtype="float32")
    assert sr == SAMPLE_RATE and len(wav) == len(clip.audio)
    with np.load(paths["npz"]) as gt:
        assert set(gt.files) == set(clip.ground_truth)
        np.testing.assert_array_equal(gt["mouth_open"], clip.ground_truth["mouth_open"])
    assert json.loads(paths["json"].read_text())["text"] == clip.meta["text"]


def test_sentences_split():
    train, held = load_sentences("train"), load_sentences("heldout")
    assert len(train) == 180 and len(held) == 20 and not set(train) & set(held)
    assert load_sentences("all") == train + held


def test_configs_and_errors(portrait):
    assert [c.size for c in (SynthConfig.tiny(), SynthConfig.small(), SynthConfig.paper())] == [
        128,
        256,
        512,
    ]
    with pytest.raises(UserError, match="prepared at 128"):
        synthesize_clip(portrait, "Hi.", cfg=dataclasses.replace(CFG, size=64))
    with pytest.raises(UserError, match="empty text"):
        synthesize_speech("   ")


def test_cli_writes_clips(tmp_path, capsys):
    out = tmp_path / "synth"
    assert cli_main(["--out", str(out), "--num-clips", "1", "--size", "96", "--seed", "5"]) == 0
    index = json.loads((out / "index.json").read_text())
    assert [c["name"] for c in index["clips"]] == ["clip00000"]
    assert (out / "clip00000.mp4").exists() and (out / "clip00000.npz").exists()
    assert cli.main(["synth", "--out", str(out), "--num-clips", "0"]) == 2  # UserError → one line, exit 2
    assert "error: --num-clips" in capsys.readouterr().err


def test_user_portrait_folder(tmp_path):
    with pytest.raises(UserError, match="no .jpg/.png"):
        load_portraits(tmp_path)
    (name, image), *_ = load_portraits()
    iio.imwrite(tmp_path / "face.png", image)
    iio.imwrite(tmp_path / "blank.jpg", np.full((200, 200, 3), 128, np.uint8))
    images = load_portraits(tmp_path)
    assert [n for n, _ in images] == ["blank", "face"]
    with pytest.warns(UserWarning, match="skipping portrait blank"):
        portraits = prepare_portraits(images, CFG)
    assert [p.name for p in portraits] == ["face"] and portraits[0].image.shape == (CFG.size, CFG.size, 3)
    with pytest.raises(UserError, match="none of the portraits"), pytest.warns(UserWarning):
        prepare_portraits(images[:1], CFG)


def test_mouth_follow_tells_a_moving_mouth_from_a_frozen_one(clip):
    """eval.face_recon.mouth_follow: the true frames follow themselves (r = 1); a copy of frame 0 does not move."""
    from vasajax.eval.face_recon import mouth_follow

    idx = np.linspace(0, len(clip.frames) - 1, 12).round().astype(int)
    drivers = clip.frames[idx]
    same = mouth_follow(drivers, drivers)
    assert same["mouth_pairs"] == 12 and same["mouth_open_r"] > 0.999 and same["mouth_open_mae"] < 1e-6
    assert same["mouth_open_std_truth"] > 0.02
    frozen = mouth_follow(np.repeat(drivers[:1], 12, axis=0), drivers)
    assert frozen["mouth_open_std_model"] < 1e-6 and frozen["mouth_open_mae"] > 0.01
