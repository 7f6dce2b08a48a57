"""Stage-2 trainer (vasajax.train.motion): one step lowers the loss, EMA math, batches, CLI run + resume."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from test_clips import make_motion
from vasajax.data import clips, loader
from vasajax.errors import UserError
from vasajax.motion import diffusion
from vasajax.motion.dit import MotionConfig
from vasajax.train import common
from vasajax.train import motion as tm

BASE = ["--config", "tiny", "--batch", "4", "--steps", "2", "--warmup", "0", "--no-progress", "--log-every", "1",
        "--sample-every", "2"]  # fmt: skip
"""CLI options of every run in this module: one config, so the step compiles once (``tm.compiled`` cache)."""


def _cfg(motion_dir):
    return tm.build_config(tm.parser().parse_args([*BASE, "--data", str(motion_dir), "--workdir", "unused"]))


def _batch(cfg, B=4, seed=0):
    rng = np.random.default_rng(seed)
    L, M, A = cfg.window + cfg.context, cfg.motion_dim, cfg.audio_dim
    t = np.linspace(0, 2 * np.pi, L)[None, :, None]
    return {
        "motion": (np.sin(t * rng.uniform(0.5, 2, (B, 1, M))) + 0.1 * rng.standard_normal((B, L, M))).astype(
            np.float32
        ),
        "audio": rng.standard_normal((B, L, A)).astype(np.float32),
        "gaze": rng.standard_normal((B, 2)).astype(np.float32),
        "distance": rng.random((B, 1)).astype(np.float32),
        "emotion": rng.random((B, 52)).astype(np.float32),
    }


@pytest.fixture(scope="module")
def motion_dir(tmp_path_factory):
    """4 motion records of 24 frames, M = 14, 2 × 8 audio rows per frame (A = 16)."""
    d = tmp_path_factory.mktemp("motion")
    rng = np.random.default_rng(0)
    with clips.ShardWriter(d, "m") as w:
        for i in range(4):
            w.write_record(make_motion(i, rng, T=24, M=14))
    clips.write_manifest(d / "manifest.json", clips.make_manifest("motion", w.shards, motion_names=NAMES))
    return d


NAMES = ["yaw", "pitch", "roll", "tx", "ty", "tz", "mouth_open"] + [f"d{i}" for i in range(7)]


@pytest.fixture(scope="module")
def one_step(motion_dir):
    """Init the tiny DiT and take one step on a fixed batch with the trainer's own jitted, sharded functions."""
    cfg = _cfg(motion_dir)
    mesh = common.make_mesh(1)
    graphdef, _, _, init, step = tm.compiled(cfg, mesh)
    state = init(tm.norm_stats(motion_dir))
    batch = common.global_batch(_batch(cfg.model), mesh, tm.BATCH_KEYS)
    before = jax.tree.map(np.array, state)
    after, metrics = step(state, batch)
    return cfg, graphdef, batch, before, jax.tree.map(np.array, after), metrics


def test_one_step_lowers_loss_on_fixed_batch(one_step):
    cfg, graphdef, batch, before, after, metrics = one_step
    key = jax.random.key(7)  # the same t, ε and dropouts before and after the step

    @jax.jit
    def loss(params, rest):
        return diffusion.loss_fn(params, batch, key, graphdef=graphdef, rest=rest, dcfg=cfg.diffusion)[0]

    l0, l1 = float(loss(before["params"], before["rest"])), float(loss(after["params"], after["rest"]))
    assert np.isfinite(float(metrics["loss"])) and float(metrics["grad_norm"]) > 0
    assert l1 < l0 - 1e-3, (l0, l1)
    assert int(after["step"]) == 1


def test_ema_update_math(one_step):
    # EMA starts at the initial params and moves (1 - d) of the way to the updated params: d·p0 + (1 − d)·p1,
    # with the warmed-up decay of the first update, d = min(ema_decay, 1/10).
    cfg, _, _, before, after, _ = one_step
    d = min(cfg.optim.ema_decay, 0.1)
    leaves = zip(jax.tree.leaves(after["ema"]), jax.tree.leaves(before["params"]), jax.tree.leaves(after["params"]))
    moved = 0
    for e, p0, p1 in leaves:
        np.testing.assert_allclose(e, d * p0 + (1 - d) * np.asarray(p1), rtol=1e-5, atol=1e-7)
        moved += int(np.any(np.asarray(p1) != p0))
    assert moved > 10
    # The normalisation statistics are not trained.
    for r0, r1 in zip(jax.tree.leaves(before["rest"]), jax.tree.leaves(after["rest"])):
        np.testing.assert_array_equal(r0, r1)


def test_model_batch_from_loader(motion_dir):
    tmp_path = motion_dir
    mcfg = MotionConfig.tiny(audio_dim=16)
    wcfg = loader.WindowsConfig(window=mcfg.window, context=mcfg.context)
    raw = next(iter(loader.motion_windows(tmp_path, loader.LoaderConfig.tiny(), wcfg)))
    b = tm.model_batch(raw, mcfg)
    assert b["motion"].shape == (2, 20, 14) and b["audio"].shape == (2, 20, 16)
    np.testing.assert_array_equal(b["audio"][:, 3, :8], raw["audio_feat_LRxF"][:, 6])  # frame 3 = rows 6, 7
    np.testing.assert_array_equal(b["audio"][:, 3, 8:], raw["audio_feat_LRxF"][:, 7])
    np.testing.assert_allclose(b["gaze"], raw["gaze_Lx2"][:, 4:].mean(1), rtol=1e-6)
    assert b["distance"].shape == (2, 1) and b["emotion"].shape == (2, 52)
    assert tm.data_dims(tmp_path)[:2] == (14, 16)
    with pytest.raises(UserError, match="motion dim"):
        tm.model_batch(raw, MotionConfig.tiny())


def test_eval_metrics_helpers():
    m = np.zeros((5, 14), np.float32)
    m[:, 0] = np.radians([0, 1, 3, 3, 2])
    assert tm.delta_p_deg(m) == pytest.approx((1 + 2 + 0 + 1) / 4 / 3, rel=1e-5)
    assert tm.mouth_index(["yaw", "mouth_open"]) == 1 and tm.mouth_index(["jawOpen"]) == 0
    assert tm.mouth_index(None) is None
    cfg = tm.MotionTrainConfig.tiny().with_data_dims(14, 16)
    assert cfg.model.motion_dim == 14 and cfg.model.audio_dim == 16
    assert tm.MotionTrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.windows.length == cfg.model.window + cfg.model.context


def _same_params(run_a, run_b):
    """Both runs' raw (non-EMA) models, after asserting their parameters are bitwise equal."""
    ma, mb = tm.load_model(run_a, ema=False), tm.load_model(run_b, ema=False)
    for x, y in zip(jax.tree.leaves(nnx.state(ma, nnx.Param)), jax.tree.leaves(nnx.state(mb, nnx.Param))):
        np.testing.assert_array_equal(x, y)
    return ma, mb


def test_cli_two_steps_checkpoint_resume_plot_eval(motion_dir, tmp_path, capsys):
    """2 straight steps == 1 step, stop, resume 1 step (bitwise); plots, metrics, eval and config check."""
    base = [*BASE, "--data", str(motion_dir)]
    a, b = tmp_path / "a", tmp_path / "b"
    assert tm.cli_main([*base, "--workdir", str(b), "--stop-after", "1"]) == tm.EXIT_STOPPED
    c = tmp_path / "c"  # a spent time budget: stops before its first step, with a checkpoint to resume from
    assert tm.cli_main([*base, "--workdir", str(c), "--time-limit", "0"]) == tm.EXIT_STOPPED
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 0
    assert tm.load_config(b).model.motion_dim == 14 and not (b / "plots").exists()
    with pytest.raises(UserError, match="another config"):  # a different config in an existing run folder
        tm.cli_main([*base, "--workdir", str(b), "--lr", "0.5"])
    assert tm.cli_main([*base, "--workdir", str(b), "--eval-data", str(motion_dir)]) == 0
    assert (b / "plots" / "motion_0000002.png").stat().st_size > 1000
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["eval"]
    assert np.isfinite(ev["delta_p_gen"]) and -1 <= ev["mouth_corr"] <= 1 and ev["records"] == 4
    assert json.loads((b / "eval.json").read_text())["step"] == 2
    rows = [json.loads(line) for line in (b / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows)
    assert tm.cli_main([*base, "--workdir", str(a)]) == 0
    ma, mb = _same_params(a, b)
    np.testing.assert_array_equal(ma.motion_std.value, mb.motion_std.value)
    assert not np.allclose(ma.motion_std.value, 1.0)  # statistics measured on the data


def test_joyvasa_trains_in_the_same_loop(motion_dir, tmp_path, capsys):
    """``--generator joyvasa``: JoyVASA's DiT through the same loop — config, checkpoints with exact resume,
    plots and evaluation — with its own objective and sampler (``zoo.joyvasa.training``)."""
    base = [*BASE, "--generator", "joyvasa", "--data", str(motion_dir)]
    a, b = tmp_path / "a", tmp_path / "b"
    assert tm.cli_main([*base, "--workdir", str(b), "--stop-after", "1"]) == tm.EXIT_STOPPED
    cfg = tm.load_config(b)
    assert cfg.generator == "joyvasa" and type(cfg.model).__name__ == "JoyVASAConfig"
    assert (cfg.model.motion_dim, cfg.model.audio_dim, cfg.model.pe_form) == (14, 16, "prefix")
    assert tm.cli_main([*base, "--workdir", str(b), "--eval-data", str(motion_dir)]) == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["eval"]
    assert np.isfinite(ev["motion_mse"]) and ev["records"] == 4 and -1 <= ev["mouth_corr"] <= 1
    assert (b / "plots" / "motion_0000002.png").stat().st_size > 1000
    rows = [json.loads(line) for line in (b / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["loss_x0"]) for r in rows)
    assert tm.cli_main([*base, "--workdir", str(a)]) == 0
    ma, mb = _same_params(a, b)
    assert not np.allclose(mb.motion_std.value, 1.0)  # statistics measured on the data
    vel = tm.build_config(tm.parser().parse_args([*base, "--workdir", "x", "--velocity-weight", "0.5"]))
    assert vel.diffusion.velocity_weight == 0.5 and vel.diffusion.p_null_audio == 0.1


def test_joyvasa_objective_lowers_its_loss():
    """A few Adam steps of the JoyVASA entry's loss on one fixed batch (the objective is trainable end to end)."""
    import optax

    from vasajax.stages import MOTION_TRAINING

    entry = MOTION_TRAINING.get("joyvasa")
    mcfg, settings = entry.presets("tiny")
    mcfg = entry.with_data_dims(mcfg, 14, 16)
    model = entry.build(mcfg, 0)
    rng = np.random.default_rng(0)
    L = mcfg.window + mcfg.context
    t = np.linspace(0, 2 * np.pi, L)[None, :, None]
    motion = np.sin(t * rng.uniform(0.5, 2, (8, 1, 14))).astype(np.float32)
    audio = rng.standard_normal((8, L, 16)).astype(np.float32)
    entry.set_stats(model, {"motion_mean": motion.mean((0, 1)), "motion_std": motion.std((0, 1)) + 1e-3,
                            "audio_mean": audio.mean((0, 1)), "audio_std": audio.std((0, 1))})  # fmt: skip
    graphdef, params, rest = entry.split(model)
    tx = optax.adam(3e-3)
    batch = {"motion": motion, "audio": audio}

    @jax.jit
    def step(params, opt, key):
        (loss, m), g = jax.value_and_grad(entry.loss, has_aux=True)(
            params, batch, key, graphdef=graphdef, rest=rest, diffusion_cfg=settings
        )
        updates, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, updates), opt, loss

    opt, losses = tx.init(params), []
    for i in range(40):
        params, opt, loss = step(params, opt, jax.random.key(i % 4))
        losses.append(float(loss))
    assert np.isfinite(losses).all() and np.mean(losses[-4:]) < 0.6 * np.mean(losses[:4]), losses


def test_vasa_entry_export_part_matches_the_export_layout():
    """``MotionTraining.export_part`` of VASA's DiT: ``motion.safetensors`` + the ``motion``/``diffusion`` sections
    ``checkpoint_export`` writes, with the export's sampling defaults."""
    from vasajax import export_format as ef
    from vasajax.motion.training import VasaMotionTraining as V

    mcfg, dcfg = V.presets("tiny")
    files, sections = V.export_part(V.build(mcfg, 0), dcfg, 6, steps=7, cfg_audio=1.5)
    assert list(files) == [ef.MOTION_FILE] and files[ef.MOTION_FILE][1] == {"model": "motion"}
    assert sections["motion"]["motion_dim"] == mcfg.motion_dim
    assert (sections["diffusion"]["steps"], sections["diffusion"]["lambda_audio"]) == (7, 1.5)


def test_joyvasa_pose_smoothing_is_one_ema_across_windows():
    """The trained JoyVASA generator's pose EMA (upstream's smoothing, ``pose_smoothing``): over windows as they come
    it equals one EMA over the whole clip, on the pose dims only; 1 turns it off; out of (0, 1] is refused."""
    from vasajax.errors import UserError
    from vasajax.zoo.joyvasa import template
    from vasajax.zoo.joyvasa.training import JoyVASATrainSettings, PoseSmoothedStream

    rng = np.random.default_rng(0)
    clip = rng.standard_normal((1, 23, 9)).astype(np.float32)

    class Windows:  # stands in for the sampler: windows of 8 frames, the rest at finish
        def __init__(self):
            self.sent = 0

        def push(self, audio):
            out = [clip[:, k : k + 8] for k in range(self.sent, 16, 8)]
            self.sent = 16
            return out

        def finish(self):
            return [clip[:, 16:]]

    st = PoseSmoothedStream(Windows(), pose_dim=6, alpha=0.3)
    got = np.concatenate([*st.push(np.zeros((16, 4))), *st.finish()], axis=1)[0]
    np.testing.assert_allclose(got[:, :6], template.ema(clip[0, :, :6], 0.3), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got[:, 6:], clip[0, :, 6:])
    assert JoyVASATrainSettings().pose_smoothing == 1.0
    with pytest.raises(UserError, match="pose_smoothing"):
        JoyVASATrainSettings(pose_smoothing=0.0)
