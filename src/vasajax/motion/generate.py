"""Sliding-window motion generation, offline and streaming (VASA-1 §3.2 "sliding window", §3.3).

The audio features of a clip (one vector per video frame, T frames) are cut into consecutive windows of W
frames. Window 0 is sampled with X_pre/A_pre = ∅; window i > 0 is conditioned on the last K motion frames
generated for window i−1 and on their audio. The last window is usually short: its audio is zero-padded to
W and the padded frames are marked absent (``audio_mask`` False → the learned audio null, the same case the
trailing-audio dropout trains), and the padded motion frames are cut off. The output has exactly T frames.

One jitted function, ``sample_window``, samples every window (the first, the middle ones and the padded
last one have the same shapes; "context absent" is data, not a new trace), so device memory is bounded by
one window whatever the audio length, and each window's motion is copied to the host as soon as it is done.
The CFG scales are data too (``split_guidance``): changing λ_A or λ_g between clips never recompiles.

``MotionStream`` takes audio features in chunks of any size as they arrive and returns each window as soon
as it is sampled; ``stream_motion`` yields the windows of a whole clip; ``generate_motion`` concatenates
them. Window i always uses the key ``fold_in(key(seed), i)``, so streaming and offline produce identical
motion for one seed, whatever the chunking.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vasajax.errors import UserError
from vasajax.motion.diffusion import DiffusionConfig, sample
from vasajax.motion.dit import Conditions, CondNull, MotionDiT

ALWAYS_GUIDED = ("audio", "gaze")
"""Conditions whose CFG branch is kept whenever the condition is given, even at λ = 0: the two that VASA-1
guides (and whose default scales are nonzero), so turning their scales anywhere, 0 included, never recompiles."""


def split_guidance(dcfg: DiffusionConfig, given: dict[str, bool] | None = None) -> tuple[DiffusionConfig, jax.Array]:
    """``dcfg`` → (its static structure, its traced CFG scales).

    The structure has λ_c = 1 for every guided branch and 0 elsewhere; a branch exists for a condition that is
    given for the clip (``given``; default all) and either has λ_c ≠ 0 or is in ``ALWAYS_GUIDED``. The scales
    (one float32 per ``CONDITION_NAMES``) carry the actual λ values into :func:`sample_window`."""
    given = given or {}
    branch = {n: given.get(n, True) and (v != 0.0 or n in ALWAYS_GUIDED) for n, v in dcfg.guidance.items()}
    static = dataclasses.replace(dcfg, **{f"lambda_{n}": float(b) for n, b in branch.items()})
    scales = jnp.asarray([v if branch[n] else 0.0 for n, v in dcfg.guidance.items()], jnp.float32)
    return static, scales


@functools.partial(jax.jit, static_argnames=("graphdef", "dcfg"))
def sample_window(
    graphdef: nnx.GraphDef,
    state: nnx.State,
    cond: Conditions,
    rng: jax.Array,
    dcfg: DiffusionConfig,
    scales: jax.Array | None = None,
) -> jax.Array:
    """One window of raw (de-normalised) motion B×W×M, sampled with CFG (pure; jitted once per shape and
    guidance structure). ``scales`` (from :func:`split_guidance`): the CFG scales as data; None = ``dcfg``'s."""
    model = nnx.merge(graphdef, state)
    shape = (cond.audio_BxWxA.shape[0], model.cfg.window, model.cfg.motion_dim)
    return model.denormalize_motion(sample(model, cond, rng, dcfg, shape, scales=scales))


class MotionStream:
    """Streaming sliding-window generation: ``push`` audio features, receive finished motion windows.

    >>> stream = MotionStream(model, DiffusionConfig.paper(), seed=0)
    >>> for chunk_BxTxA in audio_chunks:          # any chunk sizes
    ...     for motion_BxWxM in stream.push(chunk_BxTxA):
    ...         render(motion_BxWxM)
    >>> for motion_BxTxM in stream.finish():      # the last, partial window (if any)
    ...     render(motion_BxTxM)

    ``gaze`` (B×2 or 2, radians), ``distance`` (B×1, B or scalar) and ``emotion`` (B×E or E) are fixed for
    the clip; None means ∅ (the learned null). Windows come back as float32 numpy arrays.
    ``use_context=False`` (ablation) samples every window with X_pre/A_pre = ∅, like the first.

    ``context_motion`` (M, K×M or B×K×M raw motion; one row is held for K frames) and ``context_audio`` (A, K×A or
    B×K×A features; default zeros): *prime* the first window with a context instead of ∅, as if the clip so far
    had been that motion over that audio. The animator primes with the portrait's own motion over silence, so the
    generated dynamics continue the portrait's face (its layout, its expression) rather than start from whatever
    face the DiT's training data averages to.

    ``first_window`` (live input): window 0 is sampled as soon as that many frames of audio have arrived (its
    later frames are marked absent, like a clip's padded tail) and only those frames come back; every later window
    is a full W frames, conditioned on the last K frames before it (left-padded by repeating the first frame when
    fewer exist). The first frame then waits for ``first_window`` frames of audio instead of W. Windows are shifted
    by ``W − first_window`` frames against the default, so the motion equals an offline run with the same
    ``first_window`` (``generate_motion(..., first_window=F)``), not one without it.
    """

    def __init__(
        self,
        model: MotionDiT,
        dcfg: DiffusionConfig,
        *,
        batch: int = 1,
        gaze=None,
        distance=None,
        emotion=None,
        seed: int = 0,
        use_context: bool = True,
        first_window: int | None = None,
        context_motion=None,
        context_audio=None,
    ):
        self.cfg = cfg = model.cfg
        self.use_context = use_context
        self.first_window = cfg.window if first_window is None else int(first_window)
        if not 1 <= self.first_window <= cfg.window:
            raise UserError(f"first_window must be in 1..{cfg.window} frames, got {first_window}")
        # A condition that is ∅ for the whole clip has H(C | c=∅) = H(C): its CFG branch changes nothing
        # (eq. 2 reduces to H(C)), so skip it and save a forward pass per step.
        given = dict(gaze=gaze, distance=distance, emotion=emotion)
        self.dcfg, self.scales = split_guidance(dcfg, {n: v is not None for n, v in given.items()})
        self.graphdef, self.state = nnx.split(model)
        self.batch = B = batch
        self.key = jax.random.key(seed)

        def clip_cond(value, dim, name):
            if value is None:
                return jnp.zeros((B, dim)), jnp.ones((B,), bool)
            v = np.asarray(value, np.float32)
            if v.size not in (dim, B * dim):
                raise UserError(f"{name} has shape {v.shape}; expected ({dim},) or ({B}, {dim})")
            return jnp.broadcast_to(v.reshape(-1, dim), (B, dim)), jnp.zeros((B,), bool)

        (self.gaze, self.gaze_null) = clip_cond(gaze, cfg.gaze_dim, "gaze")
        (self.distance, self.distance_null) = clip_cond(distance, cfg.distance_dim, "distance")
        (self.emotion, self.emotion_null) = clip_cond(emotion, cfg.emotion_dim, "emotion")
        self.pending_BxTxA = np.zeros((B, 0, cfg.audio_dim), np.float32)
        self.motion_pre_BxKxM = np.zeros((B, cfg.context, cfg.motion_dim), np.float32)
        self.audio_pre_BxKxA = np.zeros((B, cfg.context, cfg.audio_dim), np.float32)
        self.primed = context_motion is not None
        if self.primed:
            self.motion_pre_BxKxM = self._context(context_motion, cfg.motion_dim, "context_motion")
            if context_audio is not None:
                self.audio_pre_BxKxA = self._context(context_audio, cfg.audio_dim, "context_audio")
        self.windows_done = 0
        self.finished = False

    def _context(self, value, dim: int, name: str) -> np.ndarray:
        """A priming context (``dim``, K×dim or B×K×dim; one row is repeated K times) as B×K×dim."""
        B, K = self.batch, self.cfg.context
        v = np.asarray(value, np.float32)
        v = v.reshape(1, 1, dim) if v.shape == (dim,) else v
        v = v[None] if v.ndim == 2 else v
        if v.ndim != 3 or v.shape[2] != dim or v.shape[0] not in (1, B) or v.shape[1] not in (1, K):
            raise UserError(f"{name} has shape {np.shape(value)}; expected ({dim},), ({K}, {dim}) or ({B}, {K}, {dim})")
        if not np.all(np.isfinite(v)):
            raise UserError(f"{name} has NaN or infinite values")
        return np.ascontiguousarray(np.broadcast_to(v, (B, K, dim)))

    def _window(self, audio_BxWxA: np.ndarray, valid: int) -> np.ndarray:
        cfg, B, K = self.cfg, self.batch, self.cfg.context
        first = self.windows_done == 0 and not self.primed
        null = CondNull(
            audio=jnp.zeros((B,), bool),
            context=jnp.full((B,), first or K == 0 or not self.use_context),
            gaze=self.gaze_null,
            distance=self.distance_null,
            emotion=self.emotion_null,
        )
        mask_BxW = np.broadcast_to(np.arange(cfg.window) < valid, (B, cfg.window))
        cond = Conditions(
            audio_BxWxA, mask_BxW, self.motion_pre_BxKxM, self.audio_pre_BxKxA,
            self.gaze, self.distance, self.emotion, null,
        )  # fmt: skip
        rng = jax.random.fold_in(self.key, self.windows_done)
        motion_BxWxM = np.asarray(sample_window(self.graphdef, self.state, cond, rng, self.dcfg, self.scales))
        if K:  # the last K frames actually generated (a short first window is left-padded)
            m, a = motion_BxWxM[:, max(0, valid - K) : valid], audio_BxWxA[:, max(0, valid - K) : valid]
            if valid < K:
                m = np.concatenate([np.repeat(m[:, :1], K - valid, axis=1), m], axis=1)
                a = np.concatenate([np.zeros((B, K - valid, cfg.audio_dim), np.float32), a], axis=1)
            self.motion_pre_BxKxM, self.audio_pre_BxKxA = m, a
        self.windows_done += 1
        return motion_BxWxM[:, :valid]

    def push(self, audio_BxTxA) -> list[np.ndarray]:
        """Add T frames of audio features (B×T×A or T×A); return the windows this completed (B×W×M each)."""
        if self.finished:
            raise UserError("MotionStream.push after finish(); start a new MotionStream for a new clip")
        a = np.asarray(audio_BxTxA, np.float32)
        a = a[None] if a.ndim == 2 else a
        if a.ndim != 3 or a.shape[0] != self.batch or a.shape[2] != self.cfg.audio_dim:
            raise UserError(
                f"audio features have shape {a.shape}; expected ({self.batch}, T, {self.cfg.audio_dim}) "
                "(one feature vector per video frame)"
            )
        self.pending_BxTxA = np.concatenate([self.pending_BxTxA, a], axis=1)
        out, W = [], self.cfg.window
        while self.pending_BxTxA.shape[1] >= (need := self.first_window if self.windows_done == 0 else W):
            chunk, self.pending_BxTxA = self.pending_BxTxA[:, :need], self.pending_BxTxA[:, need:]
            out.append(self._window(self._pad(chunk), need))
        return out

    def _pad(self, chunk_BxTxA: np.ndarray) -> np.ndarray:
        """Zero-pad audio features to W frames (the padded frames are masked out by ``_window``'s ``valid``)."""
        pad = np.zeros((self.batch, self.cfg.window - chunk_BxTxA.shape[1], self.cfg.audio_dim), np.float32)
        return np.concatenate([chunk_BxTxA, pad], axis=1)

    def finish(self) -> list[np.ndarray]:
        """End of audio: sample the last partial window (padded + masked), if frames remain."""
        self.finished = True
        T = self.pending_BxTxA.shape[1]
        if T == 0:
            return []
        return [self._window(self._pad(self.pending_BxTxA), T)]


def stream_motion(
    model: MotionDiT,
    audio_BxTxA,
    dcfg: DiffusionConfig,
    *,
    gaze=None,
    distance=None,
    emotion=None,
    seed: int = 0,
    use_context: bool = True,
    first_window: int | None = None,
    context_motion=None,
    context_audio=None,
) -> Iterator[np.ndarray]:
    """Yield motion window by window (B×W×M; the first (``first_window``) and last ones may be shorter) for a
    whole clip's audio features. ``context_motion``/``context_audio``: prime the first window (``MotionStream``)."""
    a = np.asarray(audio_BxTxA, np.float32)
    a = a[None] if a.ndim == 2 else a
    stream = MotionStream(
        model, dcfg, batch=a.shape[0], gaze=gaze, distance=distance, emotion=emotion, seed=seed,
        use_context=use_context, first_window=first_window, context_motion=context_motion,
        context_audio=context_audio,
    )  # fmt: skip
    W = model.cfg.window
    for start in range(0, a.shape[1], W):
        yield from stream.push(a[:, start : start + W])
    yield from stream.finish()


def generate_motion(
    model: MotionDiT,
    audio_BxTxA,
    dcfg: DiffusionConfig,
    *,
    gaze=None,
    distance=None,
    emotion=None,
    seed: int = 0,
    use_context: bool = True,
    first_window: int | None = None,
    context_motion=None,
    context_audio=None,
) -> np.ndarray:
    """Motion B×T×M (raw latent space) for audio features B×T×A (or T×A → 1×T×M), T video frames.
    ``context_motion``/``context_audio``: prime the first window (``MotionStream``; the Animator's
    ``portrait_context``)."""
    a = np.asarray(audio_BxTxA, np.float32)
    a = a[None] if a.ndim == 2 else a
    kw = dict(
        gaze=gaze, distance=distance, emotion=emotion, seed=seed, use_context=use_context, first_window=first_window,
        context_motion=context_motion, context_audio=context_audio,
    )  # fmt: skip
    windows = list(stream_motion(model, a, dcfg, **kw))
    if not windows:
        return np.zeros((a.shape[0], 0, model.cfg.motion_dim), np.float32)
    return np.concatenate(windows, axis=1)
