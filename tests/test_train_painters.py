"""vasajax train-painters: fit a run's patch painters with the rest frozen, into a new run folder."""

import dataclasses
import json
import shutil

import jax
import numpy as np
import pytest
from flax import nnx

from test_clips import make_clip
from vasajax.data import clips
from vasajax.errors import UserError
from vasajax.train import common, painters
from vasajax.train import face as tf


def _leaves(state) -> dict[str, np.ndarray]:
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(state)[0]}


@pytest.fixture(scope="module")
def run_and_data(tmp_path_factory):
    """A tiny pixel-warp run with painters (saved at init) and 3 clips whose mouth window darkens over time."""
    base = tf.FaceTrainConfig.tiny()
    cfg = dataclasses.replace(base, model=dataclasses.replace(base.model, pixel_warp=True, patch_channels=8))
    run = tmp_path_factory.mktemp("face-run")
    ckpt = common.Checkpointer(run, cfg.to_dict(), async_save=False)
    ckpt.save(3, tf.init_state(cfg))
    ckpt.wait()
    ckpt.close()
    data = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    T = 6
    with clips.ShardWriter(data, "c") as w:
        for i in range(3):
            frames = np.repeat(np.repeat(rng.integers(0, 256, (T, 8, 8, 3)), 8, axis=1), 8, axis=2).astype(np.uint8)
            frames[:, 36:44, 24:40] = (np.arange(T)[:, None, None, None] * 40).astype(np.uint8)  # a "mouth"
            w.write_record(dataclasses.replace(make_clip(i, rng, T=T), frames_TxSxSx3=frames), codec="raw")
    clips.write_manifest(data / "manifest.json", clips.make_manifest("clip", w.shards))
    return run, data


def test_fit_changes_only_the_painters_and_lowers_their_loss(run_and_data, tmp_path):
    run, data = run_and_data
    out = tmp_path / "painted"
    argv = ["--face-run", str(run), "--data", str(data), "--out", str(out), "--steps", "20", "--batch", "4"]
    assert painters.cli_main([*argv, "--pairs-per-clip", "4", "--lr", "3e-3"]) == 0
    before, after = (_leaves(nnx.state(tf.load_model(r))) for r in (run, out))
    assert before.keys() == after.keys()
    moved = {k for k in before if not np.array_equal(before[k], after[k])}
    assert moved and all(k.startswith("['painters']") for k in moved), sorted(moved)[:3]
    assert any("['out']" in k for k in moved)  # the zero-initialised last layer left zero
    rows = [json.loads(line)["painters"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum(rows[-1]["l1"]) < sum(rows[-1]["l1_unpainted"])
    cfg = tf.load_config(out)
    assert cfg.init_from == str(run.absolute()) and cfg.model.patch_channels == 8
    ckpt = common.Checkpointer(out, cfg.to_dict(), async_save=False)
    try:
        assert ckpt.latest_step == 3  # the frozen run's step
    finally:
        ckpt.close()
    with pytest.raises(UserError, match="already holds checkpoints"):
        painters.cli_main(argv)


def test_a_run_without_painters_is_a_clear_error(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(tf.FaceTrainConfig.tiny().to_dict()))
    with pytest.raises(UserError, match="no patch painters"):
        painters.cli_main(["--face-run", str(run), "--data", str(tmp_path), "--out", str(tmp_path / "o")])


def test_a_checkpoint_that_does_not_fit_its_config_is_a_clear_error(run_and_data, tmp_path):
    """A run whose checkpoint was written by a different model (another version, an edited config.json) is one
    line naming the run, not orbax's traceback."""
    run, _ = run_and_data
    edited = tmp_path / "edited"
    shutil.copytree(run, edited)
    cfg = json.loads((edited / "config.json").read_text())
    cfg["model"]["patch_channels"] = 16
    (edited / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="does not fit the model its config.json describes"):
        tf.load_model(edited)
