"""Stage 3, the product: one portrait photo + speech → a watermarked talking-face video (VASA-1 §3.3).

One idea per file:

- ``animator.py`` — :class:`Animator`: crop and encode the portrait, stream motion windows from the audio,
  decode them in fixed-size batches, paste back and watermark (the whole method is in its docstring);
- ``results.py`` — what it hands out: :class:`Video`, :class:`Portrait`, :class:`FrameStream` (with the
  first-frame latency clock);
- ``audio_input.py`` — speech in: chunks from a file, an array or raw PCM, silence and NaN checks, padding
  to whole video frames;
- ``cli.py`` — ``vasajax animate``.

>>> from vasajax.pipeline import Animator
>>> Animator.from_pretrained().animate("me.jpg", "hello.wav").save("me.mp4")
"""

from vasajax.load import DEFAULT_CHECKPOINT, resolve_checkpoint
from vasajax.motion.emotion import BLENDSHAPE_EMOTIONS, emotion_vector
from vasajax.pipeline.animator import LIVE_FIRST_WINDOW, SOFT_FACE, Animator, relative_pose_offset
from vasajax.pipeline.audio_input import (
    CHUNK_S,
    SAMPLE_RATE,
    SILENT_DBFS,
    decode_audio_to_wav,
    iter_audio_chunks,
    pad_to_frames,
    pad_wav_to_frames,
    pcm_chunks,
)
from vasajax.pipeline.results import FrameStream, Portrait, Video

__all__ = [
    "BLENDSHAPE_EMOTIONS",
    "CHUNK_S",
    "DEFAULT_CHECKPOINT",
    "LIVE_FIRST_WINDOW",
    "SAMPLE_RATE",
    "SILENT_DBFS",
    "SOFT_FACE",
    "Animator",
    "FrameStream",
    "Portrait",
    "Video",
    "decode_audio_to_wav",
    "emotion_vector",
    "iter_audio_chunks",
    "pad_to_frames",
    "pad_wav_to_frames",
    "pcm_chunks",
    "relative_pose_offset",
    "resolve_checkpoint",
]
