"""Stage-1 face latent model on the tiny config: shapes, purity, invariances, gradients, presets."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vasajax.face import FaceConfig, FaceLatentModel, warp
from vasajax.face import model as face_model


@pytest.fixture(scope="module")
def tiny():
    cfg = FaceConfig.tiny()
    model = FaceLatentModel(cfg, rngs=nnx.Rngs(0))
    images = jax.random.uniform(jax.random.key(1), (2, cfg.image_size, cfg.image_size, 3))
    params, encode, decode = face_model.jitted(model)
    return cfg, model, images, params, encode, decode


def test_encode_decode_shapes_and_finite_under_jit(tiny):
    cfg, _, images, params, encode, decode = tiny
    lat = encode(params, images)
    assert lat.appearance.shape == (2, *cfg.vol_shape)
    assert lat.identity.shape == (2, cfg.id_dim)
    assert lat.pose.shape == (2, 6) and lat.dyn.shape == (2, cfg.dyn_dim)
    assert lat.motion.shape == (2, cfg.motion_dim)
    assert np.all(np.abs(np.asarray(lat.pose[:, :3])) <= cfg.max_angle)
    out = decode(params, lat.appearance, lat.identity, lat.pose, lat.dyn)
    assert out.shape == images.shape and out.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(out))) and float(out.min()) >= 0 and float(out.max()) <= 1


def test_stateful_call_equals_pure_function(tiny):
    _, model, images, params, encode, decode = tiny
    graphdef, state = nnx.split(model)
    eager = model.encode(images)
    pure = face_model.encode_fn(graphdef, state, images)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(pure)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    jitted = encode(params, images)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5, rtol=1e-4)
    frames_eager = model.decode(eager.appearance, eager.identity, eager.pose, eager.dyn)
    frames_jit = decode(params, eager.appearance, eager.identity, eager.pose, eager.dyn)
    np.testing.assert_allclose(np.asarray(frames_eager), np.asarray(frames_jit), atol=2e-5)


def test_zero_flow_and_identity_pose_leave_volume_unchanged(tiny):
    cfg, model, _, _, _, _ = tiny
    vol = jax.random.normal(jax.random.key(2), (2, *cfg.vol_shape))
    pose, dyn = jnp.zeros((2, 6)), jax.random.normal(jax.random.key(3), (2, cfg.dyn_dim))
    ident = jax.random.normal(jax.random.key(4), (2, cfg.id_dim))
    # A fresh warp generator's last conv is zero, so its flow is exactly zero whatever the code.
    assert float(jnp.abs(model.warp_to_driver(pose, dyn, ident)).max()) == 0.0
    np.testing.assert_allclose(np.asarray(model.to_driver(vol, pose, dyn, ident)), np.asarray(vol), atol=1e-5)
    np.testing.assert_allclose(np.asarray(model.to_canonical(vol, pose, dyn, ident)), np.asarray(vol), atol=1e-5)


def test_decode_follows_pose(tiny):
    """Changing only the pose changes the decoded frame; decoding the same latents twice is deterministic."""
    _, _, images, params, encode, decode = tiny
    lat = encode(params, images)
    a = decode(params, lat.appearance, lat.identity, lat.pose, lat.dyn)
    b = decode(params, lat.appearance, lat.identity, lat.pose, lat.dyn)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    turned = lat.pose.at[:, 0].add(0.6)
    c = decode(params, lat.appearance, lat.identity, turned, lat.dyn)
    assert float(jnp.abs(c - a).mean()) > 1e-4


def test_gradients_through_decode_are_finite_and_nonzero(tiny):
    cfg, _, images, _, _, _ = tiny
    model = FaceLatentModel(cfg, rngs=nnx.Rngs(0))
    # A fresh warp generator ends in a zero conv (flow = 0), which blocks gradients to the codes that drive it
    # (identity, dynamics) for exactly one step. Give it the small weights it has after any training step.
    for gen, seed in ((model.warp_to_canonical, 5), (model.warp_to_driver, 6)):
        gen.out.kernel.value = 1e-2 * jax.random.normal(jax.random.key(seed), gen.out.kernel.value.shape)
    graphdef, params = nnx.split(model)

    def loss(p):
        m = nnx.merge(graphdef, p)
        return jnp.abs(m(images) - images).mean()

    grads = jax.jit(jax.grad(loss))(params)
    leaves = jax.tree.leaves(grads)
    # (parts with weights: the patch painters' list is empty unless FaceConfig.patch_channels is set)
    model_parts = [k for k, v in vars(model).items() if isinstance(v, nnx.Module) and jax.tree.leaves(nnx.state(v))]
    assert len(model_parts) == 7
    assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
    norms = {"/".join(map(str, k)): float(jnp.linalg.norm(v)) for k, v in nnx.to_flat_state(grads)}
    for part in model_parts:
        assert any(n > 0 for k, n in norms.items() if k.startswith(part)), part


def test_reenact_broadcasts_one_source_to_many_drivers(tiny):
    cfg, model, images, _, _, _ = tiny
    out = nnx.jit(lambda m, s, d: m.reenact(s, d))(model, images[:1], images)
    assert out.shape == (2, cfg.image_size, cfg.image_size, 3)


@pytest.mark.parametrize("name", ["tiny", "small", "paper"])
def test_every_preset_builds_abstractly(name):
    cfg = getattr(FaceConfig, name)()
    model = face_model.abstract(cfg)
    n = face_model.count_params(nnx.state(model, nnx.Param))
    assert n > {"tiny": 5e4, "small": 3e6, "paper": 8e7}[name]
    if name == "paper":  # MegaPortraits sizes (DESIGN.md)
        assert cfg.vol_shape == (16, 64, 64, 96) and cfg.image_size == 512
        assert cfg.g2d_blocks == 8 and cfg.g2d_channels == 512 and cfg.g2d_up_channels == (256, 128, 64)
        assert cfg.g3d_channels == (192, 384, 512) and cfg.warp_channels == (256, 128, 64, 32)
        assert cfg.warp_base_channels * cfg.warp_base_depth == 2048 and cfg.dyn_dim == 128
    img = jax.ShapeDtypeStruct((1, cfg.image_size, cfg.image_size, 3), jnp.float32)
    graphdef, params = nnx.split(model)
    lat = jax.eval_shape(lambda p, x: face_model.encode_fn(graphdef, p, x), params, img)
    assert lat.appearance.shape == (1, *cfg.vol_shape)
    out = jax.eval_shape(
        lambda p, lt: face_model.decode_fn(graphdef, p, lt.appearance, lt.identity, lt.pose, lt.dyn),
        params,
        lat,
    )
    assert out.shape == img.shape


def test_config_round_trip_and_validation():
    cfg = FaceConfig.small()
    assert FaceConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        FaceConfig.tiny(image_size=72)  # not divisible by the encoder's pooling
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.image_size = 128  # type: ignore[misc]


def test_rigid_warp_inverse_on_model_scale_volume():
    """posed_grid and unposed_grid are inverse maps (away from the borders)."""
    pose = jnp.asarray([[0.3, -0.2, 0.1, 0.05, -0.05, 0.02]])
    q = warp.identity_grid(4, 8, 8)[None] * 0.5
    rot = warp.rotation_matrix(pose[:, :3])
    p = jnp.einsum("bji,bdhwj->bdhwi", rot, q - pose[:, None, None, None, 3:])
    back = jnp.einsum("bij,bdhwj->bdhwi", rot, p) + pose[:, None, None, None, 3:]
    np.testing.assert_allclose(np.asarray(back), np.asarray(q), atol=1e-6)


def test_keypoint_warp_starts_rigid_and_moves_voxels_near_a_keypoint():
    """``warp_keypoints``: a fresh generator adds no flow (the rigid pose alone, like the convolutional one); a
    keypoint's displacement moves the voxels near it, not those far away, and the flow is differentiable in z_dyn."""
    from vasajax.face.renderer import KeypointWarp

    cfg = FaceConfig.tiny(warp_keypoints=4)
    gen = KeypointWarp(cfg, rngs=nnx.Rngs(0))
    b = 2
    pose, dyn, ident = jnp.zeros((b, 6)), jnp.ones((b, cfg.dyn_dim)), jnp.ones((b, cfg.id_dim))
    flow = gen(pose, dyn, ident)
    assert flow.shape == (b, cfg.vol_depth, cfg.vol_size, cfg.vol_size, 3)
    assert not np.any(np.asarray(flow))
    # move keypoint 0 along x only
    gen.shift.bias[...] = jnp.zeros(4 * 3).at[0].set(2.0)
    flow = np.asarray(gen(pose, dyn, ident))[0, ..., 0]
    grid = np.asarray(warp.identity_grid(cfg.vol_depth, cfg.vol_size, cfg.vol_size))
    dist = np.linalg.norm(grid - np.asarray(gen.keypoints(ident))[0, 0], axis=-1)
    assert flow[dist < 0.15].mean() > 0.5 and flow[dist > 1.0].mean() < 0.05
    gen.shift.kernel[...] = 0.01 * jnp.ones_like(gen.shift.kernel[...])

    def moved(d):
        return gen(pose, d, ident).sum()

    assert float(jnp.abs(jax.grad(moved)(dyn)).sum()) > 0  # (a whole model with them: test_face_pixel_warp)


def test_fine_flow_and_stretch_cue_start_neutral_and_the_cue_marks_a_stretch():
    """``fine_flow`` and ``stretch_cue`` add zero-init heads: a model grown with them renders its old images. The
    cue (log area ratio of the flow) is 0 for the identity flow and negative where a thin strip is stretched."""
    from vasajax.face.renderer import log_area_ratio

    base = FaceConfig.tiny(pixel_warp=True)
    plain = FaceLatentModel(base, rngs=nnx.Rngs(0))
    grown = FaceLatentModel(dataclasses.replace(base, fine_flow=True, stretch_cue=True), rngs=nnx.Rngs(0))
    _, old = nnx.split(plain)
    graphdef, new = nnx.split(grown)
    new_flat = dict(nnx.to_flat_state(new))
    for path, value in nnx.to_flat_state(old):
        new_flat[path].set_value(value.get_value())
    grown = nnx.merge(graphdef, nnx.from_flat_state(new_flat))
    x = jax.random.uniform(jax.random.key(1), (2, 64, 64, 3))
    np.testing.assert_allclose(np.asarray(grown(x)), np.asarray(plain(x)), atol=1e-6)

    grid = warp.identity_grid(1, 16, 16)[0, ..., :2][None]
    np.testing.assert_allclose(np.asarray(log_area_ratio(grid)), 0.0, atol=2e-3)
    # rows 6..9 of the output all read source row 8: the mouth-opening case (closed lips over an open mouth)
    ys = grid[..., 1].at[:, 6:10].set(grid[0, 8, 0, 1])
    cue = np.asarray(log_area_ratio(grid.at[..., 1].set(ys)))[0, ..., 0]
    assert cue[6:9].max() < -2 and np.abs(cue[:5]).max() < 1e-2


def test_relative_motion_moves_the_source_by_the_drivers_change(tiny):
    """``reenact(source, driver, driver_ref)``: the driver's change from its reference on top of the source's own
    motion; with the source as the reference it is the absolute reenactment."""
    from vasajax.face.model import relative_motion

    sp, sd = jnp.array([[1.0, 2.0]]), jnp.array([[0.5]])
    p, d = relative_motion(
        sp, sd, jnp.array([[3.0, 3.0]]), jnp.array([[2.0]]), jnp.array([[2.0, 4.0]]), jnp.array([[1.5]])
    )
    np.testing.assert_allclose(p, [[2.0, 1.0]])
    np.testing.assert_allclose(d, [[1.0]])
    _, model, images, _, _, _ = tiny
    src = jnp.broadcast_to(images[:1], images.shape)
    rel = nnx.jit(lambda m, s, d, r: m.reenact(s, d, r))
    absolute = nnx.jit(lambda m, s, d: m.reenact(s, d))(model, src, images)
    np.testing.assert_allclose(rel(model, src, images, src), absolute, atol=2e-5)
    pose_d, dyn_d = model.motion_encoder(images)
    pose_r, dyn_r = model.motion_encoder(images[::-1])
    lat = model.encode(src)
    want = model.decode_latent(lat, *relative_motion(lat.pose, lat.dyn, pose_d, dyn_d, pose_r, dyn_r))
    np.testing.assert_allclose(rel(model, src, images, images[::-1]), want, atol=2e-5)
