"""Prepared training records: clip records (stage 1), motion records (stage 2), shards and manifests.

VASA-1 §3.1 learns the face latent space from talking-face videos (VoxCeleb2) by self-reenactment, and §3.2
trains the motion diffusion model on per-frame motion latents extracted from the same kind of videos. Training
never decodes video: `vasajax prep` (see `vasajax.data.prep`) turns videos into fixed-length **clip records**,
and a later `encode-dataset` turns clip records into **motion records** (motion latents + audio features +
conditions). Both live in ArrayRecord shards, described by a JSON manifest.

Record format ("VJR", version 1) — no pickle, readable from any language::

    bytes 0..3   magic: b"VJCR" (clip record) or b"VJMR" (motion record)
    bytes 4..7   header length H, uint32 little-endian
    bytes 8..8+H header, UTF-8 JSON:
                 {"version": 1, "kind": "clip"|"motion", "meta": {...strings and numbers...},
                  "arrays": {name: {"dtype": "<f4", "shape": [...], "offset": o, "nbytes": n}},
                  "frames": {"codec": "raw"|"png"|"jpeg", "shape": [T, S, S, 3],
                             "offsets": [o_0, ..., o_T]  or  "external": true}}   (clip records only)
    bytes 8+H..  payload; every offset is relative to the payload start

Arrays are C-order little-endian buffers. Frames are stored as one raw uint8 buffer or as one PNG/JPEG image
per frame (blob t spans ``offsets[t]:offsets[t+1]``), so a loader that needs two frames of a clip (stage 1
samples a source and a driver frame) decodes two images, not T.

**Split frames** (``split_frames=True``, what ``prep`` writes): the header record holds audio, labels and
metadata, and each PNG/JPEG frame is an ArrayRecord record of its own, right after it (record ``r`` is the
header, ``r + 1 + t`` frame t; the manifest entry says ``record`` and ``parts = 1 + T``). Measured on this
2-core CPU (``benchmarks/data.py``, 256², 100-frame clips, JPEG q95, other jobs running): fetching a stage-1
example's two frames and labels by random access takes 9.9 ms when the 3.8 MB clip is one record and 2.4 ms
with split frames; the stage-1 loader gives 33 vs 151 examples/s.

Codec choice (same benchmark): JPEG q95 with 4:2:0 chroma (the source videos are yuv420p already) is 5×
smaller than raw (38 KB vs 197 KB per 256² frame) and reads back whole at 112 MB/s of decoded frames
(raw: 172 MB/s, but 5× the disk and I/O); PNG is lossless (exact) but only 1.6× smaller and 4× slower to
write; raw is exact and large.
Tests use raw/PNG to check that round trips are bit-exact.

Ground-truth arrays (SynthTalk: mouth opening, blink, ...) are stored as arrays named ``gt/<name>``; extra
motion-record arrays as ``extra/<name>``.

Shards: ``ShardWriter`` writes ``<prefix>-NNNNN.array_record`` files (one record per chunk, so random access
reads one record), each written as ``*.tmp`` and renamed when complete; a new file starts when the size limit
is reached. The manifest (``write_manifest``/``read_manifest``) lists shards in order (the global record
index runs through them in that order), one entry per clip or motion record (its first ArrayRecord record,
its number of parts, source, identity, frames, label summary),
totals, what was dropped and why, and the format version.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vasajax.errors import UserError

FORMAT_VERSION = 1
"""Version of the record and manifest format; readers refuse other versions."""
FPS = 25
"""Video frame rate of every prepared clip (frames per second)."""
SAMPLE_RATE = 16_000
"""Audio sample rate of every prepared clip (Hz, mono float32)."""
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
"""Audio samples per video frame (640)."""
NUM_BLENDSHAPES = 52
"""MediaPipe FaceLandmarker blendshape count; the emotion offset has this size."""
MANIFEST_FORMAT = "vasajax-records"
"""The ``format`` field of every manifest."""

_MAGIC = {"clip": b"VJCR", "motion": b"VJMR"}
_KIND_OF_MAGIC = {v: k for k, v in _MAGIC.items()}
_CODECS = ("raw", "png", "jpeg")


# ----------------------------------------------------------------------------------------------- records


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class ClipRecord:
    """One fixed-length prepared clip: T frames at 25 fps, T/25 s of 16 kHz audio, per-frame labels."""

    frames_TxSxSx3: np.ndarray
    """Cropped face frames, uint8 RGB, channels-last."""
    audio_N: np.ndarray
    """Mono float32 audio at 16 kHz, exactly ``T * 640`` samples (the clip's T/25 seconds)."""
    pose_Tx6: np.ndarray
    """Head pose per frame: yaw, pitch, roll (radians), tx, ty, tz (float32)."""
    gaze_Tx2: np.ndarray
    """Gaze direction per frame, spherical (theta, phi) in radians (float32)."""
    distance_T: np.ndarray
    """Normalised head distance per frame (float32)."""
    blendshapes_Tx52: np.ndarray
    """MediaPipe blendshape coefficients per frame (float32)."""
    emotion_52: np.ndarray
    """Emotion offset of the clip: clip mean of the blendshapes (VASA-1 §3.2), float32."""
    identity: str
    """Identity label (person) used for cross-identity pairs; from the dataset's folder layout."""
    source: str
    """Path of the source video, relative to the prepared input root."""
    clip_index: int
    """Index of this clip among the clips cut from the same source video (0, 1, ...)."""
    start_frame: int = 0
    """First frame of the clip in the source video after resampling to 25 fps."""
    ground_truth: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    """Optional ground truth arrays (SynthTalk: mouth opening, blink, ...); first axis T if per-frame."""

    def __post_init__(self):
        T = self.num_frames
        f = self.frames_TxSxSx3
        if f.dtype != np.uint8 or f.ndim != 4 or f.shape[1] != f.shape[2] or f.shape[3] != 3:
            raise ValueError(f"frames must be uint8 T×S×S×3, got {f.dtype} {f.shape}")
        want = {
            "audio_N": (T * SAMPLES_PER_FRAME,),
            "pose_Tx6": (T, 6),
            "gaze_Tx2": (T, 2),
            "distance_T": (T,),
            "blendshapes_Tx52": (T, NUM_BLENDSHAPES),
            "emotion_52": (NUM_BLENDSHAPES,),
        }
        for name, shape in want.items():
            a = getattr(self, name)
            if a.shape != shape or a.dtype != np.float32:
                raise ValueError(f"{name} must be float32 {shape}, got {a.dtype} {a.shape}")

    @property
    def num_frames(self) -> int:
        """T, the number of frames."""
        return int(self.frames_TxSxSx3.shape[0])

    @property
    def size(self) -> int:
        """S, the side of the square frames in pixels."""
        return int(self.frames_TxSxSx3.shape[1])


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class MotionRecord:
    """A stage-2 record: per-frame motion latents with aligned audio features and conditions (VASA-1 §3.2).

    Written by ``encode-dataset`` (stage-1 motion encoder run over clip records). Windows of W+K frames are
    cut from it by ``vasajax.data.loader.motion_windows``.
    """

    motion_TxM: np.ndarray
    """Motion latent per frame, float32: [yaw, pitch, roll, tx, ty, tz] + z_dyn (M = 6 + dyn dim)."""
    audio_feat_UxF: np.ndarray
    """Audio features, float32, ``U = T * feats_per_frame`` rows (e.g. log-mel 80 bins at 50 Hz: 2/frame)."""
    feats_per_frame: int
    """Audio feature rows per video frame."""
    feature_kind: str
    """Which audio features these are, e.g. ``"logmel80"`` or ``"wav2vec2-base"``."""
    gaze_Tx2: np.ndarray
    """Gaze condition per frame, spherical (theta, phi), float32."""
    distance_T: np.ndarray
    """Head distance condition per frame, float32."""
    emotion_52: np.ndarray
    """Emotion offset condition of the clip, float32."""
    identity: str
    """Identity label of the source clip."""
    source: str
    """Source video path (relative)."""
    clip_index: int
    """Clip index within the source video."""
    start_frame: int = 0
    """First frame of the record in the source video (25 fps)."""
    extra: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    """Optional extra arrays (e.g. pose labels or SynthTalk ground truth for evaluation)."""

    def __post_init__(self):
        T = self.num_frames
        if self.motion_TxM.ndim != 2 or self.motion_TxM.dtype != np.float32:
            raise ValueError(f"motion must be float32 T×M, got {self.motion_TxM.dtype} {self.motion_TxM.shape}")
        a = self.audio_feat_UxF
        if a.ndim != 2 or a.shape[0] != T * self.feats_per_frame or a.dtype != np.float32:
            raise ValueError(f"audio_feat must be float32 ({T}*{self.feats_per_frame})×F, got {a.dtype} {a.shape}")
        for name, shape in {"gaze_Tx2": (T, 2), "distance_T": (T,), "emotion_52": (NUM_BLENDSHAPES,)}.items():
            v = getattr(self, name)
            if v.shape != shape or v.dtype != np.float32:
                raise ValueError(f"{name} must be float32 {shape}, got {v.dtype} {v.shape}")

    @property
    def num_frames(self) -> int:
        """T, the number of frames."""
        return int(self.motion_TxM.shape[0])


_CLIP_ARRAYS = ("audio_N", "pose_Tx6", "gaze_Tx2", "distance_T", "blendshapes_Tx52", "emotion_52")
_CLIP_META = ("identity", "source", "clip_index", "start_frame")
_MOTION_ARRAYS = ("motion_TxM", "audio_feat_UxF", "gaze_Tx2", "distance_T", "emotion_52")
_MOTION_META = ("identity", "source", "clip_index", "start_frame", "feats_per_frame", "feature_kind")


# ----------------------------------------------------------------------------------------------- encode


def _encode_image(img: np.ndarray, codec: str, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    if codec == "png":
        Image.fromarray(img).save(buf, format="PNG", compress_level=1)
    else:
        Image.fromarray(img).save(buf, format="JPEG", quality=quality, subsampling=2)  # 4:2:0 like the video
    return buf.getvalue()


def _decode_image(data: bytes | memoryview) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _pack(
    kind: str,
    meta: dict,
    arrays: dict[str, np.ndarray],
    frames: np.ndarray | None,
    codec: str,
    quality: int,
    split: bool = False,
) -> list[bytes]:
    chunks: list[bytes] = []
    offset = 0
    arr_hdr = {}
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        if a.dtype.kind not in "biuf":
            raise ValueError(f"array {name!r}: only bool/int/float arrays can be stored, got {a.dtype}")
        le = a.dtype.newbyteorder("<")
        b = a.astype(le, copy=False).tobytes()
        arr_hdr[name] = {"dtype": le.str, "shape": list(a.shape), "offset": offset, "nbytes": len(b)}
        chunks.append(b)
        offset += len(b)
    header: dict[str, Any] = {"version": FORMAT_VERSION, "kind": kind, "meta": meta, "arrays": arr_hdr}
    if frames is not None:
        if codec not in _CODECS:
            raise ValueError(f"frame codec must be one of {_CODECS}, got {codec!r}")
        if split:
            if codec == "raw":
                raise ValueError("split frames need an image codec (png or jpeg)")
            blobs = [_encode_image(img, codec, quality) for img in frames]
            header["frames"] = {"codec": codec, "shape": list(frames.shape), "external": True}
            h = json.dumps(header, separators=(",", ":")).encode()
            return [b"".join([_MAGIC[kind], struct.pack("<I", len(h)), h, *chunks]), *blobs]
        offsets = [offset]
        if codec == "raw":
            b = np.ascontiguousarray(frames).tobytes()
            chunks.append(b)
            offset += len(b)
            offsets.append(offset)
        else:
            for img in frames:
                b = _encode_image(img, codec, quality)
                chunks.append(b)
                offset += len(b)
                offsets.append(offset)
        header["frames"] = {"codec": codec, "shape": list(frames.shape), "offsets": offsets}
    h = json.dumps(header, separators=(",", ":")).encode()
    return [b"".join([_MAGIC[kind], struct.pack("<I", len(h)), h, *chunks])]


def encode(record: ClipRecord | MotionRecord, *, codec: str = "png", quality: int = 95) -> bytes:
    """Serialise a record to bytes, frames inside (format in the module docstring).

    Args:
      record: a ``ClipRecord`` or ``MotionRecord``.
      codec: frame codec for clip records: ``"raw"`` (exact), ``"png"`` (exact, compressed), ``"jpeg"``.
      quality: JPEG quality (1–100); ignored by other codecs.
    """
    return encode_parts(record, codec=codec, quality=quality)[0]


def encode_parts(
    record: ClipRecord | MotionRecord, *, codec: str = "png", quality: int = 95, split_frames: bool = False
) -> list[bytes]:
    """Serialise a record as ArrayRecord records: ``[record]``, or with ``split_frames`` (clip records,
    png/jpeg) ``[header, frame_0, ..., frame_{T-1}]``."""
    if isinstance(record, ClipRecord):
        arrays = {n: getattr(record, n) for n in _CLIP_ARRAYS}
        arrays.update({f"gt/{k}": np.asarray(v) for k, v in record.ground_truth.items()})
        meta = {n: getattr(record, n) for n in _CLIP_META}
        return _pack("clip", meta, arrays, record.frames_TxSxSx3, codec, quality, split_frames)
    if isinstance(record, MotionRecord):
        arrays = {n: getattr(record, n) for n in _MOTION_ARRAYS}
        arrays.update({f"extra/{k}": np.asarray(v) for k, v in record.extra.items()})
        meta = {n: getattr(record, n) for n in _MOTION_META}
        return _pack("motion", meta, arrays, None, codec, quality)
    raise TypeError(f"cannot encode {type(record).__name__}")


# ----------------------------------------------------------------------------------------------- decode


class EncodedRecord:
    """Lazy view of an encoded record: parses the header only; arrays and frames are decoded on request.

    ``EncodedRecord(data).frames([3, 17])`` decodes two frames of a clip and nothing else. For split-frame
    records, ``frame_part(t)`` returns the bytes of frame t (e.g. ``lambda t: source[record + 1 + t]``).
    """

    def __init__(self, data: bytes, frame_part: Callable[[int], bytes] | None = None):
        view = memoryview(data)
        magic = bytes(view[:4])
        if magic not in _KIND_OF_MAGIC:
            raise ValueError(f"not a vasajax record (magic {magic!r})")
        (hlen,) = struct.unpack("<I", view[4:8])
        self.header: dict[str, Any] = json.loads(bytes(view[8 : 8 + hlen]))
        if self.header.get("version") != FORMAT_VERSION:
            raise UserError(
                f"record format version {self.header.get('version')} is not supported (this vasajax reads "
                f"version {FORMAT_VERSION}); re-run `vasajax prep` with this version"
            )
        self.kind: str = _KIND_OF_MAGIC[magic]
        self.meta: dict[str, Any] = self.header["meta"]
        self._payload = view[8 + hlen :]
        self._frame_part = frame_part

    @property
    def num_frames(self) -> int:
        """T, the number of frames of the record."""
        if self.kind == "clip":
            return int(self.header["frames"]["shape"][0])
        return int(self.header["arrays"]["motion_TxM"]["shape"][0])

    def array_names(self) -> list[str]:
        """Names of the stored arrays (frames excluded)."""
        return list(self.header["arrays"])

    def array(self, name: str) -> np.ndarray:
        """Decode one stored array (a fresh, writable copy in native byte order)."""
        h = self.header["arrays"][name]
        buf = self._payload[h["offset"] : h["offset"] + h["nbytes"]]
        a = np.frombuffer(buf, dtype=np.dtype(h["dtype"])).reshape(h["shape"])
        return a.astype(a.dtype.newbyteorder("="), copy=True)

    def frames(self, indices: Iterable[int] | None = None) -> np.ndarray:
        """Decode frames ``indices`` (all if None) of a clip record: uint8 N×S×S×3."""
        fh = self.header["frames"]
        T, S, _, C = fh["shape"]
        idx = list(range(T)) if indices is None else [int(i) for i in indices]
        if fh.get("external"):
            if self._frame_part is None:
                raise ValueError("this record keeps its frames in separate records; pass frame_part")
            out = np.empty((len(idx), S, S, C), np.uint8)
            for k, t in enumerate(idx):
                if not -T <= t < T:
                    raise IndexError(f"frame {t} out of range for a {T}-frame clip")
                out[k] = _decode_image(self._frame_part(t % T))
            return out
        offs = fh["offsets"]
        if fh["codec"] == "raw":
            all_ = np.frombuffer(self._payload[offs[0] : offs[1]], dtype=np.uint8).reshape(T, S, S, C)
            return all_[idx].copy()
        out = np.empty((len(idx), S, S, C), np.uint8)
        for k, t in enumerate(idx):
            if not -T <= t < T:
                raise IndexError(f"frame {t} out of range for a {T}-frame clip")
            t = t % T
            out[k] = _decode_image(self._payload[offs[t] : offs[t + 1]])
        return out

    def to_record(self) -> ClipRecord | MotionRecord:
        """Decode everything into a ``ClipRecord`` or ``MotionRecord``."""
        if self.kind == "clip":
            gt = {n[3:]: self.array(n) for n in self.header["arrays"] if n.startswith("gt/")}
            return ClipRecord(
                frames_TxSxSx3=self.frames(),
                ground_truth=gt,
                **{n: self.array(n) for n in _CLIP_ARRAYS},
                **{n: self.meta[n] for n in _CLIP_META},
            )
        extra = {n[6:]: self.array(n) for n in self.header["arrays"] if n.startswith("extra/")}
        return MotionRecord(
            extra=extra,
            **{n: self.array(n) for n in _MOTION_ARRAYS},
            **{n: self.meta[n] for n in _MOTION_META},
        )


def decode(data: bytes, frame_parts: Sequence[bytes] | None = None) -> ClipRecord | MotionRecord:
    """Deserialise ``encode``'s bytes, or ``encode_parts``'s header plus frame parts (exact for raw and PNG)."""
    return EncodedRecord(data, None if frame_parts is None else frame_parts.__getitem__).to_record()


# ----------------------------------------------------------------------------------------------- summaries


def summarize(record: ClipRecord | MotionRecord) -> dict[str, Any]:
    """A manifest entry for a record: where it came from and a small summary of its labels."""
    entry: dict[str, Any] = {
        "identity": record.identity,
        "source": record.source,
        "clip_index": int(record.clip_index),
        "start_frame": int(record.start_frame),
        "frames": record.num_frames,
    }

    def stats(a: np.ndarray) -> dict[str, list[float]]:
        a = np.asarray(a, np.float64).reshape(a.shape[0], -1)
        return {"mean": np.round(a.mean(0), 5).tolist(), "std": np.round(a.std(0), 5).tolist()}

    if isinstance(record, ClipRecord):
        entry["size"] = record.size
        entry["labels"] = {
            "pose": stats(record.pose_Tx6),
            "gaze": stats(record.gaze_Tx2),
            "distance": stats(record.distance_T),
            "audio_rms": round(float(np.sqrt(np.mean(np.square(record.audio_N)))), 6),
        }
        if record.ground_truth:
            entry["ground_truth"] = sorted(record.ground_truth)
    else:
        entry["motion_dim"] = int(record.motion_TxM.shape[1])
        entry["feature_kind"] = record.feature_kind
        entry["labels"] = {"gaze": stats(record.gaze_Tx2), "distance": stats(record.distance_T)}
    return entry


# ----------------------------------------------------------------------------------------------- shards


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class ShardWriter:
    """Writes records into ArrayRecord shards ``<dir>/<prefix>-NNNNN.array_record``.

    Each file is written as ``*.tmp`` and renamed when complete, so a crash never leaves a truncated shard
    under its final name. A new file starts when the next record would push the current one past
    ``max_bytes`` (a single record larger than the limit gets a file of its own); the parts of one
    split-frame record always stay in one file.

    Use as a context manager; ``shards`` then holds one dict per finished file:
    ``{"path": file name, "array_records": n, "bytes": b, "entries": [summary + index + parts, ...]}``.
    An exception inside the ``with`` block deletes the unfinished file.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        prefix: str,
        *,
        max_bytes: int = 1 << 30,
        options: str = "group_size:1,uncompressed",
    ):
        self.directory = Path(directory)
        self.prefix = prefix
        self.max_bytes = int(max_bytes)
        self.options = options
        self.shards: list[dict[str, Any]] = []
        self._writer = None
        self._tmp: Path | None = None
        self._cur: dict[str, Any] | None = None
        self.directory.mkdir(parents=True, exist_ok=True)

    def _open(self) -> None:
        from array_record.python.array_record_module import ArrayRecordWriter

        name = f"{self.prefix}-{len(self.shards):05d}.array_record"
        self._tmp = self.directory / (name + ".tmp")
        self._writer = ArrayRecordWriter(str(self._tmp), self.options)
        self._cur = {"path": name, "array_records": 0, "bytes": 0, "entries": []}

    def _finish(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        os.replace(self._tmp, self.directory / self._cur["path"])
        self.shards.append(self._cur)
        self._writer, self._tmp, self._cur = None, None, None

    def write(self, parts: bytes | Sequence[bytes], summary: dict[str, Any] | None = None) -> None:
        """Append one encoded record (bytes, or the parts from ``encode_parts``) and its manifest entry."""
        parts = [parts] if isinstance(parts, bytes | bytearray) else list(parts)
        size = sum(len(p) for p in parts)
        cur = self._cur
        if cur is not None and cur["array_records"] and cur["bytes"] + size > self.max_bytes:
            self._finish()
        if self._writer is None:
            self._open()
        index = self._cur["array_records"]
        for p in parts:
            self._writer.write(p)
        self._cur["array_records"] += len(parts)
        self._cur["bytes"] += size
        self._cur["entries"].append({**(summary or {}), "index": index, "parts": len(parts)})

    def write_record(
        self,
        record: ClipRecord | MotionRecord,
        *,
        codec: str = "png",
        quality: int = 95,
        split_frames: bool = False,
    ) -> int:
        """Encode and append a record; returns its encoded size in bytes."""
        parts = encode_parts(record, codec=codec, quality=quality, split_frames=split_frames)
        self.write(parts, summarize(record))
        return sum(len(p) for p in parts)

    def close(self) -> list[dict[str, Any]]:
        """Finish the current file; returns ``shards``."""
        self._finish()
        return self.shards

    def abort(self) -> None:
        """Drop the unfinished file (finished ones stay)."""
        if self._writer is not None:
            self._writer.close()
            self._tmp.unlink(missing_ok=True)
            self._writer, self._tmp, self._cur = None, None, None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def read_shard(path: str | os.PathLike) -> list[bytes]:
    """All ArrayRecord records of one shard file, in order (the parts of split-frame records included)."""
    from array_record.python.array_record_module import ArrayRecordReader

    r = ArrayRecordReader(str(path))
    try:
        return list(r.read_all())
    finally:
        r.close()


def read_records(manifest: Mapping[str, Any], root: str | os.PathLike) -> Iterator[ClipRecord | MotionRecord]:
    """Every record of a prepared dataset, decoded, in manifest order (reads one shard file at a time)."""
    paths = shard_paths(manifest, root)
    loaded: tuple[int, list[bytes]] = (-1, [])
    for e in manifest["records"]:
        if loaded[0] != e["shard"]:
            loaded = (e["shard"], read_shard(paths[e["shard"]]))
        parts = loaded[1][e["index"] : e["index"] + e["parts"]]
        yield decode(parts[0], parts[1:] if len(parts) > 1 else None)


# ----------------------------------------------------------------------------------------------- manifest


def make_manifest(
    kind: str,
    shards: list[dict[str, Any]],
    *,
    dropped: Mapping[str, int] | None = None,
    config: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build a manifest from ``ShardWriter.shards`` lists (concatenated in global record order).

    The per-record entries move from the shard dicts into ``records``; each gets ``shard`` (file index),
    ``index`` (first ArrayRecord record in that file), ``record`` (the same, counted over all files in
    order, as ``grain.sources.ArrayRecordDataSource`` numbers them) and ``parts``.
    """
    if kind not in _MAGIC:
        raise ValueError(f"kind must be one of {sorted(_MAGIC)}")
    records, shard_list = [], []
    base = 0
    for si, sh in enumerate(shards):
        shard_list.append({k: v for k, v in sh.items() if k != "entries"})
        entries = sh.get("entries", [])
        for entry in entries:
            records.append({**entry, "shard": si, "record": base + entry["index"]})
        if sum(e["parts"] for e in entries) != sh["array_records"]:
            raise ValueError(f"shard {sh['path']}: entries do not account for its {sh['array_records']} records")
        base += sh["array_records"]
    frames = sum(int(r.get("frames", 0)) for r in records)
    totals = {
        "records": len(records),
        "shards": len(shard_list),
        "frames": frames,
        "seconds": round(frames / FPS, 3),
        "identities": len({r.get("identity") for r in records}),
        "sources": len({r.get("source") for r in records}),
        "bytes": sum(int(s["bytes"]) for s in shard_list),
    }
    return {
        "format": MANIFEST_FORMAT,
        "version": FORMAT_VERSION,
        "kind": kind,
        "fps": FPS,
        "sample_rate": SAMPLE_RATE,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": dict(config or {}),
        "totals": totals,
        "dropped": dict(dropped or {}),
        "shards": shard_list,
        "records": records,
        **extra,
    }


def write_manifest(path: str | os.PathLike, manifest: Mapping[str, Any]) -> None:
    """Write a manifest as JSON, atomically (temporary file, then rename)."""
    _atomic_write_text(Path(path), json.dumps(manifest, indent=1) + "\n")


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a manifest; raises ``UserError`` if it is missing, malformed or of another version."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.json"
    try:
        m = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"no manifest at {path}; run `vasajax prep` first or pass the prepared folder") from None
    except json.JSONDecodeError as e:
        raise UserError(f"manifest {path} is not valid JSON ({e}); re-run `vasajax prep`") from None
    if m.get("format") != MANIFEST_FORMAT:
        raise UserError(f"{path} is not a vasajax manifest (format {m.get('format')!r})")
    if m.get("version") != FORMAT_VERSION:
        raise UserError(
            f"{path} has format version {m.get('version')}, this vasajax reads version {FORMAT_VERSION}; "
            "re-run `vasajax prep`"
        )
    return m


def shard_paths(manifest: Mapping[str, Any], root: str | os.PathLike) -> list[str]:
    """Absolute shard paths in global record order (shard paths in a manifest are relative to its folder)."""
    root = Path(root)
    if root.is_file():
        root = root.parent
    return [str(root / s["path"]) for s in manifest["shards"]]
