"""``vasajax convert`` on real ``.pth`` / ``.pt`` files in the released layouts (torch writes them from the tiny
parity fixtures). Needs torch (the test extra), like test_zoo_liveportrait_pth.py; the torch-free stage tests are
in test_zoo_stages.py."""

from __future__ import annotations

import argparse
import json
import pickle

import numpy as np
import pytest

from test_zoo_liveportrait_pth import released  # noqa: F401 (fixture)
from test_zoo_stages import LP, _fixture, liveportrait_model
from vasajax import cli
from vasajax.errors import UserError
from vasajax.stages import RENDERERS
from vasajax.zoo import cli as zoo_cli

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def test_convert_liveportrait_files(released, tmp_path, capsys):  # noqa: F811
    out = zoo_cli.convert_liveportrait(released, tmp_path / "lp", cfg=LP)
    manifest = json.loads((out / "manifest.json").read_text())
    prov = manifest["provenance"]["liveportrait"]
    assert prov["upstream"].startswith("KwaiVGI/LivePortrait@") and all(not f.startswith("/") for f in prov["files"])
    r = RENDERERS.load("liveportrait", out, manifest)
    ref = RENDERERS.get("liveportrait")(liveportrait_model())
    crop = (np.random.default_rng(0).random((1, LP.image_size, LP.image_size, 3)) * 255).astype(np.uint8)
    s, s_ref = r.encode_portrait(crop), ref.encode_portrait(crop)
    m = np.asarray(r.portrait_motion(s))[None].repeat(2, 0)
    m[1, 1] += 10.0  # yaw
    np.testing.assert_allclose(r.render(s, m), ref.render(s_ref, m), atol=1e-5)
    # the full-size default config on tiny files: one line, exit 2, nothing written
    assert cli.main(["convert", "liveportrait", str(released), str(tmp_path / "full")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and not (tmp_path / "full").exists()


def test_convert_joyvasa_layout_errors(released, tmp_path):  # noqa: F811
    """JoyVASA's pretrained_weights layout is read up to the renderer check: the fixture's DiT makes 12-dim motion,
    which LivePortrait cannot render (a one-line UserError; nothing written)."""
    src = released.parent  # pretrained_weights/ with liveportrait/ inside
    t, meta = _fixture("joyvasa_dit")
    sd = {k[3:]: torch.from_numpy(np.ascontiguousarray(v)) for k, v in t.items() if k.startswith("sd.")}
    args = json.loads(meta["args"])
    (src / "JoyVASA" / "motion_generator").mkdir(parents=True)
    (src / "JoyVASA" / "motion_template").mkdir()
    torch.save({"args": argparse.Namespace(**args), "model": sd}, src / "JoyVASA/motion_generator/tiny.pt")
    tt, _ = _fixture("joyvasa_template")
    tpl = {k[len("in.tpl.") :]: v for k, v in tt.items() if k.startswith("in.tpl.")}
    (src / "JoyVASA/motion_template/motion_template.pkl").write_bytes(pickle.dumps(tpl))
    out = tmp_path / "jv"
    with pytest.raises(UserError, match="audio encoder folder"):
        zoo_cli.convert_joyvasa(src, out, lp_cfg=LP, audio_dim=32, num_layers=2)
    enc = tmp_path / "enc"
    enc.mkdir()
    (enc / "config.json").write_text(meta["hubert_config"])
    with pytest.raises(UserError, match="12-dim motion") as e:
        zoo_cli.convert_joyvasa(src, out, audio_encoder=str(enc), lp_cfg=LP, audio_dim=32, num_layers=2)
    assert "\n" not in str(e.value) and not out.exists()
