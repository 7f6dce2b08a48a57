"""vasajax eval on REAL SynthTalk clips against their ground truth: tracking, lip-sync, conditions, identity, CLI."""

import json

import numpy as np
import pytest

from vasajax import cli as vcli
from vasajax.data.synth.clip import synthesize_clip, write_clip
from vasajax.data.synth.config import SynthConfig
from vasajax.data.synth.inputs import load_portraits
from vasajax.data.synth.portrait import prepare_portraits
from vasajax.eval import cli, identity, lipsync, pose, report


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    cfg = SynthConfig.tiny()  # 128², up to 3 s of speech
    portraits = prepare_portraits(load_portraits(), cfg)
    out = tmp_path_factory.mktemp("synthtalk")
    clip = synthesize_clip(portraits[0], "Seven bright kites flew over the old harbour wall.", seed=3, cfg=cfg)
    write_clip(clip, out, "clip0")
    return out, clip


@pytest.fixture(scope="module")
def tracked(clip_dir):
    out, clip = clip_dir
    frames, fps = report.read_video(out / "clip0.mp4")
    assert fps == 25 and frames.shape == clip.frames.shape
    return frames, report.track_video(frames, fps)


def test_tracked_mouth_is_in_sync_and_offsets_are_found(clip_dir, tracked):
    _, clip = clip_dir
    _, track = tracked
    assert track.valid.mean() > 0.95
    mouth = lipsync.mouth_opening(track.landmarks)
    assert np.corrcoef(mouth, clip.ground_truth["mouth_open"])[0, 1] > 0.8
    r0 = lipsync.lip_sync(mouth, clip.audio)
    assert r0["av_corr"] > 0.4 and abs(r0["av_offset"]) <= 2
    late_audio = np.concatenate([np.zeros(4 * 640, np.float32), clip.audio])[: len(clip.audio)]
    r4 = lipsync.lip_sync(mouth, late_audio)  # audio 4 frames later = the video leads by 4
    assert r4["av_offset"] == r0["av_offset"] - 4
    assert r4["av_corr"] < r0["av_corr"] - 0.2


def test_conditions_and_delta_p_against_ground_truth(clip_dir, tracked):
    _, clip = clip_dir
    _, track = tracked
    gt = clip.ground_truth
    row = report.evaluate_video(track, clip.audio, conditions={"gaze_head": gt["gaze"], "distance": gt["distance"]})
    assert row["gaze_err"] < 8 and row["dist_err"] < 0.03
    off = gt["gaze"] + np.radians([15.0, 0.0])
    assert report.evaluate_video(track, clip.audio, conditions={"gaze_head": off})["gaze_err"] > row["gaze_err"] + 7
    assert row["delta_p"] == pytest.approx(pose.delta_p(gt["pose"]), rel=0.5)  # re-extracted vs. true pose
    assert report.evaluate_video(track, clip.audio, conditions={"distance": 0.9})["dist_err"] > 0.3


def test_identity_same_face_scores_higher_than_another():
    pytest.importorskip("dlib")
    try:
        emb = identity.IdentityEmbedder()
    except Exception as e:  # noqa: BLE001
        pytest.skip(str(e))
    from vasajax.facetrack.tracker import track_image
    from vasajax.image import PORTRAITS, load_image

    a = load_image(PORTRAITS["astronaut"])
    g = load_image(PORTRAITS["grace_hopper"])
    import cv2

    frames = np.stack([cv2.resize(a, (128, 128))] * 2)
    lms = np.stack([track_image(frames[0]).landmarks] * 2)
    same = identity.identity_similarity(emb, a, frames, lms, every=1)
    other = identity.identity_similarity(emb, g, frames, lms, every=1)
    assert same["id_dist"] < 0.6 < other["id_dist"]
    assert same["id_cos"] > other["id_cos"]


def test_cli_writes_tables_with_ground_truth_conditions(clip_dir, tmp_path, capsys):
    out, _ = clip_dir
    cond = tmp_path / "c.json"
    cond.write_text(json.dumps({"clip0.mp4": {"distance": 0.5}}))  # explicit conditions override the truth
    assert cli.cli_main(["--videos", str(out), "--out", str(tmp_path / "ev"), "--no-identity",
                         "--conditions", str(cond)]) == 0  # fmt: skip
    doc = json.loads((tmp_path / "ev.json").read_text())
    (row,) = doc["sets"][0]["rows"]
    assert row["video"] == "clip0.mp4" and row["phon_corr"] > 0.3 and row["gaze_err"] < 8
    assert row["dist_err"] > 0.1
    assert any("Sync-C" in n for n in doc["notes"]) and any("FVD25" in n for n in doc["notes"])
    md = (tmp_path / "ev.md").read_text()
    assert "| set |" in md and "clip0.mp4" in md
    assert vcli.main(["eval", "--videos", str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_syncnet_face_crops_follow_the_face(tracked):
    from vasajax.eval import syncnet_score

    frames, track = tracked
    crops = syncnet_score.face_crops(frames[:20], track.landmarks[:20])
    assert crops.shape == (20, 224, 224, 3) and crops.dtype == np.float32
    # BGR like cv2.imread: the skin-dominated crop has more red (last channel) than blue (first)
    assert crops[..., 2].mean() > crops[..., 0].mean() + 10
    assert np.all(np.isfinite(crops)) and crops.std() > 10
