"""train-face with another renderer: LivePortrait's F, M, W, G trained by the shared stage-1 loop
(``vasajax.zoo.liveportrait.training``, ``--renderer liveportrait``).

One tiny run (reduced widths, 64² → 128²) on random clip shards: it stops, resumes bit for bit, keeps its BatchNorm
statistics and spectral-norm vectors beside the params and updates them, lowers its loss on a repeated batch,
exports through its entry to the files the ``liveportrait`` renderer loads (which render what the training model
renders), and ``vasajax export`` pairs it with nothing or refuses what does not fit.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

S = 128  # the tiny LivePortrait's output side: the loader's frame size


def _config(**run):
    from vasajax.train import face

    cfg = face.FaceTrainConfig.tiny(
        renderer="liveportrait",
        **{"steps": 4, "batch_size": 4, "ckpt_every": 2, "keep_checkpoints": 3, "sample_every": 2, **run},
    )
    loss = dataclasses.replace(cfg.loss, ssim_scales=2, face_weight=0.0)
    optim = dataclasses.replace(cfg.optim, warmup_steps=0, lr=3e-3)
    return dataclasses.replace(cfg, loss=loss, optim=optim, disc_optim=optim)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """6 still clips (4 copies of one smooth random 128² frame: self-reenactment can be learnt), 3 identities,
    with tracker poses and a mouth box."""
    from vasajax.data import clips

    d = tmp_path_factory.mktemp("lp_shards")
    rng = np.random.default_rng(1)
    f32, T = np.float32, 4
    with clips.ShardWriter(d, "c") as w:
        for i in range(6):
            small = rng.integers(0, 256, (1, 8, 8, 3)).astype(np.uint8)  # a still clip: driver = source
            frames = np.repeat(np.repeat(np.repeat(small, T, axis=0), S // 8, axis=1), S // 8, axis=2)
            lm = np.tile(rng.uniform(0.3, 0.7, (1, 478, 3)).astype(f32), (T, 1, 1))
            rec = clips.ClipRecord(
                frames_TxSxSx3=frames,
                audio_N=np.zeros(T * 640, f32),
                pose_Tx6=(rng.standard_normal((T, 6)) * 0.1).astype(f32),
                gaze_Tx2=np.zeros((T, 2), f32),
                distance_T=np.ones(T, f32),
                blendshapes_Tx52=np.zeros((T, 52), f32),
                emotion_52=np.zeros(52, f32),
                identity=f"id{i % 3}",
                source=f"v{i}.mp4",
                clip_index=i,
                ground_truth={"landmarks_Tx478x3": lm},
            )
            w.write_record(rec, codec="raw")
    clips.write_manifest(d / "manifest.json", clips.make_manifest("clip", w.shards))
    return d


def _leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.fixture(scope="module")
def runs(shards, tmp_path_factory):
    """One run of 4 steps, and the same run stopped after 2 and resumed (one compiled program for all tests)."""
    from vasajax.train import face

    d = tmp_path_factory.mktemp("lp_runs")
    cfg = _config()
    full = face.train(cfg, shards, d / "full", progress=False)
    first = face.train(cfg, shards, d / "split", stop_after=2, progress=False)
    second = face.train(cfg, shards, d / "split", progress=False)
    return {"dir": d, "full": full, "first": first, "second": second}


def test_liveportrait_run_resumes_bitwise_and_keeps_its_statistics(runs):
    from flax import nnx

    from vasajax.train import face

    cfg = _config()
    assert cfg.pairs.size == S and type(cfg.model).__name__ == "LivePortraitConfig"
    assert face.FaceTrainConfig.from_dict(cfg.to_dict()) == cfg
    full, first, second = runs["full"], runs["first"], runs["second"]
    assert full["step"] == 4 and not full["stopped"]
    assert first["stopped"] and first["step"] == 2
    assert second["step"] == 4
    for a, b in zip(_leaves(full["state"]), _leaves(second["state"]), strict=True):
        np.testing.assert_array_equal(a, b)
    metrics = full["metrics"]
    for k in ("l1", "perceptual", "mouth", "equivariance", "keypoint_prior", "pose", "deformation", "gan"):
        assert np.isfinite(metrics[k]), (k, metrics)
    assert (runs["dir"] / "full" / "samples" / "step_0000002.png").is_file()

    # the statistics travel beside the params and moved: BatchNorm's running means, the spectral vectors
    rest = full["state"]["gen"]["rest"]
    init = face.compiled_steps(cfg, face.common.make_mesh(cfg.run.fsdp)).init()["gen"]["rest"]
    kinds = {}
    for (_, now), (_, then) in zip(nnx.to_flat_state(rest), nnx.to_flat_state(init), strict=True):
        kinds.setdefault(type(now).__name__, []).append(not np.array_equal(np.asarray(now), np.asarray(then)))
    assert set(kinds) == {"BatchStat", "SpectralVector"}
    assert all(kinds["BatchStat"]) and all(kinds["SpectralVector"]), {k: sum(v) for k, v in kinds.items()}
    assert not any(type(v).__name__ == "BatchStat" for _, v in nnx.to_flat_state(full["state"]["gen"]["params"]))


def test_liveportrait_objective_lowers_its_loss(shards):
    """The compiled generator step of the run above (same program), repeated on one batch."""
    from vasajax.data import loader
    from vasajax.train import common, face

    cfg = _config()
    mesh = common.make_mesh(cfg.run.fsdp)
    steps = face.compiled_steps(cfg, mesh)
    state = steps.init()
    lcfg = loader.LoaderConfig(batch_size=4, seed=0)
    batch = common.global_batch(next(iter(loader.face_pairs(shards, lcfg, cfg.pairs))), mesh, face.batch_keys(cfg))
    total, l1 = [], []
    for _ in range(12):
        state, metrics, fakes = steps.gen(state, steps.critic_params, batch)
        state, _ = steps.disc(state, batch["driver"], fakes)
        total.append(float(np.asarray(metrics["loss"])))
        l1.append(float(np.asarray(metrics["l1"])))
    # the priors (keypoints, expression, pose, equivariance) fall first, the reconstruction follows
    assert np.mean(total[-3:]) < 0.8 * np.mean(total[:3]), total
    assert np.mean(l1[-3:]) < 0.95 * np.mean(l1[:3]), l1


def test_liveportrait_run_exports_to_the_renderer_it_trained(runs, shards, tmp_path):
    import json

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from vasajax.errors import UserError
    from vasajax.stages import RENDERER_TRAINING
    from vasajax.train import encode_dataset as ed
    from vasajax.train import export, face, face_eval

    run = runs["dir"] / "full"
    assert export.cli_main(["--face-run", str(run), "--out", str(tmp_path / "exp")]) == 0
    renderer = ed.load_renderer(tmp_path / "exp")
    assert (renderer.name, renderer.motion_space, renderer.stitching) == ("liveportrait", "liveportrait", False)
    assert renderer.image_size == 64 and renderer.output_size == S and renderer.motion_dim == 7 + 3 * 5

    # the export renders what the trained model renders (EMA weights, eval-mode statistics)
    model = face.load_model(run)
    rng = np.random.default_rng(3)
    src = rng.integers(0, 256, (1, 64, 64, 3)).astype(np.uint8)
    drv = rng.integers(0, 256, (1, 64, 64, 3)).astype(np.uint8)
    graphdef, state = nnx.split(model)
    entry = RENDERER_TRAINING.get("liveportrait")
    reenact = jax.jit(lambda st, s, d: entry.reenact(nnx.merge(graphdef, st), s / 255.0, d / 255.0))
    want = reenact(state, jnp.asarray(src, jnp.float32), jnp.asarray(drv, jnp.float32))
    got = renderer.render(renderer.encode_portrait(src), renderer.encode_motion(drv))
    np.testing.assert_allclose(got, np.asarray(want), atol=2e-5)

    # face-recon evaluates it at its output size, against the copy-the-source baseline
    assert face_eval.cli_main(["--face-run", str(run), "--data", str(shards), "--max-clips", "1", "--drivers", "2",
                               "--json", str(tmp_path / "recon.json")]) == 0  # fmt: skip
    recon = json.loads((tmp_path / "recon.json").read_text())
    assert recon["pairs"] == 2 and np.isfinite(recon["psnr_model_db"]) and "psnr_mouth_model_db" in recon
    with pytest.raises(UserError, match="--relative"):
        face_eval.cli_main(
            ["--face-run", str(run), "--data", str(shards), "--relative", "--out", str(tmp_path / "g.png")]
        )

    # VASA-only tools name the renderer instead of failing inside the model
    with pytest.raises(UserError, match="renderer 'liveportrait'"):
        face.load_vasa_model(run, "face-recon")
    with pytest.raises(UserError, match="--motion-data"):
        export.cli_main(["--face-run", str(run), "--motion-run", "x", "--out", str(tmp_path / "e2")])


def test_liveportrait_paper_preset_builds():
    """The released sizes as a train-face preset: F, M, W, G (no S), 256² in, 512² frames, float32."""
    import jax
    from flax import nnx

    from vasajax.errors import UserError
    from vasajax.train import face

    cfg = face.FaceTrainConfig.paper(renderer="liveportrait")
    assert cfg.pairs.size == 512 and cfg.run.precision == "float32"
    model = nnx.eval_shape(lambda: cfg.entry.build(cfg.model_cfg, nnx.Rngs(0)))
    _, params, rest = nnx.split(model, cfg.entry.trainable(), ...)
    n = sum(x.size for x in jax.tree.leaves(params))
    assert 129e6 < n < 130e6, n  # F 0.84 M + M 28.1 M + W 45.5 M + G 55.4 M (benchmarks/results/zoo-*.json)
    assert jax.tree.leaves(rest) and model.retargeting is None
    with pytest.raises(UserError, match="drop --bf16"):
        face.FaceTrainConfig.paper(renderer="liveportrait", precision="bfloat16")
    with pytest.raises(UserError, match="no preset 'small_warp'"):
        face.FaceTrainConfig.preset("small_warp", renderer="liveportrait")
