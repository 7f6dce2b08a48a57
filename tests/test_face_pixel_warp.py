"""The pixel-warp decoder (``FaceConfig.pixel_warp``): the latent carries the source image and the source point
of every canonical voxel, the decoder warps the source image by a flow derived from the 3D warps."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vasajax.eval import ablation
from vasajax.face import FaceConfig, FaceLatentModel, warp
from vasajax.face import model as face_model
from vasajax.face.renderer import MASK_BIAS


@pytest.fixture(scope="module")
def tiny_warp():
    cfg = FaceConfig.tiny(pixel_warp=True)
    model = FaceLatentModel(cfg, rngs=nnx.Rngs(0))
    images = jax.random.uniform(jax.random.key(1), (2, cfg.image_size, cfg.image_size, 3))
    return cfg, model, images


def test_latent_carries_source_and_points_and_jit_matches_eager(tiny_warp):
    cfg, model, images = tiny_warp
    lat = model.encode(images)
    d, h, w, _ = cfg.vol_shape
    assert lat.source.shape == images.shape and lat.source_grid.shape == (2, d, h, w, 2)
    params, encode, decode = face_model.jitted(model)
    jl = encode(params, images)
    out = decode(params, jl.appearance, jl.identity, jl.pose, jl.dyn, jl.source, jl.source_grid)
    eager = model.decode_latent(lat, lat.pose, lat.dyn)
    assert out.shape == images.shape
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    np.testing.assert_allclose(np.asarray(out), np.asarray(eager), atol=1e-4)
    with pytest.raises(ValueError, match="source"):
        model.decode(lat.appearance, lat.identity, lat.pose, lat.dyn)


def test_the_volume_decoder_latent_has_no_source():
    lat = FaceLatentModel(FaceConfig.tiny(), rngs=nnx.Rngs(0)).encode(jnp.zeros((1, 64, 64, 3)))
    assert lat.source is None and lat.source_grid is None


def test_identity_motion_and_an_opaque_mask_copy_the_source(tiny_warp):
    """Zero pose, a fresh (zero) warp flow and neutral heads give the identity flow; with the mask at 1 the
    decoder returns the source pixels (away from the border, where the upsampled flow is clamped)."""
    cfg, model, images = tiny_warp
    d, h, w, _ = cfg.vol_shape
    grid = jnp.broadcast_to(warp.identity_grid(d, h, w)[..., :2], (2, d, h, w, 2))
    b = model.g2d.out.bias[...]
    model.g2d.out.bias[...] = b.at[3].set(1e4)  # mask → 1
    try:
        lat = model.encode(images)
        out = model.decode(lat.appearance, lat.identity, jnp.zeros((2, 6)), lat.dyn, images, grid)
    finally:
        model.g2d.out.bias[...] = b
    assert float(b[3]) == MASK_BIAS
    m = cfg.image_size // w  # one volume cell of margin
    np.testing.assert_allclose(np.asarray(out)[:, m:-m, m:-m], np.asarray(images)[:, m:-m, m:-m], atol=1e-5)


def test_gradients_reach_every_decoder_head(tiny_warp):
    _, model, images = tiny_warp
    graphdef, params = nnx.split(model)

    lat = model.encode(images)  # the decoder's gradients only: encode once, outside the differentiated function

    def loss(p, lat):
        out = nnx.merge(graphdef, p).decode_latent(lat, lat.pose[::-1], lat.dyn[::-1])
        return jnp.mean((out - images[::-1]) ** 2)

    g = jax.jit(jax.grad(loss))(params, lat)
    for name in ("flow_head", "out"):
        leaves = jax.tree.leaves(g["g2d"][name])
        assert all(np.all(np.isfinite(np.asarray(x))) for x in leaves)
        assert any(float(jnp.abs(x).max()) > 0 for x in leaves), name


def test_ablation_moves_the_source_with_the_appearance_factor(tiny_warp):
    _, model, images = tiny_warp
    a, b = model.encode(images[:1]), model.encode(images[1:])
    swapped = ablation.swap(a, b, ["appearance"])
    assert swapped.source is b.source and swapped.source_grid is b.source_grid and swapped.pose is a.pose
    kept = ablation.swap(a, b, ["pose"])
    assert kept.source is a.source
    stacked = ablation.stack([a, b])
    assert stacked.source.shape[0] == 2
    params, _, decode = face_model.jitted(model)
    frames = ablation.decode_motion(decode, params, a, np.zeros((3, 6 + model.cfg.dyn_dim), np.float32), batch=2)
    assert frames.shape == (3, *images.shape[1:])


def test_small_warp_preset_and_old_configs_load():
    cfg = FaceConfig.small_warp()
    assert cfg.pixel_warp and not cfg.dyn_2d
    assert not any(c.pixel_warp or c.dyn_2d for c in (FaceConfig.small(), FaceConfig.paper()))
    d = FaceConfig.small().to_dict()
    d.pop("pixel_warp")  # a config.json written before the field existed
    assert FaceConfig.from_dict(d) == FaceConfig.small()


def test_dyn_2d_gives_g2d_a_direct_path_from_the_dynamics_code():
    """A fresh model's 3D warps ignore z_dyn (their last conv starts at zero). ``dyn_2d`` adds a direct path that
    also starts neutral (its projection is zero, so a model grown with it starts from the old one's images) but
    gets a gradient at step 0; once that projection is non-zero the image, and a loss's gradient, follow z_dyn."""
    images = jax.random.uniform(jax.random.key(1), (2, 64, 64, 3))
    for on in (False, True):
        cfg = FaceConfig.tiny(pixel_warp=True, dyn_2d=on, dyn_2d_size=4)
        model = FaceLatentModel(cfg, rngs=nnx.Rngs(0))
        lat = model.encode(images)
        dyn = jax.random.normal(jax.random.key(2), lat.dyn.shape)
        same = model.decode_latent(lat, lat.pose, dyn), model.decode_latent(lat, lat.pose, 0 * dyn)
        assert float(jnp.abs(same[0] - same[1]).max()) < 1e-6  # neutral at step 0, with or without the path
        if not on:
            continue
        graphdef, params = nnx.split(model)

        def loss(params, dyn, graphdef=graphdef, lat=lat):
            return jnp.mean(nnx.merge(graphdef, params).decode_latent(lat, lat.pose, dyn) ** 2)

        g = jax.grad(loss)(params, dyn)
        assert float(jnp.abs(g["g2d"]["dyn_proj"]["kernel"][...]).max()) > 0  # it will learn
        model.g2d.dyn_proj.kernel[...] = 0.1 * jax.random.normal(jax.random.key(3), model.g2d.dyn_proj.kernel.shape)
        moved = model.decode_latent(lat, lat.pose, dyn), model.decode_latent(lat, lat.pose, 0 * dyn)
        assert float(jnp.abs(moved[0] - moved[1]).max()) > 1e-4
        grad = jax.grad(lambda d, model=model, lat=lat: jnp.mean(model.decode_latent(lat, lat.pose, d) ** 2))(dyn)
        assert float(jnp.abs(grad).max()) > 0
    with pytest.raises(ValueError, match="dyn_2d_size"):
        FaceConfig.tiny(dyn_2d=True, dyn_2d_size=5)


def test_landmark_flow_carries_each_driver_point_to_its_source_point():
    """``landmark_flow``: pixels at a driver point read (nearly) its source point, far pixels keep the decoder's own
    flow (the points take no share there), fresh points sit at the centre, and the loss term checks its landmarks
    and model."""
    from vasajax.errors import UserError
    from vasajax.face import losses
    from vasajax.face.renderer import LandmarkFlow

    cfg = FaceConfig.tiny(pixel_warp=True, landmark_flow=2, landmark_flow_width=0.05)
    lf = LandmarkFlow(cfg, rngs=nnx.Rngs(0))
    b = 1
    pose, dyn, ident = jnp.zeros((b, 6)), jnp.ones((b, cfg.dyn_dim)), jnp.ones((b, cfg.id_dim))
    assert not np.any(np.asarray(lf.points(pose, dyn, ident)))
    # a lower lip 0.1 below its closed position in the driver, an upper lip that stays
    drv = jnp.array([[[0.0, 0.0], [0.0, 0.1]]])
    src = jnp.array([[[0.0, 0.0], [0.0, 0.02]]])
    weight, target = (np.asarray(a)[0] for a in lf(src, drv, 64))
    grid = (2 * np.arange(64) + 1) / 64 - 1
    base = np.stack(np.meshgrid(grid, grid, indexing="xy"), axis=-1) + 0.3  # some other flow of the decoder
    flow = (1 - weight) * base + target
    at = lambda f, x, y: f[np.abs(grid - y).argmin(), np.abs(grid - x).argmin()]  # noqa: E731
    # at the lower lip the output reads (most of the way: the neighbour and the background share the weight a
    # little) the source's lower lip, at the upper lip the source's upper lip
    np.testing.assert_allclose(at(flow, 0.0, 0.1 - 1 / 64), [0.0, 0.02 - 1 / 64], atol=0.05)
    np.testing.assert_allclose(at(flow, 0.0, 1 / 64), [0.0, 1 / 64], atol=0.05)
    assert at(weight, 0.0, 0.1 - 1 / 64) > 0.8
    np.testing.assert_allclose(flow[:10], base[:10], atol=1e-3)  # far above the mouth: the decoder's flow
    g = jax.grad(lambda d: lf(src, d, 64)[1].sum())(drv)
    assert float(jnp.abs(g).sum()) > 0

    model = FaceLatentModel(dataclasses.replace(cfg, warp_keypoints=4), rngs=nnx.Rngs(0))  # with keypoint warps
    images = jax.random.uniform(jax.random.key(1), (2, 64, 64, 3))
    lat = model.encode(images)
    assert lat.source_points.shape == (2, 2, 2)
    np.testing.assert_allclose(np.asarray(model.decode_latent(lat, lat.pose, lat.dyn)), np.asarray(model(images)))
    batch = {
        "source": np.zeros((2, 64, 64, 3), np.uint8),
        "driver": np.zeros((2, 64, 64, 3), np.uint8),
        "source_landmarks_Kx2": np.full((2, 2, 2), 0.5, np.float32),
        "driver_landmarks_Kx2": np.full((2, 2, 2), 0.5, np.float32),
    }
    lcfg = losses.FaceLossConfig.tiny(landmark_weight=1.0, face_weight=0.0, transfer_weight=0.0, identity_weight=0.0)
    crit = losses.FaceCritics(lcfg)
    metrics = jax.eval_shape(lambda: losses.generator_loss_and_outputs(model, crit, None, batch, lcfg)[1][0])
    assert "landmarks" in metrics
    wrong = {k: v[:, :1] if "landmarks" in k else v for k, v in batch.items()}
    with pytest.raises(UserError, match="landmark_flow = 2 points"):
        jax.eval_shape(lambda: losses.generator_loss_and_outputs(model, crit, None, wrong, lcfg))
    plain = FaceLatentModel(FaceConfig.tiny(pixel_warp=True), rngs=nnx.Rngs(0))
    with pytest.raises(UserError, match="needs the landmark flow"):
        jax.eval_shape(lambda: losses.generator_loss_and_outputs(plain, crit, None, batch, lcfg))


def test_static_flow_copies_the_source_exactly_whatever_the_pose():
    """``static_flow``: when the "stay" candidate takes all the depth weight, every output pixel reads its own
    position — up to the crop's border, and under a head turn that moves every lifted plane; a fresh model gives it
    one share of D + 1, so the flow moves with the head."""
    cfg = FaceConfig.tiny(pixel_warp=True, static_flow=True)
    model = FaceLatentModel(cfg, rngs=nnx.Rngs(0))
    images = jax.random.uniform(jax.random.key(1), (2, cfg.image_size, cfg.image_size, 3))
    lat = model.encode(images)
    turned = jnp.array([[0.3, -0.2, 0.25, 0.1, 0.0, 0.0]] * 2)
    _, fresh = model.decode(
        lat.appearance, lat.identity, turned, lat.dyn, lat.source, lat.source_grid, return_flow=True, paint=False
    )
    ident = warp.identity_grid(1, cfg.image_size, cfg.image_size)[0, ..., :2]
    assert float(jnp.abs(fresh - ident).mean()) > 1e-2
    head = model.g2d.flow_head
    assert head.kernel.shape[-1] == cfg.vol_depth + 3
    b, m = head.bias[...], model.g2d.out.bias[...]
    head.bias[...] = b.at[cfg.vol_depth].set(1e4)  # all weight on "stay"
    model.g2d.out.bias[...] = m.at[3].set(1e4)  # mask → 1: the warped source is the image
    try:
        out, flow = model.decode(
            lat.appearance, lat.identity, turned, lat.dyn, lat.source, lat.source_grid, return_flow=True, paint=False
        )
    finally:
        head.bias[...], model.g2d.out.bias[...] = b, m
    np.testing.assert_allclose(np.asarray(flow), np.broadcast_to(ident, flow.shape), atol=1e-5)
    np.testing.assert_allclose(np.asarray(out), np.asarray(images), atol=1e-4)
    with pytest.raises(ValueError, match="static_flow needs pixel_warp"):
        FaceConfig.tiny(static_flow=True)
