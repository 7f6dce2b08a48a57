"""``vasajax convert``: released foreign weights → a vasajax export folder (``vasajax.zoo.export``).

    vasajax convert liveportrait SRC OUT            # SRC: pretrained_weights/liveportrait (or pretrained_weights)
    vasajax convert joyvasa SRC OUT [--audio-encoder DIR] [--generator FILE]

``liveportrait`` writes a renderer-only export (stages: renderer liveportrait). ``joyvasa`` reads JoyVASA's
``pretrained_weights/`` layout::

    SRC/liveportrait/base_models/*.pth, SRC/liveportrait/retargeting_models/stitching_retargeting_module.pth
    SRC/JoyVASA/motion_generator/*.pt, SRC/JoyVASA/motion_template/motion_template.pkl
    SRC/chinese-hubert-base (or hubert-base-ls960 / wav2vec2-base-960h: the generator's ``audio_model``)

and writes one export with all three stages, ready for ``vasajax animate --checkpoint OUT``. Reading ``.pth`` /
``.pt`` needs torch (CPU is enough). The folder is written atomically; bad input is a one-line ``UserError``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import vasajax
from vasajax.errors import UserError
from vasajax.zoo import export
from vasajax.zoo.joyvasa import convert as jvc
from vasajax.zoo.joyvasa.template import read_template
from vasajax.zoo.liveportrait import convert as lpc

LIVEPORTRAIT_COMMIT = "1986663be3b6902605d32200c01f4bfd36cda83d"
"""KwaiVGI/LivePortrait commit the port follows."""
JOYVASA_COMMIT = "74290f61accfbabef19b195a54b8122141f0e336"
"""jdh-algo/JoyVASA commit the port follows."""
AUDIO_FOLDERS = {
    "hubert_zh": "chinese-hubert-base",
    "hubert_zh_ori": "chinese-hubert-base",
    "hubert": "hubert-base-ls960",
    "wav2vec2": "wav2vec2-base-960h",
}
"""Upstream's ``audio_model`` → the folder name its README downloads."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vasajax convert", description="Convert released foreign weights to an export.")
    sub = p.add_subparsers(dest="model", required=True)
    lp = sub.add_parser("liveportrait", help="LivePortrait renderer (KwaiVGI/LivePortrait .pth files)")
    lp.add_argument("src", help="pretrained_weights/liveportrait (or pretrained_weights)")
    lp.add_argument("out", help="output export folder")
    lp.add_argument("--no-retargeting", action="store_true", help="leave out the stitching module S")
    jv = sub.add_parser("joyvasa", help="JoyVASA (motion generator + audio encoder) + LivePortrait renderer")
    jv.add_argument("src", help="JoyVASA's pretrained_weights folder")
    jv.add_argument("out", help="output export folder")
    jv.add_argument("--audio-encoder", help="the audio encoder's Hugging Face folder (default: SRC/<its name>)")
    jv.add_argument("--generator", help="motion_generator/*.pt file name (default: the only one, or the hubert one)")
    return p


def _check_src(src: str) -> Path:
    p = Path(src).expanduser()
    if not p.is_dir():
        raise UserError(f"{p} is not a folder; point at the downloaded pretrained_weights")
    return p


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve().parent))
    except ValueError:
        return path.name


def _provenance(**extra) -> dict:

    return {"converted_by": f"vasajax {vasajax.__version__}", "converted_at": time.strftime("%Y-%m-%d"), **extra}


def convert_liveportrait(src: Path, out: Path, *, retargeting: bool = True, cfg=None) -> Path:
    """``cfg``: the network sizes (default the released ``LivePortraitConfig.full()``; tests pass ``tiny()``)."""

    cfg, model = lpc.load_liveportrait(src, cfg, retargeting=retargeting)
    root = lpc._root(src)
    files = [_rel(root / lpc.FILES[n], src) for n in (*lpc.MODULES, *([lpc.RETARGETING] if retargeting else []))]
    prov = _provenance(liveportrait={"upstream": f"KwaiVGI/LivePortrait@{LIVEPORTRAIT_COMMIT}", "files": files})
    return export.write_liveportrait_export(out, cfg, model, prov)


def _generator_file(folder: Path, name: str | None) -> Path:
    if name:
        return folder / name
    pts = sorted(folder.glob("*.pt")) if folder.is_dir() else []
    if len(pts) == 1:
        return pts[0]
    preferred = folder / "motion_generator_hubert_chinese.pt"
    if preferred.is_file():
        return preferred
    if not pts:
        raise UserError(f"no motion generator in {folder} (JoyVASA/motion_generator/*.pt); download JoyVASA there")
    raise UserError(f"{folder} holds several generators ({', '.join(p.name for p in pts)}); pick one with --generator")


def convert_joyvasa(
    src: Path,
    out: Path,
    *,
    audio_encoder: str | None = None,
    generator: str | None = None,
    lp_cfg=None,
    **overrides,
) -> Path:
    """``lp_cfg``/``overrides``: LivePortrait sizes and JoyVASA config fields not in the checkpoint's args (tests)."""

    jv_root = src / "JoyVASA"
    if not jv_root.is_dir() or not (src / "liveportrait").is_dir():
        raise UserError(f"{src} is not JoyVASA's pretrained_weights (it needs JoyVASA/ and liveportrait/ inside)")
    pt = _generator_file(jv_root / "motion_generator", generator)
    tpl_path = jv_root / "motion_template" / "motion_template.pkl"
    template = read_template(tpl_path)  # cheap checks before the big reads
    state, args = jvc.read_pt(pt)
    cfg, dit, sched, jv_prov = jvc.convert_motion_generator(state, args, source=_rel(pt, src), **overrides)
    if audio_encoder:
        audio_dir = Path(audio_encoder).expanduser()
    else:
        audio_dir = src / AUDIO_FOLDERS.get(cfg.audio_model, "chinese-hubert-base")
    if not audio_dir.is_dir():
        raise UserError(f"audio encoder folder {audio_dir} not found; download it or pass --audio-encoder DIR")
    enc_cfg, encoder, enc_source = jvc.load_audio_encoder(audio_dir, state)
    if enc_cfg.hidden_size != cfg.audio_dim:
        raise UserError(f"audio encoder in {audio_dir} has width {enc_cfg.hidden_size}; JoyVASA needs {cfg.audio_dim}")
    lp_cfg, lp_model = lpc.load_liveportrait(src / "liveportrait", lp_cfg)
    if cfg.motion_dim != 3 * lp_cfg.motion.num_kp + 7:
        raise UserError(
            f"{pt.name} makes {cfg.motion_dim}-dim motion; LivePortrait's needs {3 * lp_cfg.motion.num_kp + 7}"
        )
    jv_prov["audio_encoder"] = {"folder": audio_dir.name, "weights": enc_source}
    lp_files = [_rel(src / "liveportrait" / lpc.FILES[n], src) for n in (*lpc.MODULES, lpc.RETARGETING)]
    prov = _provenance(
        liveportrait={"upstream": f"KwaiVGI/LivePortrait@{LIVEPORTRAIT_COMMIT}", "files": lp_files},
        joyvasa={"upstream": f"jdh-algo/JoyVASA@{JOYVASA_COMMIT}", "template": _rel(tpl_path, src), **jv_prov},
    )
    return export.write_joyvasa_export(out, lp_cfg, lp_model, cfg, dit, sched, template, enc_cfg, encoder, prov)


def cli_main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    src, out = _check_src(args.src), Path(args.out).expanduser()
    t0 = time.perf_counter()
    if args.model == "liveportrait":
        dest = convert_liveportrait(src, out, retargeting=not args.no_retargeting)
    else:
        dest = convert_joyvasa(src, out, audio_encoder=args.audio_encoder, generator=args.generator)
    print(f"wrote {dest} ({args.model}) in {time.perf_counter() - t0:.1f} s; use: vasajax animate --checkpoint {dest}")
    return 0
