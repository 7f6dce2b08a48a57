"""What the pipeline hands out: a finished :class:`Video`, an encoded :class:`Portrait`, and the
:class:`FrameStream` of frame batches with its latency clock."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vasajax import media, provenance
from vasajax.pipeline.audio_input import pad_to_frames


@dataclasses.dataclass(frozen=True)
class Video:
    """A generated clip: watermarked frames, the driving audio, and the motion that made them."""

    frames: np.ndarray
    """T×H×W×3 uint8."""
    fps: float
    """Frame rate."""
    audio: np.ndarray
    """The input audio, 16 kHz mono float32."""
    motion: np.ndarray
    """T×M generated motion latents [pose (as decoded), dyn]."""

    @property
    def duration_s(self) -> float:
        return len(self.frames) / self.fps

    def save(self, path: str | os.PathLike, *, crf: int = 18) -> Path:
        """Write an h264 + AAC mp4 with the provenance tag (atomically; see ``vasajax.media``)."""
        audio = np.pad(self.audio, (0, pad_to_frames(self.audio.size, self.fps) - self.audio.size))
        with media.VideoWriter(path, fps=self.fps, audio=audio, crf=crf, metadata=dict(provenance.metadata_tag())) as w:
            w.write(self.frames)
        return w.path


@dataclasses.dataclass(frozen=True)
class Portrait:
    """The encoded portrait: what every frame is decoded from."""

    image: np.ndarray
    """The photo, H×W×3 uint8 (EXIF-rotated, RGB)."""
    crop_params: np.ndarray
    """(cx, cy, side) of the face crop in photo pixels."""
    crop: np.ndarray
    """S×S×3 uint8 face crop at the face model's resolution."""
    latent: object
    """``FaceLatent`` (batch 1) on the device."""
    distance: float | None
    """Measured normalised head distance (None without face tracking)."""


class FrameStream:
    """Iterator of uint8 frame batches ``n×H×W×3`` (as decode batches finish) with timing.

    After (or during) iteration: ``frames`` so far, ``first_frame_s`` (seconds from the start of iteration to
    the first frame: audio features, the first motion window, one decode batch; the portrait is already
    encoded), ``first_frame_after_audio_s`` (from the first audio samples' arrival: the live latency),
    ``elapsed_s``, ``fps`` (frames per second of wall time overall) and ``steady_fps`` (after the
    first frame), ``motion`` (list of per-window T×M arrays when ``keep_motion``).
    """

    def __init__(self, gen_factory, keep_motion: bool = False):
        self._factory = gen_factory
        self.keep_motion = keep_motion
        self.motion: list[np.ndarray] = []
        self.frames = 0
        self.first_frame_s: float | None = None
        self.elapsed_s = 0.0
        self._t0: float | None = None
        self._t_first: float | None = None
        self.audio_t0: float | None = None  # when the first audio samples arrived (set by Animator.frames)

    def __iter__(self) -> Iterator[np.ndarray]:
        self._t0 = time.perf_counter()
        for batch in self._factory(self):
            now = time.perf_counter()
            if self.first_frame_s is None:
                self.first_frame_s, self._t_first = now - self._t0, now
            self.frames += len(batch)
            self.elapsed_s = now - self._t0
            yield batch
        self.elapsed_s = time.perf_counter() - self._t0

    @property
    def first_frame_after_audio_s(self) -> float | None:
        """Seconds from the arrival of the first audio samples to the first frame (live latency)."""
        if self._t_first is None or self.audio_t0 is None:
            return None
        return self._t_first - self.audio_t0

    @property
    def fps(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def steady_fps(self) -> float:
        if self._t_first is None or self._t0 is None:
            return 0.0
        dt = self._t0 + self.elapsed_s - self._t_first
        return (self.frames - 1) / dt if dt > 0 else 0.0
