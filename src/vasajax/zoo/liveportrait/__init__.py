"""LivePortrait (Guo et al. 2024, KwaiVGI, MIT) ported to JAX/NNX: the renderer F, M, W, G and the stitching /
retargeting MLPs S, with a converter for the released PyTorch weights.

| file | what |
|---|---|
| ``config.py`` | ``LivePortraitConfig`` with ``full()`` (released sizes) and ``tiny()`` |
| ``layers.py`` | BatchNorm (eval), InstanceNorm, spectral-norm conv (eval form), pooling, pixel shuffle |
| ``appearance.py`` | F: image → 3D feature volume |
| ``motion.py`` | M: ConvNeXt-V2 → keypoints, pose bins, t, exp, scale |
| ``warping.py`` | W: dense motion (3D hourglass), deformation, occlusion, 3D → 2D |
| ``generator.py`` | G: SPADE decoder → image |
| ``retargeting.py`` | S: stitching, lip and eye MLPs |
| ``keypoints.py`` | bins → degrees, rotation, ``transform_keypoint``, stitching / retargeting updates |
| ``model.py`` | ``LivePortrait`` and pure jitted ``extract_appearance`` / ``extract_motion`` / ``render`` |
| ``convert.py`` | key tables and ``load_liveportrait`` for the released ``.pth`` files |
| ``stage.py`` | ``LivePortraitRenderer``: the ``"liveportrait"`` renderer entry (motion layout, crop, sizes) |
"""

from vasajax.zoo.liveportrait.config import LivePortraitConfig
from vasajax.zoo.liveportrait.convert import convert_state_dicts, load_liveportrait
from vasajax.zoo.liveportrait.model import LivePortrait, jitted

__all__ = ["LivePortrait", "LivePortraitConfig", "convert_state_dicts", "jitted", "load_liveportrait"]
