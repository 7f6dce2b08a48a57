"""`vasajax prep` (vasajax.data.prep): frame filters and cuts, layouts, and an end-to-end run on a short
synthetic video (the astronaut portrait drifting a few px per frame, a 440 Hz tone, black frames at the end)
next to a corrupt file and a video without audio, split over two SLURM-style shards and resumed."""

from pathlib import Path

import numpy as np
import pytest

from vasajax import media
from vasajax.data import clips, loader, prep


def test_classify_frames_and_runs():
    cfg = prep.PrepConfig.tiny()  # size 64, min_face_frac 0.25 → side ≥ 16 px
    T = 12
    n = np.ones(T, int)
    ratio = np.zeros(T)
    p = np.tile([100.0, 100.0, 50.0], (T, 1))
    p[:, 0] += np.arange(T)  # a slow drift is fine
    n[2] = 0  # no face
    n[4], ratio[4] = 2, 0.5  # a second person
    n[5], ratio[5] = 2, 0.05  # a tiny background face: still fine
    p[7, 2] = 10.0  # face too small
    p[9:, 0] += 40.0  # the crop jumps by 0.8 × side between frames 8 and 9: tracking lost
    status, cut = prep.classify_frames(n, ratio, p, cfg)
    want = [prep.OK] * T
    want[2], want[4], want[7] = prep.NO_FACE, prep.SEVERAL_FACES, prep.TOO_SMALL
    assert status.tolist() == want
    assert np.flatnonzero(cut).tolist() == [9]
    runs = prep.usable_runs(status, cut)
    assert runs == [(0, 2), (3, 4), (5, 7), (8, 9), (9, 12)]
    assert prep.clip_starts([(0, 25), (30, 40)], 10) == [(0, 0), (0, 10), (1, 30)]
    assert prep.clip_starts([(0, 25), (30, 40)], 10, limit=1) == [(0, 0)]


def test_identity_layouts(tmp_path):
    P = Path
    assert prep.identity_of(P("dev/mp4/id00012/21Uxsk56VDQ/00001.mp4"), "voxceleb2") == "id00012"
    assert prep.identity_of(P("WDA_BarackObama_000.mp4"), "hdtf") == "WDA_BarackObama"
    assert prep.identity_of(P("-0e4tlhsjW0_0.mp4"), "celebvhq") == "-0e4tlhsjW0"
    assert prep.identity_of(P("alice/a.mov"), "folder") == "alice"
    assert prep.identity_of(P("solo.mp4"), "folder") == "solo"
    for rel in ("b/x.mp4", "a/y.MKV", "a/notes.txt", "c.webm"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert prep.list_videos(tmp_path) == [("a/y.MKV", "a"), ("b/x.mp4", "b"), ("c.webm", "c")]


def _write_video(path: Path, wav_dir: Path, *, n: int, fps: int, black_from: int, audio: bool) -> None:
    import skimage.data
    import soundfile as sf

    img = skimage.data.astronaut()[::2, ::2].copy()  # 256², a face of ~70 px between the eyes and the mouth
    wav = wav_dir / (path.stem + ".wav")
    t = np.arange(int(round(n / fps * clips.SAMPLE_RATE))) / clips.SAMPLE_RATE
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32), clips.SAMPLE_RATE)
    with media.VideoWriter(path, fps=fps, audio=wav if audio else None, crf=18, preset="medium") as w:
        for i in range(n):
            w.write(np.roll(img, (i // 3, i // 2), axis=(0, 1)) if i < black_from else np.zeros_like(img))


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    from vasajax import modelfiles
    from vasajax.errors import UserError

    try:
        modelfiles.face_landmarker_path()
    except UserError as e:
        pytest.skip(f"needs the MediaPipe model file: {e}")
    d = tmp_path_factory.mktemp("videos")
    wavs = tmp_path_factory.mktemp("wavs")
    (d / "bob").mkdir()
    # 36 frames at 30 fps = 30 frames at 25 fps; frames from 28/30 s on are black (no face).
    _write_video(d / "bob" / "talk.mp4", wavs, n=36, fps=30, black_from=28, audio=True)
    _write_video(d / "silent.mp4", wavs, n=5, fps=25, black_from=5, audio=False)
    (d / "broken.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return d


def test_prep_end_to_end_sharded_and_resumed(video_dir, tmp_path):
    out = tmp_path / "prepared"
    # Units of 2 videos (sorted: bob/talk.mp4, broken.mp4 | silent.mp4); job 0 of 2 takes unit 0.
    args = [str(video_dir), str(out), "--preset", "tiny", "--codec", "png", "--videos-per-shard", "2"]
    assert prep.cli_main([*args, "--shard-index", "0", "--num-shards", "2", "--no-progress"]) == 0
    assert not (out / "manifest.json").exists()  # unit 1 is not done yet
    shard0 = out / "clips-00000-00000.array_record"
    mtime = shard0.stat().st_mtime_ns

    cfg = prep.config_from_args(prep.build_parser().parse_args(args))
    report = prep.prepare(video_dir, out, cfg, progress=False)  # one job for everything: resumes
    assert report["units"] == 2 and report["skipped"] == 1
    assert shard0.stat().st_mtime_ns == mtime  # the finished unit was not redone
    assert report["manifest"] == str(out / "manifest.json")

    m = clips.read_manifest(out)
    assert m["totals"]["records"] == 2 and m["totals"]["frames"] == 20
    assert m["dropped"]["unreadable"] == 1 and m["dropped"]["no_audio"] == 1
    assert m["dropped"]["frames_no_face"] >= 5  # the black tail
    assert m["summary"]["videos_kept"] == 1 and m["summary"]["frames_decoded"] == 30  # not silent.mp4
    assert [r["start_frame"] for r in m["records"]] == [0, 10]

    src = loader.RecordSource(out)
    for k in range(2):
        rec = src.record(k)
        assert rec.identity == "bob" and rec.source == "bob/talk.mp4" and rec.clip_index == k
        assert rec.frames_TxSxSx3.shape == (10, 64, 64, 3) and rec.frames_TxSxSx3.std() > 20
        spectrum = np.abs(np.fft.rfft(rec.audio_N))
        assert np.argmax(spectrum) * clips.SAMPLE_RATE / rec.audio_N.size == pytest.approx(440, abs=15)
        for a in (rec.pose_Tx6, rec.gaze_Tx2, rec.distance_T, rec.blendshapes_Tx52, rec.emotion_52):
            assert np.isfinite(a).all()
        np.testing.assert_allclose(rec.emotion_52, rec.blendshapes_Tx52.mean(0), atol=1e-5)
        crop = rec.ground_truth["crop_Tx3"]
        # The face drifts right and down at 30/2 and 30/3 px per second: the crop follows it.
        assert np.all(np.diff(crop[:, 0]) > 0) and np.all(np.diff(crop[:, 1]) > 0)
        assert rec.ground_truth["landmarks_Tx478x3"].shape == (10, 478, 3)
    # The prepared folder feeds the stage-1 loader directly.
    cfg1 = loader.LoaderConfig(batch_size=2, shard_index=0, shard_count=1)
    b = next(iter(loader.face_pairs(out, cfg1, loader.PairsConfig(cross_identity=False))))
    assert b["source"].shape == (2, 64, 64, 3)


def test_prep_labels_agree_with_synthtalk_ground_truth(video_dir, tmp_path):
    """A SynthTalk clip (espeak-ng speech, warped astronaut) has exact ground truth: prep's tracked labels
    must follow it, and the clip audio must be the clip's own audio at the same offset."""
    from vasajax.data.synth.clip import synthesize_clip, write_clip
    from vasajax.data.synth.config import SynthConfig
    from vasajax.facetrack.landmarks import BLENDSHAPE_NAMES
    from vasajax.image import PORTRAITS, load_image

    portrait = load_image(PORTRAITS["astronaut"])
    clip = synthesize_clip(portrait, "Open your mouth wide, then close it again.", seed=1, cfg=SynthConfig.tiny())
    write_clip(clip, tmp_path / "videos" / "astro", "c0")
    (tmp_path / "videos" / "astro" / "c0.wav").unlink()
    cfg = prep.PrepConfig(size=64, clip_frames=25, min_face_frac=0.25, codec="png")
    report = prep.prepare(tmp_path / "videos", tmp_path / "out", cfg, progress=False)
    n = len(clip.frames) // 25
    assert report["summary"]["clips"] == n >= 2
    gt = clip.ground_truth
    jaw, mouth, yaw, yaw_gt = [], [], [], []
    for rec in clips.read_records(clips.read_manifest(tmp_path / "out"), tmp_path / "out"):
        s = rec.start_frame
        spf = clips.SAMPLES_PER_FRAME
        np.testing.assert_allclose(rec.audio_N, clip.audio[s * spf : (s + 25) * spf], atol=0.05)  # AAC
        jaw.append(rec.blendshapes_Tx52[:, BLENDSHAPE_NAMES.index("jawOpen")])
        mouth.append(gt["mouth_open"][s : s + 25])
        yaw.append(rec.pose_Tx6[:, 0])
        yaw_gt.append(gt["pose"][s : s + 25, 0])
    assert np.corrcoef(np.concatenate(jaw), np.concatenate(mouth))[0, 1] > 0.5
    assert np.corrcoef(np.concatenate(yaw), np.concatenate(yaw_gt))[0, 1] > 0.5
