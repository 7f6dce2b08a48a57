"""SynthTalk's inputs: the sentences (a train split and a held-out split) and the portrait photos."""

from __future__ import annotations

import os
import pathlib

import numpy as np

from vasajax.errors import UserError
from vasajax.image import ASSETS, PORTRAITS, load_image

SENTENCES = ASSETS / "sentences.txt"
"""The bundled sentences, one a line; the held-out ones follow the line starting with ``HELDOUT_MARKER``."""
HELDOUT_MARKER = "# HELD-OUT:"


def load_sentences(split: str = "train", path: str | os.PathLike | None = None) -> list[str]:
    """Sentences from ``assets/sentences.txt`` (or ``path``): "train" (1–180), "heldout" (181–200) or "all".

    The held-out split starts after the line beginning with ``# HELD-OUT:``; use it only for evaluation.
    """
    if split not in ("train", "heldout", "all"):
        raise UserError(f"sentence split must be 'train', 'heldout' or 'all', got {split!r}")
    lines = pathlib.Path(path or SENTENCES).read_text(encoding="utf-8").splitlines()
    train, heldout, target = [], [], None
    target = train
    for line in lines:
        if line.startswith(HELDOUT_MARKER):
            target = heldout
        elif line.strip() and not line.startswith("#"):
            target.append(line.strip())
    out = {"train": train, "heldout": heldout, "all": train + heldout}[split]
    if not out:
        raise UserError(f"no {split!r} sentences in {path or SENTENCES}; add one sentence per line")
    return out


def load_portraits(folder: str | os.PathLike | None = None) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 image) for every .png/.jpg/.jpeg/.webp in ``folder``, or the bundled public-domain ones."""

    if folder is None:
        return [(name, load_image(path)) for name, path in PORTRAITS.items()]
    root = pathlib.Path(folder)
    if not root.is_dir():
        raise UserError(f"portrait folder {root} does not exist; pass a folder of face photos (.jpg/.png)")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    if not files:
        raise UserError(f"no .jpg/.png images in {root}; add portrait photos with one clear face each")
    return [(p.stem, load_image(p)) for p in files]
