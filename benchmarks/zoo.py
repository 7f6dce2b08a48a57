"""Zoo benchmark: LivePortrait's renderer and JoyVASA's motion generator (``vasajax.zoo``), random weights.

What is measured, for ``--size tiny`` (the reduced configs of tests/test_zoo_*.py and tools/make_*_fixtures.py:
64² LivePortrait, a 2-layer width-32 JoyVASA DiT with a tiny HuBERT) or ``--size paper`` (the released sizes:
``LivePortraitConfig.full()``, 256² source → 512² frame; ``JoyVASAConfig.released()``, 8 layers × 512, windows
of 100 + 25 frames; a hubert-base audio encoder, 95 M parameters). Real weights are not needed: speed does not
depend on them.

* LivePortrait, jitted JAX, ``--batch`` frames per render call (default 1):
  ``encode_ms``: one source image through F (appearance volume) and M (motion extractor) plus the source
  keypoints (``transform_keypoint``), i.e. what is done once per portrait; ``render_ms_per_frame``: W (warping)
  then G (SPADE generator) for one driving keypoint set, i.e. the per-frame cost; ``render_fps``.
  GFLOPs per frame (``encode_gflops``, ``render_gflops_per_frame``) from XLA's cost analysis of the *lowered*
  functions (device-independent; a GPU-compiled executable leaves out cuDNN convolutions, see
  ``benchmarks/face_latent.py``). Parameters per network (F, M, W, G, S).
* With ``--upstream PATH`` (the reference folder ``/work/shared/reference/upstream``, or its ``liveportrait/``;
  needs torch and pyyaml): the upstream PyTorch modules are built at the same sizes with random weights made
  meaningful as ``tools/make_zoo_fixtures.py`` does, the JAX model is converted from those very weights
  (``convert_state_dicts``), and the same encode and W+G render are timed in torch on the CPU
  (``torch_render_ms_per_frame``, ``torch_encode_ms``, ``torch_threads``); ``jax_over_torch_render`` is the
  JAX/torch time ratio (< 1: JAX faster; only when JAX runs on the CPU too, else null), and
  ``frame_rel_err_vs_torch`` checks that both rendered the same frame (float32). Without ``--upstream`` the
  JAX model gets random init (spectral-norm vectors power-iterated so that outputs stay finite) and the torch
  columns are absent (the upstream files are not part of the repository). Compare on an idle machine: under
  load torch's OpenMP threads wait for each other at every op (on the busy 2-core machine at nice 19 a tiny
  W+G took ~1.5 s of CPU with 2 torch threads, 25–30 ms with ``--torch-threads 1``), far more than JAX does.
* JoyVASA, jitted JAX, ``--batch`` clips per window: ``ms_per_window``: one generation window as
  ``vasajax.zoo.joyvasa.sample`` runs it: ancestral DDPM over all ``--steps`` steps (default: the config's
  T, 50 for the released model, 10 for tiny) with classifier-free guidance (``--cfg-scale`` 2.8, upstream's;
  both branches stacked on the batch axis), for a middle window (context from the previous one);
  ``motion_fps`` = window frames / time, ``realtime_factor`` = motion_fps / 25, and the same with the audio
  front end included (``realtime_factor_with_audio``). ``audio_ms_per_audio_s``: the HuBERT/wav2vec2
  encoder (pad, conv features, transformer, resampling to 25 fps) on one window of audio, per second of audio,
  and ``audio_s_per_s``. GFLOPs: ``gflops_per_step`` (one guided denoiser call, lowered cost analysis; XLA
  counts a ``lax.scan`` body once, so the window is that × steps) and ``audio_gflops_per_audio_s``. With
  ``--upstream`` (needs torch and transformers): upstream's ``DitTalkingHead`` built at the same size as
  ``tools/make_joyvasa_fixtures.py`` builds it (random weights, its HuBERT from a config), and the same middle
  window of its own ``sample`` (CFG on audio) and its ``extract_audio_feature`` timed on the CPU
  (``torch_ms_per_window``, ``torch_audio_ms_per_audio_s``; ``jax_over_torch_window`` /
  ``jax_over_torch_audio`` when JAX runs on the CPU too; ``torch_contention``).
* Every row: ``dtype``, compiled memory (``compiled_memory_bytes``, XLA's memory analysis of the largest
  timed function), device peak (``peak_memory_gib``, from the device's memory stats where it keeps them,
  i.e. GPUs) and the process's peak RSS (``peak_rss_gib``, cumulative over the run), ``compile_s``, and
  ``contention`` (``benchmarks/timing.py``: a call during which other processes used more than
  ``--contended-share`` (0.1) of the CPUs is retried up to ``--max-tries`` and left out; ``parts`` per timed
  function; ``contended: true`` means no clean call was possible and the numbers were taken under load).

    python benchmarks/zoo.py --size tiny --repeats 2               # smoke run: ~1 min of CPU time, mostly compiling
    python benchmarks/zoo.py --size paper --upstream /work/shared/reference/upstream   # CPU, JAX vs torch
    python benchmarks/zoo.py --size paper --dtype bfloat16 --batch 8                   # on a GPU

On a GPU machine: install JAX's CUDA build (``pip install "jax[cuda12]"`` or ``[cuda13]``, matching the driver
and the jax version in constraints.txt), check that ``python -c "import jax; print(jax.devices())"`` lists the
GPU, and run ``--size paper``. ``--dtype bfloat16`` casts weights and inputs to bfloat16 (the ports keep a few
float32 constants, e.g. the warping grid, so parts of the computation stay float32; ``output_dtype`` says what
came out); ``--batch`` raises frames per render call and clips per window. Nothing here assumes a CPU: JAX runs
on the default device and is timed with ``block_until_ready``; torch (``--upstream``) always runs on the CPU, so
on a GPU machine its column is a CPU reference and the JAX/torch ratio is left null. Needs only jax, flax and
numpy without ``--upstream`` (``src/`` is put on ``sys.path``; no install needed). Paper size on an idle 2-core
CPU: about 10 s per rendered 512² frame (``tools/check_liveportrait_parity.py`` measured 9.9 s, torch 13.4 s),
so use ``--repeats 1`` there.

Prints a table and writes ``benchmarks/results/zoo-<device>-<date>.json`` (``--out``: another folder); rows of
an earlier run of the same day and device are kept unless this run measured the same setting, and a clean
earlier row is not replaced by a contended one. ``benchmarks/run_all.py`` renders the rows into summary.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import json
import os
import pathlib
import platform
import resource
import sys
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from face_latent import device_name, flops_of, peak_memory_gib  # noqa: E402
from vasajax.motion.wav2vec2 import Wav2Vec2, Wav2Vec2Config  # noqa: E402
from vasajax.zoo.joyvasa.audio import encode_fn  # noqa: E402
from vasajax.zoo.joyvasa.config import JoyVASAConfig  # noqa: E402
from vasajax.zoo.joyvasa.dit import JoyVASADiT, denoise_fn  # noqa: E402
from vasajax.zoo.joyvasa.sample import make_window_sampler  # noqa: E402
from vasajax.zoo.joyvasa.schedule import make_schedule  # noqa: E402
from vasajax.zoo.liveportrait import LivePortrait, LivePortraitConfig, convert_state_dicts  # noqa: E402
from vasajax.zoo.liveportrait import keypoints as kpt  # noqa: E402
from vasajax.zoo.liveportrait.layers import SpectralConv  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from timing import CONTENDED_SHARE, combine, load_snapshot, marker, measure, merge_rows  # noqa: E402

FPS = 25.0  # video frame rate of the motion
LP_NETS = ("appearance", "motion", "warping", "generator", "retargeting")
DRIVE = dict(pitch=10.0, yaw=-15.0, roll=4.0)  # the driving pose change, degrees (as tools/check_liveportrait_parity)


# ----------------------------------------------------------------------------------------------- helpers


def memory_bytes(compiled) -> int | None:
    try:
        m = compiled.memory_analysis()
        return int(m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes)
    except Exception:  # not implemented on every backend / version
        return None


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def count_params(module: nnx.Module | None) -> int:
    if module is None:
        return 0
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def cast(tree, dtype):
    """Floating leaves of ``tree`` to ``dtype`` (integers and booleans untouched)."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def init_jitted(factory):
    """A module built inside ``jax.jit`` (one compiled init instead of op-by-op random init of large models)."""
    graphdef, _ = nnx.split(nnx.eval_shape(factory))
    state = jax.jit(lambda: nnx.split(factory())[1])()
    return nnx.merge(graphdef, state)


def timed(fn, *, repeats, max_tries, threshold, block=jax.block_until_ready):
    return measure(fn, repeats=repeats, max_tries=max_tries, block=block, threshold=threshold)


def converge_spectral(model: nnx.Module, iters: int = 100) -> None:
    """Power-iterate every spectral-norm conv's stored u, v (as trained checkpoints store them): with the
    initial constant vectors σ can be tiny or negative and saturate every output."""
    for _, m in nnx.iter_graph(model):
        if isinstance(m, SpectralConv):
            k = m.conv.kernel[...]
            w = k.transpose(3, 2, 0, 1).reshape(k.shape[-1], -1)
            u, v = m.u[...], m.v[...]
            for _ in range(iters):
                v = w.T @ u
                v = v / jnp.linalg.norm(v)
                u = w @ v
                u = u / jnp.linalg.norm(u)
            m.u.value, m.v.value = u, v


# ----------------------------------------------------------------------------------------------- torch side


def _tool(name: str):
    """A fixture script of ``tools/`` (found next to ``src/``, also from ``run_all.py``'s copy of benchmarks/)."""
    tools = str((ROOT / "src").resolve().parent / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    return importlib.import_module(name)


def import_upstream(path: pathlib.Path):
    """``tools/make_zoo_fixtures.py``'s upstream import (torch, pyyaml); ``path`` is the reference folder or its
    ``liveportrait/``."""
    path = path.resolve()
    if path.name == "liveportrait" and not (path / "liveportrait").is_dir():
        path = path.parent
    mzf = _tool("make_zoo_fixtures")
    return mzf, mzf.import_upstream(path)


def torch_liveportrait(upstream: pathlib.Path, cfg: LivePortraitConfig, tiny: bool, threads: int | None = None):
    """Upstream networks with meaningful random weights, their wrapper, and the JAX model converted from them."""
    import torch  # noqa: PLC0415

    mzf, up = import_upstream(upstream)
    torch.set_grad_enabled(False)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(7)
    gen = torch.Generator().manual_seed(8)
    nets = mzf.build(up, cfg, tiny=tiny)
    for n in nets.values():
        n.eval()
        mzf.make_meaningful(n, gen)
    sds = {n: {k: v.numpy() for k, v in nets[n].state_dict().items()} for n in mzf.NETS}
    sds["stitching_retargeting_module"] = {
        theirs: {k: v.numpy() for k, v in nets[ours].state_dict().items()}
        for ours, theirs in (("stitching", "retarget_shoulder"), ("lip", "retarget_mouth"), ("eye", "retarget_eye"))
    }
    return mzf.wrapper_for(up, nets), convert_state_dicts(sds, cfg)


def bench_torch(wr, image_Bx3xHxW: np.ndarray, batch: int, repeats, max_tries, threshold) -> dict[str, Any]:
    """Upstream encode (F, M, source keypoints) and W+G render, timed on the CPU."""
    import torch  # noqa: PLC0415

    src = torch.from_numpy(np.array(image_Bx3xHxW, np.float32))  # a writable, contiguous copy

    def encode():
        vol = wr.extract_feature_3d(src)
        info = wr.get_kp_info(src)
        return vol, info, wr.transform_keypoint(info)

    vol, info, x_s = encode()
    drive = {k: info[k] for k in ("kp", "exp", "t", "scale")}
    drive.update({k: info[k] + v for k, v in DRIVE.items()})
    x_d = wr.transform_keypoint(drive)
    vol_b, xs_b, xd_b = (t.expand(batch, *t.shape[1:]).contiguous() for t in (vol, x_s, x_d))
    enc = timed(encode, repeats=repeats, max_tries=max_tries, threshold=threshold, block=None)
    ren = timed(lambda: wr.warp_decode(vol_b, xs_b, xd_b)["out"], repeats=repeats, max_tries=max_tries,
                threshold=threshold, block=None)  # fmt: skip
    frame = wr.warp_decode(vol, x_s, x_d)["out"]
    return dict(
        encode=enc, render=ren, frame=np.moveaxis(frame.numpy(), 1, -1), threads=torch.get_num_threads(),
        version=torch.__version__,
    )  # fmt: skip


def torch_joyvasa(upstream: pathlib.Path, tiny: bool, steps: int, threads: int | None = None):
    """Upstream's ``DitTalkingHead`` (``joyvasa/src/modules``) at the benchmark's size with random weights, built as
    ``tools/make_joyvasa_fixtures.py`` builds it (its HuBERT from a config, the alignment mask on the CPU)."""
    import torch  # noqa: PLC0415
    import transformers  # noqa: PLC0415

    root = upstream.resolve()
    root = root.parent if root.name in ("joyvasa", "liveportrait") else root
    if not (root / "joyvasa" / "src" / "modules" / "dit_talking_head.py").is_file():
        sys.exit(f"error: {root}/joyvasa/src/modules/dit_talking_head.py not found; pass the upstream reference folder")
    mjf = _tool("make_joyvasa_fixtures")

    # both upstream projects are packages named ``src``: drop LivePortrait's (if timed first) before importing these
    for name in [n for n in sys.modules if n == "src" or n.startswith("src.")]:
        del sys.modules[name]
    sys.path.insert(0, str(root / "joyvasa"))
    from src.modules import common, hubert  # noqa: PLC0415
    from src.modules import dit_talking_head as dth  # noqa: PLC0415

    torch.set_grad_enabled(False)
    if threads:
        torch.set_num_threads(threads)
    dth.enc_dec_mask = lambda *a, **kw: common.enc_dec_mask(*a, **{**kw, "device": "cpu"})
    hub = dict(mjf.TINY_HUBERT) if tiny else {}
    hub_cfg = transformers.HubertConfig(**hub, attn_implementation="eager")
    hubert.HubertModel.from_pretrained = classmethod(lambda cls, *_, **__: cls(hub_cfg))
    torch.manual_seed(0)
    model = dth.DitTalkingHead(device="cpu", **{**(mjf.TINY if tiny else mjf.FULL), "n_diff_steps": steps})
    if tiny:  # as the fixtures (and JoyVASAConfig.tiny()): a 32 → 32 feature map, 2 of the 8 layers
        model.audio_feature_map = torch.nn.Linear(mjf.TINY_HUBERT["hidden_size"], mjf.TINY["feature_dim"])
        model.denoising_net.transformer.layers = model.denoising_net.transformer.layers[: mjf.TINY_LAYERS]
    return model.eval(), torch


def bench_torch_joyvasa(model, torch, batch, cfg_scale, repeats, max_tries, threshold) -> dict[str, Any]:
    """One middle window of upstream's ``sample`` (ancestral steps, CFG on audio) and its audio front end, on the
    CPU."""
    g = torch.Generator().manual_seed(1)
    L, K = model.n_motions, model.n_prev_motions
    M, D = model.motion_feat_dim, model.feature_dim
    audio = torch.randn(batch, L, D, generator=g)
    prev_m, prev_a = torch.randn(batch, K, M, generator=g), torch.randn(batch, K, D, generator=g)
    wave = 0.1 * torch.randn(batch, L * 640, generator=g)
    guide = dict(cfg_cond=[]) if cfg_scale is None else dict(cfg_cond=["audio"], cfg_scale=cfg_scale)
    win = timed(lambda: model.sample(audio, prev_m, prev_a, **guide), repeats=repeats, max_tries=max_tries,
                threshold=threshold, block=None)  # fmt: skip
    aud = timed(lambda: model.extract_audio_feature(wave), repeats=repeats, max_tries=max_tries,
                threshold=threshold, block=None)  # fmt: skip
    return dict(window=win, audio=aud, audio_s=batch * L * 640 / 16000, threads=torch.get_num_threads(),
                version=torch.__version__)  # fmt: skip


# ----------------------------------------------------------------------------------------------- LivePortrait


def bench_liveportrait(
    size, dtype, batch, repeats, max_tries, threshold, upstream, torch_threads=None
) -> dict[str, Any]:
    tiny = size == "tiny"
    cfg = LivePortraitConfig.tiny() if tiny else LivePortraitConfig.full()
    dt = jnp.dtype(dtype)
    wr, note = None, "random init (JAX), spectral-norm vectors power-iterated"
    if upstream is not None:
        wr, model = torch_liveportrait(upstream, cfg, tiny, torch_threads)
        note = "random weights from the upstream torch modules (make_zoo_fixtures.make_meaningful), converted"
    else:
        model = LivePortrait(cfg, rngs=nnx.Rngs(0))  # op by op: a jitted init compiles for minutes
        converge_spectral(model)
    per_net = {k: count_params(getattr(model, k, None)) / 1e6 for k in LP_NETS}
    graphdef, params = nnx.split(model)
    params = cast(params, dt)

    def encode(p, img):
        m = nnx.merge(graphdef, p)
        vol, info = m.extract_appearance(img), m.extract_motion(img)
        kp = kpt.transform_keypoint(info["kp"], info["pitch"], info["yaw"], info["roll"], info["exp"],
                                    info["scale"], info["t"])  # fmt: skip
        return vol, info, kp

    def render(p, vol, kp_s, kp_d):
        return nnx.merge(graphdef, p).render(vol, kp_s, kp_d)

    s = cfg.image_size
    image = np.asarray(jax.random.uniform(jax.random.key(0), (1, s, s, 3)), np.float32)
    img = jnp.asarray(image, dt)
    t0 = time.perf_counter()
    enc_l = jax.jit(encode).lower(params, img)
    enc_c = enc_l.compile()
    vol, info, kp_s = enc_c(params, img)
    d = {k: info[k] + jnp.asarray(v, info[k].dtype) for k, v in DRIVE.items()}
    kp_d = kpt.transform_keypoint(info["kp"], d["pitch"], d["yaw"], d["roll"], info["exp"], info["scale"], info["t"])
    vol_b, kp_s_b, kp_d_b = (jnp.broadcast_to(x, (batch, *x.shape[1:])).astype(dt) for x in (vol, kp_s, kp_d))
    ren_l = jax.jit(render).lower(params, vol_b, kp_s_b, kp_d_b)
    ren_c = ren_l.compile()
    compile_s = time.perf_counter() - t0
    frame = ren_c(params, vol_b, kp_s_b, kp_d_b)
    enc_t = timed(lambda: enc_c(params, img), repeats=repeats, max_tries=max_tries, threshold=threshold)
    ren_t = timed(lambda: ren_c(params, vol_b, kp_s_b, kp_d_b), repeats=repeats, max_tries=max_tries,
                  threshold=threshold)  # fmt: skip
    enc_gflops, ren_gflops = flops_of(enc_l) / 1e9, flops_of(ren_l) / 1e9 / batch
    ren_ms = 1e3 * ren_t.median_s / batch
    row = dict(
        model="liveportrait", config=size, dtype=dtype, batch=batch, image_size=s, output_size=cfg.output_size,
        num_kp=cfg.motion.num_kp, params_M=sum(per_net.values()), params_per_net_M=per_net, weights=note,
        encode_gflops=enc_gflops, render_gflops_per_frame=ren_gflops,
        encode_ms=1e3 * enc_t.median_s, encode_ms_min=1e3 * enc_t.min_s,
        render_ms_per_frame=ren_ms, render_ms_per_frame_min=1e3 * ren_t.min_s / batch, render_fps=1e3 / ren_ms,
        render_tflops_achieved=ren_gflops / ren_ms,
        output_dtype=str(frame.dtype), output_finite=bool(jnp.isfinite(frame).all()), compile_s=compile_s,
        compiled_memory_bytes=memory_bytes(ren_c), peak_memory_gib=peak_memory_gib(),
    )  # fmt: skip
    parts = {"encode": enc_t.contention(), "render": ren_t.contention()}
    if wr is not None:
        tr = bench_torch(wr, np.moveaxis(image, -1, 1), batch, repeats, max_tries, threshold)
        t_ren_ms = 1e3 * tr["render"].median_s / batch
        t_enc_ms = 1e3 * tr["encode"].median_s
        on_cpu = jax.devices()[0].platform == "cpu"
        ours = np.asarray(frame[:1], np.float64)
        err = float(np.abs(ours - tr["frame"]).max() / max(np.abs(tr["frame"]).max(), 1e-12))
        row.update(
            torch_version=tr["version"], torch_threads=tr["threads"], torch_device="cpu",
            torch_encode_ms=t_enc_ms, torch_render_ms_per_frame=t_ren_ms,
            jax_over_torch_render=ren_ms / t_ren_ms if on_cpu else None,
            jax_over_torch_encode=row["encode_ms"] / t_enc_ms if on_cpu else None,
            frame_rel_err_vs_torch=err,
        )  # fmt: skip
        parts.update(torch_encode=tr["encode"].contention(), torch_render=tr["render"].contention())
    else:
        row["torch_note"] = "no --upstream: torch column left out (the upstream modules are not in the repository)"
    row.update(peak_rss_gib=peak_rss_gib(), contention=combine(parts))
    return row


# ----------------------------------------------------------------------------------------------- JoyVASA


def bench_joyvasa(
    size, dtype, batch, steps, cfg_scale, repeats, max_tries, threshold, upstream=None, torch_threads=None
) -> dict[str, Any]:
    tiny = size == "tiny"
    cfg = JoyVASAConfig.tiny() if tiny else JoyVASAConfig.released()
    steps = steps or cfg.num_diffusion_steps
    cfg = dataclasses.replace(cfg, num_diffusion_steps=steps)
    enc_cfg = Wav2Vec2Config.tiny() if tiny else Wav2Vec2Config.base()
    enc_cfg = dataclasses.replace(enc_cfg, model_type="hubert")
    dt = jnp.dtype(dtype)
    dit = init_jitted(lambda: JoyVASADiT(cfg, rngs=nnx.Rngs(0)))
    encoder = init_jitted(lambda: Wav2Vec2(enc_cfg, rngs=nnx.Rngs(1)))
    n_dit, n_enc = count_params(dit), count_params(encoder)
    graphdef, params = nnx.split(dit)
    enc_graph, enc_params = nnx.split(encoder)
    params, enc_params = cast(params, dt), cast(enc_params, dt)
    schedule = make_schedule(steps, cfg.schedule)
    sampler = jax.jit(make_window_sampler(graphdef, schedule, cfg_scale=cfg_scale, target=cfg.target))
    enc_audio = encode_fn(enc_graph, cfg.window, cfg.fps)
    encode = jax.jit(lambda ep, p, w: nnx.merge(graphdef, p).audio_features(enc_audio(ep, w)))
    reps = 1 if cfg_scale is None else 2

    k = jax.random.split(jax.random.key(0), 5)
    B, L, K, M, D = batch, cfg.window, cfg.context, cfg.motion_dim, cfg.width
    wave = (0.1 * jax.random.normal(k[0], (B, cfg.window_samples))).astype(dt)
    prev_m = jax.random.normal(k[1], (B, K, M)).astype(dt)  # a middle window: context from the previous one
    prev_a = jax.random.normal(k[2], (B, K, D)).astype(dt)
    x_T = jax.random.normal(k[3], (B, L, M)).astype(dt)
    z = jax.random.normal(k[4], (steps - 1, B, L, M)).astype(dt)

    t0 = time.perf_counter()
    enc_l = encode.lower(enc_params, params, wave)
    enc_c = enc_l.compile()
    audio = enc_c(enc_params, params, wave)
    win_l = sampler.lower(params, audio, prev_m, prev_a, x_T, z)
    win_c = win_l.compile()
    compile_s = time.perf_counter() - t0
    # One guided denoiser call (both CFG branches in one batch): XLA counts the sampler's scan body once.
    step_l = jax.jit(denoise_fn(graphdef)).lower(
        params, jnp.zeros((reps * B, L, M), dt), jnp.zeros((reps * B, L, D), dt), jnp.zeros((reps * B, K, M), dt),
        jnp.zeros((reps * B, K, D), dt), jnp.zeros((reps * B,), jnp.int32),
    )  # fmt: skip
    gflops_step = flops_of(step_l) / 1e9
    motion = win_c(params, audio, prev_m, prev_a, x_T, z)
    win_t = timed(lambda: win_c(params, audio, prev_m, prev_a, x_T, z), repeats=repeats, max_tries=max_tries,
                  threshold=threshold)  # fmt: skip
    aud_t = timed(lambda: enc_c(enc_params, params, wave), repeats=repeats, max_tries=max_tries, threshold=threshold)
    audio_s = B * cfg.window_samples / cfg.sample_rate
    win_s, aud_s = win_t.median_s, aud_t.median_s
    frames = B * L
    extra: dict[str, Any] = {"torch_note": "no --upstream: torch column left out"}
    if upstream is not None:
        tmodel, torch = torch_joyvasa(upstream, tiny, steps, torch_threads)
        tr = bench_torch_joyvasa(tmodel, torch, B, cfg_scale, repeats, max_tries, threshold)
        on_cpu = jax.devices()[0].platform == "cpu"
        extra = dict(
            torch_ms_per_window=1e3 * tr["window"].median_s,
            torch_audio_ms_per_audio_s=1e3 * tr["audio"].median_s / tr["audio_s"],
            jax_over_torch_window=win_s / tr["window"].median_s if on_cpu else None,
            jax_over_torch_audio=aud_s / tr["audio"].median_s if on_cpu else None,
            torch_version=tr["version"], torch_threads=tr["threads"], torch_device="cpu",
            torch_note="upstream DitTalkingHead.sample (random weights, same sizes), middle window, timed on the CPU",
            torch_contention=combine({"window": tr["window"].contention(), "audio": tr["audio"].contention()}),
        )  # fmt: skip
    return dict(
        **extra,
        model="joyvasa", config=size, dtype=dtype, batch=batch, steps=steps, cfg_scale=cfg_scale, cfg_branches=reps,
        window=L, context=K, motion_dim=M, layers=cfg.num_layers, width=D, heads=cfg.num_heads,
        audio_encoder=dict(hidden_size=enc_cfg.hidden_size, layers=enc_cfg.num_hidden_layers,
                           conv_dim=list(enc_cfg.conv_dim)),
        params_M=n_dit / 1e6, audio_params_M=n_enc / 1e6,
        gflops_per_step=gflops_step, gflops_per_window=steps * gflops_step,
        gflops_per_frame=steps * gflops_step / frames, audio_gflops_per_audio_s=flops_of(enc_l) / 1e9 / audio_s,
        ms_per_window=1e3 * win_s, ms_per_window_min=1e3 * win_t.min_s, motion_fps=frames / win_s,
        realtime_factor=frames / win_s / FPS, realtime_factor_with_audio=frames / (win_s + aud_s) / FPS,
        achieved_tflops=steps * gflops_step / win_s / 1e3,
        audio_seconds_per_window=audio_s / B, audio_ms_per_audio_s=1e3 * aud_s / audio_s, audio_s_per_s=audio_s / aud_s,
        output_dtype=str(motion.dtype), output_finite=bool(jnp.isfinite(motion).all()), compile_s=compile_s,
        compiled_memory_bytes=memory_bytes(win_c), audio_compiled_memory_bytes=memory_bytes(enc_c),
        peak_memory_gib=peak_memory_gib(), peak_rss_gib=peak_rss_gib(),
        contention=combine({"window": win_t.contention(), "audio": aud_t.contention()}),
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------- main


def _print_row(r: dict[str, Any]) -> None:
    c = r["contention"]
    where = f"[{marker(c)}, {c['discarded']} discarded]"
    if r["model"] == "liveportrait":
        torch_txt = (
            f"  torch CPU: encode {r['torch_encode_ms']:.1f} ms, render {r['torch_render_ms_per_frame']:.1f} "
            f"ms/frame (JAX/torch {r['jax_over_torch_render'] or float('nan'):.2f}, frame rel. err "
            f"{r['frame_rel_err_vs_torch']:.1e})"
            if "torch_render_ms_per_frame" in r
            else "  (no torch column: pass --upstream)"
        )
        print(
            f"LivePortrait {r['config']:5} {r['dtype']:8} B={r['batch']} {r['params_M']:7.2f} M params  "
            f"encode {r['encode_gflops']:.3g} GFLOP {r['encode_ms']:.1f} ms  render {r['render_gflops_per_frame']:.3g} "
            f"GFLOP/frame {r['render_ms_per_frame']:.1f} ms/frame ({r['render_fps']:.1f} fps)  "
            f"compile {r['compile_s']:.1f} s {where}\n{torch_txt}",
            flush=True,
        )
    else:
        print(
            f"JoyVASA      {r['config']:5} {r['dtype']:8} B={r['batch']} {r['params_M']:7.2f} M params  "
            f"{r['steps']} steps × {r['cfg_branches']} CFG branches: {r['gflops_per_window']:.3g} GFLOP/window "
            f"{r['ms_per_window']:.1f} ms/window ({r['motion_fps']:.0f} motion frames/s, "
            f"{r['realtime_factor']:.2f}× real time, {r['realtime_factor_with_audio']:.2f}× with audio)  "
            f"audio encoder {r['audio_params_M']:.2f} M: {r['audio_ms_per_audio_s']:.1f} ms per s of audio  "
            f"compile {r['compile_s']:.1f} s {where}",
            flush=True,
        )
        if "torch_ms_per_window" in r:
            ratio = r["jax_over_torch_window"]
            print(
                f"  torch CPU: {r['torch_ms_per_window']:.1f} ms/window (JAX/torch "
                f"{ratio if ratio is not None else float('nan'):.2f}), audio {r['torch_audio_ms_per_audio_s']:.1f} "
                "ms per s of audio",
                flush=True,
            )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--size",
        default="tiny",
        choices=["tiny", "paper"],
        help="tiny: the test fixtures' reduced configs; paper: the released sizes (default: tiny)",
    )
    ap.add_argument("--models", nargs="+", default=["liveportrait", "joyvasa"], choices=["liveportrait", "joyvasa"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="weights and inputs cast to this dtype (bfloat16: for GPUs)")  # fmt: skip
    ap.add_argument("--batch", type=int, default=1, help="LivePortrait frames per render, JoyVASA clips per window")
    ap.add_argument("--steps", type=int, default=None,
                    help="JoyVASA diffusion steps per window (default: the config's, 50 paper / 10 tiny)")  # fmt: skip
    ap.add_argument("--cfg-scale", type=float, default=2.8, help="JoyVASA CFG scale (upstream's 2.8); 0: no guidance")
    ap.add_argument("--upstream", type=pathlib.Path, default=None,
                    help="upstream reference folder (/work/shared/reference/upstream or its liveportrait/): "
                         "adds torch CPU timings of the same LivePortrait weights (needs torch, pyyaml)")  # fmt: skip
    ap.add_argument("--torch-threads", type=int, default=None,
                    help="torch's intra-op threads (default: torch's own, one per core)")  # fmt: skip
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per function (median of the clean ones)")
    ap.add_argument("--max-tries", type=int, default=None, help="timed calls at most per function (2 × repeats)")
    ap.add_argument("--contended-share", type=float, default=CONTENDED_SHARE,
                    help="a call is contended (retried, discarded) when other processes used more than this share "
                         "of the CPUs meanwhile (benchmarks/timing.py)")  # fmt: skip
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for the JSON result")
    args = ap.parse_args(argv)
    if args.batch < 1:
        ap.error("--batch must be ≥ 1")
    if args.steps is not None and args.steps < 2:
        ap.error("--steps must be ≥ 2")
    cfg_scale = args.cfg_scale or None

    dev = jax.devices()[0]
    info = dict(
        benchmark="zoo", device=device_name(), device_kind=dev.device_kind, platform=dev.platform,
        num_devices=jax.device_count(), cpu_count=os.cpu_count(), jax=jax.__version__,
        python=platform.python_version(), date=datetime.date.today().isoformat(), command=" ".join(sys.argv),
        load_at_start=load_snapshot(),
    )  # fmt: skip
    print(f"device: {dev.device_kind} ({dev.platform}), jax {jax.__version__}, {os.cpu_count()} CPUs, {args.dtype}")
    print(f"load at start: {info['load_at_start']}")
    rows = []
    common = dict(repeats=args.repeats, max_tries=args.max_tries, threshold=args.contended_share)
    for name in args.models:
        if name == "liveportrait":
            r = bench_liveportrait(
                args.size, args.dtype, args.batch, upstream=args.upstream, torch_threads=args.torch_threads, **common
            )
        else:
            r = bench_joyvasa(
                args.size,
                args.dtype,
                args.batch,
                args.steps,
                cfg_scale,
                upstream=args.upstream,
                torch_threads=args.torch_threads,
                **common,
            )
        rows.append(r)
        _print_row(r)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"zoo-{info['device']}-{info['date']}.json"
    key = lambda r: (r["model"], r["config"], r["dtype"], r["batch"], r.get("steps"), r.get("cfg_scale"))  # noqa: E731
    if path.exists():  # keep earlier rows of the same day unless re-measured now (and not clean → contended)
        rows = merge_rows(json.loads(path.read_text())["rows"], rows, key)
    path.write_text(json.dumps(dict(info, rows=rows), indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
