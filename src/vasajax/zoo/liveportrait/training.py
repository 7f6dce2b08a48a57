"""LivePortrait's renderer as a trainable entry (``vasajax.stages.RENDERER_TRAINING["liveportrait"]``).

``vasajax train-face --renderer liveportrait`` trains F (appearance), M (motion extractor), W (warping) and G
(SPADE generator) by self-reenactment on clip shards, in the loop every renderer shares (``vasajax.train.face``:
sharded state, the multi-scale patch discriminator, exact resume, EMA, sample grids). LivePortrait's training code
is not public; this objective follows its paper (§3.1, "first stage: base model training"), which keeps face
vid2vid's (Wang et al. 2021) losses, with what this repository's data can supervise:

* **reconstruction**: the driver frame rendered from the source's appearance and canonical keypoints with the
  driver's pose, expression, scale and translation (``x_d = s_d · (x_c,s R_d + δ_d) + t_d``, Eq. 2): L1 and the
  perceptual distance (VGG19 with weights, else multi-scale SSIM; ``vasajax.face.losses.FaceCritics``), the same
  on the central face crop, and an L1 in the driver's mouth box (the paper's lip-region cascade term, with the
  tracker's box instead of a landmark crop);
* **GAN**: hinge loss and feature matching against the loop's patch discriminator (the paper's is on the
  implicit keypoints as well as the image; here on the image);
* **equivariance** (face vid2vid): the keypoints M finds in a randomly rotated, scaled and shifted driver, mapped
  back by the same transform, equal the driver's own;
* **keypoint prior**: keypoints at least ``√keypoint_distance`` apart, their mean depth near ``keypoint_depth``;
* **head pose**: M's angles against the tracker's (``source_pose_6``/``driver_pose_6``, the pseudo-labels
  LivePortrait takes from a pretrained pose estimator), in radians;
* **deformation prior**: the L1 size of the expression offsets δ.

LivePortrait's identity loss (ArcFace) and its second stage (stitching and retargeting S) are not trained here: an
export of such a run has no S (``retargeting`` false; the renderer then skips stitching). BatchNorm trains on batch
statistics with running averages (torch's defaults); the SPADE convolutions' spectral norm runs one power iteration
per step. The models are the parity-tested ports themselves, so a run exports to the same files ``vasajax convert
liveportrait`` writes and the ``liveportrait`` renderer loads.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from vasajax.errors import UserError
from vasajax.face import losses
from vasajax.face.warp import grid_sample_2d
from vasajax.zoo import export
from vasajax.zoo.liveportrait import keypoints as kp_lib
from vasajax.zoo.liveportrait.config import (
    AppearanceConfig,
    DenseMotionConfig,
    GeneratorConfig,
    LivePortraitConfig,
    MLPConfig,
    MotionConfig,
    RetargetingConfig,
    WarpingConfig,
)
from vasajax.zoo.liveportrait.model import LivePortrait


@dataclasses.dataclass(frozen=True, kw_only=True)
class LivePortraitLossConfig:
    """Weights of the LivePortrait objective (module docstring); the perceptual fields are ``FaceLossConfig``'s."""

    perceptual: str = "vgg19"
    """"vgg19" (needs ``vgg_weights``) or "ssim" (the offline fallback)."""
    vgg_weights: str | None = None
    ssim_scales: int = 4
    l1_weight: float = 1.0
    perceptual_weight: float = 10.0
    face_weight: float = 4.0
    """Perceptual distance on the central ``face_crop`` (the face-region cascade term)."""
    face_crop: float = 0.6
    mouth_weight: float = 0.0
    """L1 in the driver's mouth box (``driver_mouth_4``), normalised by its area."""
    gan_weight: float = 1.0
    feature_matching_weight: float = 10.0
    equivariance_weight: float = 10.0
    """L1 of the keypoints' (x, y), in [-1, 1] units (face vid2vid's λ_E is 20; ours 10)."""
    equivariance_rotation: float = 10.0
    """Largest rotation (degrees) of the random transform; its scale is 1 ± 0.1·this/10, its shift ± 0.1·this/10."""
    keypoint_prior_weight: float = 10.0
    """face vid2vid's λ_L."""
    keypoint_distance: float = 0.1
    """D_t of the keypoint prior: squared distance below which two keypoints push apart."""
    keypoint_depth: float = 0.33
    """z_t of the keypoint prior: target mean depth."""
    pose_weight: float = 20.0
    """L1 (radians) between M's head angles and the tracker's (face vid2vid's λ_H is 20, against a pretrained
    estimator's rotation)."""
    deformation_weight: float = 5.0
    """L1 size of the expression offsets δ (face vid2vid's λ_Δ: 5)."""

    def __post_init__(self):
        if self.perceptual not in ("vgg19", "ssim"):
            raise UserError(f"perceptual must be 'vgg19' or 'ssim', not {self.perceptual!r}")
        if not 0 < self.face_crop <= 1:
            raise ValueError("LivePortraitLossConfig: face_crop must be in (0, 1]")

    @classmethod
    def preset(cls, vgg_weights: str | None, **overrides) -> LivePortraitLossConfig:
        kw: dict[str, Any] = dict(vgg_weights=vgg_weights)
        if vgg_weights is None:
            kw.update(perceptual="ssim", l1_weight=10.0)
        return cls(**{**kw, **overrides})


def small_config() -> LivePortraitConfig:
    """A CPU-trainable size: 128² input, 16×8×32×32 volume, 15 keypoints, 256² output (~1/30 of the released
    model's parameters)."""
    k = 15
    return LivePortraitConfig(
        image_size=128,
        appearance=AppearanceConfig(
            block_expansion=16, max_features=128, reshape_channel=16, reshape_depth=8, num_resblocks=3
        ),
        motion=MotionConfig(depths=(2, 2, 4, 2), dims=(24, 48, 96, 192), num_kp=k),
        warping=WarpingConfig(
            num_kp=k,
            block_expansion=16,
            max_features=128,
            reshape_channel=16,
            dense_motion=DenseMotionConfig(
                block_expansion=16, max_features=256, num_blocks=4, reshape_depth=8, compress=4
            ),
        ),
        generator=GeneratorConfig(block_expansion=16, max_features=256, out_channels=32, spade_hidden=64),
        retargeting=RetargetingConfig(
            stitching=MLPConfig(input_size=6 * k, hidden_sizes=(64, 64), output_size=3 * k + 2),
            lip=MLPConfig(input_size=3 * k + 2, hidden_sizes=(64,), output_size=3 * k),
            eye=MLPConfig(input_size=3 * k + 3, hidden_sizes=(64, 32), output_size=3 * k),
        ),
    )


PRESETS = {"tiny": LivePortraitConfig.tiny, "small": small_config, "paper": LivePortraitConfig.full}


def _resize(images, size: int):
    b, h, w, c = images.shape
    if h == size and w == size:
        return images
    return jax.image.resize(images, (b, size, size, c), "linear", antialias=True)


def driving_keypoints(kp_canonical, info: dict):
    """Eq. 2 with ``info``'s pose, expression, scale and translation on the given canonical keypoints."""
    return kp_lib.transform_keypoint(
        kp_canonical, info["pitch"], info["yaw"], info["roll"], info["exp"], info["scale"], info["t"]
    )


def _split(info: dict, n: int, k: int) -> dict:
    return {name: v[k * n : (k + 1) * n] for name, v in info.items()}


def random_affine(key, b: int, max_degrees: float):
    """``(A B×2×2, shift B×2)``: rotation up to ``max_degrees``, scale 1 ± 0.01·max_degrees, shift the same."""
    kr, ks, kt = jax.random.split(key, 3)
    ang = jax.random.uniform(kr, (b,), minval=-1.0, maxval=1.0) * jnp.deg2rad(max_degrees)
    scale = 1.0 + jax.random.uniform(ks, (b,), minval=-1.0, maxval=1.0) * 0.01 * max_degrees
    shift = jax.random.uniform(kt, (b, 2), minval=-1.0, maxval=1.0) * 0.01 * max_degrees
    c, s = jnp.cos(ang) * scale, jnp.sin(ang) * scale
    return jnp.stack([jnp.stack([c, -s], -1), jnp.stack([s, c], -1)], -2), shift


def affine_warp(images_BxHxWxC, a_Bx2x2, shift_Bx2):
    """Images resampled so that output point ``p`` (x, y in [-1, 1]) shows the input at ``A p + shift``: a point
    ``q`` of the input appears at ``A⁻¹ (q − shift)``."""
    b, h, w, _ = images_BxHxWxC.shape
    ys = (2 * jnp.arange(h, dtype=jnp.float32) + 1) / h - 1
    xs = (2 * jnp.arange(w, dtype=jnp.float32) + 1) / w - 1
    grid = jnp.stack(jnp.meshgrid(xs, ys, indexing="xy"), -1)  # H×W×2 (x, y)
    pts = jnp.einsum("bij,hwj->bhwi", a_Bx2x2, grid) + shift_Bx2[:, None, None]
    return grid_sample_2d(images_BxHxWxC, pts)


def keypoint_prior(kp_BxKx3, distance: float, depth: float):
    """face vid2vid's ``Σ_{i≠j} max(0, D_t − ‖x_i − x_j‖²) + |mean z − z_t|``, per example ``B``."""
    d2 = jnp.sum(jnp.square(kp_BxKx3[:, :, None] - kp_BxKx3[:, None]), axis=-1)
    k = kp_BxKx3.shape[1]
    off = 1.0 - jnp.eye(k, dtype=d2.dtype)
    spread = jnp.sum(jax.nn.relu(distance - d2) * off, axis=(1, 2))
    return spread + jnp.abs(kp_BxKx3[:, :, 2].mean(axis=1) - depth)


def objective(model: LivePortrait, critics, disc, batch, cfg: LivePortraitLossConfig, key):
    """``(loss, (metrics, fakes))`` of one ``face_pairs`` batch (module docstring). Frames come at the output size;
    M and F read them resized to the input size."""
    critics = losses.frozen(critics)
    disc = losses.frozen(disc) if disc is not None else None
    src, drv = losses.to_float(batch["source"]), losses.to_float(batch["driver"])
    b, size = src.shape[0], model.cfg.image_size
    src_in, drv_in = _resize(src, size), _resize(drv, size)
    use_eq = cfg.equivariance_weight > 0
    if use_eq:
        a, shift = random_affine(key, b, cfg.equivariance_rotation)
        eq_in = affine_warp(drv_in, a, shift)
    info = model.extract_motion(jnp.concatenate([src_in, drv_in] + ([eq_in] if use_eq else [])))
    info_s, info_d = _split(info, b, 0), _split(info, b, 1)
    kp_s = driving_keypoints(info_s["kp"], info_s)
    kp_d = driving_keypoints(info_s["kp"], info_d)  # the source's canonical keypoints, the driver's motion
    out = model.render(model.extract_appearance(src_in), kp_s, kp_d).astype(jnp.float32)

    m: dict[str, jax.Array] = {"l1": losses.l1(out, drv).mean()}
    xs, ys, names = [out], [drv], ["perceptual"]
    if cfg.face_weight > 0:
        xs.append(losses.face_zoom(out, cfg.face_crop))
        ys.append(losses.face_zoom(drv, cfg.face_crop))
        names.append("face")
    dist = critics.perceptual(jnp.concatenate(xs), jnp.concatenate(ys), cfg)
    for k, name in enumerate(names):
        m[name] = dist[k * b : (k + 1) * b].mean()
    total = cfg.l1_weight * m["l1"] + cfg.perceptual_weight * m["perceptual"]
    if cfg.face_weight > 0:
        total += cfg.face_weight * m["face"]
    if cfg.mouth_weight > 0 and "driver_mouth_4" in batch:
        m["mouth"] = losses.masked_l1(out, drv, losses.box_mask(batch["driver_mouth_4"], *drv.shape[1:3])).mean()
        total += cfg.mouth_weight * m["mouth"]
    own_d = driving_keypoints(info_d["kp"], info_d)  # the driver's keypoints from its own canonical ones
    if use_eq:
        info_t = _split(info, b, 2)
        kp_t = driving_keypoints(info_t["kp"], info_t)
        back = jnp.einsum("bij,bkj->bki", a, kp_t[..., :2]) + shift[:, None]
        m["equivariance"] = jnp.abs(back - own_d[..., :2]).mean()
        total += cfg.equivariance_weight * m["equivariance"]
    if cfg.keypoint_prior_weight > 0:
        kps = jnp.concatenate([kp_s, own_d])
        m["keypoint_prior"] = keypoint_prior(kps, cfg.keypoint_distance, cfg.keypoint_depth).mean()
        total += cfg.keypoint_prior_weight * m["keypoint_prior"]
    if cfg.pose_weight > 0 and "source_pose_6" in batch and "driver_pose_6" in batch:
        # tracker [yaw, pitch, roll] → the renderer's axes (x right, y down, z away: as VASA's warp), radians
        want = losses.tracker_angles_to_model(jnp.concatenate([batch["source_pose_6"], batch["driver_pose_6"]]))
        got = jnp.concatenate(
            [jnp.concatenate([i["yaw"], i["pitch"], i["roll"]], axis=1) for i in (info_s, info_d)]
        )  # fmt: skip
        m["pose"] = jnp.abs(jnp.deg2rad(got) - want).mean()
        total += cfg.pose_weight * m["pose"]
    if cfg.deformation_weight > 0:
        m["deformation"] = jnp.abs(jnp.concatenate([info_s["exp"], info_d["exp"]])).mean()
        total += cfg.deformation_weight * m["deformation"]
    if disc is not None and (cfg.gan_weight > 0 or cfg.feature_matching_weight > 0):
        scales = disc(jnp.concatenate([drv, out]))
        m["gan"] = losses.hinge_generator([lg[b:] for lg, _ in scales])
        m["feature_matching"] = losses.feature_matching(
            [[f[b:] for f in fs] for _, fs in scales], [[f[:b] for f in fs] for _, fs in scales]
        )
        total += cfg.gan_weight * m["gan"] + cfg.feature_matching_weight * m["feature_matching"]
    m["psnr"] = -10.0 * jnp.log10(jnp.maximum(jnp.mean((out - drv) ** 2), 1e-10))
    m["loss"] = total
    return total, (m, out)


class LivePortraitTraining:
    """Trainable renderer ``"liveportrait"`` (``train-face --renderer liveportrait``): F, M, W, G from scratch."""

    name = "liveportrait"
    stage_name = "liveportrait"
    motion_space = "liveportrait"
    precisions = ("float32",)
    model_config = LivePortraitConfig
    loss_config = LivePortraitLossConfig

    @staticmethod
    def presets(name: str, vgg_weights: str | None = None) -> tuple[LivePortraitConfig, LivePortraitLossConfig]:
        """``tiny`` (64² → 128², the parity fixtures' widths), ``small`` (128² → 256², :func:`small_config`),
        ``paper`` (the released sizes, 256² → 512²). The mouth-box term is on (weight 10) in every preset."""
        if name not in PRESETS:
            raise UserError(f"no preset {name!r} for renderer liveportrait; known: {', '.join(PRESETS)}")
        scales = {"tiny": 3, "small": 4, "paper": 5}[name]
        return PRESETS[name](), LivePortraitLossConfig.preset(vgg_weights, ssim_scales=scales, mouth_weight=10.0)

    @staticmethod
    def with_dtype(cfg: LivePortraitConfig, dtype: str) -> LivePortraitConfig:
        if dtype != "float32":
            raise UserError("the LivePortrait port computes in float32: drop --bf16")
        return cfg

    @staticmethod
    def frame_size(cfg: LivePortraitConfig) -> int:
        return int(cfg.output_size)

    @staticmethod
    def build(cfg: LivePortraitConfig, rngs: nnx.Rngs) -> LivePortrait:
        """F, M, W, G (no stitching / retargeting S: LivePortrait trains it in a second stage)."""
        return LivePortrait(cfg, rngs=rngs, retargeting=False)

    @staticmethod
    def trainable():
        return nnx.Param

    @staticmethod
    def batch_keys(loss_cfg: LivePortraitLossConfig) -> tuple[str, ...]:
        return (
            ("source", "driver", "cross")
            + (("driver_mouth_4",) if loss_cfg.mouth_weight > 0 else ())
            + (("source_pose_6", "driver_pose_6") if loss_cfg.pose_weight > 0 else ())
        )

    @staticmethod
    def loss(model: LivePortrait, critics, disc, batch, loss_cfg, key):
        model.train(power_iteration=True)  # batch statistics, one power iteration per spectral norm
        return objective(model, critics, disc, batch, loss_cfg, key)

    @staticmethod
    def reenact(model: LivePortrait, source, driver):
        """``source`` with ``driver``'s pose, expression, scale and translation (absolute driving, no stitching)."""
        size = model.cfg.image_size
        src, drv = _resize(source, size), _resize(driver, size)
        info_s, info_d = model.extract_motion(src), model.extract_motion(drv)
        kp_s = driving_keypoints(info_s["kp"], info_s)
        return model.render(model.extract_appearance(src), kp_s, driving_keypoints(info_s["kp"], info_d))

    @staticmethod
    def export_files(cfg: LivePortraitConfig, model: LivePortrait) -> dict[str, Any]:
        """The files ``vasajax convert liveportrait`` writes (``liveportrait.json`` + ``.safetensors``)."""
        return export.liveportrait_files(cfg, model)
