"""Motion generation: a tiny DiT learns a toy audio→motion task on CPU; sliding windows, streaming, seams.

Toy task (held-out clips are fresh random draws): a smooth 3-d latent s_t drives both the audio features
(A = s·P + noise, 160-d) and 8 "lip" motion dims (s·Q); the 6 "pose" dims are smooth random motion that the
audio does not determine, so their continuity across windows must come from the context X_pre/A_pre.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import vasajax.motion.generate as gen
from vasajax.errors import UserError
from vasajax.motion.diffusion import DiffusionConfig, loss_fn
from vasajax.motion.dit import MotionConfig, MotionDiT, compute_norm_stats
from vasajax.motion.generate import MotionStream, generate_motion, stream_motion

CFG = MotionConfig.tiny()
DCFG = DiffusionConfig.tiny()  # 10 DDIM steps, λ_A = 0.5, λ_g = 1.0
POSE, LIPS = slice(0, 6), slice(6, 14)
TRAIN_STEPS = 1500


def _smooth(x_NxTxC, sigma):
    r = int(3 * sigma)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    out = np.apply_along_axis(lambda v: np.convolve(v, k, "valid"), 1, x_NxTxC)
    return out / out.std()


def toy_clips(seed, n, T):
    """(audio N×T×160, motion N×T×14) of the toy task."""
    if T == 0:
        return np.zeros((n, 0, CFG.audio_dim), np.float32), np.zeros((n, 0, CFG.motion_dim), np.float32)
    rng, fixed = np.random.default_rng(seed), np.random.default_rng(1234)
    P, Q = fixed.standard_normal((3, CFG.audio_dim)), fixed.standard_normal((3, 8))
    s = _smooth(rng.standard_normal((n, T + 12, 3)), 2.0)
    audio = s @ P + 0.1 * rng.standard_normal((n, T, CFG.audio_dim))
    pose = 0.35 * _smooth(rng.standard_normal((n, T + 30, 6)), 5.0)
    return audio.astype(np.float32), np.concatenate([pose, s @ Q], -1).astype(np.float32)


@pytest.fixture(scope="module")
def trained():
    """Train the tiny DiT on the toy task (1500 steps of batch 64; ~80 CPU-seconds, ~40 s on 2 cores)."""
    audio, motion = toy_clips(0, 512, 60)
    model = MotionDiT(CFG, rngs=nnx.Rngs(0))
    # Gaze/distance statistics of a plausible label range (the toy task has no conditions of its own).
    cond = np.random.default_rng(9).normal(0.0, 0.1, (256, 3)).astype(np.float32)
    model.set_norm_stats(compute_norm_stats(motion, audio, cond[:, :2], 1.0 + cond[:, 2]))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(optax.warmup_cosine_decay_schedule(0.0, 4e-3, 100, TRAIN_STEPS, 2e-4))
    L, bs = CFG.context + CFG.window, 64
    audio_j, motion_j = jnp.asarray(audio), jnp.asarray(motion)

    @jax.jit
    def step(params, opt, key):
        k_clip, k_start, k_loss = jax.random.split(key, 3)
        clip = jax.random.randint(k_clip, (bs, 1), 0, audio.shape[0])
        idx = jax.random.randint(k_start, (bs, 1), 0, audio.shape[1] - L + 1) + jnp.arange(L)
        batch = dict(motion=motion_j[clip, idx], audio=audio_j[clip, idx])
        (loss, _), g = jax.value_and_grad(loss_fn, has_aux=True)(
            params, batch, k_loss, graphdef=graphdef, rest=rest, dcfg=DCFG
        )
        updates, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, updates), opt, loss

    opt, key, losses = tx.init(params), jax.random.key(1), []
    for i in range(TRAIN_STEPS):
        params, opt, loss = step(params, opt, jax.random.fold_in(key, i))
        losses.append(loss)
    losses = np.asarray(jax.device_get(losses))
    assert losses[-100:].mean() < 0.5 * losses[:20].mean()
    return nnx.merge(graphdef, params, rest)


def _corr(a_NxT, b_NxT):
    a, b = a_NxT - a_NxT.mean(1, keepdims=True), b_NxT - b_NxT.mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def test_learns_audio_driven_motion(trained):
    """Held-out audio → generated lip dims correlate with the truth (r > 0.9); shuffled audio does not."""
    audio, motion = toy_clips(99, 8, 90)  # 90 = 5 full windows + a partial one of 10 frames
    out = generate_motion(trained, audio, DCFG, seed=0)
    assert out.shape == motion.shape and np.isfinite(out).all()
    r = _corr(out[..., LIPS].transpose(0, 2, 1).reshape(-1, 90), motion[..., LIPS].transpose(0, 2, 1).reshape(-1, 90))
    shuffled = _corr(
        out[..., LIPS].transpose(0, 2, 1).reshape(-1, 90), motion[::-1, :, LIPS].transpose(0, 2, 1).reshape(-1, 90)
    )
    print(f"lip-dim correlation on held-out audio: mean {r.mean():.3f}, min {r.min():.3f}; "
          f"against other clips' motion: mean |r| {np.abs(shuffled).mean():.3f}")  # fmt: skip
    assert r.mean() > 0.9 and r.min() > 0.75
    assert np.abs(shuffled).mean() < 0.3


def _jumps(out_BxTxM, dims):
    """Mean |Δ| over frames at window seams and inside windows (per frame, mean over batch and dims)."""
    d = np.abs(np.diff(out_BxTxM[..., dims], axis=1)).mean(-1)  # B×(T−1)
    seam = np.arange(CFG.window - 1, out_BxTxM.shape[1] - 1, CFG.window)
    inside = np.setdiff1d(np.arange(out_BxTxM.shape[1] - 1), seam)
    return d[:, seam].mean(), d[:, inside].mean(), np.percentile(d[:, inside], 90)


def test_window_seams_are_smooth(trained):
    """The jump from one window's last frame to the next one's first is like motion inside windows.

    Measured (2-core CPU, this toy model): all dims seam 0.27 vs 0.33 inside (mean |Δ| per frame); the
    pose dims, whose continuity only the context carries, 0.050 vs 0.034 inside (p90 0.049), and 0.33
    when windows are sampled without context. A longer-trained model narrows the pose gap.
    """
    audio, _ = toy_clips(7, 8, 8 * CFG.window)
    out = generate_motion(trained, audio, DCFG, seed=1)
    cut = generate_motion(trained, audio, DCFG, seed=1, use_context=False)  # ablation: no X_pre/A_pre
    for name, dims in (("pose", POSE), ("lips", LIPS), ("all", slice(None))):
        seam, inside, p90 = _jumps(out, dims)
        seam_cut, _, _ = _jumps(cut, dims)
        print(f"{name}: seam {seam:.4f} inside mean {inside:.4f} p90 {p90:.4f}; without context {seam_cut:.4f}")
    seam, inside, _ = _jumps(out, slice(None))
    assert seam <= inside  # all dims: a seam is an ordinary frame step
    seam, inside, _ = _jumps(out, POSE)  # dims the audio does not determine: continuity is the context's
    assert seam <= 2.0 * inside
    assert seam < 0.3 * _jumps(cut, POSE)[0]


def test_streaming_equals_offline_for_any_chunking(trained):
    audio, _ = toy_clips(5, 2, 3 * CFG.window + 5)
    offline = generate_motion(trained, audio, DCFG, seed=3, gaze=[0.1, -0.2], distance=1.0)
    stream = MotionStream(trained, DCFG, batch=2, seed=3, gaze=[0.1, -0.2], distance=1.0)
    pieces, start, rng = [], 0, np.random.default_rng(0)
    while start < audio.shape[1]:
        n = int(rng.integers(1, 2 * CFG.window))
        ready = stream.push(audio[:, start : start + n])
        assert all(w.shape == (2, CFG.window, CFG.motion_dim) for w in ready)
        pieces += ready
        start += n
    pieces += stream.finish()
    assert [p.shape[1] for p in pieces] == [CFG.window] * 3 + [5]
    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), offline)
    windows = list(stream_motion(trained, audio, DCFG, seed=3, gaze=[0.1, -0.2], distance=1.0))
    np.testing.assert_array_equal(np.concatenate(windows, axis=1), offline)
    assert not np.array_equal(generate_motion(trained, audio, DCFG, seed=4, gaze=[0.1, -0.2], distance=1.0), offline)
    with pytest.raises(UserError):
        stream.push(audio)  # after finish()


def test_any_length_one_compiled_window_function(trained, monkeypatch):
    """Output length = audio frames; every window (first, middle, padded last) reuses one trace."""
    traces = []
    real_sample = gen.sample
    monkeypatch.setattr(gen, "sample", lambda *a, **k: traces.append(1) or real_sample(*a, **k))
    for T in (0, 1, CFG.window, 2 * CFG.window + 3, 6 * CFG.window + 1):
        audio, _ = toy_clips(T, 8, T)  # batch 8 as in the tests above: the same compiled function
        out = generate_motion(trained, audio, DCFG, seed=0)
        assert out.shape == (8, T, CFG.motion_dim) and np.isfinite(out).all()
    assert len(traces) <= 1  # five lengths, 12 windows: one trace at most (none if already compiled)
    out = generate_motion(trained, audio[0], DCFG, emotion=np.zeros(CFG.emotion_dim))  # T×A input → 1×T×M
    assert out.shape == (1, T, CFG.motion_dim)
    with pytest.raises(UserError):
        generate_motion(trained, np.zeros((10, 7)), DCFG)
    with pytest.raises(UserError):
        generate_motion(trained, np.zeros((10, CFG.audio_dim)), DCFG, gaze=[1.0, 2.0, 3.0])


def test_cfg_scales_are_data_changing_them_never_recompiles(trained, monkeypatch):
    """λ_A and λ_g (0 included) reuse one compiled window sampler, and a traced scale samples exactly what the
    same λ baked into the config samples."""
    traces = []
    real_sample = gen.sample
    monkeypatch.setattr(gen, "sample", lambda *a, **k: traces.append(1) or real_sample(*a, **k))
    audio, _ = toy_clips(CFG.window + 3, 8, CFG.window + 3)
    outs = {}
    for la, lg in ((0.5, 1.0), (1.5, 0.0), (0.0, 2.0), (0.0, 0.0)):
        dcfg = dataclasses.replace(DCFG, lambda_audio=la, lambda_gaze=lg)
        outs[la, lg] = generate_motion(trained, audio, dcfg, seed=0, gaze=[0.1, 0.0])
    assert len(traces) <= 1, len(traces)
    assert not np.array_equal(outs[0.5, 1.0], outs[1.5, 0.0])
    # λ as a compile-time constant with the zero-λ branch dropped (the sampler before scales were data) agrees.
    static, scales = gen.split_guidance(dataclasses.replace(DCFG, lambda_audio=1.5, lambda_gaze=0.0))
    assert static.lambda_audio == 1.0 and static.lambda_gaze == 1.0 and float(scales[1]) == 0.0

    def baked(dcfg, given):
        return dataclasses.replace(dcfg, **{f"lambda_{n}": 0.0 for n, g in given.items() if not g}), None

    monkeypatch.setattr(gen, "split_guidance", baked)
    old = generate_motion(
        trained, audio, dataclasses.replace(DCFG, lambda_audio=1.5, lambda_gaze=0.0), seed=0, gaze=[0.1, 0.0]
    )
    np.testing.assert_allclose(old, outs[1.5, 0.0], atol=1e-5)


def test_live_first_window_starts_early_and_equals_offline(trained):
    """first_window = 4: the first motion comes back after 4 frames of audio; windows after it are full, the
    total is T frames, one compiled sampler serves all, and streaming in odd chunks equals the offline run."""
    T, F = 2 * CFG.window + 7, 4
    audio, _ = toy_clips(11, 8, T)
    offline = generate_motion(trained, audio, DCFG, seed=2, first_window=F)
    assert offline.shape == (8, T, CFG.motion_dim) and np.isfinite(offline).all()
    stream = MotionStream(trained, DCFG, batch=8, seed=2, first_window=F)
    assert stream.push(audio[:, : F - 1]) == []  # not enough audio yet
    first = stream.push(audio[:, F - 1 : F + 2])
    assert [w.shape[1] for w in first] == [F]
    rest = stream.push(audio[:, F + 2 :]) + stream.finish()
    assert [w.shape[1] for w in rest] == [CFG.window, CFG.window, T - F - 2 * CFG.window]
    np.testing.assert_array_equal(np.concatenate(first + rest, axis=1), offline)
    default = generate_motion(trained, audio, DCFG, seed=2)
    np.testing.assert_array_equal(generate_motion(trained, audio, DCFG, seed=2, first_window=CFG.window), default)
    with pytest.raises(UserError, match="first_window"):
        MotionStream(trained, DCFG, first_window=0)


def test_primed_first_window_continues_the_context(trained):
    """``context_motion``/``context_audio`` prime window 0 as if the clip so far had been that motion: its first
    frame's pose (which the audio does not determine) continues the context's instead of starting anywhere.

    Measured (2-core CPU, this toy model): first-frame pose error 0.072 primed vs 0.324 unprimed (mean |Δ|
    against the true continuation)."""
    K, W = CFG.context, CFG.window
    audio, motion = toy_clips(21, 8, K + W)
    truth = motion[:, K, POSE]
    primed = MotionStream(trained, DCFG, batch=8, seed=3, context_motion=motion[:, :K], context_audio=audio[:, :K])
    free = MotionStream(trained, DCFG, batch=8, seed=3)
    (p,) = primed.push(audio[:, K:])
    (f,) = free.push(audio[:, K:])
    err_p, err_f = np.abs(p[:, 0, POSE] - truth).mean(), np.abs(f[:, 0, POSE] - truth).mean()
    print(f"first-frame pose error: primed {err_p:.3f}, unprimed {err_f:.3f}")
    assert err_p < 0.5 * err_f
    # One row is held for K frames; the same values given as K rows sample the same window.
    held = MotionStream(trained, DCFG, batch=8, seed=3, context_motion=motion[0, K - 1])
    rows = MotionStream(trained, DCFG, batch=8, seed=3, context_motion=np.repeat(motion[:1, K - 1 : K], K, axis=1))
    np.testing.assert_array_equal(held.push(audio[:, K:])[0], rows.push(audio[:, K:])[0])
    with pytest.raises(UserError, match="context_motion has shape"):
        MotionStream(trained, DCFG, batch=8, context_motion=np.zeros((3, CFG.motion_dim)))
    with pytest.raises(UserError, match="NaN"):
        MotionStream(trained, DCFG, context_motion=np.full(CFG.motion_dim, np.nan))
