"""Media I/O: round trip of frames, audio and metadata; atomic writes; one-line errors for bad output paths;
decoding audio (many formats, bad input, the missing-audio contract); frame-rate resampling and rotation."""

import os
import pathlib
import stat

import numpy as np
import pytest
import soundfile

from vasajax import media
from vasajax.errors import UserError

FPS = 25.0


def _clip(t=20, h=64, w=64, seed=0):
    """Smooth moving gradients (compress well, so the round trip error is small)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = [np.stack([xx / w, yy / h, 0.5 + 0.4 * np.sin((xx + yy) / 9.0 + 0.3 * i + seed)], -1) for i in range(t)]
    return (np.stack(frames) * 255).astype(np.uint8)


def _tone(seconds, hz=440.0):
    n = int(seconds * media.SAMPLE_RATE)
    return (0.3 * np.sin(2 * np.pi * hz * np.arange(n) / media.SAMPLE_RATE)).astype(np.float32)


def test_round_trip_frames_audio_metadata(tmp_path):
    frames = _clip()
    audio = _tone(len(frames) / FPS)
    out = tmp_path / "a.mp4"
    meta = {"comment": "made by vasajax: test", "vasajax_custom": "k=1"}
    with media.VideoWriter(out, fps=FPS, audio=audio, crf=12, metadata=meta) as w:
        w.write(frames[:7])  # a batch
        for f in frames[7:]:  # and single frames
            w.write(f)
    assert w.num_frames == len(frames)
    info = media.probe(out)
    assert (info.width, info.height, info.fps, info.has_audio) == (64, 64, FPS, True)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert abs(info.duration_s - len(frames) / FPS) <= 1.5 / FPS
    assert info.metadata["comment"] == meta["comment"]
    assert media.read_metadata(out)["vasajax_custom"] == "k=1"
    got, fps, got_audio = media.read_video(out, stack=True)
    assert fps == FPS and got.shape == frames.shape
    assert np.abs(got.astype(np.float32) - frames).mean() < 3.0
    # AAC has a small delay/padding; the tone's energy survives and the length is within a frame.
    assert abs(len(got_audio) - len(audio)) <= media.SAMPLE_RATE / FPS
    assert 0.15 < np.sqrt(np.mean(got_audio**2)) < 0.25
    assert [p.name for p in tmp_path.iterdir()] == ["a.mp4"]  # no temporary files left


def test_float_frames_odd_size_no_audio(tmp_path):
    frames = _clip(t=5, h=33, w=47).astype(np.float32) / 255.0
    out = media.write_video(tmp_path / "b.mp4", frames, fps=FPS, metadata={"comment": "x"})
    info = media.probe(out)
    assert (info.width, info.height, info.has_audio) == (48, 34, False)  # padded to even
    assert info.metadata["comment"] == "x"
    got = np.stack(list(media.iter_frames(out)))
    assert got.shape == (5, 34, 48, 3)
    assert np.abs(got[:, :33, :47] / 255.0 - frames).mean() < 0.02


def test_error_keeps_existing_file_and_leaves_no_temp(tmp_path):
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"precious")
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C in the middle of writing
        with media.VideoWriter(out, fps=FPS) as w:
            w.write(_clip(t=3))
            raise KeyboardInterrupt
    assert out.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mp4"]


def test_disk_full_is_one_line_error(tmp_path, monkeypatch):
    """Simulated full disk: the temporary file ffmpeg writes is a symlink to /dev/full, whose writes fail
    with a real ENOSPC from the kernel (so ffmpeg itself hits 'No space left on device')."""
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full not available")
    real_temp = media.VideoWriter._temp

    def full_temp(self, tag):
        p = real_temp(self, tag)
        p.unlink()
        p.symlink_to("/dev/full")
        return p

    monkeypatch.setattr(media.VideoWriter, "_temp", full_temp)
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"precious")
    with pytest.raises(UserError, match="disk full") as e:
        with media.VideoWriter(out, fps=FPS, audio=_tone(1.0)) as w:
            for _ in range(10):
                w.write(_clip(t=5))
    assert "\n" not in str(e.value)
    assert out.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mp4"]


def test_missing_and_read_only_folders(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="does not exist"):
        media.VideoWriter(tmp_path / "nope" / "out.mp4")
    with pytest.raises(UserError, match="is a folder"):
        media.VideoWriter(tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(ro, os.W_OK):  # running as root: permissions don't bind, so simulate what access() says
            real = os.access
            monkeypatch.setattr(media.os, "access", lambda p, m: False if pathlib.Path(p) == ro else real(p, m))
        with pytest.raises(UserError, match="not writable"):
            media.VideoWriter(ro / "out.mp4")
    finally:
        ro.chmod(stat.S_IRWXU)
    with pytest.raises(UserError, match="not found"):
        media.probe(tmp_path / "missing.mp4")
    with pytest.raises(UserError, match="nothing to save"):
        media.VideoWriter(tmp_path / "empty.mp4").close()
    assert not (tmp_path / "empty.mp4").exists()


# ---------------------------------------------------------------------------------------------- audio decoding

SR = 16_000


def _sine(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(wave: np.ndarray, sr: int = SR) -> float:
    spec = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.argmax(spec) * sr / len(wave))


@pytest.fixture(scope="module")
def stereo_mp3(tmp_path_factory):
    """2 s stereo 44.1 kHz mp3: 440 Hz at amplitude 0.6 on the left, 0.2 on the right."""
    d = tmp_path_factory.mktemp("mp3")
    left, right = _sine(440, 2.0, 44_100, 0.6), _sine(440, 2.0, 44_100, 0.2)
    soundfile.write(d / "src.wav", np.stack([left, right], 1), 44_100, subtype="FLOAT")
    media.run_ffmpeg("-i", d / "src.wav", "-c:a", "libmp3lame", "-b:a", "192k", d / "stereo.mp3", timeout_s=60)
    return d / "stereo.mp3"


def test_load_stereo_44k_mp3(stereo_mp3):
    wave = media.read_audio(stereo_mp3)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 2 * SR) < 0.1 * SR  # mp3 adds encoder delay/padding, never more than ~2 frames
    mid = wave[SR // 2 : 3 * SR // 2]
    assert abs(_peak_hz(mid) - 440) < 2
    # channels are averaged: (0.6 + 0.2) / 2 = 0.4 amplitude → RMS 0.4/√2
    assert np.sqrt(np.mean(mid**2)) == pytest.approx(0.4 / np.sqrt(2), rel=0.05)


def test_iter_audio_chunks_equal_whole(stereo_mp3):
    whole = media.read_audio(stereo_mp3)
    chunks = list(media.iter_audio(stereo_mp3, chunk_s=0.3))
    assert all(len(c) == round(0.3 * SR) for c in chunks[:-1]) and 0 < len(chunks[-1]) <= round(0.3 * SR)
    np.testing.assert_array_equal(np.concatenate(chunks), whole)


def test_load_8k_wav_resamples(tmp_path):
    soundfile.write(tmp_path / "a.wav", _sine(1000, 1.5, 8000), 8000, subtype="PCM_16")
    wave = media.read_audio(tmp_path / "a.wav")
    assert len(wave) == int(1.5 * SR)
    assert abs(_peak_hz(wave) - 1000) < 2
    assert np.sqrt(np.mean(wave[2000:-2000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


@pytest.mark.parametrize("what", ["empty", "text", "no_samples", "missing"])
def test_bad_input_is_one_line_user_error(tmp_path, what):
    path = tmp_path / "x.wav"
    if what == "empty":
        path.write_bytes(b"")
    elif what == "text":
        path.write_text("this is not audio, just a text file with a .wav name\n" * 20)
    elif what == "no_samples":
        soundfile.write(path, np.zeros(0, np.float32), SR)
    for load in (media.read_audio, lambda p: list(media.iter_audio(p))):
        with pytest.raises(UserError) as e:
            load(path)
        assert "\n" not in str(e.value) and str(path.name) in str(e.value)


def test_missing_audio_is_one_contract(tmp_path):
    """A video without sound: every function that returns audio raises NoAudioError (a one-line UserError);
    probe says so without raising, and the frames still decode."""
    out = media.write_video(tmp_path / "silent.mp4", _clip(t=5), fps=FPS)
    assert not media.probe(out).has_audio and media.probe(out).audio_codec == ""
    for load in (media.read_audio, lambda p: list(media.iter_audio(p)), lambda p: media.read_video(p, stack=True)):
        with pytest.raises(media.NoAudioError) as e:
            load(out)
        assert isinstance(e.value, UserError) and "\n" not in str(e.value) and out.name in str(e.value)
    assert media.read_frames(out).shape == (5, 64, 64, 3)
    soundfile.write(tmp_path / "none.wav", np.zeros(0, np.float32), SR)
    with pytest.raises(media.NoAudioError):
        media.read_audio(tmp_path / "none.wav")
    (tmp_path / "bad.mp4").write_bytes(b"not a video" * 100)
    for load in (media.read_audio, media.probe, media.read_frames):
        with pytest.raises(media.MediaError) as e:
            load(tmp_path / "bad.mp4")
        assert not isinstance(e.value, media.NoAudioError)


def test_frames_resampled_and_rotated(tmp_path):
    """``fps=`` resamples with ffmpeg's fps filter (30 → 25 fps: 36 frames → 30); a container rotation of 90°
    is applied and ``probe`` reports the upright size."""
    src = media.write_video(tmp_path / "a.mp4", _clip(t=36, h=48, w=64), fps=30)
    assert media.read_frames(src, fps=25).shape == (30, 48, 64, 3)
    assert media.read_frames(src, fps=25, size=(24, 32)).shape == (30, 24, 32, 3)
    rot = tmp_path / "rot.mp4"
    media.run_ffmpeg("-display_rotation", "90", "-i", src, "-c", "copy", rot)
    info = media.probe(rot)
    assert (info.width, info.height) == (48, 64)
    frames = media.read_frames(rot)
    assert frames.shape == (36, 64, 48, 3)
    upright = np.rot90(media.read_frames(src), k=1, axes=(1, 2))  # 90° counter-clockwise
    assert np.abs(frames.astype(np.float32) - upright).mean() < 3.0


def test_wav_helpers(tmp_path):
    chunks = [_sine(440, 0.5, SR), _sine(440, 0.25, SR)]
    n = media.write_wav(tmp_path / "a.wav", iter(chunks))
    assert n == sum(map(len, chunks))
    media.append_silence(tmp_path / "a.wav", 100)
    got = np.concatenate(list(media.iter_wav(tmp_path / "a.wav", chunk_s=0.1)))
    np.testing.assert_array_equal(got, np.concatenate([*chunks, np.zeros(100, np.float32)]))
    with pytest.raises(media.MediaError, match="ffmpeg failed"):
        media.run_ffmpeg("-i", tmp_path / "missing.wav", tmp_path / "b.wav")
