"""vasajax.eval.heldout: SynthTalk clip records → real reference videos with truth; CFG setting parsing."""

import json

import numpy as np
import pytest

from test_clips import make_clip
from test_encode_dataset import _synth_gt
from vasajax.data import clips
from vasajax.errors import UserError
from vasajax.eval import heldout, report


def test_parse_setting():
    assert heldout.parse_setting("default") == ("default", None, None)
    assert heldout.parse_setting("none:0:0") == ("none", 0.0, 0.0)
    for bad in ("x:1", "x:a:1"):
        with pytest.raises(UserError):
            heldout.parse_setting(bad)


def test_write_reference(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "shards"
    with clips.ShardWriter(d, "c") as w:
        for i in range(3):
            rec = make_clip(i, rng, T=12)
            gt = {**_synth_gt(rng, 12), "synth/distance_T": rng.random(12).astype(np.float32)}
            rec = clips.ClipRecord(**{**rec.__dict__, "identity": "astronaut", "ground_truth": gt})
            w.write_record(rec, codec="raw")
    clips.write_manifest(d / "manifest.json", clips.make_manifest("clip", w.shards))
    info = heldout.write_reference(d, tmp_path / "real", num_clips=2)
    assert [c["stem"] for c in info] == ["clip000", "clip001"] and info[0]["heldout"] == ["sentence"]
    assert json.loads((tmp_path / "real" / "clip000.json").read_text())["portrait"] == "astronaut"
    cond = report.synthtalk_conditions(tmp_path / "real")  # what `vasajax eval` scores the real clips against
    assert sorted(cond) == ["clip000", "clip001"] and np.asarray(cond["clip000"]["gaze_head"]).shape == (12, 2)
    assert (tmp_path / "real" / "clip001.mp4").stat().st_size > 0 and (tmp_path / "real" / "clip001.wav").exists()
    with pytest.raises(UserError, match="no SynthTalk ground truth"):
        plain = tmp_path / "plain"
        with clips.ShardWriter(plain, "c") as w:
            w.write_record(make_clip(0, rng, T=12), codec="raw")
        clips.write_manifest(plain / "manifest.json", clips.make_manifest("clip", w.shards))
        heldout.write_reference(plain, tmp_path / "x", num_clips=1)
