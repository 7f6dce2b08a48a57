"""What the course notebooks (``notebooks/``) share: the smoke/full switch, run folders, inline media.

Every notebook starts with::

    from vasajax import notebook as nb
    FULL = nb.full_run()          # False unless VASAJAX_FULL=1 (or set FULL = True by hand)

and then chooses sizes with ``nb.pick(smoke=..., full=...)``: the default (quick) sizes use seconds of data so a
notebook runs top to bottom in about a minute on a 2-core laptop; ``VASAJAX_FULL=1`` uses real amounts of data.
Notebooks that animate (00, 04, 05) take their model from :func:`demo_checkpoint`: the shipped demo checkpoint,
except under ``VASAJAX_SMOKE=1`` — what the test suite sets — where a tiny export with random weights stands in
so every notebook executes in seconds.

These helpers are deliberately thin: anything a notebook needs beyond showing things belongs in the library.
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vasajax import checkpoint_export as ce
from vasajax.face.config import FaceConfig
from vasajax.load import resolve_checkpoint
from vasajax.motion.dit import MotionConfig

FULL_ENV = "VASAJAX_FULL"
"""Environment variable that switches every notebook to its full run (``VASAJAX_FULL=1``)."""
OUT_ENV = "VASAJAX_NOTEBOOK_OUT"
"""Environment variable naming the folder notebooks write runs and videos under (default ``out/notebooks``)."""


SMOKE_ENV = "VASAJAX_SMOKE"
"""Environment variable the test suite sets (``VASAJAX_SMOKE=1``): tiny random models instead of the demo one."""


def smoke_test() -> bool:
    """True when a test is executing the notebook (``VASAJAX_SMOKE=1``): models are tiny and random."""
    return os.environ.get(SMOKE_ENV, "0").strip().lower() in ("1", "true", "yes")


def full_run() -> bool:
    """True when the notebooks should do their full (slow) run: ``VASAJAX_FULL=1`` in the environment."""
    return os.environ.get(FULL_ENV, "0").strip().lower() in ("1", "true", "yes")


def pick(*, smoke, full, full_run_: bool | None = None):
    """``full`` in a full run, ``smoke`` otherwise (``full_run_`` overrides the environment)."""
    is_full = full_run() if full_run_ is None else full_run_
    return full if is_full else smoke


def out_dir(name: str, *, fresh: bool = False) -> Path:
    """A folder for one notebook's outputs: ``$VASAJAX_NOTEBOOK_OUT/<name>`` (default ``out/notebooks/<name>``
    under the repository, which git ignores). ``fresh=True`` empties it first (a new training run)."""
    root = Path(os.environ.get(OUT_ENV) or _repo_root() / "out" / "notebooks")
    path = root / name
    if fresh and path.exists():
        import shutil

        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _repo_root() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "notebooks").is_dir():
            return parent
    return Path(tempfile.gettempdir()) / "vasajax"


def demo_checkpoint(*, trained: bool | None = None) -> Path:
    """The checkpoint a notebook animates with.

    By default the shipped demo checkpoint (``checkpoints/demo`` or ``$VASAJAX_CHECKPOINT``); under
    ``VASAJAX_SMOKE=1`` (the test suite) a tiny export with random weights, written once under :func:`out_dir`,
    so the whole pipeline runs in seconds. ``trained`` overrides the environment (``False``: the tiny random one).
    """

    if (not smoke_test()) if trained is None else trained:
        return resolve_checkpoint(None)

    path = out_dir("checkpoints") / "tiny-random"
    if not (path / "manifest.json").exists():
        ce.random_export(path, FaceConfig.tiny(), MotionConfig.tiny())
    return path


def asset(name: str) -> Path:
    """A file bundled with the package (``vasajax/assets``): portraits, sentences."""
    from importlib import resources

    return Path(str(resources.files("vasajax") / "assets" / name))


def show_video(path: str | os.PathLike, *, width: int = 256):
    """An inline HTML5 player with the mp4 embedded (the notebook stays self-contained when saved)."""
    from IPython.display import HTML

    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    src = f"data:video/mp4;base64,{data}"
    return HTML(f'<video width="{int(width)}" controls loop><source src="{src}" type="video/mp4"></video>')


def show_audio(samples: np.ndarray, rate: int = 16_000):
    """An inline audio player for a float waveform."""
    from IPython.display import Audio

    return Audio(np.asarray(samples, np.float32), rate=rate)


def image_grid(
    rows: Sequence[Sequence[np.ndarray]],
    *,
    row_titles: Sequence[str] | None = None,
    col_titles: Sequence[str] | None = None,
    cell: float = 1.8,
    title: str | None = None,
):
    """A matplotlib figure showing ``rows[i][j]`` (H×W×3 images, uint8 or float in [0, 1]) in a grid."""
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(cell * n_cols, cell * n_rows), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if j < len(row) and row[j] is not None:
                img = np.asarray(row[j])
                ax.imshow(img if img.dtype == np.uint8 else np.clip(img, 0.0, 1.0))
            if col_titles is not None and i == 0 and j < len(col_titles):
                ax.set_title(col_titles[j], fontsize=9)
            if row_titles is not None and j == 0 and i < len(row_titles):
                ax.set_ylabel(row_titles[i], fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
