"""vasajax export (vasajax.train.export): a face run + a motion run → an inference export the pipeline loads."""

import dataclasses
import json
import shutil

import ml_dtypes
import numpy as np
import pytest
from flax import nnx

from test_clips import make_motion
from vasajax import checkpoint_export as ce
from vasajax.data import clips
from vasajax.errors import UserError
from vasajax.motion.audio import AudioConfig
from vasajax.train import common
from vasajax.train import export as ex
from vasajax.train import face as tf
from vasajax.train import motion as tm

M = 14  # = FaceConfig.tiny().motion_dim (6 pose + 8 dyn)


def _motion_data(d, n_mels: int):
    rng = np.random.default_rng(0)
    with clips.ShardWriter(d, "m") as w:
        for i in range(4):
            w.write_record(make_motion(i, rng, T=24, M=M))
    audio = dataclasses.asdict(dataclasses.replace(AudioConfig.tiny(), n_mels=n_mels))
    manifest = clips.make_manifest("motion", w.shards, config={"audio": audio, "clip_data": "synthtalk"})
    clips.write_manifest(d / "manifest.json", manifest)
    return d


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny motion run (1 step) on 8-mel motion data and a tiny face run saved at its initial state."""
    data = _motion_data(tmp_path_factory.mktemp("motion-data"), n_mels=8)  # make_motion: 2 slots × 8 mels per frame
    motion_run = tmp_path_factory.mktemp("motion-run")
    argv = ["--config", "tiny", "--batch", "4", "--steps", "1", "--warmup", "0", "--no-progress", "--sample-every", "0"]
    assert tm.cli_main([*argv, "--data", str(data), "--workdir", str(motion_run)]) == 0
    face_run = tmp_path_factory.mktemp("face-run")
    cfg = tf.FaceTrainConfig.tiny()
    ckpt = common.Checkpointer(face_run, cfg.to_dict(), async_save=False)
    ckpt.save(0, tf.init_state(cfg))
    ckpt.wait()
    ckpt.close()
    (face_run / "metrics.jsonl").write_text(json.dumps({"step": 0, "psnr": 12.5, "time": 1.0}) + "\n")
    return data, face_run, motion_run


def test_export_round_trip(runs, tmp_path):
    data, face_run, motion_run = runs
    out = ex.export_runs(
        face_run, motion_run, data, tmp_path / "demo", sampling_steps=7, cfg_audio=1.0, extra={"notes": ["x"]}
    )
    exp = ce.load_export(out)
    # Sampling defaults: the motion run's, with the export's steps and audio CFG scale where given.
    assert (exp.diffusion.lambda_audio, exp.diffusion.lambda_gaze) == (
        1.0,
        tm.load_config(motion_run).diffusion.lambda_gaze,
    )
    with pytest.raises(UserError, match="--cfg-gaze must be a finite number ≥ 0"):
        ex.export_runs(face_run, motion_run, data, tmp_path / "bad", cfg_gaze=-1.0)
    assert not (tmp_path / "bad").exists()
    # Weights: the runs' EMA params, rounded to bf16.
    want = nnx.state(tf.load_model(face_run), nnx.Param)
    got = nnx.state(exp.face_model, nnx.Param)
    a, b = want["g2d"]["out"]["kernel"].value, got["g2d"]["out"]["kernel"].value
    np.testing.assert_array_equal(np.asarray(a).astype(ml_dtypes.bfloat16).astype(np.float32), np.asarray(b))
    assert exp.motion.motion_dim == M and exp.diffusion.steps == 7 and exp.audio.n_mels == 8
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["face_run"]["last_metrics"] == {"step": 0, "psnr": 12.5}
    assert manifest["motion_run"]["config"]["model"]["motion_dim"] == M and manifest["notes"] == ["x"]
    assert manifest["motion_data"]["clip_data"] == "synthtalk"
    # No path of the training machine: tmp folders are recorded relative to their common folder.
    for where in (manifest["face_run"]["workdir"], manifest["motion_run"]["workdir"], manifest["motion_data"]["path"]):
        assert not where.startswith("/") and str(tmp_path.parent) not in where, where
    assert manifest["face_run"]["workdir"] == f"WORK_DIR/{face_run.name}"
    # Default head distance: the mean of the motion data's distance condition.
    dist = np.concatenate([r.distance_T for r in clips.read_records(clips.read_manifest(data), data)])
    assert exp.conditions["distance"] == pytest.approx(float(dist.mean()), abs=1e-5)


def test_export_records_the_warm_start_chain_without_machine_paths(runs, tmp_path):
    """A face run warm-started from another (``train-face --init-from``): the manifest records the run it started
    from (its config and last metrics, so the export says how it was made), with portable paths."""
    data, face_run, motion_run = runs
    child = face_run.parent / f"{face_run.name}-grown"
    shutil.copytree(face_run, child)
    cfg = json.loads((child / "config.json").read_text())
    (child / "config.json").write_text(json.dumps({**cfg, "init_from": str(face_run)}))
    manifest = json.loads((ex.export_runs(child, motion_run, data, tmp_path / "demo") / "manifest.json").read_text())
    facts = manifest["face_run"]
    assert facts["config"]["init_from"] == facts["init_from"]["workdir"] == f"WORK_DIR/{face_run.name}"
    assert facts["init_from"]["last_metrics"] == {"step": 0, "psnr": 12.5} and "init_from" not in facts["init_from"]
    assert str(tmp_path.parent) not in json.dumps(manifest)


def test_export_rejects_mismatched_audio(runs, tmp_path):
    _, face_run, motion_run = runs
    other = _motion_data(tmp_path / "other", n_mels=16)
    with pytest.raises(UserError, match="audio features have 32 values per frame"):
        ex.export_runs(face_run, motion_run, other, tmp_path / "demo")
    with pytest.raises(UserError, match="not a train-face run folder"):
        ex.export_runs(tmp_path, motion_run, other, tmp_path / "demo")


def test_joyvasa_run_exports_beside_the_face_run_and_animates(runs, tmp_path):
    """``train-motion --generator joyvasa`` → ``vasajax export --face-run``: a mixed export (VASA renderer, the
    trained JoyVASA DiT as generator ``joyvasa-trained``, log-mel audio) that the Animator loads entry by entry."""
    from vasajax.image import PORTRAITS
    from vasajax.pipeline import Animator

    data, face_run, _ = runs
    jv_run = tmp_path / "jv-run"
    argv = ["--config", "tiny", "--batch", "4", "--steps", "1", "--warmup", "0", "--no-progress", "--sample-every", "0"]
    assert tm.cli_main([*argv, "--generator", "joyvasa", "--data", str(data), "--workdir", str(jv_run)]) == 0
    with pytest.raises(UserError, match="--steps"):
        ex.export_runs(face_run, jv_run, data, tmp_path / "bad", sampling_steps=7)
    out = ex.export_runs(face_run, jv_run, data, tmp_path / "jv-export", cfg_audio=2.0)
    manifest = ce.verify_export(out, required=())
    assert manifest["stages"] == {"renderer": "vasa", "motion": "joyvasa-trained", "audio": "logmel",
                                  "motion_space": "vasa"}  # fmt: skip
    assert manifest["motion_run"]["config"]["generator"] == "joyvasa"
    anim = Animator.from_pretrained(out)
    assert anim.generator.name == "joyvasa-trained" and anim.generator.settings.cfg_scale == 2.0
    t = np.arange(16000) / 16000
    wave = (0.2 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    a, b = (anim.animate(PORTRAITS["astronaut"], wave, seed=0) for _ in range(2))
    assert len(a.frames) == 25 and a.motion.shape == (25, M)  # 1 s at 25 fps, window after window
    np.testing.assert_array_equal(a.frames, b.frames)  # deterministic
    with pytest.raises(UserError, match="no gaze control"):
        anim.animate(PORTRAITS["astronaut"], wave, seed=0, gaze=(0.2, 0.0))
