"""3D warping: trilinear ``grid_sample``, identity grids and rigid head-pose transforms.

VASA-1 §3.1 (after MegaPortraits) moves an appearance *volume* between a posed space and a canonical space
with two warps, each a rigid transform from the head pose composed with a learned non-rigid 3D flow:

* to canonical:  ``V_c(p) = V_s(R_s p + t_s + δ_s(p))``  — sample the source volume at the posed point;
* to the driver: ``V_d(q) = V_c(R_dᵀ (q − t_d) + δ_d(q))`` — sample the canonical volume at the un-posed point.

Coordinates follow PyTorch's ``grid_sample`` convention: the last axis of a grid is (x, y, z) in [-1, 1]
with x along W, y along H, z along D, ``align_corners=False`` (−1 and 1 are the outer *edges* of the border
voxels), and samples outside the volume read zeros. With zero flow and identity pose both warps are the
identity map, which the tests check.

Pose is ``[yaw, pitch, roll, tx, ty, tz]``: yaw rotates about the y (vertical) axis, pitch about x, roll about z
(the viewing axis), composed as R = R_z(roll) · R_y(yaw) · R_x(pitch); translations are in normalised volume
units.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def identity_grid(d: int, h: int, w: int, dtype=jnp.float32):
    """Voxel-centre coordinates, shape ``D×H×W×3`` with last axis (x, y, z), ``align_corners=False``."""
    zs = (2 * jnp.arange(d, dtype=dtype) + 1) / d - 1
    ys = (2 * jnp.arange(h, dtype=dtype) + 1) / h - 1
    xs = (2 * jnp.arange(w, dtype=dtype) + 1) / w - 1
    z, y, x = jnp.meshgrid(zs, ys, xs, indexing="ij")
    return jnp.stack([x, y, z], axis=-1)


def rotation_matrix(angles_Bx3):
    """Rotation matrices ``B×3×3`` from ``[yaw, pitch, roll]`` in radians (R = R_z(roll) R_y(yaw) R_x(pitch))."""
    yaw, pitch, roll = angles_Bx3[:, 0], angles_Bx3[:, 1], angles_Bx3[:, 2]
    one, zero = jnp.ones_like(yaw), jnp.zeros_like(yaw)
    cy, sy = jnp.cos(yaw), jnp.sin(yaw)
    cp, sp = jnp.cos(pitch), jnp.sin(pitch)
    cr, sr = jnp.cos(roll), jnp.sin(roll)
    r_y = jnp.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(-1, 3, 3)
    r_x = jnp.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).reshape(-1, 3, 3)
    r_z = jnp.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1).reshape(-1, 3, 3)
    return r_z @ r_y @ r_x


def posed_grid(pose_Bx6, d: int, h: int, w: int):
    """Grid that samples a *posed* volume at canonical points: ``p ↦ R p + t`` (the to-canonical warp)."""
    grid = identity_grid(d, h, w)
    rot = rotation_matrix(pose_Bx6[:, :3])
    return jnp.einsum("bij,dhwj->bdhwi", rot, grid) + pose_Bx6[:, None, None, None, 3:]


def unposed_grid(pose_Bx6, d: int, h: int, w: int):
    """Grid that samples a *canonical* volume at posed points: ``q ↦ Rᵀ (q − t)`` (the to-driver warp)."""
    grid = identity_grid(d, h, w)
    rot = rotation_matrix(pose_Bx6[:, :3])
    shifted = grid[None] - pose_Bx6[:, None, None, None, 3:]
    return jnp.einsum("bji,bdhwj->bdhwi", rot, shifted)


def grid_sample(vol_BxDxHxWxC, grid_BxDxHxWx3):
    """Trilinear sampling with PyTorch ``grid_sample`` semantics on 5-D input.

    Equivalent to ``torch.nn.functional.grid_sample(vol, grid, mode='bilinear', padding_mode='zeros',
    align_corners=False)`` after moving channels last. The output has the grid's spatial shape and the volume's
    channels and dtype. Implementation: the eight corner voxels are gathered as whole channel vectors from a
    ``B×(D·H·W)×C`` view (one gather of C contiguous values each), so the backward pass is a scatter-add of
    channel vectors — about 2.5× cheaper on CPU than ``map_coordinates``.
    """
    b, d, h, w, c = vol_BxDxHxWxC.shape
    out_spatial = grid_BxDxHxWx3.shape[1:-1]
    g = grid_BxDxHxWx3.reshape(b, -1, 3).astype(jnp.float32)
    ix = ((g[..., 0] + 1) * w - 1) / 2
    iy = ((g[..., 1] + 1) * h - 1) / 2
    iz = ((g[..., 2] + 1) * d - 1) / 2
    x0, y0, z0 = jnp.floor(ix), jnp.floor(iy), jnp.floor(iz)
    fx, fy, fz = ix - x0, iy - y0, iz - z0
    x0, y0, z0 = x0.astype(jnp.int32), y0.astype(jnp.int32), z0.astype(jnp.int32)
    flat_BxNxC = vol_BxDxHxWxC.reshape(b, d * h * w, c)
    gather = jax.vmap(lambda f, i: jnp.take(f, i, axis=0))

    out = jnp.zeros((b, g.shape[1], c), jnp.float32)
    for dz, wz in ((0, 1 - fz), (1, fz)):
        zc = z0 + dz
        for dy, wy in ((0, 1 - fy), (1, fy)):
            yc = y0 + dy
            for dx, wx in ((0, 1 - fx), (1, fx)):
                xc = x0 + dx
                valid = (xc >= 0) & (xc < w) & (yc >= 0) & (yc < h) & (zc >= 0) & (zc < d)
                idx = (jnp.clip(zc, 0, d - 1) * h + jnp.clip(yc, 0, h - 1)) * w + jnp.clip(xc, 0, w - 1)
                weight = jnp.where(valid, wz * wy * wx, 0.0)
                out = out + gather(flat_BxNxC, idx).astype(jnp.float32) * weight[..., None]
    return out.reshape(b, *out_spatial, c).astype(vol_BxDxHxWxC.dtype)


def grid_sample_2d(img_BxHxWxC, grid_BxHoxWox2):
    """Bilinear sampling of images at ``grid`` points (x, y) in [-1, 1], ``align_corners=False``, border padding.

    The 2D counterpart of :func:`grid_sample` used by the pixel-warp decoder (``FaceConfig.pixel_warp``):
    points outside the image read the nearest border pixel (a face warped past the crop edge shows the
    background's edge colour, not black). Output ``B×Ho×Wo×C`` in the image's dtype.
    """
    b, h, w, c = img_BxHxWxC.shape
    out_spatial = grid_BxHoxWox2.shape[1:-1]
    g = grid_BxHoxWox2.reshape(b, -1, 2).astype(jnp.float32)
    ix = jnp.clip(((g[..., 0] + 1) * w - 1) / 2, 0.0, w - 1.0)
    iy = jnp.clip(((g[..., 1] + 1) * h - 1) / 2, 0.0, h - 1.0)
    x0, y0 = jnp.floor(ix), jnp.floor(iy)
    fx, fy = ix - x0, iy - y0
    x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
    x1, y1 = jnp.minimum(x0 + 1, w - 1), jnp.minimum(y0 + 1, h - 1)
    flat_BxNxC = img_BxHxWxC.reshape(b, h * w, c)
    gather = jax.vmap(lambda f, i: jnp.take(f, i, axis=0))
    out = jnp.zeros((b, g.shape[1], c), jnp.float32)
    for yc, wy in ((y0, 1 - fy), (y1, fy)):
        for xc, wx in ((x0, 1 - fx), (x1, fx)):
            out = out + gather(flat_BxNxC, yc * w + xc).astype(jnp.float32) * (wy * wx)[..., None]
    return out.reshape(b, *out_spatial, c).astype(img_BxHxWxC.dtype)
