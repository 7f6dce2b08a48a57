"""Talking-face video from one portrait and a speech clip: VASA-1 §3.3 "Talking face video generation".

DESIGN.md stage 3; the paper's speed claim (abstract, §1: 512² at up to 40 fps online with negligible starting
latency; project page: 45 fps offline, 170 ms start latency on an RTX 4090) is what streaming aims at.
``Animator`` runs, for one portrait photo and one audio clip:

1. **The crop** — MediaPipe finds the face (several: the largest, with a warning) and cuts the same square
   face crop the models were trained on (``facetrack.crop.crop_params`` / ``apply_crop`` with the export's
   ``CropConfig``), at the face model's resolution.
2. **Encode once** — the stage-1 encoders give the canonical appearance volume, the identity code and the
   portrait's own pose/dynamics (one jitted call).
3. **Motion** — audio is decoded in chunks (``media.iter_audio`` → a temporary wav; or any iterable of
   16 kHz chunks), turned into per-frame features incrementally (``LogMelStream``), and fed to
   ``motion.generate.MotionStream``, which samples one sliding window of W frames at a time with the
   controls gaze g, head distance d, emotion e and classifier-free guidance (eq. 2).
4. **Decode** — each finished window is decoded in fixed-size jitted batches (one shape, padded at the end)
   with the portrait's appearance and identity and the generated pose/dynamics; frames are optionally
   resized or pasted back into the photo (feathered, ``facetrack.crop.paste_crop``), watermarked
   (``provenance.embed``) and handed out as soon as their batch is done.

Offline (``animate``) and streaming (``stream``) are the same code path: ``animate`` is ``stream`` collected,
so the frames are identical for one seed whatever the audio chunking (window ``i`` uses the key
``fold_in(key(seed), i)``, log-mel features do not depend on chunk boundaries). Device memory is bounded by
one window and one decode batch; host memory by one window of frames, so an hour of audio streams through
``vasajax animate`` in flat memory (``animate()`` itself returns every frame: use ``stream`` for long audio).
The video has ``num_video_frames(samples) = ⌈samples·fps/16000⌉`` frames: its duration is the audio's
rounded up to a whole frame.

**Pose: relative to the portrait.** The DiT generates head pose in its training data's pose space, whose mean
is the DiT's ``motion_mean``. We decode with ``pose = portrait_pose + (generated_pose − motion_mean[:6])``:
the generated head *movement* is applied around the portrait's own pose, so a subject photographed turned
or tilted keeps that framing, and a perfectly average generated pose reproduces the photo's. Dynamics
(lips, eyes, expression) are absolute: they are what the audio drives. ``pose="absolute"`` decodes the
generated pose as is (for a model and portrait from the same data distribution; useful in evaluation).

**Start: from the portrait.** The DiT is not conditioned on who is speaking, and a motion latent trained at small
scale also carries some of its face's layout (eye spacing, mouth width), so a first window sampled with no
context (∅, as the DiT's clip starts were in training) may start from another face's dynamics, which the
decoder then imposes on the portrait. ``start="portrait"`` (default) primes the first window's context with the
portrait's own motion held over K frames of silence (``MotionStream(context_motion=..., context_audio=...)``),
so the clip continues from the photo as a training clip continues from its lead-in; ``start="free"`` is the
unprimed sampling.

**Controls and their defaults.** ``gaze`` (θ, φ) radians in camera space, default (0, 0) = looking into the
camera; ``distance`` default: the export's ``conditions["distance"]`` (training mean) when recorded, else the
portrait's measured head distance (or ∅ for ``crop="center"``); ``emotion``: a name (``neutral``, ``happy``,
``sad``, ``surprised``, ``angry``; the export's ``conditions["emotions"]`` take precedence), a vector of the
DiT's ``emotion_dim`` values, ``"name=value,..."`` over the 52 blendshape names, or None (∅). ``neutral``
defaults to ∅, i.e. the learned null: the model's average expression. ``cfg_audio``/``cfg_gaze`` are λ_A and
λ_g of eq. 2 (default: the export's ``DiffusionConfig``, the paper's 0.5 and 1.0); ``steps`` the sampling
steps. Real-time streaming has an algorithmic latency of one window (W/fps seconds of audio must have
arrived before the first window is sampled) on top of the compute latency that ``FrameStream`` measures.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from vasajax import c2pa_manifest, media, provenance
from vasajax.errors import UserError
from vasajax.facetrack.crop import apply_crop, crop_params, paste_crop
from vasajax.facetrack.labels import head_distance
from vasajax.facetrack.tracker import track_image
from vasajax.image import MIN_IMAGE_SIDE, load_image, to_uint8_rgb
from vasajax.load import Stages, load_stages
from vasajax.motion.audio import num_video_frames
from vasajax.motion.emotion import BLENDSHAPE_EMOTIONS, emotion_vector  # noqa: F401 (re-exported)

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "demo"
"""The shipped demo checkpoint (``$VASAJAX_CHECKPOINT`` overrides it)."""
SAMPLE_RATE = 16_000
"""Audio rate of every waveform in the pipeline."""
CHUNK_S = 10.0
"""Seconds of audio read per chunk from a file (bounded memory)."""
SILENT_DBFS = -60.0
"""Audio whose RMS level is under this (dB relative to full scale) is warned about as silent."""


# ---------------------------------------------------------------------------------------------- results


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
        with media.VideoWriter(path, fps=self.fps, audio=audio, crf=crf, metadata=_provenance_tag()) as w:
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


# ---------------------------------------------------------------------------------------------- helpers


def _provenance_tag() -> dict[str, str]:
    return dict(provenance.metadata_tag())


def _watermark(frames_BxHxWx3: np.ndarray) -> np.ndarray:
    return provenance.embed(frames_BxHxWx3)


def resolve_checkpoint(path: str | os.PathLike | None) -> Path:
    """``path``, else ``$VASAJAX_CHECKPOINT``, else the shipped demo checkpoint; must exist."""
    if path is None:
        path = os.environ.get("VASAJAX_CHECKPOINT") or DEFAULT_CHECKPOINT
        if not Path(path).is_dir():
            raise UserError(
                f"no checkpoint at {path} (the demo checkpoint is not installed); pass --checkpoint DIR "
                "with an export made by vasajax.checkpoint_export.save_export"
            )
    return Path(path).expanduser()


def _audio_chunks(audio, chunk_s: float = CHUNK_S) -> Iterator[np.ndarray]:
    """16 kHz mono float32 chunks from a path (streamed by ``media.iter_audio``) or an array."""
    if isinstance(audio, (str, os.PathLike)):
        yield from media.iter_audio(audio, chunk_s=chunk_s)
        return
    a = np.asarray(audio, np.float32)
    if a.ndim != 1:
        raise UserError(f"audio must be 1-D mono samples at 16 kHz; got shape {a.shape}")
    if a.size == 0:
        raise UserError("audio has no samples")
    if not np.all(np.isfinite(a)):
        raise UserError("audio contains NaN or infinite samples")
    n = max(1, int(chunk_s * SAMPLE_RATE))
    for i in range(0, a.size, n):
        yield a[i : i + n]


def decode_audio_to_wav(audio_path: str | os.PathLike, wav_path: str | os.PathLike, *, chunk_s: float = CHUNK_S) -> int:
    """Decode any audio file to a 16 kHz mono float32 wav in chunks (bounded memory); returns its samples.
    Silent audio (RMS under ``SILENT_DBFS``: a muted microphone, a wrong input) is used with a warning."""
    energy = 0.0

    def checked() -> Iterator[np.ndarray]:
        nonlocal energy
        for chunk in _audio_chunks(audio_path, chunk_s):
            if not np.all(np.isfinite(chunk)):
                raise UserError(f"audio {audio_path} contains NaN or infinite samples")
            energy += float(np.sum(np.square(chunk, dtype=np.float64)))
            yield chunk

    n = media.write_wav(wav_path, checked())
    rms_dbfs = 10 * np.log10(max(energy / max(n, 1), 1e-20))
    if n and rms_dbfs < SILENT_DBFS:
        warnings.warn(
            f"the audio is silent ({rms_dbfs:.0f} dBFS): the face will not talk; check the recording", stacklevel=2
        )
    return n


def pad_wav_to_frames(wav_path: str | os.PathLike, num_samples: int, fps: float) -> None:
    """Append silence to a wav up to a whole number of video frames (``pad_to_frames``): the features do
    not change (samples past the end count as silence) and the mp4's last frame keeps its sound (the muxer
    cuts the video at the end of the audio)."""
    media.append_silence(wav_path, pad_to_frames(num_samples, fps) - num_samples)


def pad_to_frames(num_samples: int, fps: float) -> int:
    """Samples spanned by the ``num_video_frames`` frames that cover ``num_samples`` (≥ ``num_samples``)."""
    T = num_video_frames(num_samples, fps, SAMPLE_RATE)
    return max(num_samples, math.ceil(T * SAMPLE_RATE / fps - 1e-9))


def relative_pose_offset(portrait_pose, mean_pose) -> np.ndarray:
    """What is added to every generated pose so the head moves around the portrait's own pose:
    ``portrait_pose − mean_pose`` (see "Pose: relative to the portrait" above); ``mean_pose`` may be longer
    (a whole motion mean): its first ``len(portrait_pose)`` values are used."""
    p = np.asarray(portrait_pose, np.float32).reshape(-1)
    return p - np.asarray(mean_pose, np.float32).reshape(-1)[: p.size]


SOFT_FACE = 0.8
"""A face crop smaller than this fraction of the model's resolution gets a warning (upscaled: a soft video)."""

LIVE_FIRST_WINDOW = 4
"""Frames of speech (160 ms at 25 fps) live mode waits for before it samples the first motion window."""


def pcm_chunks(stream, chunk_ms: float = 20.0) -> Iterator[np.ndarray]:
    """Raw 16 kHz mono s16le PCM from a binary stream (stdin, a socket's file) as it arrives → float32 chunks
    of at most ``chunk_ms``; ends at end of stream. Reads what is available (``read1``): a live source is never
    waited on for a full chunk."""
    size = max(2, int(SAMPLE_RATE * chunk_ms / 1000) * 2)
    read = getattr(stream, "read1", stream.read)
    carry = b""
    while data := read(size):
        data = carry + data
        cut = len(data) - len(data) % 2
        carry = data[cut:]
        if cut:
            yield np.frombuffer(data[:cut], "<i2").astype(np.float32) / 32768.0


# ---------------------------------------------------------------------------------------------- Animator


class Animator:
    """Portrait + speech → talking-face frames (see the module docstring).

    >>> anim = Animator.from_pretrained("checkpoints/demo")
    >>> video = anim.animate("me.jpg", "hello.wav", seed=0)
    >>> video.save("me.mp4")
    >>> for frames in anim.stream("me.jpg", chunks):     # chunks: iterable of 16 kHz float32 arrays
    ...     show(frames)
    """

    def __init__(self, stages: Stages, *, decode_batch: int = 8):
        """``stages``: a renderer, a motion generator and an audio encoder (``vasajax.load.Stages``; any registered
        entries whose motion spaces agree, ``vasajax.stages``)."""
        self.stages = stages
        self.renderer, self.generator, self.audio = stages.renderer, stages.generator, stages.audio
        if int(decode_batch) < 1:
            raise UserError(f"decode_batch must be ≥ 1, got {decode_batch}")
        self.decode_batch = int(decode_batch)
        self.fps = float(self.audio.fps)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike | None = None, *, decode_batch: int = 8, expect: dict | None = None
    ) -> Animator:
        """Load an export folder (``vasajax.load``); None = the shipped demo checkpoint."""
        return cls(load_stages(resolve_checkpoint(path), expect=expect), decode_batch=decode_batch)

    # VASA-1's parts, for notebooks and evaluation that look inside them (None for other stages)
    @property
    def export(self):
        """The loaded VASA export (configs and both models), or None for other stages."""
        return self.stages.export

    @property
    def face_cfg(self):
        return getattr(self.renderer, "cfg", None)

    @property
    def motion_cfg(self):
        return getattr(self.generator, "cfg", None)

    @property
    def motion_model(self):
        return getattr(self.generator, "model", None)

    @property
    def audio_cfg(self):
        return getattr(self.audio, "cfg", None)

    @property
    def diffusion(self):
        """The generator's sampling defaults (``DiffusionConfig``) where it has them."""
        return getattr(self.generator, "diffusion", None)

    @property
    def crop_cfg(self):
        return self.renderer.crop

    # -- the portrait -----------------------------------------------------------------------------------
    def prepare(self, image, *, crop: str | Sequence[float] | None = None, face: int = 0) -> Portrait:
        """Load, crop and encode the portrait. ``crop``: None = find the face (MediaPipe,
        ``facetrack.tracker.find_faces``; ``face`` picks one, 0 = the largest); ``"center"`` = the image's central
        square as is (an already cropped portrait; no face tracking); or (cx, cy, side). A face smaller than the
        model's resolution is used with a warning (the video will be soft)."""

        if isinstance(image, (str, os.PathLike)):
            img = load_image(image)
        else:
            img = to_uint8_rgb(image, min_side=MIN_IMAGE_SIDE)
        distance = None
        if crop is None:
            obs = track_image(img, face=face)
            params = crop_params(obs.landmarks, self.renderer.crop)
            distance = head_distance(obs.landmarks, params)
            if params[2] < SOFT_FACE * self.renderer.image_size:
                warnings.warn(
                    f"the face crop is {params[2]:.0f} px, well under the model's {self.renderer.image_size} px: "
                    "it is upscaled and the video will be soft",
                    stacklevel=2,
                )
        elif isinstance(crop, str):
            if crop != "center":
                raise UserError(f"crop must be None, 'center' or (cx, cy, side), not {crop!r}")
            h, w = img.shape[:2]
            params = np.array([w / 2, h / 2, min(h, w)], np.float64)
        else:
            params = np.asarray(crop, np.float64).reshape(-1)
            if params.shape != (3,) or not np.all(np.isfinite(params)) or params[2] <= 0:
                raise UserError(f"crop must be (cx, cy, side) in photo pixels with side > 0, got {list(params)}")
        S = self.renderer.image_size
        crop_img = apply_crop(img, params, size=S, border=self.renderer.crop.border)
        latent = self.renderer.encode_portrait(crop_img[None])
        return Portrait(image=img, crop_params=params, crop=crop_img, latent=latent, distance=distance)

    # -- conditions --------------------------------------------------------------------------------------
    def _motion_stream(self, portrait: Portrait, *, seed, distance, **controls):
        """The generator's stream; ``distance="auto"``: the generator's recorded training mean, else the portrait's
        measured head distance."""
        if distance == "auto":
            distance = self.generator.conditions.get("distance", portrait.distance)
        return self.generator.stream(seed=int(seed), distance=distance, **controls)

    def pose_offset(self, portrait: Portrait, pose: str = "relative") -> np.ndarray:
        """What is added to every generated pose: ``relative_pose_offset`` for ``pose="relative"``, else zeros."""
        if pose not in ("relative", "absolute"):
            raise UserError(f"pose must be 'relative' or 'absolute', not {pose!r}")
        k = self.renderer.pose_dim
        if pose == "absolute":
            return np.zeros(k, np.float32)
        return relative_pose_offset(self.renderer.portrait_motion(portrait.latent)[:k], self.generator.mean_pose())

    def portrait_context(self, portrait: Portrait, pose: str = "relative") -> tuple[np.ndarray, np.ndarray]:
        """``(motion_M, audio_KxA)``, the first window's context for ``start="portrait"``: the portrait's motion
        (pose in the DiT's space, ``portrait_pose − pose_offset(portrait, pose)``) to be held over K frames, and the
        features of K frames of silence. Pass them to ``generate_motion(..., context_motion=, context_audio=)`` to
        reproduce the Animator's motion by hand."""
        motion_M = np.array(self.renderer.portrait_motion(portrait.latent), np.float32)
        k = self.renderer.pose_dim
        motion_M[:k] -= self.pose_offset(portrait, pose)
        K = self.generator.context
        silence = np.zeros(int(round(K * SAMPLE_RATE / self.fps)), np.float32)
        audio_KxA = self.audio.features(silence)[:K]
        if len(audio_KxA) < K:  # a rounding frame short: hold the last row
            audio_KxA = np.concatenate([audio_KxA, np.repeat(audio_KxA[-1:], K - len(audio_KxA), axis=0)])
        return motion_M, audio_KxA

    # -- frames --------------------------------------------------------------------------------------------
    def _output_geometry(self, portrait: Portrait, paste_back: bool, size: int | None):
        """Paste-back: (photo resized to the output, crop (cx, cy, side) in its pixels, None);
        otherwise (None, None, output side of the square crop frames)."""
        import cv2

        S = self.renderer.image_size
        if size is not None and (int(size) < 16 or int(size) % 2):
            raise UserError(f"size must be an even number of pixels ≥ 16, got {size}")
        if not paste_back:
            side = S if size is None else int(size)
            return None, None, side
        h, w = portrait.image.shape[:2]
        scale = 1.0 if size is None else int(size) / max(h, w)
        oh, ow = max(2, round(h * scale / 2) * 2), max(2, round(w * scale / 2) * 2)
        bg = portrait.image
        if (oh, ow) != (h, w):
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
            bg = cv2.resize(portrait.image, (ow, oh), interpolation=interp)
        cx, cy, side = portrait.crop_params
        sx, sy = ow / w, oh / h
        return bg, np.array([cx * sx, cy * sy, side * (sx + sy) / 2]), None

    def _decode_window(self, portrait: Portrait, motion_TxM: np.ndarray) -> Iterator[np.ndarray]:
        """Float frames in [0, 1] for one window of motion, in fixed-size jitted batches."""
        B = self.decode_batch
        for i in range(0, len(motion_TxM), B):
            m = motion_TxM[i : i + B]
            n = len(m)
            if n < B:  # one jit shape: pad by repeating the last frame, drop the padding after
                m = np.concatenate([m, np.repeat(m[-1:], B - n, axis=0)])
            yield self.renderer.render(portrait.latent, m)[:n]

    def _finish(self, frames_BxSxSx3: np.ndarray, bg, params, side) -> np.ndarray:
        """Float crops → uint8 output frames (resized or pasted back), watermarked."""
        import cv2

        crops = (np.clip(frames_BxSxSx3, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        if bg is None:
            if side != crops.shape[1]:
                interp = cv2.INTER_AREA if side < crops.shape[1] else cv2.INTER_CUBIC
                crops = np.stack([cv2.resize(c, (side, side), interpolation=interp) for c in crops])
            out = crops
        else:
            out = np.stack([paste_crop(bg, c, params) for c in crops])
        return _watermark(out)

    def frames(
        self,
        portrait: Portrait,
        audio_chunks: Iterable[np.ndarray],
        *,
        seed: int = 0,
        steps: int | None = None,
        gaze: Sequence[float] | None = (0.0, 0.0),
        distance: float | str | None = "auto",
        emotion: str | Sequence[float] | None = "neutral",
        cfg_audio: float | None = None,
        cfg_gaze: float | None = None,
        paste_back: bool = False,
        size: int | None = None,
        pose: str = "relative",
        keep_motion: bool = False,
        first_window: int | None = None,
        start: str = "portrait",
    ) -> FrameStream:
        """The core: a :class:`FrameStream` of watermarked uint8 frames for an encoded portrait and audio
        chunks (16 kHz mono float32, any sizes). Controls: see the module docstring. ``first_window`` (frames;
        live input, e.g. ``LIVE_FIRST_WINDOW``): sample the first motion window from that much audio instead of a
        whole window (``MotionStream``), so the first frame does not wait for W frames of speech. ``start``:
        ``"portrait"`` primes the first motion window with the portrait's own motion (see "Start: from the
        portrait"), ``"free"`` samples it with no context, like the DiT's own first windows in training."""
        offset = self.pose_offset(portrait, pose)
        k = len(offset)
        if start not in ("portrait", "free"):
            raise UserError(f"start must be 'portrait' or 'free', not {start!r}")
        context_motion = context_audio = None
        if start == "portrait" and self.generator.context:
            context_motion, context_audio = self.portrait_context(portrait, pose)
        stream = self._motion_stream(
            portrait, seed=seed, steps=steps, gaze=gaze, distance=distance, emotion=emotion,
            cfg_audio=cfg_audio, cfg_gaze=cfg_gaze, first_window=first_window,
            context_motion=context_motion, context_audio=context_audio,
        )  # fmt: skip
        bg, params, side = self._output_geometry(portrait, paste_back, size)
        audio = self.audio

        def features(frame_stream: FrameStream) -> Iterator[np.ndarray]:
            fs = audio.stream()  # streaming-exact for log-mel; wav2vec2's takes the whole clip, then emits
            for chunk in audio_chunks:
                if frame_stream.audio_t0 is None and np.size(chunk):
                    frame_stream.audio_t0 = time.perf_counter()
                a = np.asarray(chunk, np.float32).reshape(-1)
                if not np.all(np.isfinite(a)):
                    raise UserError("audio contains NaN or infinite samples")
                out = fs.push(a)
                if len(out):
                    yield out
            if fs.num_samples == 0:
                raise UserError("audio has no samples")
            out = fs.finish()
            if len(out):
                yield out

        def generate(fs: FrameStream) -> Iterator[np.ndarray]:
            def windows():
                for feats_TxA in features(fs):
                    yield from stream.push(feats_TxA)
                yield from stream.finish()

            for motion_1xTxM in windows():
                motion_TxM = np.array(motion_1xTxM[0], np.float32)
                motion_TxM[:, :k] += offset
                if fs.keep_motion:
                    fs.motion.append(motion_TxM)
                for batch in self._decode_window(portrait, motion_TxM):
                    yield self._finish(batch, bg, params, side)

        return FrameStream(generate, keep_motion=keep_motion)

    def warm_up(self, portrait: Portrait, **controls) -> float:
        """Compile what a stream with these controls runs (one motion window, one decode batch) on a fraction of a
        second of silence, so a live source's first frame does not wait for XLA. Returns the seconds it took."""
        t0 = time.perf_counter()
        silence = np.zeros(int(SAMPLE_RATE * 0.2), np.float32)
        for _ in self.frames(portrait, [silence], **controls):
            pass
        return time.perf_counter() - t0

    # -- public entry points -----------------------------------------------------------------------------
    def stream(self, image, audio_chunks, *, crop=None, face: int = 0, **controls) -> FrameStream:
        """Frames as windows complete: a :class:`FrameStream` (iterate it; it measures first-frame latency).

        ``audio_chunks``: an iterable of 16 kHz mono float32 arrays (e.g. from a microphone), or a path."""
        portrait = image if isinstance(image, Portrait) else self.prepare(image, crop=crop, face=face)
        if isinstance(audio_chunks, (str, os.PathLike)):
            audio_chunks = _audio_chunks(audio_chunks)
        return self.frames(portrait, audio_chunks, **controls)

    def animate(self, image, audio, *, crop=None, face: int = 0, **controls) -> Video:
        """The whole clip in memory: a :class:`Video` (frames, fps, audio, motion). ``audio``: a path or a
        16 kHz mono array. For long audio use :meth:`stream` or ``vasajax animate`` (flat memory)."""
        portrait = image if isinstance(image, Portrait) else self.prepare(image, crop=crop, face=face)
        wave = np.concatenate(list(_audio_chunks(audio)))
        fs = self.frames(portrait, _audio_chunks(wave), keep_motion=True, **controls)
        batches = list(fs)
        frames = np.concatenate(batches) if batches else np.zeros((0, 1, 1, 3), np.uint8)
        motion = np.concatenate(fs.motion) if fs.motion else np.zeros((0, self.renderer.motion_dim), np.float32)
        return Video(frames=frames, fps=self.fps, audio=wave, motion=motion)


# ---------------------------------------------------------------------------------------------- CLI


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vasajax animate", description="Animate a portrait photo with a speech clip (h264 + AAC mp4)."
    )
    p.add_argument("--image", required=True, help="portrait photo (PNG, JPEG, ...; one clearly visible face)")
    p.add_argument("--audio", required=True,
                   help="speech (wav, mp3, m4a, flac, ogg, or a video's sound); '-' = live raw 16 kHz mono s16le "
                        "PCM on stdin, animated as it arrives (implies --live)")  # fmt: skip
    p.add_argument("--out", required=True, help="output .mp4 (written atomically)")
    p.add_argument("--checkpoint", help="export folder (default: $VASAJAX_CHECKPOINT or checkpoints/demo)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed → same video)")
    p.add_argument("--steps", type=int, help="diffusion sampling steps (default: the checkpoint's)")
    p.add_argument("--gaze", type=float, nargs=2, metavar=("THETA", "PHI"), default=(0.0, 0.0),
                   help="main gaze direction in radians, camera space (default 0 0 = into the camera)")  # fmt: skip
    p.add_argument("--distance", type=float, help="normalised head distance (default: training mean / photo)")
    p.add_argument("--emotion", default="neutral",
                   help="neutral, happy, sad, surprised, angry; or comma-separated values; or name=value")  # fmt: skip
    p.add_argument("--cfg-audio", type=float, help="CFG scale of the audio (default: the paper's 0.5)")
    p.add_argument("--cfg-gaze", type=float, help="CFG scale of the gaze (default: the paper's 1.0)")
    p.add_argument("--paste-back", action="store_true", help="paste the animated face back into the photo")
    p.add_argument("--size", type=int, help="output side in pixels (crop side, or the photo's longer side)")
    p.add_argument("--crop", choices=["auto", "center"], default="auto",
                   help="auto: find the face; center: the photo is already a face crop")  # fmt: skip
    p.add_argument("--face", type=int, default=0,
                   help="which face of a photo with several (0 = the largest; the warning numbers them)")  # fmt: skip
    p.add_argument("--crf", type=int, default=18, help="h264 quality (0-51, lower is better)")
    p.add_argument("--stream", action="store_true", help="streaming mode: print first-frame latency and steady fps")
    p.add_argument("--live", action="store_true",
                   help=f"sample the first motion window after {LIVE_FIRST_WINDOW} frames of speech, not a whole "
                        "window (live sources; windows shift, so the video differs from a run without it)")  # fmt: skip
    p.add_argument("--start", choices=("portrait", "free"), default="portrait",
                   help="first motion window: continue from the portrait's own motion (default) or sample it "
                        "with no context")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--c2pa", action="store_true",
                   help="also embed a signed C2PA manifest (needs the c2pa extra; your keys are created on first use "
                        "under $VASAJAX_C2PA_DIR or ~/.config/vasajax/c2pa)")  # fmt: skip
    return p


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``vasajax animate``; bad input raises ``UserError`` (the CLI prints one line and exits 2)."""
    args = parser().parse_args(argv)
    t_start = time.perf_counter()
    out = media.check_output_path(args.out)  # cheap checks first: output, image, audio, then the models
    if args.c2pa and not c2pa_manifest.available():
        raise UserError("--c2pa needs the c2pa extra: pip install 'vasajax[c2pa]' (or drop --c2pa)")
    load_image(args.image)
    ckpt = resolve_checkpoint(args.checkpoint)
    live = args.audio == "-"
    with tempfile.TemporaryDirectory(prefix="vasajax-animate-") as tmp:
        wav = Path(tmp) / "audio.wav"
        with warnings.catch_warnings(record=True) as heard:
            warnings.simplefilter("always")
            n = 0 if live else decode_audio_to_wav(args.audio, wav)
        anim = Animator.from_pretrained(ckpt)
        if not live:
            pad_wav_to_frames(wav, n, anim.fps)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            portrait = anim.prepare(args.image, crop=None if args.crop == "auto" else "center", face=args.face)
        for w in [*heard, *caught]:
            if issubclass(w.category, UserWarning):  # ours; not e.g. a library's ResourceWarning
                print(f"warning: {w.message}", file=sys.stderr)
        received: list[np.ndarray] = []

        def stdin_chunks() -> Iterator[np.ndarray]:
            for chunk in pcm_chunks(sys.stdin.buffer):
                received.append(chunk)
                yield chunk

        total = None if live else num_video_frames(n, anim.fps, SAMPLE_RATE)
        controls = dict(
            first_window=LIVE_FIRST_WINDOW if live or args.live else None,
            seed=args.seed, steps=args.steps, gaze=args.gaze, emotion=args.emotion, cfg_audio=args.cfg_audio,
            cfg_gaze=args.cfg_gaze, paste_back=args.paste_back, size=args.size,
            distance="auto" if args.distance is None else args.distance, start=args.start,
        )  # fmt: skip
        if live:  # compile before the first audio is read: the latency is then the model's, not XLA's
            warm_s = anim.warm_up(portrait, **controls)
            print(f"ready (compiled in {warm_s:.1f} s); reading 16 kHz s16le PCM from stdin", file=sys.stderr)
        fs = anim.frames(portrait, stdin_chunks() if live else media.iter_wav(wav, chunk_s=CHUNK_S), **controls)
        from tqdm import tqdm

        bar = tqdm(total=total, unit="frame", disable=args.no_progress, file=sys.stderr, dynamic_ncols=True)
        track = None if live else wav
        with bar, media.VideoWriter(out, fps=anim.fps, audio=track, crf=args.crf, metadata=_provenance_tag()) as w:
            for batch in fs:
                w.write(batch)
                bar.update(len(batch))
            if live:
                wave = np.concatenate(received)
                n = len(wave)
                w.set_audio(wave)
    if args.c2pa:
        c2pa_manifest.sign(out)
    secs = time.perf_counter() - t_start
    print(
        f"wrote {out}{' (C2PA-signed)' if args.c2pa else ''}: {fs.frames} frames, "
        f"{fs.frames / anim.fps:.2f} s of video at {anim.fps:g} fps in {secs:.1f} s "
        f"({fs.frames / max(secs, 1e-9):.2f} fps, {secs / max(n / SAMPLE_RATE, 1e-9):.2f} s "
        "per second of audio)"
    )
    if args.stream or live or args.live:
        after = fs.first_frame_after_audio_s
        since_audio = f" ({after:.3f} s after the first audio arrived)" if live and after is not None else ""
        print(f"stream: first frame after {fs.first_frame_s:.3f} s{since_audio}, steady {fs.steady_fps:.2f} fps")
    return 0
