"""vasajax.stages and vasajax.load: a renderer defined in this file, registered by name, animates a VASA motion DiT.

The toy renderer draws a disc whose mouth opening follows the first dynamics value and whose position follows the
head yaw/pitch: enough to show that the Animator reaches the renderer only through the ``Renderer`` interface
(encode once, render batches, relative pose, priming) and that an export names its stages in its manifest.
"""

import json

import numpy as np
import pytest

from vasajax import checkpoint_export as ce
from vasajax import provenance
from vasajax.errors import UserError
from vasajax.face.config import FaceConfig
from vasajax.facetrack.crop import CropConfig
from vasajax.image import PORTRAITS
from vasajax.load import load_stages, stage_names
from vasajax.motion.audio import AudioConfig, num_video_frames
from vasajax.motion.diffusion import DiffusionConfig
from vasajax.motion.dit import MotionConfig
from vasajax.pipeline import Animator
from vasajax.stages import AUDIO_ENCODERS, MOTION_GENERATORS, RENDERERS, Renderer

SR = 16_000


class DiscRenderer:
    """A disc face: pose moves it, ``dyn[0]`` opens its mouth; motion space ``"vasa"`` (so it pairs with the DiT)."""

    name = "disc"
    motion_space = "vasa"
    pose_dim = 6

    def __init__(self, motion_dim: int, image_size: int = 32):
        self.motion_dim, self.image_size = motion_dim, image_size
        self.crop = CropConfig(size=image_size)
        self.encoded = 0

    @classmethod
    def load(cls, directory, manifest):
        raw = json.loads((directory / ce.CONFIG_FILE).read_text())
        return cls(FaceConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw["face"].items()}).motion_dim)

    def encode_portrait(self, crop_1xSxSx3):
        self.encoded += 1
        colour = crop_1xSxSx3.reshape(-1, 3).mean(0) / 255.0
        return {"colour": colour.astype(np.float32), "motion": np.zeros(self.motion_dim, np.float32)}

    def portrait_motion(self, state):
        return state["motion"]

    def render(self, state, motion_BxM):
        S = self.image_size
        yy, xx = np.mgrid[0:S, 0:S] / S
        frames = []
        for m in np.asarray(motion_BxM, np.float32):
            cx, cy = 0.5 + 0.2 * np.tanh(m[0]), 0.5 + 0.2 * np.tanh(m[1])
            face = (xx - cx) ** 2 + (yy - cy) ** 2 < 0.3**2
            mouth = (np.abs(xx - cx) < 0.1) & (np.abs(yy - cy - 0.12) < 0.02 + 0.05 * (np.tanh(m[6]) + 1))
            img = np.where(face[..., None], state["colour"], 0.1) * np.where(mouth[..., None], 0.2, 1.0)
            frames.append(img)
        return np.stack(frames).astype(np.float32)

    def encode_motion(self, frames_BxSxSx3):
        return np.zeros((len(frames_BxSxSx3), self.motion_dim), np.float32)


@pytest.fixture(scope="module")
def disc_export(tmp_path_factory):
    """A tiny VASA export whose manifest says: render with the ``disc`` renderer."""
    d = ce.random_export(
        tmp_path_factory.mktemp("stages") / "disc",
        FaceConfig.tiny(),
        MotionConfig.tiny(audio_dim=32),
        {"audio": AudioConfig.tiny(), "diffusion": DiffusionConfig.tiny(steps=4)},
        manifest_extra={"stages": {"renderer": "disc", "motion": "vasa", "audio": "logmel"}},
    )
    RENDERERS.register("disc", DiscRenderer)
    yield d
    RENDERERS.unregister("disc")


def test_builtin_entries_are_listed_without_importing_them():
    assert "vasa" in RENDERERS.names() and "vasa" in MOTION_GENERATORS.names()
    assert {"logmel", "wav2vec2"} <= set(AUDIO_ENCODERS.names())
    with pytest.raises(UserError, match="no renderer named 'nope'; known: .*vasa"):
        RENDERERS.get("nope")
    assert stage_names({}) == {"renderer": "vasa", "motion": "vasa", "audio": ""}


def test_a_registered_renderer_animates(disc_export):
    stages = load_stages(disc_export)
    assert isinstance(stages.renderer, DiscRenderer) and isinstance(stages.renderer, Renderer)
    assert stages.generator.name == "vasa" and stages.export is None
    anim = Animator(stages)
    wave = (0.1 * np.sin(2 * np.pi * 220 * np.arange(int(1.5 * SR)) / SR)).astype(np.float32)
    video = anim.animate(PORTRAITS["astronaut"], wave, crop="center", seed=0, size=128)
    assert stages.renderer.encoded == 1  # the portrait is encoded once
    assert video.frames.shape == (num_video_frames(wave.size, anim.fps), 128, 128, 3)  # resized by the Animator
    assert video.motion.shape == (len(video.frames), stages.renderer.motion_dim)
    assert provenance.detect_frames(video.frames).present  # the Animator watermarks whatever renders
    again = anim.animate(PORTRAITS["astronaut"], wave, crop="center", seed=0, size=128)
    np.testing.assert_array_equal(again.frames, video.frames)
    assert len({f.tobytes() for f in video.frames}) > 1  # the DiT's motion moves the disc


def test_stages_that_do_not_fit_are_refused(disc_export, monkeypatch):
    monkeypatch.setattr(DiscRenderer, "motion_space", "elsewhere")
    with pytest.raises(UserError, match="motion generator .* 'vasa'.*renderer \\(disc\\) reads .*'elsewhere'"):
        load_stages(disc_export)
