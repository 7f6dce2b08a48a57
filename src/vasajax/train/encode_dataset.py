"""``vasajax encode-dataset``: clip shards → motion shards for stage 2 (VASA-1 §3.2).

VASA-1 trains its motion diffusion model on the per-frame motion latents ``X = [z_pose, z_dyn]`` that the
stage-1 motion encoder extracts from talking-face videos (§3.2: "we extract the motion latent sequence ...
with the encoder learned in the face latent space"). This command runs that extraction once, offline, so the
stage-2 trainer never touches a frame::

    vasajax encode-dataset --face-checkpoint runs/face --data data/clips --out data/motion
    vasajax encode-dataset --motion-source labels --data data/synthtalk --out data/motion-labels
    vasajax encode-dataset --renderer checkpoints/liveportrait --data data/clips --out data/motion-lp

Per clip record (``vasajax.data.clips.ClipRecord``) it writes one ``MotionRecord``:

* ``motion_TxM``: ``--motion-source encoder`` (default): the stage-1 motion encoder over all T frames in fixed
  batches (one pure jitted function, one shape), ``[yaw, pitch, roll, tx, ty, tz] + z_dyn``.
  ``--motion-source labels``: the clip's own labels instead of a learned encoder, for a meaningful stage-2
  run without a trained stage 1: the tracked head pose ``pose_Tx6`` plus, when the record carries SynthTalk
  ground truth, ``[mouth_open, jaw, lip_spread, lip_round, blink, gaze θ, gaze φ, smile]`` (8 named
  dynamics), else the 52 MediaPipe blendshapes. The dimension names go into the manifest
  (``motion_names``) so evaluation can find e.g. the mouth opening.
  ``--renderer EXPORT`` (``--motion-source renderer``): any renderer's ``encode_motion`` (``vasajax.stages``),
  loaded through the registry from an export folder (e.g. a LivePortrait from ``vasajax convert``, whose motion
  is its 70-dim ``[pitch, yaw, roll, tx, ty, tz, scale, exp]``), in fixed batches like the encoder. The
  renderer's name, motion space and export folder go into the manifest (``config.renderer``, ``motion_space``),
  so a motion DiT trained on these shards can be exported with that renderer (``vasajax export
  --renderer-export``).
* ``audio_feat_UxF``: ``vasajax.motion.audio.frame_features`` of the clip's 16 kHz audio, stored as its two
  50 Hz slots per frame (``feats_per_frame = 2``, ``F = n_mels`` or the wav2vec2 width), which is exactly
  the per-frame vector ``frame_features`` returns, split in half.
* conditions from the clip labels: per-frame gaze (θ, φ) and head distance, and the clip's emotion offset.
* ``extra``: the tracked ``pose_Tx6`` and ``blendshapes_Tx52`` and every small per-frame ground-truth array
  of the clip (SynthTalk: ``mouth_open``, ``blink``, ...), for evaluation (mouth-opening correlation, ΔP).

Records whose labels contain NaN (frames without a face) are dropped and counted in the manifest's
``dropped``. Shards are written with ``clips.ShardWriter`` as ``motion-NNNNN.array_record`` + ``manifest.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jax
import numpy as np
from flax import nnx

from vasajax import checkpoint_export as ce
from vasajax import config_io
from vasajax.data import clips
from vasajax.errors import UserError
from vasajax.face.config import PRESETS
from vasajax.face.encoders import MotionEncoder as FaceMotionEncoder
from vasajax.face.stage import encode_motion_fn
from vasajax.facetrack.landmarks import BLENDSHAPE_NAMES
from vasajax.load import stage_names
from vasajax.motion import audio as audio_lib
from vasajax.stages import RENDERERS
from vasajax.train import face as face_train

SYNTH_DYN_NAMES = ("mouth_open", "jaw", "lip_spread", "lip_round", "blink", "gaze_theta", "gaze_phi", "smile")
"""Dynamics of the ``labels`` motion source on SynthTalk records (from the clip's ground truth)."""
POSE_NAMES = ("yaw", "pitch", "roll", "tx", "ty", "tz")
"""The first six motion dimensions, always."""
SYNTH_POSE_NAMES = ("yaw", "pitch", "roll", "tx", "ty", "log_scale")
"""The pose part of the ``labels`` source on SynthTalk: its true head motion (``synthesize_clip``'s ``pose``)."""
_SYNTH_GT = ("pose", "mouth_open", "jaw", "lip_spread", "lip_round", "blink", "gaze", "emotion")


@dataclasses.dataclass(frozen=True, kw_only=True)
class EncodeConfig:
    """What ``encode_dataset`` extracts and how."""

    motion_source: str = "encoder"
    """"encoder" (stage-1 motion encoder, VASA-1), "labels" (pose + ground-truth/blendshape dynamics) or
    "renderer" (any renderer's ``encode_motion``)."""
    audio: audio_lib.AudioConfig = dataclasses.field(default_factory=audio_lib.AudioConfig)
    """Audio feature extraction (default: 80-bin log-mel, two slots per video frame)."""
    frames_per_batch: int = 32
    """Frames per encoder call (the last batch of a clip is padded, so there is one jit shape)."""
    shard_max_bytes: int = 1 << 30
    """Start a new ArrayRecord file past this size."""

    def __post_init__(self):
        if self.motion_source not in ("encoder", "labels", "renderer"):
            raise UserError(f"motion source must be 'encoder', 'labels' or 'renderer', not {self.motion_source!r}")
        if self.frames_per_batch < 1:
            raise UserError(f"frames per batch must be at least 1, got {self.frames_per_batch}")


# ----------------------------------------------------------------------------------------------- motion


def in_fixed_batches(fn, frames_TxSxSx3: np.ndarray, batch: int) -> np.ndarray:
    """``fn`` over a clip in batches of exactly ``batch`` frames (one jit shape; the last batch is padded by repeating
    its last frame and the padding dropped), as float32 ``T×M``."""
    T, out = len(frames_TxSxSx3), []
    for s in range(0, T, batch):
        chunk = frames_TxSxSx3[s : s + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, axis=0)])
        out.append(np.asarray(fn(chunk), np.float32)[:n])
    return np.concatenate(out)


class _EncoderOnly(nnx.Module):
    """The face model's motion encoder with the face config: what ``encode_motion_fn`` needs, nothing more."""

    def __init__(self, face_model):
        self.cfg = face_model.cfg
        self.motion_encoder = face_model.motion_encoder

    def encode_motion(self, images_BxHxWx3):
        return self.motion_encoder(images_BxHxWx3)


def motion_only_model(face_cfg, seed: int = 0) -> SimpleNamespace:
    """A randomly initialised stage-1 *motion encoder only* (``.cfg``, ``.motion_encoder``), for smoke runs:
    building the whole face model just to throw away all but its motion encoder is slow."""

    make = lambda: FaceMotionEncoder(face_cfg, rngs=nnx.Rngs(seed))  # noqa: E731
    graphdef, _ = nnx.split(nnx.eval_shape(make))
    params = jax.jit(lambda: nnx.split(make())[1])()  # one compiled init instead of one per eager op
    return SimpleNamespace(cfg=face_cfg, motion_encoder=nnx.merge(graphdef, params))


class MotionEncoder:
    """The stage-1 motion encoder of a ``FaceLatentModel`` as a function over whole clips (only its params)."""

    def __init__(self, face_model, frames_per_batch: int = 32):
        """``face_model``: a ``FaceLatentModel`` (or anything with ``.cfg`` and ``.motion_encoder``)."""
        self.graphdef, self.params = nnx.split(_EncoderOnly(face_model))
        self.cfg = face_model.cfg
        self.batch = frames_per_batch

    def __call__(self, frames_TxSxSx3: np.ndarray) -> np.ndarray:
        """uint8 T×S×S×3 → float32 T×(6+dyn), in fixed batches (the last one padded)."""
        return in_fixed_batches(lambda x: encode_motion_fn(self.graphdef, self.params, x), frames_TxSxSx3, self.batch)

    @property
    def names(self) -> list[str]:
        """Names of the motion dimensions."""
        return list(POSE_NAMES) + [f"dyn{i}" for i in range(self.cfg.dyn_dim)]


class RendererMotion:
    """A renderer's ``encode_motion`` (``vasajax.stages.Renderer``) over whole clips, in fixed batches."""

    def __init__(self, renderer, frames_per_batch: int = 32, export: str | Path | None = None):
        if not callable(getattr(renderer, "encode_motion", None)):
            raise UserError(f"the renderer {getattr(renderer, 'name', renderer)!r} cannot encode frames to motion")
        self.renderer = renderer
        self.batch = frames_per_batch
        self.export = None if export is None else str(export)

    def __call__(self, frames_TxSxSx3: np.ndarray) -> np.ndarray:
        m = in_fixed_batches(self.renderer.encode_motion, frames_TxSxSx3, self.batch)
        if m.shape[1] != self.renderer.motion_dim:
            raise UserError(
                f"renderer {self.renderer.name} gave {m.shape[1]}-dim motion, not {self.renderer.motion_dim}"
            )
        return m

    @property
    def names(self) -> list[str]:
        """The renderer's ``motion_names`` when it has them, else the pose names then ``m6``, ``m7``, ..."""
        r = self.renderer
        names = getattr(r, "motion_names", None)
        if names is not None:
            return list(names)
        return list(POSE_NAMES[: r.pose_dim]) + [f"m{i}" for i in range(r.pose_dim, r.motion_dim)]

    def describe(self) -> dict[str, Any]:
        r = self.renderer
        return {"name": r.name, "motion_space": r.motion_space, "motion_dim": int(r.motion_dim),
                "pose_dim": int(r.pose_dim), "image_size": int(r.image_size), "export": self.export}  # fmt: skip


def load_renderer(export: str | Path):
    """The renderer entry of an export folder (``manifest.json``'s ``stages.renderer``, VASA's by default),
    loaded through ``vasajax.stages.RENDERERS`` after every listed file is checked against its sha256."""

    d = Path(export).expanduser()
    manifest = ce.verify_export(d, required=())
    return RENDERERS.load(stage_names(manifest)["renderer"], d, manifest)


def _synth_truth(rec: clips.ClipRecord) -> dict[str, np.ndarray] | None:
    """SynthTalk ground truth of a record by plain name (``synth/mouth_open_T`` or ``mouth_open``), or None."""
    T, gt, out = rec.num_frames, rec.ground_truth, {}
    for k in _SYNTH_GT:
        shape = "_Tx2" if k == "gaze" else ("_Tx6" if k == "pose" else "_T")
        v = gt.get(f"synth/{k}{shape}", gt.get(k))
        if v is None:
            return None
        out[k] = np.asarray(v, np.float32).reshape(T, -1)
    return out


def label_motion(rec: clips.ClipRecord) -> tuple[np.ndarray, list[str]]:
    """The ``labels`` motion source: SynthTalk's true pose + dynamics, or tracked pose + blendshapes."""
    g = _synth_truth(rec)
    if g is not None:
        keys = ("pose", "mouth_open", "jaw", "lip_spread", "lip_round", "blink", "gaze", "emotion")
        motion = np.concatenate([g[k] for k in keys], axis=-1)
        return motion.astype(np.float32), list(SYNTH_POSE_NAMES) + list(SYNTH_DYN_NAMES)

    motion = np.concatenate([rec.pose_Tx6, rec.blendshapes_Tx52], axis=-1)
    return motion.astype(np.float32), list(POSE_NAMES) + list(BLENDSHAPE_NAMES)


# ----------------------------------------------------------------------------------------------- records


def _extras(rec: clips.ClipRecord) -> dict[str, np.ndarray]:
    """Tracked pose/blendshapes + small per-frame ground truth (no landmarks, no meta blobs)."""
    T = rec.num_frames
    extra = {"pose_Tx6": rec.pose_Tx6, "blendshapes_Tx52": rec.blendshapes_Tx52}
    for k, v in rec.ground_truth.items():
        v = np.asarray(v)
        small = 1 <= v.ndim <= 2 and v.shape[0] == T and (v.ndim == 1 or v.shape[1] <= 8)
        if "landmarks" in k or "meta" in k or not small or v.dtype.kind not in "fiub":
            continue
        extra["gt_" + k.replace("/", "_")] = v.astype(np.float32) if v.dtype.kind == "f" else v
    return extra


def motion_record(
    rec: clips.ClipRecord, motion_TxM: np.ndarray, cfg: EncodeConfig, stats: audio_lib.FeatureStats | None = None
) -> clips.MotionRecord:
    """Pack one clip's motion, audio features, conditions and evaluation extras into a ``MotionRecord``."""
    T = rec.num_frames
    feats_TxA = audio_lib.frame_features(rec.audio_N, cfg.audio, stats)
    if feats_TxA.shape[0] != T:
        raise ValueError(f"audio gives {feats_TxA.shape[0]} feature frames for a {T}-frame clip")
    half = feats_TxA.shape[1] // 2
    kind = f"logmel{cfg.audio.n_mels}" if cfg.audio.kind == "logmel" else "wav2vec2"
    return clips.MotionRecord(
        motion_TxM=np.ascontiguousarray(motion_TxM, np.float32),
        audio_feat_UxF=np.ascontiguousarray(feats_TxA.reshape(2 * T, half), np.float32),
        feats_per_frame=2,
        feature_kind=kind,
        gaze_Tx2=rec.gaze_Tx2,
        distance_T=rec.distance_T,
        emotion_52=rec.emotion_52,
        identity=rec.identity,
        source=rec.source,
        clip_index=rec.clip_index,
        start_frame=rec.start_frame,
        extra=_extras(rec),
    )


def _labels_finite(rec: clips.ClipRecord) -> bool:
    arrays = (rec.pose_Tx6, rec.gaze_Tx2, rec.distance_T, rec.blendshapes_Tx52, rec.emotion_52)
    return all(np.isfinite(a).all() for a in arrays)


def encode_dataset(
    data: str | Path,
    out: str | Path,
    cfg: EncodeConfig,
    *,
    face_model=None,
    renderer: RendererMotion | None = None,
    progress: bool = False,
    extra_manifest: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Encode every clip record under ``data`` into motion records under ``out``; returns the manifest.

    ``face_model`` (a ``FaceLatentModel``) is required for ``motion_source == "encoder"``, ``renderer`` (a
    ``RendererMotion``) for ``"renderer"``.
    """
    src_manifest = clips.read_manifest(data)
    if src_manifest["kind"] != "clip":
        raise UserError(f"{data} holds {src_manifest['kind']} records; encode-dataset needs clip records (prep)")
    if cfg.motion_source == "encoder" and face_model is None:
        raise UserError("the encoder motion source needs a stage-1 model: pass --face-checkpoint or --face-config")
    if cfg.motion_source == "renderer" and renderer is None:
        raise UserError("the renderer motion source needs a renderer: pass --renderer EXPORT")
    encoder = {"encoder": lambda: MotionEncoder(face_model, cfg.frames_per_batch), "renderer": lambda: renderer,
               "labels": lambda: None}[cfg.motion_source]()  # fmt: skip
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dropped: dict[str, int] = {}
    names: list[str] | None = None
    t0, n = time.perf_counter(), 0
    records = clips.read_records(src_manifest, data)
    if progress:
        import tqdm

        records = tqdm.tqdm(records, total=len(src_manifest["records"]), desc="encode", unit="clip", file=sys.stderr)
    with clips.ShardWriter(out, "motion", max_bytes=cfg.shard_max_bytes) as writer:
        for rec in records:
            if not _labels_finite(rec):
                dropped["nan_labels"] = dropped.get("nan_labels", 0) + 1
                continue
            if encoder is not None:
                motion, rec_names = encoder(rec.frames_TxSxSx3), encoder.names
            else:
                motion, rec_names = label_motion(rec)
            if names is None:
                names = rec_names
            elif rec_names != names:
                raise UserError(
                    f"record {rec.source}#{rec.clip_index} gives motion {rec_names[6:9]}..., others "
                    f"{names[6:9]}...: mixed SynthTalk and tracked records; encode them separately"
                )
            writer.write_record(motion_record(rec, motion, cfg))
            n += 1
    if n == 0:
        raise UserError(f"no usable clip in {data} (dropped: {dropped}); check the clip manifest")
    config = {
        "motion_source": cfg.motion_source,
        "audio": config_io.to_dict(cfg.audio),
        "face_config": face_model.cfg.to_dict() if cfg.motion_source == "encoder" else None,
        "clip_data": str(data),
    }
    extra = dict(extra_manifest or {})
    if cfg.motion_source == "renderer":
        config["renderer"] = renderer.describe()
        extra.setdefault("motion_space", renderer.renderer.motion_space)
    elif cfg.motion_source == "encoder":
        extra.setdefault("motion_space", "vasa")
    manifest = clips.make_manifest("motion", writer.shards, dropped=dropped, config=config, motion_names=names, **extra)
    clips.write_manifest(out / "manifest.json", manifest)
    manifest["seconds_taken"] = round(time.perf_counter() - t0, 3)
    return manifest


# ----------------------------------------------------------------------------------------------- command line


def load_face_model(checkpoint: str | Path):
    """A stage-1 ``FaceLatentModel`` from a ``vasajax train-face`` run folder (latest checkpoint, EMA if any)."""

    return face_train.load_vasa_model(checkpoint, "encode-dataset --face-checkpoint")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vasajax encode-dataset",
        description="Turn clip shards (vasajax prep / synth) into motion shards for stage-2 training.",
    )
    p.add_argument("--data", required=True, help="clip-record folder (with manifest.json)")
    p.add_argument("--out", required=True, help="output folder for motion shards + manifest.json")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--face-checkpoint", help="stage-1 run folder (vasajax train-face --workdir)")
    src.add_argument(
        "--face-config", choices=("tiny", "small", "paper"), help="randomly initialised stage-1 model (smoke tests)"
    )
    src.add_argument(
        "--renderer",
        metavar="EXPORT",
        help="an export folder whose renderer encodes frames to motion (e.g. vasajax convert liveportrait ...): "
        "its motion space becomes the shards' (implies --motion-source renderer)",
    )
    p.add_argument(
        "--motion-source",
        choices=("encoder", "labels", "renderer"),
        default="encoder",
        help="encoder: stage-1 motion latents (default); labels: pose + ground-truth dynamics, no stage 1",
    )
    p.add_argument("--audio-config", choices=("tiny", "small"), default="small", help="log-mel preset (16 or 80 mels)")
    p.add_argument("--wav2vec2", default=None, help="local Hugging Face wav2vec2 checkpoint folder instead of log-mel")
    p.add_argument("--frames-per-batch", type=int, default=32, help="frames per encoder call")
    p.add_argument("--seed", type=int, default=0, help="init seed of --face-config")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``vasajax encode-dataset``; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.wav2vec2:
        audio_cfg = audio_lib.AudioConfig.paper(checkpoint=args.wav2vec2)
    else:
        audio_cfg = audio_lib.AudioConfig.tiny() if args.audio_config == "tiny" else audio_lib.AudioConfig.small()
    source = args.motion_source
    if args.renderer:
        if source == "labels":
            raise UserError("--renderer and --motion-source labels exclude each other")
        source = "renderer"
    elif source == "renderer":
        raise UserError("--motion-source renderer needs --renderer EXPORT")
    cfg = EncodeConfig(motion_source=source, audio=audio_cfg, frames_per_batch=args.frames_per_batch)
    face_model = renderer = None
    if source == "renderer":
        renderer = RendererMotion(load_renderer(args.renderer), args.frames_per_batch, export=args.renderer)
    elif source == "encoder":
        if args.face_checkpoint:
            face_model = load_face_model(args.face_checkpoint)
        elif args.face_config:
            face_model = motion_only_model(PRESETS[args.face_config](), seed=args.seed)
            print(f"warning: randomly initialised {args.face_config} stage-1 encoder (latents are meaningless)")
        else:
            raise UserError("pass --face-checkpoint RUN (or --face-config for a smoke test, or --motion-source labels)")
    m = encode_dataset(
        args.data, args.out, cfg, face_model=face_model, renderer=renderer, progress=not args.no_progress
    )
    t = m["totals"]
    print(
        f"wrote {t['records']} motion records ({t['frames']} frames, motion dim {len(m['motion_names'])}, "
        f"{t['bytes'] / 1e6:.1f} MB) to {args.out} in {m['seconds_taken']:.1f} s; dropped: {json.dumps(m['dropped'])}"
    )
    return 0
