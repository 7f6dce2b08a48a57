"""Clip/motion records, shards and manifests (vasajax.data.clips): exact round trips, atomic shards."""

import json

import numpy as np
import pytest

from vasajax.data import clips
from vasajax.errors import UserError

T, S = 6, 32


def make_clip(i: int, rng: np.random.Generator, *, identity: str | None = None, T: int = T):
    f32 = np.float32
    return clips.ClipRecord(
        frames_TxSxSx3=rng.integers(0, 256, (T, S, S, 3), dtype=np.uint8),
        audio_N=rng.standard_normal(T * 640).astype(f32),
        pose_Tx6=rng.standard_normal((T, 6)).astype(f32),
        gaze_Tx2=rng.standard_normal((T, 2)).astype(f32),
        distance_T=rng.random(T).astype(f32),
        blendshapes_Tx52=rng.random((T, 52)).astype(f32),
        emotion_52=rng.random(52).astype(f32),
        identity=identity or f"id{i % 3}",
        source=f"videos/v{i}.mp4",
        clip_index=i,
        start_frame=i * T,
        ground_truth={"mouth_T": rng.random(T), "blink_T": rng.integers(0, 2, T).astype(np.int8)},
    )


def make_motion(i: int, rng: np.random.Generator, T: int = 20, M: int = 10) -> clips.MotionRecord:
    f32 = np.float32
    return clips.MotionRecord(
        motion_TxM=rng.standard_normal((T, M)).astype(f32),
        audio_feat_UxF=rng.standard_normal((2 * T, 8)).astype(f32),
        feats_per_frame=2,
        feature_kind="logmel8",
        gaze_Tx2=rng.standard_normal((T, 2)).astype(f32),
        distance_T=rng.random(T).astype(f32),
        emotion_52=rng.random(52).astype(f32),
        identity=f"id{i % 2}",
        source=f"v{i}.mp4",
        clip_index=i,
        extra={"pose_Tx6": rng.standard_normal((T, 6)).astype(f32)},
    )


def assert_clip_equal(a: clips.ClipRecord, b: clips.ClipRecord) -> None:
    arrays = ("frames_TxSxSx3", "audio_N", "pose_Tx6", "gaze_Tx2", "distance_T", "blendshapes_Tx52")
    arrays += ("emotion_52",)
    for f in arrays:
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), f
    for f in ("identity", "source", "clip_index", "start_frame"):
        assert getattr(a, f) == getattr(b, f), f
    assert sorted(a.ground_truth) == sorted(b.ground_truth)
    for k in a.ground_truth:
        assert a.ground_truth[k].dtype == b.ground_truth[k].dtype
        np.testing.assert_array_equal(a.ground_truth[k], b.ground_truth[k])


@pytest.mark.parametrize("codec", ["raw", "png"])
def test_clip_encode_decode_exact(codec):
    rec = make_clip(3, np.random.default_rng(0))
    assert_clip_equal(clips.decode(clips.encode(rec, codec=codec)), rec)


def test_jpeg_is_close_and_partial_frame_decode():
    rng = np.random.default_rng(1)
    # Smooth frames (JPEG is meant for images, not noise).
    yy, xx = np.mgrid[0:S, 0:S]
    frames = np.stack([np.stack([(xx * 4 + t * 9) % 256, yy * 4, (xx + yy) * 2], -1) for t in range(T)])
    rec = make_clip(0, rng)
    rec = clips.ClipRecord(**{**rec.__dict__, "frames_TxSxSx3": frames.astype(np.uint8)})
    data = clips.encode(rec, codec="jpeg", quality=95)
    enc = clips.EncodedRecord(data)
    two = enc.frames([4, 1])
    assert two.shape == (2, S, S, 3) and two.dtype == np.uint8
    err = np.abs(two.astype(int) - rec.frames_TxSxSx3[[4, 1]].astype(int)).mean()
    assert err < 4.0
    np.testing.assert_array_equal(enc.array("audio_N"), rec.audio_N)  # non-frame arrays stay exact
    assert enc.num_frames == T and enc.meta["identity"] == rec.identity
    with pytest.raises(IndexError):
        enc.frames([T])


def test_motion_record_round_trip_exact():
    rec = make_motion(1, np.random.default_rng(2))
    out = clips.decode(clips.encode(rec))
    assert isinstance(out, clips.MotionRecord)
    for f in ("motion_TxM", "audio_feat_UxF", "gaze_Tx2", "distance_T", "emotion_52"):
        np.testing.assert_array_equal(getattr(out, f), getattr(rec, f))
    np.testing.assert_array_equal(out.extra["pose_Tx6"], rec.extra["pose_Tx6"])
    assert (out.feats_per_frame, out.feature_kind, out.identity) == (2, "logmel8", "id1")


def test_schema_is_checked():
    rec = make_clip(0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="audio_N"):
        clips.ClipRecord(**{**rec.__dict__, "audio_N": rec.audio_N[:-1]})
    with pytest.raises(ValueError, match="frames"):
        clips.ClipRecord(**{**rec.__dict__, "frames_TxSxSx3": rec.frames_TxSxSx3.astype(np.float32)})
    with pytest.raises(ValueError, match="not a vasajax record"):
        clips.decode(b"JUNK" + bytes(20))
    bad = bytearray(clips.encode(rec, codec="raw"))
    bad[8:20] = b'{"version":9'  # header starts with {"version":1
    with pytest.raises(UserError, match="version 9"):
        clips.decode(bytes(bad))


@pytest.mark.parametrize("split", [False, True])
def test_shard_round_trip_rollover_and_manifest(tmp_path, split):
    rng = np.random.default_rng(4)
    recs = [make_clip(i, rng) for i in range(7)]
    one = sum(len(p) for p in clips.encode_parts(recs[0], codec="png", split_frames=split))
    with clips.ShardWriter(tmp_path, "part", max_bytes=int(2.5 * one)) as w:
        for r in recs:
            w.write_record(r, codec="png", split_frames=split)
    assert [len(s["entries"]) for s in w.shards] == [2, 2, 2, 1]
    assert [s["array_records"] for s in w.shards] == [2 * (1 + split * T)] * 3 + [1 + split * T]
    assert not list(tmp_path.glob("*.tmp"))
    manifest = clips.make_manifest("clip", w.shards, dropped={"no_face": 2}, config={"size": S})
    clips.write_manifest(tmp_path / "manifest.json", manifest)
    back = clips.read_manifest(tmp_path)
    assert back == json.loads(json.dumps(manifest))
    totals = back["totals"]
    assert totals["records"] == 7 and totals["frames"] == 7 * T and totals["identities"] == 3
    assert back["dropped"] == {"no_face": 2}
    assert [e["record"] for e in back["records"]] == [k * (1 + split * T) for k in range(7)]
    got = list(clips.read_records(back, tmp_path))
    assert len(got) == 7
    for a, b, entry in zip(got, recs, back["records"]):
        assert_clip_equal(a, b)
        assert entry["source"] == b.source and entry["frames"] == T
        assert entry["labels"]["pose"]["mean"] == pytest.approx(b.pose_Tx6.mean(0), abs=1e-4)


def test_split_frames_need_their_parts():
    rec = make_clip(0, np.random.default_rng(6))
    parts = clips.encode_parts(rec, codec="png", split_frames=True)
    assert len(parts) == 1 + T
    enc = clips.EncodedRecord(parts[0], lambda t: parts[1 + t])
    np.testing.assert_array_equal(enc.frames([5, 0]), rec.frames_TxSxSx3[[5, 0]])
    with pytest.raises(ValueError, match="frame_part"):
        clips.EncodedRecord(parts[0]).frames([0])
    with pytest.raises(ValueError, match="image codec"):
        clips.encode_parts(rec, codec="raw", split_frames=True)


def test_shard_writer_aborts_on_error(tmp_path):
    rng = np.random.default_rng(5)
    with pytest.raises(RuntimeError):
        with clips.ShardWriter(tmp_path, "bad") as w:
            w.write_record(make_clip(0, rng))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_read_manifest_errors(tmp_path):
    with pytest.raises(UserError, match="no manifest"):
        clips.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "vasajax-records", "version": 99}')
    with pytest.raises(UserError, match="version 99"):
        clips.read_manifest(tmp_path)
