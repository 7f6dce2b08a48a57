"""LivePortrait loader on real ``.pth`` files in the released layout (torch writes them; the parity fixtures'
weights are reused). The torch-free tests are in test_zoo_liveportrait.py."""

from __future__ import annotations

import numpy as np
import pytest

from test_zoo_liveportrait import TINY, fixture, nhwc, rel_err
from vasajax.errors import UserError
from vasajax.zoo.liveportrait import convert as lpc
from vasajax.zoo.liveportrait import jitted, load_liveportrait

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def _save(path, sd: dict):
    torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}, path)


@pytest.fixture
def released(tmp_path):
    """``pretrained_weights/liveportrait`` with the tiny fixtures' weights; the retargeting file nests three state
    dicts whose keys carry DDP's ``module.``, as the released one does."""
    root = tmp_path / "pretrained_weights" / "liveportrait"
    (root / "base_models").mkdir(parents=True)
    (root / "retargeting_models").mkdir()
    for name in lpc.MODULES:
        _save(root / lpc.FILES[name], fixture(name)[0])
    nested: dict = {}
    for k, v in fixture(lpc.RETARGETING)[0].items():
        prefix, rest = k.split(".", 1)
        nested.setdefault(prefix, {})[rest] = torch.from_numpy(v)
    nested["epoch"] = 3  # other top-level entries are not read (upstream reads only the three sub-dicts)
    torch.save(nested, root / lpc.FILES[lpc.RETARGETING])
    return root


def test_load_released_layout(released):
    cfg, model = load_liveportrait(released.parent, TINY)  # the parent folder is accepted too
    assert model.retargeting is not None
    _, inp, out = fixture("chain")
    params, fns = jitted(model)
    assert rel_err(fns.extract_appearance(params, nhwc(inp["source"])), nhwc(out["volume"])) < 1e-4


def test_wrong_file_names_the_file(released):
    _save(released / lpc.FILES["appearance_feature_extractor"], fixture("motion_extractor")[0])
    with pytest.raises(UserError) as e:
        load_liveportrait(released, TINY)
    assert "appearance_feature_extractor.pth" in str(e.value) and "\n" not in str(e.value)


def test_retargeting_optional(released):
    (released / lpc.FILES[lpc.RETARGETING]).unlink()
    with pytest.raises(UserError, match="stitching_retargeting_module.pth not found"):
        load_liveportrait(released, TINY)
    assert load_liveportrait(released, TINY, retargeting=False)[1].retargeting is None
