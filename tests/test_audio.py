"""Audio front end: exact frame alignment, streaming == whole (decoding files: test_media.py)."""

import numpy as np
import pytest
import soundfile

from vasajax import media
from vasajax.errors import UserError
from vasajax.motion import audio

SR = 16_000


def test_silence_is_valid(tmp_path):
    soundfile.write(tmp_path / "s.wav", np.zeros(SR // 2, np.float32), SR)  # 16 kHz: soundfile fast path
    soundfile.write(tmp_path / "s.flac", np.zeros((SR // 2, 2), np.float32), 22_050)  # ffmpeg path
    for name in ("s.wav", "s.flac"):
        wave = media.read_audio(tmp_path / name)
        assert len(wave) > 0 and np.all(wave == 0)
    feats = audio.frame_features(media.read_audio(tmp_path / "s.wav"), audio.AudioConfig())
    assert feats.shape == (audio.num_video_frames(SR // 2), 160)
    cfg = audio.AudioConfig()
    np.testing.assert_allclose(feats, (np.log(cfg.log_floor) - cfg.norm_mean) / cfg.norm_std, rtol=1e-6)


def test_num_video_frames_rounding():
    assert [audio.num_video_frames(n) for n in (0, 1, 640, 641, 16_000, 16_001)] == [0, 1, 1, 2, 25, 26]
    # 30 fps: 533⅓ samples per frame, exact rational arithmetic
    assert [audio.num_video_frames(n, fps=30) for n in (533, 534, 16_000, 160_000)] == [1, 2, 30, 300]
    assert audio.num_video_frames(10 * 60 * SR, fps=29.97) == 17_982


@pytest.mark.parametrize("fps", [25, 30])
def test_alignment_exact_over_ten_minutes(fps):
    """Clicks on the centre sample of chosen slots light up exactly those slots, even after 10 minutes."""
    cfg = audio.AudioConfig(fps=fps, n_mels=8)
    n = 10 * 60 * SR
    T = audio.num_video_frames(n, fps)
    assert T == 10 * 60 * fps
    if fps == 25:  # the documented convention: c_2i = 640 i + 160, c_2i+1 = 640 i + 480
        i = np.arange(T)
        np.testing.assert_array_equal(audio.slot_centers(0, 2 * T, cfg).reshape(T, 2), 640 * i[:, None] + [160, 480])
    slots = np.array([0, 1, 2 * 100 + 1, 2 * (T // 2), 2 * (T - 2) + 1, 2 * T - 2, 2 * T - 1])
    centers = np.concatenate([audio.slot_centers(int(k), 1, cfg) for k in slots])
    wave = np.zeros(n, np.float32)
    wave[centers] = 1.0
    feats_Tx2xM = audio.frame_features(wave, cfg).reshape(T, 2, cfg.n_mels)
    silence = (np.log(cfg.log_floor) - cfg.norm_mean) / cfg.norm_std
    lit = np.flatnonzero(feats_Tx2xM.reshape(2 * T, -1).max(-1) > silence + 1.0)
    np.testing.assert_array_equal(lit, slots)
    # 150 samples after slot k's centre, a click is seen by slots k and k+1 (windows span ±200), no other
    wave2 = np.zeros(n, np.float32)
    wave2[centers[-2] + 150] = 1.0
    lit2 = np.flatnonzero(audio.frame_features(wave2, cfg).reshape(2 * T, -1).max(-1) > silence + 1e-3)
    np.testing.assert_array_equal(lit2, [slots[-2], slots[-2] + 1])


@pytest.mark.parametrize("fps", [25, 30])
def test_streaming_equals_whole(fps):
    rng = np.random.default_rng(0)
    cfg = audio.AudioConfig(fps=fps, block_frames=7)  # small blocks exercise block seams too
    wave = (0.1 * rng.standard_normal(int(3.37 * SR))).astype(np.float32)
    whole = audio.frame_features(wave, cfg)
    cuts = np.sort(np.concatenate([rng.integers(0, len(wave), 12), [5, 5, 6]]))  # includes empty chunks
    stream = audio.LogMelStream(cfg)
    parts = [stream.push(c) for c in np.split(wave, cuts)]
    assert sum(map(len, parts)) < len(whole)  # the tail waits for finish()
    parts.append(stream.finish())
    streamed = np.concatenate(parts)
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-6)
    assert len(stream.buf) < cfg.n_fft + len(wave) // 10  # buffer does not grow with the stream
    via_iter = np.concatenate(list(audio.iter_frame_features(np.array_split(wave, 5), cfg)))
    np.testing.assert_allclose(via_iter, whole, rtol=0, atol=1e-6)
    with pytest.raises(UserError):
        stream.push(wave[:10])


def test_features_of_a_chunk_equal_the_whole():
    """Frames i0..i1 computed from just the audio they need (±200 samples) equal the whole clip's."""
    rng = np.random.default_rng(1)
    cfg = audio.AudioConfig()
    wave = (0.1 * rng.standard_normal(4 * SR)).astype(np.float32)
    whole = audio.frame_features(wave, cfg)
    i0, i1 = 37, 61
    lo, hi = audio.first_sample_needed(i0, cfg), 640 * i1 + cfg.n_fft // 2
    assert lo == 640 * i0 + 160 - 256
    stream = audio.LogMelStream(cfg, start_frame=i0)  # a stream that starts mid-clip
    got = stream.push(wave[lo:hi])
    assert len(got) == i1 - i0
    np.testing.assert_allclose(got, whole[i0:i1], rtol=0, atol=1e-6)


def test_feature_stats_normalise(tmp_path):
    rng = np.random.default_rng(2)
    feats = [rng.normal(3.0, 2.0, (50, 6)).astype(np.float32) for _ in range(4)]
    stats = audio.FeatureStats.compute(feats)
    z = stats(np.concatenate(feats))
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-4)
    stats.save(tmp_path / "s.npz")
    again = audio.FeatureStats.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(again.mean, stats.mean)
    with pytest.raises(UserError):
        stats(np.zeros((3, 5), np.float32))


def test_config_presets_and_errors():
    for cfg in (audio.AudioConfig.tiny(), audio.AudioConfig.small(), audio.AudioConfig.paper()):
        assert cfg.sample_rate == SR and cfg.fps == 25
    assert audio.feature_dim(audio.AudioConfig.tiny()) == 32
    assert audio.feature_dim(audio.AudioConfig.small()) == 160
    assert audio.frame_features(np.zeros(0, np.float32), audio.AudioConfig()).shape == (0, 160)
    with pytest.raises(UserError):
        audio.AudioConfig(kind="mfcc")
    with pytest.raises(UserError, match="checkpoint"):
        audio.frame_features(np.zeros(SR, np.float32), audio.AudioConfig.paper())
    with pytest.raises(UserError):
        audio.frame_features(np.zeros((SR, 2), np.float32), audio.AudioConfig())


def test_to_video_rate():
    x_NxD = np.arange(40, dtype=np.float32)[:, None] * [1.0, -2.0]
    # 25 fps: slots coincide with 50 Hz rows → exact copy, two rows per frame
    np.testing.assert_array_equal(audio.to_video_rate(x_NxD, 20, audio.AudioConfig()), x_NxD.reshape(20, 4))
    # 50 fps: slot k at row position k/2 − 1/4; linear input → linear output (clamped at row 0)
    got = audio.to_video_rate(x_NxD, 30, audio.AudioConfig(fps=50)).reshape(60, 2)
    np.testing.assert_allclose(got[:, 0], np.clip(np.arange(60) / 2 - 0.25, 0, 39), atol=1e-6)


@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax", [(16000, 512, 80, 0.0, None), (16000, 400, 16, 55.0, 7600.0)])
def test_mel_filterbank_equals_librosa(sr, n_fft, n_mels, fmin, fmax):
    """Our Slaney filterbank is librosa's, bit for bit (librosa is a test dependency only)."""
    librosa = pytest.importorskip("librosa")
    ours = audio.mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    np.testing.assert_array_equal(ours, librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax))
    hz = np.array([0.0, 200.0, 999.0, 1000.0, 4000.0, 8000.0])
    np.testing.assert_allclose(audio.mel_to_hz(audio.hz_to_mel(hz)), hz, rtol=1e-12)
    assert audio.hz_to_mel(1000.0) == pytest.approx(15.0)
