"""LivePortrait's implicit-keypoint algebra (paper §3.1, Eq. 2) and the stitching / retargeting updates (§3.2).

Driving keypoints are ``x_d = s · (x_c R + δ) + t`` with the canonical keypoints ``x_c`` (B×K×3, row vectors),
the rotation ``R`` from pitch/yaw/roll in degrees, the expression offsets ``δ`` (B×K×3), the scale ``s`` (B×1)
and the translation ``t`` of which only (tx, ty) is applied. Head-pose angles come from M as 66 bin logits; the
angle is the softmax expectation ``3 · Σ p_i · i − 97.5`` degrees. The rotation convention is upstream
``camera.get_rotation_matrix``: ``R = (R_z(roll) R_y(yaw) R_x(pitch))ᵀ``, applied as ``x R`` to row vectors.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vasajax.zoo.liveportrait.retargeting import StitchingRetargeting


def headpose_to_degrees(logits_BxN):
    """Bin logits ``B×66`` → angle in degrees ``B`` (softmax expectation over 3° bins, centred at −97.5°)."""
    p = jax.nn.softmax(logits_BxN, axis=-1)
    idx = jnp.arange(logits_BxN.shape[-1], dtype=p.dtype)
    return jnp.sum(p * idx, axis=-1) * 3 - 97.5


def rotation_matrix(pitch_B, yaw_B, roll_B):
    """``B×3×3`` rotation from angles in degrees (shape ``B`` or ``B×1``): ``(R_z R_y R_x)ᵀ`` (row-vector form)."""
    x, y, z = (jnp.reshape(a, (-1,)) / 180 * jnp.pi for a in (pitch_B, yaw_B, roll_B))
    one, zero = jnp.ones_like(x), jnp.zeros_like(x)

    def mat(*rows):
        return jnp.stack(rows, axis=-1).reshape(-1, 3, 3)

    r_x = mat(one, zero, zero, zero, jnp.cos(x), -jnp.sin(x), zero, jnp.sin(x), jnp.cos(x))
    r_y = mat(jnp.cos(y), zero, jnp.sin(y), zero, one, zero, -jnp.sin(y), zero, jnp.cos(y))
    r_z = mat(jnp.cos(z), -jnp.sin(z), zero, jnp.sin(z), jnp.cos(z), zero, zero, zero, one)
    return jnp.swapaxes(r_z @ r_y @ r_x, -1, -2)


def refine_motion(raw: dict, num_kp: int) -> dict:
    """M's raw outputs → ``pitch``/``yaw``/``roll`` in degrees (B×1), ``kp``/``exp`` as B×K×3, ``t`` B×3, ``scale``
    B×1 (upstream ``get_kp_info(flag_refine_info=True)``)."""
    b = raw["kp"].shape[0]
    out = {name: headpose_to_degrees(raw[name])[:, None] for name in ("pitch", "yaw", "roll")}
    out["kp"] = raw["kp"].reshape(b, num_kp, 3)
    out["exp"] = raw["exp"].reshape(b, num_kp, 3)
    out["t"], out["scale"] = raw["t"], raw["scale"]
    return out


def as_degrees(angle):
    """Angles in degrees (``B`` or ``B×1``) pass through; bin logits (``B×66``) become degrees (as upstream)."""
    angle = jnp.asarray(angle)
    return headpose_to_degrees(angle) if angle.ndim > 1 and angle.shape[-1] > 1 else angle


def transform_keypoint(kp_BxKx3, pitch, yaw, roll, exp_BxKx3, scale_Bx1, t_Bx3):
    """Eq. 2: ``s · (x_c R + δ) + (tx, ty, 0)``. Angles in degrees (``B`` or ``B×1``) or as M's bin logits
    (``B×66``); ``kp``/``exp`` as ``B×K×3`` or flat ``B×3K``. Returns B×K×3 (upstream ``transform_keypoint``)."""
    b = kp_BxKx3.shape[0]
    kp = kp_BxKx3.reshape(b, -1, 3)
    rot = rotation_matrix(as_degrees(pitch), as_degrees(yaw), as_degrees(roll))
    x = (jnp.einsum("bki,bij->bkj", kp, rot, precision="highest") + exp_BxKx3.reshape(b, -1, 3)) * jnp.reshape(
        scale_Bx1, (b, 1, 1)
    )
    return x.at[:, :, :2].add(t_Bx3[:, None, :2])


def stitch(s: StitchingRetargeting, kp_source_BxKx3, kp_driving_BxKx3):
    """The stitching update: ``x_d + Δx`` with ``Δtx, Δty`` added to x and y (upstream ``stitching``)."""
    b, k, _ = kp_source_BxKx3.shape
    delta = s.stitching(jnp.concatenate([kp_source_BxKx3.reshape(b, -1), kp_driving_BxKx3.reshape(b, -1)], axis=1))
    out = kp_driving_BxKx3 + delta[:, : 3 * k].reshape(b, k, 3)
    return out.at[..., :2].add(delta[:, None, 3 * k : 3 * k + 2])


def retarget_eye(s: StitchingRetargeting, kp_source_BxKx3, eye_close_ratio_Bx3):
    """Δx (B×K×3) that moves the eyes to the target openness; ratios are ``[c_s,eyes (2), c_d,eye]``."""
    b, k, _ = kp_source_BxKx3.shape
    return s.eye(jnp.concatenate([kp_source_BxKx3.reshape(b, -1), eye_close_ratio_Bx3], axis=1)).reshape(b, k, 3)


def retarget_lip(s: StitchingRetargeting, kp_source_BxKx3, lip_close_ratio_Bx2):
    """Δx (B×K×3) that moves the lips to the target openness; ratios are ``[c_s,lip, c_d,lip]``."""
    b, k, _ = kp_source_BxKx3.shape
    return s.lip(jnp.concatenate([kp_source_BxKx3.reshape(b, -1), lip_close_ratio_Bx2], axis=1)).reshape(b, k, 3)
