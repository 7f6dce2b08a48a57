"""Motion DiT and diffusion: shapes, pure-function core, CFG eq. 2, x0 loss, samplers, condition nulls."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from vasajax.errors import UserError
from vasajax.motion.diffusion import (
    DiffusionConfig,
    alphas_cumprod,
    diffusion_loss,
    drop_conditions,
    guided_x0,
    loss_fn,
    sample,
    sampling_timesteps,
)
from vasajax.motion.dit import (
    CONDITION_NAMES,
    Conditions,
    CondNull,
    MotionConfig,
    MotionDiT,
    NormStats,
    compute_norm_stats,
    count_params,
)
from vasajax.motion.generate import generate_motion

CFG = MotionConfig.tiny()
B = 2


def _randomised_model(seed=0):
    """A tiny DiT whose zero-initialised (adaLN-Zero, output) weights are made random, so every input matters."""
    model = MotionDiT(CFG, rngs=nnx.Rngs(seed))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    leaves = [p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
    return nnx.merge(graphdef, jax.tree.unflatten(tree, leaves), rest)


@pytest.fixture(scope="module")
def model():
    return _randomised_model()


def _conditions(seed=0, null=None) -> Conditions:
    k = jax.random.split(jax.random.key(seed), 7)
    W, K, M, A = CFG.window, CFG.context, CFG.motion_dim, CFG.audio_dim
    return Conditions(
        audio_BxWxA=jax.random.normal(k[0], (B, W, A)),
        audio_mask_BxW=jnp.ones((B, W), bool),
        motion_pre_BxKxM=jax.random.normal(k[1], (B, K, M)),
        audio_pre_BxKxA=jax.random.normal(k[2], (B, K, A)),
        gaze_Bx2=jax.random.normal(k[3], (B, 2)),
        distance_Bx1=jax.random.normal(k[4], (B, 1)),
        emotion_BxE=jax.random.normal(k[5], (B, CFG.emotion_dim)),
        null=CondNull.none(B) if null is None else null,
    )


def _x_t(seed=1):
    return jax.random.normal(jax.random.key(seed), (B, CFG.window, CFG.motion_dim))


T_B = jnp.array([10, 900])


def test_shapes_finite_eager_and_jit_and_pure_split_merge(model):
    cond = _conditions()
    eager = model(_x_t(), T_B, cond)
    assert eager.shape == (B, CFG.window, CFG.motion_dim) and eager.dtype == jnp.float32
    assert np.isfinite(np.asarray(eager)).all()
    graphdef, state = nnx.split(model)
    pure = jax.jit(lambda s, x, t, c: nnx.merge(graphdef, s)(x, t, c))(state, _x_t(), T_B, cond)
    np.testing.assert_allclose(pure, eager, atol=1e-5)


def test_fresh_model_predicts_data_mean():
    fresh = MotionDiT(CFG, rngs=nnx.Rngs(3))
    np.testing.assert_array_equal(fresh(_x_t(), T_B, _conditions()), 0.0)  # zero-init output = mean


def test_bfloat16_compute_is_close_to_float32(model):
    graphdef, state = nnx.split(model)
    bf16_cfg = dataclasses.replace(CFG, dtype="bfloat16")
    bf16 = nnx.merge(nnx.graphdef(nnx.eval_shape(lambda: MotionDiT(bf16_cfg, rngs=nnx.Rngs(0)))), state)
    out32, out16 = model(_x_t(), T_B, _conditions()), bf16(_x_t(), T_B, _conditions())
    assert out16.dtype == jnp.float32
    rel = float(jnp.linalg.norm(out16 - out32) / jnp.linalg.norm(out32))
    assert 0 < rel < 0.05


@pytest.mark.parametrize("name", CONDITION_NAMES)
def test_null_replaces_condition(model, name):
    """With c = ∅ the value of c is ignored; without, it changes the output."""
    field = {"audio": "audio_BxWxA", "context": "motion_pre_BxKxM", "gaze": "gaze_Bx2",
             "distance": "distance_Bx1", "emotion": "emotion_BxE"}[name]  # fmt: skip
    null = CondNull.none(B)._replace(**{name: jnp.ones((B,), bool)})
    a, b = _conditions(0), _conditions(0)
    b = b._replace(**{field: getattr(b, field) + 1.0})
    same = model(_x_t(), T_B, a._replace(null=null)) - model(_x_t(), T_B, b._replace(null=null))
    differ = model(_x_t(), T_B, a) - model(_x_t(), T_B, b)
    assert float(jnp.abs(same).max()) == 0.0
    assert float(jnp.abs(differ).max()) > 1e-3


def test_masked_audio_frames_are_ignored(model):
    cond = _conditions()._replace(audio_mask_BxW=jnp.arange(CFG.window)[None].repeat(B, 0) < 5)
    other = cond._replace(audio_BxWxA=cond.audio_BxWxA.at[:, 5:].set(7.0))
    np.testing.assert_array_equal(model(_x_t(), T_B, cond), model(_x_t(), T_B, other))


def test_cfg_zero_lambdas_equal_conditional_call(model):
    dcfg = DiffusionConfig.tiny(lambda_audio=0.0, lambda_gaze=0.0)
    cond = _conditions()
    np.testing.assert_array_equal(guided_x0(model, _x_t(), T_B, cond, dcfg), model(_x_t(), T_B, cond))


def test_cfg_batched_equals_eq2_with_separate_calls(model):
    dcfg = DiffusionConfig.tiny(lambda_audio=0.5, lambda_gaze=1.0, lambda_emotion=0.3)
    cond, x = _conditions(), _x_t()
    h = lambda **n: model(x, T_B, cond._replace(null=cond.null._replace(**n)))  # noqa: E731
    ones = jnp.ones((B,), bool)
    expected = (1 + 0.5 + 1.0 + 0.3) * h() - 0.5 * h(audio=ones) - 1.0 * h(gaze=ones) - 0.3 * h(emotion=ones)
    np.testing.assert_allclose(guided_x0(model, x, T_B, cond, dcfg), expected, atol=2e-5)


def test_x0_loss_is_zero_for_perfect_denoiser_and_mse_otherwise():
    x0 = _x_t(5)
    dcfg = DiffusionConfig.tiny(velocity_weight=1.0)
    cond = _conditions()
    loss, m = diffusion_loss(lambda x_t, t, c: x0, x0, cond, jax.random.key(0), dcfg, last_pre_BxM=x0[:, 0])
    assert float(loss) == 0.0 and float(m["loss_vel"]) == 0.0
    loss, m = diffusion_loss(lambda x_t, t, c: x0 + 0.1, x0, cond, jax.random.key(0), DiffusionConfig.tiny())
    np.testing.assert_allclose(loss, 0.01, rtol=1e-5)
    # Frame mask: errors on masked frames do not count.
    mask = jnp.arange(CFG.window)[None].repeat(B, 0) < 4
    bad_tail = lambda x_t, t, c: x0.at[:, 4:].add(3.0)  # noqa: E731
    loss, _ = diffusion_loss(bad_tail, x0, cond, jax.random.key(0), DiffusionConfig.tiny(), mask)
    assert float(loss) == 0.0


def test_schedule_and_timesteps():
    for schedule in ("cosine", "linear"):
        abar = alphas_cumprod(DiffusionConfig(schedule=schedule))
        assert abar.shape == (1000,) and (np.diff(abar) < 0).all()
        assert abar[0] > 0.999 and abar[-1] < 1e-3
    ts, ss = sampling_timesteps(DiffusionConfig(steps=7))
    assert ts[0] == 999 and ts[-1] == 0 and ss[-1] == -1 and (ss[:-1] == ts[1:]).all() and len(ts) == 7
    with pytest.raises(UserError):
        DiffusionConfig(sampler="euler")


def test_samplers_ddim_eta0_deterministic_and_ddpm_equals_ddim_eta1(model):
    shape = (B, CFG.window, CFG.motion_dim)
    cond, x_T = _conditions(), _x_t(9)
    graphdef, state = nnx.split(model)
    jitted = jax.jit(lambda dcfg, s, k: sample(nnx.merge(graphdef, s), cond, k, dcfg, shape, x_T=x_T), static_argnums=0)
    run = lambda dcfg, k: jitted(dcfg, state, k)  # noqa: E731
    ddim0 = DiffusionConfig.tiny(steps=4, eta=0.0, lambda_gaze=0.0)
    a, b = run(ddim0, jax.random.key(1)), run(ddim0, jax.random.key(2))
    np.testing.assert_array_equal(a, b)  # per-step noise keys differ, result does not
    assert np.isfinite(np.asarray(a)).all()
    ddim1 = dataclasses.replace(ddim0, eta=1.0)
    ddpm = dataclasses.replace(ddim0, sampler="ddpm")
    c, d = run(ddim1, jax.random.key(1)), run(ddpm, jax.random.key(1))
    np.testing.assert_allclose(c, d, atol=1e-4)
    assert float(jnp.abs(c - run(ddim1, jax.random.key(2))).max()) > 1e-2  # η = 1 is stochastic


def test_condition_dropout_rates():
    n = 4000
    cond = Conditions(
        jnp.zeros((n, CFG.window, 1)), jnp.ones((n, CFG.window), bool), jnp.zeros((n, 1, 1)),
        jnp.zeros((n, 1, 1)), jnp.zeros((n, 2)), jnp.zeros((n, 1)), jnp.zeros((n, 1)), CondNull.none(n),
    )  # fmt: skip
    out = drop_conditions(cond, jax.random.key(0), DiffusionConfig())
    rates = {name: float(getattr(out.null, name).mean()) for name in CONDITION_NAMES}
    for name, p in rates.items():
        assert abs(p - (0.5 if name == "context" else 0.1)) < 0.03, rates
    tail = ~out.audio_mask_BxW[:, -1]
    assert abs(float(tail.mean()) - 0.1) < 0.03
    kept = out.audio_mask_BxW.sum(1)
    assert bool(((kept == CFG.window) | (kept < CFG.window)).all()) and int(kept.min()) >= 1
    # The mask is a prefix: once an audio frame is dropped, all later ones are too.
    assert bool((jnp.diff(out.audio_mask_BxW.astype(int), axis=1) <= 0).all())


def test_norm_stats_kept_out_of_params_and_round_trip():
    model = MotionDiT(CFG, rngs=nnx.Rngs(0))
    motion = np.random.default_rng(0).normal(3.0, 2.0, (50, 7, CFG.motion_dim)).astype(np.float32)
    audio = np.random.default_rng(1).normal(-5.0, 4.0, (50, 7, CFG.audio_dim)).astype(np.float32)
    gaze = np.random.default_rng(2).normal(-0.1, 0.05, (50, 7, 2)).astype(np.float32)
    distance = np.random.default_rng(3).normal(0.3, 0.02, (50, 7)).astype(np.float32)
    with pytest.raises(UserError, match="gaze and distance statistics"):
        model.set_norm_stats(compute_norm_stats(motion, audio))  # condition_norm (every preset) needs them
    model.set_norm_stats(compute_norm_stats(motion, audio, gaze, distance))
    z = model.normalize_motion(motion)
    assert abs(float(z.mean())) < 1e-4 and abs(float(z.std()) - 1) < 1e-3
    np.testing.assert_allclose(model.denormalize_motion(z), motion, atol=1e-4)
    g, d = model.normalize_conditions(gaze.reshape(-1, 2), distance.reshape(-1, 1))
    np.testing.assert_allclose(np.std(g, 0), 1, atol=0.02)  # (N(0, 1) clipped at ±3σ)
    np.testing.assert_allclose(np.mean(d), 0, atol=0.02)
    far = model.normalize_conditions(jnp.zeros((1, 2)), jnp.full((1, 1), 1.25 * 0.3))[1]  # 25 % farther: ~4σ
    assert float(far[0, 0]) == 3.0  # requests beyond the data act as its edge
    n_stats = sum(x.size for x in jax.tree.leaves(nnx.state(model, NormStats)))
    assert n_stats == 2 * (CFG.motion_dim + CFG.audio_dim + CFG.gaze_dim + CFG.distance_dim)
    # Without condition_norm (exports made before it) the conditions reach the embeddings raw.
    raw = MotionDiT(dataclasses.replace(CFG, condition_norm=False), rngs=nnx.Rngs(0))
    raw.set_norm_stats(compute_norm_stats(motion, audio))
    assert raw.normalize_conditions(gaze, distance)[0] is gaze
    assert count_params(model) == sum(x.size for x in jax.tree.leaves(nnx.split(model, nnx.Param, ...)[1]))


def test_training_steps_lower_the_loss():
    model = MotionDiT(CFG, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    rng = np.random.default_rng(0)
    L = CFG.context + CFG.window
    audio = rng.standard_normal((8, L, CFG.audio_dim)).astype(np.float32)
    batch = dict(motion=jnp.asarray(audio[..., : CFG.motion_dim]), audio=jnp.asarray(audio),
                 gaze=jnp.zeros((8, 2)))  # fmt: skip
    dcfg = DiffusionConfig.tiny(velocity_weight=0.5)
    tx = optax.adam(3e-3)

    @jax.jit
    def step(params, opt):
        (loss, m), g = jax.value_and_grad(loss_fn, has_aux=True)(
            params, batch, jax.random.key(0), graphdef=graphdef, rest=rest, dcfg=dcfg
        )
        updates, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, updates), opt, loss, m

    opt = tx.init(params)
    losses = []
    for _ in range(15):
        params, opt, loss, m = step(params, opt)
        losses.append(float(loss))
    assert set(m) == {"loss", "loss_x0", "loss_vel"} and np.isfinite(losses).all()
    assert losses[-1] < 0.7 * losses[0], losses


def test_config_validation_and_presets_build_abstractly():
    with pytest.raises(UserError):
        MotionConfig.tiny(width=30, num_heads=4)
    with pytest.raises(UserError):
        MotionConfig.tiny(context=20)
    assert (MotionConfig.tiny().motion_dim, MotionConfig.small().motion_dim, MotionConfig.paper().motion_dim) == (
        14, 70, 134,
    )  # fmt: skip
    paper = MotionConfig.paper()
    assert (paper.num_layers, paper.width, paper.num_heads) == (8, 512, 8)
    for cfg, lo, hi in ((MotionConfig.small(), 5e6, 1e7), (paper, 3e7, 5e7)):
        abstract = nnx.eval_shape(lambda c=cfg: MotionDiT(c, rngs=nnx.Rngs(0)))
        assert lo < count_params(abstract) < hi
        out = jax.eval_shape(
            lambda s, c=cfg, a=abstract: nnx.merge(nnx.graphdef(a), s)(
                jnp.zeros((1, c.window, c.motion_dim)), jnp.zeros((1,), jnp.int32),
                Conditions(jnp.zeros((1, c.window, c.audio_dim)), jnp.ones((1, c.window), bool),
                           jnp.zeros((1, c.context, c.motion_dim)), jnp.zeros((1, c.context, c.audio_dim)),
                           jnp.zeros((1, 2)), jnp.zeros((1, 1)), jnp.zeros((1, c.emotion_dim)), CondNull.none(1)),
            ),
            nnx.state(abstract),
        )  # fmt: skip
        assert out.shape == (1, cfg.window, cfg.motion_dim)


def _gaze_slope(condition_norm: bool, steps: int = 250) -> float:
    """Train a tiny DiT on windows whose first motion dim is 10 × the gaze θ (θ ~ N(0, 0.05 rad), like tracked
    labels), then generate at θ = ±0.1: the slope of that dim per unit of the requested 10·θ (1 = follows)."""
    cfg = dataclasses.replace(CFG, condition_norm=condition_norm)
    K, W, M, A = cfg.context, cfg.window, cfg.motion_dim, cfg.audio_dim
    rng = np.random.default_rng(0)
    N = 512
    gaze = rng.normal(0, 0.05, (N, 2)).astype(np.float32)
    motion = 0.3 * rng.standard_normal((N, K + W, M)).astype(np.float32)
    motion[:, :, 0] = 10 * gaze[:, :1] + 0.05 * rng.standard_normal((N, K + W))
    audio = rng.standard_normal((N, K + W, A)).astype(np.float32)
    distance = (0.3 + 0.01 * rng.standard_normal(N)).astype(np.float32)
    model = MotionDiT(cfg, rngs=nnx.Rngs(0))
    model.set_norm_stats(compute_norm_stats(motion, audio, gaze, distance))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    dcfg = DiffusionConfig.tiny()
    tx = optax.adam(2e-3)

    @jax.jit
    def step(params, opt, batch, key):
        (_, _), g = jax.value_and_grad(loss_fn, has_aux=True)(
            params, batch, key, graphdef=graphdef, rest=rest, dcfg=dcfg
        )
        updates, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, updates), opt

    opt = tx.init(params)
    for i in range(steps):
        j = rng.integers(0, N, 32)
        batch = dict(motion=motion[j], audio=audio[j], gaze=gaze[j], distance=distance[j, None])
        params, opt = step(params, opt, jax.tree.map(jnp.asarray, batch), jax.random.key(i))
    model = nnx.merge(graphdef, params, rest)
    a = rng.standard_normal((4, W, A)).astype(np.float32)
    hi, lo = (generate_motion(model, a, dcfg, gaze=[s, 0.0], use_context=False)[..., 0].mean() for s in (0.1, -0.1))
    return float(hi - lo) / 2.0


def test_condition_norm_makes_the_gaze_control_work():
    """Raw gaze labels (a few hundredths of a radian) barely reach a default-initialised embedding: a DiT trained
    on them ignores the control (what the session-9/12 demo DiTs did); standardised, it follows it."""
    follows, raw = _gaze_slope(True), _gaze_slope(False)
    assert follows > 0.6, follows
    assert raw < 0.5 * follows, (raw, follows)
