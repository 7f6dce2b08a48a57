"""Speech into the pipeline: 16 kHz mono float32 chunks from a file, an array or a raw PCM stream, and the
padding that makes a clip a whole number of video frames.

Decoding itself is ``vasajax.media``'s (``iter_audio``, ``write_wav``); this module adds the pipeline's checks
(no samples, NaN, silence) and the frame arithmetic of ``num_video_frames``.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator

import numpy as np

from vasajax import media
from vasajax.errors import UserError
from vasajax.motion.audio import num_video_frames

SAMPLE_RATE = 16_000
"""Audio rate of every waveform in the pipeline."""
CHUNK_S = 10.0
"""Seconds of audio read per chunk from a file (bounded memory)."""
SILENT_DBFS = -60.0
"""Audio whose RMS level is under this (dB relative to full scale) is warned about as silent."""


def iter_audio_chunks(audio, chunk_s: float = CHUNK_S) -> Iterator[np.ndarray]:
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
        for chunk in iter_audio_chunks(audio_path, chunk_s):
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
