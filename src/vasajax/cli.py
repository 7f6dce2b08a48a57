"""The ``vasajax`` command line.

Each subcommand lives beside the code it drives and exposes ``cli_main(argv) -> int`` (raising ``UserError`` for bad
input); this file routes, and :func:`run` maps errors to exit codes for every entry point.
Imports are lazy so ``vasajax --help`` is instant. A :class:`vasajax.errors.UserError` (bad input, missing model
file, ...) is printed as one ``error:`` line with exit status 2, never a traceback; Ctrl-C exits with 130.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from vasajax.errors import UserError

# name -> (module with cli_main, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "animate": ("vasajax.pipeline.cli", "portrait + speech -> talking-face mp4 (watermarked)"),
    "synth": ("vasajax.data.synth.cli", "make SynthTalk clips (portrait + espeak-ng speech, with ground truth)"),
    "prep": ("vasajax.data.prep", "prepare a folder of talking-face videos into clip shards"),
    "train-face": ("vasajax.train.face", "train stage 1 (face latent model) on clip shards"),
    "train-painters": ("vasajax.train.painters", "fit a stage-1 run's mouth/eye patch painters, the rest frozen"),
    "fit-landmarks": ("vasajax.train.landmarks", "fit a stage-1 run's landmark-flow head, the rest frozen"),
    "encode-dataset": ("vasajax.train.encode_dataset", "turn clip shards into motion-latent shards for stage 2"),
    "train-motion": ("vasajax.train.motion", "train stage 2 (motion diffusion transformer) on motion shards"),
    "export": ("vasajax.train.export", "a face run + a motion run -> an inference export (checkpoints/...)"),
    "train-capp": ("vasajax.eval.capp_train", "train the CAPP audio-pose contrastive scorer used by eval"),
    "eval": ("vasajax.eval.cli", "lip-sync, pose, gaze, identity (and optional FVD/Sync/CAPP) metrics"),
    "heldout": ("vasajax.eval.heldout", "an export on held-out SynthTalk clips: Table 1 and the CFG ablation"),
    "face-recon": ("vasajax.train.face_eval", "stage-1 self-reenactment PSNR and a cross-identity grid"),
    "app": ("vasajax.app", "a local web page: drop a photo, record speech, watch it talk (pip install 'vasajax[app]')"),
    "convert": ("vasajax.zoo.cli", "released LivePortrait / JoyVASA weights -> an export for animate --checkpoint"),
    "detect": ("vasajax.detect", "is this a vasajax video? (watermark + metadata tag)"),
    "models": ("vasajax.modelfiles", "fetch (or locate) the MediaPipe face-landmarker model file"),
    "info": ("vasajax.cli", "print versions, devices and model sizes of the config presets"),
}


def _info(argv: Sequence[str]) -> int:
    import jax

    import vasajax
    from vasajax.face.config import PRESETS
    from vasajax.face.model import abstract, count_params

    print(f"vasajax {vasajax.__version__}, jax {jax.__version__}, devices: {jax.devices()}")
    for name, make in PRESETS.items():
        cfg = make()
        n = count_params(abstract(cfg))
        print(f"face {name:5s}: {cfg.image_size}² images, volume D×H×W×C = {cfg.vol_shape}, {n / 1e6:.2f} M params")
    return 0


def _usage() -> str:
    lines = ["usage: vasajax COMMAND [options]   (vasajax COMMAND --help for each)", "", "commands:"]
    lines += [f"  {name:15s} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        import vasajax

        print(vasajax.__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command '{name}'\n{_usage()}", file=sys.stderr)
        return 2
    if name == "info":
        return run(_info, rest)
    module = importlib.import_module(COMMANDS[name][0])
    return run(getattr(module, "cli_main", None) or module.main, rest)


def run(cli_main, argv: Sequence[str] | None = None) -> int:
    """The one place a command's errors become exit codes: ``UserError`` → its message on one ``error:`` line and
    exit status 2; Ctrl-C → 130. Every ``vasajax`` subcommand and every ``python -m vasajax....`` entry runs here."""
    try:
        return int(cli_main(sys.argv[1:] if argv is None else list(argv)) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
