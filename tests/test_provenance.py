"""Provenance: watermark invisibility (PSNR), blind detection that survives crops at any offset, flips, small
rotations, rescaling (aspect kept or not), colour changes and paste-back — in memory and through h264 — no false
positives, the metadata tag, ``vasajax detect`` naming the edit it undid, and the optional C2PA manifest."""

import json
import pathlib

import imageio.v3 as iio
import numpy as np
import pytest
from scipy import ndimage

from vasajax import c2pa_manifest, detect, media
from vasajax import provenance as pv

ASSETS = pathlib.Path(pv.__file__).parent / "assets"
T = 8


def _portrait_clip(name: str, size: int = 256, t: int = T) -> np.ndarray:
    """A bundled public-domain portrait with simple motion, like a talking head: the central half of the frame
    (the face) drifts and zooms, the rest stays still."""
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
        a, b = size // 4, 3 * size // 4
        frame = still.copy()
        frame[a:b, a:b] = moving[a:b, a:b]
        frames.append(frame)
    return np.stack(frames)


@pytest.fixture(scope="module")
def clip():
    return _portrait_clip("astronaut.png")


@pytest.fixture(scope="module")
def marked(clip):
    return pv.embed(clip)


@pytest.fixture(scope="module")
def small():  # 128²: 2-pixel cells, a smaller search; enough without lossy coding
    return _portrait_clip("astronaut.png", size=128)


@pytest.fixture(scope="module")
def small_marked(small):
    return pv.embed(small)


def _psnr(a, b):
    return 10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2))


def _luma(frames):
    return pv.mean_luma(frames)[0]


def test_embed_is_invisible_and_detected_blind(small, small_marked):
    clip, marked = small, small_marked
    assert marked.dtype == np.uint8 and marked.shape == clip.shape
    assert _psnr(marked, clip) >= 40.0
    assert np.abs(marked.astype(int) - clip).max() <= 4
    assert np.array_equal(pv.embed(clip[0]), marked[0])  # one frame = a batch of one
    hit, miss = pv.detect_frames(marked), pv.detect_frames(clip)
    assert hit.present and hit.z > 10 and hit.confidence > 0.999999 and hit.num_frames == T
    assert hit.hypothesis.kind == "frame" and not hit.flipped and "own grid" in hit.edit
    assert not miss.present and abs(miss.z) < 4
    wrong_key = pv.detect_frames(marked, key="someone-else")
    assert not wrong_key.present and abs(wrong_key.z) < 4


def test_the_mark_is_periodic_so_a_crop_is_a_cyclic_shift():
    m = pv._mark("k", 256, 320)  # 320×256: the period is the short side / 4 = 64 px, in x and y alike
    assert pv.period(256, 320) == 64
    assert np.allclose(m[:, :64], m[:, 64:128]) and np.allclose(m[:64], m[64:128])
    assert m.shape == (256, 320) and abs(m.max() - 1) < 1e-6


def test_any_frame_size_and_streamed_frames():
    """Paste-back outputs have the photo's size: the tile is normalised to the frame's short side."""
    clip = _portrait_clip("grace_hopper.jpg", size=200, t=4)[:, :, :150]  # 200×150, not square, not even /16
    marked = pv.embed(clip, key="k")
    assert _psnr(marked, clip) >= 40.0
    assert pv.detect_frames(iter(list(marked)), key="k").present  # an iterator works too
    assert not pv.detect_frames(iter(list(clip)), key="k").present


@pytest.mark.parametrize(
    "edit, expect",
    [
        ("crop", "crop"),  # 62 % of the area at an odd offset
        ("flip", "flip"),
        ("rotate", "rotation"),
        ("stretch", "aspect ratio"),
        ("paste", "larger frame"),
    ],
)
def test_survives_geometric_edits_in_memory(small_marked, small, edit, expect):
    marked, clip = small_marked, small

    def apply(frames):
        y = _luma(frames)
        if edit == "crop":
            return y[19:119, 5:105]  # 100×100 of 128×128
        if edit == "flip":
            return y[:, ::-1]
        if edit == "rotate":
            return ndimage.rotate(y, -4.0, reshape=False, order=1, mode="constant", cval=0.0)
        if edit == "stretch":
            return ndimage.zoom(y, (0.75, 1.5), order=1)  # 96×192
        big = np.full((256, 256), 110.0, np.float32)  # into a larger photo, unscaled, at (85, 45)
        big += ndimage.gaussian_filter(np.random.default_rng(0).normal(0, 30, (256, 256)), 3)
        big[45:173, 85:213] = y
        return big

    hit, miss = pv.detect_luma(apply(marked), num_frames=T), pv.detect_luma(apply(clip), num_frames=T)
    assert hit.present and hit.z > 6, (edit, hit)
    assert expect in hit.edit, hit.edit
    assert not miss.present, (edit, miss)
    if edit == "crop":  # the tile's origin sits at −(5, 19) mod 32 = (27, 13)
        assert np.allclose(hit.offset_px, (27, 13), atol=1.5), hit.offset_px
    if edit == "paste":
        assert np.allclose(hit.offset_px, (85 % 32, 45 % 32), atol=1.5), hit.offset_px


def test_the_null_comes_from_the_same_search(small):
    """Unmarked content: the key's search maximum behaves like the decoys' (z small)."""
    zs = [pv.detect_luma(_luma(small[i : i + 4]), key=f"key{i}").z for i in range(0, 8, 4)]
    assert max(zs) < 3.5 and min(zs) > -3.5, zs


def _ffmpeg(src, dst, *args):
    media.run_ffmpeg("-i", src, *args, "-c:v", "libx264", "-pix_fmt", "yuv420p", dst)


def test_survives_h264_edits_and_tag_round_trip(clip, marked, tmp_path):
    marked_mp4, plain_mp4 = tmp_path / "marked.mp4", tmp_path / "plain.mp4"
    media.write_video(marked_mp4, marked, metadata=pv.metadata_tag())
    media.write_video(plain_mp4, clip)
    assert pv.has_tag(media.read_metadata(marked_mp4)) == pv.TAG_VALUE
    _ffmpeg(marked_mp4, tmp_path / "crf28.mp4", "-crf", "28")  # ffmpeg copies the tag
    crop = ["-vf", "crop=208:192:40:9,hflip", "-map_metadata", "-1"]  # 61 % of the area kept, flipped
    _ffmpeg(marked_mp4, tmp_path / "crop.mp4", *crop)
    _ffmpeg(plain_mp4, tmp_path / "plain_crop.mp4", *crop)
    crf28 = detect.detect_video(tmp_path / "crf28.mp4")
    assert crf28.present and crf28.watermark.present and crf28.tag is not None
    cropped = detect.detect_video(tmp_path / "crop.mp4")
    assert cropped.watermark.present and cropped.tag is None  # the watermark alone finds it
    assert cropped.watermark.flipped and cropped.watermark.hypothesis.kind == "crop"
    plain = detect.detect_video(tmp_path / "plain_crop.mp4")
    assert not plain.present and not plain.watermark.present and plain.tag is None


def test_cli_detect_says_what_it_undid(small_marked, tmp_path, capsys):
    out = tmp_path / "m.mp4"
    media.write_video(out, small_marked[:, :, ::-1], metadata=pv.metadata_tag())  # flipped
    assert detect.cli_main([str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["present"] and d["watermark_present"] and d["metadata_tag"] and d["frames_examined"] == T
    assert "horizontal flip" in d["watermark_edit"]
    assert detect.cli_main([str(out), "--key", "other", "--max-frames", "4"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("present: watermark not found") and "4 frames" in line and "tag found" in line


@pytest.mark.skipif(not c2pa_manifest.available(), reason="needs the c2pa extra (c2pa-python, cryptography)")
def test_c2pa_manifest_signed_read_back_and_tamper_evident(small_marked, tmp_path, monkeypatch):
    monkeypatch.setenv("VASAJAX_C2PA_DIR", str(tmp_path / "keys"))
    out = media.write_video(tmp_path / "s.mp4", small_marked[:4], metadata=pv.metadata_tag())
    assert c2pa_manifest.read(out)["found"] is False
    c2pa_manifest.sign(out)
    keys = tmp_path / "keys"
    assert (keys / "signer-key.pem").stat().st_mode & 0o077 == 0  # private key: owner only
    m = c2pa_manifest.read(out)
    assert m["found"] and m["valid"] and m["vasajax"], m
    d = detect.detect_video(out)
    assert d.present and d.c2pa["valid"] and d.watermark.present
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the video data
    (tmp_path / "t.mp4").write_bytes(bytes(data))
    bad = c2pa_manifest.read(tmp_path / "t.mp4")
    assert bad["found"] and not bad["valid"], bad
    (tmp_path / "x.webm").write_bytes(b"\x1aE\xdf\xa3" + bytes(64))  # not an mp4: no manifest, not an invalid one
    assert c2pa_manifest.read(tmp_path / "x.webm")["found"] is False


def test_frames_too_small_for_the_mark_say_so():
    """Under 1.5 periods of the tile (96 px) the search cannot run: not found, and the reason is given."""
    found = pv.detect_luma(np.random.default_rng(0).random((64, 64)))
    assert not found.present and "cannot be checked" in found.edit
