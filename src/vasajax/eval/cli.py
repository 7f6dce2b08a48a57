"""``vasajax eval``: VASA-1's metrics (§4.2) for a folder of talking-face videos, as a markdown + JSON table.

    vasajax eval --videos out/generated --audio data/test_audio [--conditions conditions.json] --out eval/run1
    vasajax eval --videos data/synthtalk-eval --out eval/real        # REAL SynthTalk clips: the reference row

Audio: ``--audio DIR/<video stem>.<wav|flac|mp3|...>``, else each video's own sound track. Phoneme timings for
``phon_corr``: a SynthTalk ``<stem>.json`` beside the audio (beside the video when it has its own sound).
Requested conditions (for E_g and E_d): ``--conditions`` JSON ``{"<stem>": {"gaze": [θ, φ] radians (camera
space) | per-frame list, "gaze_head": ..., "distance": d | per-frame list}}``; for SynthTalk clips
(``<stem>.npz`` ground truth beside the video) the truth is used when no condition is given, so a folder made by
``vasajax synth`` evaluates against its ground truth, and its row is the "real video" reference of VASA-1's
tables. ``--reference DIR`` adds such a folder as a second row of the same table.

Optional metrics, each left out with a one-line note when its model is not given: Sync-C/-D (``--syncnet
syncnet_v2.model``), CAPP (``--capp DIR`` from ``python -m vasajax.eval.capp_train``), identity
(``--portraits DIR|FILE``: ``<stem>.png|jpg`` per video, or one portrait for all; SynthTalk meta names its
bundled portrait; needs ``pip install -e '.[eval]'``), FVD25 (``--i3d i3d_torchscript.pt --real-videos DIR``).
"""

from __future__ import annotations

import argparse
import json
import pathlib
from collections.abc import Sequence

import numpy as np

from vasajax.errors import UserError
from vasajax.eval import capp, fvd, identity, report, syncnet, syncnet_score
from vasajax.eval.fvd import NO_CHECKPOINT
from vasajax.image import PORTRAITS, load_image
from vasajax.motion.audio import frame_features


def _portrait_for(stem: str, portraits: pathlib.Path | None, vdir: pathlib.Path) -> np.ndarray | None:

    if portraits is not None and portraits.is_file():
        return load_image(portraits)
    if portraits is not None:
        for ext in (".png", ".jpg", ".jpeg", ".webp"):
            if (portraits / f"{stem}{ext}").is_file():
                return load_image(portraits / f"{stem}{ext}")
    meta = vdir / f"{stem}.json"
    if meta.is_file():
        name = json.loads(meta.read_text()).get("portrait")
        if name in PORTRAITS:
            return load_image(PORTRAITS[name])
    return None


class _Extras:
    """Builds the optional metric callables; records a note for each metric that is left out."""

    def __init__(self, args: argparse.Namespace):
        self.notes: list[str] = []
        self.syncnet = self.capp = self.embedder = self.i3d = None
        self.portraits = pathlib.Path(args.portraits) if args.portraits else None
        if args.syncnet:
            self.syncnet = syncnet.load_syncnet(args.syncnet)
        else:
            self.notes.append("Sync-C/Sync-D left out: pass --syncnet syncnet_v2.model (syncnet_python weights)")
        if args.capp:
            self.capp = capp.load(args.capp)
            meta = json.loads((pathlib.Path(args.capp) / "config.json").read_text()).get("meta", {})
            if meta.get("caveat"):
                self.notes.append(f"CAPP model trained on {meta.get('trained_on', '?')}: {meta['caveat']}")
        else:
            self.notes.append("CAPP left out: pass --capp DIR (python -m vasajax.eval.capp_train makes one)")
        if not args.no_identity:
            try:
                self.embedder = identity.IdentityEmbedder()
            except UserError as e:
                self.notes.append(f"identity left out: {e}")
        if args.i3d:
            if not args.real_videos:
                raise UserError("--i3d needs --real-videos DIR (the real clips FVD compares against)")
            self.i3d = fvd.load_i3d(args.i3d)
        else:
            self.notes.append(f"FVD25 left out: {NO_CHECKPOINT}")
        self.clips: list[np.ndarray] = []

    def for_video(self, vdir: pathlib.Path):
        def per_video(stem: str, frames: np.ndarray, fps: float):
            fns = []
            if self.syncnet is not None:
                fns.append(lambda tr, wave: syncnet_score.evaluate(self.syncnet, frames, tr.landmarks, wave))
            if self.capp is not None:
                acfg = capp.audio_config(self.capp.cfg)
                fns.append(lambda tr, wave: {"capp": capp.capp_score(self.capp, tr.pose, frame_features(wave, acfg))})
            if self.embedder is not None:
                portrait = _portrait_for(stem, self.portraits, vdir)
                if portrait is not None:
                    fns.append(
                        lambda tr, wave: identity.identity_similarity(self.embedder, portrait, frames, tr.landmarks)
                    )
            if self.i3d is not None:
                self.clips += [fvd.resize_clip(c) for c in fvd.clips_of(frames)]
            return fns

        return per_video


def _fvd_against_real(extras: _Extras, real_dir: str, results: list[dict]) -> None:

    real = []
    for p in sorted(pathlib.Path(real_dir).iterdir()):
        if p.suffix.lower() in report.VIDEO_EXTS:
            real += [fvd.resize_clip(c) for c in fvd.clips_of(report.read_video(p)[0])]
    fake = extras.clips
    value = fvd.fvd_from_features(fvd.video_features(extras.i3d, real), fvd.video_features(extras.i3d, fake))
    results[0]["summary"]["fvd25"] = value
    extras.notes.append(f"FVD25 from {len(fake)} generated and {len(real)} real 25-frame clips")


def cli_main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vasajax eval", description="VASA-1 metrics for a folder of talking-face videos.")
    ap.add_argument("--videos", required=True, help="folder of videos to evaluate (.mp4, ...)")
    ap.add_argument("--audio", default=None, help="folder with <video stem>.wav|... (default: each video's sound)")
    ap.add_argument("--conditions", default=None, help="JSON of requested gaze/distance per video (see --help)")
    ap.add_argument("--reference", default=None, help="a folder of real (e.g. SynthTalk) videos for a reference row")
    ap.add_argument("--out", default=None, help="output prefix for .md and .json (default VIDEOS/eval)")
    ap.add_argument("--label", default=None, help="name of the evaluated set in the table")
    ap.add_argument("--syncnet", default=None, help="syncnet_python weights (syncnet_v2.model) for Sync-C/-D")
    ap.add_argument("--capp", default=None, help="CAPP checkpoint folder")
    ap.add_argument("--portraits", default=None, help="portrait file or folder (<stem>.png|jpg) for identity")
    ap.add_argument("--no-identity", action="store_true", help="skip identity similarity")
    ap.add_argument("--i3d", default=None, help="TorchScript I3D (i3d_torchscript.pt) for FVD25")
    ap.add_argument("--real-videos", default=None, help="real videos FVD compares against")
    ap.add_argument("--max-videos", type=int, default=None, help="evaluate at most N videos per folder")
    args = ap.parse_args(argv)
    vdir = pathlib.Path(args.videos)
    conditions = report.synthtalk_conditions(vdir)  # explicit conditions override the truth key by key
    for stem, cond in report.load_conditions(args.conditions).items():
        conditions[stem] = {**conditions.get(stem, {}), **cond}
    extras = _Extras(args)
    results = [report.evaluate_videos(vdir, args.audio, conditions=conditions, per_video=extras.for_video(vdir),
                                      max_videos=args.max_videos, label=args.label or vdir.name)]  # fmt: skip
    if extras.i3d is not None:
        _fvd_against_real(extras, args.real_videos, results)
    if args.reference:
        rdir = pathlib.Path(args.reference)
        extras.clips = []
        results.append(report.evaluate_videos(rdir, None, conditions=report.synthtalk_conditions(rdir),
                                              per_video=extras.for_video(rdir), max_videos=args.max_videos,
                                              label=f"{rdir.name} (reference)"))  # fmt: skip
    out = pathlib.Path(args.out) if args.out else vdir / "eval"
    doc = report.write_report(results, out, extras.notes)
    print(report.markdown_table(doc["summary"], first="set"))
    for n in extras.notes:
        print(f"- {n}")
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    from vasajax.cli import run

    raise SystemExit(run(cli_main))
