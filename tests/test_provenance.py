"""Provenance: watermark invisibility (PSNR), blind detection, robustness to h264 CRF 28 and 0.5× downscale,
no false positives, the metadata tag and ``vasajax detect``."""

import json
import pathlib
import subprocess

import imageio.v3 as iio
import numpy as np
import pytest

from vasajax import provenance as pv
from vasajax import video

ASSETS = pathlib.Path(pv.__file__).parent / "assets"
T = 16


def _portrait_clip(name: str, size: int = 256, t: int = T, pan: bool = False) -> np.ndarray:
    """A bundled public-domain portrait with simple motion, like a talking head: the central half of the frame
    (the face) drifts and zooms, the rest stays still; ``pan`` moves the whole frame (a harsher case)."""
    img = iio.imread(ASSETS / name)[..., :3]
    h, w = img.shape[:2]
    side = min(h, w) - 40
    idx = (np.arange(size) * side / size).astype(int)  # nearest-neighbour resize: cheap and exact
    still = img[10 : 10 + side, 10 : 10 + side][idx][:, idx]
    frames = []
    for i in range(t):
        dy, dx, s = int(10 + 8 * np.sin(i / 5)), int(10 + 6 * np.cos(i / 7)), side - 2 * (i % 6)
        idx = (np.arange(size) * s / size).astype(int)
        moving = img[dy : dy + s, dx : dx + s][idx][:, idx]
        if not pan:
            a, b = size // 4, 3 * size // 4
            frame = still.copy()
            frame[a:b, a:b] = moving[a:b, a:b]
            moving = frame
        frames.append(moving)
    return np.stack(frames)


@pytest.fixture(scope="module")
def clips():
    return {n: _portrait_clip(n) for n in ("astronaut.png", "grace_hopper.jpg")}


def _psnr(a, b):
    return 10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2))


def test_embed_is_invisible_and_detected_blind(clips):
    for clip in clips.values():
        marked = pv.embed(clip)
        assert marked.dtype == np.uint8 and marked.shape == clip.shape
        assert _psnr(marked, clip) >= 40.0
        assert np.array_equal(pv.embed(clip[0]), marked[0])  # one frame = a batch of one
        hit, miss = pv.detect_frames(marked), pv.detect_frames(clip)
        assert hit.present and hit.z > 10 and hit.confidence > 0.999999 and hit.num_frames == T
        assert not miss.present and abs(miss.z) < 4
        wrong_key = pv.detect_frames(marked, key="someone-else")
        assert not wrong_key.present and abs(wrong_key.z) < 4


def test_any_frame_size_and_streamed_frames():
    """Paste-back outputs have the photo's size: the grid is normalised to the frame."""
    clip = _portrait_clip("grace_hopper.jpg", size=300, t=6)[:, :, :222]  # 300×222, not square, not even /16
    marked = pv.embed(clip, key="k")
    assert _psnr(marked, clip) >= 40.0
    assert pv.detect_frames(iter(list(marked)), key="k").present  # an iterator works too
    assert not pv.detect_frames(iter(list(clip)), key="k").present


def _ffmpeg(src, dst, *args):
    cmd = [video.ffmpeg_exe(), "-v", "error", "-y", "-i", str(src), *args, "-c:v", "libx264", "-pix_fmt", "yuv420p"]
    subprocess.run([*cmd, str(dst)], check=True)


def test_survives_crf28_and_half_downscale_and_tag_round_trip(clips, tmp_path):
    clip = clips["astronaut.png"]
    marked_mp4, plain_mp4 = tmp_path / "marked.mp4", tmp_path / "plain.mp4"
    video.write_video(marked_mp4, pv.embed(clip), metadata=pv.metadata_tag())
    video.write_video(plain_mp4, clip)
    assert pv.has_tag(video.read_metadata(marked_mp4)) == pv.TAG_VALUE
    # Re-encoded at CRF 28 (tags copied by ffmpeg's default) and downscaled 0.5× with tags stripped.
    _ffmpeg(marked_mp4, tmp_path / "crf28.mp4", "-crf", "28")
    _ffmpeg(marked_mp4, tmp_path / "half.mp4", "-vf", "scale=iw/2:ih/2", "-crf", "23", "-map_metadata", "-1")
    _ffmpeg(plain_mp4, tmp_path / "plain28.mp4", "-crf", "28")
    crf28 = pv.detect_video(tmp_path / "crf28.mp4")
    assert crf28.present and crf28.watermark.present and crf28.tag is not None
    half = pv.detect_video(tmp_path / "half.mp4")
    assert video.probe(tmp_path / "half.mp4").width == 128
    assert half.present and half.watermark.present and half.tag is None  # the watermark alone finds it
    plain = pv.detect_video(tmp_path / "plain28.mp4")
    assert not plain.present and not plain.watermark.present and plain.tag is None


def test_cli_detect(clips, tmp_path, capsys):
    out = tmp_path / "m.mp4"
    video.write_video(out, pv.embed(clips["grace_hopper.jpg"][:8]), metadata=pv.metadata_tag())
    assert pv.cli_main([str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["present"] and d["watermark_present"] and d["metadata_tag"] and d["frames_examined"] == 8
    assert pv.cli_main([str(out), "--key", "other", "--max-frames", "4"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("present: watermark not found") and "4 frames" in line and "tag found" in line
