"""vasajax fit-landmarks: fit a run's landmark-flow head with the rest frozen, into a new run folder."""

import dataclasses
import json

import jax
import numpy as np
import pytest
from flax import nnx

from test_clips import make_clip
from vasajax.data import clips
from vasajax.data.loader import FLOW_LANDMARKS
from vasajax.errors import UserError
from vasajax.train import common, landmarks
from vasajax.train import face as tf


def _leaves(state) -> dict[str, np.ndarray]:
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(state)[0]}


def _clips(path, rng, with_landmarks=True):
    """3 clips of 6 frames; the landmarks: one face layout (plus a little jitter) in every frame."""
    layout = rng.uniform(0.3, 0.7, (478, 3))
    with clips.ShardWriter(path, "c") as w:
        for i in range(3):
            clip = make_clip(i, rng, T=6)
            frames = np.repeat(np.repeat(rng.integers(0, 256, (6, 8, 8, 3)), 8, axis=1), 8, axis=2).astype(np.uint8)
            gt = dict(clip.ground_truth)
            if with_landmarks:
                gt["landmarks_Tx478x3"] = (layout + rng.normal(0, 0.005, (6, 478, 3))).astype(np.float32)
            w.write_record(dataclasses.replace(clip, frames_TxSxSx3=frames, ground_truth=gt), codec="raw")
    clips.write_manifest(path / "manifest.json", clips.make_manifest("clip", w.shards))
    return path


def test_fit_changes_only_the_head_and_places_the_points(tmp_path):
    base = tf.FaceTrainConfig.tiny()
    model = dataclasses.replace(base.model, pixel_warp=True, landmark_flow=len(FLOW_LANDMARKS))
    cfg = dataclasses.replace(base, model=model)
    run = tmp_path / "run"
    with common.Checkpointer(run, cfg.to_dict(), async_save=False) as ckpt:
        ckpt.save(2, tf.init_state(cfg))
    rng = np.random.default_rng(0)
    (tmp_path / "data").mkdir()
    data = _clips(tmp_path / "data", rng)
    out = tmp_path / "fitted"
    argv = ["--face-run", str(run), "--data", str(data), "--eval-data", str(data), "--out", str(out)]
    assert landmarks.cli_main([*argv, "--steps", "150", "--batch", "8", "--frames-per-clip", "4", "--lr", "1e-2"]) == 0
    before, after = (_leaves(nnx.state(tf.load_model(r))) for r in (run, out))
    moved = {k for k in before if not np.array_equal(before[k], after[k])}
    assert moved and all(k.startswith("['landmark_flow']") for k in moved), sorted(moved)[:3]
    rows = [json.loads(line)["landmark_flow"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    first, last = rows[0]["heldout"]["point_l1"], rows[-1]["heldout"]["point_l1"]
    assert last < 0.5 * first, (first, last)  # fresh points sit at the centre; fitted ones on the layout
    assert tf.load_config(out).init_from == str(run.absolute())
    with pytest.raises(UserError, match="already holds checkpoints"):
        landmarks.cli_main(argv)
    (tmp_path / "bare").mkdir()
    bare = _clips(tmp_path / "bare", rng, with_landmarks=False)
    with pytest.raises(UserError, match="no tracker landmarks"):
        landmarks.cli_main(["--face-run", str(run), "--data", str(bare), "--out", str(tmp_path / "o")])


def test_a_run_without_the_landmark_flow_is_a_clear_error(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(tf.FaceTrainConfig.tiny().to_dict()))
    with pytest.raises(UserError, match="no landmark flow"):
        landmarks.cli_main(["--face-run", str(run), "--data", str(tmp_path), "--out", str(tmp_path / "o")])
