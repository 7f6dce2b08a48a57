"""Media: every decode and encode of audio and video files in vasajax, and the only module that starts ffmpeg.

VASA-1 (Xu et al. 2024, §4 and the project page) delivers its results as mp4 video with the driving speech,
and learns from talking-face videos; this module is both ends (DESIGN.md "Video I/O"). Everything else gets
its media through it: the pipeline and the app (speech in, mp4 out), ``vasajax prep`` (frames and audio of
real videos), evaluation (frames of generated videos, their speech) and provenance (frames and tags). The
feature code (``vasajax.motion``) starts no processes: it takes the decoded arrays.

**Decoding.** ``read_audio`` / ``iter_audio``: any audio ffmpeg reads (any rate, mono or stereo, a video's
sound track) as mono float32 at 16 kHz; channels are averaged (ffmpeg with ``-rematrix_maxval 1``, so stereo
becomes (L+R)/2, the same as the soundfile fast path for wav/flac already at the rate). ``probe`` and
``read_metadata``: size, frame rate, duration, audio presence and the container tags, parsed from the stderr
of ``ffmpeg -i`` (the imageio-ffmpeg wheel has no ffprobe). ``iter_frames`` / ``read_frames``: RGB uint8
frames, optionally resampled to a frame rate (``-vf fps=N``) and resized; a container's rotation is applied
(as ffmpeg does) and reflected in ``probe``'s width and height. ``read_video``: frames, fps and audio.

**A file without an audio track.** One contract for every function that returns audio: it raises
:class:`NoAudioError` (a :class:`UserError`, so the CLI prints one line and exits 2). That covers a file with
no audio stream (a silent video, a picture) and an audio stream with no samples; the message is the one
line the CLI shows. Callers for which a silent video is not an error catch it (``vasajax prep`` counts the
video as ``no_audio``) or check ``probe(path).has_audio`` first. A file that is missing, empty or that ffmpeg
cannot read raises :class:`MediaError` (also a ``UserError``; ``NoAudioError`` is a ``MediaError``), so
batch jobs can skip bad files and still stop on other errors. Errors while writing are plain ``UserError``.

**Encoding.** :class:`VideoWriter` runs the bundled ffmpeg in two passes:

1. frames are piped in as raw RGB, one or a batch at a time (nothing is held in memory), and encoded to
   h264 yuv420p (``-crf``, ``-preset``) into a hidden temporary file *in the output folder*;
2. if there is audio, that file is muxed with the 16 kHz input audio: ``-c:v copy -c:a aac -shortest
   -movflags +faststart``, with the metadata tags, into a second temporary file;

then the result is renamed onto ``OUT`` (``os.replace``, atomic on one filesystem). On any error, Ctrl-C
included, the temporary files are removed and a file already at ``OUT`` is left untouched. We drive ffmpeg
with ``subprocess`` rather than ``imageio_ffmpeg.write_frames`` because that generator ignores ffmpeg's
exit status (a disk filling up while the index is written would go unnoticed) and sends its log to the
terminal; the executable is the same (``imageio_ffmpeg.get_ffmpeg_exe()``). ``write_wav`` / ``iter_wav`` /
``append_silence`` handle the pipeline's temporary 16 kHz wav (soundfile, in chunks: flat memory).

Metadata: the mp4 muxer of the bundled ffmpeg 9 keeps standard keys (``comment``, ``description``,
``title``, ...) through re-encodes and ``-c copy`` remuxes; any other key is written only with
``-movflags use_metadata_tags`` (done automatically) and is *dropped* by a later plain remux, so provenance
uses ``comment``.

``run_ffmpeg`` runs the bundled ffmpeg with any arguments (tests and benchmarks make and edit media with it).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import pathlib
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import IO

import numpy as np
import soundfile

from vasajax.errors import UserError

SAMPLE_RATE = 16_000
"""Audio rate of the pipeline (DESIGN.md): arrays passed as audio are 16 kHz mono float32."""

STANDARD_KEYS = frozenset(
    {"title", "artist", "album", "comment", "description", "genre", "copyright", "date", "synopsis", "composer"}
)
"""mp4 metadata keys the bundled ffmpeg writes as native atoms (and keeps through remuxing)."""

MIN_FREE_BYTES = 4 << 20
"""Refuse to start writing when the output folder's filesystem has less than this much space free."""

PathLike = str | os.PathLike


class MediaError(UserError):
    """A media file could not be read or decoded (missing, empty, not media, a decoder failure or timeout)."""


class NoAudioError(MediaError):
    """The file has no audio track, or its audio track has no samples."""


def ffmpeg_exe() -> str:
    """Path of the ffmpeg executable bundled with imageio-ffmpeg."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise UserError(
            "imageio-ffmpeg is not installed; `pip install imageio-ffmpeg` to read and write media"
        ) from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def _tail(text: str, n: int = 1) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) if lines else "no message"


def run_ffmpeg(*args: str | os.PathLike, timeout_s: float = 600.0) -> None:
    """Run the bundled ffmpeg as ``ffmpeg -y -nostdin -v error ARGS`` (make or edit a file; tests, benchmarks).

    Raises :class:`MediaError` with ffmpeg's last message when it fails or runs past ``timeout_s``."""
    cmd = [ffmpeg_exe(), "-y", "-nostdin", "-hide_banner", "-v", "error", *map(str, args)]
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise MediaError(f"ffmpeg took longer than {timeout_s:.0f} s: {' '.join(cmd[1:])}") from None
    if r.returncode != 0:
        raise MediaError(f"ffmpeg failed ({_tail(r.stderr.decode('utf-8', 'replace'))}): {' '.join(cmd[1:])}")


def check_output_path(path: PathLike, *, min_free_bytes: int = MIN_FREE_BYTES) -> pathlib.Path:
    """Check early that ``path`` can be written: its folder exists, is writable and has some space free.

    Raises a one-line :class:`UserError` otherwise; returns the path (user ``~`` expanded).
    """
    out = pathlib.Path(path).expanduser()
    folder = out.parent if str(out.parent) else pathlib.Path(".")
    if out.is_dir():
        raise UserError(f"output path {out} is a folder; give a file name such as {out / 'out.mp4'}")
    if not folder.is_dir():
        raise UserError(f"output folder {folder} does not exist; create it or choose another output path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"output folder {folder} is not writable; choose another output path")
    if out.exists() and not os.access(out, os.W_OK):
        raise UserError(f"output file {out} exists and is read-only; remove it or choose another output path")
    free = shutil.disk_usage(folder).free
    if free < min_free_bytes:
        raise UserError(f"only {free / 2**20:.1f} MiB free in {folder}; free some disk space or write elsewhere")
    return out


def _as_audio(audio: np.ndarray | PathLike | None) -> np.ndarray | pathlib.Path | None:
    if audio is None:
        return None
    if isinstance(audio, (str, os.PathLike)):
        p = pathlib.Path(audio)
        if not p.is_file():
            raise UserError(f"audio file {p} not found")
        return p
    a = np.asarray(audio)
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise UserError(f"audio must be mono (1-D samples at {SAMPLE_RATE} Hz); got an array of shape {a.shape}")
    if np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float32) / float(np.iinfo(a.dtype).max)
    return np.ascontiguousarray(a, dtype="<f4")


class VideoWriter:
    """Write frames to an mp4 (h264 yuv420p, optional AAC audio, metadata), atomically.

    Use as a context manager::

        with VideoWriter("out.mp4", fps=25, audio=wav_16k, metadata={"comment": "..."}) as w:
            for batch_BxHxWx3 in frames:      # uint8, or float in [0, 1]
                w.write(batch_BxHxWx3)        # or one H×W×3 frame at a time

    ``OUT`` appears only when the block exits without an exception; otherwise nothing is left behind and
    a pre-existing ``OUT`` is untouched. Odd frame sizes are padded by one edge row/column (yuv420p
    needs even sizes). Failures to write (folder missing or read-only, disk full) raise a one-line
    :class:`UserError`.
    """

    def __init__(
        self,
        path: PathLike,
        *,
        fps: float = 25.0,
        audio: np.ndarray | PathLike | None = None,
        crf: int = 18,
        preset: str = "veryfast",
        metadata: Mapping[str, str] | None = None,
    ):
        self.path = check_output_path(path)
        self.fps = float(fps)
        if not (self.fps > 0):
            raise ValueError(f"fps must be positive, got {fps}")
        if not 0 <= int(crf) <= 51:
            raise ValueError(f"crf must be in 0..51, got {crf}")
        self.crf, self.preset = int(crf), str(preset)
        self.metadata = {str(k): " ".join(str(v).split()) for k, v in (metadata or {}).items()}
        self._audio = _as_audio(audio)
        self.num_frames = 0
        self.size: tuple[int, int] | None = None  # (H, W) of the frames given
        self._proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None
        self._temps: list[pathlib.Path] = []
        self._done = False

    # -- temporary files --------------------------------------------------------------------------------

    def _temp(self, tag: str) -> pathlib.Path:
        fd, name = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=f".{tag}.mp4", dir=self.path.parent)
        os.close(fd)
        p = pathlib.Path(name)
        self._temps.append(p)
        return p

    def _cleanup(self) -> None:
        for p in self._temps:
            try:
                p.unlink()
            except FileNotFoundError:
                pass
            except OSError:
                pass
        self._temps.clear()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _log_text(self) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def _fail(self, what: str, err: BaseException | None = None) -> UserError:
        log = self._log_text()
        no_space = "No space left" in log or (isinstance(err, OSError) and err.errno == errno.ENOSPC)
        if no_space:
            return UserError(f"disk full while writing {self.path}; free some space or write elsewhere")
        if "File too large" in log or (isinstance(err, OSError) and err.errno == errno.EFBIG):
            return UserError(f"{self.path}: file too large for this filesystem or limit; write elsewhere")
        return UserError(f"could not write {self.path}: ffmpeg {what} failed ({_tail(log)})")

    # -- writing ----------------------------------------------------------------------------------------

    def _metadata_args(self) -> list[str]:
        args: list[str] = []
        for k, v in self.metadata.items():
            args += ["-metadata", f"{k}={v}"]
        flags = "+faststart" + ("+use_metadata_tags" if set(self.metadata) - STANDARD_KEYS else "")
        return args + ["-movflags", flags]

    def _start(self, h: int, w: int) -> None:
        self.size = (h, w)
        self._video_tmp = self._temp("video")
        self._log = tempfile.TemporaryFile()
        he, we = h + h % 2, w + w % 2
        cmd = [ffmpeg_exe(), "-y", "-nostdin", "-hide_banner", "-v", "error"]
        cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{we}x{he}", "-r", str(self.fps), "-i", "pipe:0"]
        cmd += ["-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", str(self.crf), "-preset", self.preset]
        if self._audio is None:
            cmd += self._metadata_args()
        cmd += ["-f", "mp4", str(self._video_tmp)]
        # Own session: Ctrl-C reaches Python, which stops ffmpeg and removes the temporary files.
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log, start_new_session=True
        )

    def write(self, frames: np.ndarray) -> None:
        """Append one frame (H×W×3) or a batch (B×H×W×3); uint8, or float in [0, 1]."""
        if self._done:
            raise RuntimeError("VideoWriter is closed")
        f = np.asarray(frames)
        if f.ndim == 3:
            f = f[None]
        if f.ndim != 4 or f.shape[-1] != 3:
            raise ValueError(f"frames must be H×W×3 or B×H×W×3 RGB, got shape {f.shape}")
        if f.dtype != np.uint8:
            f = (np.clip(np.nan_to_num(f.astype(np.float32)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        b, h, w, _ = f.shape
        if b == 0:
            return
        if self._proc is None:
            self._start(h, w)
        elif (h, w) != self.size:
            raise ValueError(f"frame size changed from {self.size} to {(h, w)}")
        if h % 2 or w % 2:
            f = np.pad(f, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        try:
            self._proc.stdin.write(np.ascontiguousarray(f).data)
        except (BrokenPipeError, OSError) as e:
            self._proc.wait()
            raise self._fail("encoding", e) from None
        self.num_frames += b

    def set_audio(self, audio: np.ndarray | PathLike | None) -> None:
        """Set (or replace) the audio track before the writer is closed: 16 kHz mono samples or a file."""
        self._audio = _as_audio(audio)

    def _mux(self) -> pathlib.Path:
        out = self._temp("mux")
        cmd = [ffmpeg_exe(), "-y", "-nostdin", "-hide_banner", "-v", "error", "-i", str(self._video_tmp)]
        if isinstance(self._audio, pathlib.Path):
            cmd += ["-i", str(self._audio)]
        else:
            cmd += ["-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-i", "pipe:0"]
        cmd += ["-map", "0:v:0", "-map", "1:a:0", "-map_metadata", "-1"]
        cmd += ["-c:v", "copy", "-c:a", "aac", "-shortest"]
        cmd += self._metadata_args() + ["-f", "mp4", str(out)]
        self._log.seek(0)
        self._log.truncate()
        pipe = not isinstance(self._audio, pathlib.Path)
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE if pipe else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            start_new_session=True,
        )
        err: BaseException | None = None
        if pipe:
            try:
                data = memoryview(self._audio).cast("B")
                for i in range(0, len(data), 1 << 20):  # 1 MiB at a time: no second copy of the audio
                    self._proc.stdin.write(data[i : i + (1 << 20)])
                self._proc.stdin.close()
            except (BrokenPipeError, OSError) as e:
                err = e
        if self._proc.wait() != 0:
            raise self._fail("muxing audio", err)
        return out

    def close(self) -> pathlib.Path:
        """Finish encoding, mux the audio, write the tags and move the file onto ``path``."""
        if self._done:
            return self.path
        try:
            if self._proc is None:
                raise UserError(f"no frames were written to {self.path}; nothing to save")
            try:
                self._proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            if self._proc.wait() != 0:
                raise self._fail("encoding")
            final = self._video_tmp if self._audio is None else self._mux()
            os.chmod(final, 0o666 & ~_umask())
            os.replace(final, self.path)
            self._temps.remove(final)
        except BaseException:
            self.abort()
            raise
        self._done = True
        self._cleanup()
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and remove the temporary files; ``path`` is left as it was."""
        self._done = True
        p, self._proc = self._proc, None
        if p is not None and p.poll() is None:
            try:
                p.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        if p is not None and p.stdin is not None:
            try:
                p.stdin.close()
            except (BrokenPipeError, OSError):
                pass
        self._cleanup()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:  # a writer dropped without close() leaves nothing behind
        if not getattr(self, "_done", True):
            self.abort()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_video(
    path: PathLike,
    frames_TxHxWx3: np.ndarray,
    *,
    fps: float = 25.0,
    audio: np.ndarray | PathLike | None = None,
    crf: int = 18,
    preset: str = "veryfast",
    metadata: Mapping[str, str] | None = None,
) -> pathlib.Path:
    """Write a whole clip in one call (see :class:`VideoWriter`)."""
    with VideoWriter(path, fps=fps, audio=audio, crf=crf, preset=preset, metadata=metadata) as w:
        w.write(frames_TxHxWx3)
    return w.path


# --------------------------------------------------------------------------------------------------------
# Decoding: video
# --------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class VideoInfo:
    """What ``ffmpeg -i`` says about a file."""

    width: int
    """Width in pixels of the first video stream's frames as decoded (after the container's rotation)."""
    height: int
    """Frame height in pixels (as decoded)."""
    fps: float
    """Frame rate of the first video stream."""
    duration_s: float
    """Container duration in seconds (0 when unknown)."""
    has_audio: bool
    """Whether the file has an audio stream."""
    metadata: dict[str, str]
    """Container (global) metadata tags."""
    video_codec: str = ""
    """ffmpeg's name of the first video stream's codec (``h264``, ``hevc``, ``vp9``, ...)."""
    audio_codec: str = ""
    """ffmpeg's name of the first audio stream's codec (``aac``, ``mp3``, ``pcm_s16le``, ...); "" without one."""


def _ffmpeg_info(path: PathLike) -> str:
    p = pathlib.Path(path)
    if not p.is_file():
        raise MediaError(f"video file {p} not found")
    r = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(p)], capture_output=True, timeout=60)
    text = r.stderr.decode("utf-8", "replace")
    if "Input #0" not in text:
        raise MediaError(f"{p} is not a readable video ({_tail(text)})")
    return text


def _parse_metadata(text: str) -> dict[str, str]:
    meta: dict[str, str] = {}
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith("Input #0")), None)
    if start is None:
        return meta
    i = start + 1
    if i < len(lines) and lines[i].strip() == "Metadata:":
        indent = len(lines[i]) - len(lines[i].lstrip())
        last = None
        for ln in lines[i + 1 :]:
            if len(ln) - len(ln.lstrip()) <= indent:
                break
            key, sep, value = ln.strip().partition(":")
            if not sep:
                continue
            key, value = key.strip(), value.strip()
            if key == "" and last is not None:  # continuation line of a multi-line value
                meta[last] += "\n" + value
            else:
                meta[key] = value
                last = key
    return meta


def _rotation(text: str) -> float:
    """Degrees of the first video stream's display matrix (0 without one): ffmpeg rotates frames by it."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if re.search(r"Stream #0:\d+.*?: Video:", ln)), None)
    if start is None:
        return 0.0
    for ln in lines[start + 1 :]:
        if re.search(r"Stream #\d+:\d+", ln):
            break
        m = re.search(r"(?i)display ?matrix: rotation of (-?[\d.]+) degrees", ln)
        if m:
            return float(m[1])
    return 0.0


def read_metadata(path: PathLike) -> dict[str, str]:
    """Container metadata tags of a video (``comment``, ``encoder``, custom keys, ...)."""
    return _parse_metadata(_ffmpeg_info(path))


def probe(path: PathLike) -> VideoInfo:
    """Size, frame rate, duration, audio presence and metadata of a video, from ``ffmpeg -i``."""
    text = _ffmpeg_info(path)
    video = re.search(r"Stream #0:\d+.*?: Video: .*?, (\d+)x(\d+)", text)
    if video is None:
        raise MediaError(f"{path} has no video stream")
    width, height = int(video[1]), int(video[2])
    if round(_rotation(text)) % 180 == 90:  # ffmpeg turns the frames upright: a quarter turn swaps the sides
        width, height = height, width
    fps = re.search(r"Stream #0:\d+.*?: Video: .*?([\d.]+) fps", text) or re.search(r"([\d.]+) tbr", text)
    dur = re.search(r"Duration: (\d+):(\d+):([\d.]+)", text)
    duration = 0.0 if dur is None else int(dur[1]) * 3600 + int(dur[2]) * 60 + float(dur[3])
    vcodec = re.search(r"Stream #0:\d+.*?: Video: (\w+)", text)
    acodec = re.search(r"Stream #0:\d+.*?: Audio: (\w+)", text)
    return VideoInfo(
        width=width,
        height=height,
        fps=float(fps[1]) if fps else 0.0,
        duration_s=duration,
        has_audio=acodec is not None,
        metadata=_parse_metadata(text),
        video_codec=vcodec[1] if vcodec else "",
        audio_codec=acodec[1] if acodec else "",
    )


def iter_frames(
    path: PathLike, *, fps: float | None = None, size: tuple[int, int] | None = None
) -> Iterator[np.ndarray]:
    """Decode a video lazily: yields H×W×3 uint8 RGB frames, one in memory at a time; resampled to ``fps``
    (ffmpeg's ``fps`` filter: frames dropped or repeated) and resized to ``size`` = (H, W) (area) if given.

    Raises :class:`MediaError` for a file that is missing or not a video, or that ends inside a frame."""
    p = pathlib.Path(path)
    info = probe(p)
    h, w = (info.height, info.width) if size is None else size
    filters = [] if fps is None else [f"fps={fps}"]
    if size is not None:
        filters.append(f"scale={w}:{h}:flags=area")
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(p), "-an", "-sn"]
    if filters:
        cmd += ["-vf", ",".join(filters)]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
    n = h * w * 3
    try:
        while True:
            buf = proc.stdout.read(n)
            if len(buf) < n:
                break
            yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)
        if buf:
            proc.wait()
            log.seek(0)
            why = _tail(log.read().decode("utf-8", "replace"))
            raise MediaError(f"{p}: the video ended inside a frame ({len(buf)} of {n} bytes; {why})")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.wait()
        log.close()


def read_frames(path: PathLike, *, fps: float | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
    """All frames of a video as a T×H×W×3 uint8 array (T may be 0); see :func:`iter_frames`."""
    got = list(iter_frames(path, fps=fps, size=size))
    if got:
        return np.stack(got)
    info = probe(path)
    h, w = (info.height, info.width) if size is None else size
    return np.zeros((0, h, w, 3), np.uint8)


def read_video(
    path: PathLike, *, stack: bool = False, size: tuple[int, int] | None = None
) -> tuple[Iterator[np.ndarray] | np.ndarray, float, np.ndarray]:
    """``(frames, fps, audio)``: frames as an iterator of H×W×3 uint8 (a T×H×W×3 array if ``stack``),
    audio as 16 kHz mono float32. A video without sound raises :class:`NoAudioError` (use
    :func:`read_frames` for the frames alone)."""
    info = probe(path)
    frames = read_frames(path, size=size) if stack else iter_frames(path, size=size)
    return frames, info.fps, read_audio(path)


# --------------------------------------------------------------------------------------------------------
# Decoding: audio
# --------------------------------------------------------------------------------------------------------


def _audio_cmd(path: pathlib.Path, sample_rate: int) -> list[str]:
    # -rematrix_maxval 1: downmix coefficients sum to 1, so stereo becomes (L+R)/2 (ffmpeg's default is
    # (L+R)/√2, which can clip) and matches the soundfile path's channel mean.
    out = ["-vn", "-sn", "-dn", "-rematrix_maxval", "1.0", "-ac", "1", "-ar", str(sample_rate)]
    pcm = ["-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"]
    return [ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-i", str(path), *out, *pcm]


def _check_audio_file(path: PathLike) -> pathlib.Path:
    p = pathlib.Path(path)
    if not p.is_file():
        raise MediaError(f"audio file not found: {p}")
    if p.stat().st_size == 0:
        raise MediaError(f"audio file is empty (0 bytes): {p}")
    return p


_NO_STREAM = ("does not contain any stream", "matches no streams")
"""What ffmpeg says when a file has no stream of the kind asked for (here: no audio)."""


def _audio_error(p: pathlib.Path, stderr: bytes) -> MediaError:
    text = stderr.decode(errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    why = lines[-1].strip() if lines else "ffmpeg failed"
    kind = NoAudioError if any(s in text for s in _NO_STREAM) else MediaError
    return kind(f"cannot read audio from {p} ({why}); give a wav, mp3, m4a, flac or ogg file")


def _no_samples(p: pathlib.Path) -> NoAudioError:
    return NoAudioError(f"no audio samples in {p} (no sound track, or zero length)")


def _to_mono_float32(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x.mean(axis=1, dtype=np.float32) if x.ndim == 2 else x


def read_audio(path: PathLike, *, sample_rate: int = SAMPLE_RATE, timeout_s: float = 600.0) -> np.ndarray:
    """Any audio ffmpeg reads (any rate, mono or stereo, also a video's sound track) → mono float32 at
    ``sample_rate``. Channels are averaged (ffmpeg: downmix weights normalised to sum 1). Silence is fine; a
    file without audio raises :class:`NoAudioError`, an empty or unreadable one :class:`MediaError`. wav/flac
    already at ``sample_rate`` take a soundfile fast path; everything else is decoded and resampled by
    imageio-ffmpeg's ffmpeg, killed after ``timeout_s``. One hour is 230 MB of float32; for bounded memory
    use :func:`iter_audio`.
    """
    p = _check_audio_file(path)
    if p.suffix.lower() in (".wav", ".flac"):
        try:
            info = soundfile.info(str(p))
            if info.samplerate == sample_rate:
                wave = _to_mono_float32(soundfile.read(str(p), dtype="float32", always_2d=True)[0])
                if wave.size == 0:
                    raise NoAudioError(f"audio file has no samples: {p}")
                return wave
        except UserError:
            raise
        except Exception:  # not really wav/flac, or a codec soundfile lacks: let ffmpeg decide
            pass
    try:
        r = subprocess.run(_audio_cmd(p, sample_rate), capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise MediaError(f"decoding {p} took longer than {timeout_s:.0f} s; pass a larger timeout_s") from None
    if r.returncode != 0:
        raise _audio_error(p, r.stderr)
    wave = np.frombuffer(r.stdout, dtype="<f4").astype(np.float32)
    if wave.size == 0:
        raise _no_samples(p)
    return wave


def iter_audio(
    path: PathLike,
    *,
    chunk_s: float = 10.0,
    sample_rate: int = SAMPLE_RATE,
    stall_timeout_s: float = 60.0,
) -> Iterator[np.ndarray]:
    """Streams a file as mono float32 chunks of ``chunk_s`` seconds (the last one shorter), with bounded
    memory for audio of any length. ffmpeg is killed if a chunk takes longer than ``stall_timeout_s`` to
    arrive, or when the generator is closed. Errors as in :func:`read_audio` (a file without audio raises
    :class:`NoAudioError` once ffmpeg has finished, before any chunk).
    """
    p = _check_audio_file(path)
    chunk_bytes = 4 * max(1, round(chunk_s * sample_rate))
    proc = subprocess.Popen(_audio_cmd(p, sample_rate), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stderr: list[bytes] = []
    reader = threading.Thread(target=lambda: stderr.append(proc.stderr.read()), daemon=True)
    reader.start()
    total, stalled = 0, threading.Event()

    def _kill():
        stalled.set()
        proc.kill()

    try:
        pending = b""
        while True:
            timer = threading.Timer(stall_timeout_s, _kill)
            timer.start()
            try:
                data = proc.stdout.read(chunk_bytes - len(pending))
            finally:
                timer.cancel()
            if stalled.is_set():
                raise MediaError(f"decoding {p} stalled for {stall_timeout_s:.0f} s; pass a larger stall_timeout_s")
            if not data:
                break
            pending += data
            if len(pending) >= chunk_bytes:
                total += len(pending) // 4
                yield np.frombuffer(pending, dtype="<f4").astype(np.float32)
                pending = b""
        rc = proc.wait(timeout=stall_timeout_s)
        reader.join(timeout=5)
        if rc != 0:
            raise _audio_error(p, b"".join(stderr))
        n = len(pending) // 4
        if total + n == 0:
            raise _no_samples(p)
        if n:
            yield np.frombuffer(pending[: 4 * n], dtype="<f4").astype(np.float32)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


# --------------------------------------------------------------------------------------------------------
# wav files (the pipeline's decoded speech)
# --------------------------------------------------------------------------------------------------------


def write_wav(
    path: PathLike,
    audio: np.ndarray | Iterable[np.ndarray],
    *,
    sample_rate: int = SAMPLE_RATE,
    subtype: str = "FLOAT",
) -> int:
    """Write mono samples as a wav: one array, or an iterable of chunks (written as they come: flat memory).
    ``subtype``: soundfile's sample format ("FLOAT", "PCM_16", ...). Returns the number of samples written."""
    chunks = [audio] if isinstance(audio, np.ndarray) else audio
    n = 0
    with soundfile.SoundFile(str(path), "w", samplerate=sample_rate, channels=1, subtype=subtype) as f:
        for chunk in chunks:
            f.write(chunk)
            n += len(chunk)
    return n


def iter_wav(path: PathLike, *, chunk_s: float = 10.0, sample_rate: int = SAMPLE_RATE) -> Iterator[np.ndarray]:
    """A wav (or any soundfile format) in float32 chunks of ``chunk_s`` seconds at ``sample_rate``."""
    yield from soundfile.blocks(str(path), blocksize=int(chunk_s * sample_rate), dtype="float32")


def append_silence(path: PathLike, num_samples: int) -> None:
    """Append ``num_samples`` zeros to a mono wav in place."""
    with soundfile.SoundFile(str(path), "r+") as f:
        f.seek(0, soundfile.SEEK_END)
        f.write(np.zeros(max(0, int(num_samples)), np.float32))
