"""JoyVASA port: parity with upstream's PyTorch modules (fixtures from tools/make_joyvasa_fixtures.py).

No torch here: the fixtures hold upstream's state dict, inputs and outputs. Relative error = max |ours − theirs|
/ max |theirs|, in float32.
"""

import json
import pickle
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vasajax import params
from vasajax.errors import UserError
from vasajax.motion import wav2vec2_params
from vasajax.motion.wav2vec2 import Wav2Vec2, Wav2Vec2Config
from vasajax.zoo.joyvasa import audio, convert, sample, schedule, template
from vasajax.zoo.joyvasa.config import JoyVASAConfig
from vasajax.zoo.joyvasa.dit import JoyVASADiT, denoise_fn

FIXTURES = Path(__file__).parent / "fixtures" / "zoo"
TOL = 1e-4
TINY_OVERRIDES = dict(audio_dim=32, num_layers=2)  # not in upstream's args: its audio width and layer count are fixed
MEASURED: dict[str, float] = {}


def rel_err(ours, theirs, name: str) -> float:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape, (name, ours.shape, theirs.shape)
    err = float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))
    MEASURED[name] = err
    print(f"{name}: relative error {err:.2e}")
    return err


@pytest.fixture(autouse=True)
def _float32_matmuls():
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture(scope="module")
def fx():
    tensors, meta = params.read_safetensors(FIXTURES / "joyvasa_dit.safetensors")
    sd = {k[3:]: v for k, v in tensors.items() if k.startswith("sd.")}
    ins = {k[3:]: v for k, v in tensors.items() if k.startswith("in.")}
    outs = {k[4:]: v for k, v in tensors.items() if k.startswith("out.")}
    return sd, ins, outs, meta


_CONVERTED: dict[str, tuple] = {}


def _convert(fx, pe_form):
    """Converted once per form (module-wide), so that jitted functions are traced once per form."""
    if pe_form not in _CONVERTED:
        sd, _, _, meta = fx
        args = json.loads(meta["args"])
        _CONVERTED[pe_form] = convert.convert_motion_generator(sd, args, pe_form=pe_form, **TINY_OVERRIDES)
    return _CONVERTED[pe_form]


_GENERATORS: dict[str, sample.ClipGenerator] = {}


def _generator(fx, encoder, pe_form) -> sample.ClipGenerator:
    if pe_form not in _GENERATORS:
        _, dit, sched, _ = _convert(fx, pe_form)
        _GENERATORS[pe_form] = sample.ClipGenerator(dit, sched, encoder, cfg_scale=2.8)
    return _GENERATORS[pe_form]


@pytest.fixture(scope="module")
def encoder(fx):
    sd, _, _, meta = fx
    cfg = Wav2Vec2Config.from_hf(json.loads(meta["hubert_config"]))
    model, source = convert.convert_audio_encoder(cfg, sd)  # the checkpoint holds a complete encoder
    assert source == "motion-generator checkpoint"
    return model


def test_config_from_args_is_the_tiny_preset(fx):
    cfg, _, sched, prov = _convert(fx, "constant")
    assert cfg == JoyVASAConfig.tiny()
    assert prov["pe_form"] == "constant" and prov["schedule"].startswith("stored buffers, cosine matches")
    assert sched.num_steps == 10 and prov["audio_encoder_tensors_in_checkpoint"] > 0


@pytest.mark.parametrize("form", ["prefix", "constant"])
def test_denoiser_parity(fx, form):
    _, ins, outs, _ = fx
    _, dit, _, _ = _convert(fx, form)
    graphdef, p = nnx.split(dit)
    got = jax.jit(denoise_fn(graphdef))(
        p, ins["motion"], ins["audio_feat"], ins["prev_motion"], ins["prev_audio"], ins["step"]
    )
    assert rel_err(got, outs[f"denoise_{form}"], f"denoiser ({form})") <= TOL
    other = outs["denoise_constant" if form == "prefix" else "denoise_prefix"]
    assert np.max(np.abs(np.asarray(got) - other)) > 1e-2  # the two forms really differ


def test_audio_front_end_parity(fx, encoder):
    _, ins, outs, _ = fx
    _, dit, _, _ = _convert(fx, "constant")
    hidden = audio.encode_window(encoder, jnp.asarray(ins["wave"]), frames=8)
    assert rel_err(hidden, outs["audio_hidden"], "audio hidden (pad, conv, resample, encoder, resample)") <= TOL
    assert rel_err(dit.audio_features(hidden), outs["audio_feat"], "audio features (mapped)") <= TOL


def test_schedule_matches_upstream_buffers(fx):
    sd = fx[0]
    built = schedule.make_schedule(10, "cosine")
    for name in schedule.BUFFERS:
        np.testing.assert_allclose(getattr(built, name), sd[f"diffusion_sched.{name}"], rtol=2e-5, atol=1e-7)
    assert schedule.make_schedule(10, "linear").betas[1] == np.float32(1e-4)


@pytest.mark.parametrize("form", ["prefix", "constant"])
def test_chain_parity(fx, encoder, form):
    """Two windows from a waveform: padding, per-window encoding, CFG sampling, context carry, x_T reuse."""
    _, ins, outs, _ = fx
    zs = [ins[f"chain_z_{form}_{w}"] for w in range(2)]
    got = _generator(fx, encoder, form)(ins["chain_wave"], noise=(ins["chain_xT"], zs))
    assert got.shape == outs[f"chain_{form}"].shape == (13, 12)
    assert rel_err(got, outs[f"chain_{form}"], f"chain, 2 windows × 10 steps, CFG 2.8 ({form})") <= TOL


def test_window_without_guidance(fx):
    _, ins, outs, _ = fx
    _, dit, sched, _ = _convert(fx, "prefix")
    graphdef, p = nnx.split(dit)
    run = jax.jit(sample.make_window_sampler(graphdef, sched, cfg_scale=None))
    pm, pa = dit.start_context(1)
    got = run(p, ins["audio_feat"][:1], pm, pa, ins["chain_xT"], ins["nocfg_z"])
    assert rel_err(got, outs["nocfg_prefix"], "one window without CFG") <= TOL


def test_key_driven_generation_is_deterministic(fx, encoder):
    _, ins, _, _ = fx
    gen = _generator(fx, encoder, "constant")  # traced by test_chain_parity already
    wave = ins["chain_wave"][:3000]
    a, b = gen(wave, key=jax.random.key(0)), gen(wave, key=jax.random.key(0))
    plan = sample.plan_clip(wave, 8)
    assert a.shape == (plan.num_frames, 12) and np.array_equal(a, b) and np.isfinite(a).all()


def test_template_mapping(tmp_path):
    tensors, _ = params.read_safetensors(FIXTURES / "joyvasa_template.safetensors")
    tpl = {k[len("in.tpl.") :]: v for k, v in tensors.items() if k.startswith("in.tpl.")}
    path = tmp_path / "motion_template.pkl"
    path.write_bytes(pickle.dumps({**tpl, "mean_R": np.eye(3).reshape(-1)}))  # numpy pickles, as upstream's
    read = template.read_template(path)
    for smooth, tag in ((False, "raw"), (True, "smooth")):
        kp = template.to_keypoint_params(tensors["in.coef"], read, smooth=smooth)
        pose = np.concatenate([kp[k] for k in ("scale", "t", "pitch", "yaw", "roll")], axis=1)
        assert rel_err(pose, tensors[f"out.{tag}.pose"], f"template pose ({tag})") <= TOL
        assert rel_err(kp["R"], tensors[f"out.{tag}.R"], f"template R ({tag})") <= TOL
        assert rel_err(kp["exp"], tensors["out.exp"], "template exp") <= TOL
        assert kp["exp"].shape == (7, 21, 3) and kp["scale"].shape == (7, 1) and kp["t"].shape == (7, 3)


def test_template_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps({"mean_exp": Evil()}))
    with pytest.raises(UserError, match="not a JoyVASA motion template") as e:
        template.read_template(bad)
    assert "\n" not in str(e.value)


def test_full_size_key_coverage():
    """Every param of the full-size port maps onto a key of upstream's full-size state dict with the right
    shape, and every upstream key is read or deliberately ignored (nothing dropped silently)."""
    ref = json.loads((FIXTURES / "joyvasa_dit_keys.json").read_text())
    theirs = {k: tuple(v) for k, v in ref["keys"].items()}
    cfg = convert.config_from_args(ref["args"])
    assert cfg == JoyVASAConfig.released(audio_model="hubert_zh")
    ours = params.param_shapes(lambda: JoyVASADiT(cfg, rngs=nnx.Rngs(0)))
    plan = params.plan(ours, theirs, convert.TABLE, model=convert.MODEL, ignored=convert.IGNORED)
    assert plan.unused == [] and len(plan.sources) == len(ours)
    assert theirs["denoising_net.alignment_mask"] == (125, 125)
    assert schedule.BUFFERS and all(theirs[f"diffusion_sched.{b}"] == (51,) for b in schedule.BUFFERS)
    # the audio encoder inside the checkpoint: every tensor maps onto our hubert-base encoder
    enc = {
        k[len("audio_encoder.") :]: np.broadcast_to(np.float32(1), v)
        for k, v in theirs.items()
        if k.startswith("audio_encoder.")
    }
    enc = wav2vec2_params.canonical_hf_state(enc)
    enc_ours = params.param_shapes(lambda: Wav2Vec2(Wav2Vec2Config.base(), rngs=nnx.Rngs(0)))
    enc_plan = params.plan(
        enc_ours,
        {k: np.shape(v) for k, v in enc.items()},
        wav2vec2_params.TABLE,
        model="hubert",
        ignored=wav2vec2_params.IGNORED,
    )
    assert enc_plan.unused == []
    covered = {k for k, _ in plan.sources.values()}
    ignored_only = sorted(k for k in theirs if k not in covered and not k.startswith("audio_encoder."))
    assert ignored_only == sorted(
        ["denoising_net.TE.pe", "denoising_net.PE.pe", "denoising_net.alignment_mask"]
        + [f"diffusion_sched.{b}" for b in schedule.BUFFERS]
    )


def test_user_errors(fx, tmp_path):
    sd, _, _, meta = fx
    args = json.loads(meta["args"])
    with pytest.raises(UserError, match="not found") as e:
        convert.read_pt(tmp_path / "motion_generator_hubert_chinese.pt")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="not found"):
        template.read_template(tmp_path / "motion_template.pkl")
    with pytest.raises(UserError, match="lack 'feature_dim'"):
        convert.config_from_args({k: v for k, v in args.items() if k != "feature_dim"})
    with pytest.raises(UserError, match="has shape") as e:  # a checkpoint of other sizes than its args say
        convert.convert_motion_generator(sd, {**args, "motion_feat_dim": 13}, **TINY_OVERRIDES)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="lack"):  # a file of another model
        convert.convert_motion_generator({"encoder.weight": np.zeros(3)}, args, **TINY_OVERRIDES)
    with pytest.raises(UserError, match="does not read"):  # extra layers: refused, not dropped
        extra = {**sd, "denoising_net.transformer.layers.2.linear1.bias": np.zeros(128, np.float32)}
        convert.convert_motion_generator(extra, args, **TINY_OVERRIDES)
    with pytest.raises(UserError, match="pe_form"):
        JoyVASAConfig(pe_form="learned")


def test_pad_audio_gives_whole_frames():
    for n in (5120, 64000, 64001):
        padded = audio.pad_audio(jnp.zeros((1, n)))
        frames = (padded.shape[-1] - 400) // 320 + 1
        assert frames == (n + 80) // 320, (n, padded.shape)
    assert audio.pad_audio(jnp.zeros((1, 64300))).shape == (1, 64300)  # long enough: left alone, as upstream


def test_audio_encoder_sources(fx, tmp_path):
    """Folder weights, overridden by the checkpoint's ``audio_encoder.*`` tensors (upstream loads those last)."""
    sd, ins, outs, meta = fx
    enc_sd = convert.audio_encoder_state(sd)
    (tmp_path / "config.json").write_text(meta["hubert_config"])
    with pytest.raises(UserError, match="no model.safetensors"):
        convert.load_audio_encoder(tmp_path, {})
    folder = {k: (v + 1.0 if k == "feature_projection.projection.bias" else v) for k, v in enc_sd.items()}
    params.write_safetensors(tmp_path / "model.safetensors", folder)
    one = {"audio_encoder.feature_projection.projection.bias": enc_sd["feature_projection.projection.bias"]}
    _, enc, source = convert.load_audio_encoder(tmp_path, one)
    assert source == "folder + checkpoint overrides"
    hidden = audio.encode_window(enc, jnp.asarray(ins["wave"]), frames=8)
    assert rel_err(hidden, outs["audio_hidden"], "audio hidden, folder + override") <= TOL
    _, _, source = convert.load_audio_encoder(tmp_path, None)
    assert source == "folder"


def test_released_size_window_shapes():
    """The released sizes build and a full window (CFG, 50 steps) traces to 100 × 70 (abstractly: no compute)."""
    cfg = JoyVASAConfig.released()
    dit = nnx.eval_shape(lambda: JoyVASADiT(cfg, rngs=nnx.Rngs(0)))
    graphdef, p = nnx.split(dit)
    n_params = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(p))
    assert 30e6 < n_params < 40e6, n_params
    run = sample.make_window_sampler(graphdef, schedule.make_schedule(cfg.num_diffusion_steps))
    f32 = lambda *s: jax.ShapeDtypeStruct(s, jnp.float32)  # noqa: E731
    out = jax.eval_shape(
        run, p, f32(1, 100, 512), f32(1, 25, 70), f32(1, 25, 512), f32(1, 100, 70), f32(49, 1, 100, 70)
    )
    assert out.shape == (1, 100, 70)
