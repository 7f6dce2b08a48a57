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


def test_training_learns_a_toy_pairing_and_round_trips(toy, tmp_path):
    cfg = capp.CappConfig.tiny()
    model0 = capp.CappModel(cfg, rngs=nnx.Rngs(0))
    p, a, neg = capp_train.sample_batch(toy, 16, cfg.window, np.random.default_rng(5), jitter_deg=0.0)
    assert neg.shape == p.shape and not np.allclose(neg, p)
    emb_p, emb_a = model0(p, a)
    assert emb_p.shape == emb_a.shape == (16, cfg.embed)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(emb_p), axis=-1), 1, rtol=1e-5)
    loss0 = float(capp.clip_loss(model0, p, a, neg)[0])
    model, log = capp_train.train(cfg, toy, steps=40, batch=16, lr=3e-3, log_every=40)
    loss1 = float(capp.clip_loss(model, p, a, neg)[0])
    assert loss1 < loss0 - 0.5, (loss0, loss1)
    paired = np.mean([capp.capp_score(model, pose, feats) for pose, feats in toy[:6]])
    mismatched = np.mean([capp.capp_score(model, toy[i][0], toy[i + 1][1]) for i in range(6)])
    assert paired > mismatched + 0.25, (paired, mismatched)
    pose, feats = toy[0]
    aligned = capp.capp_score(model, pose, feats)
    capp.save(model, tmp_path / "ck", {"note": "toy"})
    again = capp.load(tmp_path / "ck")
    assert capp.capp_score(again, pose, feats) == pytest.approx(aligned, abs=1e-5)
    assert np.isnan(capp.capp_score(again, pose[:10], feats[:10]))
    with pytest.raises(UserError, match="CAPP checkpoint"):
        capp.load(tmp_path)


def test_presets_build_abstractly():
    for name, make in capp.PRESETS.items():
        model = nnx.eval_shape(lambda make=make: capp.CappModel(make(), rngs=nnx.Rngs(0)))
        assert model.cfg.window == (25 if name == "tiny" else 75)
