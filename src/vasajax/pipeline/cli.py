"""``vasajax animate``: portrait + speech file (or live PCM on stdin) → watermarked, tagged h264 + AAC mp4.

The audio is decoded to a temporary 16 kHz wav first (bounded memory, any container ffmpeg reads), the frames go
straight from :meth:`Animator.frames` into ``media.VideoWriter`` (atomic: nothing is left at ``--out`` on
failure), so an hour of audio runs in flat memory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from vasajax import c2pa_manifest, media, provenance
from vasajax.errors import UserError
from vasajax.image import load_image
from vasajax.load import resolve_checkpoint
from vasajax.motion.audio import num_video_frames
from vasajax.pipeline.animator import LIVE_FIRST_WINDOW, Animator
from vasajax.pipeline.audio_input import CHUNK_S, SAMPLE_RATE, decode_audio_to_wav, pad_wav_to_frames, pcm_chunks


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
        with (
            bar,
            media.VideoWriter(
                out, fps=anim.fps, audio=track, crf=args.crf, metadata=dict(provenance.metadata_tag())
            ) as w,
        ):
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
