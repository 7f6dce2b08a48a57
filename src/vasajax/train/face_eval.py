"""``vasajax face-recon``: stage-1 quality of a training run or an export on held-out clips.

The measures are ``vasajax.eval.face_recon``'s (self-reenactment PSNR against the copy-the-source baseline, in the
mouth box too, sharpness, whether the rendered mouth follows the driver's; the cross-identity grid); this command
loads the face model — a ``train-face`` run folder's latest EMA weights (any trained renderer, compared at its output
size), or an export's — and prints them. It lives with the trainers because reading a run folder is the trainer's
business, so ``eval`` needs nothing of ``train``.

    vasajax face-recon --face-run runs/face --data HELDOUT_SHARDS --json recon.json --out grid.png
    vasajax face-recon --checkpoint checkpoints/demo --data HELDOUT_SHARDS
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from PIL import Image

from vasajax.checkpoint_export import load_export
from vasajax.errors import UserError
from vasajax.eval.face_recon import cross_identity_grid, save_error_map, self_reenactment
from vasajax.load import resolve_checkpoint
from vasajax.train.face import Reenactor, load_reenactor


def cli_main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vasajax face-recon", description=__doc__.split("\n")[0].strip("`"))
    ap.add_argument("--face-run", help="train-face run folder (EMA weights of its latest checkpoint)")
    ap.add_argument("--checkpoint", help="or an export folder (face.safetensors)")
    ap.add_argument("--data", required=True, help="held-out clip shards")
    ap.add_argument("--out", help="PNG path for the cross-identity grid")
    ap.add_argument("--max-clips", type=int, default=8)
    ap.add_argument("--drivers", type=int, default=4, help="driver frames per clip (evenly spaced)")
    ap.add_argument("--json", help="write the PSNR numbers here too")
    ap.add_argument("--error-map", help="PNG path for the mean squared-error map of the self-reenactment pairs")
    ap.add_argument(
        "--relative", action="store_true", help="cross-identity grid with relative motion (driver vs its clip start)"
    )
    args = ap.parse_args(argv)
    if args.face_run:
        model = load_reenactor(args.face_run)  # any trained renderer
        if args.relative and isinstance(model, Reenactor):
            raise UserError("--relative needs VASA-1's face latent model (a driver reference frame)")
    else:
        model = load_export(resolve_checkpoint(args.checkpoint)).face_model
    res = self_reenactment(
        model, args.data, max_clips=args.max_clips, num_drivers=args.drivers, error_map=bool(args.error_map)
    )
    emap = res.pop("error_map", None)
    print(json.dumps(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    if args.error_map:
        save_error_map(emap, args.error_map)
        print(f"wrote {args.error_map}")
    if args.out:
        Image.fromarray(cross_identity_grid(model, args.data, max_clips=args.max_clips, relative=args.relative)).save(
            args.out
        )
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from vasajax.cli import run

    raise SystemExit(run(cli_main))
