"""Windows on the mouth and eyes: the motion encoder's glimpses and flatten head, the decoder's patch painters."""

import dataclasses
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vasajax.face import FaceConfig
from vasajax.face.encoders import GLIMPSES, MotionEncoder, glimpse_window
from vasajax.face.renderer import PatchPainter
from vasajax.facetrack.crop import crop_params, image_to_crop_coords
from vasajax.facetrack.landmarks import LEFT_EYE, MOUTH_CORNERS, RIGHT_EYE
from vasajax.facetrack.tracker import track_image
from vasajax.image import load_image


@pytest.mark.parametrize("portrait", ["astronaut.png", "grace_hopper.jpg"])
def test_glimpse_windows_hold_the_mouth_and_eyes_of_a_real_face_crop(portrait):
    """The windows are fixed fractions of the crop: they are only right if ``facetrack.crop.CropConfig`` puts every
    face's mouth and eyes there. Track the bundled portraits, crop them as the data pipeline does, and check the
    mouth corners, lips and eye corners land inside their windows (with a margin for head turns)."""
    image = load_image(resources.files("vasajax.assets") / portrait)
    obs = track_image(image)
    size = 256
    params = crop_params(obs.landmarks)
    pts = image_to_crop_coords(obs.landmarks[:, :2], params, size)

    def inside(name, idx, margin=4):
        top, left, h, w = glimpse_window(name, size, 2)
        x, y = pts[idx, 0], pts[idx, 1]
        return bool(
            np.all((x >= left + margin) & (x <= left + w - margin) & (y >= top + margin) & (y <= top + h - margin))
        )

    mouth = [*MOUTH_CORNERS, 13, 14, 0, 17]  # corners, inner lips, outer lip middles
    eyes = [RIGHT_EYE[k] for k in ("outer", "inner", "upper", "lower")]
    eyes += [LEFT_EYE[k] for k in ("outer", "inner", "upper", "lower")]
    assert inside("mouth", mouth) and inside("eyes", eyes)


def test_glimpse_windows_scale_with_the_image_and_divide_by_the_pools():
    for size, pools in ((64, 2), (256, 2), (512, 3)):
        for name in GLIMPSES:
            top, left, h, w = glimpse_window(name, size, pools)
            assert h % 2 ** (pools + 1) == 0 and w % 2 ** (pools + 1) == 0
            assert 0 <= top and top + h <= size and 0 <= left and left + w <= size
    assert glimpse_window("mouth", 512, 2)[2] == 2 * glimpse_window("mouth", 256, 2)[2]


def _split(enc):
    """A jitted ``(params, images) -> code`` of ``enc``, and its params."""
    graphdef, params = nnx.split(enc)
    return jax.jit(lambda p, x: jnp.concatenate(nnx.merge(graphdef, p)(x), -1)), params


def test_glimpses_start_neutral_and_learn_from_the_mouth_window_only():
    """Glimpse heads start at zero (an encoder grown with them gives the old code, so a warm-started renderer starts
    from its old images), get a gradient at step 0, and once they move the code depends on the mouth window's
    pixels through them and not on pixels outside every window. (With ``pixel_warp`` the trunk's head starts at
    zero too, so until it moves the code is the glimpses' alone.)"""
    cfg = FaceConfig.tiny(pixel_warp=True, glimpse_channels=(8, 16))
    images = jax.random.uniform(jax.random.key(1), (2, 64, 64, 3))
    plain, plain_params = _split(MotionEncoder(dataclasses.replace(cfg, glimpse_channels=()), rngs=nnx.Rngs(0)))
    grown, params = _split(MotionEncoder(cfg, rngs=nnx.Rngs(0)))
    np.testing.assert_allclose(plain(plain_params, images), grown(params, images), atol=1e-6)
    target = jax.random.normal(jax.random.key(2), (2, 6 + cfg.dyn_dim))
    g = jax.grad(lambda p: jnp.mean((grown(p, images) - target) ** 2))(params)
    assert all(float(jnp.abs(g["glimpses"][i]["head"]["kernel"][...]).max()) > 0 for i in range(len(GLIMPSES)))

    for i in range(len(GLIMPSES)):
        kernel = params["glimpses"][i]["head"]["kernel"]
        kernel[...] = 0.1 * jax.random.normal(jax.random.key(3 + i), kernel.shape)
    top, left, h, w = glimpse_window("mouth", 64, 2)
    mouth_only = images.at[:, top + h // 3 : top + 2 * h // 3, left + w // 4 : left + 3 * w // 4].set(0.0)
    corner = images.at[:, :8, :8].set(0.0)  # the top-left corner is in no window
    batch = jnp.concatenate([images, mouth_only, corner])
    part = grown(params, batch).reshape(3, 2, -1)
    assert float(jnp.abs(part[1] - part[0]).max()) > 1e-3
    np.testing.assert_allclose(part[2], part[0], atol=1e-6)


def test_flatten_pool_and_validation():
    cfg = FaceConfig.tiny(motion_pool="flatten")
    enc = MotionEncoder(cfg, rngs=nnx.Rngs(0))
    side = cfg.enc_input_size // 2 ** (len(cfg.enc_channels) + 1)
    assert enc.trunk.head.kernel.shape == (cfg.enc_channels[-1] * side * side, 6 + cfg.dyn_dim)
    pose, dyn = enc(jax.random.uniform(jax.random.key(0), (1, 64, 64, 3)))
    assert pose.shape == (1, 6) and dyn.shape == (1, cfg.dyn_dim)
    with pytest.raises(ValueError, match="motion_pool"):
        FaceConfig.tiny(motion_pool="max")
    with pytest.raises(ValueError, match="glimpse_channels"):
        FaceConfig.tiny(glimpse_channels=(8, 8, 8, 8))


def test_patch_painters_start_neutral_learn_and_touch_only_their_windows():
    """A painter starts neutral (zero last layer: a model grown with painters renders its old images), gets a
    gradient at step 0, and once moved changes pixels inside its window only, fading to nothing at the window's
    border, and follows z_dyn."""
    cfg = FaceConfig.tiny(pixel_warp=True, patch_channels=8)
    images = jax.random.uniform(jax.random.key(1), (2, 64, 64, 3))
    dyn = 0.1 * jax.random.normal(jax.random.key(2), (2, cfg.dyn_dim))
    graphdef, params = nnx.split(PatchPainter(cfg, "mouth", rngs=nnx.Rngs(0)))
    paint = jax.jit(lambda p, x, d: nnx.merge(graphdef, p)(x, d))
    np.testing.assert_array_equal(np.asarray(paint(params, images, dyn)), np.asarray(images))
    g = jax.grad(lambda p: jnp.mean(paint(p, images, dyn)))(params)
    assert float(jnp.abs(g["out"]["kernel"][...]).max()) > 0

    for layer in ("out", "code"):
        params[layer]["kernel"][...] = 0.05 * jax.random.normal(jax.random.key(3), params[layer]["kernel"].shape)
    painted = np.asarray(paint(params, images, dyn))
    changed = np.abs(painted - np.asarray(images)).max(axis=(0, 3)) > 1e-6
    top, left, h, w = glimpse_window("mouth", 64, 2)
    inside = np.zeros_like(changed)
    inside[top + 1 : top + h - 1, left + 1 : left + w - 1] = True  # the border row/column is feathered to zero
    assert changed[top + h // 2, left + w // 2] and not np.any(changed & ~inside)
    other = np.asarray(paint(params, images, dyn + 0.1))
    assert float(np.abs(other - painted).max()) > 1e-3
