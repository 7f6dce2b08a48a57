"""Video I/O: h264 yuv420p + AAC mp4 written atomically, read back as frames, audio and metadata.

VASA-1 (Xu et al. 2024, §4 and the project page) delivers its results as mp4 video with the driving speech;
this module is that last step of the pipeline (DESIGN.md "Video I/O") and the first step of any evaluation
that reads videos back.

Writing (:class:`VideoWriter`) runs the ffmpeg that ships inside the imageio-ffmpeg wheel in two passes:

1. frames are piped in as raw RGB, one or a batch at a time (nothing is held in memory), and encoded to
   h264 yuv420p (``-crf``, ``-preset``) into a hidden temporary file *in the output folder*;
2. if there is audio, that file is muxed with the 16 kHz input audio: ``-c:v copy -c:a aac -shortest
   -movflags +faststart``, with the metadata tags, into a second temporary file;

then the result is renamed onto ``OUT`` (``os.replace``, atomic on one filesystem). On any error, Ctrl-C
included, the temporary files are removed and a file already at ``OUT`` is left untouched. We drive ffmpeg
with ``subprocess`` rather than ``imageio_ffmpeg.write_frames`` because that generator ignores ffmpeg's
exit status (a disk filling up while the index is written would go unnoticed) and sends its log to the
terminal; the executable is the same (``imageio_ffmpeg.get_ffmpeg_exe()``).

Metadata: the mp4 muxer of the bundled ffmpeg 9 keeps standard keys (``comment``, ``description``,
``title``, ...) through re-encodes and ``-c copy`` remuxes; any other key is written only with
``-movflags use_metadata_tags`` (done automatically) and is *dropped* by a later plain remux, so provenance
uses ``comment``. There is no ffprobe in the wheel: :func:`read_metadata` and :func:`probe` parse the
stderr of ``ffmpeg -i``.
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
from collections.abc import Iterator, Mapping
from typing import IO

import numpy as np

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


def ffmpeg_exe() -> str:
    """Path of the ffmpeg executable bundled with imageio-ffmpeg."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _tail(text: str, n: int = 1) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) if lines else "no message"


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
# Reading
# --------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class VideoInfo:
    """What ``ffmpeg -i`` says about a file."""

    width: int
    """Frame width in pixels of the first video stream."""
    height: int
    """Frame height in pixels."""
    fps: float
    """Frame rate of the first video stream."""
    duration_s: float
    """Container duration in seconds (0 when unknown)."""
    has_audio: bool
    """Whether the file has an audio stream."""
    metadata: dict[str, str]
    """Container (global) metadata tags."""


def _ffmpeg_info(path: PathLike) -> str:
    p = pathlib.Path(path)
    if not p.is_file():
        raise UserError(f"video file {p} not found")
    r = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(p)], capture_output=True, timeout=60)
    text = r.stderr.decode("utf-8", "replace")
    if "Input #0" not in text:
        raise UserError(f"{p} is not a readable video ({_tail(text)})")
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


def read_metadata(path: PathLike) -> dict[str, str]:
    """Container metadata tags of a video (``comment``, ``encoder``, custom keys, ...)."""
    return _parse_metadata(_ffmpeg_info(path))


def probe(path: PathLike) -> VideoInfo:
    """Size, frame rate, duration, audio presence and metadata of a video, from ``ffmpeg -i``."""
    text = _ffmpeg_info(path)
    video = re.search(r"Stream #0:\d+.*?: Video: .*?, (\d+)x(\d+)", text)
    if video is None:
        raise UserError(f"{path} has no video stream")
    fps = re.search(r"Stream #0:\d+.*?: Video: .*?([\d.]+) fps", text) or re.search(r"([\d.]+) tbr", text)
    dur = re.search(r"Duration: (\d+):(\d+):([\d.]+)", text)
    duration = 0.0 if dur is None else int(dur[1]) * 3600 + int(dur[2]) * 60 + float(dur[3])
    return VideoInfo(
        width=int(video[1]),
        height=int(video[2]),
        fps=float(fps[1]) if fps else 0.0,
        duration_s=duration,
        has_audio=re.search(r"Stream #0:\d+.*?: Audio:", text) is not None,
        metadata=_parse_metadata(text),
    )


def iter_frames(path: PathLike, *, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """Decode a video lazily: yields H×W×3 uint8 frames (resized to ``size`` = (H, W) if given)."""
    p = pathlib.Path(path)
    if not p.is_file():
        raise UserError(f"video file {p} not found")
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(p), "-an", "-sn"]
    info = probe(p)
    h, w = (info.height, info.width) if size is None else size
    if size is not None:
        cmd += ["-vf", f"scale={w}:{h}:flags=area"]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    n = h * w * 3
    try:
        while True:
            buf = proc.stdout.read(n)
            if len(buf) < n:
                break
            yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.wait()


def read_audio(path: PathLike, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """The audio track as mono float32 at ``sample_rate`` (None when the file has no audio)."""
    if not probe(path).has_audio:
        return None
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path), "-vn", "-ac", "1", "-ar", str(sample_rate)]
    r = subprocess.run(cmd + ["-f", "f32le", "pipe:1"], capture_output=True)
    if r.returncode != 0:
        raise UserError(f"could not decode the audio of {path} ({_tail(r.stderr.decode('utf-8', 'replace'))})")
    return np.frombuffer(r.stdout, np.float32).copy()


def read_video(
    path: PathLike, *, stack: bool = False, size: tuple[int, int] | None = None
) -> tuple[Iterator[np.ndarray] | np.ndarray, float, np.ndarray | None]:
    """``(frames, fps, audio)``: frames as an iterator of H×W×3 uint8 (a T×H×W×3 array if ``stack``),
    audio as 16 kHz mono float32 or None."""
    info = probe(path)
    frames: Iterator[np.ndarray] | np.ndarray = iter_frames(path, size=size)
    if stack:
        got = list(frames)
        frames = np.stack(got) if got else np.zeros((0, info.height, info.width, 3), np.uint8)
    return frames, info.fps, read_audio(path)
