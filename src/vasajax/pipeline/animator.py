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

import os
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence

import cv2
import numpy as np

from vasajax import provenance
from vasajax.errors import UserError
from vasajax.facetrack.crop import apply_crop, crop_params, paste_crop
from vasajax.facetrack.labels import head_distance
from vasajax.facetrack.tracker import track_image
from vasajax.image import MIN_IMAGE_SIDE, load_image, to_uint8_rgb
from vasajax.load import Stages, load_stages, resolve_checkpoint
from vasajax.pipeline.audio_input import SAMPLE_RATE, iter_audio_chunks
from vasajax.pipeline.results import FrameStream, Portrait, Video

SOFT_FACE = 0.8
"""A face crop smaller than this fraction of the model's resolution gets a warning (upscaled: a soft video)."""

LIVE_FIRST_WINDOW = 4
"""Frames of speech (160 ms at 25 fps) live mode waits for before it samples the first motion window."""


def relative_pose_offset(portrait_pose, mean_pose) -> np.ndarray:
    """What is added to every generated pose so the head moves around the portrait's own pose:
    ``portrait_pose − mean_pose`` (see "Pose: relative to the portrait" above); ``mean_pose`` may be longer
    (a whole motion mean): its first ``len(portrait_pose)`` values are used."""
    p = np.asarray(portrait_pose, np.float32).reshape(-1)
    return p - np.asarray(mean_pose, np.float32).reshape(-1)[: p.size]


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
        crops = (np.clip(frames_BxSxSx3, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        if bg is None:
            if side != crops.shape[1]:
                interp = cv2.INTER_AREA if side < crops.shape[1] else cv2.INTER_CUBIC
                crops = np.stack([cv2.resize(c, (side, side), interpolation=interp) for c in crops])
            out = crops
        else:
            out = np.stack([paste_crop(bg, c, params) for c in crops])
        return provenance.embed(out)

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
            audio_chunks = iter_audio_chunks(audio_chunks)
        return self.frames(portrait, audio_chunks, **controls)

    def animate(self, image, audio, *, crop=None, face: int = 0, **controls) -> Video:
        """The whole clip in memory: a :class:`Video` (frames, fps, audio, motion). ``audio``: a path or a
        16 kHz mono array. For long audio use :meth:`stream` or ``vasajax animate`` (flat memory)."""
        portrait = image if isinstance(image, Portrait) else self.prepare(image, crop=crop, face=face)
        wave = np.concatenate(list(iter_audio_chunks(audio)))
        fs = self.frames(portrait, iter_audio_chunks(wave), keep_motion=True, **controls)
        batches = list(fs)
        frames = np.concatenate(batches) if batches else np.zeros((0, 1, 1, 3), np.uint8)
        motion = np.concatenate(fs.motion) if fs.motion else np.zeros((0, self.renderer.motion_dim), np.float32)
        return Video(frames=frames, fps=self.fps, audio=wave, motion=motion)


# ---------------------------------------------------------------------------------------------- CLI
