"""grid_sample parity with PyTorch, identity and rigid-rotation properties of the warps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vasajax.face import warp


def _random_case(seed=0, b=2, d=5, h=6, w=7, c=3, out=(4, 5, 6)):
    rng = np.random.default_rng(seed)
    vol = rng.normal(size=(b, d, h, w, c)).astype(np.float32)
    grid = rng.uniform(-1.25, 1.25, size=(b, *out, 3)).astype(np.float32)  # some samples fall outside
    return vol, grid


def test_grid_sample_matches_torch_forward_and_backward():
    torch = pytest.importorskip("torch")
    vol, grid = _random_case()
    vt = torch.tensor(vol.transpose(0, 4, 1, 2, 3), requires_grad=True)  # B×C×D×H×W
    gt = torch.tensor(grid, requires_grad=True)
    ref = torch.nn.functional.grid_sample(vt, gt, mode="bilinear", padding_mode="zeros", align_corners=False)
    weights = np.random.default_rng(1).normal(size=ref.shape).astype(np.float32)
    (ref * torch.tensor(weights)).sum().backward()

    out = warp.grid_sample(jnp.asarray(vol), jnp.asarray(grid))
    np.testing.assert_allclose(np.asarray(out), ref.detach().numpy().transpose(0, 2, 3, 4, 1), atol=1e-5)

    w_cl = jnp.asarray(weights.transpose(0, 2, 3, 4, 1))
    g_vol, g_grid = jax.grad(lambda v, g: (warp.grid_sample(v, g) * w_cl).sum(), argnums=(0, 1))(
        jnp.asarray(vol), jnp.asarray(grid)
    )
    np.testing.assert_allclose(np.asarray(g_vol), vt.grad.numpy().transpose(0, 2, 3, 4, 1), atol=1e-4)
    np.testing.assert_allclose(np.asarray(g_grid), gt.grad.numpy(), atol=1e-4)


def test_identity_grid_returns_volume():
    vol, _ = _random_case()
    grid = jnp.broadcast_to(warp.identity_grid(*vol.shape[1:4]), (vol.shape[0], *vol.shape[1:4], 3))
    np.testing.assert_allclose(np.asarray(warp.grid_sample(jnp.asarray(vol), grid)), vol, atol=1e-5)


def test_zero_pose_grids_are_identity():
    pose = jnp.zeros((2, 6))
    ident = warp.identity_grid(4, 5, 6)
    np.testing.assert_allclose(np.asarray(warp.posed_grid(pose, 4, 5, 6)[1]), np.asarray(ident), atol=1e-7)
    np.testing.assert_allclose(np.asarray(warp.unposed_grid(pose, 4, 5, 6)[0]), np.asarray(ident), atol=1e-7)


def _blob(n, center_xyz, sigma=0.12):
    grid = np.asarray(warp.identity_grid(n, n, n))
    d2 = ((grid - np.asarray(center_xyz)) ** 2).sum(-1)
    return np.exp(-d2 / (2 * sigma**2))[None, ..., None].astype(np.float32)  # 1×D×H×W×1


def _peak_xyz(vol_1xDxHxWx1):
    v = np.asarray(vol_1xDxHxWx1)[0, ..., 0]
    grid = np.asarray(warp.identity_grid(*v.shape))
    w = np.clip(v - 0.5 * v.max(), 0, None)
    return (grid * w[..., None]).sum((0, 1, 2)) / w.sum()


@pytest.mark.parametrize(
    "pose, expected",
    [
        ([np.pi / 2, 0, 0, 0, 0, 0], [0.0, 0.0, -0.5]),  # yaw +90°: x → −z
        ([0, 0, np.pi / 2, 0, 0, 0], [0.0, 0.5, 0.0]),  # roll +90°: x → +y
        ([0, 0, 0, 0.25, -0.25, 0], [0.75, -0.25, 0.0]),  # pure translation
    ],
)
def test_rigid_pose_moves_blob_where_expected(pose, expected):
    n = 16
    vol = jnp.asarray(_blob(n, [0.5, 0.0, 0.0]))
    pose = jnp.asarray([pose], jnp.float32)
    driven = warp.grid_sample(vol, warp.unposed_grid(pose, n, n, n))
    np.testing.assert_allclose(_peak_xyz(driven), expected, atol=0.04)
    # The to-canonical grid undoes the same pose.
    back = warp.grid_sample(driven, warp.posed_grid(pose, n, n, n))
    np.testing.assert_allclose(_peak_xyz(back), [0.5, 0.0, 0.0], atol=0.04)


def test_rotation_matrices_are_orthonormal():
    angles = jax.random.uniform(jax.random.key(0), (8, 3), minval=-1.5, maxval=1.5)
    r = warp.rotation_matrix(angles)
    np.testing.assert_allclose(np.asarray(r @ jnp.swapaxes(r, 1, 2)), np.broadcast_to(np.eye(3), (8, 3, 3)), atol=1e-5)


def test_grid_sample_2d_matches_torch_with_border_padding():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    img = rng.normal(size=(2, 9, 11, 3)).astype(np.float32)
    grid = rng.uniform(-1.3, 1.3, size=(2, 7, 5, 2)).astype(np.float32)  # some points outside the image
    ref = torch.nn.functional.grid_sample(
        torch.tensor(img.transpose(0, 3, 1, 2)), torch.tensor(grid), mode="bilinear", padding_mode="border",
        align_corners=False,
    ).numpy().transpose(0, 2, 3, 1)  # fmt: skip
    out = warp.grid_sample_2d(jnp.asarray(img), jnp.asarray(grid))
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5)


def test_grid_sample_2d_identity_grid_returns_the_image():
    img = np.random.default_rng(6).uniform(size=(1, 8, 8, 3)).astype(np.float32)
    grid = warp.identity_grid(1, 8, 8)[0, ..., :2][None]
    np.testing.assert_allclose(np.asarray(warp.grid_sample_2d(jnp.asarray(img), grid)), img, atol=1e-6)
