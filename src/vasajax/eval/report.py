"""Evaluate talking-face videos: track each one, compute VASA-1's metrics (§4.2, tables 1–5), write a table.

Per video: MediaPipe tracking in video mode (``vasajax.facetrack``) gives per-frame landmarks, head pose,
gaze and head distance (the whole frame is the crop, as generated frames are). From them and the speech:

| column | what | source |
|---|---|---|
| ``av_offset`` / ``av_conf`` / ``av_corr`` | mouth opening vs. audio energy: offset, confidence, r | ``lipsync.py`` |
| ``phon_corr`` | mouth opening vs. phoneme timing (when the timings are known) | ``lipsync.py`` |
| ``sync_c`` / ``sync_d`` / ``sync_offset`` | SyncNet confidence / distance (user-supplied weights) | ``syncnet.py`` |
| ``capp`` | audio-pose alignment score (a CAPP checkpoint) | ``capp.py`` |
| ``delta_p`` | pose variation intensity ΔP, degrees (pooled over frames in the summary) | ``pose.py`` |
| ``gaze_err`` / ``dist_err`` | E_g (degrees) and E_d vs. the requested conditions | ``pose.py`` |
| ``id_cos`` / ``id_dist`` | identity similarity portrait ↔ frames (dlib ResNet, optional) | ``identity.py`` |
| ``fvd25`` | Fréchet video distance on 25-frame clips vs. real videos (user I3D) | ``fvd.py`` |

:func:`evaluate_videos` returns ``{"rows": [...], "summary": {...}, "notes": [...]}``; :func:`write_report`
writes it as JSON and markdown. Optional metrics whose model is absent are left out with a note that says
what to supply.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from vasajax import media
from vasajax.errors import UserError
from vasajax.eval import lipsync, pose
from vasajax.facetrack.labels import gaze_from_landmarks, head_distance, pose_from_matrix
from vasajax.facetrack.tracker import FaceTracker

VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".avi", ".webm")
AUDIO_EXTS = (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".aac", ".mp4")
COLUMNS = ("av_offset", "av_conf", "av_corr", "phon_corr", "sync_c", "sync_d", "sync_offset", "capp",
           "delta_p", "gaze_err", "dist_err", "id_cos", "id_dist", "face_frames")  # fmt: skip
HIGHER_IS_BETTER = {"av_conf": True, "av_corr": True, "phon_corr": True, "sync_c": True, "sync_d": False,
                    "capp": True, "gaze_err": False, "dist_err": False, "id_cos": True, "id_dist": False,
                    "fvd25": False}  # fmt: skip


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Track:
    """Per-frame measurements of one video (NaN rows where no face was found)."""

    landmarks: np.ndarray
    """T×478×3 image pixels."""
    pose: np.ndarray
    """T×6 [yaw, pitch, roll (radians), tx, ty, tz (cm)] (``facetrack.labels.pose_from_matrix``)."""
    gaze: np.ndarray
    """T×2 camera-space (θ, φ) radians — the quantity the motion model is conditioned on."""
    gaze_head: np.ndarray
    """T×2 eye-in-head (θ, φ) radians."""
    distance: np.ndarray
    """T normalized head distance with the whole frame as the crop."""
    valid: np.ndarray
    """T bool: a face was found."""


def read_video(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Frames (T×H×W×3 uint8 RGB) and frame rate (25 when the file does not say) of a video file, through
    ``vasajax.media``; a missing, unreadable or empty video is a one-line ``UserError``."""
    frames = media.read_frames(path)
    if not len(frames):
        raise UserError(f"video {path} has no frames")
    return frames, media.probe(path).fps or 25.0


def track_video(frames_TxHxWx3: np.ndarray, fps: float = 25.0, tracker: Any | None = None) -> Track:
    """Track the largest face through the frames (MediaPipe video mode) and measure pose/gaze/distance."""

    frames = np.asarray(frames_TxHxWx3)
    t, h, w = frames.shape[:3]
    nan = np.float32(np.nan)
    lms = np.full((t, 478, 3), nan, np.float32)
    poses, gazes, heads = np.full((t, 6), nan, np.float32), np.full((t, 2), nan, np.float32), np.full((t, 2), nan)
    dist, valid = np.full(t, nan, np.float32), np.zeros(t, bool)
    whole = (w / 2, h / 2, float(min(h, w)))
    own = tracker is None
    tracker = tracker or FaceTracker(mode="video", max_faces=1, fps=fps)
    try:
        if not own:
            tracker.reset()
        for i, frame in enumerate(frames):
            faces = tracker.detect(frame, timestamp_ms=int(round(i * 1000.0 / fps)))
            if not faces:
                continue
            f = faces[0]
            cam, head = gaze_from_landmarks(f.landmarks, f.matrix)
            lms[i], poses[i], gazes[i], heads[i] = f.landmarks, pose_from_matrix(f.matrix), cam, head
            dist[i], valid[i] = head_distance(f.landmarks, whole), True
    finally:
        if own:
            tracker.close()
    return Track(landmarks=lms, pose=poses, gaze=gazes, gaze_head=heads.astype(np.float32), distance=dist, valid=valid)


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def evaluate_video(
    track: Track,
    wave_16k: np.ndarray,
    *,
    fps: float = 25.0,
    conditions: Mapping[str, Any] | None = None,
    phonemes: Sequence[tuple[float, float]] | None = None,
    extra: Sequence[Callable[[Track, np.ndarray], Mapping[str, float]]] = (),
) -> dict[str, float | None]:
    """Metrics of one tracked video (see the module table). ``conditions``: ``gaze`` ((2,) or T×2, camera
    space), ``gaze_head`` (same, eye-in-head) and/or ``distance`` (number or T) that were requested.
    ``extra``: callables (track, wave) → more columns (SyncNet, CAPP, identity)."""
    row: dict[str, float | None] = {"frames": float(len(track.valid)), "face_frames": float(track.valid.sum())}
    if track.valid.sum() < 3:
        return row
    row.update(lipsync.lip_sync(lipsync.mouth_opening(track.landmarks), wave_16k, fps=fps, phonemes=phonemes))
    row["delta_p"] = pose.delta_p(track.pose)
    cond = dict(conditions or {})
    if "gaze" in cond:
        row["gaze_err"] = pose.gaze_error_deg(np.asarray(cond["gaze"], np.float64), track.gaze)
    elif "gaze_head" in cond:
        row["gaze_err"] = pose.gaze_error_deg(np.asarray(cond["gaze_head"], np.float64), track.gaze_head)
    if "distance" in cond:
        row["dist_err"] = pose.distance_error(np.asarray(cond["distance"], np.float64), track.distance)
    for fn in extra:
        row.update(fn(track, wave_16k))
    return {k: _finite(v) for k, v in row.items()}


def summarize(rows: Sequence[Mapping[str, Any]], tracks: Sequence[Track] | None = None) -> dict[str, float | None]:
    """Mean of each column over videos; ΔP pooled over all frame pairs of all videos (as the paper says)."""
    out: dict[str, float | None] = {"videos": float(len(rows))}
    keys = [k for k in COLUMNS if any(r.get(k) is not None for r in rows)]
    for k in keys:
        vals = [r[k] for r in rows if r.get(k) is not None]
        out[k] = float(np.mean(vals)) if vals else None
    if tracks is not None and "delta_p" in out:
        out["delta_p"] = _finite(pose.delta_p([t.pose for t in tracks]))
    if "av_offset" in out:
        offs = [r["av_offset"] for r in rows if r.get("av_offset") is not None]
        out["av_offset"] = float(np.median(offs)) if offs else None
    return out


def _find(folder: pathlib.Path, stem: str, exts: Sequence[str]) -> pathlib.Path | None:
    for ext in exts:
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


def _phonemes_of(meta_path: pathlib.Path | None) -> list[tuple[float, float]] | None:
    if meta_path is None:
        return None
    meta = json.loads(meta_path.read_text())
    if "phonemes" not in meta:
        return None
    return [(p["start_s"], p["end_s"]) for p in meta["phonemes"] if p.get("name") != "_"]


def load_conditions(path: str | os.PathLike | None) -> dict[str, dict[str, Any]]:
    """``{video stem: {"gaze": [θ, φ] | T×2, "gaze_head": ..., "distance": d | T}}`` from a JSON file."""
    if path is None:
        return {}
    p = pathlib.Path(path)
    if not p.is_file():
        raise UserError(f"conditions file {p} not found; pass a JSON object keyed by video name")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"conditions file {p} is not valid JSON ({e.msg}, line {e.lineno})") from e
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise UserError(f'conditions file {p} must map video names to objects, e.g. {{"clip0": {{"gaze": [0, 0]}}}}')
    return {pathlib.Path(k).stem: v for k, v in data.items()}


def synthtalk_conditions(folder: pathlib.Path) -> dict[str, dict[str, Any]]:
    """Conditions from SynthTalk ground truth (``<stem>.npz``): eye-in-head gaze and head distance per frame."""
    out = {}
    for npz in sorted(folder.glob("*.npz")):
        with np.load(npz) as gt:
            if "gaze" in gt and "distance" in gt:
                out[npz.stem] = {"gaze_head": gt["gaze"].tolist(), "distance": gt["distance"].tolist()}
    return out


def evaluate_videos(
    videos: str | os.PathLike,
    audio: str | os.PathLike | None = None,
    *,
    conditions: Mapping[str, Mapping[str, Any]] | None = None,
    extra: Sequence[Callable[[Track, np.ndarray], Mapping[str, float]]] = (),
    per_video: Callable[[str, np.ndarray, float], Sequence[Callable]] | None = None,
    max_videos: int | None = None,
    label: str = "",
) -> dict[str, Any]:
    """Evaluate every video in the folder ``videos``. Audio: ``audio/<stem>.<wav|flac|mp3|...>``, else the
    video's own sound track. Phoneme timings: ``<stem>.json`` with SynthTalk's ``phonemes`` beside the audio
    (beside the video when it carries its own sound). ``per_video(stem, frames, fps)`` may return more
    ``extra`` callables for that video (identity needs the video's portrait, FVD the frames). Returns rows,
    the summary and the frames' tracks."""
    vdir = pathlib.Path(videos)
    if not vdir.is_dir():
        raise UserError(f"--videos {vdir} is not a folder; pass a folder of .mp4 files")
    files = sorted(p for p in vdir.iterdir() if p.suffix.lower() in VIDEO_EXTS)[: max_videos or None]
    if not files:
        raise UserError(f"no videos ({', '.join(VIDEO_EXTS)}) in {vdir}")
    adir = pathlib.Path(audio) if audio is not None else None
    if adir is not None and not adir.is_dir():
        raise UserError(f"--audio {adir} is not a folder; pass the folder with one audio file per video")
    conditions = conditions or {}
    rows, tracks = [], []
    for f in files:
        a = _find(adir, f.stem, AUDIO_EXTS) if adir is not None else None
        if adir is not None and a is None:
            raise UserError(f"no audio for {f.name} in {adir} (expected {f.stem}.wav or another audio file)")
        wave = media.read_audio(a or f)
        frames, fps = read_video(f)
        track = track_video(frames, fps)
        phon = _phonemes_of(_find(adir or vdir, f.stem, (".json",)))  # timings belong to the audio
        more = list(per_video(f.stem, frames, fps)) if per_video is not None else []
        row = evaluate_video(track, wave, fps=fps, conditions=conditions.get(f.stem), phonemes=phon,
                             extra=[*extra, *more])  # fmt: skip
        rows.append({"video": f.name, **row})
        tracks.append(track)
    return {"label": label or vdir.name, "rows": rows, "summary": summarize(rows, tracks), "tracks": tracks}


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.3f}"
    return str(v)


def markdown_table(rows: Sequence[Mapping[str, Any]], first: str = "video") -> str:
    """Rows as a markdown table with the columns any row has (in :data:`COLUMNS` order, then others)."""
    keys = [k for k in (*COLUMNS, "fvd25") if any(r.get(k) is not None for r in rows)]
    keys += sorted({k for r in rows for k in r if k not in keys and k not in (first, "frames")})
    arrows = {k: (" ↑" if HIGHER_IS_BETTER[k] else " ↓") if k in HIGHER_IS_BETTER else "" for k in keys}
    lines = ["| " + " | ".join([first] + [k + arrows[k] for k in keys]) + " |"]
    lines.append("|" + "---|" * (len(keys) + 1))
    lines += ["| " + " | ".join([str(r.get(first, ""))] + [_fmt(r.get(k)) for k in keys]) + " |" for r in rows]
    return "\n".join(lines)


def write_report(results: Sequence[Mapping[str, Any]], out: str | os.PathLike, notes: Sequence[str] = ()) -> dict:
    """Write ``out``.json and ``out``.md: one summary row per result set (e.g. "generated", "real SynthTalk"),
    then each set's per-video rows. Returns the JSON document."""
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"summary": [{"set": r["label"], **r["summary"]} for r in results],
           "sets": [{"label": r["label"], "rows": r["rows"]} for r in results], "notes": list(notes)}  # fmt: skip
    md = ["# vasajax eval", "", markdown_table(doc["summary"], first="set"), ""]
    md += [f"- {n}" for n in notes]
    for r in results:
        md += ["", f"## {r['label']}", "", markdown_table(r["rows"])]
    md += ["", "ΔP in degrees per frame (pooled over frames in the summary); gaze_err in degrees; av_* and "
           "phon_* are the weight-free lip-sync measures of `vasajax.eval.lipsync` (r of mouth opening vs. "
           "audio energy / phoneme timing, offset in frames, > 0 = video late)."]  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    return doc
