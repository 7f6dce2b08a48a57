"""Sizes of LivePortrait's five networks (Guo et al. 2024, "LivePortrait: Efficient Portrait Animation with
Stitching and Retargeting Control", §3.1 and Fig. 2): appearance extractor F, motion extractor M, warping
module W, SPADE generator G and the stitching / retargeting MLPs S.

``LivePortraitConfig.full()`` holds the sizes of the released weights (upstream ``src/config/models.yaml``);
``LivePortraitConfig.tiny()`` shrinks every width for parity fixtures and tests (64² images, 16² feature maps).
Constraints that the upstream code leaves implicit are checked in ``__post_init__``.
"""

from __future__ import annotations

import dataclasses

from vasajax import config_io
from vasajax.facetrack.crop import CropConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class AppearanceConfig:
    """F: image ``B×H×W×3`` → feature volume ``B×D×(H/2ⁿ)×(W/2ⁿ)×C`` (n = ``num_down_blocks``)."""

    image_channel: int = 3
    block_expansion: int = 64
    """Width of the first 3×3 conv block; each down block doubles it (capped at ``max_features``)."""
    num_down_blocks: int = 2
    max_features: int = 512
    """Channels of the 2D map that is reshaped into the volume; must equal ``reshape_channel · reshape_depth``."""
    reshape_channel: int = 32
    """C of the volume."""
    reshape_depth: int = 16
    """D of the volume."""
    num_resblocks: int = 6
    """3D residual blocks (BatchNorm → ReLU → conv3) on the volume."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class MotionConfig:
    """M: a ConvNeXt-V2 (with GRN) backbone and linear heads for keypoints, pose bins, translation, expression."""

    depths: tuple[int, ...] = (3, 3, 9, 3)
    """Blocks per stage (ConvNeXt-V2 tiny)."""
    dims: tuple[int, ...] = (96, 192, 384, 768)
    """Channels per stage."""
    num_kp: int = 21
    """Implicit keypoints K."""
    num_bins: int = 66
    """Head-pose bins per angle (3° each, centred at −97.5° + 3·i; ``keypoints.headpose_to_degrees``)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class DenseMotionConfig:
    """The dense motion network inside W: a 3D hourglass over keypoint heatmaps and keypoint-warped features."""

    block_expansion: int = 32
    max_features: int = 1024
    num_blocks: int = 5
    """Down/up blocks of the hourglass; each halves H and W (not D)."""
    reshape_depth: int = 16
    """D of the volume (the occlusion head flattens C·D into 2D channels)."""
    compress: int = 4
    """Channels the volume is compressed to (1×1×1 conv) before it is warped per keypoint."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class WarpingConfig:
    """W: dense motion from keypoints, a trilinear warp of F's volume, an occlusion mask, and a 3D → 2D head."""

    num_kp: int = 21
    block_expansion: int = 64
    max_features: int = 512
    """Channels of the flattened warped volume (= C·D of F's volume)."""
    num_down_blocks: int = 2
    reshape_channel: int = 32
    """C of F's volume."""
    estimate_occlusion_map: bool = True
    use_occlusion_map: bool = True
    """Multiply the output by the occlusion map (upstream ``flag_use_occlusion_map``, default on)."""
    dense_motion: DenseMotionConfig = DenseMotionConfig()

    @property
    def out_channels(self) -> int:
        return self.block_expansion * 2**self.num_down_blocks


@dataclasses.dataclass(frozen=True, kw_only=True)
class GeneratorConfig:
    """G: SPADE decoder, warped 2D features ``B×h×w×C`` → image ``B×(4h·s)×(4w·s)×3`` in [0, 1] (s = 2 if
    ``upscale > 1``: a pixel shuffle)."""

    upscale: int = 2
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    out_channels: int = 64
    """Width of the last SPADE block (upstream ``SPADEDecoder(out_channels=64)``, not set in models.yaml)."""
    spade_hidden: int = 128
    """Hidden width of every SPADE modulation MLP (hard-coded 128 upstream)."""

    @property
    def in_channels(self) -> int:
        return min(self.max_features, self.block_expansion * 2**self.num_down_blocks)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MLPConfig:
    """One stitching / retargeting MLP: Linear-ReLU stacks."""

    input_size: int
    hidden_sizes: tuple[int, ...]
    output_size: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class RetargetingConfig:
    """S: stitching (source and driving keypoints → Δkeypoints, Δtx, Δty) and lip / eye retargeting MLPs."""

    stitching: MLPConfig = MLPConfig(input_size=126, hidden_sizes=(128, 128, 64), output_size=65)
    lip: MLPConfig = MLPConfig(input_size=65, hidden_sizes=(128, 128, 64), output_size=63)
    eye: MLPConfig = MLPConfig(input_size=66, hidden_sizes=(256, 256, 128, 128, 64), output_size=63)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LivePortraitConfig:
    """All five networks. Images are RGB in [0, 1], channels-last; the released model works on 256² crops."""

    image_size: int = 256
    appearance: AppearanceConfig = AppearanceConfig()
    motion: MotionConfig = MotionConfig()
    warping: WarpingConfig = WarpingConfig()
    generator: GeneratorConfig = GeneratorConfig()
    retargeting: RetargetingConfig = RetargetingConfig()

    def __post_init__(self):
        a, w, g = self.appearance, self.warping, self.generator
        k = self.motion.num_kp
        checks = (
            (a.max_features == a.reshape_channel * a.reshape_depth, "appearance max_features != C·D"),
            (w.num_kp == k, "warping num_kp != motion num_kp"),
            (w.reshape_channel == a.reshape_channel, "warping reshape_channel != appearance reshape_channel"),
            (w.dense_motion.reshape_depth == a.reshape_depth, "dense motion reshape_depth != appearance's"),
            (w.max_features == a.max_features, "warping max_features != appearance max_features"),
            (g.in_channels == w.out_channels, "generator input width != warping output width"),
            (self.retargeting.stitching.input_size == 6 * k, "stitching input != 2·3·K"),
            (self.retargeting.stitching.output_size == 3 * k + 2, "stitching output != 3·K + 2"),
        )
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"LivePortraitConfig: {msg}")

    @property
    def feature_size(self) -> int:
        """H = W of F's volume and of W's output."""
        return self.image_size // 2**self.appearance.num_down_blocks

    @property
    def output_size(self) -> int:
        """Side of G's output image (512 for the released model: 64 · 4 · 2)."""
        return self.feature_size * 4 * (2 if self.generator.upscale > 1 else 1)

    def to_dict(self) -> dict:
        """Plain nested dict (JSON-able), e.g. for an export's metadata."""
        return config_io.to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LivePortraitConfig:
        """Inverse of :meth:`to_dict`."""
        return config_io.from_dict(cls, d)

    @classmethod
    def full(cls) -> LivePortraitConfig:
        """The released model (``models.yaml``): 256² input, 32×16×64×64 volume, 21 keypoints, 512² output."""
        return cls()

    @classmethod
    def tiny(cls) -> LivePortraitConfig:
        """Reduced widths for fixtures and tests: 64² input, 8×4×16×16 volume, 5 keypoints, 128² output."""
        k = 5
        return cls(
            image_size=64,
            appearance=AppearanceConfig(
                block_expansion=8, max_features=32, reshape_channel=8, reshape_depth=4, num_resblocks=2
            ),
            motion=MotionConfig(depths=(1, 1, 2, 1), dims=(8, 16, 24, 32), num_kp=k),
            warping=WarpingConfig(
                num_kp=k,
                block_expansion=4,
                max_features=32,
                reshape_channel=8,
                dense_motion=DenseMotionConfig(
                    block_expansion=8, max_features=32, num_blocks=3, reshape_depth=4, compress=2
                ),
            ),
            generator=GeneratorConfig(block_expansion=4, max_features=32, out_channels=8, spade_hidden=16),
            retargeting=RetargetingConfig(
                stitching=MLPConfig(input_size=6 * k, hidden_sizes=(16, 16), output_size=3 * k + 2),
                lip=MLPConfig(input_size=3 * k + 2, hidden_sizes=(16,), output_size=3 * k),
                eye=MLPConfig(input_size=3 * k + 3, hidden_sizes=(16, 16, 8), output_size=3 * k),
            ),
        )


def full() -> LivePortraitConfig:
    return LivePortraitConfig.full()


def tiny() -> LivePortraitConfig:
    return LivePortraitConfig.tiny()


def default_crop(cfg: LivePortraitConfig) -> CropConfig:
    """The face crop the renderer reads: facetrack's default square crop at the model's input size (LivePortrait's
    own crop is a looser landmark box; the export records whichever crop it was written with)."""
    return CropConfig(size=cfg.image_size)
