"""encode-dataset (vasajax.train.encode_dataset): clip shards → motion shards, encoder and labels sources."""

import jax
import numpy as np
import pytest
from flax import nnx

from test_clips import make_clip
from vasajax.data import clips, loader
from vasajax.errors import UserError
from vasajax.face.config import FaceConfig
from vasajax.motion import audio as audio_lib
from vasajax.train import encode_dataset as ed

T = 20


def _synth_gt(rng, T):
    f32 = np.float32
    names = ("mouth_open", "jaw", "lip_spread", "lip_round", "blink", "emotion")
    gt = {f"synth/{k}_T": rng.random(T).astype(f32) for k in names}  # synth_shards' naming
    gt["synth/gaze_Tx2"] = rng.standard_normal((T, 2)).astype(f32)
    gt["synth/pose_Tx6"] = rng.standard_normal((T, 6)).astype(f32)
    gt["synth/landmarks_Tx478x3"] = rng.random((T, 478, 3)).astype(np.float16)  # too big for extras
    gt["synth/meta_json"] = np.frombuffer(b'{"text": "hi"}', np.uint8)
    return gt


@pytest.fixture(scope="module")
def clip_dirs(tmp_path_factory):
    """Two clip datasets of 3 records: plain tracked labels (one with a NaN label) and SynthTalk-like."""
    rng = np.random.default_rng(0)
    out = {}
    for kind in ("tracked", "synth"):
        d = tmp_path_factory.mktemp(kind)
        recs = []
        with clips.ShardWriter(d, "c") as w:
            for i in range(3):
                rec = make_clip(i, rng, T=T)
                rec.audio_N[:] *= 0.1
                if kind == "synth":
                    rec = clips.ClipRecord(**{**rec.__dict__, "ground_truth": _synth_gt(rng, T)})
                recs.append(rec)
                w.write_record(rec, codec="raw")
            if kind == "tracked":
                bad = make_clip(9, rng, T=T)
                bad.gaze_Tx2[3] = np.nan
                w.write_record(bad, codec="raw")
        clips.write_manifest(d / "manifest.json", clips.make_manifest("clip", w.shards))
        out[kind] = (d, recs)
    return out


def test_encoder_source_round_trip(clip_dirs, tmp_path):
    d, recs = clip_dirs["tracked"]
    fcfg = FaceConfig.tiny()
    face = ed.motion_only_model(fcfg, seed=0)  # building the whole tiny face model takes far longer
    cfg = ed.EncodeConfig(audio=audio_lib.AudioConfig.tiny(), frames_per_batch=8)  # 20 = 8 + 8 + 4 (padded)
    m = ed.encode_dataset(d, tmp_path, cfg, face_model=face)
    assert m["totals"]["records"] == 3 and m["dropped"] == {"nan_labels": 1}
    assert m["motion_names"][:6] == list(ed.POSE_NAMES) and len(m["motion_names"]) == fcfg.motion_dim
    got = list(clips.read_records(clips.read_manifest(tmp_path), tmp_path))
    gd, params = nnx.split(face.motion_encoder)
    encode_all = jax.jit(lambda x: nnx.merge(gd, params)(x))
    for rec, mrec in zip(recs, got):
        # Motion equals the face model's own encoder on the same frames (all at once, no padding).
        pose, dyn = encode_all(rec.frames_TxSxSx3.astype(np.float32) / 255.0)
        np.testing.assert_allclose(mrec.motion_TxM, np.concatenate([pose, dyn], -1), rtol=1e-4, atol=1e-5)
        # Audio: the per-frame features, split into their two 50 Hz slots.
        feats = audio_lib.frame_features(rec.audio_N, cfg.audio)
        assert mrec.feats_per_frame == 2 and mrec.audio_feat_UxF.shape == (2 * T, 16)
        np.testing.assert_array_equal(mrec.audio_feat_UxF.reshape(T, 32), feats)
        np.testing.assert_array_equal(mrec.gaze_Tx2, rec.gaze_Tx2)
        np.testing.assert_array_equal(mrec.emotion_52, rec.emotion_52)
        np.testing.assert_array_equal(mrec.extra["pose_Tx6"], rec.pose_Tx6)
        assert (mrec.identity, mrec.source, mrec.clip_index) == (rec.identity, rec.source, rec.clip_index)
        assert "gt_mouth_T" in mrec.extra
    # The stage-2 loader reads it.
    it = iter(loader.motion_windows(tmp_path, loader.LoaderConfig.tiny(), loader.WindowsConfig(window=8, context=2)))
    b = next(it)
    assert b["motion_LxM"].shape == (2, 10, fcfg.motion_dim) and b["audio_feat_LRxF"].shape == (2, 20, 16)


def test_labels_source_synth_and_tracked(clip_dirs, tmp_path):
    cfg = ed.EncodeConfig(motion_source="labels", audio=audio_lib.AudioConfig.tiny())
    d, recs = clip_dirs["synth"]
    m = ed.encode_dataset(d, tmp_path / "s", cfg)
    assert m["motion_names"] == list(ed.SYNTH_POSE_NAMES) + list(ed.SYNTH_DYN_NAMES)
    got = list(clips.read_records(m, tmp_path / "s"))
    rec, mrec = recs[1], got[1]
    i = m["motion_names"].index("mouth_open")
    np.testing.assert_array_equal(mrec.motion_TxM[:, i], rec.ground_truth["synth/mouth_open_T"])
    np.testing.assert_array_equal(mrec.motion_TxM[:, :6], rec.ground_truth["synth/pose_Tx6"])
    phi = m["motion_names"].index("gaze_phi")
    np.testing.assert_array_equal(mrec.motion_TxM[:, phi], rec.ground_truth["synth/gaze_Tx2"][:, 1])
    assert "gt_synth_mouth_open_T" in mrec.extra and "gt_synth_pose_Tx6" in mrec.extra
    assert not any("landmarks" in k or "meta" in k for k in mrec.extra)
    # Without SynthTalk ground truth: pose + the 52 blendshapes.
    d, recs = clip_dirs["tracked"]
    m = ed.encode_dataset(d, tmp_path / "t", cfg)
    assert len(m["motion_names"]) == 58 and m["motion_names"][6 + 25] == "jawOpen"
    mrec = next(clips.read_records(m, tmp_path / "t"))
    np.testing.assert_array_equal(mrec.motion_TxM[:, 6:], recs[0].blendshapes_Tx52)


def test_cli_errors_and_labels_run(clip_dirs, tmp_path, capsys):
    d, _ = clip_dirs["synth"]
    with pytest.raises(UserError, match="face-checkpoint"):
        ed.cli_main(["--data", str(d), "--out", str(tmp_path / "x")])
    assert ed.cli_main(["--data", str(d), "--out", str(tmp_path / "o"), "--motion-source", "labels",
                        "--audio-config", "tiny", "--no-progress"]) == 0  # fmt: skip
    assert "wrote 3 motion records" in capsys.readouterr().out
    with pytest.raises(UserError, match="clip records"):
        ed.cli_main(["--data", str(tmp_path / "o"), "--out", str(tmp_path / "y"), "--motion-source", "labels"])
