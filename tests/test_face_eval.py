"""vasajax face-recon (vasajax.train.face_eval): an export measured on held-out clip shards from the command line."""

import json

import numpy as np
import PIL.Image
import pytest

from test_clips import make_clip
from test_pipeline import make_export
from vasajax import cli
from vasajax.data import clips


def test_face_recon_on_an_export_writes_numbers_and_a_grid(tmp_path, capsys):
    ckpt = make_export(tmp_path / "tiny")
    rng = np.random.default_rng(0)
    with clips.ShardWriter(tmp_path / "heldout", "c") as w:
        for i in range(3):
            w.write_record(make_clip(i, rng, identity=f"p{i}"))
    clips.write_manifest(tmp_path / "heldout" / "manifest.json", clips.make_manifest("clip", w.shards))
    out, js = tmp_path / "grid.png", tmp_path / "recon.json"
    args = ["face-recon", "--checkpoint", str(ckpt), "--data", str(tmp_path / "heldout"), "--drivers", "2"]
    emap = tmp_path / "err.png"
    assert cli.main([*args, "--max-clips", "3", "--json", str(js), "--out", str(out), "--error-map", str(emap)]) == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[0])
    assert printed == json.loads(js.read_text())
    # random weights on noise frames: only that both numbers are real PSNRs (dB), not their order
    assert 0 < printed["psnr_copy_source_db"] < 60 and 0 < printed["psnr_model_db"] < 60
    assert 0 <= printed["error_share_border"] <= 1 and 0 <= printed["error_share_border_copy"] <= 1
    err = np.asarray(PIL.Image.open(emap))
    assert err.shape == (64, 64) and err.max() == 255  # the tiny export's crop size; white at the map's maximum
    grid = np.asarray(PIL.Image.open(out))
    assert grid.ndim == 3 and grid.shape[0] > grid.shape[1] / 4  # drivers row + one row per identity


def test_face_recon_needs_clip_shards(tmp_path):
    ckpt = make_export(tmp_path / "tiny")
    with pytest.raises(SystemExit) as e:
        cli.main(["face-recon", "--checkpoint", str(ckpt)])  # --data is required: argparse's usage error
    assert e.value.code == 2
    assert cli.main(["face-recon", "--checkpoint", str(ckpt), "--data", str(tmp_path / "nothing")]) == 2


def test_border_share_splits_an_error_map_at_the_central_square():
    from vasajax.eval.face_recon import border_share

    uniform = np.ones((100, 100))
    assert border_share(uniform) == pytest.approx(1 - 0.6**2)
    ring = uniform.copy()
    ring[20:80, 20:80] = 0
    assert border_share(ring) == 1.0 and border_share(1 - ring) == pytest.approx(0.0)
