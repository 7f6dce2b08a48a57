"""Video I/O: round trip of frames, audio and metadata; atomic writes; one-line errors for bad output paths."""

import os
import pathlib
import stat

import numpy as np
import pytest

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
