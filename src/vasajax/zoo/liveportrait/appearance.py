"""LivePortrait's appearance feature extractor F (paper §3.1): source image → 3D appearance feature volume.

``B×H×W×3`` in [0, 1] → SameBlock2d → ``num_down_blocks`` × (conv3, BN, ReLU, pool) → 1×1 conv to
``C·D`` channels → reshaped to ``B×D×h×w×C`` (torch's ``view(B, C, D, h, w)``: channel ``c·D + d``) →
``num_resblocks`` × ResBlock3d. The released model maps 256² to a 16×64×64×32 volume.
"""

from __future__ import annotations

from flax import nnx

from vasajax.zoo.liveportrait.config import AppearanceConfig
from vasajax.zoo.liveportrait.layers import DownBlock, ResBlock3d, SameBlock2d, conv, unflatten_depth


class AppearanceFeatureExtractor(nnx.Module):
    def __init__(self, cfg: AppearanceConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        be, mf = cfg.block_expansion, cfg.max_features
        self.first = SameBlock2d(cfg.image_channel, be, rngs)
        widths = [min(mf, be * 2**i) for i in range(cfg.num_down_blocks + 1)]
        self.down_blocks = nnx.List([DownBlock(widths[i], widths[i + 1], 2, rngs) for i in range(cfg.num_down_blocks)])
        self.second = conv(widths[-1], mf, 1, 2, rngs)
        self.resblocks_3d = nnx.List([ResBlock3d(cfg.reshape_channel, rngs) for _ in range(cfg.num_resblocks)])

    def __call__(self, image_BxHxWx3):
        """``B×H×W×3`` → volume ``B×D×h×w×C``."""
        x = self.first(image_BxHxWx3)
        for blk in self.down_blocks:
            x = blk(x)
        vol = unflatten_depth(self.second(x), self.cfg.reshape_channel, self.cfg.reshape_depth)
        for blk in self.resblocks_3d:
            vol = blk(vol)
        return vol
