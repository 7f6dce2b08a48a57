"""The shipped demo checkpoint (checkpoints/demo): intact, small configs, ≤ 50 MB, documented, and loadable."""

import dataclasses
import json

from vasajax import checkpoint_export as ce
from vasajax import config_io
from vasajax.face.config import FaceConfig
from vasajax.motion.dit import MotionConfig
from vasajax.pipeline import DEFAULT_CHECKPOINT, Animator


def test_demo_checkpoint_is_intact_small_and_documented():
    manifest = ce.verify_export(DEFAULT_CHECKPOINT)  # every file's sha256 and size
    total = sum(f["bytes"] for f in manifest["files"].values())
    assert total <= 50 * 2**20, total
    for key in ("face_run", "motion_run", "motion_data", "commands", "metrics", "notes"):
        assert key in manifest, key
    cfg = json.loads((DEFAULT_CHECKPOINT / "config.json").read_text())
    face = FaceConfig.from_dict(cfg["face"])
    # the small sizes, with or without the pixel-warp decoder and its design options (checkpoints/README.md)
    small = FaceConfig.small()
    options = ("pixel_warp", "dyn_2d", "dyn_2d_gain", "glimpse_channels", "patch_channels", "warp_keypoints",
               "fine_flow", "stretch_cue", "landmark_flow", "static_flow")  # fmt: skip
    assert dataclasses.replace(face, dtype="float32", **{k: getattr(small, k) for k in options}) == small
    assert face.image_size >= 256
    motion = config_io.from_dict(MotionConfig, cfg["motion"])
    small = MotionConfig.small(audio_dim=motion.audio_dim)
    assert dataclasses.replace(motion, dtype=small.dtype) == small


def test_demo_checkpoint_loads_as_the_default():
    anim = Animator.from_pretrained()  # no path: the shipped checkpoint
    assert anim.face_cfg.image_size == 256 and anim.motion_cfg.motion_dim == anim.face_cfg.motion_dim
    assert anim.export.conditions.get("distance", 0) > 0


def test_notebooks_animate_with_the_demo_checkpoint_unless_a_test_asks_for_smoke(monkeypatch):
    from vasajax import notebook as nb
    from vasajax.pipeline import resolve_checkpoint

    monkeypatch.delenv(nb.SMOKE_ENV, raising=False)
    assert not nb.smoke_test() and nb.demo_checkpoint() == resolve_checkpoint(None)
    monkeypatch.setenv(nb.SMOKE_ENV, "1")
    assert nb.smoke_test() and nb.demo_checkpoint(trained=True) == resolve_checkpoint(None)
