"""LivePortrait's stitching and retargeting MLPs S (paper §3.2): small Linear-ReLU stacks on keypoints.

* stitching: ``[x_s, x_d]`` (B×6K) → ``[Δx (3K), Δtx, Δty]``, pasting the animated face back without seams;
* lip: ``[x_s, c_s,lip, c_d,lip]`` (B×(3K+2)) → Δx (3K), opening or closing the mouth;
* eye: ``[x_s, c_s,eyes (2), c_d,eye]`` (B×(3K+3)) → Δx (3K), opening or closing the eyes.

How the outputs are applied is in ``keypoints.py``.
"""

from __future__ import annotations

import jax
from flax import nnx

from vasajax.zoo.liveportrait.config import MLPConfig, RetargetingConfig


class MLP(nnx.Module):
    def __init__(self, cfg: MLPConfig, rngs: nnx.Rngs):
        sizes = (cfg.input_size, *cfg.hidden_sizes, cfg.output_size)
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)])

    def __call__(self, x):
        for i, lin in enumerate(self.layers):
            x = lin(x)
            if i < len(self.layers) - 1:
                x = jax.nn.relu(x)
        return x


class StitchingRetargeting(nnx.Module):
    def __init__(self, cfg: RetargetingConfig, *, rngs: nnx.Rngs):
        self.stitching = MLP(cfg.stitching, rngs)
        self.lip = MLP(cfg.lip, rngs)
        self.eye = MLP(cfg.eye, rngs)
