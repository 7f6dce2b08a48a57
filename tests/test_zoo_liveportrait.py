"""LivePortrait port: parity with the upstream PyTorch modules (fixtures from tools/make_zoo_fixtures.py),
keypoint algebra, full-size key tables, and loader errors. No torch needed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vasajax import params
from vasajax.errors import UserError
from vasajax.zoo.liveportrait import LivePortrait, LivePortraitConfig, convert_state_dicts, jitted, load_liveportrait
from vasajax.zoo.liveportrait import convert as lpc
from vasajax.zoo.liveportrait import keypoints as kpt

FIX = Path(__file__).parent / "fixtures" / "zoo"
TINY = LivePortraitConfig.tiny()
TOL = 1e-4
NETS = (*lpc.MODULES, lpc.RETARGETING)


def fixture(name: str) -> tuple[dict, dict, dict]:
    t, _ = params.read_safetensors(FIX / f"liveportrait_{name}.safetensors")

    def part(prefix):
        return {k[len(prefix) :]: v for k, v in t.items() if k.startswith(prefix)}

    return part("sd."), part("in."), part("out.")


def nhwc(x):
    """torch NCHW / NCDHW → channels-last."""
    return np.moveaxis(np.asarray(x), 1, -1)


def rel_err(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    return float(np.max(np.abs(ours - theirs)) / max(np.max(np.abs(theirs)), 1e-12))


def call(module, *args, **kwargs):
    graphdef, state = nnx.split(module)
    return jax.jit(lambda s, a, kw: nnx.merge(graphdef, s)(*a, **kw))(state, args, kwargs)


def test_appearance_parity():
    sd, inp, out = fixture("appearance_feature_extractor")
    f = lpc.convert_module("appearance_feature_extractor", sd, TINY)
    assert rel_err(call(f, nhwc(inp["image"])), nhwc(out["volume"])) < TOL


def test_motion_parity():
    sd, inp, out = fixture("motion_extractor")
    m = lpc.convert_module("motion_extractor", sd, TINY)
    got = call(m, nhwc(inp["image"]))
    for k, v in out.items():
        assert rel_err(got[k], v) < TOL, k


def test_warping_parity():
    sd, inp, out = fixture("warping_module")
    w = lpc.convert_module("warping_module", sd, TINY)
    got = call(w, nhwc(inp["volume"]), inp["kp_source"], inp["kp_driving"])
    assert rel_err(got["deformation"], out["deformation"]) < TOL  # B×D×H×W×3 in both layouts
    assert rel_err(got["occlusion_map"], nhwc(out["occlusion_map"])) < TOL
    assert rel_err(got["out"], nhwc(out["out"])) < TOL


def test_generator_parity():
    sd, inp, out = fixture("spade_generator")
    g = lpc.convert_module("spade_generator", sd, TINY)
    assert rel_err(call(g, nhwc(inp["feature"])), nhwc(out["image"])) < TOL


def test_retargeting_parity():
    sd, inp, out = fixture("stitching_retargeting_module")
    assert any(".module." in k for k in sd)  # DDP prefixes, stripped as upstream does
    s = lpc.convert_module(lpc.RETARGETING, sd, TINY)
    ks, kd = jnp.asarray(inp["kp_source"]), jnp.asarray(inp["kp_driving"])
    b = ks.shape[0]
    delta = s.stitching(jnp.concatenate([ks.reshape(b, -1), kd.reshape(b, -1)], 1))
    assert rel_err(delta, out["stitch_delta"]) < TOL
    assert rel_err(kpt.stitch(s, ks, kd), out["stitched"]) < TOL
    assert rel_err(kpt.retarget_eye(s, ks, inp["eye_ratio"]), out["eye_delta"]) < TOL
    assert rel_err(kpt.retarget_lip(s, ks, inp["lip_ratio"]), out["lip_delta"]) < TOL


def test_whole_chain_parity():
    """Source image + driving motion → frame, through F, M, transform_keypoint, stitching, W and G."""
    model = convert_state_dicts({n: fixture(n)[0] for n in NETS}, TINY)
    _, inp, out = fixture("chain")
    p, fns = jitted(model)
    vol = fns.extract_appearance(p, nhwc(inp["source"]))
    assert rel_err(vol, nhwc(out["volume"])) < TOL
    info = fns.extract_motion(p, nhwc(inp["source"]))
    for k in ("pitch", "yaw", "roll", "kp", "exp", "t", "scale"):
        assert rel_err(info[k], out[f"source_{k}"]) < TOL, k
    x_s = kpt.transform_keypoint(
        info["kp"], info["pitch"], info["yaw"], info["roll"], info["exp"], info["scale"], info["t"]
    )
    assert rel_err(x_s, out["kp_source"]) < TOL
    d = inp
    x_d = kpt.transform_keypoint(info["kp"], d["pitch"], d["yaw"], d["roll"], d["exp"], d["scale"], d["t"])
    assert rel_err(x_d, out["kp_driving"]) < TOL
    x_d = kpt.stitch(model.retargeting, x_s, x_d)
    assert rel_err(x_d, out["kp_driving_stitched"]) < TOL
    frame = fns.render(p, vol, x_s, x_d)
    assert frame.shape == (1, TINY.output_size, TINY.output_size, 3)
    assert rel_err(frame, nhwc(out["frame"])) < TOL


# ------------------------------------------------------------------------------------------ keypoints


@pytest.mark.parametrize("shape", [(1, 4, 16, 16, 6, 3, 7), (2, 3, 17, 33, 5, 2, 5)], ids=["k7", "k5-odd-sizes"])
def test_fft_conv3d_equals_the_direct_conv(shape):
    """``conv3d_fft`` (the CPU form of large-kernel ``Conv3d``) against XLA's own 3D conv: batch, sizes that do not
    divide into tiles, both kernel sizes it takes; and the stacked form ``Conv3d`` uses elsewhere."""
    import jax

    from vasajax.zoo.liveportrait import layers

    b, d, h, w, cin, cout, k = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((b, d, h, w, cin)).astype(np.float32)
    kern = rng.standard_normal((k, k, k, cin, cout)).astype(np.float32)
    want = np.asarray(
        jax.lax.conv_general_dilated(
            x, kern, (1, 1, 1), "SAME", dimension_numbers=("NDHWC", "DHWIO", "NDHWC"), precision="highest"
        )
    )
    scale = np.abs(want).max()
    for fn in (layers.conv3d_fft, layers.conv3d_stacked):
        got = np.asarray(jax.jit(fn)(x, kern))
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-5 * scale, fn.__name__


def test_headpose_bins_to_degrees():
    assert abs(float(kpt.headpose_to_degrees(jnp.zeros((1, 66)))[0])) < 1e-4  # uniform → 3·32.5 − 97.5 = 0
    onehot = jnp.full((3, 66), -1e4).at[jnp.arange(3), jnp.array([0, 10, 65])].set(0.0)
    np.testing.assert_allclose(kpt.headpose_to_degrees(onehot), [-97.5, -67.5, 97.5], atol=1e-4)


def test_rotation_convention():
    zero = jnp.zeros((1,))
    np.testing.assert_allclose(kpt.rotation_matrix(zero, zero, zero)[0], np.eye(3), atol=1e-7)
    r = kpt.rotation_matrix(jnp.array([20.0]), jnp.array([-35.0]), jnp.array([10.0]))[0]
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-6)
    # row-vector form: x R with R = (R_z R_y R_x)ᵀ, so a pure yaw of 90° maps the x axis onto −z
    ry = kpt.rotation_matrix(zero, jnp.array([90.0]), zero)[0]
    np.testing.assert_allclose(jnp.array([1.0, 0, 0]) @ ry, [0, 0, -1], atol=1e-6)


def test_transform_keypoint_identity_pose():
    kp = jax.random.normal(jax.random.key(0), (2, 4, 3))
    zero = jnp.zeros((2, 1))
    t = jnp.array([[0.1, -0.2, 5.0], [0.0, 0.3, -5.0]])
    got = kpt.transform_keypoint(kp, zero, zero, zero, jnp.zeros_like(kp), 2 * jnp.ones((2, 1)), t)
    want = 2 * kp + jnp.concatenate([t[:, None, :2], jnp.zeros((2, 1, 1))], -1)  # tz is not applied
    np.testing.assert_allclose(got, want, atol=1e-6)
    # pose given as M's bin logits is turned into degrees first (uniform logits: 0°)
    bins = jnp.zeros((2, 66))
    got = kpt.transform_keypoint(kp, bins, bins, bins, jnp.zeros_like(kp), 2 * jnp.ones((2, 1)), t)
    np.testing.assert_allclose(got, want, atol=1e-5)


# ------------------------------------------------------------------------------------------ full size


@pytest.mark.parametrize("name", NETS)
def test_full_size_key_tables(name):
    """Every variable of the full-size network maps onto a released key of the right shape; no key is left over."""
    full = LivePortraitConfig.full()
    theirs = json.loads((FIX / f"liveportrait_{name}_keys.json").read_text())
    if name == lpc.RETARGETING:
        theirs = lpc.canonical_retargeting(theirs)
    ours = lpc.variable_shapes(lpc.make(name, full))
    plan = params.plan(ours, theirs, lpc.rules_for(name, full), model=name, ignored=lpc.IGNORED)
    assert set(plan.sources) == set(ours)
    assert plan.unused == []
    ignored = [k for k in theirs if k.endswith("num_batches_tracked")]
    assert len({k for k, _ in plan.sources.values()}) + len(ignored) == len(theirs)  # one-to-one


def test_config_round_trip():
    for cfg in (TINY, LivePortraitConfig.full()):
        assert LivePortraitConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="max_features"):
        dataclasses.replace(TINY, appearance=dataclasses.replace(TINY.appearance, max_features=100))


def test_full_size_shapes():
    cfg = LivePortraitConfig.full()
    assert (cfg.feature_size, cfg.output_size) == (64, 512)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: LivePortrait(cfg, rngs=nnx.Rngs(0))))
    image = jax.ShapeDtypeStruct((1, 256, 256, 3), jnp.float32)
    vol = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s).extract_appearance(x), state, image)
    assert vol.shape == (1, 16, 64, 64, 32)
    kp = jax.ShapeDtypeStruct((1, 21, 3), jnp.float32)
    img = jax.eval_shape(lambda s, v, a, b: nnx.merge(graphdef, s).render(v, a, b), state, vol, kp, kp)
    assert img.shape == (1, 512, 512, 3)


# ------------------------------------------------------------------------------------------ errors


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_missing_folder_and_file(tmp_path):
    with pytest.raises(UserError) as e:
        load_liveportrait(tmp_path, TINY)
    assert "base_models" in _one_line(e)
    (tmp_path / "base_models").mkdir()
    with pytest.raises(UserError) as e:
        load_liveportrait(tmp_path, TINY)
    assert "appearance_feature_extractor.pth" in _one_line(e)


def test_unreadable_file(tmp_path):
    (tmp_path / "base_models").mkdir()
    (tmp_path / "base_models" / "appearance_feature_extractor.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError) as e:
        load_liveportrait(tmp_path, TINY)
    assert "appearance_feature_extractor.pth" in _one_line(e)


def test_wrong_model_and_wrong_size():
    sd_m = fixture("motion_extractor")[0]
    with pytest.raises(UserError) as e:
        lpc.convert_module("appearance_feature_extractor", sd_m, TINY)
    assert "lack" in _one_line(e) and "appearance_feature_extractor" in str(e.value)
    sd_f = fixture("appearance_feature_extractor")[0]
    with pytest.raises(UserError) as e:
        lpc.convert_module("appearance_feature_extractor", sd_f, LivePortraitConfig.full())
    assert "shape" in _one_line(e)
