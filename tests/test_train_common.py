"""Trainer plumbing (vasajax.train.common): mesh and FSDP shardings, accumulation, schedule, EMA, checkpoints,
config check, signals, logging. The 4-device / resume / two-process tests of a real trainer are in
test_train_face.py."""

import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vasajax.errors import UserError
from vasajax.train import common


def _init():
    k1, k2 = jax.random.split(jax.random.key(0))
    return {"w": jax.random.normal(k1, (64, 32)), "b": jnp.zeros((32,)), "v": jax.random.normal(k2, (8, 6))}


def test_mesh_and_fsdp_shardings():
    mesh = common.make_mesh(fsdp=2)
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2}
    with pytest.raises(UserError):
        common.make_mesh(fsdp=3)
    assert common.fsdp_spec((64, 32), 2, 100) == jax.sharding.PartitionSpec("fsdp", None)
    assert common.fsdp_spec((3, 3, 16, 48), 2, 100) == jax.sharding.PartitionSpec(None, None, None, "fsdp")
    assert common.fsdp_spec((8, 6), 2, 100) == jax.sharding.PartitionSpec()  # below min_size: replicated
    assert common.fsdp_spec((63, 33), 2, 1) == jax.sharding.PartitionSpec()  # nothing divisible
    state, shardings = common.init_sharded(_init, mesh, min_size=100)
    assert state["w"].sharding.spec == jax.sharding.PartitionSpec("fsdp", None)
    assert state["w"].addressable_shards[0].data.shape == (32, 32)
    np.testing.assert_array_equal(np.asarray(state["w"]), np.asarray(_init()["w"]))
    b = common.global_batch({"x": np.arange(8 * 3).reshape(8, 3)}, mesh)
    assert b["x"].sharding.spec == jax.sharding.PartitionSpec(("data", "fsdp"))
    assert b["x"].addressable_shards[0].data.shape == (2, 3)
    with pytest.raises(UserError):
        common.local_batch_size(6, mesh)
    assert common.local_batch_size(8, mesh, accum_steps=2) == 8


def test_accumulate_equals_full_batch_and_schedule():
    params = _init()
    x = jax.random.normal(jax.random.key(1), (8, 64))

    def loss(p, batch, key):
        y = jnp.tanh(batch["x"] @ p["w"] + p["b"])
        val = jnp.mean(y**2)
        return val, {"loss": val}

    gf = jax.value_and_grad(loss, has_aux=True)
    (l1, _), g1 = common.accumulate(gf, params, {"x": x}, jax.random.key(0), 1)
    (l4, m4), g4 = jax.jit(lambda p, b: common.accumulate(gf, p, b, jax.random.key(0), 4))(params, {"x": x})
    np.testing.assert_allclose(l1, l4, rtol=1e-5)
    np.testing.assert_allclose(m4["loss"], l4, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g4), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    cfg = common.OptimConfig(lr=1e-3, lr_end=1e-5, warmup_steps=10)
    sched = common.lr_schedule(cfg, 100)
    np.testing.assert_allclose([sched(0), sched(10), sched(100)], [0.0, 1e-3, 1e-5], rtol=1e-5)
    assert 1e-5 < sched(55) < 1e-3
    opt = common.make_optimizer(common.OptimConfig(warmup_steps=0, clip_norm=1e-3, lr=1.0, weight_decay=0), 10)
    huge = jax.tree.map(lambda p: jnp.full_like(p, 1e6), params)
    upd, _ = opt.update(huge, opt.init(params), params)
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(upd))
    ema = common.ema_update({"a": jnp.zeros(3)}, {"a": jnp.ones(3)}, 0.9)
    np.testing.assert_allclose(ema["a"], 0.1, rtol=1e-6)
    # warm-up: the first update moves 90 % of the way (d = 1/10); by step 1,000 the decay is the configured one
    first = common.ema_update({"a": jnp.zeros(3)}, {"a": jnp.ones(3)}, 0.999, step=0)
    late = common.ema_update({"a": jnp.zeros(3)}, {"a": jnp.ones(3)}, 0.9, step=1000)
    np.testing.assert_allclose([first["a"][0], late["a"][0]], [0.9, 0.1], rtol=1e-6)
    assert not np.array_equal(jax.random.key_data(common.step_key(0, 1)), jax.random.key_data(common.step_key(0, 2)))


def test_checkpointer_roundtrip_shardings_keep_and_config_mismatch(tmp_path):
    mesh = common.make_mesh(fsdp=2)
    state, shardings = common.init_sharded(lambda: {"params": _init(), "step": jnp.int32(0)}, mesh, min_size=100)
    cfg = {"model": {"size": [1, 2]}, "lr": 1e-3}
    with common.Checkpointer(tmp_path, cfg, keep=2, every=2) as ck:
        assert ck.latest_step is None and ck.should_save(4) and not ck.should_save(3)
        for step in (1, 2, 3):
            st = jax.tree.map(lambda x, s=step: x + s, state)
            ck.save(step, st, {"epoch": 0, "pos": step})
    assert json.loads((tmp_path / "config.json").read_text()) == cfg
    with common.Checkpointer(tmp_path, {"lr": 1e-3, "model": {"size": (1, 2)}}) as ck:  # same config
        assert ck.latest_step == 3 and sorted(ck.manager.all_steps()) == [2, 3]
        restored, data = ck.restore(common.abstract_like(state, shardings))
    assert data == {"epoch": 0, "pos": 3}
    assert restored["params"]["w"].sharding == state["params"]["w"].sharding
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b) + 3)
    with pytest.raises(UserError, match=r"model\.size: \[1, 2\] → \[1, 3\]"):
        common.Checkpointer(tmp_path, {"lr": 1e-3, "model": {"size": [1, 3]}})


def test_stop_signal_and_logger(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    with common.StopSignal() as stop:
        assert not stop.should_stop()
        os.kill(os.getpid(), signal.SIGTERM)  # handled: the process keeps running
        assert stop.requested and stop.should_stop() and stop.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before
    with common.StopSignal(time_limit=0.0) as stop:  # a spent time budget stops at the next step boundary
        assert stop.should_stop() and stop.timed_out and not stop.requested
    with common.StopSignal(time_limit=3600.0) as stop:
        assert not stop.should_stop() and not stop.timed_out
    with pytest.raises(ValueError, match="time_limit"):
        common.StopSignal(time_limit=-1.0)
    with common.MetricLogger(tmp_path, total_steps=4, enabled=True) as lg:
        lg.advance(2)
        row = lg.log(2, {"loss": jnp.float32(0.5)})
    assert row["loss"] == 0.5 and row["steps_per_s"] > 0
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["step"] == 2 and lines[0]["loss"] == 0.5
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tb"))


def test_config_to_dict_and_diff():
    d = common.config_to_dict(common.RunConfig.tiny(seed=3))
    assert d["seed"] == 3 and list(d) == sorted(d)
    assert common.config_diff(d, d) is None
    assert common.config_diff(d, {**d, "seed": 4}) == "seed: 3 → 4"


def test_accumulate_reassembles_per_example_outputs():
    x = jnp.arange(8.0)[:, None] * jnp.ones((8, 3))

    def grad_fn(p, batch, key):
        out = jnp.concatenate([batch["x"], -batch["x"]])  # two rows per example, as [all first; all second]
        return (jnp.sum(batch["x"]) * p, ({"n": jnp.float32(batch["x"].shape[0])}, out)), p

    (loss, (metrics, out)), _ = common.accumulate(grad_fn, 1.0, {"x": x}, jax.random.key(0), 4, has_extra=True)
    np.testing.assert_array_equal(out, jnp.concatenate([x, -x]))
    assert float(metrics["n"]) == 2 and float(loss) == float(jnp.sum(x)) / 4


def test_train_face_cli_loss_and_ema_overrides():
    """--loss NAME=VALUE sets numeric loss fields (ablations); bad names/values are one-line UserErrors."""
    from vasajax.train import face

    p = face.parser()
    argv = ["--data", "d", "--workdir", "w", "--loss", "transfer_weight=0", "--loss", "ssim_scales=3"]
    args = p.parse_args([*argv, "--ema-decay", "0.9"])
    cfg = face.build_config(args)
    assert cfg.loss.transfer_weight == 0.0 and cfg.loss.ssim_scales == 3 and isinstance(cfg.loss.ssim_scales, int)
    assert cfg.optim.ema_decay == 0.9 and cfg.disc_optim.ema_decay == face.FaceTrainConfig.tiny().disc_optim.ema_decay
    for bad in ("nope=1", "transfer_weight", "transfer_weight=abc", "perceptual=1"):
        with pytest.raises(UserError):
            face.build_config(p.parse_args(["--data", "d", "--workdir", "w", "--loss", bad]))


def test_train_face_cli_model_overrides_and_small_warp_preset():
    """--model NAME=VALUE sets scalar model fields (design comparisons); the small_warp preset has the pixel warp
    and the mouth loss; bad names, values and configs are one-line UserErrors."""
    from vasajax.train import face

    p = face.parser()
    base = ["--data", "d", "--workdir", "w", "--config", "small"]
    over = ["--model", "pixel_warp=1", "--model", "g2d_blocks=2", "--model", "g3d_channels=32,64"]
    cfg = face.build_config(p.parse_args([*base, *over]))
    assert cfg.model.pixel_warp is True and cfg.model.g2d_blocks == 2 and cfg.pairs.size == 256
    assert cfg.model.g3d_channels == (32, 64)
    warp = face.build_config(p.parse_args(["--data", "d", "--workdir", "w", "--config", "small_warp"]))
    assert warp.model.pixel_warp and warp.loss.mouth_weight > 0 and warp.loss.pose_weight > 0
    assert {"driver_mouth_4", "driver_pose_6"} <= set(face.batch_keys(warp))
    assert face.batch_keys(cfg) == face.BATCH_KEYS
    for bad in ("nope=1", "pixel_warp=maybe", "g2d_blocks=1.5", "app_channels=a,b", "image_size=100", "dtype=x"):
        with pytest.raises(UserError):
            face.build_config(p.parse_args([*base, "--model", bad]))


def test_resume_accepts_a_config_written_before_a_field_existed(tmp_path):
    """A run started before a config field was added resumes and loads when the field keeps its default; a
    changed value is still refused."""
    import dataclasses
    import json

    from vasajax.train import common, face

    cfg = face.FaceTrainConfig.tiny()
    old = cfg.to_dict()
    del old["loss"]["expression_weight"]  # as written by a version without that field
    (tmp_path / "config.json").write_text(json.dumps(old))
    with pytest.raises(UserError, match="expression_weight"):
        common.check_config(tmp_path, cfg.to_dict())
    common.check_config(tmp_path, cfg.to_dict(), face._upgrade_config)
    changed = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, expression_weight=1.0))
    with pytest.raises(UserError, match="expression_weight"):
        common.check_config(tmp_path, changed.to_dict(), face._upgrade_config)


def test_resume_may_change_logging_and_checkpoint_intervals_not_the_math(tmp_path):
    import dataclasses

    from vasajax.train import common, face

    cfg = face.FaceTrainConfig.tiny()
    common.check_config(tmp_path, cfg.to_dict())
    every = dataclasses.replace(cfg.run, ckpt_every=cfg.run.ckpt_every + 7, log_every=3, sample_every=11)
    common.check_config(tmp_path, dataclasses.replace(cfg, run=every).to_dict())
    for changed in (dataclasses.replace(cfg.run, steps=cfg.run.steps + 1), dataclasses.replace(cfg.run, seed=9)):
        with pytest.raises(UserError, match="another config"):
            common.check_config(tmp_path, dataclasses.replace(cfg, run=changed).to_dict())


def test_strong_types_removes_weak_leaves():
    """A fresh state with weakly typed leaves would make the train step compile twice (weak, then strong)."""
    tree = {"w": jnp.ones(3) * 0.5, "s": jnp.asarray(2.0), "n": jnp.int32(1)}
    weak = jax.jit(lambda: {"a": jnp.float32(1) * 2.0, "b": jnp.full((2,), 3.0)})()
    assert any(x.weak_type for x in jax.tree.leaves(weak))
    for t in (tree, weak, jax.jit(lambda: common.strong_types({"a": jnp.asarray(1.0), "b": jnp.zeros(2) + 1.0}))()):
        out = common.strong_types(t)
        assert not any(x.weak_type for x in jax.tree.leaves(out))
        for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(t), strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
