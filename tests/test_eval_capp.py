"""CAPP (contrastive audio-pose model): shapes, pose features, learning a toy pairing, checkpoint round trip."""

import numpy as np
import pytest
from flax import nnx

from vasajax.errors import UserError
from vasajax.eval import capp, capp_train


@pytest.fixture(scope="module")
def toy():
    """Clips whose 'audio' is a fixed random projection of the pose's frame-to-frame motion, plus noise."""
    rng = np.random.default_rng(0)
    proj = rng.normal(size=(3, 32))
    data = []
    for _ in range(24):
        pose = np.cumsum(np.radians(rng.normal(0, 0.5, (60, 3))), 0)
        motion = np.diff(pose, axis=0, prepend=pose[:1])
        data.append((pose, (np.degrees(motion) @ proj + 0.3 * rng.normal(size=(60, 32))).astype(np.float32)))
    return data


def test_pose_features_ignore_static_head_orientation():
    rng = np.random.default_rng(1)
    pose = np.radians(rng.normal(0, 3, (30, 3)))
    f = capp.pose_features(pose)
    assert f.shape == (30, 6)
    np.testing.assert_allclose(capp.pose_features(pose + np.radians([20.0, -5.0, 3.0])), f, atol=1e-5)
    holes = pose.copy()
    holes[4] = np.nan
    assert np.isfinite(capp.pose_features(holes)).all()
    with pytest.raises(UserError):
        capp.pose_features(np.full((5, 3), np.nan))
    assert capp.windows(100, 75) == [0, 25] and capp.windows(74, 75) == []


@pytest.mark.slow  # one train-step compile: ~10 s on an idle 2-core CPU, minutes when it is busy
def test_training_learns_a_toy_pairing_and_round_trips(toy, tmp_path):
    cfg = capp.CappConfig.tiny()
    p, a, neg = capp_train.sample_batch(toy, 16, cfg.window, np.random.default_rng(5), jitter_deg=0.0)
    assert p.shape == neg.shape == (16, cfg.window, 6) and a.shape == (16, cfg.window, 32) and not np.allclose(neg, p)
    model, log = capp_train.train(cfg, toy, steps=60, batch=16, lr=3e-3, log_every=60)
    pose, feats = toy[0]
    starts = capp.windows(len(pose), cfg.window)  # the batch capp_score uses: one compiled shape
    wp = np.stack([capp.pose_features(pose[s : s + cfg.window]) for s in starts])
    emb_p, emb_a = capp._embed(*nnx.split(model), wp, np.stack([feats[s : s + cfg.window] for s in starts]))
    assert emb_p.shape == emb_a.shape == (len(starts), cfg.embed)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(emb_p), axis=-1), 1, rtol=1e-5)
    chance = (np.log(16) + np.log(32)) / 2  # random embeddings: pose→audio over B, audio→pose over 2B
    assert log[-1]["loss"] < 0.6 * chance, log
    paired = np.mean([capp.capp_score(model, pose, feats) for pose, feats in toy[:6]])
    mismatched = np.mean([capp.capp_score(model, toy[i][0], toy[i + 1][1]) for i in range(6)])
    assert paired > mismatched + 0.25, (paired, mismatched)
    aligned = capp.capp_score(model, pose, feats)
    capp.save(model, tmp_path / "ck", {"note": "toy"})
    again = capp.load(tmp_path / "ck")
    assert capp.capp_score(again, pose, feats) == pytest.approx(aligned, abs=1e-5)
    assert np.isnan(capp.capp_score(again, pose[:10], feats[:10]))
    with pytest.raises(UserError, match="CAPP checkpoint"):
        capp.load(tmp_path)


def test_paper_preset_builds_abstractly():
    model = nnx.eval_shape(lambda: capp.CappModel(capp.CappConfig.paper(), rngs=nnx.Rngs(0)))
    assert model.cfg.window == 75 and len(model.pose.blocks) == 6  # 3 s windows, 6-layer pose encoder (VASA-1)
    assert model.audio.proj.kernel.shape == (1536, 256)
