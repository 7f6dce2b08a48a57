"""One SynthTalk clip: speak a sentence, sample the motion, render every frame, collect the ground truth
(:func:`synthesize_clip`), and write it as mp4 + wav + npz + json (:func:`write_clip`)."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import numpy as np

from vasajax import media
from vasajax.data import visemes
from vasajax.data.speech import PAUSE, SAMPLE_RATE, Speech, Voice, synthesize_speech
from vasajax.data.synth.config import SynthConfig
from vasajax.data.synth.deform import pose_landmarks
from vasajax.data.synth.motion import sample_motion
from vasajax.data.synth.portrait import Portrait, prepare_portrait
from vasajax.data.synth.raster import render_frame
from vasajax.errors import UserError
from vasajax.facetrack.labels import head_distance, pose_from_matrix
from vasajax.facetrack.landmarks import mouth_opening


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class SynthClip:
    """One SynthTalk clip: frames, audio and per-frame ground truth."""

    frames: np.ndarray
    """T×S×S×3 uint8."""
    audio: np.ndarray
    """float32 mono at 16 kHz, exactly T / fps seconds long."""
    fps: float
    ground_truth: dict[str, np.ndarray]
    """Per-frame arrays (first axis T); see :func:`synthesize_clip`."""
    meta: dict
    """JSON-serialisable: text, voice, seed, portrait, phoneme and word timings, emotion level, config."""


_DEFAULT_VOICE = Voice()


def _head_distance(landmarks_Tx478x3: np.ndarray, size: int) -> np.ndarray:

    whole = (size / 2, size / 2, size)  # the frame is the crop
    return np.array([head_distance(lm, whole) for lm in landmarks_Tx478x3], np.float32)


def _portrait_pose(matrix: np.ndarray) -> list[float]:

    return [round(float(x), 5) for x in pose_from_matrix(matrix)]


def _cut_speech(speech: Speech, max_s: float) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    phon = [(p.name, p.start_s, p.end_s) for p in speech.phonemes]
    if speech.duration_s <= max_s:
        return speech.audio_16k, phon
    pauses = [a for n, a, _ in phon if n == PAUSE and 0.5 * max_s < a <= max_s]
    cut = pauses[-1] if pauses else max_s
    phon = [(n, a, min(b, cut)) for n, a, b in phon if a < cut]
    return speech.audio_16k[: int(cut * SAMPLE_RATE)], phon


def synthesize_clip(
    portrait: Portrait | np.ndarray,
    sentence: str,
    voice: Voice = _DEFAULT_VOICE,
    seed: int = 0,
    cfg: SynthConfig = SynthConfig(),  # noqa: B008 (frozen)
) -> SynthClip:
    """Speak ``sentence`` with ``voice`` and animate ``portrait`` in sync; deterministic given ``seed``.

    Ground truth (float32 unless noted; angles in radians):
      ``pose`` T×6 [yaw, pitch, roll, tx, ty, log scale] of the head relative to the portrait (tx, ty as
      fractions of S; angle conventions of ``facetrack.labels.pose_from_matrix``: +yaw turns the nose to image
      right, +pitch tilts it down, +roll is counter-clockwise in the image); ``landmarks``
      T×478×3 (rendered, S pixels); ``mouth_open`` T (inner-lip gap 13/14 over eye-corner distance 33/263,
      measured on the rendered landmarks); ``jaw``/``lip_spread``/``lip_round`` T (viseme drivers);
      ``blink`` T (0 open … 1 closed); ``gaze`` T×2 [θ, φ] of the eyes relative to the head (θ > 0 looks
      to the image right, φ > 0 up: ``facetrack``'s ``gaze_head``);
      ``emotion`` T (smile intensity 0…1); ``distance`` T (``facetrack.labels.head_distance``: 3D eye distance
      over S); ``speaking`` T (1 inside a phoneme); ``phoneme`` T int32
      (index into ``meta['phoneme_names']``, -1 outside speech); ``viseme`` T int32 (class index into
      ``visemes.VISEME_NAMES``).
    """
    if not isinstance(portrait, Portrait):
        portrait = prepare_portrait(np.asarray(portrait), cfg)
    if portrait.image.shape[0] != cfg.size:
        raise UserError(f"portrait was prepared at {portrait.image.shape[0]}² but cfg.size={cfg.size}; re-prepare it")
    rng = np.random.default_rng([seed, 0x5157])
    speech = synthesize_speech(sentence, voice, seed=seed)
    audio, phon = _cut_speech(speech, cfg.max_speech_s)
    phon = [(n, a + cfg.lead_in_s, b + cfg.lead_in_s) for n, a, b in phon]
    total_s = cfg.lead_in_s + len(audio) / SAMPLE_RATE + cfg.tail_s
    n_frames = int(np.ceil(total_s * cfg.fps))
    n_samples = int(round(n_frames * SAMPLE_RATE / cfg.fps))
    wav = np.zeros(n_samples, np.float32)
    start = int(round(cfg.lead_in_s * SAMPLE_RATE))
    wav[start : start + len(audio)] = audio[: n_samples - start]

    motion = sample_motion(phon, n_frames, cfg, rng)
    frames = np.empty((n_frames, cfg.size, cfg.size, 3), np.uint8)
    lms = np.empty((n_frames, 478, 3), np.float32)
    keys = ("yaw", "pitch", "roll", "tx", "ty", "scale", "jaw", "spread", "round", "blink", "gaze_yaw",
            "gaze_pitch", "smile")  # fmt: skip
    for i in range(n_frames):
        lm, ring, eye_shift = pose_landmarks(portrait, {k: float(motion[k][i]) for k in keys}, cfg)
        frames[i] = render_frame(portrait, lm, ring, eye_shift)
        lms[i] = lm

    names = sorted({n for n, _, _ in phon if n != PAUSE})
    t = np.arange(n_frames) / cfg.fps
    phoneme = np.full(n_frames, -1, np.int32)
    for n, a, b in phon:
        if n != PAUSE:
            phoneme[(t >= a) & (t < b)] = names.index(n)
    f32 = np.float32
    gt = {
        "pose": np.stack(
            [
                motion["yaw"],
                motion["pitch"],
                motion["roll"],
                motion["tx"],
                motion["ty"],
                np.log(motion["scale"]),
            ],
            -1,
        ).astype(f32),  # fmt: skip
        "landmarks": lms,
        "mouth_open": mouth_opening(lms).astype(f32),
        "jaw": motion["jaw"],
        "lip_spread": motion["spread"],
        "lip_round": motion["round"],
        "blink": motion["blink"],
        "gaze": np.stack([motion["gaze_yaw"], motion["gaze_pitch"]], -1),
        "emotion": motion["smile"],
        "distance": _head_distance(lms, cfg.size),
        "speaking": motion["speaking"],
        "phoneme": phoneme,
        "viseme": motion["viseme"],
    }
    meta = {
        "text": speech.text,
        "voice": dataclasses.asdict(voice),
        "seed": int(seed),
        "portrait": portrait.name,
        "portrait_pose": None if portrait.matrix is None else _portrait_pose(portrait.matrix),
        "fps": cfg.fps,
        "size": cfg.size,
        "num_frames": n_frames,
        "sample_rate": SAMPLE_RATE,
        "speech_start_s": cfg.lead_in_s,
        "phonemes": [{"name": n, "start_s": round(a, 4), "end_s": round(b, 4)} for n, a, b in phon],
        "phoneme_names": names,
        "words": [{"text": w, "start_s": round(a + cfg.lead_in_s, 4)} for w, a in speech.words],
        "emotion_level": float(np.mean(motion["smile"])),
        "viseme_names": list(visemes.VISEME_NAMES),
        "config": dataclasses.asdict(cfg),
    }
    return SynthClip(frames=frames, audio=wav, fps=cfg.fps, ground_truth=gt, meta=meta)


def write_clip(clip: SynthClip, out_dir: str | os.PathLike, name: str, *, crf: int = 20) -> dict[str, pathlib.Path]:
    """Write ``name``.mp4 (h264 yuv420p + AAC) and .wav (16 kHz 16-bit) through ``vasajax.media``, .npz (ground
    truth) and .json (meta)."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f"{name}.{k}" for k in ("mp4", "wav", "npz", "json")}
    media.write_wav(paths["wav"], clip.audio, sample_rate=SAMPLE_RATE, subtype="PCM_16")
    with media.VideoWriter(paths["mp4"], fps=clip.fps, audio=paths["wav"], crf=crf) as writer:
        writer.write(clip.frames)
    np.savez_compressed(paths["npz"], **clip.ground_truth)
    paths["json"].write_text(json.dumps(clip.meta, indent=1, ensure_ascii=False))
    return paths
