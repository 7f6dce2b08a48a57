"""``vasajax app``: the pipeline in a local web page.

Drop a portrait, record or upload speech, pick the checkpoint, emotion, gaze and the CFG scales of VASA-1 eq. 2,
and watch the frames appear while they are generated; the page then plays the mp4 and offers it for download. It
is the file ``vasajax animate`` writes: same frames for the same seed, watermark and metadata tag (``vasajax
detect`` finds them). Bad input shows the CLI's one-line ``error:`` message in the page's status box.

The module is glue over :mod:`vasajax.pipeline` (``Animator.prepare`` / ``stream``, ``media.VideoWriter``) and
Gradio, the browser front end this ecosystem's users know (LivePortrait, SadTalker, Hallo ship one). The preview
is a picture updated as frames are made, not Gradio's streaming video: that one needs a system ffmpeg and ffprobe
and plays HLS, which stalls whenever generation runs below real time (the demo checkpoint makes ~6 frames/s on
a 2-core CPU); the finished mp4 then plays with its sound.

The server binds to 127.0.0.1; ``--host 0.0.0.0`` shares it on the network, without any authentication.
"""

from __future__ import annotations

import argparse
import functools
import math
import queue
import tempfile
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from vasajax import load, media, pipeline, provenance
from vasajax.errors import UserError
from vasajax.image import PORTRAITS, load_image
from vasajax.motion.audio import num_video_frames

PREVIEW_FPS = 12.0
"""At most this many preview pictures a second are sent to the page."""
EMOTIONS = ["neutral", "happy", "sad", "surprised", "angry"]
_END = object()


@functools.lru_cache(maxsize=2)
def animator(checkpoint: str) -> pipeline.Animator:
    """The loaded export at ``checkpoint`` (the last two stay loaded, so a second run does not reload)."""
    return pipeline.Animator.from_pretrained(checkpoint)


def preview(batches: Iterable[np.ndarray], max_fps: float = PREVIEW_FPS) -> Iterator[np.ndarray]:
    """Frames to show while ``batches`` is consumed in a worker thread: each batch's frames spread over the time
    that batch took (at most ``max_fps`` a second), moving on to a newer batch as soon as it is there. Every batch
    is consumed whatever is shown; exceptions in the worker are raised here; closing this generator stops it."""
    q: queue.Queue = queue.Queue()
    stop = threading.Event()

    def work():
        try:
            for batch in batches:
                q.put(batch)
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as e:  # noqa: B036 (handed to the consumer)
            q.put(e)

    worker = threading.Thread(target=work, name="vasajax-app-generate", daemon=True)
    worker.start()
    try:
        last, item = time.perf_counter(), q.get()
        while item is not _END:
            if isinstance(item, BaseException):
                raise item
            now = time.perf_counter()
            step = max((now - last) / len(item), 1e-6)
            stride = max(1, math.ceil(1.0 / (max_fps * step)))
            last, nxt = now, None
            for frame in item[::stride]:
                yield frame
                try:
                    nxt = q.get(timeout=step * stride)
                    break
                except queue.Empty:
                    pass
            item = q.get() if nxt is None else nxt
    finally:
        stop.set()
        worker.join()


def generate(image, audio, checkpoint, emotion, theta, phi, cfg_audio, cfg_gaze, face, seed, paste_back, *, out_dir):
    """The page's one event. Yields (preview frame, status line, video, download) as the video is made.
    ``image``/``audio``: paths, or the page's upload records (``{"path": ...}``)."""
    image, audio = (x.get("path") if isinstance(x, dict) else x for x in (image, audio))
    try:
        if not image:
            raise UserError("no photo: drop a portrait photo (PNG, JPEG, ...) on the page")
        if not audio:
            raise UserError("no speech: record or upload a speech clip")
        load_image(image)  # cheap checks first, as the CLI does
        anim = animator(str(load.resolve_checkpoint(checkpoint or None)))
        yield None, "reading the photo and the speech...", None, None
        out = Path(tempfile.mkdtemp(dir=out_dir)) / f"{Path(image).stem}_talking.mp4"
        with tempfile.TemporaryDirectory(prefix="vasajax-app-") as tmp:
            wav = Path(tmp) / "audio.wav"
            with warnings.catch_warnings(record=True) as caught:  # silent audio, small face, several faces
                warnings.simplefilter("ignore")  # not other threads' ResourceWarnings and the like
                warnings.simplefilter("always", UserWarning)
                n = pipeline.decode_audio_to_wav(audio, wav)
                pipeline.pad_wav_to_frames(wav, n, anim.fps)
                portrait = anim.prepare(image, face=int(face or 0))
            notes = "".join(f"warning: {w.message}\n" for w in caught)
            controls = dict(
                seed=int(seed or 0), gaze=(float(theta), float(phi)), emotion=emotion or "neutral",
                cfg_audio=float(cfg_audio), cfg_gaze=float(cfg_gaze), paste_back=bool(paste_back),
            )  # fmt: skip
            fs = anim.stream(portrait, wav, **controls)
            total, t0 = num_video_frames(n, anim.fps, pipeline.SAMPLE_RATE), time.perf_counter()
            yield None, f"{notes}generating {total} frames...", None, None
            with media.VideoWriter(out, fps=anim.fps, audio=wav, metadata=provenance.metadata_tag()) as w:

                def written():
                    for batch in fs:
                        w.write(batch)
                        yield batch

                frame = None
                for frame in preview(written()):
                    yield frame, f"{notes}frame {fs.frames}/{total} ({fs.fps:.1f} frames/s)", None, None
        secs = time.perf_counter() - t0
        done = (
            f"{fs.frames} frames, {fs.frames / anim.fps:.2f} s of video at {anim.fps:g} fps in {secs:.1f} s "
            f"(first frame after {fs.first_frame_s:.2f} s, then {fs.steady_fps:.1f} frames/s); watermarked"
        )
        yield frame, notes + done, str(out), str(out)
    except UserError as e:
        yield None, f"error: {e}", None, None


def checkpoint_choices(default: str) -> list[str]:
    """``default`` and the other exports beside the shipped demo (``checkpoints/*/manifest.json``), relative to
    the working folder where they are inside it."""

    def short(path) -> str:
        path = Path(path).resolve()
        return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)

    found = sorted(short(p.parent) for p in load.DEFAULT_CHECKPOINT.parent.glob("*/manifest.json"))
    return list(dict.fromkeys([short(default), *found]))


def build(checkpoint: str | None = None):
    """The page (a ``gradio.Blocks``); ``checkpoint`` is the default export (None: as the CLI finds it)."""
    gr = _gradio()
    default = str(load.resolve_checkpoint(checkpoint))
    dcfg = animator(default).diffusion
    out_dir = tempfile.mkdtemp(prefix="vasajax-app-out-")
    choices = checkpoint_choices(default)
    with gr.Blocks(title="vasajax", analytics_enabled=False, delete_cache=(3600, 3600)) as page:
        gr.Markdown(
            "## vasajax: a photo and speech → a talking face\n"
            "A JAX reimplementation of VASA-1. Every video is watermarked and tagged as generated "
            "(`vasajax detect` finds it); use photos of people who agreed to it."
        )
        with gr.Row():
            with gr.Column():
                image = gr.Image(label="portrait photo", sources=["upload", "clipboard"], height=260, elem_id="image")
                audio = gr.Audio(label="speech", sources=["upload", "microphone"], elem_id="audio")
                ckpt = gr.Dropdown(choices, value=choices[0], label="checkpoint",
                                   allow_custom_value=True)  # fmt: skip
                emotion = gr.Dropdown(
                    EMOTIONS, value="neutral", label="emotion", allow_custom_value=True,
                    info="a name, comma-separated values, or blendshape=value,...",
                )  # fmt: skip
                with gr.Row():
                    theta = gr.Slider(-0.6, 0.6, value=0.0, step=0.05, label="gaze θ (rad, + = to the image's right)")
                    phi = gr.Slider(-0.6, 0.6, value=0.0, step=0.05, label="gaze φ (rad, + = up)")
                with gr.Row():
                    cfg_audio = gr.Slider(0.0, 3.0, value=dcfg.lambda_audio, step=0.1, label="CFG scale, audio λ_A")
                    cfg_gaze = gr.Slider(0.0, 3.0, value=dcfg.lambda_gaze, step=0.1, label="CFG scale, gaze λ_g")
                with gr.Row():
                    face = gr.Number(0, precision=0, minimum=0, label="face (0 = the largest)")
                    seed = gr.Number(0, precision=0, label="seed")
                    paste_back = gr.Checkbox(False, label="paste back into the photo", elem_id="paste")
                run = gr.Button("Animate", variant="primary", elem_id="run")
            with gr.Column():
                shown = gr.Image(label="preview: frames as they are made", interactive=False, format="jpeg", height=320,
                                 elem_id="preview")  # fmt: skip
                status = gr.Textbox(label="status", lines=2, interactive=False, elem_id="status")
                result = gr.Video(label="video", interactive=False, height=320, elem_id="video")
                download = gr.File(label="watermarked mp4", interactive=False, elem_id="download")
        inputs = [image, audio, ckpt, emotion, theta, phi, cfg_audio, cfg_gaze, face, seed, paste_back]
        # preprocess=False: the uploads arrive as they are and vasajax reads them, so a bad file gets the CLI's
        # message (gr.Image's own preprocessing would open the photo first and fail with PIL's)
        run.click(functools.partial(generate, out_dir=out_dir), inputs, [shown, status, result, download],
                  preprocess=False, concurrency_limit=1)  # fmt: skip
    return page


def _gradio():
    try:
        import gradio
    except ImportError:
        raise UserError("the app needs Gradio: pip install 'vasajax[app]'") from None
    return gradio


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vasajax app", description="A local web page for vasajax animate (Gradio).")
    p.add_argument("--checkpoint", help="default export folder (default: $VASAJAX_CHECKPOINT or checkpoints/demo)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--no-warm-up", action="store_true", help="do not compile the models before serving")
    return p


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``vasajax app``: serve the page until Ctrl-C."""
    args = parser().parse_args(argv)
    _gradio()
    page = build(args.checkpoint)
    if not args.no_warm_up:  # the first click then waits for the model, not for XLA
        anim = animator(str(load.resolve_checkpoint(args.checkpoint)))
        secs = anim.warm_up(anim.prepare(PORTRAITS["astronaut"], crop="center"))
        print(f"compiled in {secs:.1f} s")
    page.queue().launch(server_name=args.host, server_port=args.port, inbrowser=False, show_error=True)
    return 0
