"""SynthTalk straight into clip shards (vasajax.data.synth.shards): split planning, the `vasajax synth --shards`
command end to end (stage-1 loader, stage-2 window schema, tracker labels vs. ground truth), same bytes with
one or two worker processes, resume, and the fixed-length cut / dropped-clip paths with a fake tracker."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from vasajax import cli
from vasajax.data import clips, loader
from vasajax.data.synth import shards as synth_shards
from vasajax.data.synth.cli import cli_main
from vasajax.data.synth.clip import SynthClip
from vasajax.data.synth.config import SynthConfig
from vasajax.data.synth.inputs import load_portraits, load_sentences
from vasajax.data.synth.portrait import Portrait, prepare_portraits
from vasajax.errors import UserError

SENTENCES = """# test sentences
Hi there.
Yes, please.
Good day.
# HELD-OUT: evaluation only
See you.
Thank you.
"""
CFG = synth_shards.ShardsConfig(  # what the command line of `_args` asks for
    synth=dataclasses.replace(SynthConfig(), size=96), num_train=2, num_heldout=2, codec="png", clips_per_unit=1
)


@pytest.fixture(scope="module")
def sentences(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("text") / "sentences.txt"
    p.write_text(SENTENCES)
    return p


def _args(out: Path, sentences: Path, *extra: str) -> list[str]:
    return ["--shards", "--out", str(out), "--num-clips", "2", "--num-heldout", "2", "--size", "96",
            "--sentences", str(sentences), "--codec", "png", "--clips-per-shard", "1", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def portraits() -> list[Portrait]:
    from vasajax import modelfiles

    try:
        modelfiles.face_landmarker_path()
    except UserError as e:
        pytest.skip(f"needs the MediaPipe model file: {e}")
    return prepare_portraits(load_portraits(), CFG.synth)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, sentences, portraits) -> Path:
    out = tmp_path_factory.mktemp("synthtalk")
    synth_shards.write_dataset(out, CFG, portraits, sentences_path=sentences)
    return out


def test_plan_split_keeps_heldout_factors_out_of_train():
    cfg = dataclasses.replace(synth_shards.ShardsConfig.small(), heldout_portrait="p2", seed=7)
    train_s, held_s = load_sentences("train"), load_sentences("heldout")
    portraits = ["p0", "p1", "p2"]
    train = synth_shards.plan_split("train", 400, train_s, portraits, cfg)
    held = synth_shards.plan_split("heldout", 8, held_s, portraits, cfg)
    assert {s["text"] for s in train} <= set(train_s) and {s["text"] for s in held} <= set(held_s)
    assert len({s["text"] for s in train[:180]}) == 180  # dealt: every sentence before any repeats
    assert {s["portrait"] for s in train} == {"p0", "p1"} and all(s["heldout"] == [] for s in train)
    assert "f5" not in {s["voice"]["variant"] for s in train} and len({s["voice"]["variant"] for s in train}) == 11
    assert [s["heldout"] for s in held[:4]] == [
        ["sentence"],
        ["sentence", "voice"],
        ["sentence", "portrait"],
        ["sentence", "voice", "portrait"],
    ]
    for s in held:
        assert (s["portrait"] == "p2") == ("portrait" in s["heldout"])
        is_held_voice = (s["voice"]["name"], s["voice"]["variant"]) == ("en-gb-scotland", "f5")
        assert is_held_voice == ("voice" in s["heldout"])
    assert synth_shards.plan_split("train", 400, train_s, portraits, cfg) == train  # deterministic
    assert synth_shards.plan_split("train", 5, train_s, portraits, dataclasses.replace(cfg, seed=8)) != train[:5]
    with pytest.raises(UserError, match="not among the portraits"):
        synth_shards.plan_split("train", 1, train_s, ["p0"], cfg)
    with pytest.raises(UserError, match="only one"):
        synth_shards.plan_split("train", 1, train_s, ["p2"], cfg)
    with pytest.raises(UserError, match="LANGUAGE\\+VARIANT"):
        synth_shards.parse_voice("klingon+x9")


def test_cli_rejects_mixing_heldout_sentences_into_training(tmp_path, sentences, capsys):
    assert cli.main(["synth", *_args(tmp_path, sentences), "--split", "all"]) == 2
    assert "held-out sentences in training" in capsys.readouterr().err
    assert cli.main(["synth", *_args(tmp_path, sentences), "--heldout-voice", "en+zz"]) == 2
    assert not any(tmp_path.iterdir())


def test_shards_hold_prep_schema_labels_and_ground_truth(dataset, sentences):
    held_texts = set(load_sentences("heldout", sentences))
    for split, n in (("train", 2), ("heldout", 2)):
        m = clips.read_manifest(dataset / split)
        assert m["kind"] == "clip" and m["totals"]["records"] == n and not m["dropped"]
        texts = {r["synth"]["text"] for r in m["records"]}
        assert (texts <= held_texts) if split == "heldout" else not (texts & held_texts)
        src = loader.RecordSource(dataset / split)
        for k, entry in enumerate(m["records"]):
            assert entry["parts"] == 1 + entry["frames"]  # split frames, as prep writes them
            rec = src.record(k)
            T = rec.num_frames
            assert rec.size == 96 and T == entry["frames"] >= 25 and rec.audio_N.shape == (T * 640,)
            assert rec.identity in ("astronaut", "grace_hopper") and rec.source == f"{split}/clip{k:05d}"
            assert np.sqrt(np.mean(rec.audio_N**2)) > 0.01
            for a in (rec.pose_Tx6, rec.gaze_Tx2, rec.distance_T, rec.blendshapes_Tx52, rec.emotion_52):
                assert np.isfinite(a).all()
            np.testing.assert_allclose(rec.emotion_52, rec.blendshapes_Tx52.mean(0), atol=1e-6)
            gt = rec.ground_truth
            meta = synth_shards.synth_meta(rec)
            assert meta["text"] == entry["synth"]["text"] and meta["num_frames"] == T
            assert gt["synth/pose_Tx6"].shape == (T, 6) and gt["synth/mouth_open_T"].shape == (T,)
            assert gt["synth/phoneme_T"].max() < len(meta["phoneme_names"])
            # Labels come from the tracker on the rendered frames; the truth is mapped to the same crop units.
            track, truth = gt["landmarks_Tx478x3"].astype(float), gt["synth/landmarks_Tx478x3"].astype(float)
            assert track.shape == truth.shape == (T, 478, 3)
            err = np.abs(track[:, :468, :2] - truth[:, :468, :2]).mean()
            assert err < 0.03, f"tracker vs rendered landmarks differ by {err:.3f} crop units"
            # Same units (eye distance / S); the tracker's depth makes its distance ~10 % larger than the truth.
            assert 0.8 < np.median(rec.distance_T / gt["synth/distance_T"]) < 1.25
        voices = [r["synth"]["voice"] for r in m["records"]]
        assert ("en-gb-scotland+f5" in voices) == (split == "heldout")


def test_shards_feed_the_stage1_loader_and_stage2_windows(dataset, tmp_path):
    cfg = loader.LoaderConfig(batch_size=2, shard_index=0, shard_count=1, seed=1)
    b = next(iter(loader.face_pairs(dataset / "train", cfg)))
    assert b["source"].shape == b["driver"].shape == b["cross"].shape == (2, 96, 96, 3)
    assert np.all(b["identity"] != b["cross_identity"])
    # The tracker's lip landmarks give each driver a mouth box (the mouth-region loss), in the lower face.
    box = b["driver_mouth_4"]
    assert box.shape == (2, 4) and np.all(box[:, 2] > box[:, 0]) and np.all(box[:, 3] > box[:, 1])
    assert np.all((box[:, 1] + box[:, 3]) / 2 > 0.5) and np.all(np.abs((box[:, 0] + box[:, 2]) / 2 - 0.5) < 0.15)
    # ... and both frames' FLOW_LANDMARKS (the landmark-flow loss), lips first, inside the crop.
    k = len(loader.FLOW_LANDMARKS)
    lips = b["driver_landmarks_Kx2"][:, : len(loader.LIP_LANDMARKS)]
    assert b["source_landmarks_Kx2"].shape == b["driver_landmarks_Kx2"].shape == (2, k, 2)
    assert np.all(lips >= box[:, None, :2]) and np.all(lips <= box[:, None, 2:])
    # Stage 2 reads motion records that `encode-dataset` derives from clip records: stand in for the motion
    # encoder with the tracked pose + blendshapes and for audio features with raw 320-sample frames (2 per
    # video frame), then check that windows line up with the clip's audio.
    recs = list(clips.read_records(clips.read_manifest(dataset / "train"), dataset / "train"))
    with clips.ShardWriter(tmp_path, "m") as w:
        for rec in recs:
            motion = np.concatenate([rec.pose_Tx6, rec.blendshapes_Tx52], 1)
            feats = rec.audio_N.reshape(2 * rec.num_frames, 320)
            w.write_record(
                clips.MotionRecord(
                    motion_TxM=motion,
                    audio_feat_UxF=feats,
                    feats_per_frame=2,
                    feature_kind="raw320",
                    gaze_Tx2=rec.gaze_Tx2,
                    distance_T=rec.distance_T,
                    emotion_52=rec.emotion_52,
                    identity=rec.identity,
                    source=rec.source,
                    clip_index=rec.clip_index,
                )  # fmt: skip
            )
    clips.write_manifest(tmp_path / "manifest.json", clips.make_manifest("motion", w.shards))
    wb = next(iter(loader.motion_windows(tmp_path, cfg, loader.WindowsConfig.tiny())))
    assert wb["motion_LxM"].shape == (2, 10, 58) and wb["audio_feat_LRxF"].shape == (2, 20, 320)
    for k in range(2):
        rec, s = recs[int(wb["record"][k])], int(wb["start"][k])
        np.testing.assert_array_equal(wb["audio_feat_LRxF"][k].ravel(), rec.audio_N[s * 640 : (s + 10) * 640])
        np.testing.assert_array_equal(wb["gaze_Lx2"][k], rec.gaze_Tx2[s : s + 10])


def test_same_bytes_with_two_workers_and_resume_from_the_command_line(dataset, sentences, portraits, tmp_path):
    out = tmp_path / "again"
    synth_shards.write_dataset(out, CFG, portraits, sentences_path=sentences, splits=["train"], workers=2)
    files = sorted(p.relative_to(out) for p in out.rglob("*.array_record"))
    assert len(files) == 2 and not (out / "heldout").exists()
    for f in files:
        assert (out / f).read_bytes() == (dataset / f).read_bytes(), f
    assert clips.read_manifest(out / "train")["records"] == clips.read_manifest(dataset / "train")["records"]
    # The command line, asked for one clip more, finds the first two units finished (their shards are not
    # rewritten) and renders only the new clip.
    mtimes = {f: (out / f).stat().st_mtime_ns for f in files}
    assert cli_main([*_args(out, sentences), "--split", "train", "--num-clips", "3"]) == 0
    assert {f: (out / f).stat().st_mtime_ns for f in files} == mtimes
    m = clips.read_manifest(out / "train")
    assert m["totals"]["records"] == 3 and len(list(out.rglob("*.array_record"))) == 3
    assert m["records"][:2] == clips.read_manifest(dataset / "train")["records"]


class _FakeTracker:
    """Returns a fixed face, except on ``miss`` frames (no face)."""

    def __init__(self, obs, miss=()):
        self.obs, self.miss, self.t = obs, set(miss), 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def detect(self, frame, timestamp_ms=None):
        self.t += 1
        return [] if self.t - 1 in self.miss else [self.obs]


def test_fixed_length_records_and_dropped_clips():
    from vasajax.facetrack.tracker import FaceObservation

    rng = np.random.default_rng(0)
    T, S = 50, 32
    lm = rng.uniform(8, 24, (478, 3)).astype(np.float32)
    obs = FaceObservation(
        landmarks=lm, blendshapes=rng.random(52).astype(np.float32), matrix=np.eye(4, dtype=np.float32),
        box=(8.0, 8.0, 24.0, 24.0), image_hw=(S, S),
    )  # fmt: skip
    gt = {"pose": rng.random((T, 6)).astype(np.float32), "landmarks": rng.random((T, 478, 3)).astype(np.float32) * S}
    gt["phoneme"] = rng.integers(-1, 3, T).astype(np.int32)
    clip = SynthClip(
        frames=rng.integers(0, 256, (T, S, S, 3), dtype=np.uint8),
        audio=rng.standard_normal(T * 640).astype(np.float32), fps=25.0, ground_truth=gt,
        meta={"text": "x", "num_frames": T},
    )  # fmt: skip
    spec = {"name": "clip00003", "split": "train", "portrait": "p"}
    cfg = dataclasses.replace(synth_shards.ShardsConfig.tiny(), clip_frames=20)
    recs, reason = synth_shards.clip_records(clip, spec, cfg, lambda: _FakeTracker(obs))
    assert reason is None and [(r.start_frame, r.clip_index, r.num_frames) for r in recs] == [(0, 0, 20), (20, 1, 20)]
    r = recs[1]
    np.testing.assert_array_equal(r.frames_TxSxSx3, clip.frames[20:40])
    np.testing.assert_array_equal(r.audio_N, clip.audio[20 * 640 : 40 * 640])
    np.testing.assert_array_equal(r.ground_truth["synth/pose_Tx6"], gt["pose"][20:40])
    np.testing.assert_array_equal(r.ground_truth["synth/phoneme_T"], gt["phoneme"][20:40])
    np.testing.assert_allclose(r.ground_truth["synth/landmarks_Tx478x3"], gt["landmarks"][20:40] / S, atol=1e-3)
    assert synth_shards.synth_meta(r) == clip.meta and r.source == "train/clip00003" and r.identity == "p"
    np.testing.assert_allclose(r.ground_truth["crop_Tx3"], np.tile([S / 2, S / 2, S], (20, 1)))
    parts = clips.encode_parts(r, codec="png", split_frames=True)
    assert synth_shards.synth_meta(clips.decode(parts[0], parts[1:])) == clip.meta  # survives the round trip
    assert synth_shards.clip_records(clip, spec, cfg, lambda: _FakeTracker(obs, miss=[33])) == ([], "no_face")
    long = dataclasses.replace(cfg, clip_frames=60)
    assert synth_shards.clip_records(clip, spec, long, lambda: _FakeTracker(obs)) == ([], "too_short")
