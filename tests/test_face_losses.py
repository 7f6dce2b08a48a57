"""Stage-1 losses on the tiny config: the whole generator objective (one jit), each term's zero/margin, the
discriminator, configs. One compiled generator loss (batch 2, 64²) serves every test that needs it."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from vasajax.errors import UserError
from vasajax.face import FaceConfig, FaceLatentModel, losses
from vasajax.face import discriminator as disc_lib
from vasajax.face import vgg as vgg_lib

FAST_COMPILE = {"xla_backend_optimization_level": 0}  # ~40% less XLA:CPU compile time for tiny test shapes


def _init(make, seed: int = 0):
    """``make()`` (a module constructor) with numpy-drawn weights at its default init's scale (LeCun-normal
    kernels, zero biases, unit norm scales). Eager JAX init compiles every initialiser op separately: ~10 s of
    CPU for the tiny face model, against ~1 s here. (Unlike the real init, warp generators start non-zero.)"""
    graphdef, state = nnx.split(nnx.eval_shape(make))
    rng = np.random.default_rng(seed)

    def leaf(path, x):
        name = [p.key for p in path if isinstance(p, jax.tree_util.DictKey)][-1]
        if name == "kernel":
            w = rng.normal(0, np.prod(x.shape[:-1]) ** -0.5, x.shape)
        elif name in ("scale", "bias"):
            w = np.full(x.shape, 1.0 if name == "scale" else 0.0)
        else:
            w = rng.normal(0, 0.02, x.shape)
        return jnp.asarray(w, x.dtype)

    return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(leaf, state))


def _batch(seed: int = 0, same: bool = False) -> dict[str, np.ndarray]:
    """A face_pairs-like batch: smooth random uint8 images (so SSIM/identity are not dominated by noise)."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(0, 255, (3, 2, 8, 8, 3))
    imgs = np.repeat(np.repeat(low, 8, axis=2), 8, axis=3).astype(np.uint8)
    src, drv, crs = imgs
    return {
        "source": src,
        "driver": src.copy() if same else drv,
        "cross": crs,
        "identity": np.array([0, 1], np.int32),
        "frame_ij_2": np.array([[3, 3], [5, 5]] if same else [[3, 7], [1, 5]], np.int32),
    }


@pytest.fixture(scope="module")
def setup():
    model = _init(lambda: FaceLatentModel(FaceConfig.tiny(), rngs=nnx.Rngs(0)))
    disc = _init(lambda: disc_lib.PatchDiscriminator(disc_lib.DiscConfig.tiny(), rngs=nnx.Rngs(1)), seed=1)
    cfg = losses.FaceLossConfig.tiny()
    critics = losses.FaceCritics(cfg)
    mdef, mparams = nnx.split(model)
    cdef, cparams = nnx.split(critics)
    ddef, dparams = nnx.split(disc)

    def objective(params, batch):
        model = nnx.merge(mdef, params)
        return losses.generator_loss_and_outputs(model, nnx.merge(cdef, cparams), nnx.merge(ddef, dparams), batch, cfg)

    value_and_grad = jax.jit(jax.value_and_grad(objective, has_aux=True), compiler_options=FAST_COMPILE)
    return dict(model=model, disc=disc, cfg=cfg, critics=critics, params=mparams, vg=value_and_grad)


@pytest.fixture(scope="module")
def first_call(setup):
    return setup["vg"](setup["params"], _batch())


def test_generator_objective_finite_with_every_term_and_finite_gradients(setup, first_call):
    (loss, (metrics, outputs)), grads = first_call
    expected = {"l1", "perceptual", "face", "transfer_l1", "transfer_perceptual", "identity", "contrastive"}
    assert expected | {"gan", "feature_matching", "psnr", "loss"} <= set(metrics)
    for k, v in metrics.items():
        assert np.isfinite(float(v)), k
    assert float(metrics["loss"]) == pytest.approx(float(loss))
    for k in expected - {"identity"}:  # a random model reenacts badly: real, positive distances
        assert float(metrics[k]) > 1e-3, k
    assert outputs["reenact"].shape == (2, 64, 64, 3) and outputs["cross"].shape == (2, 64, 64, 3)
    assert outputs["fakes"].shape == (4, 64, 64, 3)
    grads = jax.tree.map(np.asarray, grads)  # checks in numpy: eager jnp ops would compile once per shape
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    # Every part of the model gets a learning signal (encoders through the volumes/codes, warps, G3D, G2D).
    parts = ("appearance_encoder", "motion_encoder", "identity_encoder", "warp_to_canonical", "warp_to_driver")
    for name in (*parts, "g3d", "g2d"):
        norm = sum(float(np.sum(g**2)) for g in jax.tree.leaves(grads[name]))
        assert norm > 0, name


def test_weighted_total_is_the_documented_sum(setup, first_call):
    (loss, (m, _)), _ = first_call
    c = setup["cfg"]
    f = {k: float(v) for k, v in m.items()}
    total = (
        c.l1_weight * f["l1"]
        + c.perceptual_weight * f["perceptual"]
        + c.face_weight * f["face"]
        + c.transfer_weight * (c.l1_weight * f["transfer_l1"] + c.perceptual_weight * f["transfer_perceptual"])
        + c.identity_weight * f["identity"]
        + c.contrastive_weight * f["contrastive"]
        + c.gan_weight * f["gan"]
        + c.feature_matching_weight * f["feature_matching"]
    )
    assert float(loss) == pytest.approx(total, rel=1e-5)


def test_transfer_loss_is_zero_for_identical_frames(setup):
    # i == j: D(V_j, id_j, pose_i, dyn_j) and D(V_i, id_i, pose_i, dyn_j) get the same inputs.
    (_, (m, _)), _ = setup["vg"](setup["params"], _batch(seed=3, same=True))
    assert abs(float(m["transfer_l1"])) < 1e-6
    assert abs(float(m["transfer_perceptual"])) < 1e-5
    assert float(m["l1"]) > 1e-3  # the self-reconstruction of a random model is still wrong


def test_one_optimiser_step_lowers_the_generator_objective(setup, first_call):
    (loss0, _), grads = first_call
    opt = optax.adam(1e-4)

    @jax.jit
    def step(params, grads):
        return optax.apply_updates(params, opt.update(grads, opt.init(params), params)[0])

    stepped = step(setup["params"], grads)
    (loss1, _), _ = setup["vg"](stepped, _batch())
    assert float(loss1) < float(loss0) - 1e-4 * abs(float(loss0)), (float(loss0), float(loss1))


def test_frozen_module_passes_no_gradient_to_its_params():
    lin = _init(lambda: nnx.Linear(3, 2, rngs=nnx.Rngs(0)))
    graphdef, params = nnx.split(lin)
    x = jnp.ones((4, 3))

    @jax.jit
    def grads(params):
        frozen = jax.grad(lambda p: jnp.sum(losses.frozen(nnx.merge(graphdef, p))(x) ** 2))(params)
        live = jax.grad(lambda p: jnp.sum(nnx.merge(graphdef, p)(x) ** 2))(params)
        return frozen, live

    g, g_live = jax.tree.map(np.asarray, grads(params))
    assert all(np.abs(v).max() == 0 for v in jax.tree.leaves(g))
    assert any(np.abs(v).max() > 0 for v in jax.tree.leaves(g_live))


# ----------------------------------------------------------------------------------------- single terms


def test_l1_and_ssim_perceptual_are_zero_on_identical_images_and_grow_with_noise():
    x = jnp.asarray(_batch()["source"]) / 255.0
    noisy = jnp.clip(x + 0.1 * np.random.default_rng(0).normal(size=x.shape).astype("f4"), 0, 1)
    assert float(losses.l1(x, x).max()) == 0
    ms_ssim = jax.jit(lambda a, b: losses.ms_ssim_loss(a, b, 3))
    same, far, near = (ms_ssim(x, y) for y in (x, noisy, jnp.clip(x + 0.02, 0, 1)))
    assert float(jnp.abs(same).max()) < 1e-5
    assert bool(jnp.all(far > 0.05))
    assert float(near.mean()) < float(far.mean())


def test_ssim_matches_a_direct_numpy_computation():
    x = np.asarray(_batch()["source"][:1], np.float64) / 255.0
    y = np.clip(x + np.random.default_rng(1).normal(0, 0.05, x.shape), 0, 1)
    r = np.arange(7) - 3.0
    g = np.exp(-(r**2) / (2 * 1.5**2))
    win = np.outer(g, g) / np.outer(g, g).sum()

    def blur(a):  # valid 7×7 windows, per channel
        v = np.lib.stride_tricks.sliding_window_view(a, (7, 7), axis=(1, 2))  # B×h×w×C×7×7
        return np.einsum("bhwcij,ij->bhwc", v, win)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    want = (((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))).mean()
    got = float(jax.jit(losses.ssim)(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))[0])
    assert 0.2 < want < 0.99 and got == pytest.approx(want, abs=1e-4)


def test_vgg_perceptual_and_identity_embeddings_with_a_loaded_vgg():
    cfg = losses.FaceLossConfig.tiny(perceptual="vgg19")
    rng = np.random.default_rng(0)  # He-scaled numpy weights in torchvision's layout, through the converter (fast)
    widths = [w for w in vgg_lib.LAYOUT if w != "M"]
    sd = {}
    for t, (cin, cout) in zip(vgg_lib.TORCH_CONV_INDICES, zip([3, *widths[:-1]], widths, strict=True), strict=True):
        sd[f"features.{t}.weight"] = rng.normal(0, (2 / (9 * cin)) ** 0.5, (cout, cin, 3, 3)).astype("f4")
        sd[f"features.{t}.bias"] = rng.normal(0, 0.1, cout).astype("f4")
    vgg = vgg_lib.convert(sd)
    critics = losses.FaceCritics(cfg, vgg=vgg)
    x = jnp.asarray(_batch()["source"]) / 255.0
    y = jnp.asarray(_batch(seed=1)["source"]) / 255.0
    both = jax.jit(lambda a, b: (critics.perceptual(a, b, cfg), critics.identity_embedding(a[:2], model=None)))
    d, e = both(jnp.concatenate([x, x]), jnp.concatenate([x, y]))  # identity: VGG-pooled features, no model
    d = np.asarray(d)
    assert d[:2].max() == 0 and np.all(d[2:] > 0)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(e), axis=-1), 1.0, atol=1e-5)


def test_pluggable_identity_encoder_is_used_and_normalised():
    cfg = losses.FaceLossConfig.tiny()
    critics = losses.FaceCritics(cfg, identity=lambda im: im.mean(axis=(1, 2)) * 7.0)
    x = jnp.asarray(_batch()["source"]) / 255.0
    e = critics.identity_embedding(x, model=None)
    want = np.asarray(x.mean(axis=(1, 2)))
    np.testing.assert_allclose(np.asarray(e), want / np.linalg.norm(want, axis=-1, keepdims=True), atol=1e-5)


def test_default_identity_uses_the_models_encoder_without_gradient_to_it(setup):
    model, critics = setup["model"], setup["critics"]
    x = jnp.asarray(_batch()["source"]) / 255.0
    e, z = jax.jit(lambda im: (critics.identity_embedding(im, model), model.identity_encoder(im)))(x)
    z = np.asarray(z)
    np.testing.assert_allclose(np.asarray(e), z / np.linalg.norm(z, axis=-1, keepdims=True), atol=1e-5)


def test_cosface_prefers_matched_pairs_and_matches_its_formula():
    rng = np.random.default_rng(0)
    a, other = rng.normal(size=(5, 8)).astype("f4"), rng.normal(size=(5, 8)).astype("f4")
    cosface = jax.jit(lambda a, p, n: losses.cosface_loss(a, p, n, 5.0, 0.2))
    matched = cosface(a, 2.0 * a, other[:, None])  # positive = anchor direction
    swapped = cosface(a, other, (2.0 * a)[:, None])  # the negative is the match
    assert np.all(np.asarray(matched) < np.asarray(swapped))
    # By hand, for one anchor: -log(e^{s(cos_p - m)} / (e^{s(cos_p - m)} + e^{s cos_n})).
    n = lambda v: v / np.linalg.norm(v)  # noqa: E731
    an, on = np.asarray(a[0]), np.asarray(other[0])
    cp, cn = 1.0, float(n(an) @ n(on))
    want = -np.log(np.exp(5 * (cp - 0.2)) / (np.exp(5 * (cp - 0.2)) + np.exp(5 * cn)))
    assert float(matched[0]) == pytest.approx(want, rel=1e-5)


def test_hinge_losses_at_their_margins():
    def fake_disc(scale):  # logits = scale·(2x − 1) on one "scale": ones → +scale, zeros → −scale
        return lambda im: [((im[..., :1] * 2 - 1) * scale, [im])]

    real, fake = jnp.ones((2, 8, 8, 3)), jnp.zeros((3, 8, 8, 3))
    d_loss = jax.jit(lambda scale: losses.discriminator_loss(fake_disc(scale), real, fake))
    (at_margin, _), (beyond, _), (inside, m), (undecided, _) = (d_loss(s) for s in (1.0, 3.0, 0.5, 0.0))
    assert float(at_margin) == 0 and float(beyond) == 0
    assert float(inside) == pytest.approx(1.0) and float(undecided) == pytest.approx(2.0)
    assert float(m["d_real"]) == pytest.approx(0.5) and float(m["d_fake"]) == pytest.approx(-0.5)
    assert float(losses.hinge_generator([jnp.full((2, 4, 4, 1), 0.7), jnp.full((2, 2, 2, 1), -0.1)])) == (
        pytest.approx(-0.3)
    )


def test_feature_matching_is_zero_on_equal_features_and_ignores_the_real_side_gradient():
    f = [[jnp.ones((2, 4, 4, 3)), jnp.full((2, 2, 2, 5), 2.0)]]
    assert float(losses.feature_matching(f, f)) == 0
    g_real = jax.grad(lambda r: losses.feature_matching([[jnp.zeros(3)]], [[r]]))(jnp.ones(3))
    assert float(jnp.abs(g_real).max()) == 0
    assert float(losses.feature_matching([[jnp.zeros(3)]], [[jnp.ones(3)]])) == pytest.approx(1.0)


def test_patch_discriminator_scales_and_a_discriminator_step_lowers_its_loss(setup):
    disc = setup["disc"]
    real = jnp.asarray(_batch()["source"])
    fake = jnp.asarray(_batch(seed=5)["source"])
    out = jax.eval_shape(lambda im: disc(im.astype(jnp.float32) / 255), real)  # shapes only: no compile
    assert len(out) == 2
    assert out[0][0].shape[0] == 2 and out[0][0].shape[-1] == 1
    assert out[1][0].shape[1] < out[0][0].shape[1]  # the coarser scale has fewer patches
    assert len(out[0][1]) == disc.cfg.num_layers + 1
    ddef, dparams = nnx.split(disc)
    vg = jax.jit(jax.value_and_grad(lambda p: losses.discriminator_loss(nnx.merge(ddef, p), real, fake), has_aux=True))
    (l0, m0), g = vg(dparams)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(g))
    opt = optax.adam(1e-3)
    dparams = jax.jit(lambda p, g: optax.apply_updates(p, opt.update(g, opt.init(p), p)[0]))(dparams, g)
    (l1, _), _ = vg(dparams)
    assert float(l1) < float(l0)


# ----------------------------------------------------------------------------------------- configs


def test_configs_presets_and_errors():
    for preset in (losses.FaceLossConfig.tiny, losses.FaceLossConfig.small, losses.FaceLossConfig.paper):
        c = preset()
        assert c.perceptual == "ssim" and c.vgg_weights is None  # offline fallback without weights
        v = preset(vgg_weights="/some/vgg19.pth")
        assert v.perceptual == "vgg19" and v.l1_weight == 1.0
    p = losses.FaceLossConfig.paper(vgg_weights="x.pth")
    assert (p.perceptual_weight, p.face_weight, p.gan_weight, p.feature_matching_weight) == (20, 4, 1, 40)
    assert (p.contrastive_weight, p.cosface_scale, p.cosface_margin) == (2, 5, 0.2)
    assert dataclasses.is_dataclass(p) and p.to_dict()["perceptual"] == "vgg19"
    with pytest.raises(UserError, match="perceptual"):
        losses.FaceLossConfig(perceptual="lpips")
    with pytest.raises(UserError, match="vgg_weights"):
        losses.FaceCritics(losses.FaceLossConfig.paper(perceptual="vgg19"))
    with pytest.raises(UserError, match="not found"):
        losses.build_critics(losses.FaceLossConfig.paper(vgg_weights="/nonexistent/vgg19.pth"))
    for preset in (disc_lib.DiscConfig.tiny, disc_lib.DiscConfig.small, disc_lib.DiscConfig.paper):
        assert preset().num_scales >= 2


def test_mouth_box_mask_and_masked_l1():
    from vasajax.data.loader import LIP_LANDMARKS, mouth_box

    lm = np.full((1, 478, 3), 0.5, np.float32)
    lm[0, list(LIP_LANDMARKS), 0] = np.linspace(0.4, 0.6, len(LIP_LANDMARKS))
    lm[0, list(LIP_LANDMARKS), 1] = np.linspace(0.7, 0.8, len(LIP_LANDMARKS))
    box = mouth_box(lm, margin=0.5)
    np.testing.assert_allclose(box[0], [0.3, 0.6, 0.7, 0.9], atol=1e-6)
    mask = losses.box_mask(jnp.asarray(box), 10, 10)
    assert mask.shape == (1, 10, 10, 1) and float(mask.sum()) == 3 * 4  # rows 6..8, columns 3..6
    x = jnp.zeros((1, 10, 10, 3))
    y = x.at[:, 7, 4].set(1.0)  # one pixel inside the box, all channels
    np.testing.assert_allclose(float(losses.masked_l1(x, y, mask)[0]), 1 / 12, rtol=1e-6)
    assert float(losses.masked_l1(x, x.at[:, 0, 0].set(1.0), mask)[0]) == 0.0  # outside the box: ignored


def test_landmark_flow_l1_reads_the_flow_at_the_driver_landmarks():
    from vasajax.face import warp

    s = 16
    ident = jnp.asarray(warp.identity_grid(1, s, s)[0, ..., :2])[None]  # 1×S×S×2: each pixel reads itself
    src = jnp.asarray(np.random.default_rng(0).uniform(0.2, 0.8, (1, 5, 2)), jnp.float32)
    assert float(losses.landmark_flow_l1(ident, src, src)) < 1e-5  # no motion, identity flow: exact
    drv = src + jnp.array([0.0, 0.1])  # the driver's points 0.1 lower: the identity flow is off by 0.2 grid units
    np.testing.assert_allclose(float(losses.landmark_flow_l1(ident, src, drv)), 0.1, atol=1e-5)  # mean of 0 and 0.2
    moved = ident - jnp.array([0.0, 0.2])  # a flow that reads 0.2 grid units higher brings the source there
    assert float(losses.landmark_flow_l1(moved, src, drv)) < 1e-5


def test_flow_weight_trains_the_pixel_warp_flow():
    """With landmarks in the batch the term is finite and reaches the flow head; the volume decoder refuses it."""
    cfg = dataclasses.replace(losses.FaceLossConfig.tiny(), flow_weight=1.0, transfer_weight=0.0,
                              identity_weight=0.0, contrastive_weight=0.0)  # fmt: skip
    model = _init(lambda: FaceLatentModel(FaceConfig.tiny(pixel_warp=True), rngs=nnx.Rngs(0)))
    critics = losses.FaceCritics(cfg)
    batch = _batch()
    lm = np.random.default_rng(1).uniform(0.2, 0.8, (2, 7, 2)).astype(np.float32)
    batch.update(source_landmarks_Kx2=lm, driver_landmarks_Kx2=lm + 0.05)
    mdef, params = nnx.split(model)

    def objective(p):
        return losses.generator_loss_and_outputs(nnx.merge(mdef, p), critics, None, batch, cfg)[0]

    loss, grads = jax.jit(jax.value_and_grad(objective), compiler_options=FAST_COMPILE)(params)
    assert np.isfinite(float(loss))
    assert sum(float(np.sum(np.asarray(g) ** 2)) for g in jax.tree.leaves(grads["g2d"]["flow_head"])) > 0
    with pytest.raises(UserError, match="pixel-warp"):
        volume = _init(lambda: FaceLatentModel(FaceConfig.tiny(), rngs=nnx.Rngs(0)))
        losses.generator_loss_and_outputs(volume, critics, None, batch, cfg)
