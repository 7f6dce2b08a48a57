"""``vasajax synth``: SynthTalk clips as files (mp4 + wav + npz + json), or with ``--shards`` a train and a
held-out set of clip-record shards (:mod:`vasajax.data.synth.shards`).

    vasajax synth --out DIR --num-clips N [--portraits DIR] [--size S] [--seed N]
    vasajax synth --shards --out data/synthtalk-small --num-clips 200 --size 256 --workers 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import sys
import time
from collections.abc import Sequence

import numpy as np

from vasajax.data.speech import Voice
from vasajax.data.synth.clip import synthesize_clip, write_clip
from vasajax.data.synth.config import SynthConfig
from vasajax.data.synth.inputs import load_portraits, load_sentences
from vasajax.data.synth.portrait import prepare_portraits
from vasajax.data.synth.shards import SPLITS, ShardsConfig, parse_voice, write_dataset
from vasajax.errors import UserError


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``vasajax synth``: write N SynthTalk clips (mp4 + wav + npz + json) and an ``index.json``; with
    ``--shards``, clip-record shards + manifests for train and held-out splits (:func:`_write_shards`)."""
    import tqdm

    ap = argparse.ArgumentParser(prog="vasajax synth", description="Make SynthTalk clips (offline).")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--num-clips", type=int, default=10, help="number of clips (default 10)")
    ap.add_argument("--portraits", default=None, help="folder of portrait photos (default: the bundled ones)")
    ap.add_argument("--size", type=int, default=256, help="frame side S in pixels (default 256)")
    ap.add_argument("--seed", type=int, default=0, help="base seed; clip i uses (seed, i)")
    ap.add_argument("--split", default=None, choices=("train", "heldout", "all", "both"),
                    help="sentence split (default: train; with --shards: both)")  # fmt: skip
    ap.add_argument("--sentences", default=None, help="text file with one sentence per line")
    sh = ap.add_argument_group("clip shards (--shards; see vasajax.data.synth.shards)")
    sh.add_argument("--shards", action="store_true", help="write clip-record shards + manifests, not mp4s")
    sh.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    sh.add_argument("--num-heldout", type=int, default=None, help="held-out clips (default max(4, N/10))")
    sh.add_argument("--heldout-voice", default="en-gb-scotland+f5", help="LANGUAGE+VARIANT kept out of train, or none")
    sh.add_argument("--heldout-portrait", default=None, help="portrait name kept out of train (default none)")
    sh.add_argument("--clip-frames", type=int, default=None, help="cut utterances into T-frame records")
    sh.add_argument("--codec", default="jpeg", choices=("jpeg", "png", "raw"), help="frame codec (default jpeg)")
    sh.add_argument("--clips-per-shard", type=int, default=25, help="clips per resumable work unit")
    args = ap.parse_args(argv)
    if args.num_clips < 1:
        raise UserError(f"--num-clips must be at least 1, got {args.num_clips}")
    if args.size < 64 or args.size % 2:
        raise UserError(f"--size must be an even number ≥ 64, got {args.size}")
    if args.shards:
        return _write_shards(args)
    if args.split == "both":
        raise UserError("--split both needs --shards; without it, pick train, heldout or all")
    cfg = dataclasses.replace(SynthConfig(), size=args.size)
    sentences = load_sentences(args.split or "train", args.sentences)
    portraits = prepare_portraits(load_portraits(args.portraits), cfg)
    index = []
    for i in tqdm.trange(args.num_clips, desc="SynthTalk", unit="clip", file=sys.stderr):
        rng = np.random.default_rng([args.seed, i])
        portrait = portraits[int(rng.integers(len(portraits)))]
        sentence = sentences[int(rng.integers(len(sentences)))]
        voice = Voice.random(rng)
        clip = synthesize_clip(portrait, sentence, voice, seed=int(rng.integers(2**31)), cfg=cfg)
        name = f"clip{i:05d}"
        write_clip(clip, args.out, name, crf=cfg.crf)
        index.append({"name": name, "portrait": portrait.name, "text": sentence,
                      "num_frames": int(len(clip.frames))})  # fmt: skip
    (pathlib.Path(args.out) / "index.json").write_text(json.dumps({"clips": index, "fps": cfg.fps}, indent=1))
    return 0


def _write_shards(args: argparse.Namespace) -> int:
    """``vasajax synth --shards ...`` (arguments parsed by :func:`cli_main`)."""
    split = args.split or "both"
    if split == "all":
        raise UserError("--split all would put held-out sentences in training shards; use train, heldout or both")
    none = ("", "none", "None")
    syn = dataclasses.replace(SynthConfig(), size=args.size)
    cfg = ShardsConfig(
        synth=syn,
        num_train=args.num_clips,
        num_heldout=args.num_heldout if args.num_heldout is not None else max(4, math.ceil(args.num_clips / 10)),
        seed=args.seed,
        heldout_voice=None if args.heldout_voice in none else args.heldout_voice,
        heldout_portrait=None if args.heldout_portrait in none else args.heldout_portrait,
        clip_frames=args.clip_frames,
        codec=args.codec,
        clips_per_unit=args.clips_per_shard,
    )
    if cfg.clip_frames is not None and cfg.clip_frames < 1:
        raise UserError(f"--clip-frames must be at least 1, got {cfg.clip_frames}")
    if cfg.clips_per_unit < 1:
        raise UserError(f"--clips-per-shard must be at least 1, got {cfg.clips_per_unit}")
    if cfg.heldout_voice:
        parse_voice(cfg.heldout_voice)
    splits = SPLITS if split == "both" else (split,)
    if split == "heldout":
        cfg = dataclasses.replace(cfg, num_heldout=args.num_clips if args.num_heldout is None else args.num_heldout)
    t0 = time.perf_counter()
    portraits = prepare_portraits(load_portraits(args.portraits), syn)
    manifests = write_dataset(
        args.out, cfg, portraits, sentences_path=args.sentences, splits=splits, workers=args.workers,
        progress=sys.stderr.isatty(),
    )  # fmt: skip
    for name, m in manifests.items():
        t = m["totals"]
        drop = f", dropped {m['dropped']}" if m["dropped"] else ""
        print(
            f"{name}: {t['records']} records, {t['frames']} frames ({t['seconds']:.0f} s), "
            f"{t['identities']} identities, {t['bytes'] / 1e6:.1f} MB{drop} → {pathlib.Path(args.out) / name}"
        )
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    from vasajax.cli import run

    raise SystemExit(run(cli_main))
