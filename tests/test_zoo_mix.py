"""Mixing stages: any renderer as encode-dataset's motion source, and VASA's motion DiT trained on LivePortrait's
motion exported beside the LivePortrait renderer (JoyVASA's recipe: a diffusion model on LivePortrait keypoint
motion, here VASA's DiT and trainer).

Tiny everything: the LivePortrait parity-fixture model (5 keypoints → 22-dim motion), 4 random 24-frame clips,
the tiny DiT trained 2 steps. Checks: the motion shards are the renderer's ``encode_motion`` on every frame and
their manifest names the renderer and motion space; the export holds no face model and loads entry by entry;
``Animator`` animates with it, deterministically per seed.
"""

import json

import numpy as np
import pytest

from test_clips import make_clip
from test_pipeline import ASTRONAUT, speechlike
from test_zoo_stages import LP, liveportrait_model
from vasajax import checkpoint_export as ce
from vasajax.data import clips
from vasajax.errors import UserError
from vasajax.load import load_stages
from vasajax.motion.audio import num_video_frames
from vasajax.pipeline import Animator
from vasajax.train import encode_dataset as ed
from vasajax.train import export as ex
from vasajax.train import motion as tm
from vasajax.zoo import export as zoo_export

K = LP.motion.num_kp
T = 24


@pytest.fixture(scope="module")
def lp_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo") / "lp"
    return zoo_export.write_liveportrait_export(out, LP, liveportrait_model(), {"source": "test fixtures"})


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("clips")
    recs = []
    with clips.ShardWriter(d, "c") as w:
        for i in range(4):
            rec = make_clip(i, rng, T=T)
            rec.audio_N[:] *= 0.1
            recs.append(rec)
            w.write_record(rec, codec="raw")
    clips.write_manifest(d / "manifest.json", clips.make_manifest("clip", w.shards))
    return d, recs


@pytest.fixture(scope="module")
def motion_dir(tmp_path_factory, lp_export, clip_dir):
    out = tmp_path_factory.mktemp("motion-lp")
    argv = ["--data", str(clip_dir[0]), "--out", str(out), "--renderer", str(lp_export), "--audio-config", "tiny",
            "--frames-per-batch", "16", "--no-progress"]  # fmt: skip
    assert ed.cli_main(argv) == 0
    return out


@pytest.fixture(scope="module")
def motion_run(tmp_path_factory, motion_dir):
    """The tiny DiT trained 2 steps on the LivePortrait motion shards."""
    run = tmp_path_factory.mktemp("motion-run")
    argv = ["--config", "tiny", "--batch", "4", "--steps", "2", "--warmup", "0", "--no-progress",
            "--sample-every", "0", "--data", str(motion_dir), "--workdir", str(run)]  # fmt: skip
    assert tm.cli_main(argv) == 0
    return run


@pytest.fixture(scope="module")
def mixed_export(tmp_path_factory, lp_export, motion_dir, motion_run):
    out = tmp_path_factory.mktemp("exports") / "vasa-on-lp"
    from vasajax import cli

    argv = ["export", "--renderer-export", str(lp_export), "--motion-run", str(motion_run), "--motion-data",
            str(motion_dir), "--out", str(out), "--steps", "3"]  # fmt: skip
    assert cli.main(argv) == 0
    return out


def test_renderer_motion_source(motion_dir, lp_export, clip_dir):
    m = clips.read_manifest(motion_dir)
    assert m["motion_space"] == "liveportrait" and m["config"]["motion_source"] == "renderer"
    r = m["config"]["renderer"]
    assert (r["name"], r["motion_space"], r["motion_dim"], r["export"]) == ("liveportrait", "liveportrait",
                                                                            3 * K + 7, str(lp_export))  # fmt: skip
    assert m["motion_names"][:7] == ["pitch", "yaw", "roll", "tx", "ty", "tz", "scale"]
    assert len(m["motion_names"]) == 3 * K + 7 and m["motion_names"][7] == "exp0_x"
    renderer = ed.load_renderer(lp_export)
    for rec, mrec in zip(clip_dir[1], clips.read_records(m, motion_dir)):
        # 24 frames in batches of 16 (the second padded) = the renderer on all frames at once
        want = renderer.encode_motion(rec.frames_TxSxSx3)
        np.testing.assert_allclose(mrec.motion_TxM, want, rtol=1e-4, atol=1e-4)
        assert mrec.motion_TxM.shape == (T, 3 * K + 7)


def test_renderer_source_errors(clip_dir, tmp_path):
    d = str(clip_dir[0])
    with pytest.raises(UserError, match="--renderer EXPORT"):
        ed.cli_main(["--data", d, "--out", str(tmp_path / "a"), "--motion-source", "renderer"])
    with pytest.raises(UserError, match="needs a renderer"):
        ed.encode_dataset(d, tmp_path / "b", ed.EncodeConfig(motion_source="renderer"))
    with pytest.raises(UserError):  # not an export
        ed.cli_main(["--data", d, "--out", str(tmp_path / "c"), "--renderer", str(tmp_path)])


def test_mixed_export_layout(mixed_export):
    m = json.loads((mixed_export / "manifest.json").read_text())
    assert m["stages"] == {"renderer": "liveportrait", "motion": "vasa", "audio": "logmel",
                           "motion_space": "liveportrait"}  # fmt: skip
    assert set(m["files"]) == {zoo_export.LP_WEIGHTS, zoo_export.LP_CONFIG, ce.MOTION_FILE, ce.CONFIG_FILE}
    assert m["provenance"]["motion_data"]["motion_names"][0] == "pitch"
    part = ce.load_motion_part(mixed_export)
    assert part.motion.motion_dim == 3 * K + 7 and part.diffusion.steps == 3 and "distance" in part.conditions
    with pytest.raises(UserError):  # VASA's whole-export loader still wants its three files
        ce.load_export(mixed_export)


def test_animate_with_mixed_export(mixed_export):
    st = load_stages(mixed_export)
    assert (st.renderer.name, st.generator.name, st.audio.name) == ("liveportrait", "vasa", "logmel")
    assert st.generator.motion_space == "liveportrait" and st.export is None
    anim = Animator(st)
    wave = speechlike(1.0)
    v0 = anim.animate(ASTRONAUT, wave, crop="center", seed=0)
    n = num_video_frames(wave.size, anim.fps, 16000)
    assert v0.frames.shape == (n, LP.image_size, LP.image_size, 3) and v0.frames.dtype == np.uint8
    assert v0.motion.shape == (n, 3 * K + 7) and np.isfinite(v0.motion).all()
    again = anim.animate(ASTRONAUT, wave, crop="center", seed=0)
    assert np.array_equal(again.frames, v0.frames) and np.array_equal(again.motion, v0.motion)
    other = anim.animate(ASTRONAUT, wave, crop="center", seed=1)
    assert not np.array_equal(other.motion, v0.motion)


def test_export_space_mismatch(tmp_path, lp_export, mixed_export, motion_dir, motion_run):
    """Motion shards of another space (edited manifest) are refused with the command that fixes it."""
    m = clips.read_manifest(motion_dir)
    run = json.loads((mixed_export / "manifest.json").read_text())["provenance"]["motion_run"]["workdir"]
    assert run  # recorded without this machine's absolute path
    other = tmp_path / "other"
    other.mkdir()
    for f in motion_dir.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    clips.write_manifest(other / "manifest.json", {**m, "motion_space": "vasa"})
    with pytest.raises(UserError, match="encode-dataset --renderer"):
        ex.export_with_renderer(lp_export, motion_run, other, tmp_path / "x")


def test_vasa_export_as_renderer(tmp_path, clip_dir):
    """The VASA renderer is an entry like any other: its export drives encode-dataset through the registry."""
    from test_pipeline import make_export

    vasa = make_export(tmp_path / "vasa")
    renderer = ed.load_renderer(vasa)
    cfg = ed.EncodeConfig(motion_source="renderer", audio=ed.audio_lib.AudioConfig.tiny(), frames_per_batch=16)
    m = ed.encode_dataset(clip_dir[0], tmp_path / "m", cfg, renderer=ed.RendererMotion(renderer, 16, vasa))
    assert m["motion_space"] == "vasa" and m["config"]["renderer"]["name"] == "vasa"
    assert m["motion_names"][:6] == list(ed.POSE_NAMES) and len(m["motion_names"]) == renderer.motion_dim
    mrec = next(clips.read_records(m, tmp_path / "m"))
    want = renderer.encode_motion(clip_dir[1][0].frames_TxSxSx3)
    np.testing.assert_allclose(mrec.motion_TxM, want, rtol=1e-4, atol=1e-4)
