"""Stage-1 trainer (vasajax.train.face): 4 devices = 1 device, exact resume after SIGTERM, two real processes.

Compiling the stage-1 step is the cost here (~30 s of CPU per distinct program on the slimmed tiny config), so
the tests share programs: ``compiled_steps`` caches per (config, mesh) in this process, and the subprocesses of
the resume test load the 4-device step from the session's persistent compilation cache (``conftest.py``).
Subprocesses run this file as a worker (``__main__``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

S = 64  # frame side = the tiny model's image size


def _config(**run):
    """Tiny model with fewer blocks and the cheap loss terms (L1, SSIM, GAN + feature matching)."""
    from vasajax.face.config import FaceConfig
    from vasajax.train import face

    cfg = face.FaceTrainConfig.tiny(
        **{"steps": 6, "batch_size": 4, "ckpt_every": 2, "keep_checkpoints": 3, "sample_every": 0, **run}
    )
    model = FaceConfig.tiny(app_res3d=0, g2d_blocks=0, g3d_channels=(8,), enc_channels=(8, 8, 8))
    loss = dataclasses.replace(
        cfg.loss, transfer_weight=0.0, identity_weight=0.0, contrastive_weight=0.0, face_weight=0.0, ssim_scales=1
    )
    optim = dataclasses.replace(cfg.optim, warmup_steps=0)
    return dataclasses.replace(cfg, model=model, loss=loss, optim=optim, disc_optim=optim)


# ----------------------------------------------------------------------------------------------- worker


def _worker(args: dict) -> int:
    """Subprocess entry: train with ``args`` and save the final state's leaves to ``args['out']``."""
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax

    jax.config.update("jax_num_cpu_devices", args["devices"])
    if args.get("cache"):
        jax.config.update("jax_compilation_cache_dir", args["cache"])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    from vasajax.train import common, face

    if args.get("coordinator"):
        try:
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        except Exception:
            return 77  # no gloo in this jaxlib
        common.init_distributed(args["coordinator"], 2, args["process_id"], timeout_s=60)
    cfg = face.FaceTrainConfig.from_dict(args["config"])

    def on_step(step):
        if step == args.get("kill_at"):
            os.kill(os.getpid(), __import__("signal").SIGTERM)

    out = face.train(
        cfg, args["data"], args["workdir"], stop_after=args.get("stop_after"), on_step=on_step, progress=False
    )
    leaves = [np.asarray(x.addressable_data(0)) for x in jax.tree.leaves(out["state"])]
    np.savez(args["out"], *leaves)
    return face.EXIT_STOPPED if out["stopped"] else 0


def _spawn(args: dict) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.Popen(
        [sys.executable, __file__, json.dumps(args)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _wait(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"worker hung for {timeout} s:\n{out.decode()[-3000:]}")
    return proc.returncode, out.decode()


def _leaves(path) -> list[np.ndarray]:
    with np.load(path) as z:
        return [z[f"arr_{i}"] for i in range(len(z.files))]


# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """8 clips of 6 random 64² frames, 4 identities, raw frames."""
    from vasajax.data import clips

    d = tmp_path_factory.mktemp("face_shards")
    rng = np.random.default_rng(0)
    f32, T = np.float32, 6
    with clips.ShardWriter(d, "c") as w:
        for i in range(8):
            # smooth random images (upsampled 8×8 noise) rather than white noise
            small = rng.integers(0, 256, (T, 8, 8, 3)).astype(np.uint8)
            frames = np.repeat(np.repeat(small, S // 8, axis=1), S // 8, axis=2)
            rec = clips.ClipRecord(
                frames_TxSxSx3=frames,
                audio_N=np.zeros(T * 640, f32),
                pose_Tx6=rng.standard_normal((T, 6)).astype(f32),
                gaze_Tx2=np.zeros((T, 2), f32),
                distance_T=np.ones(T, f32),
                blendshapes_Tx52=np.zeros((T, 52), f32),
                emotion_52=np.zeros(52, f32),
                identity=f"id{i % 4}",
                source=f"v{i}.mp4",
                clip_index=i,
            )
            w.write_record(rec, codec="raw")
    clips.write_manifest(d / "manifest.json", clips.make_manifest("clip", w.shards))
    return d


def _one_step(steps, mesh, host_state, batch):
    import jax

    from vasajax.train import common

    state = jax.device_put(host_state, steps.shardings)
    b = common.global_batch(batch, mesh, ("source", "driver", "cross"))
    state, metrics, fakes = steps.gen(state, steps.critic_params, b)
    state, dmetrics = steps.disc(state, b["driver"], fakes)
    return state, {**metrics, **dmetrics}, np.asarray(fakes)


def _assert_same_training(sa, sb, host, steps: int, rtol: float, outliers: float = 0.0, ptol: float = 1e-6) -> None:
    """Two train states reached from ``host`` by the same steps on different meshes/processes agree.

    Gradients are compared through Adam's first moment (linear in them), per array; ``outliers`` is the fraction
    of all elements allowed outside the tolerance (after two steps, step 1's flips below perturb step 2's
    gradient). Parameters: Adam's update
    is ~±lr·sign(g) per element, so an element whose gradient is within float noise of 0 may move the other way
    under another reduction order; those (elements differing by more than ``ptol``) must be few, and none may
    differ by more than Adam's bound."""
    import jax

    differ = moved = total = nbad = 0
    for part in ("gen", "disc"):
        lr = 1e-3  # _config()'s peak rate (no warm-up)
        mua, mub = (jax.tree.leaves(s[part]["opt"][1][0].mu) for s in (sa, sb))
        pa, pb, p0 = (jax.tree.leaves(t[part]["params"]) for t in (sa, sb, host))
        floor = 1e-4 * max(float(np.abs(np.asarray(m)).max()) for m in mub)  # arrays whose gradient is ~0
        for a, b, qa, qb, q0 in zip(mua, mub, pa, pb, p0, strict=True):
            a, b, qa, qb = np.asarray(a), np.asarray(b), np.asarray(qa), np.asarray(qb)
            scale = float(np.abs(b).max())  # per array: gradient sizes differ by orders of magnitude
            bad = np.abs(a - b) > rtol * np.abs(b) + rtol * 0.2 * scale + floor
            nbad += int(bad.sum())
            diff = np.abs(qa - qb)
            assert diff.max() <= 2.1 * lr * steps, diff.max()
            differ += int(np.sum(diff > ptol))
            total += b.size
            moved += int(np.sum(qb != np.asarray(q0)))
    assert nbad <= outliers * total, (nbad, total)
    assert differ < 0.02 * total, (differ, total)
    assert moved > 0.5 * total, (moved, total)  # the steps moved most parameters


# ----------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("fsdp", [2], ids=["data2xfsdp2"])
def test_one_step_on_4_devices_equals_1_device(shards, fsdp):
    """4 devices as data×fsdp = 2×2 (batch split over data, params sharded over fsdp) equal 1 device. (The 4×1
    case, params replicated, is the same code with the fsdp axis trivial; it was dropped to keep `make test`
    near 15 minutes.)"""
    import jax

    from vasajax.data import loader
    from vasajax.train import common, face

    cfg = _config(fsdp=fsdp, fsdp_min_size=256)  # tiny arrays: shard everything of ≥ 256 elements
    mesh4, mesh1 = common.make_mesh(fsdp), common.make_mesh(1, devices=jax.devices()[:1])
    assert mesh4.devices.size == 4 and dict(mesh4.shape)["fsdp"] == fsdp
    steps4, steps1 = face.compiled_steps(cfg, mesh4), face.compiled_steps(cfg, mesh1)
    init4 = steps4.init()
    assert not any(x.weak_type for x in jax.tree.leaves(init4))  # else the step compiles again at step 2
    if fsdp > 1:  # most parameter elements really are split over the fsdp axis (biases and norms stay whole)
        leaves = jax.tree.leaves(init4["gen"]["params"])
        split = sum(x.size for x in leaves if "fsdp" in tuple(x.sharding.spec))
        assert split > 0.8 * sum(x.size for x in leaves), (split, sum(x.size for x in leaves))
    host = jax.tree.map(np.asarray, init4)
    lcfg = loader.LoaderConfig(batch_size=4, shard_index=0, shard_count=1)
    batch = next(iter(loader.face_pairs(shards, lcfg, cfg.pairs)))
    s4, m4, f4 = _one_step(steps4, mesh4, host, batch)
    s1, m1, f1 = _one_step(steps1, mesh1, host, batch)
    for k in m1:
        np.testing.assert_allclose(float(m4[k]), float(m1[k]), rtol=2e-5, atol=1e-6, err_msg=k)
    np.testing.assert_allclose(f4, f1, atol=2e-5)
    _assert_same_training(s4, s1, host, steps=1, rtol=1e-2)


def test_resume_after_sigterm_is_bitwise_identical(shards, tmp_path):
    import jax

    from vasajax.train import common, face

    cfg = _config()
    # in this process: 6 straight steps (the 4-device program compiled by the test above)
    straight = face.train(cfg, shards, tmp_path / "straight", progress=False)
    assert straight["step"] == 6 and not straight["stopped"]
    lines = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(s)["step"] for s in lines] == [1, 2, 3, 4, 5, 6]
    # 3 steps in a fresh process that SIGTERMs itself after step 3, then a fresh process resumes to 6
    common_args = dict(config=cfg.to_dict(), data=str(shards), workdir=str(tmp_path / "resumed"), devices=4)
    common_args["cache"] = os.environ["VASAJAX_TEST_XLA_CACHE"]  # the session's (conftest): the step compiled above
    code, log = _wait(_spawn({**common_args, "kill_at": 3, "out": str(tmp_path / "a.npz")}))
    assert code == face.EXIT_STOPPED, log[-3000:]
    with common.Checkpointer(tmp_path / "resumed", cfg.to_dict()) as ck:
        assert ck.latest_step == 3
    code, log = _wait(_spawn({**common_args, "out": str(tmp_path / "b.npz")}))
    assert code == 0, log[-3000:]
    resumed = _leaves(tmp_path / "b.npz")
    expected = [np.asarray(x) for x in jax.tree.leaves(straight["state"])]
    assert len(resumed) == len(expected)
    for a, b in zip(resumed, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    # a different config for an existing run folder is a one-line user error
    from vasajax.errors import UserError

    with pytest.raises(UserError, match="run.seed: 0 → 1"):
        face.train(dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, seed=1)), shards, tmp_path / "straight")
    # a warm start takes the other run's weights (params and EMA) with a fresh optimiser, and records where from
    warm = face.train(
        dataclasses.replace(cfg, init_from=str(tmp_path / "straight")), shards, tmp_path / "warm", stop_after=0
    )
    assert warm["step"] == 0
    for key in ("params", "ema"):
        for a, b in zip(jax.tree.leaves(warm["state"]["gen"][key]), jax.tree.leaves(straight["state"]["gen"][key])):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(warm["state"]["step"]) == 0 and int(straight["state"]["step"]) == 6
    assert face.load_config(tmp_path / "warm").init_from == str(tmp_path / "straight")
    # ... and may grow: a model with the z_dyn map of dyn_2d keeps those weights fresh (zero-init projection: the
    # grown model starts from the other's images) and takes every other weight
    grown_model = dataclasses.replace(cfg.model, dyn_2d=True, dyn_2d_size=4)
    grown = dataclasses.replace(cfg, model=grown_model, init_from=str(tmp_path / "straight"))
    fresh = face.init_state(grown)
    state = face.warm_start(fresh, grown)
    flat = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(state["gen"]["params"])[0]}
    new = [k for k in flat if "dyn_map" in k or "dyn_proj" in k]
    assert new and len(flat) == len(jax.tree.leaves(straight["state"]["gen"]["params"])) + len(new)
    assert all(not np.any(np.asarray(flat[k])) for k in new if "dyn_proj" in k and "kernel" in k)
    # ... or swap a part: keypoint warp generators in place of the convolutional ones (--init-skip)
    swapped_model = dataclasses.replace(cfg.model, warp_keypoints=4)
    swapped = dataclasses.replace(cfg, model=swapped_model, init_from=str(tmp_path / "straight"))
    with pytest.raises(UserError, match="warp_keypoints"):
        face.warm_start(face.init_state(swapped), swapped)
    swapped = dataclasses.replace(swapped, init_skip=("warp_to_canonical", "warp_to_driver"))
    state = face.warm_start(face.init_state(swapped), swapped)
    flat = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(state["gen"]["params"])[0]}
    theirs = {
        jax.tree_util.keystr(p): v
        for p, v in jax.tree_util.tree_flatten_with_path(straight["state"]["gen"]["params"])[0]
    }
    carried = [k for k in flat if not k.startswith("['warp_to")]
    assert carried and all(np.array_equal(np.asarray(flat[k]), np.asarray(theirs[k])) for k in carried)
    assert any("centres" in k for k in flat)
    with pytest.raises(UserError, match="its model differs from this run's \\(dyn_dim\\)"):
        other = dataclasses.replace(cfg.model, dyn_dim=cfg.model.dyn_dim + 1)
        bad = dataclasses.replace(cfg, model=other, init_from=str(tmp_path / "straight"))
        face.warm_start(face.init_state(bad), bad)
    # --freeze motion_encoder: a fine-tune that leaves the motion encoder (so stage 2's latents) untouched
    frozen_cfg = dataclasses.replace(cfg, init_from=str(tmp_path / "straight"), freeze=("motion_encoder",))
    tuned = face.train(frozen_cfg, shards, tmp_path / "frozen", stop_after=2, progress=False)
    assert face.load_config(tmp_path / "frozen").freeze == ("motion_encoder",)

    def parts(tree):
        return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}

    for key in ("params", "ema"):
        after, before = parts(tuned["state"]["gen"][key]), parts(straight["state"]["gen"][key])
        enc = [k for k in after if k.startswith("['motion_encoder']")]
        assert enc and all(np.array_equal(after[k], before[k]) for k in enc)
        assert any(not np.array_equal(after[k], before[k]) for k in after if k not in enc)
    with pytest.raises(UserError, match="--freeze motion_encodr: no such model part"):
        face.init_state(dataclasses.replace(cfg, freeze=("motion_encodr",)))


def test_two_processes_match_single_process(shards, tmp_path):
    import jax

    from vasajax.data import loader
    from vasajax.train import common, face

    cfg = _config()  # the same program as above; the workers stop after 2 of its 6 steps
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = dict(config=cfg.to_dict(), data=str(shards), devices=1, coordinator=f"127.0.0.1:{port}", stop_after=2)
    procs = [
        _spawn({**base, "process_id": i, "workdir": str(tmp_path / "run"), "out": str(tmp_path / f"p{i}.npz")})
        for i in range(2)
    ]
    results = [_wait(p) for p in procs]
    if any(code == 77 for code, _ in results):
        pytest.skip("gloo CPU collectives are not available in this jaxlib")
    for code, log in results:
        assert code == face.EXIT_STOPPED, log[-3000:]
    p0, p1 = _leaves(tmp_path / "p0.npz"), _leaves(tmp_path / "p1.npz")
    for a, b in zip(p0, p1, strict=True):
        np.testing.assert_array_equal(a, b)  # replicated state: identical in both processes
    # the same two global batches (process p reads shard p of 2) through the single-process 4-device program
    mesh = common.make_mesh(1)
    steps = face.compiled_steps(cfg, mesh)
    its = [
        iter(loader.face_pairs(shards, loader.LoaderConfig(batch_size=2, shard_index=p, shard_count=2), cfg.pairs))
        for p in range(2)
    ]
    state = host = jax.tree.map(np.asarray, steps.init())
    for _ in range(2):
        parts = [next(it) for it in its]
        batch = {k: np.concatenate([b[k] for b in parts]) for k in ("source", "driver", "cross")}
        state, _, _ = _one_step(steps, mesh, state, batch)
        state = jax.tree.map(np.asarray, state)
    restored = jax.tree.unflatten(jax.tree.structure(state), p0)
    _assert_same_training(restored, state, host, steps=2, rtol=0.1, outliers=0.01, ptol=5e-5)  # step 1's flips


if __name__ == "__main__":
    raise SystemExit(_worker(json.loads(sys.argv[1])))
