"""grain input pipelines over prepared records, for both training stages.

Stage 1 (VASA-1 §3.1, MegaPortraits-style self-reenactment): ``face_pairs`` yields a *source* and a *driver*
frame from one clip (the pose/dynamics transfer-consistency loss also needs two frames of one video), plus a
*cross* frame of a different identity for VASA-1's cross-identity identity loss.

Stage 2 (VASA-1 §3.2): ``motion_windows`` yields windows of ``W + K`` consecutive frames of motion latents
with their audio features and conditions (gaze, distance, emotion); the trainer uses the first K frames as
the previous-window context (X_pre, A_pre) and the last W as the window to denoise.

Both pipelines are the same grain recipe::

    MapDataset.range(num_items)            item = record id (stage 1) or window id (stage 2)
      [shard_index::shard_count]           per-process sharding (multi-host: one slice per JAX process)
      .shuffle(seed).repeat(num_epochs)    deterministic, reshuffled every epoch
      .random_map(sample, seed)            read the record(s), pick frames/offsets with the given rng
      .to_iter_dataset(ReadOptions)        reading threads + a small prefetch buffer
      .batch(batch_size)                   dict of stacked numpy arrays, leading axis B (per process)
      [.mp_prefetch(workers)]              optional worker processes

Every random choice comes from grain's per-element rng, so the stream is a pure function of (manifest,
config): ``it.get_state()`` is a small JSON-serialisable dict, and ``set_state`` on a fresh iterator resumes
exactly (grain iterators also implement orbax's StatefulCheckpointable ``save``/``load``). Sharding slices the
record (or window) ids before shuffling, so process shards are disjoint and, together, cover every item
(``equal_shards`` truncates them to one length so that hosts stay in lockstep).

Elements are numpy; frames stay uint8 (the trainer converts to float in [0, 1] on device).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

import grain
import numpy as np

from vasajax.data import clips
from vasajax.errors import UserError

# ----------------------------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoaderConfig:
    """How to batch, shard, shuffle and prefetch (shared by both stages)."""

    batch_size: int
    """Elements per batch *per process* (global batch = batch_size × process count)."""
    seed: int = 0
    """Seed of the shuffle and of every random choice (frame pairs, cross identities, window jitter)."""
    num_epochs: int | None = None
    """Passes over the data; None repeats forever (each epoch reshuffled)."""
    shuffle: bool = True
    """Shuffle items (deterministically by ``seed``); False keeps manifest order (evaluation)."""
    shard_index: int | None = None
    """This process's shard; None → ``jax.process_index()``."""
    shard_count: int | None = None
    """Number of shards; None → ``jax.process_count()``."""
    equal_shards: bool = True
    """Truncate every shard to ``num_items // shard_count`` items so that all processes see equal counts."""
    drop_remainder: bool = True
    """Drop a last incomplete batch (keeps one jit shape)."""
    read_threads: int = 2
    """Threads reading and decoding records in this process."""
    prefetch: int = 16
    """Elements (not batches) read ahead by the reading threads."""
    worker_count: int = 0
    """Worker processes (``mp_prefetch``); 0 reads in this process."""
    worker_buffer_size: int = 2
    """Batches buffered per worker process."""

    @classmethod
    def tiny(cls) -> LoaderConfig:
        """Tests: batch 2, no worker processes."""
        return cls(batch_size=2, read_threads=1, prefetch=4)

    @classmethod
    def small(cls) -> LoaderConfig:
        """The demo (256², one host): batch 24 as in MegaPortraits' first phase."""
        return cls(batch_size=24, read_threads=2, prefetch=48)

    @classmethod
    def paper(cls) -> LoaderConfig:
        """Paper scale (512², per host): batch 16, decoding in 8 worker processes."""
        return cls(batch_size=16, read_threads=4, prefetch=32, worker_count=8)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PairsConfig:
    """Stage-1 sampling: which frames make a training example."""

    min_gap: int = 1
    """Minimum |i − j| between the source and driver frame indices."""
    cross_identity: bool = True
    """Also return a frame of a different identity (VASA-1's cross-identity loss); needs ≥ 2 identities."""
    size: int | None = None
    """Resize frames to size×size (e.g. 512² records, 256² first training phase); None keeps them."""

    @classmethod
    def tiny(cls) -> PairsConfig:
        """Tests."""
        return cls()

    @classmethod
    def small(cls) -> PairsConfig:
        """The 256² demo."""
        return cls(min_gap=2, size=256)

    @classmethod
    def paper(cls) -> PairsConfig:
        """512² training."""
        return cls(min_gap=2, size=512)


@dataclasses.dataclass(frozen=True, kw_only=True)
class WindowsConfig:
    """Stage-2 windows: W + K consecutive frames of a motion record."""

    window: int
    """W, frames generated per window."""
    context: int
    """K, previous-window frames used as condition."""
    stride: int | None = None
    """Distance between consecutive window starts in a record; None → W."""
    jitter: bool = True
    """Move each window start randomly within its stride (more distinct windows per epoch)."""

    @property
    def length(self) -> int:
        """W + K, frames per window."""
        return self.window + self.context

    @classmethod
    def tiny(cls) -> WindowsConfig:
        """Tests."""
        return cls(window=8, context=2)

    @classmethod
    def small(cls) -> WindowsConfig:
        """Demo: W=50, K=10 (FLOAT's window)."""
        return cls(window=50, context=10)

    @classmethod
    def paper(cls) -> WindowsConfig:
        """W=80, K=10 (Ditto's window; VASA-1 does not state its W, K)."""
        return cls(window=80, context=10)


# ----------------------------------------------------------------------------------------------- records


class RecordSource:
    """Random access to the records of a prepared dataset (its manifest folder or manifest.json).

    ``len(src)``; ``src[i]`` → ``clips.EncodedRecord`` (lazy); ``src.record(i)`` → decoded record. The
    ArrayRecord files open on first access, so the object pickles cheaply into worker processes.
    """

    def __init__(self, path: str | os.PathLike):
        self.manifest = clips.read_manifest(path)
        self.paths = clips.shard_paths(self.manifest, path)
        missing = [p for p in self.paths if not os.path.exists(p)]
        if missing:
            raise UserError(f"shard {missing[0]} listed in the manifest is missing; re-run `vasajax prep`")
        self.records: list[dict[str, Any]] = self.manifest["records"]
        names = sorted({r["identity"] for r in self.records})
        self.identity_names: list[str] = names
        index = {n: k for k, n in enumerate(names)}
        self.identity_ids = np.array([index[r["identity"]] for r in self.records], np.int32)
        self.num_frames = np.array([r["frames"] for r in self.records], np.int64)
        self._source = None

    def __len__(self) -> int:
        return len(self.records)

    def _src(self):
        if self._source is None:
            self._source = grain.sources.ArrayRecordDataSource(self.paths)
        return self._source

    def __getitem__(self, i: int) -> clips.EncodedRecord:
        entry = self.records[int(i)]
        src, r = self._src(), int(entry["record"])
        if entry.get("parts", 1) > 1:  # split frames: frame t is record r + 1 + t
            return clips.EncodedRecord(src[r], lambda t: src[r + 1 + t])
        return clips.EncodedRecord(src[r])

    def frames(self, i: int, indices: list[int]) -> np.ndarray:
        """Frames ``indices`` of clip ``i`` (uint8 N×S×S×3); with split frames the header is not read."""
        entry = self.records[int(i)]
        if entry.get("parts", 1) > 1:
            src, r = self._src(), int(entry["record"])
            return np.stack([clips._decode_image(src[r + 1 + int(t) % entry["frames"]]) for t in indices])
        return self[i].frames(indices)

    def record(self, i: int) -> clips.ClipRecord | clips.MotionRecord:
        """Decode record ``i`` completely."""
        return self[i].to_record()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_source": None}


# ----------------------------------------------------------------------------------------------- stage 1


LIP_LANDMARKS = (0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191, 267, 269,
                 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415)  # fmt: skip
"""MediaPipe face-mesh indices of the outer and inner lip contours."""


FLOW_LANDMARKS = LIP_LANDMARKS + (
    33, 133, 159, 145, 160, 144, 158, 153, 263, 362, 386, 374, 387, 373, 385, 380,  # eyelids and corners
    468, 473,  # irises
    1, 4, 98, 327,  # nose
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
    148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,  # face oval
)  # fmt: skip
"""MediaPipe face-mesh indices whose source → driver displacement supervises the pixel-warp flow
(``FaceLossConfig.flow_weight``): lips first (the motion that matters most for speech), eyes, nose, face oval."""


def mouth_box(landmarks_Nx478xK: np.ndarray, margin: float = 0.35) -> np.ndarray:
    """Mouth boxes ``N×4`` (x0, y0, x1, y1 in crop units [0, 1]) around the lip landmarks, grown by ``margin``
    of the mouth width on every side (so the chin and the nasolabial folds that move with speech are in it)."""
    lips = np.asarray(landmarks_Nx478xK, np.float32)[:, LIP_LANDMARKS, :2]
    lo, hi = lips.min(axis=1), lips.max(axis=1)
    pad = margin * (hi[:, :1] - lo[:, :1])
    return np.clip(np.concatenate([lo - pad, hi + pad], axis=1), 0.0, 1.0).astype(np.float32)


class _PairSampler:
    """random_map transform: record id → {source, driver, cross} frames and their labels."""

    def __init__(self, src: RecordSource, cfg: PairsConfig):
        self.src, self.cfg = src, cfg
        ids = src.identity_ids
        self.order = np.argsort(ids, kind="stable")
        sorted_ids = ids[self.order]
        self.start = np.searchsorted(sorted_ids, np.arange(len(src.identity_names)), side="left")
        self.stop = np.searchsorted(sorted_ids, np.arange(len(src.identity_names)), side="right")

    def _resize(self, f_NxSxSx3: np.ndarray) -> np.ndarray:
        size = self.cfg.size
        if size is None or size == f_NxSxSx3.shape[1]:
            return f_NxSxSx3
        from PIL import Image

        return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BILINEAR)) for f in f_NxSxSx3])

    def __call__(self, rec_id: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        rec_id = int(rec_id)
        enc = self.src[rec_id]
        T = enc.num_frames
        gap = min(self.cfg.min_gap, T - 1)
        i = int(rng.integers(T))
        far = [j for j in range(T) if abs(j - i) >= gap and j != i] or [i]
        j = int(far[rng.integers(len(far))])
        pose = enc.array("pose_Tx6")
        out = {
            "source": None,
            "driver": None,
            "source_pose_6": pose[i],
            "driver_pose_6": pose[j],
            "driver_gaze_2": enc.array("gaze_Tx2")[j],
            "source_blendshapes_52": enc.array("blendshapes_Tx52")[i],
            "driver_blendshapes_52": enc.array("blendshapes_Tx52")[j],
            "driver_distance": enc.array("distance_T")[j],
            "identity": np.int32(self.src.identity_ids[rec_id]),
            "record": np.int64(rec_id),
            "frame_ij_2": np.array([i, j], np.int32),
        }
        if "gt/landmarks_Tx478x3" in enc.array_names():  # tracker landmarks (prep and synth write them)
            lm = enc.array("gt/landmarks_Tx478x3")
            out["driver_mouth_4"] = mouth_box(lm[j : j + 1])[0]
            out["source_landmarks_Kx2"] = lm[i, FLOW_LANDMARKS, :2].astype(np.float32)
            out["driver_landmarks_Kx2"] = lm[j, FLOW_LANDMARKS, :2].astype(np.float32)
        sd = self._resize(enc.frames([i, j]))
        out["source"], out["driver"] = sd[0], sd[1]
        if self.cfg.cross_identity:
            ident = self.src.identity_ids[rec_id]
            lo, hi = self.start[ident], self.stop[ident]
            k = int(rng.integers(len(self.order) - (hi - lo)))
            other = int(self.order[k if k < lo else k + (hi - lo)])
            t = int(rng.integers(self.src.num_frames[other]))
            out["cross"] = self._resize(self.src.frames(other, [t]))[0]
            out["cross_identity"] = np.int32(self.src.identity_ids[other])
            out["cross_record"] = np.int64(other)
        return out


def face_pairs(path: str | os.PathLike, cfg: LoaderConfig, pairs: PairsConfig | None = None) -> grain.IterDataset:
    """Stage-1 pipeline over a clip-record dataset; iterate it for batches.

    Each batch is a dict: ``source``, ``driver`` (and ``cross``) uint8 B×S×S×3; ``source_pose_6``,
    ``driver_pose_6`` B×6, ``source_blendshapes_52``, ``driver_blendshapes_52`` B×52 (tracker), ``driver_gaze_2``
    B×2, ``driver_distance`` B; ``identity`` (and ``cross_identity``) int32 B (index into
    ``RecordSource.identity_names``); ``record`` (and ``cross_record``) int64 B;
    ``frame_ij_2`` int32 B×2 (the source and driver frame indices); ``driver_mouth_4`` float32 B×4 (the
    driver's mouth box, x0 y0 x1 y1 in [0, 1], from the tracker's lip landmarks; when the records have them);
    ``source_landmarks_Kx2``, ``driver_landmarks_Kx2`` float32 B×K×2 (x, y in [0, 1] of the crop: the
    ``FLOW_LANDMARKS`` of both frames, same condition).
    """
    pairs = pairs or PairsConfig()
    src = RecordSource(path)
    if src.manifest["kind"] != "clip":
        raise UserError(f"{path} holds {src.manifest['kind']} records; stage 1 needs clip records from `prep`")
    if len(src) == 0:
        raise UserError(f"{path} has no clips; check `dropped` in its manifest.json")
    if pairs.cross_identity and len(src.identity_names) < 2:
        raise UserError(
            f"{path} has one identity ({src.identity_names[0]!r}); cross-identity pairs need two or more "
            "(or set PairsConfig(cross_identity=False))"
        )
    return _pipeline(len(src), _PairSampler(src, pairs), cfg)


# ----------------------------------------------------------------------------------------------- stage 2


def window_index(num_frames_R: np.ndarray, wcfg: WindowsConfig) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``wcfg.length`` frames: (record id, start frame) per window; short records skipped."""
    stride = wcfg.stride or wcfg.window
    recs, starts = [], []
    for r, T in enumerate(np.asarray(num_frames_R)):
        if T < wcfg.length:
            continue
        s = np.arange(0, T - wcfg.length + 1, stride)
        recs.append(np.full(len(s), r))
        starts.append(s)
    if not recs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(recs).astype(np.int64), np.concatenate(starts).astype(np.int64)


class _WindowSampler:
    """random_map transform: window id → W+K frames of motion, audio features and conditions."""

    def __init__(self, src: RecordSource, wcfg: WindowsConfig):
        self.src, self.wcfg = src, wcfg
        self.rec_W, self.start_W = window_index(src.num_frames, wcfg)

    def __call__(self, win_id: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        r, s = int(self.rec_W[win_id]), int(self.start_W[win_id])
        L = self.wcfg.length
        T = int(self.src.num_frames[r])
        if self.wcfg.jitter:
            s = s + int(rng.integers(min(self.wcfg.stride or self.wcfg.window, T - L - s + 1)))
        enc = self.src[r]
        fpf = int(enc.meta["feats_per_frame"])
        return {
            "motion_LxM": enc.array("motion_TxM")[s : s + L],
            "audio_feat_LRxF": enc.array("audio_feat_UxF")[s * fpf : (s + L) * fpf],
            "gaze_Lx2": enc.array("gaze_Tx2")[s : s + L],
            "distance_L": enc.array("distance_T")[s : s + L],
            "emotion_52": enc.array("emotion_52"),
            "identity": np.int32(self.src.identity_ids[r]),
            "record": np.int64(r),
            "start": np.int64(s),
        }


def motion_windows(path: str | os.PathLike, cfg: LoaderConfig, windows: WindowsConfig) -> grain.IterDataset:
    """Stage-2 pipeline over a motion-record dataset; iterate it for batches.

    Each batch is a dict with L = W + K: ``motion_LxM`` B×L×M, ``audio_feat_LRxF`` B×(L·R)×F (R audio rows
    per frame), ``gaze_Lx2`` B×L×2, ``distance_L`` B×L, ``emotion_52`` B×52, ``identity`` / ``record`` /
    ``start`` B. The first K frames are the previous-window context.
    """
    src = RecordSource(path)
    if src.manifest["kind"] != "motion":
        raise UserError(f"{path} holds {src.manifest['kind']} records; stage 2 needs motion records")
    sampler = _WindowSampler(src, windows)
    if len(sampler.rec_W) == 0:
        raise UserError(f"no record in {path} has {windows.length} frames (W+K); use a shorter window or longer clips")
    return _pipeline(len(sampler.rec_W), sampler, cfg)


# ----------------------------------------------------------------------------------------------- common


def _shard(num_items: int, cfg: LoaderConfig) -> tuple[int, int]:
    index, count = cfg.shard_index, cfg.shard_count
    if index is None or count is None:
        import jax

        index = jax.process_index() if index is None else index
        count = jax.process_count() if count is None else count
    if not 0 <= index < count:
        raise ValueError(f"shard_index {index} not in [0, {count})")
    if num_items < count:
        raise UserError(f"{num_items} items cannot be split over {count} processes; prepare more data")
    return index, count


def _pipeline(num_items: int, sample, cfg: LoaderConfig) -> grain.IterDataset:
    index, count = _shard(num_items, cfg)
    ds = grain.MapDataset.range(num_items)[index::count]
    if cfg.equal_shards:
        ds = ds[: num_items // count]
    if cfg.shuffle:
        ds = ds.shuffle(seed=cfg.seed)
    ds = ds.repeat(cfg.num_epochs)
    ds = ds.random_map(sample, seed=(cfg.seed * 7919 + 1 + index) % (2**32))
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=cfg.read_threads, prefetch_buffer_size=cfg.prefetch))
    it = it.batch(cfg.batch_size, drop_remainder=cfg.drop_remainder)
    if cfg.worker_count > 0:
        _absl_flags_parsed()
        it = it.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=cfg.worker_count, per_worker_buffer_size=cfg.worker_buffer_size)
        )
    return it


def _absl_flags_parsed() -> None:
    """grain's worker processes read absl flags; outside an absl app they must be marked parsed."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def state_to_json(state: Mapping[str, Any]) -> str:
    """An iterator state (``it.get_state()``) as JSON text, e.g. to store beside a checkpoint."""
    return json.dumps(state, sort_keys=True)


def state_from_json(text: str) -> dict[str, Any]:
    """Inverse of ``state_to_json``; pass the result to ``it.set_state`` of a freshly built iterator."""
    return json.loads(text)
