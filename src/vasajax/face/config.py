"""Configuration of the stage-1 face latent model (MegaPortraits, Drobyshev et al. 2022, as used by VASA-1 §3.1).

One frozen, keyword-only dataclass with three presets:

* ``tiny()``  — 64² images, a few thousand parameters per block; for tests and smoke notebooks (seconds on CPU).
* ``small()`` — 256² images; the shipped demo model, sized so that it can be *trained* on a 2-core CPU in hours
  (one encode ≈ 18 GFLOPs, one decode ≈ 6.5 GFLOPs; ``benchmarks/face_latent.py`` has the measured numbers).
  Its volume is 32×16×32×32 and G2D upsamples 8× — coarser than LivePortrait's 64×64 volume, which cost 3.5×
  more per training sample (encode 66, decode 19 GFLOPs) and was untrainable on the CPU the demo is made on.
* ``paper()`` — 512² images with MegaPortraits' sizes: a 96×16×64×64 appearance volume, warp generators
  (1×1 conv-2048 → C512×D4 → ResBlock3D 256/128/64/32 with upsampling), a G3D U-Net with ResBlock3D
  192/384/512 and a G2D with 8 ResBlock2D-512 and upsampling 256/128/64 to 512². The dynamics code is 128-d as in
  EMOPortraits (MegaPortraits used 512; 128 is enough for expressions and keeps stage 2's motion vector small).

Derived sizes (volume resolution, number of upsamplings) are properties so a config cannot disagree with itself.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp

from vasajax import config_io


@dataclasses.dataclass(frozen=True, kw_only=True)
class FaceConfig:
    """Sizes of every part of the face latent model. All fields are plain numbers so a config is JSON-able."""

    image_size: int = 512
    """Input and output image side (square, RGB in [0, 1])."""

    # Appearance encoder E_app: image -> posed appearance volume.
    app_stem: int = 64
    """Channels of the 7×7 stem convolution of E_app."""
    app_channels: tuple[int, ...] = (128, 256, 512)
    """ResBlock2D widths of E_app; each block is followed by a 2× average pool."""
    vol_channels: int = 96
    """Feature channels C of the appearance volume (D×H×W×C)."""
    vol_depth: int = 16
    """Depth D of the appearance volume."""
    app_res3d: int = 6
    """ResBlock3D-``vol_channels`` blocks at the end of E_app (MegaPortraits: 3 × 2)."""

    # Motion and identity encoders: image -> (pose, dyn) and image -> z_id.
    enc_input_size: int = 256
    """Images are resized to this side before the motion and identity encoders."""
    enc_channels: tuple[int, ...] = (64, 128, 256, 512)
    """ResBlock2D widths of the motion / identity encoders (after a stride-2 7×7 stem; each block pools 2×)."""
    id_dim: int = 512
    """Size of the identity code z_id."""
    dyn_dim: int = 128
    """Size of the facial dynamics code z_dyn (EMOPortraits: 128)."""
    motion_pool: str = "mean"
    """How the motion encoder turns its last feature map into a code. ``"mean"``: a global average, as ResNets
    (and MegaPortraits' pretrained ones) do. ``"flatten"``: the whole ``s×s×C`` map feeds the linear head, so each
    output can weigh each place of the (aligned) face: a mouth that opens changes a few percent of the pixels,
    which a global mean dilutes and a from-scratch encoder does not learn to pick out at CPU scale
    (``benchmarks/motion_encoder_probe.py``)."""
    glimpse_channels: tuple[int, ...] = ()
    """Widths of the motion encoder's glimpse trunks (empty: no glimpses, as in the paper). Each glimpse is a
    fixed window of the full-resolution input where the face crop (``facetrack.crop.CropConfig``: centred on the eyes
    and mouth, scaled by their distances) puts the mouth or the eyes (``encoders.GLIMPSES``); a small trunk of
    ResBlock2Ds (a stride-2 stem, then one 2× pool per width) reads it at full resolution and a zero-initialised
    linear head adds its flattened map to the code. At ``small()``'s 128² encoder input the lip gap is ~3 px and the
    eyelids ~2 px; in the glimpse they are twice that, and sit at the same place in every frame."""
    max_angle: float = 1.4
    """Bound on |yaw|, |pitch|, |roll| in radians (tanh-squashed encoder output)."""
    max_shift: float = 0.5
    """Bound on |tx|, |ty|, |tz| in normalised volume units ([-1, 1] spans the volume)."""

    # Warp generators W_s->c and W_c->d: (pose, dyn, id) -> 3D flow at the volume's resolution.
    warp_keypoints: int = 0
    """Warp generators made of K implicit 3D keypoints (0: MegaPortraits' convolutional generators, as in the
    paper). Each generator places K learned keypoints in the volume (plus an offset read from z_id), moves each by
    a displacement an MLP reads from (pose, z_dyn, z_id), and spreads the displacements over the volume with
    Gaussian soft-assignment weights (a softmax over the keypoints and one static background component), as
    FOMM's and LivePortrait's keypoint motion does. Costs almost nothing next to the ResBlock3D upsampling stack,
    and a mouth opening is a few keypoints moving apart: a short, well-conditioned path from z_dyn to the warp.
    ``warp_base_channels`` is then the MLP's width; ``warp_base_depth`` and ``warp_channels`` are unused."""
    warp_base_channels: int = 512
    """Channels of the reshaped code tensor (MegaPortraits: 1×1 conv-2048 -> C512×D4)."""
    warp_base_depth: int = 4
    """Depth of the reshaped code tensor."""
    warp_channels: tuple[int, ...] = (256, 128, 64, 32)
    """ResBlock3D widths of the warp generators; each stage upsamples 2× in H, W (and in D until D is reached)."""

    # G3D: 3D U-Net that refines the canonical volume.
    g3d_channels: tuple[int, ...] = (192, 384, 512)
    """ResBlock3D widths per U-Net level; each level below the first halves D, H and W."""

    # G2D: volume -> image.
    g2d_channels: int = 512
    """Width after the 1×1 projection of the flattened (D·C) volume."""
    g2d_blocks: int = 8
    """ResBlock2D-``g2d_channels`` blocks at volume resolution."""
    g2d_up_channels: tuple[int, ...] = (256, 128, 64)
    """Widths of the upsampling ResBlock2Ds; their number must take the volume side to ``image_size``."""

    pixel_warp: bool = False
    """Decoder reuses the source image's pixels (False: the paper's pure volume decoder). The two 3D warps
    (source → canonical → driver) also carry, for each driver voxel, the source-image point it came from; G2D
    predicts depth weights that project those points to a 2D flow (plus a small residual flow), warps the source
    image with it, and blends the warped pixels with its own RGB through a predicted occlusion mask, as warping
    renderers (FOMM, LivePortrait) do. Pixels the source shows are copied, not re-synthesised, so the decoder
    needs far less training to render sharp faces; G2D still paints what the source does not show (the mouth
    interior, disoccluded cheeks). The latent then carries the source image (see ``FaceLatent``)."""

    fine_flow: bool = False
    """The pixel-warp decoder adds a full-resolution residual flow, read from G2D's last features by a zero-init
    3×3 conv (False: the flow lives at volume resolution, bilinearly upsampled). At ``small`` sizes one volume cell
    is 8 pixels, wider than a speaking mouth's lip gap, so a volume-resolution flow can stretch the mouth region
    but cannot part the lips; the landmark flow loss (``flow_weight``) supervises the fine flow at the lips."""
    static_flow: bool = False
    """The pixel-warp decoder's depth weights get one more candidate besides the D lifted planes: the output
    pixel's own position, i.e. "this pixel does not move" (False: only the lifted planes). Its weight is upsampled
    and blends in the exact full-resolution identity, so a static background is copied pixel for pixel. Without
    it a head turn drags the background along (every depth plane of a rotated head moves, and no plane stays put
    under roll), and the residual flows must learn to undo that: at CPU scale most of the held-out error sat in
    the background and along the crop's top edge."""
    stretch_cue: bool = False
    """The pixel-warp decoder's last layers also see where the flow stretches the source: the log area ratio of
    the 2D flow (its Jacobian determinant), low where a few source pixels fill many output pixels, the mark of a
    disocclusion such as parted lips. A small zero-init painter reads it with the features and the warped source
    and adds to the RGB and mask logits, so the mouth interior is painted where the flow opens the lips."""

    landmark_flow: int = 0
    """K > 0: the pixel-warp decoder's flow follows K face points (0: none, as in the paper). A small MLP reads
    (pose, z_dyn, z_id) and places K points in the image (trained against the tracker's ``loader.FLOW_LANDMARKS``,
    K of them, by ``FaceLossConfig.landmark_weight``); the encoder places the source's points the same way. An
    output pixel q near driver point p_k reads the source at s_k + (q − p_k), the point's local translation, with
    Gaussian weights of width ``landmark_flow_width`` that take their share from the decoder's own flow (FOMM's
    keypoint motion, with the keypoints tied to the tracker's). Lips a few pixels apart move apart, which no
    volume-resolution flow can do at ``small`` sizes, and the motion code reaches the flow through one MLP. Fresh
    points all sit at the image centre, so a fresh model's flow is the identity within a few pixels of it."""
    landmark_flow_width: float = 0.03
    """Width (grid units; the image spans [-1, 1]) of each point's Gaussian in ``landmark_flow``: 0.03 ≈ 4 pixels
    at 256², about the lips' thickness."""

    dyn_2d: bool = False
    """G2D also reads z_dyn directly (False: only through the 3D warp, as in the paper). A linear map takes z_dyn
    to a coarse ``dyn_2d_size``² × 32 feature map, upsampled and added (through a 1×1 conv) to G2D's features at
    volume resolution, before its ResBlocks and the pixel-warp flow head. The image is roughly aligned, so the map
    can place a mouth opening (lip flow, dark interior) where the mouth is, one short gradient path from the mouth
    loss to the motion code instead of the long one through the 3D warp, G3D and the depth projection."""
    dyn_2d_size: int = 16
    """Side of the coarse z_dyn map of ``dyn_2d`` (must divide the volume side)."""
    dyn_2d_gain: float = 1.0
    """``dyn_2d`` reads ``gain · z_dyn``. The encoder's code moves little from frame to frame (per-dim std ~0.02 in
    the demo runs) and the path's projection starts at zero, so at gain 1 the map's effect is the product of two
    small numbers and grows slowly under Adam's bounded steps (a saddle at zero); a gain that brings the code's
    frame-to-frame movement to ~1 lets the mouth loss reach it within a few hundred steps."""

    patch_channels: int = 0
    """Width of the decoder's patch painters (0: none, as in the paper). One painter per glimpse window
    (``encoders.GLIMPSES``: mouth, eyes) repaints that window of the rendered frame at full resolution: it reads
    the window (at 1/4 resolution) and ``patch_code_gain · z_dyn`` (through a linear map to the same grid), and adds
    a feathered RGB correction whose last layer starts at zero (a model grown with painters starts from its old
    images). The mirror of the encoder's glimpses: the few pixels that open a mouth or close an eye get a short,
    cheap path from the dynamics code, instead of G2D's long one through the volume."""
    patch_code_gain: float = 20.0
    """The painters read ``patch_code_gain · z_dyn`` (see ``dyn_2d_gain`` for why a gain)."""
    patch_out_gain: float = 10.0
    """The painters' correction is ``patch_out_gain`` × their last layer's output: with Adam's bounded steps a
    zero-initialised layer would otherwise take thousands of steps to reach a dark mouth interior."""

    groups: int = 32
    """Group-norm groups (reduced to gcd(groups, channels) where a layer is narrower)."""
    dtype: str = "float32"
    """Compute dtype ("float32" or "bfloat16"); parameters stay float32."""

    # ---------------------------------------------------------------- derived sizes
    @property
    def vol_size(self) -> int:
        """Height = width of the appearance volume."""
        return self.image_size // 2 ** len(self.app_channels)

    @property
    def vol_shape(self) -> tuple[int, int, int, int]:
        """(D, H, W, C) of the appearance volume."""
        return (self.vol_depth, self.vol_size, self.vol_size, self.vol_channels)

    @property
    def warp_base_size(self) -> int:
        """Height = width of the warp generators' reshaped code tensor."""
        return self.vol_size // 2 ** len(self.warp_channels)

    @property
    def pose_dim(self) -> int:
        return 6

    @property
    def motion_dim(self) -> int:
        """Per-frame motion latent size for stage 2: [yaw, pitch, roll, tx, ty, tz] + z_dyn."""
        return self.pose_dim + self.dyn_dim

    @property
    def jnp_dtype(self):
        return jnp.dtype(self.dtype)

    def __post_init__(self):
        checks = [
            (
                self.image_size % 2 ** len(self.app_channels) == 0,
                "image_size must divide by 2**len(app_channels)",
            ),
            (
                self.vol_size % 2 ** len(self.warp_channels) == 0,
                "volume side must divide by 2**len(warp_channels)",
            ),
            (self.vol_depth % self.warp_base_depth == 0, "vol_depth must be a multiple of warp_base_depth"),
            (
                2 ** len(self.g2d_up_channels) * self.vol_size == self.image_size,
                "g2d_up_channels must upsample the volume side to image_size",
            ),
            (
                self.vol_depth % 2 ** (len(self.g3d_channels) - 1) == 0
                and self.vol_size % 2 ** (len(self.g3d_channels) - 1) == 0,
                "volume D and H must divide by 2**(len(g3d_channels)-1)",
            ),
            (self.enc_input_size % 2 ** (len(self.enc_channels) + 1) == 0, "enc_input_size too small"),
            (self.dtype in ("float32", "bfloat16"), "dtype must be float32 or bfloat16"),
            (self.motion_pool in ("mean", "flatten"), "motion_pool must be 'mean' or 'flatten'"),
            (
                not self.glimpse_channels or self.image_size >= 2 ** (len(self.glimpse_channels) + 3),
                "too many glimpse_channels for image_size",
            ),
            (not self.dyn_2d or self.vol_size % self.dyn_2d_size == 0, "dyn_2d_size must divide the volume side"),
            (self.warp_keypoints >= 0, "warp_keypoints must be >= 0"),
            (not self.static_flow or self.pixel_warp, "static_flow needs pixel_warp"),
        ]
        depth_ups = math.log2(self.vol_depth // self.warp_base_depth)
        checks.append((depth_ups <= len(self.warp_channels) and depth_ups.is_integer(), "bad warp_base_depth"))
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"FaceConfig: {msg} ({self})")

    # ---------------------------------------------------------------- presets
    @classmethod
    def tiny(cls, **overrides) -> FaceConfig:
        """64² images, an 8×4×16×16 volume; compiles and runs in seconds on a 2-core CPU."""
        kw = dict(
            image_size=64,
            app_stem=8,
            app_channels=(16, 16),
            vol_channels=8,
            vol_depth=4,
            app_res3d=1,
            enc_input_size=64,
            enc_channels=(8, 16, 16),
            id_dim=16,
            dyn_dim=8,
            warp_base_channels=16,
            warp_base_depth=1,
            warp_channels=(16, 8),
            g3d_channels=(8, 16),
            g2d_channels=32,
            g2d_blocks=1,
            g2d_up_channels=(16, 8),
            groups=8,
        )
        return cls(**{**kw, **overrides})

    @classmethod
    def small(cls, **overrides) -> FaceConfig:
        """256² images, a 32×16×32×32 volume; the shipped demo model (CPU-trainable, see the module docstring)."""
        kw = dict(
            image_size=256,
            app_stem=16,
            app_channels=(32, 64, 128),
            vol_channels=32,
            vol_depth=16,
            app_res3d=1,
            enc_input_size=128,
            enc_channels=(32, 64, 128, 256),
            id_dim=128,
            dyn_dim=64,
            warp_base_channels=128,
            warp_base_depth=4,
            warp_channels=(64, 32, 16),
            g3d_channels=(32, 64, 128),
            g2d_channels=128,
            g2d_blocks=3,
            g2d_up_channels=(64, 32, 16),
        )
        return cls(**{**kw, **overrides})

    @classmethod
    def small_warp(cls, **overrides) -> FaceConfig:
        """``small()`` with the pixel-warp decoder (``pixel_warp=True``): the design that learns fastest on a
        CPU (comparison in ``checkpoints/README.md``; ``dyn_2d`` was tried on top of it and is not part of it)."""
        return cls.small(**{"pixel_warp": True, **overrides})

    @classmethod
    def paper(cls, **overrides) -> FaceConfig:
        """512² images with MegaPortraits' sizes (the class defaults)."""
        return cls(**overrides)

    def to_dict(self) -> dict:
        """JSON-ready fields (``vasajax.config_io``)."""
        return config_io.to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FaceConfig:
        """Inverse of :meth:`to_dict`; an unknown field is a ``UserError``."""
        return config_io.from_dict(cls, d)


PRESETS = {
    "tiny": FaceConfig.tiny,
    "small": FaceConfig.small,
    "small_warp": FaceConfig.small_warp,
    "paper": FaceConfig.paper,
}
