"""Latent and condition ablation helpers (vasajax.eval.ablation): swaps, holds, decode batching, seam jumps."""

import jax.numpy as jnp
import numpy as np
import pytest

from vasajax.errors import UserError
from vasajax.eval import ablation as ab
from vasajax.face.model import FaceLatent


def _latent(value: float, batch: int = 1) -> FaceLatent:
    return FaceLatent(
        appearance=jnp.full((batch, 2, 3, 3, 4), value),
        identity=jnp.full((batch, 5), value + 0.1),
        pose=jnp.full((batch, 6), value + 0.2),
        dyn=jnp.full((batch, 3), value + 0.3),
    )


def test_swap_takes_only_the_named_factors():
    a, b = _latent(0.0), _latent(1.0)
    m = ab.swap(a, b, ["pose", "identity"])
    np.testing.assert_array_equal(m.pose, b.pose)
    np.testing.assert_array_equal(m.identity, b.identity)
    np.testing.assert_array_equal(m.appearance, a.appearance)
    np.testing.assert_array_equal(m.dyn, a.dyn)
    assert ab.swap(a, b, []).appearance is a.appearance
    with pytest.raises(UserError, match="unknown latent factor"):
        ab.swap(a, b, ["gaze"])


def test_stack_and_decode_batched_pad_to_one_shape():
    lats = ab.stack([_latent(float(i)) for i in range(7)])
    assert lats.appearance.shape == (7, 2, 3, 3, 4)
    shapes = []

    def decode(params, app, ident, pose, dyn):  # frame value = the latent's pose value
        shapes.append(pose.shape)
        return jnp.broadcast_to(pose[:, :1, None, None], (pose.shape[0], 4, 4, 3))

    frames = ab.decode_batched(decode, None, lats, batch=3)
    assert frames.shape == (7, 4, 4, 3)
    np.testing.assert_allclose(frames[:, 0, 0, 0], np.arange(7) + 0.2, rtol=1e-6)
    assert shapes == [(3, 6)] * 3  # 3 + 3 + 1 (padded): one jit shape
    motion = np.arange(4 * 9, dtype=np.float32).reshape(4, 9)
    frames = ab.decode_motion(decode, None, _latent(0.0), motion, batch=3)
    np.testing.assert_array_equal(frames[:, 0, 0, 0], motion[:, 0])
    with pytest.raises(UserError, match="pose \\+ dyn"):
        ab.with_motion(_latent(0.0), motion[:, :5])


def test_hold_retarget_and_spin():
    rng = np.random.default_rng(0)
    m = rng.standard_normal((10, 9)).astype(np.float32)
    h = ab.hold(m, "pose", frame=3)
    np.testing.assert_array_equal(h[:, :6], np.tile(m[3, :6], (10, 1)))
    np.testing.assert_array_equal(h[:, 6:], m[:, 6:])
    h = ab.hold(m, "dyn", value=[1.0, 2.0, 3.0])
    np.testing.assert_array_equal(h[:, 6:], np.tile([1.0, 2.0, 3.0], (10, 1)))
    np.testing.assert_array_equal(h[:, :6], m[:, :6])
    with pytest.raises(UserError):
        ab.hold(m, "gaze")
    mean = rng.standard_normal(9)
    pose0 = rng.standard_normal(6)
    r = ab.retarget(m, pose0, mean)
    np.testing.assert_allclose(r[:, :6], m[:, :6] + pose0 - mean[:6], atol=1e-5)
    np.testing.assert_array_equal(r[:, 6:], m[:, 6:])
    mine, theirs = np.array([1.0, 0.0, -1.0]), np.array([0.5, 0.5, 0.5])  # relative dynamics: mine + (m − theirs)
    r = ab.retarget(m, pose0, mean, portrait_dyn=mine, reference_dyn=theirs)
    np.testing.assert_allclose(r[:, 6:], m[:, 6:] + mine - theirs, atol=1e-6)
    np.testing.assert_allclose(r[:, :6], m[:, :6] + pose0 - mean[:6], atol=1e-5)
    with pytest.raises(ValueError, match="both"):
        ab.retarget(m, pose0, mean, portrait_dyn=mine)
    s = ab.spin_pose(40, pose0, yaw_deg=30.0)
    assert s.shape == (40, 6)
    np.testing.assert_allclose(np.degrees(np.abs(s[:, 0] - pose0[0])).max(), 30.0, rtol=1e-3)
    np.testing.assert_allclose(s[:, 1:], np.tile(pose0[1:], (40, 1)), rtol=1e-6)


def test_motion_effect_and_seam_jumps():
    x = np.zeros((12, 2))
    assert ab.motion_effect(x, x) == 0.0
    assert ab.motion_effect(x, x + 2.0, std_M=np.array([2.0, 2.0])) == pytest.approx(1.0)
    # A ramp (change 1 per frame) with a jump of 5 at the start of each window of 4 frames.
    y = np.arange(12, dtype=np.float64)[:, None] + 5.0 * (np.arange(12) // 4)[:, None]
    j = ab.seam_jumps(y, 4)
    assert j["seams"] == 2 and j["pairs"] == 11
    assert j["seam"] == pytest.approx(6.0) and j["inside"] == pytest.approx(1.0) and j["ratio"] == pytest.approx(6.0)
    assert ab.seam_frames(12, 4) == [4, 8]
    assert np.isnan(ab.seam_jumps(y[:4], 4)["seam"])
