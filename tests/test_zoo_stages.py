"""The zoo's stage entries end to end: LivePortrait renderer + JoyVASA generator + its audio encoder, written by the
export writer ``vasajax convert`` uses, loaded by ``vasajax.load.load_stages``, animated by ``Animator``.

Tiny models, no torch: LivePortrait from the parity fixtures' state dicts (``LivePortraitConfig.tiny()``, 5
keypoints → 22-dim motion), the audio encoder from the JoyVASA fixture's checkpoint (32-wide HuBERT), the DiT at
``JoyVASAConfig.tiny(motion_dim=22)`` with random weights (the fixture's DiT makes 12-dim motion, which no
renderer reads), the template cut from the template fixture to 5 keypoints.
"""

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from test_pipeline import ASTRONAUT, make_export, speechlike
from vasajax import params, provenance
from vasajax.errors import UserError
from vasajax.load import load_stages
from vasajax.motion.audio import num_video_frames
from vasajax.motion.wav2vec2 import Wav2Vec2Config
from vasajax.pipeline import Animator
from vasajax.stages import check_compatible
from vasajax.zoo import cli as zoo_cli
from vasajax.zoo import export
from vasajax.zoo.joyvasa import convert as jvc
from vasajax.zoo.joyvasa import sample
from vasajax.zoo.joyvasa.config import JoyVASAConfig
from vasajax.zoo.joyvasa.dit import JoyVASADiT
from vasajax.zoo.joyvasa.schedule import make_schedule
from vasajax.zoo.joyvasa.stage import JoyVASAGenerator, shown_rows
from vasajax.zoo.liveportrait import convert as lpc
from vasajax.zoo.liveportrait.config import LivePortraitConfig

FIX = Path(__file__).parent / "fixtures" / "zoo"
LP = LivePortraitConfig.tiny()
K = LP.motion.num_kp
JV = JoyVASAConfig.tiny(motion_dim=3 * K + 7)


def _fixture(name):
    t, meta = params.read_safetensors(FIX / f"{name}.safetensors")
    return t, meta


def liveportrait_model():
    sds = {}
    for n in (*lpc.MODULES, lpc.RETARGETING):
        t, _ = _fixture(f"liveportrait_{n}")
        sds[n] = {k[3:]: v for k, v in t.items() if k.startswith("sd.")}
    return lpc.convert_state_dicts(sds, LP)


def joyvasa_parts():
    t, meta = _fixture("joyvasa_dit")
    sd = {k[3:]: v for k, v in t.items() if k.startswith("sd.")}
    enc_cfg = Wav2Vec2Config.from_hf(json.loads(meta["hubert_config"]))
    encoder, _ = jvc.convert_audio_encoder(enc_cfg, sd)
    dit = JoyVASADiT(JV, rngs=nnx.Rngs(0))
    tt, _ = _fixture("joyvasa_template")
    tpl = {k[len("in.tpl.") :]: v for k, v in tt.items() if k.startswith("in.tpl.")}
    tpl["mean_exp"], tpl["std_exp"] = tpl["mean_exp"][: 3 * K], tpl["std_exp"][: 3 * K]
    return dit, make_schedule(JV.num_diffusion_steps), tpl, enc_cfg, encoder


@pytest.fixture(scope="module")
def lp_model():
    return liveportrait_model()


@pytest.fixture(scope="module")
def full_export(tmp_path_factory, lp_model):
    dit, sched, tpl, enc_cfg, encoder = joyvasa_parts()
    out = tmp_path_factory.mktemp("zoo") / "joyvasa"
    return export.write_joyvasa_export(
        out, LP, lp_model, JV, dit, sched, tpl, enc_cfg, encoder, {"source": "test fixtures"}
    )


@pytest.fixture(scope="module")
def anim(full_export):
    return Animator(load_stages(full_export))


@pytest.fixture(scope="module")
def wave():
    return speechlike(1.5)


@pytest.fixture(scope="module")
def video0(anim, wave):
    return anim.animate(ASTRONAUT, wave, crop="center", seed=0)


def test_export_manifest(full_export):
    m = json.loads((full_export / "manifest.json").read_text())
    assert m["stages"] == {"renderer": "liveportrait", "motion": "joyvasa", "audio": "joyvasa-hubert",
                           "motion_space": "liveportrait"}  # fmt: skip
    assert set(m["files"]) == {export.LP_WEIGHTS, export.LP_CONFIG, export.JV_WEIGHTS, export.JV_CONFIG,
                               export.AUDIO_WEIGHTS, export.AUDIO_CONFIG}  # fmt: skip
    assert not [p for p in full_export.parent.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_animate_end_to_end(anim, video0, wave):
    T = num_video_frames(wave.size, anim.fps, 16000)
    assert anim.renderer.name == "liveportrait" and anim.generator.name == "joyvasa"
    assert video0.frames.shape == (T, LP.image_size, LP.image_size, 3) and video0.frames.dtype == np.uint8
    assert video0.motion.shape == (T, 3 * K + 7) and np.isfinite(video0.motion).all()


def test_deterministic_and_seeded(anim, video0, wave):
    again = anim.animate(ASTRONAUT, wave, crop="center", seed=0)
    assert np.array_equal(again.frames, video0.frames) and np.array_equal(again.motion, video0.motion)
    other = anim.animate(ASTRONAUT, wave, crop="center", seed=1)
    assert not np.array_equal(other.motion, video0.motion)


def test_native_size_and_absolute_pose(anim, wave):
    """G's native output (128² for the tiny model, 512² released) at --size; the watermark needs ≥ 96 px."""
    v = anim.animate(ASTRONAUT, wave, crop="center", seed=0, size=LP.output_size, pose="absolute")
    assert v.frames.shape[1:] == (LP.output_size, LP.output_size, 3)
    assert provenance.detect_frames(v.frames).present


def test_motion_matches_upstream_clip_loop(anim, video0, wave):
    """The generator through the stage interface = ``sample.ClipGenerator`` (upstream's loop) on the same seed,
    mapped by the template with EMA, minus the two lead-in frames, plus the Animator's relative-pose offset
    (``start="free"``: absolute expression and scale); ``start="portrait"`` (video0) moves expression and scale
    relative to the portrait's."""
    gen: JoyVASAGenerator = anim.generator
    clip = sample.ClipGenerator(gen.dit, gen.schedule, anim.audio.encoder, cfg_scale=2.8)
    coef = clip(wave, key=jax.random.key(0))
    motion, _ = gen.to_motion(coef, None)
    keep = shown_rows(wave.size, gen.cfg)[: len(motion)]
    expect = motion[keep]
    portrait = anim.prepare(ASTRONAUT, crop="center")
    expect[:, :6] += anim.pose_offset(portrait)
    free = anim.animate(portrait, wave, seed=0, start="free").motion
    np.testing.assert_allclose(free, expect, rtol=1e-4, atol=1e-4)
    own = anim.renderer.portrait_motion(portrait.latent)
    np.testing.assert_allclose(video0.motion[:, :6], free[:, :6], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(video0.motion[:, 7:] - free[:, 7:], np.broadcast_to(
        own[7:] - gen.template_mean("exp"), free[:, 7:].shape), atol=1e-4)  # fmt: skip
    np.testing.assert_allclose(video0.motion[:, 6] / free[:, 6], own[6] / gen.template_mean("scale")[0], rtol=1e-4)


def test_controls_without_counterpart_are_user_errors(anim, wave):
    for bad in (dict(gaze=(0.2, 0.0)), dict(emotion="happy"), dict(distance=0.3), dict(steps=3),
                dict(cfg_gaze=1.0), dict(first_window=4)):  # fmt: skip
        with pytest.raises(UserError, match="JoyVASA"):
            anim.animate(ASTRONAUT, wave[:4000], crop="center", **bad)


def test_renderer_only_export_and_space_mismatch(tmp_path, lp_model):
    out = export.write_liveportrait_export(tmp_path / "lp", LP, lp_model, {"source": "test"})
    m = json.loads((out / "manifest.json").read_text())
    assert m["stages"] == {"renderer": "liveportrait", "motion_space": "liveportrait"}
    vasa = load_stages(make_export(tmp_path / "vasa"))
    from vasajax.stages import RENDERERS

    r = RENDERERS.load("liveportrait", out, m)
    assert (r.motion_dim, r.pose_dim, r.image_size) == (3 * K + 7, 6, LP.image_size)
    with pytest.raises(UserError, match="motion space|liveportrait"):
        check_compatible(r, vasa.generator, vasa.audio)
    with pytest.raises(UserError):  # the renderer-only export names no generator: VASA's default cannot load it
        load_stages(out)
    (out / export.LP_CONFIG).write_text("{}")  # damage: the manifest's sha256 no longer matches
    with pytest.raises(UserError):
        load_stages(out)


def test_cli_errors(tmp_path, capsys):
    from vasajax import cli

    with pytest.raises(UserError, match="not a folder"):
        zoo_cli.cli_main(["liveportrait", str(tmp_path / "missing"), str(tmp_path / "out")])
    with pytest.raises(UserError, match="no base_models"):
        zoo_cli.cli_main(["liveportrait", str(tmp_path), str(tmp_path / "out")])
    assert cli.main(["convert", "liveportrait", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    with pytest.raises(UserError, match="pretrained_weights"):
        zoo_cli.cli_main(["joyvasa", str(tmp_path), str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("cfg", [JV, JoyVASAConfig.released()], ids=["tiny", "released"])
def test_shown_rows_are_the_video_frames(cfg):
    """Every clip length gives exactly num_video_frames(N) shown rows, contiguous from the third row on."""
    for n in (1, 639, 640, 641, 3000, cfg.window_samples - 1920, cfg.window_samples - 1281, cfg.window_samples,
              cfg.window_samples + 1, 5 * cfg.window_samples + 123):  # fmt: skip
        shown = shown_rows(n, cfg)
        idx = np.flatnonzero(shown)
        assert len(shown) % cfg.window == 0 and len(idx) == num_video_frames(n, cfg.fps, cfg.sample_rate), n
        assert idx[0] == 2 and np.all(np.diff(idx) == 1), n
