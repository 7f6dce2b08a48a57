"""grain pipelines (vasajax.data.loader): sharding, determinism, exact resume, pair/window sampling."""

import numpy as np
import pytest

from test_clips import make_clip, make_motion
from vasajax.data import clips, loader
from vasajax.errors import UserError

N_CLIPS = 8


def _clip_dir(d, split: bool):
    rng = np.random.default_rng(0)
    with clips.ShardWriter(d, "c", max_bytes=150_000) as w:
        for i in range(N_CLIPS):
            rec = make_clip(i, rng, identity=f"id{i % 3}")
            w.write_record(rec, codec="png" if split else "raw", split_frames=split)
    assert len(w.shards) > 1  # the global index must run across several files
    clips.write_manifest(d / "manifest.json", clips.make_manifest("clip", w.shards))
    return d


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return _clip_dir(tmp_path_factory.mktemp("clips"), split=False)


@pytest.fixture(scope="module")
def split_clip_dir(tmp_path_factory):
    return _clip_dir(tmp_path_factory.mktemp("split"), split=True)


@pytest.fixture(scope="module")
def motion_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("motion")
    rng = np.random.default_rng(1)
    with clips.ShardWriter(d, "m") as w:
        for i, T in enumerate([20, 30, 5, 24]):  # the 5-frame record is too short for a window
            w.write_record(make_motion(i, rng, T=T))
    clips.write_manifest(d / "manifest.json", clips.make_manifest("motion", w.shards))
    return d


def take(it, n):
    return [next(it) for _ in range(n)]


def test_two_process_shards_are_disjoint_and_cover(clip_dir):
    seen = []
    for p in range(2):
        cfg = loader.LoaderConfig(batch_size=1, num_epochs=1, shard_index=p, shard_count=2, seed=3)
        batches = list(loader.face_pairs(clip_dir, cfg))
        assert len(batches) == N_CLIPS // 2
        seen.append({int(b["record"][0]) for b in batches})
    assert seen[0].isdisjoint(seen[1])
    assert seen[0] | seen[1] == set(range(N_CLIPS))


@pytest.mark.parametrize("split", [False, True])
def test_pairs_content_matches_records(clip_dir, split_clip_dir, split):
    if split:  # frames stored as separate ArrayRecord records: same content, same stream
        clip_dir = split_clip_dir
    cfg = loader.LoaderConfig(batch_size=4, shard_index=0, shard_count=1, seed=1)
    it = iter(loader.face_pairs(clip_dir, cfg, loader.PairsConfig(min_gap=2)))
    b = next(it)
    assert b["source"].shape == (4, 32, 32, 3) and b["source"].dtype == np.uint8
    assert b["cross"].shape == (4, 32, 32, 3)
    src = loader.RecordSource(clip_dir)
    for k in range(4):
        rec = src.record(int(b["record"][k]))
        i, j = (int(x) for x in b["frame_ij_2"][k])
        assert abs(i - j) >= 2
        np.testing.assert_array_equal(b["source"][k], rec.frames_TxSxSx3[i])
        np.testing.assert_array_equal(b["driver"][k], rec.frames_TxSxSx3[j])
        np.testing.assert_array_equal(b["driver_pose_6"][k], rec.pose_Tx6[j])
        np.testing.assert_array_equal(b["source_blendshapes_52"][k], rec.blendshapes_Tx52[i])
        np.testing.assert_array_equal(b["driver_blendshapes_52"][k], rec.blendshapes_Tx52[j])
        assert "landmarks_Tx478x3" not in rec.ground_truth and "driver_mouth_4" not in b  # no tracker landmarks
        assert src.identity_names[b["identity"][k]] == rec.identity
        assert b["cross_identity"][k] != b["identity"][k]
        other = src.record(int(b["cross_record"][k]))
        assert src.identity_names[b["cross_identity"][k]] == other.identity
        assert any(np.array_equal(b["cross"][k], f) for f in other.frames_TxSxSx3)
    # Same seed → same stream; another seed → another one.
    again = next(iter(loader.face_pairs(clip_dir, cfg, loader.PairsConfig(min_gap=2))))
    np.testing.assert_array_equal(again["frame_ij_2"], b["frame_ij_2"])
    other = loader.LoaderConfig(batch_size=4, shard_index=0, shard_count=1, seed=2)
    diff = next(iter(loader.face_pairs(clip_dir, other, loader.PairsConfig(min_gap=2))))
    assert not np.array_equal(diff["record"], b["record"]) or not np.array_equal(diff["frame_ij_2"], b["frame_ij_2"])


def test_iterator_resume_is_exact(clip_dir):
    cfg = loader.LoaderConfig(batch_size=3, shard_index=1, shard_count=2, seed=7)  # repeats forever
    ds = loader.face_pairs(clip_dir, cfg)
    it = iter(ds)
    take(it, 3)  # crosses an epoch boundary (4 clips per shard)
    state = loader.state_to_json(it.get_state())
    expected = take(it, 3)
    fresh = iter(loader.face_pairs(clip_dir, cfg))
    fresh.set_state(loader.state_from_json(state))
    for a, b in zip(take(fresh, 3), expected):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_pairs_need_two_identities(tmp_path):
    rng = np.random.default_rng(0)
    with clips.ShardWriter(tmp_path, "one") as w:
        for i in range(2):
            w.write_record(make_clip(i, rng, identity="solo"), codec="raw")
    clips.write_manifest(tmp_path / "manifest.json", clips.make_manifest("clip", w.shards))
    cfg = loader.LoaderConfig(batch_size=1, shard_index=0, shard_count=1)
    with pytest.raises(UserError, match="two or more"):
        loader.face_pairs(tmp_path, cfg)
    b = next(iter(loader.face_pairs(tmp_path, cfg, loader.PairsConfig(cross_identity=False, size=16))))
    assert "cross" not in b and b["source"].shape == (1, 16, 16, 3)


def test_motion_windows(motion_dir):
    wcfg = loader.WindowsConfig(window=8, context=2, stride=6)
    rec_W, start_W = loader.window_index(np.array([20, 30, 5, 24]), wcfg)
    assert 2 not in rec_W and np.all(start_W + 10 <= np.array([20, 30, 5, 24])[rec_W])
    cfg = loader.LoaderConfig(batch_size=2, num_epochs=1, shard_index=0, shard_count=1, drop_remainder=False)
    batches = list(loader.motion_windows(motion_dir, cfg, wcfg))
    assert sum(len(b["record"]) for b in batches) == len(rec_W)
    src = loader.RecordSource(motion_dir)
    b = batches[0]
    assert b["motion_LxM"].shape == (2, 10, 10) and b["audio_feat_LRxF"].shape == (2, 20, 8)
    for k in range(2):
        rec = src.record(int(b["record"][k]))
        s = int(b["start"][k])
        np.testing.assert_array_equal(b["motion_LxM"][k], rec.motion_TxM[s : s + 10])
        np.testing.assert_array_equal(b["audio_feat_LRxF"][k], rec.audio_feat_UxF[2 * s : 2 * s + 20])
        np.testing.assert_array_equal(b["gaze_Lx2"][k], rec.gaze_Tx2[s : s + 10])
    with pytest.raises(UserError, match="W\\+K"):
        loader.motion_windows(motion_dir, cfg, loader.WindowsConfig(window=40, context=5))
    with pytest.raises(UserError, match="stage 1 needs clip records"):
        loader.face_pairs(motion_dir, cfg)


def test_worker_processes_resume_exactly(clip_dir):
    cfg = loader.LoaderConfig(batch_size=2, shard_index=0, shard_count=1, seed=5, worker_count=2)
    it = iter(loader.face_pairs(clip_dir, cfg))
    try:
        first = take(it, 2)
        state = loader.state_to_json(it.get_state())
        expected = take(it, 3)
    finally:
        it.close()
    assert all(0 <= r < N_CLIPS for b in first + expected for r in b["record"])
    fresh = iter(loader.face_pairs(clip_dir, cfg))
    try:
        fresh.set_state(loader.state_from_json(state))
        for a, b in zip(take(fresh, 3), expected):
            np.testing.assert_array_equal(a["record"], b["record"])
            np.testing.assert_array_equal(a["driver"], b["driver"])
    finally:
        fresh.close()
