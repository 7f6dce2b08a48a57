"""Prepare real talking-face videos as clip records: ``vasajax prep INPUT OUTPUT`` (VASA-1 §4, data).

VASA-1 trains its face latent space on VoxCeleb2 after discarding clips with several people or low quality
(§4), and its motion generator on VoxCeleb2 plus ~3.5K subjects of high-resolution talking video. This
module turns such videos into the fixed-length clip records of ``vasajax.data.clips``:

1. list the videos (a plain folder, or the VoxCeleb2 / HDTF / CelebV-HQ layouts, which give the identity);
2. per video: decode the audio as 16 kHz mono float32 (``media.read_audio``; a video without sound is
   dropped as ``no_audio``); **pass 1** streams frames resampled to 25 fps (``media.iter_frames(fps=25)``,
   ffmpeg's ``-vf fps=25``; never the whole video in memory) through MediaPipe FaceLandmarker in VIDEO mode
   and keeps only the landmarks; frames are classified (no face / several faces / face too small) and the
   track is cut where the crop jumps (tracking lost); each usable run of frames gets smoothed crops
   (``facetrack.crop.smooth_crops``) and is cut into clips of T frames; **pass 2** streams the frames again and
   crops only the frames inside clips (``facetrack.crop.apply_crop``) to S×S;
3. labels per frame from ``facetrack.labels.frame_labels`` (pose, gaze, distance, blendshapes; landmarks and the
   crop are kept in the record's ``ground_truth`` dict as ``landmarks_Tx478x3`` (crop units, float16) and
   ``crop_Tx3`` (cx, cy, side in source pixels)); emotion offset from ``facetrack.labels.clip_labels``;
4. write ArrayRecord shards plus a JSON manifest with totals and what was dropped and why.

Work is split into *units* of ``videos_per_shard`` consecutive videos (sorted by path). A unit writes its
shards ``clips-UUUUU-NNNNN.array_record`` and then, last, a sidecar ``clips-UUUUU.json`` (atomic): a unit
with a sidecar is finished and skipped on the next run (resume after a crash or a pre-empted SLURM job).
``--workers`` runs units in local processes; ``--shard-index/--num-shards`` takes every n-th unit (SLURM
array jobs, see ``data_prep/prep_slurm.sbatch``). When every unit of the dataset is finished, whichever job
finishes last merges the sidecars into ``manifest.json`` (``--merge-only`` does just that).

A video ffmpeg cannot read (``media.MediaError``) is logged and counted as ``unreadable``, never fatal. Audio
and video are assumed to start together (true for VoxCeleb2/HDTF/CelebV-HQ mp4s; a container with an audio
delay would need an ``-itsoffset``).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import json
import logging
import multiprocessing
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vasajax import media
from vasajax.data import clips
from vasajax.errors import UserError
from vasajax.facetrack.crop import CropConfig, apply_crop, crop_params, smooth_crops
from vasajax.facetrack.labels import clip_labels, frame_labels
from vasajax.facetrack.tracker import FaceTracker

log = logging.getLogger("vasajax.prep")

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".flv", ".mpg", ".mpeg", ".wmv", ".ts")
"""File name endings treated as videos."""
LAYOUTS = ("folder", "voxceleb2", "hdtf", "celebvhq")
"""Input layouts understood by ``list_videos`` (they differ only in how the identity is read)."""
FRAME_REASONS = ("no_face", "several_faces", "face_too_small")
"""Why a single frame is unusable."""

# Per-frame status codes of ``classify_frames``.
OK, NO_FACE, SEVERAL_FACES, TOO_SMALL = 0, 1, 2, 3


@dataclasses.dataclass(frozen=True, kw_only=True)
class PrepConfig:
    """What a prepared clip is and which frames are good enough."""

    size: int = 256
    """S, side of the square face crops in pixels."""
    clip_frames: int = 100
    """T, frames per clip (at 25 fps: T/25 s). Stage-2 windows W+K must fit in a motion record."""
    crop_scale: float = 1.35
    """Crop side relative to the FFHQ alignment crop (``facetrack.crop.CropConfig.scale``)."""
    crop_offset_y: float = 0.05
    """Vertical shift of the crop centre as a fraction of its side (``facetrack.crop.CropConfig.offset_y``)."""
    smooth_sigma_s: float | None = 0.5
    """Temporal smoothing of the crop (seconds, Gaussian); None = one fixed crop per usable run of frames."""
    min_face_frac: float = 0.5
    """Drop frames whose crop side in the source is below ``min_face_frac × size`` px (upsampled too much)."""
    max_jump: float = 0.25
    """Tracking is lost when the crop moves more than this fraction of its side, or its side changes by more
    than this ratio, between consecutive frames; clips never span such a cut."""
    max_faces: int = 2
    """Faces the landmarker looks for per frame (2 is enough to notice a second person)."""
    second_face_ratio: float = 0.2
    """A second face whose area is at least this fraction of the main face's makes the frame ambiguous."""
    min_confidence: float = 0.5
    """MediaPipe detection/presence/tracking confidence."""
    codec: str = "jpeg"
    """Frame codec in the records: "jpeg" (default, ~10× smaller), "png" (lossless) or "raw"."""
    jpeg_quality: int = 95
    """JPEG quality when ``codec == "jpeg"``."""
    split_frames: bool = True
    """Store each frame as its own ArrayRecord record (stage 1 then reads 2 frames, not the whole clip);
    ignored for ``codec == "raw"``."""
    max_clips_per_video: int | None = None
    """Keep at most this many clips per video (None: all), to balance long videos against short ones."""
    videos_per_shard: int = 64
    """Videos per work unit (one resumable unit of shards + sidecar)."""
    shard_max_bytes: int = 1 << 30
    """Start a new ArrayRecord file within a unit past this size."""

    @classmethod
    def tiny(cls) -> PrepConfig:
        """Tests: 64² crops, 10-frame clips."""
        return cls(size=64, clip_frames=10, videos_per_shard=4, min_face_frac=0.25)

    @classmethod
    def small(cls) -> PrepConfig:
        """The 256² demo: 4-second clips."""
        return cls(size=256, clip_frames=100)

    @classmethod
    def paper(cls) -> PrepConfig:
        """512² as in VASA-1 / MegaPortraits' second phase: 4-second clips."""
        return cls(size=512, clip_frames=100, videos_per_shard=32)


# ----------------------------------------------------------------------------------------------- listing


def identity_of(rel: Path, layout: str) -> str:
    """The identity label of a video at ``rel`` (relative to the input root) under ``layout``.

    - folder: the parent folder (``alice/talk1.mp4`` → ``alice``); files at the top level are their own
      identity (the file stem).
    - voxceleb2: the ``idNNNNN`` path part (``dev/mp4/id00012/21Uxsk56VDQ/00001.mp4`` → ``id00012``).
    - hdtf: the stem without a trailing ``_NNN`` (``WDA_BarackObama_000.mp4`` → ``WDA_BarackObama``).
    - celebvhq: the YouTube id, the stem without a trailing ``_N`` (``-0e4tlhsjW0_0.mp4`` → ``-0e4tlhsjW0``);
      CelebV-HQ has no person labels, so this is approximate (one person per YouTube video).
    """
    if layout == "voxceleb2":
        for part in rel.parts[:-1]:
            if re.fullmatch(r"id\d+", part):
                return part
        return identity_of(rel, "folder")
    if layout in ("hdtf", "celebvhq"):
        return re.sub(r"_\d+$", "", rel.stem)
    if layout == "folder":
        return rel.parent.as_posix() if rel.parent != Path(".") else rel.stem
    raise UserError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")


def list_videos(root: str | os.PathLike, layout: str = "folder") -> list[tuple[str, str]]:
    """All videos under ``root`` (recursively, sorted) as (relative posix path, identity)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"input folder {root} does not exist")
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(VIDEO_EXTENSIONS) and not name.startswith("."):
                rel = (Path(dirpath) / name).relative_to(root)
                out.append((rel.as_posix(), identity_of(rel, layout)))
    return sorted(out)


# ----------------------------------------------------------------------------------------------- segmentation


def classify_frames(
    num_faces_T: np.ndarray, second_ratio_T: np.ndarray, params_Tx3: np.ndarray, cfg: PrepConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame status (OK / NO_FACE / SEVERAL_FACES / TOO_SMALL) and track cuts.

    Args:
      num_faces_T: faces found per frame.
      second_ratio_T: area of the second face / area of the first (0 when there is one face).
      params_Tx3: crop (cx, cy, side) of the main face per frame (NaN without a face).
      cfg: thresholds.

    Returns:
      status_T int8, and cut_T bool: True where tracking is lost between frame t−1 and t (both OK).
    """
    T = len(num_faces_T)
    status = np.full(T, OK, np.int8)
    status[num_faces_T == 0] = NO_FACE
    several = (num_faces_T >= 2) & (second_ratio_T >= cfg.second_face_ratio)
    status[several] = SEVERAL_FACES
    side = params_Tx3[:, 2]
    small = (status == OK) & ~(side >= cfg.min_face_frac * cfg.size)
    status[small] = TOO_SMALL
    cut = np.zeros(T, bool)
    if T > 1:
        ok_pair = (status[1:] == OK) & (status[:-1] == OK)
        d = params_Tx3[1:] - params_Tx3[:-1]
        move = np.hypot(d[:, 0], d[:, 1]) / np.maximum(params_Tx3[:-1, 2], 1e-6)
        scale = np.abs(np.log(np.maximum(params_Tx3[1:, 2], 1e-6) / np.maximum(params_Tx3[:-1, 2], 1e-6)))
        cut[1:] = ok_pair & ((move > cfg.max_jump) | (scale > np.log1p(cfg.max_jump)))
    return status, cut


def usable_runs(status_T: np.ndarray, cut_T: np.ndarray) -> list[tuple[int, int]]:
    """Maximal [start, stop) runs of OK frames not crossing a cut."""
    runs, start = [], None
    for t, s in enumerate(status_T):
        if s == OK and start is not None and cut_T[t]:
            runs.append((start, t))
            start = t
        elif s == OK and start is None:
            start = t
        elif s != OK and start is not None:
            runs.append((start, t))
            start = None
    if start is not None:
        runs.append((start, len(status_T)))
    return runs


def clip_starts(runs: Sequence[tuple[int, int]], T: int, limit: int | None = None) -> list[tuple[int, int]]:
    """Non-overlapping clips of T frames: (run index, start frame), in time order, at most ``limit``."""
    out = []
    for r, (a, b) in enumerate(runs):
        out += [(r, s) for s in range(a, b - T + 1, T)]
    return out if limit is None else out[:limit]


# ----------------------------------------------------------------------------------------------- one video


@dataclasses.dataclass
class VideoResult:
    """What happened to one video (a sidecar entry)."""

    source: str
    identity: str
    status: str = "kept"
    """"kept", or the reason it yielded no clip: unreadable, no_audio, too_short, no_face, several_faces,
    face_too_small, tracking_lost."""
    clips: int = 0
    frames: int = 0
    frame_reasons: dict[str, int] = dataclasses.field(default_factory=dict)
    cuts: int = 0
    message: str = ""


def _default_tracker(cfg: PrepConfig):

    return FaceTracker(mode="video", max_faces=cfg.max_faces, min_confidence=cfg.min_confidence)


def process_video(
    path: str | os.PathLike,
    source: str,
    identity: str,
    cfg: PrepConfig,
    writer: clips.ShardWriter,
    *,
    make_tracker: Callable[[PrepConfig], Any] = _default_tracker,
) -> VideoResult:
    """Turn one video into clip records appended to ``writer``; never raises for a bad video."""

    res = VideoResult(source=source, identity=identity)
    T, S = cfg.clip_frames, cfg.size
    crop_cfg = CropConfig(size=S, scale=cfg.crop_scale, offset_y=cfg.crop_offset_y)
    try:
        audio = media.read_audio(path)
        obs: list[Any] = []
        nfaces, ratio, params = [], [], []
        with make_tracker(cfg) as tracker:
            for t, frame in enumerate(media.iter_frames(path, fps=clips.FPS)):
                faces = tracker.detect(frame, timestamp_ms=t * 1000 // clips.FPS)
                nfaces.append(len(faces))
                ratio.append(faces[1].area / max(faces[0].area, 1e-6) if len(faces) > 1 else 0.0)
                params.append(crop_params(faces[0].landmarks, crop_cfg) if faces else np.full(3, np.nan))
                obs.append(faces[0] if faces else None)
    except media.NoAudioError:
        res.status = "no_audio"
        return res
    except Exception as e:  # noqa: BLE001 - a video ffmpeg cannot read or decode is skipped
        if isinstance(e, UserError) and not isinstance(e, media.MediaError):
            raise  # a broken model file or similar: every video would fail
        res.status, res.message = "unreadable", f"{type(e).__name__}: {str(e).strip()[:300]}"
        log.warning("skipping %s: %s", source, res.message)
        return res
    n = len(obs)
    res.frames = n
    # Audio must cover the frames: trim frames that have no audio under them.
    n_usable = min(n, audio.size // clips.SAMPLES_PER_FRAME)
    if n == 0:
        res.status, res.message = "unreadable", "no frames decoded"
        log.warning("skipping %s: no frames decoded", source)
        return res
    if n_usable < T:
        res.status = "too_short"
        return res
    status, cut = classify_frames(np.array(nfaces), np.array(ratio), np.array(params, np.float64), cfg)
    counts = collections.Counter(int(s) for s in status[:n_usable] if s != OK)
    res.frame_reasons = {FRAME_REASONS[k - 1]: v for k, v in sorted(counts.items())}
    res.cuts = int(cut[:n_usable].sum())
    runs = usable_runs(status[:n_usable], cut[:n_usable])
    starts = clip_starts(runs, T, cfg.max_clips_per_video)
    if not starts:
        if counts:
            res.status = FRAME_REASONS[counts.most_common(1)[0][0] - 1]
        else:
            res.status = "tracking_lost" if res.cuts else "too_short"
        return res
    smoothed = {}
    for r in sorted({r for r, _ in starts}):
        a, b = runs[r]
        smoothed[r] = smooth_crops(np.array(params[a:b]), fps=clips.FPS, sigma_s=cfg.smooth_sigma_s)
    crop_of = {}
    for r, s in starts:
        a = runs[r][0]
        for t in range(s, s + T):
            crop_of[t] = smoothed[r][t - a]
    # Pass 2: crop only the frames inside clips, one clip in memory at a time.
    pending = {s: (r, []) for r, s in starts}
    order = sorted(pending)
    k = 0
    try:
        for t, frame in enumerate(media.iter_frames(path, fps=clips.FPS)):
            if k >= len(order):
                break
            s = order[k]
            if t < s:
                continue
            pending[s][1].append(apply_crop(frame, crop_of[t], S, crop_cfg.border))
            if t == s + T - 1:
                _write_clip(writer, pending.pop(s)[1], obs[s : s + T], crop_of, s, k, audio, res, cfg)
                k += 1
    except Exception as e:  # noqa: BLE001 - a video that decoded once but fails now: keep what was written
        res.message = f"second pass stopped: {type(e).__name__}: {str(e).strip()[:200]}"
        log.warning("%s: %s", source, res.message)
    if res.clips == 0:
        res.status = "unreadable"
    return res


def _write_clip(writer, frames, obs, crop_of, s, k, audio, res: VideoResult, cfg: PrepConfig) -> None:

    T = cfg.clip_frames
    crops = np.array([crop_of[t] for t in range(s, s + T)], np.float32)
    labels = clip_labels([frame_labels(o, c) for o, c in zip(obs, crops)])
    spf = clips.SAMPLES_PER_FRAME
    rec = clips.ClipRecord(
        frames_TxSxSx3=np.stack(frames),
        audio_N=np.ascontiguousarray(audio[s * spf : (s + T) * spf], np.float32),
        pose_Tx6=labels["pose"].astype(np.float32),
        gaze_Tx2=labels["gaze"].astype(np.float32),
        distance_T=labels["distance"].astype(np.float32).reshape(T),
        blendshapes_Tx52=labels["blendshapes"].astype(np.float32),
        emotion_52=labels["emotion"].astype(np.float32),
        identity=res.identity,
        source=res.source,
        clip_index=k,
        start_frame=int(s),
        ground_truth={
            "landmarks_Tx478x3": labels["landmarks"].astype(np.float16),
            "gaze_head_Tx2": labels["gaze_head"].astype(np.float32),
            "crop_Tx3": crops,
        },
    )
    split = cfg.split_frames and cfg.codec != "raw"
    writer.write_record(rec, codec=cfg.codec, quality=cfg.jpeg_quality, split_frames=split)
    res.clips += 1


# ----------------------------------------------------------------------------------------------- units


def unit_name(u: int) -> str:
    """File prefix of work unit ``u``."""
    return f"clips-{u:05d}"


def plan_units(videos: Sequence[tuple[str, str]], per_unit: int) -> list[list[tuple[str, str]]]:
    """Consecutive groups of ``per_unit`` videos (the same on every SLURM array task)."""
    return [list(videos[i : i + per_unit]) for i in range(0, len(videos), per_unit)]


def unit_done(out: Path, u: int, videos: Sequence[tuple[str, str]]) -> dict[str, Any] | None:
    """The sidecar of unit ``u`` if it is finished for exactly these videos and its shards exist."""
    side = out / f"{unit_name(u)}.json"
    try:
        info = json.loads(side.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if [list(v) for v in videos] != info.get("videos"):
        return None
    if not all((out / s["path"]).exists() for s in info["shards"]):
        return None
    return info


def run_unit(
    u: int,
    videos: Sequence[tuple[str, str]],
    root: str,
    out: str,
    cfg: PrepConfig,
    make_tracker: Callable[[PrepConfig], Any] = _default_tracker,
) -> dict[str, Any]:
    """Process one unit: shards, then its sidecar (atomic). Returns the sidecar."""
    out_p = Path(out)
    for stale in out_p.glob(f"{unit_name(u)}-*"):  # leftovers of an interrupted attempt
        stale.unlink()
    t0 = time.perf_counter()
    results = []
    with clips.ShardWriter(out_p, unit_name(u), max_bytes=cfg.shard_max_bytes) as w:
        for rel, ident in videos:
            results.append(process_video(Path(root) / rel, rel, ident, cfg, w, make_tracker=make_tracker))
    info = {
        "unit": u,
        "videos": [list(v) for v in videos],
        "shards": w.shards,
        "results": [dataclasses.asdict(r) for r in results],
        "seconds": round(time.perf_counter() - t0, 3),
    }
    clips.write_manifest(out_p / f"{unit_name(u)}.json", info)  # atomic JSON write
    return info


def _run_unit_star(args) -> dict[str, Any]:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_unit(*args)


# ----------------------------------------------------------------------------------------------- driver


def summarize_results(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Totals over sidecar results: videos kept/dropped by reason, frames dropped by reason."""
    videos = collections.Counter(r["status"] for r in results)
    frames = collections.Counter()
    for r in results:
        frames.update(r["frame_reasons"])
    return {
        "videos": len(results),
        "videos_kept": videos.get("kept", 0),
        "videos_dropped": {k: v for k, v in sorted(videos.items()) if k != "kept"},
        "frames_decoded": sum(r["frames"] for r in results),
        "frames_dropped": dict(sorted(frames.items())),
        "tracking_cuts": sum(r["cuts"] for r in results),
        "clips": sum(r["clips"] for r in results),
    }


def merge(out: str | os.PathLike, units: Sequence[Sequence[tuple[str, str]]], config: dict[str, Any]) -> dict:
    """Merge finished sidecars into ``manifest.json``; returns the manifest (raises if a unit is missing)."""
    out = Path(out)
    shards, results = [], []
    for u, videos in enumerate(units):
        info = unit_done(out, u, videos)
        if info is None:
            raise UserError(f"unit {u} ({unit_name(u)}) is not finished; run the remaining shards first")
        shards += info["shards"]
        results += info["results"]
    summary = summarize_results(results)
    dropped = {
        **summary["videos_dropped"],
        **{f"frames_{k}": v for k, v in summary["frames_dropped"].items()},
    }
    manifest = clips.make_manifest("clip", shards, dropped=dropped, config=config, summary=summary)
    clips.write_manifest(out / "manifest.json", manifest)
    return manifest


def prepare(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    cfg: PrepConfig,
    *,
    layout: str = "folder",
    workers: int = 1,
    shard_index: int = 0,
    num_shards: int = 1,
    limit: int | None = None,
    progress: bool = True,
    make_tracker: Callable[[PrepConfig], Any] = _default_tracker,
) -> dict[str, Any]:
    """Prepare this job's units (skipping finished ones); merge the manifest when all units are done.

    Returns a report: ``units`` (this job's), ``skipped`` (already finished), ``summary`` (this job's
    videos), ``manifest`` (path, or None while other jobs are still running).
    """
    if not 0 <= shard_index < num_shards:
        raise UserError(f"--shard-index {shard_index} must be in [0, --num-shards {num_shards})")
    videos = list_videos(input_dir, layout)
    if limit is not None:
        videos = videos[:limit]
    if not videos:
        raise UserError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) under {input_dir}")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    units = plan_units(videos, cfg.videos_per_shard)
    mine = [u for u in range(len(units)) if u % num_shards == shard_index]
    todo = [u for u in mine if unit_done(out, u, units[u]) is None]
    infos = [unit_done(out, u, units[u]) for u in mine if u not in todo]
    args = [(u, units[u], str(input_dir), str(out), cfg, make_tracker) for u in todo]
    bar = _progress(len(mine), initial=len(mine) - len(todo), enabled=progress)
    try:
        if workers <= 1 or len(todo) <= 1:
            for a in args:
                infos.append(run_unit(*a))
                _tick(bar, infos)
        else:
            ctx = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(min(workers, len(todo)), mp_context=ctx) as pool:
                for info in pool.map(_run_unit_star, args):
                    infos.append(info)
                    _tick(bar, infos)
    finally:
        if bar is not None:
            bar.close()
    report: dict[str, Any] = {
        "units": len(mine),
        "skipped": len(mine) - len(todo),
        "summary": summarize_results([r for i in infos for r in i["results"]]),
        "manifest": None,
    }
    if all(unit_done(out, u, units[u]) is not None for u in range(len(units))):
        config = {**dataclasses.asdict(cfg), "layout": layout, "input": str(Path(input_dir).resolve())}
        merge(out, units, config)
        report["manifest"] = str(out / "manifest.json")
    return report


def _progress(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="unit", desc="prep", dynamic_ncols=True)


def _tick(bar, infos) -> None:
    if bar is not None:
        bar.update(1)
        bar.set_postfix(clips=sum(r["clips"] for i in infos for r in i["results"]))


def format_report(report: dict[str, Any]) -> str:
    """Human-readable summary of ``prepare``'s report."""
    s = report["summary"]
    lines = [
        f"units: {report['units']} for this job ({report['skipped']} already done)",
        f"videos: {s['videos']}, kept {s['videos_kept']}, dropped {sum(s['videos_dropped'].values())}"
        + (f" ({', '.join(f'{k} {v}' for k, v in s['videos_dropped'].items())})" if s["videos_dropped"] else ""),
        f"frames: {s['frames_decoded']} decoded; dropped "
        + (", ".join(f"{k} {v}" for k, v in s["frames_dropped"].items()) or "none")
        + f"; tracking cuts {s['tracking_cuts']}",
        f"clips written: {s['clips']}",
        f"manifest: {report['manifest']}" if report["manifest"] else "manifest: waiting for the other shards",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``vasajax prep``."""
    p = argparse.ArgumentParser(
        prog="vasajax prep",
        description="Cut talking-face videos into cropped, labelled 25 fps clips in ArrayRecord shards.",
    )
    p.add_argument("input", help="folder of videos (searched recursively)")
    p.add_argument("output", help="output folder (shards, sidecars, manifest.json)")
    p.add_argument("--layout", choices=LAYOUTS, default="folder", help="how identities are read from paths")
    p.add_argument("--preset", choices=("tiny", "small", "paper"), default="small", help="PrepConfig preset")
    p.add_argument("--size", type=int, help="crop side S in pixels (overrides the preset)")
    p.add_argument("--clip-frames", type=int, help="frames per clip T (overrides the preset)")
    p.add_argument("--codec", choices=("jpeg", "png", "raw"), help="frame codec (overrides the preset)")
    p.add_argument("--videos-per-shard", type=int, help="videos per resumable work unit")
    p.add_argument("--max-clips-per-video", type=int, help="keep at most this many clips per video")
    p.add_argument("--workers", type=int, default=1, help="local worker processes")
    p.add_argument("--shard-index", type=int, default=None, help="this job's index (default $SLURM_ARRAY_TASK_ID or 0)")
    p.add_argument("--num-shards", type=int, default=None, help="number of jobs (default $SLURM_ARRAY_TASK_COUNT or 1)")
    p.add_argument("--limit", type=int, help="only the first N videos (a quick look)")
    p.add_argument("--merge-only", action="store_true", help="only merge finished units into manifest.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="log every skipped video")
    return p


def config_from_args(a: argparse.Namespace) -> PrepConfig:
    """The preset with the command line's overrides."""
    cfg = getattr(PrepConfig, a.preset)()
    over = {
        "size": a.size,
        "clip_frames": a.clip_frames,
        "codec": a.codec,
        "videos_per_shard": a.videos_per_shard,
        "max_clips_per_video": a.max_clips_per_video,
    }
    return dataclasses.replace(cfg, **{k: v for k, v in over.items() if v is not None})


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``vasajax prep``; returns the exit status (``UserError`` propagates for the CLI to print)."""
    a = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if a.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    cfg = config_from_args(a)
    env = os.environ
    slurm_index = int(env.get("SLURM_ARRAY_TASK_ID", 0)) - int(env.get("SLURM_ARRAY_TASK_MIN", 0))
    shard_index = a.shard_index if a.shard_index is not None else slurm_index
    num_shards = a.num_shards if a.num_shards is not None else int(env.get("SLURM_ARRAY_TASK_COUNT", 1))
    if a.merge_only:
        videos = list_videos(a.input, a.layout)[: a.limit]
        config = {**dataclasses.asdict(cfg), "layout": a.layout, "input": str(Path(a.input).resolve())}
        m = merge(a.output, plan_units(videos, cfg.videos_per_shard), config)
        print(f"manifest: {Path(a.output) / 'manifest.json'} ({m['totals']['records']} clips)")
        return 0
    report = prepare(
        a.input,
        a.output,
        cfg,
        layout=a.layout,
        workers=a.workers,
        shard_index=shard_index,
        num_shards=num_shards,
        limit=a.limit,
        progress=not a.no_progress and sys.stderr.isatty(),
    )
    print(format_report(report))
    return 0


if __name__ == "__main__":
    from vasajax.cli import run

    raise SystemExit(run(cli_main))
