"""wav2vec2/HuBERT port: parity with random-init Hugging Face models, converter errors, pure jit forward."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from vasajax.errors import UserError
from vasajax.motion import audio, wav2vec2, wav2vec2_params

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)
VARIANTS = {  # name → (HF model class, HF config class, extra config)
    "wav2vec2-group": ("Wav2Vec2Model", "Wav2Vec2Config", dict(feat_extract_norm="group")),
    "wav2vec2-layer": (
        "Wav2Vec2Model",
        "Wav2Vec2Config",
        dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
    ),
    "hubert-group": ("HubertModel", "HubertConfig", dict(feat_extract_norm="group")),
}


@pytest.fixture(autouse=True)
def _float32_matmuls():
    """Parity is checked at full float32; on GPUs JAX's default lets matmuls use TF32 (errors ~2e-3)."""
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Random-init HF models saved as safetensors, with their outputs on a fixed 2×4000-sample input."""
    wave = np.random.default_rng(0).standard_normal((2, 4000)).astype(np.float32)
    out = {}
    for name, (model_cls, cfg_cls, extra) in VARIANTS.items():
        torch.manual_seed(0)
        model = getattr(transformers, model_cls)(getattr(transformers, cfg_cls)(**TINY, **extra)).eval()
        with torch.no_grad():
            ref = model(torch.from_numpy(wave), output_hidden_states=True)
        d = tmp_path_factory.mktemp(name)
        model.save_pretrained(d, safe_serialization=True)
        out[name] = (d, ref, model)
    return wave, out


@pytest.mark.parametrize("name", list(VARIANTS))
def test_parity_with_transformers(checkpoints, name):
    wave, cps = checkpoints
    d, ref, _ = cps[name]
    cfg, model = wav2vec2_params.load(d)
    assert cfg.do_stable_layer_norm == (name == "wav2vec2-layer")
    forward, params = wav2vec2.make_forward(model)
    last, hidden = forward(params, wave)
    assert last.shape == (2, wav2vec2.num_output_frames(4000, cfg), 32) == tuple(ref.last_hidden_state.shape)
    assert np.abs(np.asarray(last) - ref.last_hidden_state.numpy()).max() <= 1e-4
    assert len(hidden) == len(ref.hidden_states) == cfg.num_hidden_layers + 1
    for ours, theirs in zip(hidden, ref.hidden_states):
        assert np.abs(np.asarray(ours) - theirs.numpy()).max() <= 1e-4


def test_forward_is_pure_function_of_params_and_wave(checkpoints):
    wave, cps = checkpoints
    _, model = wav2vec2_params.load(cps["wav2vec2-group"][0])
    graphdef, params = nnx.split(model)
    traces = []

    @jax.jit
    def f(params, wave_BxN):
        traces.append(1)
        return wav2vec2.apply(graphdef, params, wave_BxN)[0]

    a = f(params, wave)
    scaled = jax.tree.map(lambda x: x * 1.01, params)
    b = f(scaled, wave)
    assert len(traces) == 1  # new params: same compiled function
    assert np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-3
    np.testing.assert_array_equal(np.asarray(f(params, wave)), np.asarray(a))


def test_task_model_prefix_and_old_weight_norm_keys(checkpoints, tmp_path):
    """A ``Wav2Vec2ForCTC`` checkpoint (keys under ``wav2vec2.``, an lm_head) with pre-parametrization
    ``weight_g``/``weight_v`` names converts to the same params as the bare model."""
    _, cps = checkpoints
    d, _, _ = cps["wav2vec2-group"]
    sd = safetensors_numpy.load_file(str(d / "model.safetensors"))
    pos = "encoder.pos_conv_embed.conv."
    renamed = {
        "wav2vec2."
        + k.replace(pos + "parametrizations.weight.original0", pos + "weight_g").replace(
            pos + "parametrizations.weight.original1", pos + "weight_v"
        ): v
        for k, v in sd.items()
    }
    renamed["lm_head.weight"] = np.zeros((5, 32), np.float32)
    assert pos + "weight_g" in {k[len("wav2vec2.") :] for k in renamed}
    cfg = wav2vec2_params.read_config(d)
    p1 = nnx.state(wav2vec2_params.convert(sd, cfg))
    p2 = nnx.state(wav2vec2_params.convert(renamed, cfg))
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the folded positional conv weight: g·v/‖v‖ per kernel tap, i.e. each tap's O×I slice has norm |g|
    g = sd[pos + "parametrizations.weight.original0"]
    w = wav2vec2_params.canonical_hf_state(sd)[pos + "weight"]
    np.testing.assert_allclose(np.linalg.norm(w, axis=(0, 1)), np.abs(g.reshape(-1)), rtol=1e-5)


def test_mismatching_or_missing_weights_name_the_key(checkpoints, tmp_path):
    _, cps = checkpoints
    d, _, _ = cps["wav2vec2-group"]
    sd = safetensors_numpy.load_file(str(d / "model.safetensors"))
    key = "encoder.layers.1.feed_forward.intermediate_dense.weight"
    bad = dict(sd, **{key: sd[key][:-1]})
    safetensors_numpy.save_file(bad, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((d / "config.json").read_text())
    with pytest.raises(UserError, match=key.replace(".", r"\.")) as e:
        wav2vec2_params.load(tmp_path)
    assert "\n" not in str(e.value)
    missing = {k: v for k, v in sd.items() if k != key}
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        wav2vec2_params.convert(missing, wav2vec2_params.read_config(d))


def test_checkpoint_errors(tmp_path):
    with pytest.raises(UserError, match="config.json"):
        wav2vec2_params.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    with pytest.raises(UserError, match="whisper"):
        wav2vec2_params.read_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(UserError, match="pytorch_model.bin"):
        wav2vec2_params.load(tmp_path)


@pytest.mark.parametrize("name", ["base", "large"])
def test_presets_match_transformers_parameter_count(name):
    """Our base/large presets have HF's parameter count, less the SpecAugment embedding and the weight-norm
    gain that conversion folds away (built abstractly: no memory, no time)."""
    cfg = getattr(wav2vec2.Wav2Vec2Config, name)()
    ours = nnx.eval_shape(lambda: wav2vec2.Wav2Vec2(cfg, rngs=nnx.Rngs(0)))
    n_ours = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(ours)))
    hf_cfg = transformers.Wav2Vec2Config(
        **{k: getattr(cfg, k) for k in ("conv_bias", "feat_extract_norm", "hidden_size", "num_hidden_layers")},
        num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size,
        do_stable_layer_norm=cfg.do_stable_layer_norm,
    )
    with torch.device("meta"):
        hf = transformers.Wav2Vec2Model(hf_cfg)
    n_hf = sum(p.numel() for p in hf.parameters())
    assert n_ours == n_hf - cfg.hidden_size - cfg.num_conv_pos_embeddings
    assert wav2vec2.Wav2Vec2Config.small() == wav2vec2.Wav2Vec2Config.paper() == wav2vec2.Wav2Vec2Config.base()


def test_frame_features_with_wav2vec2(checkpoints):
    """``kind="wav2vec2"``: T×2·hidden, and at 25 fps row i holds model outputs 2i and 2i+1 of the input
    shifted by 40 samples (so output j centres on sample 320j + 160, like log-mel slot j)."""
    _, cps = checkpoints
    d, _, torch_model = cps["wav2vec2-layer"]
    wave = (0.1 * np.random.default_rng(3).standard_normal(int(1.3 * 16_000))).astype(np.float32)
    cfg = audio.AudioConfig(kind="wav2vec2", checkpoint=str(d), w2v_normalize=False)
    assert audio.feature_dim(cfg) == 64
    assert audio.frame_features(np.zeros(0, np.float32), cfg).shape == (0, 64)
    feats = audio.frame_features(wave, cfg)
    T = audio.num_video_frames(len(wave))
    assert feats.shape == (T, 64) and np.all(np.isfinite(feats))
    x = np.zeros(320 * (2 * T - 1) + 400, np.float32)
    x[40 : 40 + len(wave)] = wave[: len(x) - 40]
    with torch.no_grad():
        direct = torch_model(torch.from_numpy(x[None])).last_hidden_state[0].numpy()
    assert direct.shape[0] == 2 * T
    np.testing.assert_allclose(feats, direct.reshape(T, 64), atol=1e-4)
    # long audio runs in fixed windows of 15 rows that also see 5 rows of context on each side
    win = audio.AudioConfig(
        kind="wav2vec2", checkpoint=str(d), w2v_window_s=0.3, w2v_context_s=0.1, w2v_normalize=False
    )
    long_Sx32 = audio.frame_features(wave, win).reshape(2 * T, 32)
    seg = 320 * (15 + 2 * 5 - 1) + 400
    x_ext = np.concatenate([np.zeros(5 * 320, np.float32), x, np.zeros(seg, np.float32)])
    for j in (0, 15, 30):
        with torch.no_grad():
            ref = torch_model(torch.from_numpy(x_ext[None, j * 320 : j * 320 + seg])).last_hidden_state[0]
        np.testing.assert_allclose(long_Sx32[j : j + 15], ref.numpy()[5 : 5 + len(long_Sx32[j : j + 15])], atol=1e-4)
