"""Stage-1 objectives: MegaPortraits' losses plus VASA-1's two disentanglement losses (VASA-1 §3.1).

One batch from ``vasajax.data.loader.face_pairs`` holds a *source* frame ``s`` and a *driver* frame ``d`` of one
clip and a *cross* frame ``c`` of another identity (uint8; converted here to float in [0, 1]). With
``D(V, id, pose, dyn)`` the decoder and ``V, id, pose, dyn`` each frame's encoded latents, the generator loss is

* **self-reenactment** ``x̂_sd = D(V_s, id_s, pose_d, dyn_d)`` against ``x_d``: L1 + perceptual (×20) + face
  perceptual (×4, the perceptual loss on the central face crop, zoomed to full size) + hinge GAN (×1) +
  feature matching (×40);
* **pose/dynamics transfer consistency** (VASA-1, after DPE): ``D(V_d, id_d, pose_s, dyn_d)`` and
  ``D(V_s, id_s, pose_s, dyn_d)`` show the same person with the same pose and dynamics, so their L1 +
  perceptual discrepancy is minimised (zero when s = d);
* **cross-identity identity loss** (VASA-1): ``x̂_cd = D(V_c, id_c, pose_d, dyn_d)`` must keep the identity of
  ``x_c``: ``1 − cos(ID(x̂_cd), ID(x_c))``; the GAN loss also sees ``x̂_cd``;
* **motion-descriptor contrastive loss** (MegaPortraits, CosFace s=5, m=0.2, ×2): the dynamics codes of
  ``x̂_sd`` and ``x̂_cd`` (re-encoded) must match that of ``x_d`` (positives) rather than that of ``x_c``
  (negatives).

Perceptual distance: ``"vgg19"`` is pix2pixHD's VGG loss, Σ_l w_l·mean|φ_l(x) − φ_l(y)| over relu1_1..relu5_1 with
w = (1/32, 1/16, 1/8, 1/4, 1), on an ImageNet VGG19 converted from a local torchvision state dict
(``vasajax.face.vgg``). No VGG weights exist offline, so ``"ssim"`` is the documented fallback that still trains:
multi-scale SSIM, ``mean_s (1 − SSIM_s)`` over a 2× pyramid (an average rather than MS-SSIM's product of powers,
for smoother gradients), with a larger L1 weight. MegaPortraits' face loss runs VGGFace and its gaze loss a gaze
network; neither has offline weights: the face term applies our perceptual distance to the central
``face_crop`` of the aligned crop (resized to the full size), and there is no gaze term. All perceptual pairs of
a batch go through the VGG (or SSIM) in one call.

Face identity encoder of the identity loss (VASA-1 uses ArcFace features; no ArcFace weights exist offline). It
is pluggable: ``FaceCritics(identity=fn)`` with ``fn(images_BxHxWx3) → embedding_BxE`` (an ``nnx.Module`` or a
pure callable; it is normalised here). Defaults, in order: the VGG19 (when weights are loaded), using spatially
pooled relu4_1 ⊕ relu5_1 activations — generic deep appearance features, not a face recogniser; otherwise the
model's own identity encoder with its parameters under ``stop_gradient``, so the loss moves the generator
towards images the encoder maps to the same ``z_id`` but cannot collapse the encoder. Both are weaker than
ArcFace; plug a real face recogniser in when you have one.

Purity: ``generator_loss(model, critics, disc, batch, cfg)`` and ``discriminator_loss(disc, real, fake)`` are
functions of modules, to be called under ``nnx.value_and_grad`` / ``jax.jit`` by the trainer (differentiate
with respect to the first argument). The critics (frozen VGG) and the discriminator enter the generator loss
with ``stop_gradient`` on their parameters, so even a gradient taken with respect to them is zero. A sketch::

    def g_loss(params, batch):
        model = nnx.merge(model_def, params)
        return losses.generator_loss(model, nnx.merge(crit_def, crit_params), nnx.merge(d_def, d_params),
                                     batch, cfg)
    (loss, metrics), grads = jax.value_and_grad(g_loss, has_aux=True)(params, batch)

``generator_loss_and_outputs`` also returns the generated images (for the discriminator step and sample grids).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from vasajax import config_io
from vasajax.errors import UserError
from vasajax.face import vgg as vgg_lib
from vasajax.face import warp
from vasajax.face.discriminator import PatchDiscriminator
from vasajax.face.model import FaceLatentModel

VGG_LAYER_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
"""pix2pixHD's weights of relu1_1 .. relu5_1 in the VGG perceptual loss."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class FaceLossConfig:
    """Weights and choices of the stage-1 objective (MegaPortraits' values where it gives them)."""

    perceptual: str = "vgg19"
    """Perceptual distance: "vgg19" (needs ``vgg_weights``) or "ssim" (offline fallback: multi-scale SSIM)."""
    vgg_weights: str | None = None
    """Path of a torchvision ``vgg19`` state dict (.pth or .safetensors); None = no VGG."""
    l1_weight: float = 1.0
    """Pixel L1 of the self-reenactment (ours: MegaPortraits has none; the presets use 10 with "ssim")."""
    perceptual_weight: float = 20.0
    """Perceptual distance of the self-reenactment (MegaPortraits: VGG19 ×20)."""
    face_weight: float = 4.0
    """Perceptual distance on the central face crop (MegaPortraits: VGGFace ×4; see module docstring)."""
    face_crop: float = 0.6
    """Side of the central face crop as a fraction of the image side (aligned crops put the face there)."""
    gan_weight: float = 1.0
    """Hinge GAN generator loss of the multi-scale patch discriminator (MegaPortraits: ×1)."""
    feature_matching_weight: float = 40.0
    """L1 between discriminator features of x̂_sd and x_d (MegaPortraits: ×40)."""
    contrastive_weight: float = 2.0
    """CosFace loss on the dynamics codes (MegaPortraits: ×2)."""
    cosface_scale: float = 5.0
    """CosFace scale s (MegaPortraits: 5)."""
    cosface_margin: float = 0.2
    """CosFace margin m (MegaPortraits: 0.2)."""
    transfer_weight: float = 1.0
    """VASA-1's pose/dynamics transfer consistency; multiplies its (l1_weight·L1 + perceptual_weight·perceptual)
    (VASA-1 gives no weight; ours)."""
    identity_weight: float = 4.0
    """VASA-1's cross-identity cosine identity loss (no weight given; ours, as MegaPortraits' face term)."""
    landmark_weight: float = 0.0
    """L1 (grid units) between the landmark flow's face points (``FaceConfig.landmark_flow``) of the source and of
    the driver (predicted from their pose and z_dyn with the source's z_id) and the tracker's landmarks of both
    frames (``driver_landmarks_Kx2`` / ``source_landmarks_Kx2``): ties the points to the face, and gives the motion
    encoder a direct signal for the lips and eyes. 0 in the paper presets."""
    flow_weight: float = 0.0
    """L1 (grid units) between the pixel-warp decoder's 2D flow read at the driver's tracker landmarks and the
    same landmarks in the source (the loader's ``driver_landmarks_Kx2`` / ``source_landmarks_Kx2``): the flow
    must bring each face point of the source to where the driver has it. A direct, dense-enough signal for the
    lips' opening, which the photometric losses teach only through the local image gradient at the lip line.
    Self-reenactment only (same face); needs ``pixel_warp``."""
    mouth_weight: float = 0.0
    """L1 of the self-reenactment inside the driver's mouth box (from the tracker's lip landmarks, the loader's
    ``driver_mouth_4``), normalised by the box area. The mouth is ~3 % of a 256² crop, so the global terms barely
    see it; this weights it up (ours; MegaPortraits has none, its paper presets keep 0)."""
    pose_weight: float = 0.0
    """L1 between the motion encoder's head rotation and the tracker's (``source_pose_6`` / ``driver_pose_6`` of
    the loader, in the model's axes: :func:`tracker_angles_to_model`) for the source and driver frames (ours;
    MegaPortraits learns pose unsupervised, its paper presets keep 0). It starts the rigid warps right instead
    of waiting for the photometric loss to discover them."""
    expression_weight: float = 0.0
    """L1 between the first 52 dimensions of z_dyn and the tracker's blendshape coefficients (``*_blendshapes_52``)
    of the source and driver frames (ours; 0 in the paper presets). It gives the dynamics code its meaning (jaw
    open, blinks, smile, ...) from the first step, so the decoder can learn to render it instead of first having to
    discover it; the other dimensions stay free. Needs ``dyn_dim`` ≥ 52."""
    ssim_scales: int = 4
    """Pyramid levels of the SSIM fallback (fewer when the image gets smaller than 16 pixels)."""

    def __post_init__(self):
        if self.perceptual not in ("vgg19", "ssim"):
            raise UserError(f"perceptual must be 'vgg19' or 'ssim', not {self.perceptual!r}")
        if not 0 < self.face_crop <= 1:
            raise ValueError("FaceLossConfig: face_crop must be in (0, 1]")

    @classmethod
    def _preset(cls, vgg_weights: str | None, **overrides) -> FaceLossConfig:
        kw: dict[str, Any] = dict(vgg_weights=vgg_weights)
        if vgg_weights is None:
            kw.update(perceptual="ssim", l1_weight=10.0)
        return cls(**{**kw, **overrides})

    @classmethod
    def tiny(cls, vgg_weights: str | None = None, **overrides) -> FaceLossConfig:
        """Tests and smoke runs: the paper's weights; SSIM unless VGG weights are given."""
        return cls._preset(vgg_weights, ssim_scales=3, **overrides)

    @classmethod
    def small(cls, vgg_weights: str | None = None, **overrides) -> FaceLossConfig:
        """The 256² demo: VGG19 perceptual when ``vgg_weights`` is given, else the SSIM fallback."""
        return cls._preset(vgg_weights, **overrides)

    @classmethod
    def paper(cls, vgg_weights: str | None = None, **overrides) -> FaceLossConfig:
        """MegaPortraits' weights at 512²; VGG19 when ``vgg_weights`` is given, else the SSIM fallback."""
        return cls._preset(vgg_weights, ssim_scales=5, **overrides)

    def to_dict(self) -> dict:
        """JSON-ready fields (``vasajax.config_io``)."""
        return config_io.to_dict(self)


# ------------------------------------------------------------------------------------------ critics


class FaceCritics(nnx.Module):
    """The frozen networks the losses look through: the VGG19 (or none) and an optional identity encoder.

    Not trained: keep it out of the optimiser (the generator loss also stops gradients into it).
    """

    def __init__(self, cfg: FaceLossConfig, *, vgg: vgg_lib.VGG19 | None = None, identity: Callable | None = None):
        if cfg.perceptual == "vgg19" and vgg is None:
            raise UserError(
                "perceptual='vgg19' needs VGG19 weights: set vgg_weights=PATH to a torchvision vgg19 state dict, "
                "or use perceptual='ssim' (the offline fallback)"
            )
        self.vgg = vgg
        self.identity = identity

    def perceptual(self, x_BxHxWx3, y_BxHxWx3, cfg: FaceLossConfig) -> jax.Array:
        """Per-example perceptual distance ``B`` between two image batches in [0, 1]."""
        if cfg.perceptual == "vgg19":
            fx = self.vgg(jnp.concatenate([x_BxHxWx3, y_BxHxWx3]))
            b = x_BxHxWx3.shape[0]
            return sum(
                w * jnp.abs(fx[name][:b].astype(jnp.float32) - fx[name][b:].astype(jnp.float32)).mean(axis=(1, 2, 3))
                for w, name in zip(VGG_LAYER_WEIGHTS, vgg_lib.FEATURE_LAYERS, strict=True)
            )
        return ms_ssim_loss(x_BxHxWx3, y_BxHxWx3, cfg.ssim_scales)

    def identity_embedding(self, images_BxHxWx3, model: FaceLatentModel) -> jax.Array:
        """Unit identity embeddings ``B×E`` (see the module docstring for the default chain)."""
        if self.identity is not None:
            emb = self.identity(images_BxHxWx3)
        elif self.vgg is not None:
            f = self.vgg(images_BxHxWx3, layers=("relu4_1", "relu5_1"))
            emb = jnp.concatenate([f["relu4_1"].mean(axis=(1, 2)), f["relu5_1"].mean(axis=(1, 2))], axis=-1)
        else:
            emb = frozen(model.identity_encoder)(images_BxHxWx3.astype(model.cfg.jnp_dtype))
        return _normalize(emb.astype(jnp.float32))


def build_critics(cfg: FaceLossConfig, identity: Callable | None = None, *, vgg_dtype=jnp.float32) -> FaceCritics:
    """Critics for ``cfg``: loads the VGG19 from ``cfg.vgg_weights`` when given (``vgg_dtype``: its compute
    dtype; bfloat16 halves its cost on accelerators, its weights stay float32)."""
    vgg = vgg_lib.load_torchvision(cfg.vgg_weights, dtype=vgg_dtype) if cfg.vgg_weights else None
    return FaceCritics(cfg, vgg=vgg, identity=identity)


def frozen(module: nnx.Module) -> nnx.Module:
    """A copy of ``module`` whose float parameters pass through ``stop_gradient``."""
    graphdef, state = nnx.split(module)
    sg = jax.tree.map(lambda x: jax.lax.stop_gradient(x) if jnp.issubdtype(x.dtype, jnp.floating) else x, state)
    return nnx.merge(graphdef, sg)


# ------------------------------------------------------------------------------------------ building blocks


def _normalize(x_BxE, eps: float = 1e-6) -> jax.Array:
    return x_BxE / jnp.sqrt(jnp.sum(x_BxE**2, axis=-1, keepdims=True) + eps)


def to_float(images) -> jax.Array:
    """uint8 frames → float32 in [0, 1]; float input is returned as float32 unchanged."""
    images = jnp.asarray(images)
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    return images.astype(jnp.float32)


def l1(x, y) -> jax.Array:
    """Per-example mean absolute difference ``B``."""
    return jnp.abs(x - y).mean(axis=tuple(range(1, x.ndim)))


def _gaussian_blur_valid(x_BxHxWxC, size: int = 7, sigma: float = 1.5) -> jax.Array:
    r = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2
    g = jnp.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    c = x_BxHxWxC.shape[-1]
    dn = ("NHWC", "HWIO", "NHWC")
    kh = jnp.tile(g.reshape(size, 1, 1, 1), (1, 1, 1, c))
    kw = jnp.tile(g.reshape(1, size, 1, 1), (1, 1, 1, c))
    y = jax.lax.conv_general_dilated(x_BxHxWxC, kh, (1, 1), "VALID", dimension_numbers=dn, feature_group_count=c)
    return jax.lax.conv_general_dilated(y, kw, (1, 1), "VALID", dimension_numbers=dn, feature_group_count=c)


def ssim(x_BxHxWxC, y_BxHxWxC, c1: float = 0.01**2, c2: float = 0.03**2) -> jax.Array:
    """Mean SSIM per example ``B`` (Wang et al. 2004; 7×7 Gaussian window σ=1.5, images in [0, 1])."""
    c = x_BxHxWxC.shape[-1]
    stats = [x_BxHxWxC, y_BxHxWxC, x_BxHxWxC * x_BxHxWxC, y_BxHxWxC * y_BxHxWxC, x_BxHxWxC * y_BxHxWxC]
    blurred = _gaussian_blur_valid(jnp.concatenate(stats, axis=-1))  # one depthwise blur for all five moments
    mx, my, exx, eyy, exy = (blurred[..., k * c : (k + 1) * c] for k in range(5))
    sxx, syy, sxy = exx - mx * mx, eyy - my * my, exy - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean(axis=(1, 2, 3))


def ms_ssim_loss(x_BxHxWx3, y_BxHxWx3, scales: int) -> jax.Array:
    """``mean_s (1 − SSIM)`` over a 2×-average-pooled pyramid (at most ``scales`` levels, sides ≥ 16): ``B``."""
    terms = []
    x, y = x_BxHxWx3, y_BxHxWx3
    for _ in range(scales):
        if min(x.shape[1:3]) < 16:
            break
        terms.append(1.0 - ssim(x, y))
        h, w = (x.shape[1] // 2) * 2, (x.shape[2] // 2) * 2
        x = x[:, :h, :w].reshape(x.shape[0], h // 2, 2, w // 2, 2, -1).mean(axis=(2, 4))
        y = y[:, :h, :w].reshape(y.shape[0], h // 2, 2, w // 2, 2, -1).mean(axis=(2, 4))
    return sum(terms) / len(terms)


def tracker_angles_to_model(pose_Bx6) -> jax.Array:
    """Tracker head angles (``facetrack.labels.pose_from_matrix``: x right, y up, z to the viewer) → the model's
    rigid-warp angles (``warp.rotation_matrix``: x right, y down, z away from the viewer): flipping y and z conjugates
    R_y(yaw) into R_y(−yaw), R_x(pitch) into itself and R_z(roll) into R_z(−roll). The two compose the three
    rotations in different orders, which agree to first order: exact enough for a supervision signal at head
    angles of a talking face. ``B×3``: [yaw, pitch, roll] in radians."""
    p = jnp.asarray(pose_Bx6, jnp.float32)
    return jnp.stack([-p[:, 0], p[:, 1], -p[:, 2]], axis=-1)


def box_mask(boxes_Bx4, h: int, w: int) -> jax.Array:
    """Masks ``B×H×W×1`` that are 1 on pixels whose centres lie inside each box (x0, y0, x1, y1 in [0, 1])."""
    ys = (jnp.arange(h, dtype=jnp.float32) + 0.5) / h
    xs = (jnp.arange(w, dtype=jnp.float32) + 0.5) / w
    b = boxes_Bx4.astype(jnp.float32)[:, :, None, None]
    inside_y = (ys[None, :, None] >= b[:, 1]) & (ys[None, :, None] <= b[:, 3])
    inside_x = (xs[None, None, :] >= b[:, 0]) & (xs[None, None, :] <= b[:, 2])
    return (inside_y & inside_x).astype(jnp.float32)[..., None]


def masked_l1(x_BxHxWxC, y_BxHxWxC, mask_BxHxWx1) -> jax.Array:
    """Per-example mean absolute difference over the masked pixels ``B`` (0 where a mask is empty)."""
    num = (jnp.abs(x_BxHxWxC - y_BxHxWxC) * mask_BxHxWx1).sum(axis=(1, 2, 3))
    return num / jnp.maximum(mask_BxHxWx1.sum(axis=(1, 2, 3)) * x_BxHxWxC.shape[-1], 1.0)


def face_zoom(images_BxHxWx3, frac: float) -> jax.Array:
    """The central ``frac`` × ``frac`` crop (the face in aligned crops), resized back to the full size, as a face
    network would see it."""
    b, h, w, c = images_BxHxWx3.shape
    ch, cw = max(1, round(h * frac)), max(1, round(w * frac))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = images_BxHxWx3[:, top : top + ch, left : left + cw]
    return jax.image.resize(crop, (b, h, w, c), "linear") if (ch, cw) != (h, w) else crop


def cosface_loss(anchor_NxZ, positive_NxZ, negatives_NxKxZ, scale: float, margin: float) -> jax.Array:
    """MegaPortraits' CosFace contrastive loss per anchor ``N``:
    ``−log(e^{s(cos(a,p)−m)} / (e^{s(cos(a,p)−m)} + Σ_k e^{s·cos(a,n_k)}))``."""
    a = _normalize(anchor_NxZ)
    pos = jnp.sum(a * _normalize(positive_NxZ), axis=-1)
    neg_NxK = jnp.einsum("nz,nkz->nk", a, _normalize(negatives_NxKxZ))
    logits = scale * jnp.concatenate([(pos - margin)[:, None], neg_NxK], axis=-1)
    return -jax.nn.log_softmax(logits, axis=-1)[:, 0]


def hinge_generator(logits_per_scale: list[jax.Array]) -> jax.Array:
    """Hinge GAN generator loss ``−mean D(fake)``, averaged over scales."""
    return sum(-lg.mean() for lg in logits_per_scale) / len(logits_per_scale)


def feature_matching(fake_feats: list[list[jax.Array]], real_feats: list[list[jax.Array]]) -> jax.Array:
    """Mean L1 between discriminator features of fakes and (stop-gradient) reals, over layers and scales."""
    total = 0.0
    for ff, rf in zip(fake_feats, real_feats, strict=True):
        total += sum(
            jnp.abs(f.astype(jnp.float32) - jax.lax.stop_gradient(r).astype(jnp.float32)).mean()
            for f, r in zip(ff, rf, strict=True)
        ) / len(ff)
    return total / len(fake_feats)


# ------------------------------------------------------------------------------------------ objectives


def landmark_flow_l1(flow_BxHxWx2, source_BxKx2, driver_BxKx2) -> jax.Array:
    """Mean L1 (grid units) between the flow read at the driver's landmarks and the source's landmarks.

    ``flow`` maps each output pixel to the source-image point it reads (grid units, ``align_corners=False``);
    landmarks are crop units in [0, 1], i.e. grid ``2u − 1``. A perfect warp reads, at the driver's lip corner, the
    source's lip corner."""
    at_driver = 2.0 * driver_BxKx2.astype(jnp.float32)[:, None] - 1.0  # B×1×K×2
    read = warp.grid_sample_2d(flow_BxHxWx2.astype(jnp.float32), at_driver)[:, 0]  # B×K×2
    return jnp.abs(read - (2.0 * source_BxKx2.astype(jnp.float32) - 1.0)).mean()


def generator_loss_and_outputs(
    model: FaceLatentModel,
    critics: FaceCritics,
    disc: PatchDiscriminator | None,
    batch: Mapping[str, Any],
    cfg: FaceLossConfig,
) -> tuple[jax.Array, tuple[dict[str, jax.Array], dict[str, jax.Array]]]:
    """The whole stage-1 generator objective: ``(loss, (metrics, outputs))``.

    ``outputs``: ``reenact`` (x̂_sd, B×H×W×3), ``cross`` (x̂_cd, when the batch has ``cross``) and ``fakes``
    (everything the GAN loss judged: pass it to :func:`discriminator_loss`). ``metrics``: the unweighted terms,
    the weighted total ``loss`` and the self-reenactment ``psnr``.
    """
    critics = frozen(critics)
    disc = frozen(disc) if disc is not None else None
    src, drv = to_float(batch["source"]), to_float(batch["driver"])
    b = src.shape[0]
    use_cross = "cross" in batch and (cfg.identity_weight > 0 or cfg.contrastive_weight > 0)
    use_transfer = cfg.transfer_weight > 0

    # Encode every frame once: source always; driver fully if the transfer loss needs its volume; cross.
    full = [src] + ([drv] if use_transfer else []) + ([to_float(batch["cross"])] if use_cross else [])
    lat = model.encode(jnp.concatenate(full))
    part = lambda x, k: x[k * b : (k + 1) * b]  # noqa: E731
    app = lambda k: tuple(None if t is None else part(t, k) for t in lat.appearance_state)  # noqa: E731
    pose_s = part(lat.pose, 0)
    if use_transfer:
        pose_d, dyn_d = part(lat.pose, 1), part(lat.dyn, 1)
    else:
        pose_d, dyn_d = model.encode_motion(drv.astype(model.cfg.jnp_dtype))
    if use_cross:
        k_cross = 2 if use_transfer else 1
        dyn_c = part(lat.dyn, k_cross)
        crs = full[-1]

    # Decode every generated image in one batch: (appearance state of one frame, target pose, target dyn).
    jobs = [(app(0), pose_d, dyn_d)]  # x̂_sd: self-reenactment
    if use_transfer:
        jobs += [(app(1), pose_s, dyn_d), (app(0), pose_s, dyn_d)]  # transfer pair
    if use_cross:
        jobs += [(app(k_cross), pose_d, dyn_d)]  # x̂_cd: cross-identity reenactment

    def cat(xs):
        return None if xs[0] is None else jnp.concatenate(xs)

    v, ident, source, grid, points = (cat([j[0][i] for j in jobs]) for i in range(5))
    pose, dyn = cat([j[1] for j in jobs]), cat([j[2] for j in jobs])
    use_flow = cfg.flow_weight > 0 and "driver_landmarks_Kx2" in batch and "source_landmarks_Kx2" in batch
    if use_flow and not model.cfg.pixel_warp:
        raise UserError("flow_weight needs the pixel-warp decoder (FaceConfig.pixel_warp)")
    if use_flow:
        dec, flow = model.decode(v, ident, pose, dyn, source, grid, points, return_flow=True)
        dec = dec.astype(jnp.float32)
    else:
        dec = model.decode(v, ident, pose, dyn, source, grid, points).astype(jnp.float32)
    reenact = part(dec, 0)
    outputs = {"reenact": reenact}

    m: dict[str, jax.Array] = {}
    m["l1"] = l1(reenact, drv).mean()
    use_pose = cfg.pose_weight > 0 and "source_pose_6" in batch and "driver_pose_6" in batch
    if use_pose:
        pred = jnp.concatenate([pose_s[:, :3], pose_d[:, :3]]).astype(jnp.float32)
        want = tracker_angles_to_model(jnp.concatenate([batch["source_pose_6"], batch["driver_pose_6"]]))
        m["pose"] = jnp.abs(pred - want).mean()
    use_expr = cfg.expression_weight > 0 and "source_blendshapes_52" in batch and "driver_blendshapes_52" in batch
    if use_expr:
        if model.cfg.dyn_dim < 52:
            raise UserError(
                f"expression_weight needs dyn_dim ≥ 52 (the blendshapes), this model has {model.cfg.dyn_dim}"
            )
        dyn_s = part(lat.dyn, 0)
        pred = jnp.concatenate([dyn_s[:, :52], dyn_d[:, :52]]).astype(jnp.float32)
        want = jnp.concatenate([batch["source_blendshapes_52"], batch["driver_blendshapes_52"]]).astype(jnp.float32)
        m["expression"] = jnp.abs(pred - want).mean()
    if use_flow:
        m["flow"] = landmark_flow_l1(part(flow, 0), batch["source_landmarks_Kx2"], batch["driver_landmarks_Kx2"])
    use_marks = cfg.landmark_weight > 0 and "driver_landmarks_Kx2" in batch and "source_landmarks_Kx2" in batch
    if use_marks:
        if not model.cfg.landmark_flow:
            raise UserError("landmark_weight needs the landmark flow (FaceConfig.landmark_flow)")
        want = jnp.concatenate([batch["source_landmarks_Kx2"], batch["driver_landmarks_Kx2"]]).astype(jnp.float32)
        if want.shape[1] != model.cfg.landmark_flow:
            raise UserError(
                f"landmark_flow = {model.cfg.landmark_flow} points, the loader gives {want.shape[1]} landmarks"
            )
        id_s = part(lat.identity, 0)
        pred = jnp.concatenate([part(lat.source_points, 0), model.landmark_flow.points(pose_d, dyn_d, id_s)])
        m["landmarks"] = jnp.abs(pred - (2.0 * want - 1.0)).mean()
    use_mouth = cfg.mouth_weight > 0 and "driver_mouth_4" in batch
    if use_mouth:
        m["mouth"] = masked_l1(reenact, drv, box_mask(batch["driver_mouth_4"], *drv.shape[1:3])).mean()
    # One perceptual pass over every pair (one VGG/SSIM graph, better batched on accelerators).
    xs, ys, names = [reenact], [drv], ["perceptual"]
    if cfg.face_weight > 0:
        xs.append(face_zoom(reenact, cfg.face_crop))
        ys.append(face_zoom(drv, cfg.face_crop))
        names.append("face")
    if use_transfer:
        ta, tb = part(dec, 1), part(dec, 2)
        xs.append(ta)
        ys.append(tb)
        names.append("transfer_perceptual")
        m["transfer_l1"] = l1(ta, tb).mean()
    dist = critics.perceptual(jnp.concatenate(xs), jnp.concatenate(ys), cfg)
    for k, name in enumerate(names):
        m[name] = part(dist, k).mean()
    total = cfg.l1_weight * m["l1"] + cfg.perceptual_weight * m["perceptual"]
    if cfg.face_weight > 0:
        total += cfg.face_weight * m["face"]
    if use_mouth:
        total += cfg.mouth_weight * m["mouth"]
    if use_flow:
        total += cfg.flow_weight * m["flow"]
    if use_marks:
        total += cfg.landmark_weight * m["landmarks"]
    if use_pose:
        total += cfg.pose_weight * m["pose"]
    if use_expr:
        total += cfg.expression_weight * m["expression"]
    if use_transfer:
        total += cfg.transfer_weight * (
            cfg.l1_weight * m["transfer_l1"] + cfg.perceptual_weight * m["transfer_perceptual"]
        )
    fakes = reenact
    if use_cross:
        cross = part(dec, 3 if use_transfer else 1)
        outputs["cross"] = cross
        fakes = jnp.concatenate([reenact, cross])
        if cfg.identity_weight > 0:
            emb = critics.identity_embedding(jnp.concatenate([cross, crs]), model)
            e_gen, e_ref = emb[:b], jax.lax.stop_gradient(emb[b:])
            m["identity"] = (1.0 - jnp.sum(e_gen * e_ref, axis=-1)).mean()
            total += cfg.identity_weight * m["identity"]
        if cfg.contrastive_weight > 0:
            _, dyn_gen = model.encode_motion(jnp.concatenate([reenact, cross]).astype(model.cfg.jnp_dtype))
            pos = jnp.concatenate([dyn_d, dyn_d]).astype(jnp.float32)
            neg = jnp.concatenate([dyn_c, dyn_c]).astype(jnp.float32)[:, None]
            m["contrastive"] = cosface_loss(
                dyn_gen.astype(jnp.float32), pos, neg, cfg.cosface_scale, cfg.cosface_margin
            ).mean()
            total += cfg.contrastive_weight * m["contrastive"]
    outputs["fakes"] = fakes
    if disc is not None and (cfg.gan_weight > 0 or cfg.feature_matching_weight > 0):
        scales = disc(jnp.concatenate([drv, fakes]))
        m["gan"] = hinge_generator([lg[b:] for lg, _ in scales])
        m["feature_matching"] = feature_matching(
            [[f[b : 2 * b] for f in fs] for _, fs in scales], [[f[:b] for f in fs] for _, fs in scales]
        )
        total += cfg.gan_weight * m["gan"] + cfg.feature_matching_weight * m["feature_matching"]
    mse = jnp.mean((reenact - drv) ** 2)
    m["psnr"] = -10.0 * jnp.log10(jnp.maximum(mse, 1e-10))
    m["loss"] = total
    return total, (m, outputs)


def generator_loss(
    model: FaceLatentModel,
    critics: FaceCritics,
    disc: PatchDiscriminator | None,
    batch: Mapping[str, Any],
    cfg: FaceLossConfig,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The stage-1 generator objective on one ``face_pairs`` batch: ``(loss, metrics)`` (see module docstring)."""
    loss, (metrics, _) = generator_loss_and_outputs(model, critics, disc, batch, cfg)
    return loss, metrics


def discriminator_loss(disc: PatchDiscriminator, real, fake) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Hinge loss of the multi-scale discriminator: ``mean relu(1 − D(real)) + mean relu(1 + D(fake))`` per scale,
    averaged over scales. ``real``/``fake`` are image batches (uint8 or float in [0, 1]; sizes may differ);
    ``fake`` is under ``stop_gradient``."""
    real, fake = to_float(real), jax.lax.stop_gradient(to_float(fake))
    n = real.shape[0]
    scales = disc(jnp.concatenate([real, fake]))
    loss_real = sum(jax.nn.relu(1.0 - lg[:n]).mean() for lg, _ in scales) / len(scales)
    loss_fake = sum(jax.nn.relu(1.0 + lg[n:]).mean() for lg, _ in scales) / len(scales)
    loss = loss_real + loss_fake
    metrics = {
        "d_loss": loss,
        "d_loss_real": loss_real,
        "d_loss_fake": loss_fake,
        "d_real": sum(lg[:n].mean() for lg, _ in scales) / len(scales),
        "d_fake": sum(lg[n:].mean() for lg, _ in scales) / len(scales),
    }
    return loss, metrics
