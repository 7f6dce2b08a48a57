"""Stage-2 trainer: the motion diffusion transformer on motion shards (VASA-1 §3.2, §4).

    vasajax encode-dataset --motion-source labels --data data/synthtalk/train --out data/motion/train
    vasajax encode-dataset --motion-source labels --data data/synthtalk/heldout --out data/motion/heldout
    vasajax train-motion --config tiny --data data/motion/train --workdir runs/motion --steps 2000 \\
        --eval-data data/motion/heldout
    vasajax train-motion --workdir runs/motion --data data/motion/train --evaluate data/motion/heldout

A step (``train_step``: pure, jitted once with shardings and a donated state): the step key is
``common.step_key(seed, step)``; the x0 loss of eq. 1 with the condition dropouts of §3.2 is
``vasajax.motion.diffusion.loss_fn`` (each condition dropped with p = 0.1, X_pre/A_pre together with p = 0.5,
trailing audio frames dropped), averaged over ``optim.accum_steps`` micro-batches; AdamW on a warm-up +
cosine schedule with clipping; then the exponential moving average of the weights, which is what sampling
uses (VASA-1 does not say; DiT/ADM and every open peer sample from an EMA).

Batches come from ``vasajax.data.loader.motion_windows`` (W + K frames; the first K are the previous-window
context X_pre/A_pre). ``model_batch`` turns them into the DiT's inputs: the audio rows of each video frame
concatenated (two 50 Hz log-mel slots → one vector), the window's *main* gaze and head distance (means over
its W frames), the clip's emotion offset. The DiT's ``motion_dim``/``audio_dim`` are taken from the data;
its normalisation statistics (``dit.NormStats``) are measured on the training set when a run starts and then
travel in the checkpoint.

Everything else is ``vasajax.train.common``: the (data, fsdp) mesh, global batches from per-process data,
the orbax checkpoints with the data-iterator state (exact resume), SIGTERM/SIGINT → save and exit, config
check, progress bar + TensorBoard + ``metrics.jsonl``. Every ``run.sample_every`` steps the run folder gets
``plots/motion_NNNNNNN.png``: pose angles and dynamics generated with the EMA weights from a held-out (or
training) clip's audio, against the truth. ``evaluate`` gives the demonstrated-learning numbers: correlation
of generated vs true mouth opening on held-out clips, and ΔP (mean absolute pose-angle change between
frames, degrees) of generated and true motion.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from vasajax import config_io
from vasajax.data import clips, loader
from vasajax.errors import UserError
from vasajax.motion.dit import compute_norm_stats
from vasajax.motion.training import VasaMotionTraining
from vasajax.stages import MOTION_TRAINING
from vasajax.train import common

log = logging.getLogger("vasajax.train.motion")

BATCH_KEYS = VasaMotionTraining.batch_keys
"""Arrays of the VASA DiT's training batch (``model_batch``; other entries name their own ``batch_keys``)."""
EXIT_STOPPED = 75
"""Exit status of ``train-motion`` when the run stopped early (signal or ``--stop-after``); run it again."""


# ----------------------------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True, kw_only=True)
class MotionTrainConfig:
    """Everything that defines a stage-2 run; saved as ``config.json`` and checked when a run resumes."""

    model: Any
    """The generator's config (the entry's ``model_config``; ``motion_dim``/``audio_dim`` are set from the data by
    ``with_data_dims``)."""
    diffusion: Any
    """Its noise schedule, loss settings and the sampler used for plots and evaluation (``diffusion_config``)."""
    optim: common.OptimConfig
    """AdamW, warm-up + cosine, clipping, accumulation, EMA decay."""
    run: common.RunConfig
    """Steps, global batch, seed, mesh, precision, logging and checkpoint cadence."""
    stride: int | None = None
    """Window starts every ``stride`` frames of a record (None: W), jittered (``loader.WindowsConfig``)."""
    norm_stats_records: int = 2000
    """Records read (evenly spaced) to measure the motion/audio/condition normalisation statistics."""
    generator: str = "vasa"
    """The trainable motion generator (``vasajax.stages.MOTION_TRAINING``): ``model``/``diffusion`` are its configs."""

    @property
    def entry(self):
        """The generator's ``MotionTraining`` entry."""
        return MOTION_TRAINING.get(self.generator)

    @property
    def model_cfg(self) -> Any:
        """The model config with the run's compute dtype."""
        return self.entry.with_dtype(self.model, common.compute_dtype(self.run.precision))

    @property
    def windows(self) -> loader.WindowsConfig:
        """The loader's window config: W + K frames of the model."""
        W, K = self.entry.windows(self.model)
        return loader.WindowsConfig(window=W, context=K, stride=self.stride)

    def with_data_dims(self, motion_dim: int, audio_dim: int) -> MotionTrainConfig:
        """The same run with the model sized for the data."""
        return dataclasses.replace(self, model=self.entry.with_data_dims(self.model, motion_dim, audio_dim))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dict (what ``config.json`` holds)."""
        return config_io.to_dict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MotionTrainConfig:
        """Inverse of ``to_dict``."""
        return config_io.from_dict(cls, d)

    @staticmethod
    def config_types(d: Mapping[str, Any]) -> dict[str, type]:
        """``model``/``diffusion`` are the configs of the entry ``generator`` names (absent: VASA-1's)."""
        entry = MOTION_TRAINING.get(str(d.get("generator", "vasa")))
        return {"model": entry.model_config, "diffusion": entry.diffusion_config}

    # Presets: the model and diffusion configs are the entry's (``presets``; VASA-1's: the velocity term with
    # weight 1 in tiny and small, the plain x0 loss in paper); the optimiser and run settings are the loop's.

    @classmethod
    def tiny(cls, generator: str = "vasa", **run_overrides) -> MotionTrainConfig:
        """Tests and CPU minutes: the entry's tiny model (VASA: 2 layers, width 64, W = 16, K = 4), batch 16."""
        run = dict(steps=1000, batch_size=16, log_every=10, ckpt_every=250, sample_every=250, keep_checkpoints=2)
        model, diff = MOTION_TRAINING.get(generator).presets("tiny")
        return cls(
            model=model,
            diffusion=diff,
            optim=common.OptimConfig(lr=1e-3, lr_end=1e-5, warmup_steps=50, b1=0.9, ema_decay=0.99),
            run=common.RunConfig(**{**run, **run_overrides}),
            stride=4,
            generator=generator,
        )

    @classmethod
    def small(cls, generator: str = "vasa", **run_overrides) -> MotionTrainConfig:
        """The demo's size (VASA: 6 layers, width 256, W = 50, K = 10), batch 32."""
        run = dict(steps=50_000, batch_size=32, log_every=50, ckpt_every=2000, sample_every=2000)
        model, diff = MOTION_TRAINING.get(generator).presets("small")
        return cls(
            model=model,
            diffusion=diff,
            optim=common.OptimConfig(lr=2e-4, lr_end=1e-6, warmup_steps=1000, b1=0.9, ema_decay=0.999),
            run=common.RunConfig(**{**run, **run_overrides}),
            stride=20,
            generator=generator,
        )

    @classmethod
    def paper(cls, generator: str = "vasa", **run_overrides) -> MotionTrainConfig:
        """The paper's size (VASA-1 §4: 8 layers, width 512, 8 heads, 50 sampling steps); batch 128, bf16."""
        run = dict(steps=300_000, batch_size=128, precision="bfloat16", log_every=100, ckpt_every=5000)
        model, diff = MOTION_TRAINING.get(generator).presets("paper")
        return cls(
            model=model,
            diffusion=diff,
            optim=common.OptimConfig(lr=1e-4, lr_end=1e-6, warmup_steps=2000, b1=0.9, ema_decay=0.9999),
            run=common.RunConfig(**{**run, "sample_every": 5000, **run_overrides}),
            stride=20,
            generator=generator,
        )


PRESETS: dict[str, Callable[..., MotionTrainConfig]] = {
    "tiny": MotionTrainConfig.tiny,
    "small": MotionTrainConfig.small,
    "paper": MotionTrainConfig.paper,
}


# ----------------------------------------------------------------------------------------------- data


def model_batch(b: Mapping[str, np.ndarray], cfg: Any) -> dict[str, np.ndarray]:
    """A ``loader.motion_windows`` batch → the VASA DiT's training batch (``VasaMotionTraining.batch``; a run uses
    its entry's ``batch``)."""
    return VasaMotionTraining.batch(b, cfg)


def data_dims(path: str | Path) -> tuple[int, int, list[str] | None]:
    """(motion dim, audio dim per video frame, motion dimension names) of a motion dataset."""
    src = loader.RecordSource(path)
    if src.manifest["kind"] != "motion":
        raise UserError(f"{path} holds {src.manifest['kind']} records; run `vasajax encode-dataset` first")
    if not len(src):
        raise UserError(f"{path} has no motion records")
    enc = src[0]
    M = int(enc.header["arrays"]["motion_TxM"]["shape"][1])
    A = int(enc.header["arrays"]["audio_feat_UxF"]["shape"][1]) * int(enc.meta["feats_per_frame"])
    return M, A, src.manifest.get("motion_names")


def norm_stats(path: str | Path, max_records: int = 2000) -> dict[str, np.ndarray]:
    """Per-dimension motion, per-frame audio and per-frame gaze/distance statistics over (up to ``max_records``)
    records."""
    src = loader.RecordSource(path)
    idx = np.unique(np.linspace(0, len(src) - 1, min(len(src), max_records)).round().astype(int))
    motion, audio, gaze, distance = [], [], [], []
    for i in idx:
        enc = src[int(i)]
        m = enc.array("motion_TxM")
        motion.append(m)
        audio.append(enc.array("audio_feat_UxF").reshape(len(m), -1))
        gaze.append(enc.array("gaze_Tx2"))
        distance.append(enc.array("distance_T"))
    cat = np.concatenate
    stats = compute_norm_stats(cat(motion), cat(audio), cat(gaze), cat(distance))  # every entry gets the same
    return {k: np.asarray(v) for k, v in stats.items()}


# ----------------------------------------------------------------------------------------------- state, step


def optimizer(cfg: MotionTrainConfig) -> optax.GradientTransformation:
    """The run's optimiser (``common.make_optimizer`` over ``run.steps``)."""
    return common.make_optimizer(cfg.optim, cfg.run.steps)


def init_state(cfg: MotionTrainConfig, stats: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A fresh train state: ``params`` (nnx.Param), ``rest`` (normalisation statistics), ``ema``, ``opt``,
    ``step``. ``stats`` from ``norm_stats`` (None: identity). Jit it with out_shardings (``init_sharded``)."""
    entry = cfg.entry
    model = entry.build(cfg.model_cfg, cfg.run.seed)
    if stats is not None:
        entry.set_stats(model, stats)
    _, params, rest = entry.split(model)
    state = {"step": jnp.zeros((), jnp.int32), "params": params, "rest": rest, "opt": optimizer(cfg).init(params)}
    if cfg.optim.ema_decay is not None:
        state["ema"] = jax.tree.map(jnp.copy, params)
    return common.strong_types(state)


def graphdef_of(cfg: MotionTrainConfig) -> nnx.GraphDef:
    """The model's graph (structure only; no parameter memory)."""
    entry = cfg.entry
    return entry.split(nnx.eval_shape(lambda: entry.build(cfg.model_cfg, 0)))[0]


def train_step(
    state: dict[str, Any],
    batch: Mapping[str, jax.Array],
    *,
    graphdef: nnx.GraphDef,
    cfg: MotionTrainConfig,
    tx: optax.GradientTransformation,
) -> tuple[dict[str, Any], dict[str, jax.Array]]:
    """One optimiser step of the entry's loss (VASA: eq. 1 with condition dropout); pure, ``jit_train_step`` binds
    and jits it."""
    key = common.step_key(cfg.run.seed, state["step"])
    loss = functools.partial(cfg.entry.loss, graphdef=graphdef, rest=state["rest"], diffusion_cfg=cfg.diffusion)
    grad_fn = jax.value_and_grad(loss, has_aux=True)
    (_, metrics), grads = common.accumulate(grad_fn, state["params"], dict(batch), key, cfg.optim.accum_steps)
    updates, opt = tx.update(grads, state["opt"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    new = {**state, "step": state["step"] + 1, "params": params, "opt": opt}
    if "ema" in state:
        new["ema"] = common.ema_update(state["ema"], params, cfg.optim.ema_decay, state["step"])
    return new, {**metrics, "grad_norm": optax.global_norm(grads)}


def jit_train_step(cfg: MotionTrainConfig, graphdef: nnx.GraphDef, mesh=None, state_shardings=None):
    """``train_step`` jitted once: static parts bound, state donated, shardings when a mesh is given."""
    fn = functools.partial(train_step, graphdef=graphdef, cfg=cfg, tx=optimizer(cfg))
    if mesh is None:
        return jax.jit(fn, donate_argnums=0)
    bat = common.batch_sharding(mesh)
    return jax.jit(
        fn,
        in_shardings=(state_shardings, {k: bat for k in cfg.entry.batch_keys}),
        out_shardings=(state_shardings, common.replicated(mesh)),
        donate_argnums=0,
    )


@functools.lru_cache(maxsize=4)
def compiled(cfg: MotionTrainConfig, mesh) -> tuple[nnx.GraphDef, Any, Any, Callable, Callable]:
    """``(graphdef, abstract_state, shardings, init(stats), step(state, batch))`` for a run on ``mesh``.

    Cached per (config, mesh), so a notebook or test that trains twice in one process compiles once.
    """
    graphdef = graphdef_of(cfg)
    abstract = jax.eval_shape(functools.partial(init_state, cfg))
    shardings = common.fsdp_shardings(abstract, mesh, cfg.run.fsdp_min_size)
    init = jax.jit(functools.partial(init_state, cfg), out_shardings=shardings)
    return graphdef, abstract, shardings, init, jit_train_step(cfg, graphdef, mesh, shardings)


def sampling_model(cfg: MotionTrainConfig, state: Mapping[str, Any], use_ema: bool = True) -> nnx.Module:
    """The model with the EMA (or raw) weights and the run's normalisation statistics (host state)."""
    params = state["ema"] if use_ema and "ema" in state else state["params"]
    return nnx.merge(graphdef_of(cfg), params, state["rest"])


# ----------------------------------------------------------------------------------------------- evaluation


def mouth_index(names: list[str] | None) -> int | None:
    """Index of the mouth-opening dimension in named motion (SynthTalk ``mouth_open`` or ``jawOpen``)."""
    for n in ("mouth_open", "jawOpen"):
        if names and n in names:
            return names.index(n)
    return None


def delta_p_deg(motion_TxM: np.ndarray) -> float:
    """ΔP (VASA-1 §4.2): mean absolute change of the pose angles (yaw, pitch, roll) between frames, degrees."""
    return float(np.degrees(np.abs(np.diff(np.asarray(motion_TxM)[:, :3], axis=0))).mean())


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two series; NaN when either is constant (undefined, e.g. an untrained model's mean)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.std() < 1e-9 or b.std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _record_conditions(rec: clips.MotionRecord):
    return rec.gaze_Tx2.mean(0), float(rec.distance_T.mean()), rec.emotion_52


def generate_for_record(model, rec: clips.MotionRecord, dcfg: Any, seed: int = 0, entry=VasaMotionTraining):
    """Motion T×M sampled by ``entry`` (VASA: sliding windows, CFG) from one record's audio and conditions."""
    T = rec.num_frames
    audio_TxA = rec.audio_feat_UxF.reshape(T, -1)
    gaze, dist, emo = _record_conditions(rec)
    return entry.generate(model, audio_TxA, dcfg, gaze=gaze, distance=dist, emotion=emo, seed=seed)


def evaluate(
    model: nnx.Module,
    path: str | Path,
    dcfg: Any,
    *,
    max_records: int = 16,
    seed: int = 0,
    entry=VasaMotionTraining,
) -> dict[str, float]:
    """Generate from held-out records' audio; compare with their true motion.

    Returns ``mouth_corr`` (Pearson r of generated vs true mouth opening over all frames, when the motion
    has a named mouth dimension), ``mouth_corr_clip`` (mean per-clip r), ``delta_p_gen`` / ``delta_p_true``
    (degrees), ``pose_mae_deg``, and ``motion_mse`` (mean squared error in normalised units; sampled motion
    is not the mean, so it sits above ``motion_mse_mean``, the score of always predicting the data mean).
    Conditions come from each record: its mean gaze and head distance, its emotion offset. ``entry``: the model's
    ``MotionTraining`` entry (a run's ``cfg.entry``).
    """
    src = loader.RecordSource(path)
    names = src.manifest.get("motion_names")
    mi = mouth_index(names)
    gen, true, per_clip = [], [], []
    for i in range(min(len(src), max_records)):
        rec = src.record(i)
        g = generate_for_record(model, rec, dcfg, seed=seed + i, entry=entry)
        gen.append(g)
        true.append(rec.motion_TxM)
        if mi is not None:
            per_clip.append(pearson(g[:, mi], rec.motion_TxM[:, mi]))
    G, X = np.concatenate(gen), np.concatenate(true)
    mean, std = entry.motion_stats(model)
    out = {
        "records": float(len(gen)),
        "delta_p_gen": float(np.mean([delta_p_deg(g) for g in gen])),
        "delta_p_true": float(np.mean([delta_p_deg(x) for x in true])),
        "pose_mae_deg": float(np.degrees(np.abs(G[:, :3] - X[:, :3])).mean()),
        "motion_mse": float(np.square((G - X) / std).mean()),
        "motion_mse_mean": float(np.square((X - mean) / std).mean()),
    }
    if mi is not None:
        out["mouth_corr"] = pearson(G[:, mi], X[:, mi])
        out["mouth_corr_clip"] = float(np.nanmean(per_clip)) if not np.all(np.isnan(per_clip)) else float("nan")
    return out


def plot_motion(
    model: nnx.Module,
    rec: clips.MotionRecord,
    dcfg: Any,
    path: str | Path,
    *,
    names: list[str] | None = None,
    title: str = "",
    seed: int = 0,
    entry=VasaMotionTraining,
) -> Path:
    """PNG of generated vs true motion for one record: pose angles (degrees) and up to 3 dynamics dims."""
    from matplotlib.figure import Figure  # no pyplot: leaves a notebook's backend alone

    gen = generate_for_record(model, rec, dcfg, seed=seed, entry=entry)
    true = rec.motion_TxM
    names = names or [f"m{i}" for i in range(true.shape[1])]
    mi = mouth_index(names)
    dyn = ([mi] if mi is not None else []) + [i for i in range(6, true.shape[1]) if i != mi]
    dims = [0, 1, 2] + dyn[:3]
    t = np.arange(len(true)) / clips.FPS
    fig = Figure(figsize=(8, 1.6 * len(dims)))
    axes = fig.subplots(len(dims), 1, sharex=True)
    for ax, d in zip(axes, dims):
        scale = np.degrees(1.0) if d < 3 else 1.0
        ax.plot(t, true[:, d] * scale, "k-", lw=1.2, label="true")
        ax.plot(t, gen[:, d] * scale, "C1-", lw=1.2, label="generated")
        ax.set_ylabel(names[d] + (" (°)" if d < 3 else ""), fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, loc="upper right")
    dp = f"ΔP generated {delta_p_deg(gen):.2f}°, true {delta_p_deg(true):.2f}°"
    axes[0].set_title(f"{title or rec.source} ({dp})", fontsize=9)
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path


# ----------------------------------------------------------------------------------------------- the loop


def _host_scalars(metrics: Mapping[str, jax.Array]) -> dict[str, float]:
    return {k: float(np.asarray(v.addressable_data(0))) for k, v in metrics.items()}


def _write_plot(workdir: Path, step: int, cfg: MotionTrainConfig, state, rec, names) -> None:
    host = common.to_host({k: state[k] for k in ("params", "rest", "ema") if k in state})  # every process
    if common.is_main_process():
        model = sampling_model(cfg, host)
        plot_motion(model, rec, cfg.diffusion, workdir / "plots" / f"motion_{step:07d}.png", names=names,
                    title=f"step {step}: {rec.source}", entry=cfg.entry)  # fmt: skip


def train(
    cfg: MotionTrainConfig,
    data: str | Path,
    workdir: str | Path,
    *,
    eval_data: str | Path | None = None,
    stop_after: int | None = None,
    time_limit: float | None = None,
    on_step: Callable[[int], None] | None = None,
    read_threads: int = 2,
    workers: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Train (or resume) the run in ``workdir`` on the motion shards in ``data``.

    ``eval_data``: held-out motion shards for the plots and a final ``evaluate``. ``stop_after``: stop (with
    a checkpoint) after this many steps in this call; ``time_limit``: after this many seconds of the training loop
    (its clock starts after the first step: compilation does not count). ``on_step(step)`` is called after
    each step. Returns
    ``{"step", "stopped", "metrics", "eval"}`` (last logged scalars and evaluation, on process 0).
    """
    workdir = Path(workdir)
    M, A, names = data_dims(data)
    cfg = cfg.with_data_dims(M, A)
    mesh = common.make_mesh(cfg.run.fsdp)
    local_bs = common.local_batch_size(cfg.run.batch_size, mesh, cfg.optim.accum_steps)
    ckpt = common.Checkpointer(
        workdir, cfg.to_dict(), keep=cfg.run.keep_checkpoints, every=cfg.run.ckpt_every,
        async_save=cfg.run.async_checkpoints, upgrade=_upgrade_config,
    )  # fmt: skip
    _, abstract, shardings, init_fn, step_fn = compiled(cfg, mesh)
    start, data_state = ckpt.latest_step or 0, None
    if start:
        state, data_state = ckpt.restore(common.abstract_like(abstract, shardings))
        log.info("resumed %s at step %d", workdir, start)
    else:
        state = init_fn(norm_stats(data, cfg.norm_stats_records))

    lcfg = loader.LoaderConfig(batch_size=local_bs, seed=cfg.run.seed, read_threads=read_threads, worker_count=workers)
    it = iter(loader.motion_windows(data, lcfg, cfg.windows))
    if data_state is not None:
        it.set_state(data_state)
    plot_rec = loader.RecordSource(eval_data or data).record(0) if cfg.run.sample_every else None

    end = cfg.run.steps if stop_after is None else min(cfg.run.steps, start + stop_after)
    step, stopped, last = start, False, {}
    with (
        common.StopSignal(time_limit=time_limit) as stop,
        common.MetricLogger(workdir, cfg.run.steps, start, enabled=common.is_main_process() and progress) as logger,
    ):
        while step < end:
            if stop.should_stop():
                stopped = True
                break
            batch = common.global_batch(cfg.entry.batch(next(it), cfg.model), mesh, cfg.entry.batch_keys)
            state, metrics = step_fn(state, batch)
            step += 1
            if step == start + 1:
                stop.start_clock()  # the time limit counts training, not the first step's compilation
            logger.advance()
            if step % cfg.run.log_every == 0 or step == end:
                last = _host_scalars(metrics)
                last = logger.log(step, last) or last
                if common.is_main_process() and not progress:  # no logger: metrics.jsonl only
                    with open(workdir / "metrics.jsonl", "a") as f:
                        f.write(json.dumps({"step": step, "time": time.time(), **last}) + "\n")
            if plot_rec is not None and step % cfg.run.sample_every == 0:
                _write_plot(workdir, step, cfg, state, plot_rec, names)
            if ckpt.should_save(step):
                ckpt.save(step, state, it.get_state())
            if on_step is not None:
                on_step(step)
        stopped = stopped or step < cfg.run.steps
        ckpt.save(step, state, it.get_state())
        ckpt.close()
    result = {"step": step, "stopped": stopped, "metrics": last, "eval": None}
    if eval_data is not None and not stopped:
        host = common.to_host({k: state[k] for k in ("params", "rest", "ema") if k in state})
        if common.is_main_process():
            model = sampling_model(cfg, host)
            result["eval"] = evaluate(model, eval_data, cfg.diffusion, seed=cfg.run.seed, entry=cfg.entry)
            (workdir / "eval.json").write_text(json.dumps({"step": step, **result["eval"]}, indent=1) + "\n")
    if stopped and common.is_main_process():
        log.warning("stopped at step %d of %d; run the same command again to resume", step, cfg.run.steps)
    return result


# ----------------------------------------------------------------------------------------------- loading


def _upgrade_config(d: dict) -> dict:
    """A stored config with the fields added since (``generator``, ``condition_norm``) at their old meaning."""
    return MotionTrainConfig.from_dict(d).to_dict()


def load_config(workdir: str | Path) -> MotionTrainConfig:
    """The config of a ``train-motion`` run folder."""
    path = Path(workdir) / "config.json"
    if not path.exists():
        raise UserError(f"{workdir} is not a train-motion run folder (no config.json)")
    return MotionTrainConfig.from_dict(json.loads(path.read_text()))


def load_model(workdir: str | Path, *, ema: bool = True, step: int | None = None) -> nnx.Module:
    """The model of a run's checkpoint (latest by default; EMA weights when kept), on the default device."""
    cfg = load_config(workdir)
    ckpt = common.Checkpointer(workdir, cfg.to_dict(), async_save=False, upgrade=_upgrade_config)
    try:
        if ckpt.latest_step is None:
            raise UserError(f"{workdir} has no checkpoint yet")
        abstract = jax.eval_shape(functools.partial(init_state, cfg))
        dev = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        state, _ = ckpt.restore(common.abstract_like(abstract, jax.tree.map(lambda _: dev, abstract)), step)
    finally:
        ckpt.close()
    return sampling_model(cfg, state, use_ema=ema)


# ----------------------------------------------------------------------------------------------- CLI


def build_config(args: argparse.Namespace) -> MotionTrainConfig:
    """The run config of parsed ``train-motion`` options (preset + overrides), sized for ``args.data``."""
    run = common.run_overrides(args)
    cfg = PRESETS[args.config](args.generator, **run)
    opts = (("lr", args.lr), ("accum_steps", args.accum), ("warmup_steps", args.warmup))
    optim = {k: v for k, v in opts if v is not None}
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, **optim))
    if args.velocity_weight is not None:
        if not hasattr(cfg.diffusion, "velocity_weight"):
            raise UserError(f"--velocity-weight: the {cfg.generator} generator has no velocity term")
        cfg = dataclasses.replace(
            cfg, diffusion=dataclasses.replace(cfg.diffusion, velocity_weight=args.velocity_weight)
        )
    M, A, _ = data_dims(args.data)
    return cfg.with_data_dims(M, A)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vasajax train-motion", description=__doc__.split("\n")[0])
    p.add_argument("--config", choices=sorted(PRESETS), default="tiny", help="model/run preset")
    p.add_argument("--generator", default="vasa", choices=MOTION_TRAINING.names(),
                   help="motion generator to train (vasajax.stages.MOTION_TRAINING; default: VASA-1's)")  # fmt: skip
    p.add_argument("--data", help="motion shards from `vasajax encode-dataset` (folder)")
    p.add_argument("--workdir", required=True, help="run folder (created; resumed if it holds checkpoints)")
    p.add_argument("--eval-data", help="held-out motion shards: motion plots and a final evaluation")
    p.add_argument("--evaluate", metavar="SHARDS", help="only evaluate the run's EMA model on these motion shards")
    p.add_argument("--eval-records", type=int, default=16, help="records used by --evaluate")
    p.add_argument("--steps", type=int, help="total optimiser steps of the run (sets the cosine schedule)")
    p.add_argument("--stop-after", type=int, help="stop with a checkpoint after this many steps in this job")
    p.add_argument(
        "--time-limit",
        type=float,
        help="stop with a checkpoint at the first step after this many seconds of training in this job (set-up and "
        "compilation in the first step do not count), e.g. to fit a fixed budget of accelerator time",
    )
    p.add_argument("--batch", type=int, help="global batch size (windows)")
    p.add_argument("--accum", type=int, help="gradient accumulation micro-batches per step")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--warmup", type=int, help="warm-up steps")
    p.add_argument("--velocity-weight", type=float, help="weight of the frame-difference (smoothness) loss term")
    p.add_argument("--seed", type=int)
    p.add_argument("--fsdp", type=int, help="devices per FSDP group (params sharded over them)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 compute (params and optimiser stay float32)")
    p.add_argument("--log-every", type=int)
    p.add_argument("--ckpt-every", type=int)
    p.add_argument("--sample-every", type=int, help="steps between motion plots (0: none)")
    p.add_argument("--workers", type=int, default=0, help="data worker processes (0: threads in this process)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (metrics.jsonl is still written)")
    p.add_argument("--coordinator", help="multi-host: coordinator host:port (SLURM is detected without it)")
    p.add_argument("--num-processes", type=int)
    p.add_argument("--process-id", type=int)
    return p


def cli_main(argv: list[str] | None = None) -> int:
    """``vasajax train-motion``: 0 when the run is complete, ``EXIT_STOPPED`` when it stopped early."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.evaluate:
        cfg = load_config(args.workdir)
        model = load_model(args.workdir)
        out = evaluate(model, args.evaluate, cfg.diffusion, max_records=args.eval_records, entry=cfg.entry)
        print(json.dumps(out))
        return 0
    if not args.data:
        raise UserError("train-motion needs --data MOTION_SHARDS (from `vasajax encode-dataset`)")
    common.init_distributed(args.coordinator, args.num_processes, args.process_id)
    cfg = build_config(args)
    out = train(
        cfg, args.data, args.workdir, eval_data=args.eval_data, stop_after=args.stop_after,
        time_limit=args.time_limit, workers=args.workers, progress=not args.no_progress,
    )  # fmt: skip
    if common.is_main_process():
        print(json.dumps({"step": out["step"], "stopped": out["stopped"], **out["metrics"]}))
        if out["eval"]:
            print(json.dumps({"eval": out["eval"]}))
    return EXIT_STOPPED if out["stopped"] else 0
