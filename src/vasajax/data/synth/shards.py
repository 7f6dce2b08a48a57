"""SynthTalk straight into clip shards: the offline dataset recipe (DESIGN.md "SynthTalk"; data for VASA-1
§3.1 face-latent and §3.2 motion training).

One command makes a train set and a held-out set in the format ``vasajax prep`` writes (``vasajax.data.clips``:
ArrayRecord shards of split-frame JPEG clip records + ``manifest.json``), so both feed ``loader.face_pairs``
and, after ``encode-dataset``, ``loader.motion_windows`` unchanged::

    vasajax synth --shards --out data/synthtalk-small --num-clips 200 --size 256 --workers 2
    # → data/synthtalk-small/train/manifest.json   (200 clips: train sentences, voices, portraits)
    #   data/synthtalk-small/heldout/manifest.json (20 clips: held-out sentences; see "Split")

Measured on the 2-core development CPU: N=200 at 256² (18,901 frames, 650 MB) costs 325 CPU-seconds, about
3 min with ``--workers 2`` on an idle machine (10.9 min while it was shared; ``data_prep/README.md``).

**Records.** One clip record per synthesised utterance (lead-in silence, the sentence, tail silence; T
varies with the sentence: 2.2–5.4 s for the bundled sentences), or fixed ``clip_frames`` pieces of it
(``--clip-frames``, like ``prep``'s T). Frames are S×S at 25 fps, 16 kHz audio of exactly T/25 s.
Identity = portrait name; source = ``<split>/clipNNNNN``.

**Labels: from the face tracker, like prep.** ``pose_Tx6``, ``gaze_Tx2``, ``distance_T``,
``blendshapes_Tx52`` and ``emotion_52`` come from MediaPipe FaceLandmarker run in VIDEO mode over the rendered
frames (a fresh tracker per utterance, so labels do not depend on which worker or unit rendered a clip),
through ``facetrack.labels.frame_labels`` / ``clip_labels`` exactly as ``prep`` computes them; the frame *is* the
crop, so the crop box is (S/2, S/2, S). Why not map the ground truth into those fields: (1) there is no
ground truth for 52 blendshapes, and the emotion condition is their clip mean; (2) the pose labels are the
tracker's absolute head pose (tz in cm) while SynthTalk knows only the motion relative to the portrait;
(3) a model trained on SynthTalk then sees the same label conventions and the same tracker noise as on real
data, and comparing the tracker's labels with the truth measures that noise. One difference remains: prep
tracks the full source frame, SynthTalk the crop, so tx/ty/tz are in the crop's camera.
An utterance where the tracker misses the face on any frame is dropped (``dropped.no_face`` in the manifest).

**Ground truth** rides in the record's ``ground_truth`` dict (stored as ``gt/<name>``): prep's own
``landmarks_Tx478x3`` (tracker, crop units, float16), ``gaze_head_Tx2`` and ``crop_Tx3``, and SynthTalk's truth
as ``synth/<name>_<shape>`` (``synth/pose_Tx6``, ``synth/mouth_open_T``, ``synth/blink_T``, ``synth/gaze_Tx2``,
``synth/emotion_T``, ``synth/phoneme_T``, ``synth/viseme_T``, ...; see ``synth.clip.synthesize_clip``; landmarks in
crop units, float16) plus ``synth/meta_json`` (the clip's meta as UTF-8 JSON bytes: text, voice, phoneme and
word timings; :func:`synth_meta` decodes it). Each manifest entry also carries ``synth``: split, sentence,
text, voice, seed and which factors are held out.

**Split.** Train clips use only the train sentences (``assets/sentences.txt`` lines before ``# HELD-OUT:``),
never the held-out voice's variant and never the held-out portrait. Held-out clips always use held-out
sentences; clip i also uses the held-out voice when i is odd and the held-out portrait when ⌊i/2⌋ is odd
(when those are set), so the four combinations are balanced and the evaluation can select by the manifest's
``synth.heldout`` list (e.g. ``["sentence"]`` only, or ``["sentence", "voice", "portrait"]``). Sentences and
portraits are dealt in seeded permutations (every sentence used before any repeats).

**Determinism and parallelism.** Clip i of a split depends only on (seed, split, i): the same command writes
the same shard bytes with any ``--workers``. Clips are grouped into units of ``clips_per_unit`` (files
``clips-UUUUU-NNNNN.array_record`` + sidecar ``clips-UUUUU.json``, as in ``prep``); a finished unit is skipped
when the command is re-run (resume), and ``--workers`` renders units in local processes.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vasajax.data import clips
from vasajax.data.prep import PrepConfig
from vasajax.data.speech import LANGUAGES, VARIANTS, Voice
from vasajax.data.synth.clip import SynthClip, synthesize_clip
from vasajax.data.synth.config import SynthConfig
from vasajax.data.synth.inputs import SENTENCES, load_sentences
from vasajax.data.synth.portrait import Portrait
from vasajax.errors import UserError
from vasajax.facetrack.labels import clip_labels, frame_labels
from vasajax.facetrack.tracker import FaceTracker

SPLITS = ("train", "heldout")
"""The two folders a dataset run writes."""
_SALT = {"train": 0x7A11, "heldout": 0x4E1D}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ShardsConfig:
    """What a SynthTalk dataset run makes (the look and motion of each clip is ``synth``)."""

    synth: SynthConfig = dataclasses.field(default_factory=SynthConfig)
    """Rendering and motion of the clips (size S, silences, head motion, ...); fps must be 25."""
    num_train: int = 200
    """Train clips (utterances) planned; clips the tracker fails on are dropped, not replaced."""
    num_heldout: int = 20
    """Held-out clips planned."""
    seed: int = 0
    """Base seed: clip i of a split depends only on (seed, split, i)."""
    heldout_voice: str | None = "en-gb-scotland+f5"
    """espeak-ng ``LANGUAGE+VARIANT`` of the unseen voice; train clips never use its variant (timbre). None:
    no held-out voice."""
    heldout_portrait: str | None = None
    """Name (file stem) of the unseen portrait; train clips never use it. None: every portrait trains (the
    default, since the two bundled portraits are few; use ``--portraits DIR`` with three or more faces)."""
    clip_frames: int | None = None
    """None: one record per utterance (T varies). An int T: cut each utterance into non-overlapping T-frame
    records from its start, dropping the remainder, like ``prep``."""
    codec: str = "jpeg"
    """Frame codec ("jpeg", "png", "raw"), as ``PrepConfig.codec``."""
    jpeg_quality: int = 95
    """JPEG quality, as ``PrepConfig.jpeg_quality``."""
    split_frames: bool = True
    """One ArrayRecord record per frame (``prep``'s default; ignored for raw)."""
    clips_per_unit: int = 25
    """Clips per resumable work unit (one task of ``--workers``)."""
    shard_max_bytes: int = 1 << 30
    """Start a new ArrayRecord file within a unit past this size."""

    @classmethod
    def tiny(cls) -> ShardsConfig:
        """Tests: 96² frames, 3 + 2 clips, PNG (exact round trips)."""
        syn = dataclasses.replace(SynthConfig.tiny(), size=96)
        return cls(synth=syn, num_train=3, num_heldout=2, codec="png", clips_per_unit=2)

    @classmethod
    def small(cls) -> ShardsConfig:
        """The demo recipe: 256², 200 train + 20 held-out utterances."""
        return cls()

    @classmethod
    def paper(cls) -> ShardsConfig:
        """VASA-1's resolution: 512², 2000 train + 200 held-out utterances."""
        return cls(synth=SynthConfig.paper(), num_train=2000, num_heldout=200)


# ----------------------------------------------------------------------------------------------- planning


def _dealt(i: int, n: int, seed: int, salt: int) -> int:
    """Item i of an endless sequence of seeded permutations of range(n): every item once per n draws."""
    perm = np.random.default_rng([seed, salt, i // n]).permutation(n)
    return int(perm[i % n])


def parse_voice(spec: str) -> Voice:
    """``LANGUAGE+VARIANT`` (e.g. ``en-gb-scotland+f5``) → ``Voice``; a UserError names the choices."""
    name, _, variant = spec.partition("+")
    if name not in LANGUAGES or variant not in VARIANTS:
        raise UserError(
            f"held-out voice {spec!r} must be LANGUAGE+VARIANT with LANGUAGE in {', '.join(LANGUAGES)} and "
            f"VARIANT in {', '.join(VARIANTS)} (or 'none')"
        )
    return Voice(name=name, variant=variant)


def _voice(rng: np.random.Generator, held: Voice | None, use_held: bool) -> Voice:
    """A random voice; the held-out one's accent and variant if ``use_held``, else never its variant."""
    while True:
        v = Voice.random(rng)
        if held is None:
            return v
        if use_held and v.variant == held.variant:
            return dataclasses.replace(v, name=held.name)
        if not use_held and v.variant != held.variant:
            return v


def plan_split(
    split: str, num: int, sentences: Sequence[str], portraits: Sequence[str], cfg: ShardsConfig
) -> list[dict[str, Any]]:
    """The clips of one split as JSON-able specs (name, portrait, sentence, voice, seed, held-out factors).

    ``sentences`` must be that split's sentences; ``portraits`` all portrait names (the held-out one is
    kept out of train and used in held-out clips per the module docstring).
    """
    held_voice = parse_voice(cfg.heldout_voice) if cfg.heldout_voice else None
    train_pool = [p for p in portraits if p != cfg.heldout_portrait]
    if cfg.heldout_portrait is not None and cfg.heldout_portrait not in portraits:
        raise UserError(f"held-out portrait {cfg.heldout_portrait!r} is not among the portraits {list(portraits)}")
    if not train_pool:
        raise UserError("the held-out portrait is the only one; add training portraits with --portraits DIR")
    salt = _SALT[split]
    specs = []
    for i in range(num):
        heldout = []
        voice_h = portrait_h = False
        if split == "heldout":
            heldout.append("sentence")
            voice_h = held_voice is not None and i % 2 == 1
            portrait_h = cfg.heldout_portrait is not None and (i // 2) % 2 == 1
            heldout += ["voice"] * voice_h + ["portrait"] * portrait_h
        rng = np.random.default_rng([cfg.seed, salt, i])
        voice = _voice(rng, held_voice, voice_h)
        portrait = cfg.heldout_portrait if portrait_h else train_pool[_dealt(i, len(train_pool), cfg.seed, salt + 1)]
        k = _dealt(i, len(sentences), cfg.seed, salt + 2)
        specs.append({
            "name": f"clip{i:05d}",
            "split": split,
            "portrait": portrait,
            "sentence": k,
            "text": sentences[k],
            "voice": dataclasses.asdict(voice),
            "seed": int(rng.integers(2**31)),
            "heldout": heldout,
        })  # fmt: skip
    return specs


# ----------------------------------------------------------------------------------------------- one clip


def _video_tracker():
    """The tracker ``prep`` uses (VIDEO mode, its confidence), one face."""
    return FaceTracker(mode="video", max_faces=1, min_confidence=PrepConfig().min_confidence)


def _shape_name(name: str, a: np.ndarray) -> str:
    return f"synth/{name}_T" + "".join(f"x{d}" for d in a.shape[1:])


def clip_records(
    clip: SynthClip, spec: dict[str, Any], cfg: ShardsConfig, make_tracker: Callable[[], Any] = _video_tracker
) -> tuple[list[clips.ClipRecord], str | None]:
    """Label a rendered clip with the tracker (as ``prep``) and cut it into clip records.

    Returns (records, None), or ([], reason) with reason "no_face" (a frame without a face) or "too_short"
    (shorter than ``clip_frames``).
    """
    S, T = clip.frames.shape[1], len(clip.frames)
    crop = np.array([S / 2, S / 2, S], np.float32)  # the rendered frame is the crop
    per_frame = []
    with make_tracker() as tracker:
        for t, frame in enumerate(clip.frames):
            faces = tracker.detect(frame, timestamp_ms=t * 1000 // clips.FPS)
            if not faces:
                return [], "no_face"
            per_frame.append(frame_labels(faces[0], crop))
    labels = clip_labels(per_frame)
    f16, f32 = np.float16, np.float32
    truth = {}
    for k, v in clip.ground_truth.items():
        v = np.asarray(v)
        if k == "landmarks":
            v = (v / np.array([S, S, S], f32)).astype(f16)  # crop units, like prep's landmarks
        truth[_shape_name(k, v)] = v
    meta = np.frombuffer(json.dumps(clip.meta, ensure_ascii=False, sort_keys=True).encode(), np.uint8)
    n = cfg.clip_frames or T
    starts = list(range(0, T - n + 1, n))
    if not starts:
        return [], "too_short"
    out, spf = [], clips.SAMPLES_PER_FRAME
    for k, s in enumerate(starts):
        sl = slice(s, s + n)
        bs = labels["blendshapes"][sl].astype(f32)
        gt = {
            "landmarks_Tx478x3": labels["landmarks"][sl].astype(f16),
            "gaze_head_Tx2": labels["gaze_head"][sl].astype(f32),
            "crop_Tx3": np.tile(crop, (n, 1)),
            **{name: v[sl] for name, v in truth.items()},
            "synth/meta_json": meta,
        }
        out.append(
            clips.ClipRecord(
                frames_TxSxSx3=clip.frames[sl],
                audio_N=np.ascontiguousarray(clip.audio[s * spf : (s + n) * spf]),
                pose_Tx6=labels["pose"][sl].astype(f32),
                gaze_Tx2=labels["gaze"][sl].astype(f32),
                distance_T=labels["distance"][sl].astype(f32).reshape(n),
                blendshapes_Tx52=bs,
                emotion_52=bs.mean(0).astype(f32),
                identity=spec["portrait"],
                source=f"{spec['split']}/{spec['name']}",
                clip_index=k,
                start_frame=s,
                ground_truth=gt,
            )
        )
    return out, None


def synth_meta(record: clips.ClipRecord) -> dict[str, Any]:
    """The SynthTalk meta (text, voice, phoneme/word timings, ...) stored in a record's ground truth."""
    return json.loads(bytes(np.asarray(record.ground_truth["synth/meta_json"], np.uint8)).decode())


# ----------------------------------------------------------------------------------------------- units


def unit_name(u: int) -> str:
    """File prefix of work unit ``u`` (as ``prep.unit_name``)."""
    return f"clips-{u:05d}"


def _config_json(cfg: ShardsConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))  # tuples → lists, as read back from a sidecar


def _unit_config(config: dict[str, Any]) -> dict[str, Any]:
    """What must match for a finished unit to be reused: everything but the clip counts (so that a larger
    ``--num-clips`` renders only the new clips)."""
    return {k: v for k, v in config.items() if k not in ("num_train", "num_heldout")}


def unit_done(out: Path, u: int, specs: Sequence[dict[str, Any]], cfg: ShardsConfig) -> dict[str, Any] | None:
    """The sidecar of unit ``u`` if it is finished for exactly these specs and config and its shards exist."""
    try:
        info = json.loads((out / f"{unit_name(u)}.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if info.get("specs") != list(specs) or _unit_config(info.get("config", {})) != _unit_config(_config_json(cfg)):
        return None
    if not all((out / s["path"]).exists() for s in info["shards"]):
        return None
    return info


def run_unit(
    out: str | os.PathLike,
    u: int,
    specs: Sequence[dict[str, Any]],
    portraits: Sequence[Portrait],
    cfg: ShardsConfig,
    make_tracker: Callable[[], Any] = _video_tracker,
) -> dict[str, Any]:
    """Render, label and write one unit's clips; its sidecar is written last (atomic). Returns the sidecar."""
    out = Path(out)
    for stale in out.glob(f"{unit_name(u)}-*"):  # leftovers of an interrupted attempt
        stale.unlink()
    by_name = {p.name: p for p in portraits}
    t0 = time.perf_counter()
    results = []
    split = cfg.split_frames and cfg.codec != "raw"
    with clips.ShardWriter(out, unit_name(u), max_bytes=cfg.shard_max_bytes) as w:
        for spec in specs:
            voice = Voice(**spec["voice"])
            portrait = by_name[spec["portrait"]]
            clip = synthesize_clip(portrait, spec["text"], voice, seed=spec["seed"], cfg=cfg.synth)
            recs, reason = clip_records(clip, spec, cfg, make_tracker)
            info = {k: spec[k] for k in ("split", "sentence", "text", "seed", "heldout")}
            info["voice"] = voice.espeak_name
            for rec in recs:
                parts = clips.encode_parts(rec, codec=cfg.codec, quality=cfg.jpeg_quality, split_frames=split)
                w.write(parts, {**clips.summarize(rec), "synth": info})
            results.append({"name": spec["name"], "frames": len(clip.frames), "records": len(recs), "dropped": reason})
    side = {
        "unit": u,
        "specs": list(specs),
        "config": _config_json(cfg),
        "shards": w.shards,
        "results": results,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    clips.write_manifest(out / f"{unit_name(u)}.json", side)  # atomic JSON write
    return side


def _run_unit_star(args) -> dict[str, Any]:
    import cv2

    cv2.setNumThreads(1)  # one process per core
    return run_unit(*args)


def merge(
    out: str | os.PathLike,
    units: Sequence[Sequence[dict[str, Any]]],
    cfg: ShardsConfig,
    inputs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge one split's finished sidecars into its ``manifest.json`` (``inputs``: portraits and sentence
    file, recorded in its config); returns the manifest."""
    out = Path(out)
    shards, results, seconds = [], [], 0.0
    for u, specs in enumerate(units):
        info = unit_done(out, u, specs, cfg)
        if info is None:
            raise UserError(f"unit {u} of {out} is not finished; re-run the same command to finish it")
        shards += info["shards"]
        results += info["results"]
        seconds += info["seconds"]
    dropped = collections.Counter(r["dropped"] for r in results if r["dropped"])
    summary = {
        "clips_planned": len(results),
        "clips_kept": sum(r["records"] > 0 for r in results),
        "frames_rendered": sum(r["frames"] for r in results),
        "worker_seconds": round(seconds, 1),
    }
    config = {"synthtalk": _config_json(cfg), **(inputs or {})}
    manifest = clips.make_manifest("clip", shards, dropped=dict(dropped), config=config, summary=summary)
    clips.write_manifest(out / "manifest.json", manifest)
    return manifest


# ----------------------------------------------------------------------------------------------- driver


def write_dataset(
    out_dir: str | os.PathLike,
    cfg: ShardsConfig,
    portraits: Sequence[Portrait],
    *,
    sentences_path: str | os.PathLike | None = None,
    splits: Sequence[str] = SPLITS,
    workers: int = 1,
    progress: bool = False,
    make_tracker: Callable[[], Any] = _video_tracker,
) -> dict[str, dict[str, Any]]:
    """Write ``out_dir/<split>/`` (shards + ``manifest.json``) for each split; returns the manifests.

    Finished units are skipped (resume). ``make_tracker`` must be picklable when ``workers > 1``.
    """
    if cfg.synth.fps != clips.FPS:
        raise UserError(f"clip records are {clips.FPS} fps; SynthConfig.fps is {cfg.synth.fps}")
    if cfg.codec not in ("jpeg", "png", "raw"):
        raise UserError(f"codec must be jpeg, png or raw, got {cfg.codec!r}")
    if any(p.image.shape[0] != cfg.synth.size for p in portraits):
        raise UserError(f"portraits must be prepared at cfg.synth.size={cfg.synth.size}")
    names = [p.name for p in portraits]
    num = {"train": cfg.num_train, "heldout": cfg.num_heldout}
    tasks, plans = [], {}
    for split in splits:
        if split not in SPLITS:
            raise UserError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        if num[split] < 1:
            continue
        specs = plan_split(split, num[split], load_sentences(split, sentences_path), names, cfg)
        units = [specs[i : i + cfg.clips_per_unit] for i in range(0, len(specs), cfg.clips_per_unit)]
        out = Path(out_dir) / split
        out.mkdir(parents=True, exist_ok=True)
        plans[split] = (out, units)
        for u, unit in enumerate(units):
            if unit_done(out, u, unit, cfg) is None:
                used = sorted({s["portrait"] for s in unit})
                tasks.append((str(out), u, unit, [p for p in portraits if p.name in used], cfg, make_tracker))
    bar = None
    if progress:
        from tqdm import tqdm

        total = sum(len(s) for _, units in plans.values() for s in units)
        bar = tqdm(total=total, initial=total - sum(len(t[2]) for t in tasks), unit="clip", desc="SynthTalk")
    try:
        if workers <= 1 or len(tasks) <= 1:
            for t in tasks:
                run_unit(*t)
                if bar is not None:
                    bar.update(len(t[2]))
        else:
            ctx = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(min(workers, len(tasks)), mp_context=ctx) as pool:
                for t, _ in zip(tasks, pool.map(_run_unit_star, tasks)):
                    if bar is not None:
                        bar.update(len(t[2]))
    finally:
        if bar is not None:
            bar.close()
    inputs = {"portraits": names, "sentences": str(Path(sentences_path or SENTENCES).resolve())}
    return {split: merge(out, units, cfg, inputs) for split, (out, units) in plans.items()}
