"""Audio front end: loading (many formats, bad input), exact frame alignment, streaming == whole."""

import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile

from vasajax.errors import UserError
from vasajax.motion import audio

SR = 16_000


def _tone(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(wave: np.ndarray, sr: int = SR) -> float:
    spec = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.argmax(spec) * sr / len(wave))


def _ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", *args], check=True, timeout=60)


@pytest.fixture(scope="module")
def stereo_mp3(tmp_path_factory):
    """2 s stereo 44.1 kHz mp3: 440 Hz at amplitude 0.6 on the left, 0.2 on the right."""
    d = tmp_path_factory.mktemp("mp3")
    left, right = _tone(440, 2.0, 44_100, 0.6), _tone(440, 2.0, 44_100, 0.2)
    soundfile.write(d / "src.wav", np.stack([left, right], 1), 44_100, subtype="FLOAT")
    _ffmpeg("-i", str(d / "src.wav"), "-c:a", "libmp3lame", "-b:a", "192k", str(d / "stereo.mp3"))
    return d / "stereo.mp3"


def test_load_stereo_44k_mp3(stereo_mp3):
    wave = audio.load_audio(stereo_mp3)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 2 * SR) < 0.1 * SR  # mp3 adds encoder delay/padding, never more than ~2 frames
    mid = wave[SR // 2 : 3 * SR // 2]
    assert abs(_peak_hz(mid) - 440) < 2
    # channels are averaged: (0.6 + 0.2) / 2 = 0.4 amplitude → RMS 0.4/√2
    assert np.sqrt(np.mean(mid**2)) == pytest.approx(0.4 / np.sqrt(2), rel=0.05)


def test_iter_audio_chunks_equal_whole(stereo_mp3):
    whole = audio.load_audio(stereo_mp3)
    chunks = list(audio.iter_audio(stereo_mp3, chunk_s=0.3))
    assert all(len(c) == round(0.3 * SR) for c in chunks[:-1]) and 0 < len(chunks[-1]) <= round(0.3 * SR)
    np.testing.assert_array_equal(np.concatenate(chunks), whole)


def test_load_8k_wav_resamples(tmp_path):
    soundfile.write(tmp_path / "a.wav", _tone(1000, 1.5, 8000), 8000, subtype="PCM_16")
    wave = audio.load_audio(tmp_path / "a.wav")
    assert len(wave) == int(1.5 * SR)
    assert abs(_peak_hz(wave) - 1000) < 2
    assert np.sqrt(np.mean(wave[2000:-2000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_silence_is_valid(tmp_path):
    soundfile.write(tmp_path / "s.wav", np.zeros(SR // 2, np.float32), SR)  # 16 kHz: soundfile fast path
    soundfile.write(tmp_path / "s.flac", np.zeros((SR // 2, 2), np.float32), 22_050)  # ffmpeg path
    for name in ("s.wav", "s.flac"):
        wave = audio.load_audio(tmp_path / name)
        assert len(wave) > 0 and np.all(wave == 0)
    feats = audio.frame_features(audio.load_audio(tmp_path / "s.wav"), audio.AudioConfig())
    assert feats.shape == (audio.num_video_frames(SR // 2), 160)
    cfg = audio.AudioConfig()
    np.testing.assert_allclose(feats, (np.log(cfg.log_floor) - cfg.norm_mean) / cfg.norm_std, rtol=1e-6)


@pytest.mark.parametrize("what", ["empty", "text", "no_samples", "missing"])
def test_bad_input_is_one_line_user_error(tmp_path, what):
    path = tmp_path / "x.wav"
    if what == "empty":
        path.write_bytes(b"")
    elif what == "text":
        path.write_text("this is not audio, just a text file with a .wav name\n" * 20)
    elif what == "no_samples":
        soundfile.write(path, np.zeros(0, np.float32), SR)
    for load in (audio.load_audio, lambda p: list(audio.iter_audio(p))):
        with pytest.raises(UserError) as e:
            load(path)
        assert "\n" not in str(e.value) and str(path.name) in str(e.value)


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
