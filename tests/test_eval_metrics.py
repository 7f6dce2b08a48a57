"""Eval metrics on known inputs: ΔP, gaze/distance errors, the lip-sync offset search, FVD's Fréchet distance."""

import numpy as np
import pytest

from vasajax.errors import UserError
from vasajax.eval import fvd, lipsync, pose


def test_delta_p_is_mean_abs_angle_change_in_degrees_pooled_over_frames():
    t = np.arange(11)
    ramp = np.stack([np.radians(0.5 * t), np.zeros(11), np.radians(-0.2 * t)], -1)  # |Δ| = 0.5°, 0°, 0.2°
    assert pose.delta_p(ramp) == pytest.approx((0.5 + 0 + 0.2) / 3)
    still = np.zeros((31, 6))
    # pooled: 10 pairs at 0.2333° and 30 pairs at 0° → weighted by frame pairs, not a mean of two clip means
    assert pose.delta_p([ramp, still]) == pytest.approx((0.7 / 3) * 10 / 40)
    gap = ramp.copy()
    gap[5] = np.nan  # a frame without a face drops its two pairs, not the clip
    assert pose.delta_p(gap) == pytest.approx(0.7 / 3)
    with pytest.raises(UserError):
        pose.delta_p(np.zeros((5, 2)))


def test_gaze_error_is_the_angle_between_directions():
    deg = np.radians
    assert pose.gaze_error_deg(np.zeros(2), np.zeros((7, 2))) == pytest.approx(0, abs=1e-6)
    assert pose.gaze_error_deg(np.array([deg(10), 0]), np.zeros((7, 2))) == pytest.approx(10)
    assert pose.gaze_error_deg(np.array([0, deg(-4)]), np.tile([0, deg(3)], (5, 1))) == pytest.approx(7)
    # main gaze: symmetric left/right glances average to straight ahead
    glances = np.array([[deg(12), 0], [deg(-12), 0]] * 5)
    assert pose.gaze_error_deg(np.zeros(2), glances) == pytest.approx(0, abs=1e-6)
    assert pose.gaze_error_deg(np.zeros((10, 2)), glances) == pytest.approx(12)  # per-frame request
    with pytest.raises(UserError):
        pose.gaze_error_deg(np.zeros((3, 2)), glances)


def test_distance_error():
    meas = np.array([0.30, 0.32, np.nan, 0.34])
    assert pose.distance_error(0.30, meas) == pytest.approx(0.02)
    assert pose.distance_error(np.array([0.3, 0.3, 0.3, 0.3]), meas) == pytest.approx(0.02)


def test_offset_search_recovers_a_known_lag_with_syncnet_sign():
    rng = np.random.default_rng(0)
    audio = np.convolve(rng.standard_normal(300), np.ones(4) / 4, "same")
    for lag in (-5, 0, 3):
        video = np.roll(audio, lag) + 0.2 * rng.standard_normal(300)  # video frame t shows audio frame t − lag
        r = lipsync.offset_search(video, audio)
        assert r.offset == lag
        assert r.corr_best > 0.8 and r.confidence > 0.5
        assert (r.corr == r.corr_best) == (lag == 0)
    flat = lipsync.offset_search(np.ones(50), audio[:50])
    assert np.isnan(flat.confidence) and flat.offset == 0


def test_envelope_follows_energy_and_speaking_mask():
    wave = np.zeros(16_000, np.float32)
    wave[6400:9600] = 0.5 * np.sin(np.arange(3200) * 0.3)  # 0.4–0.6 s loud → frames 10–14
    env = lipsync.audio_envelope(wave, 25)
    assert env[10:15].min() > env[:9].max() + 40
    mask = lipsync.speaking_mask([(0.4, 0.6)], 25)
    assert mask.sum() == 5 and mask[10:15].all()
    assert lipsync.lip_sync(mask, wave, max_offset=3)["av_offset"] == 0


def test_frechet_distance_closed_forms():
    mu, cov = np.zeros(3), np.diag([1.0, 4.0, 9.0])
    assert fvd.frechet_distance(mu, cov, mu, cov) == pytest.approx(0, abs=1e-6)
    assert fvd.frechet_distance(mu, cov, mu + [1, 2, 2], cov) == pytest.approx(9)
    # diagonal covariances: Σ (√a − √b)²
    assert fvd.frechet_distance(mu, cov, mu, np.diag([4.0, 4.0, 1.0])) == pytest.approx(1 + 0 + 4)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4000, 4)), rng.normal(size=(4000, 4)) * 2 + 1
    assert fvd.fvd_from_features(a, a[::-1]) == pytest.approx(0, abs=1e-6)
    assert fvd.fvd_from_features(a, b) == pytest.approx(4 + 4 * (2 - 1) ** 2, rel=0.1)


def test_fvd_clips_and_missing_checkpoint(tmp_path):
    frames = np.zeros((60, 32, 32, 3), np.uint8)
    clips = fvd.clips_of(frames)
    assert len(clips) == 2 and clips[0].shape == (25, 32, 32, 3)
    assert fvd.resize_clip(clips[0]).shape == (25, 224, 224, 3)
    assert fvd.clips_of(frames[:24]) == []
    with pytest.raises(UserError, match="I3D"):
        fvd.load_i3d(tmp_path / "i3d_torchscript.pt")


def test_fvd_with_a_torchscript_detector(tmp_path):
    torch = pytest.importorskip("torch")

    class FakeI3D(torch.nn.Module):  # StyleGAN-V's calling convention; features = per-channel means
        def forward(self, x, rescale: bool = False, resize: bool = False, return_features: bool = True):
            return x.mean(dim=(2, 3, 4))

    path = tmp_path / "i3d.pt"
    torch.jit.script(FakeI3D()).save(str(path))
    feats = fvd.load_i3d(path)
    clips = [np.full((25, 8, 8, 3), v, np.uint8) for v in (0, 255)]
    np.testing.assert_allclose(fvd.video_features(feats, clips), [[-1, -1, -1], [1, 1, 1]], atol=1e-6)
