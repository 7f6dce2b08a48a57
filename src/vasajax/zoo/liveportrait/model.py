"""LivePortrait's renderer as one NNX module, and pure jitted functions over its params.

Per source image: ``extract_appearance`` (F → volume) and ``extract_motion`` (M → refined keypoint info, then
``keypoints.transform_keypoint`` gives the source keypoints). Per frame: ``render`` (W then G) from the volume,
the source keypoints and the driving keypoints. Images are ``B×H×W×3`` RGB in [0, 1] (256² for the released
model, whose output is 512²).

>>> params, fns = jitted(model)
>>> vol = fns.extract_appearance(params, image)
>>> frame = fns.render(params, vol, kp_source, kp_driving)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
from flax import nnx

from vasajax.zoo.liveportrait.appearance import AppearanceFeatureExtractor
from vasajax.zoo.liveportrait.config import LivePortraitConfig
from vasajax.zoo.liveportrait.generator import SPADEDecoder
from vasajax.zoo.liveportrait.keypoints import refine_motion
from vasajax.zoo.liveportrait.motion import MotionExtractor
from vasajax.zoo.liveportrait.retargeting import StitchingRetargeting
from vasajax.zoo.liveportrait.warping import WarpingNetwork


class LivePortrait(nnx.Module):
    """F, M, W, G and (optionally) S of LivePortrait."""

    def __init__(
        self,
        cfg: LivePortraitConfig,
        *,
        rngs: nnx.Rngs | None = None,
        retargeting: bool = True,
        parts: dict[str, nnx.Module] | None = None,
    ):
        """Random init from ``rngs``, or assembled from ready ``parts`` (``appearance``, ``motion``, ``warping``,
        ``generator`` and optionally ``retargeting``: what the converter builds)."""
        self.cfg = cfg
        if parts is not None:
            self.appearance, self.motion = parts["appearance"], parts["motion"]
            self.warping, self.generator = parts["warping"], parts["generator"]
            self.retargeting = parts.get("retargeting")
            return
        self.appearance = AppearanceFeatureExtractor(cfg.appearance, rngs=rngs)
        self.motion = MotionExtractor(cfg.motion, rngs=rngs)
        self.warping = WarpingNetwork(cfg.warping, rngs=rngs)
        self.generator = SPADEDecoder(cfg.generator, rngs=rngs)
        self.retargeting = StitchingRetargeting(cfg.retargeting, rngs=rngs) if retargeting else None

    def extract_appearance(self, image_BxHxWx3):
        """Image → feature volume ``B×D×h×w×C``."""
        return self.appearance(image_BxHxWx3)

    def extract_motion(self, image_BxHxWx3) -> dict:
        """Image → ``pitch``/``yaw``/``roll`` (degrees, B×1), ``kp``/``exp`` (B×K×3), ``t`` (B×3), ``scale`` (B×1)."""
        return refine_motion(self.motion(image_BxHxWx3), self.cfg.motion.num_kp)

    def render(self, vol_BxDxHxWxC, kp_source_BxKx3, kp_driving_BxKx3):
        """Volume + source and driving keypoints → image ``B×H×W×3`` in [0, 1]."""
        return self.generator(self.warping(vol_BxDxHxWxC, kp_source_BxKx3, kp_driving_BxKx3)["out"])


def extract_appearance(graphdef: nnx.GraphDef, params: nnx.State, image_BxHxWx3):
    """Pure form of :meth:`LivePortrait.extract_appearance` (jit with ``graphdef`` static or closed over)."""
    return nnx.merge(graphdef, params).extract_appearance(image_BxHxWx3)


def extract_motion(graphdef: nnx.GraphDef, params: nnx.State, image_BxHxWx3) -> dict:
    """Pure form of :meth:`LivePortrait.extract_motion`."""
    return nnx.merge(graphdef, params).extract_motion(image_BxHxWx3)


def render(graphdef: nnx.GraphDef, params: nnx.State, vol_BxDxHxWxC, kp_source_BxKx3, kp_driving_BxKx3):
    """Pure form of :meth:`LivePortrait.render`: the per-frame renderer."""
    return nnx.merge(graphdef, params).render(vol_BxDxHxWxC, kp_source_BxKx3, kp_driving_BxKx3)


class Jitted(NamedTuple):
    """Jitted pure functions that take the params first."""

    extract_appearance: object
    extract_motion: object
    render: object


def jitted(model: LivePortrait) -> tuple[nnx.State, Jitted]:
    """``(params, fns)``: the model's state and jitted ``extract_appearance/extract_motion/render(params, ...)``."""
    graphdef, params = nnx.split(model)
    return params, Jitted(
        jax.jit(lambda p, x: extract_appearance(graphdef, p, x)),
        jax.jit(lambda p, x: extract_motion(graphdef, p, x)),
        jax.jit(lambda p, v, ks, kd: render(graphdef, p, v, ks, kd)),
    )
