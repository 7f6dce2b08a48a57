"""Import layering: the model packages and the export format never import a layer above them.

``vasajax.face`` and ``vasajax.motion`` (models and their stage entries) sit below the whole-export API
(``checkpoint_export``), which sits below loading, training, the product and the tools; ``export_format`` sits
below the models. Read from the source with ``ast`` (nothing is imported), every ``import`` counted, those inside
functions too, since a lazy import is still a dependency.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "vasajax"
ABOVE_MODELS = {"checkpoint_export", "train", "pipeline", "load", "zoo", "eval", "app", "cli", "notebook"}
"""Top-level ``vasajax`` modules and packages above the model packages."""
LAYERS = {
    "face": ABOVE_MODELS,
    "motion": ABOVE_MODELS,
    "export_format.py": ABOVE_MODELS | {"face", "motion", "facetrack", "data"},
}
"""A file or package under ``src/vasajax`` → the top-level ``vasajax`` names it must not import."""


def imported_modules(path: Path) -> set[str]:
    """Dotted names of every module ``path`` imports (``from vasajax import x`` counts as ``vasajax.x``)."""
    package = ".".join(("vasajax", *path.relative_to(SRC).parent.parts))
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            out.add(base)
            out |= {f"{base}.{alias.name}" for alias in node.names}
    return out


def vasajax_top(module: str) -> str | None:
    """``vasajax.a.b`` → ``a``; None for modules outside vasajax."""
    parts = module.split(".")
    return parts[1] if parts[0] == "vasajax" and len(parts) > 1 else None


def sources(layer: str) -> list[Path]:
    p = SRC / layer
    return sorted(p.rglob("*.py")) if p.is_dir() else [p]


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_no_import_from_a_higher_layer(layer):
    files = sources(layer)
    assert files and all(f.is_file() for f in files), layer
    upward = [
        f"{f.relative_to(SRC)} imports {m}"
        for f in files
        for m in sorted(imported_modules(f))
        if vasajax_top(m) in LAYERS[layer]
    ]
    assert not upward, "\n".join(upward)


def test_the_import_reader_sees_every_form():
    """The reader finds plain, ``from vasajax import x`` and lazy imports (so the layering test cannot pass empty)."""
    stage = imported_modules(SRC / "face" / "stage.py")
    assert "vasajax.face.export_part" in stage and "vasajax.face.model.encode_fn" in stage
    assert "vasajax.export_format" in imported_modules(SRC / "motion" / "stage.py")
    assert "vasajax.motion.wav2vec2_params" in imported_modules(SRC / "motion" / "audio.py")  # inside a function
    assert vasajax_top("vasajax.checkpoint_export") == "checkpoint_export" and vasajax_top("numpy") is None
