"""The course notebooks: each .py (jupytext py:percent, the source) matches its .ipynb, and each executes top to
bottom in smoke mode (tiny configs, seconds of data) without an error."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
SOURCES = sorted(NB_DIR.glob("[0-9][0-9]_*.py"))

jupytext = pytest.importorskip("jupytext")
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_there_are_notebooks():
    assert SOURCES, "no notebooks/NN_*.py found"


@pytest.mark.parametrize("src", SOURCES, ids=[p.stem for p in SOURCES])
def test_notebook_pair_in_sync(src: Path):
    """The committed .ipynb has the same cells as the .py (run `make notebooks-sync` after editing a .py)."""
    ipynb = src.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} missing: run `make notebooks-sync`"
    assert _cells(jupytext.read(src)) == _cells(nbformat.read(ipynb, as_version=4)), (
        f"{ipynb.name} is out of date with {src.name}: run `make notebooks-sync`"
    )


@pytest.mark.parametrize("src", SOURCES, ids=[p.stem for p in SOURCES])
def test_notebook_runs_in_smoke_mode(src: Path, tmp_path, monkeypatch):
    monkeypatch.setenv("VASAJAX_FULL", "0")
    monkeypatch.setenv("VASAJAX_SMOKE", "1")  # tiny random models (the notebooks' default is the demo model)
    monkeypatch.setenv("VASAJAX_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # The kernel is a fresh process: give it the test session's CPU-only JAX settings.
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    nb = jupytext.read(src)
    client = nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NB_DIR)}}
    )
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
