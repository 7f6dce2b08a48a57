"""Stage-1 trainer: a renderer by self-reenactment (VASA-1 §3.1, MegaPortraits' recipe; or another renderer's).

    vasajax train-face --config tiny --data data/clips --workdir runs/face-tiny --steps 300
    srun vasajax train-face --config paper --data /data/vox2 --workdir runs/face --fsdp 8   (train/slurm/)
    vasajax train-face --renderer liveportrait --config small --data data/clips --workdir runs/lp

The model and its objective come from a trainable renderer entry (``vasajax.stages.RENDERER_TRAINING``,
``--renderer``; default ``vasa``: VASA-1's face latent model, ``vasajax.face.training``; ``liveportrait``:
LivePortrait's F, M, W, G, ``vasajax.zoo.liveportrait.training``). Each step draws (source, driver, cross) frames
from ``loader.face_pairs`` and runs two pure, jitted functions:

* ``generator_step``: the entry's whole generator objective (VASA's: ``vasajax.face.losses``: L1, perceptual, face,
  transfer consistency, cross-identity identity, CosFace contrastive, hinge GAN + feature matching against the
  current discriminator), gradients (accumulated over micro-batches if asked), clipping, AdamW, EMA;
* ``discriminator_step``: the multi-scale patch discriminator's hinge loss on the driver frames (real) and the
  images the generator step produced (fake), AdamW.

The state is one pytree ``{"step", "gen": {"params", "opt", "ema"}, "disc": {"params", "opt"}}`` (plus ``gen.rest``:
variables the optimiser does not train, e.g. BatchNorm statistics, when the model has any); batches are
sharded over every device, params replicated or FSDP-sharded (``vasajax.train.common``). There is no random state
besides ``step_key(seed, step)``: stopping (SIGTERM/SIGINT, ``--stop-after``) and resuming gives the same params,
bit for bit on CPU, as an uninterrupted run.

The run folder gets ``config.json``, ``checkpoints/<step>/`` (orbax), ``metrics.jsonl``, ``tb/`` (TensorBoard) and
``samples/step_XXXXXXX.png``: rows source | driver | self-reenactment | cross identity | cross reenactment (the
cross face driven by the driver's motion), made with the EMA weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from vasajax import config_io
from vasajax.data import loader
from vasajax.errors import UserError
from vasajax.face import discriminator as disc_lib
from vasajax.face import losses
from vasajax.stages import RENDERER_TRAINING
from vasajax.train import common

log = logging.getLogger("vasajax.train.face")

BATCH_KEYS = ("source", "driver", "cross")
"""The loader fields a step uses (uint8 frames; converted to float on device)."""


def batch_keys(cfg: FaceTrainConfig) -> tuple[str, ...]:
    """The loader fields a step of ``cfg`` uses: the frames, plus the labels its optional loss terms read (VASA's:
    mouth box, tracker poses, tracker blendshapes, tracker landmarks)."""
    return tuple(cfg.entry.batch_keys(cfg.loss))


EXIT_STOPPED = 75
"""Exit status of ``cli_main`` when a signal or ``--stop-after`` ended the job before the last step (EX_TEMPFAIL:
a SLURM script requeues on it)."""


# ----------------------------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True, kw_only=True)
class FaceTrainConfig:
    """Everything that defines a stage-1 run; saved as ``config.json`` and checked when a run resumes."""

    model: Any
    """The renderer's config (the entry's ``model_config``; VASA's ``FaceConfig``, whose ``dtype`` is overridden by
    ``run.precision``)."""
    disc: disc_lib.DiscConfig
    """The multi-scale patch discriminator."""
    loss: Any
    """Loss weights and the perceptual distance (VGG19 with weights, else the SSIM fallback): the entry's
    ``loss_config`` (VASA's ``FaceLossConfig``)."""
    optim: common.OptimConfig
    """Generator optimiser: AdamW, warm-up + cosine, clipping, accumulation, EMA."""
    disc_optim: common.OptimConfig
    """Discriminator optimiser (its ``ema_decay`` and ``accum_steps`` are ignored: no EMA, no accumulation)."""
    run: common.RunConfig
    """Steps, global batch, seed, mesh, precision, logging and checkpoint cadence."""
    pairs: loader.PairsConfig
    """How the loader draws source/driver/cross frames (resize to ``model.image_size`` is forced)."""
    adversarial: bool = True
    """Train the discriminator and use the GAN + feature-matching terms (False: reconstruction losses only)."""
    init_from: str | None = None
    """Warm start: a stage-1 run folder whose latest weights (params and EMA; the same model config) this run starts
    from, with a fresh optimiser, schedule and discriminator. For fine-tuning a trained model with another objective
    (e.g. adding a loss term) without paying for its first steps again. ``None``: the seeded initialisation."""
    init_skip: tuple[str, ...] = ()
    """Top-level model parts of ``init_from`` not carried over (e.g. ``("warp_to_canonical", "warp_to_driver")``
    to swap the convolutional warp generators for ``warp_keypoints``): they keep this run's fresh initialisation."""
    freeze: tuple[str, ...] = ()
    """Top-level model parts the optimiser leaves unchanged (``common.freeze_parts``). ``("motion_encoder",)``
    fine-tunes the renderer of a trained run while its motion latents, and so a stage-2 model trained on them,
    stay valid."""
    renderer: str = "vasa"
    """The trainable renderer (``vasajax.stages.RENDERER_TRAINING``): ``model``/``loss`` are its configs."""

    def __post_init__(self):
        if self.run.precision not in self.entry.precisions:
            raise UserError(
                f"renderer {self.renderer} trains in {' or '.join(self.entry.precisions)}, not {self.run.precision}"
                + (" (drop --bf16)" if self.run.precision == "bfloat16" else "")
            )
        if self.pairs.size not in (None, self.entry.frame_size(self.model)):
            raise ValueError("pairs.size must be None or the renderer's frame size (VASA: model.image_size)")

    @property
    def entry(self):
        """The renderer's ``RendererTraining`` entry."""
        return RENDERER_TRAINING.get(self.renderer)

    @property
    def model_cfg(self) -> Any:
        """The model config with the run's compute dtype."""
        return self.entry.with_dtype(self.model, common.compute_dtype(self.run.precision))

    @property
    def disc_cfg(self) -> disc_lib.DiscConfig:
        """The discriminator config with the run's compute dtype."""
        return dataclasses.replace(self.disc, dtype=common.compute_dtype(self.run.precision))

    @property
    def loss_cfg(self) -> losses.FaceLossConfig:
        """The loss config, without GAN terms when not ``adversarial``."""
        if self.adversarial:
            return self.loss
        return dataclasses.replace(self.loss, gan_weight=0.0, feature_matching_weight=0.0)

    def to_dict(self) -> dict:
        """JSON-ready nested dict (what ``config.json`` holds)."""
        return config_io.to_dict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FaceTrainConfig:
        """Inverse of ``to_dict``: missing fields keep their defaults (configs from before they existed)."""
        return config_io.from_dict(cls, d)

    @staticmethod
    def config_types(d: Mapping[str, Any]) -> dict[str, type]:
        """``model``/``loss`` are the configs of the entry ``renderer`` names (absent: VASA-1's)."""
        entry = RENDERER_TRAINING.get(str(d.get("renderer", "vasa")))
        return {"model": entry.model_config, "loss": entry.loss_config}

    # Presets: the model and loss configs are the entry's (``presets``); the discriminator, optimiser, run and
    # pair-sampling settings are the loop's, by size class (``small_warp`` is VASA's ``small`` variant).

    @classmethod
    def preset(cls, name: str, vgg_weights: str | None = None, renderer: str = "vasa", **run_overrides):
        """Preset ``name`` of ``renderer``: ``tiny`` (64² VASA model, batch 4: tests and minutes on a CPU),
        ``small`` (the 256² demo model on one machine), ``small_warp`` (VASA only), ``paper`` (VASA: 512² with
        MegaPortraits' sizes and weights, bf16, its 512² phase: batch 16, 300K iterations)."""
        entry = RENDERER_TRAINING.get(renderer)
        model, loss = entry.presets(name, vgg_weights)
        size_class = "small" if name == "small_warp" else name
        if size_class == "paper":
            run_overrides = {"steps": 300_000, "batch_size": 16, **run_overrides}
        run = getattr(common.RunConfig, size_class)(**run_overrides)
        if run.precision not in entry.precisions and "precision" not in run_overrides:
            run = dataclasses.replace(run, precision=entry.precisions[0])  # e.g. LivePortrait's port: float32 only
        disc, optim = getattr(disc_lib.DiscConfig, size_class)(), getattr(common.OptimConfig, size_class)
        size = entry.frame_size(model)
        pairs = loader.PairsConfig(min_gap=1 if size_class == "tiny" else 2, size=size)
        return cls(
            model=model,
            disc=disc,
            loss=loss,
            optim=optim(),
            disc_optim=optim(),
            run=run,
            pairs=pairs,
            renderer=renderer,
        )

    @classmethod
    def tiny(cls, vgg_weights: str | None = None, renderer: str = "vasa", **run_overrides) -> FaceTrainConfig:
        """64² model, batch 4, a few steps: tests and a minutes-long CPU run."""
        return cls.preset("tiny", vgg_weights, renderer, **run_overrides)

    @classmethod
    def small(cls, vgg_weights: str | None = None, renderer: str = "vasa", **run_overrides) -> FaceTrainConfig:
        """The 256² demo model on one machine."""
        return cls.preset("small", vgg_weights, renderer, **run_overrides)

    @classmethod
    def small_warp(cls, vgg_weights: str | None = None, **run_overrides) -> FaceTrainConfig:
        """``small`` with the pixel-warp decoder (``FaceConfig.small_warp``) and two tracker-supervised terms: the
        mouth-region L1 and the head pose (weight 10 each); the design that learns fastest on a CPU (comparison
        in ``checkpoints/README.md``)."""
        return cls.preset("small_warp", vgg_weights, "vasa", **run_overrides)

    @classmethod
    def paper(cls, vgg_weights: str | None = None, renderer: str = "vasa", **run_overrides) -> FaceTrainConfig:
        """512² with MegaPortraits' sizes and weights, bf16 (its 512² phase: batch 16, 300K iterations)."""
        return cls.preset("paper", vgg_weights, renderer, **run_overrides)


PRESETS: dict[str, Callable[..., FaceTrainConfig]] = {
    "tiny": FaceTrainConfig.tiny,
    "small": FaceTrainConfig.small,
    "small_warp": FaceTrainConfig.small_warp,
    "paper": FaceTrainConfig.paper,
}


# ----------------------------------------------------------------------------------------------- state


@dataclasses.dataclass(frozen=True)
class Graphs:
    """The static halves of the networks (``nnx.split``); hashable, closed over by the jitted steps."""

    model: nnx.GraphDef
    disc: nnx.GraphDef | None
    critics: nnx.GraphDef


def make_graphs(cfg: FaceTrainConfig, critics: losses.FaceCritics) -> Graphs:
    """Graph definitions of the model, discriminator and critics (no parameter memory is allocated)."""
    model_def = nnx.graphdef(nnx.eval_shape(lambda: cfg.entry.build(cfg.model_cfg, nnx.Rngs(0))))
    disc_def = None
    if cfg.adversarial:
        disc_def, _ = nnx.split(nnx.eval_shape(lambda: disc_lib.PatchDiscriminator(cfg.disc_cfg, rngs=nnx.Rngs(0))))
    return Graphs(model=model_def, disc=disc_def, critics=nnx.split(critics)[0])


def optimizers(cfg: FaceTrainConfig) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    """(generator, discriminator) optimisers over the run's steps."""
    gen = common.make_optimizer(cfg.optim, cfg.run.steps)
    if cfg.freeze:
        gen = common.freeze_parts(gen, cfg.freeze)
    return gen, common.make_optimizer(cfg.disc_optim, cfg.run.steps)


def init_state(cfg: FaceTrainConfig) -> dict:
    """A fresh train state (call under ``jit`` with out_shardings: see ``common.init_sharded``).

    Initialisation draws from an ``rbg`` key of ``run.seed``: XLA compiles it ~4× faster on CPU than threefry
    (seconds, not half a minute, for the tiny model); it is deterministic for a given mesh.
    """
    gen_tx, disc_tx = optimizers(cfg)
    key = jax.random.key(cfg.run.seed, impl="rbg")
    model = cfg.entry.build(cfg.model_cfg, nnx.Rngs(jax.random.fold_in(key, 0)))
    _, params, rest = nnx.split(model, cfg.entry.trainable(), ...)
    gen = {"params": params, "opt": gen_tx.init(params)}
    if cfg.optim.ema_decay is not None:
        gen["ema"] = jax.tree.map(jnp.copy, params)
    if jax.tree.leaves(rest):  # statistics the model keeps beside its trained params (absent for VASA's)
        gen["rest"] = rest
    state = {"step": jnp.zeros((), jnp.int32), "gen": gen}
    if cfg.adversarial:
        drngs = nnx.Rngs(jax.random.fold_in(key, 1))
        _, dparams = nnx.split(disc_lib.PatchDiscriminator(cfg.disc_cfg, rngs=drngs))
        state["disc"] = {"params": dparams, "opt": disc_tx.init(dparams)}
    return common.strong_types(state)


# ----------------------------------------------------------------------------------------------- steps


def generator_step(
    state: dict,
    critic_params: nnx.State,
    batch: Mapping[str, jax.Array],
    *,
    graphs: Graphs,
    cfg: FaceTrainConfig,
    tx: optax.GradientTransformation,
) -> tuple[dict, dict[str, jax.Array], jax.Array]:
    """One generator update. Returns ``(state, metrics, fakes)``; ``fakes`` (2B×H×W×3: self and cross
    reenactments) feed ``discriminator_step``. ``state["step"]`` is incremented here."""
    gen = state["gen"]
    loss_cfg = cfg.loss_cfg
    disc_params = state["disc"]["params"] if "disc" in state else None
    rest = gen.get("rest")
    entry = cfg.entry

    def loss_fn(params, mb, key):
        # with statistics beside the params, the model may update them (BatchNorm): merge copies, read them back
        states = (params,) if rest is None else (params, rest)
        model = nnx.merge(graphs.model, *states, copy=rest is not None)
        critics = nnx.merge(graphs.critics, critic_params)
        disc = nnx.merge(graphs.disc, disc_params) if disc_params is not None else None
        loss, (metrics, fakes) = entry.loss(model, critics, disc, mb, loss_cfg, key)
        new_rest = nnx.split(model, entry.trainable(), ...)[2] if rest is not None else None
        return loss, ((metrics, new_rest), fakes)  # new_rest averages over micro-batches, like the metrics

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    key = common.step_key(cfg.run.seed, state["step"])
    (_, ((metrics, new_rest), fakes)), grads = common.accumulate(
        grad_fn, gen["params"], batch, key, cfg.optim.accum_steps, has_extra=True
    )
    metrics = {**metrics, "grad_norm": optax.global_norm(grads)}
    updates, opt = tx.update(grads, gen["opt"], gen["params"])
    params = optax.apply_updates(gen["params"], updates)
    new_gen = {"params": params, "opt": opt}
    if rest is not None:
        new_gen["rest"] = new_rest
    if "ema" in gen:
        ema = common.ema_update(gen["ema"], params, cfg.optim.ema_decay, state["step"])
        # frozen parts keep their average too: the EMA weights are what an export ships
        new_gen["ema"] = common.keep_frozen(ema, gen["ema"], cfg.freeze) if cfg.freeze else ema
    return {**state, "step": state["step"] + 1, "gen": new_gen}, metrics, fakes


def discriminator_step(
    state: dict,
    real: jax.Array,
    fake: jax.Array,
    *,
    graphs: Graphs,
    tx: optax.GradientTransformation,
) -> tuple[dict, dict[str, jax.Array]]:
    """One discriminator update on ``real`` (uint8 or float frames) and ``fake`` (the generator's images)."""
    d = state["disc"]

    def loss_fn(params):
        return losses.discriminator_loss(nnx.merge(graphs.disc, params), real, fake)

    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(d["params"])
    updates, opt = tx.update(grads, d["opt"], d["params"])
    return {**state, "disc": {"params": optax.apply_updates(d["params"], updates), "opt": opt}}, metrics


@functools.lru_cache(maxsize=8)
def compiled_steps(cfg: FaceTrainConfig, mesh) -> Steps:
    """Everything a loop needs for ``cfg`` on ``mesh``, built once per (config, mesh) in a process: the jitted
    ``init`` (no arguments), ``gen(state, critic_params, batch)`` and ``disc(state, real, fake)`` (None when
    not adversarial) and ``sample(params, batch)``, with shardings and donated state, plus the graphs, the
    state shardings, and the critics' params placed on the mesh. Reusing it skips retracing and recompiling."""
    critics = losses.build_critics(cfg.loss_cfg)
    return _build_steps(cfg, mesh, critics)


def _build_steps(cfg: FaceTrainConfig, mesh, critics: losses.FaceCritics) -> Steps:
    graphs = make_graphs(cfg, critics)
    init_fn = functools.partial(init_state, cfg)
    abstract = jax.eval_shape(init_fn)
    shardings = common.fsdp_shardings(abstract, mesh, cfg.run.fsdp_min_size)
    critic_params = nnx.split(critics)[1]
    critic_sh = common.fsdp_shardings(critic_params, mesh, cfg.run.fsdp_min_size)
    critic_params = jax.tree.map(
        lambda x, sh: jax.make_array_from_callback(x.shape, sh, lambda i, x=x: np.asarray(x)[i]),
        critic_params,
        critic_sh,
    )
    gen_tx, disc_tx = optimizers(cfg)
    rep, bat = common.replicated(mesh), common.batch_sharding(mesh)
    batch_sh = {k: bat for k in batch_keys(cfg)}
    gen = jax.jit(
        functools.partial(generator_step, graphs=graphs, cfg=cfg, tx=gen_tx),
        in_shardings=(shardings, critic_sh, batch_sh),
        out_shardings=(shardings, rep, bat),
        donate_argnums=(0,),
    )
    disc = None
    if cfg.adversarial:
        disc = jax.jit(
            functools.partial(discriminator_step, graphs=graphs, tx=disc_tx),
            in_shardings=(shardings, bat, bat),
            out_shardings=(shardings, rep),
            donate_argnums=(0,),
        )
    sample = jax.jit(functools.partial(sample_images, cfg.entry, graphs.model), out_shardings=rep)
    init = jax.jit(init_fn, out_shardings=shardings)
    return Steps(graphs, abstract, shardings, critic_params, init, gen, disc, sample)


@dataclasses.dataclass(frozen=True)
class Steps:
    """The compiled pieces of one (config, mesh): see ``compiled_steps``."""

    graphs: Graphs
    abstract: Any
    """ShapeDtypeStructs of the train state."""
    shardings: Any
    """NamedShardings of the train state."""
    critic_params: Any
    init: Callable[[], dict]
    gen: Callable
    disc: Callable | None
    sample: Callable


# ----------------------------------------------------------------------------------------------- samples


def sample_images(entry, graphdef: nnx.GraphDef, params: nnx.State, batch: Mapping[str, jax.Array], rest=None):
    """Self-reenactment (source driven by driver) and cross reenactment (cross identity driven by driver)."""
    model = nnx.merge(graphdef, params) if rest is None else nnx.merge(graphdef, params, rest)
    src, drv, crs = (losses.to_float(batch[k]) for k in BATCH_KEYS)
    out = entry.reenact(model, jnp.concatenate([src, crs]), jnp.concatenate([drv, drv])).astype(jnp.float32)
    b = src.shape[0]
    return {"self": out[:b], "cross": out[b:]}


def write_grid(path: Path, batch: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray]) -> None:
    """PNG grid: one column per example; rows source, driver, self-reenactment, cross identity, cross reenact."""
    from PIL import Image

    def u8(x):
        x = np.asarray(x)
        return x if x.dtype == np.uint8 else (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)

    rows = [u8(batch["source"]), u8(batch["driver"]), u8(out["self"]), u8(batch["cross"]), u8(out["cross"])]
    grid = np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)


def psnr(a, b) -> float:
    """PSNR in dB of two image batches in [0, 1] (or uint8)."""
    a = np.asarray(a, np.float64) / (255.0 if np.asarray(a).dtype == np.uint8 else 1.0)
    b = np.asarray(b, np.float64) / (255.0 if np.asarray(b).dtype == np.uint8 else 1.0)
    return float(-10 * np.log10(max(np.mean((a - b) ** 2), 1e-10)))


# ----------------------------------------------------------------------------------------------- loop


def _host_scalars(metrics: Mapping[str, jax.Array]) -> dict[str, float]:
    return {k: float(np.asarray(v.addressable_data(0))) for k, v in metrics.items()}


def _replicated_input(x: np.ndarray, mesh) -> jax.Array:
    return jax.make_array_from_process_local_data(common.replicated(mesh), np.asarray(x))


def train(
    cfg: FaceTrainConfig,
    data: str | Path,
    workdir: str | Path,
    *,
    stop_after: int | None = None,
    time_limit: float | None = None,
    on_step: Callable[[int], None] | None = None,
    read_threads: int = 2,
    workers: int = 0,
    identity_encoder: Callable | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train (or resume) the run in ``workdir`` on the clip shards in ``data``.

    ``stop_after``: stop (with a checkpoint) after this many steps in this call, e.g. to fit a job's time
    limit; ``time_limit``: stop (with a checkpoint) at the first step boundary after this many seconds of
    training (the clock starts after the first step, so compilation does not count); either way the run resumes
    when started again.
    ``on_step(step)`` is called after each step (tests, custom hooks). Returns
    ``{"step", "stopped", "metrics", "state"}``: the last logged scalars (process 0) and the final train state.
    """
    mesh = common.make_mesh(cfg.run.fsdp)
    local_bs = common.local_batch_size(cfg.run.batch_size, mesh, cfg.optim.accum_steps)
    ckpt = common.Checkpointer(
        workdir,
        cfg.to_dict(),
        keep=cfg.run.keep_checkpoints,
        every=cfg.run.ckpt_every,
        async_save=cfg.run.async_checkpoints,
        upgrade=_upgrade_config,
    )
    if identity_encoder is None:
        steps = compiled_steps(dataclasses.replace(cfg, init_from=None), mesh)  # same programs as a cold start
    else:
        steps = _build_steps(cfg, mesh, losses.build_critics(cfg.loss_cfg, identity=identity_encoder))
    start, data_state = ckpt.latest_step or 0, None
    if start:
        state, data_state = ckpt.restore(common.abstract_like(steps.abstract, steps.shardings))
        log.info("resumed %s at step %d", workdir, start)
    else:
        state = steps.init()
        if cfg.init_from is not None:
            state = warm_start(state, cfg)
            log.info("started %s from the weights of %s", workdir, cfg.init_from)
    gen_step, disc_step, critic_params = steps.gen, steps.disc, steps.critic_params

    lcfg = loader.LoaderConfig(batch_size=local_bs, seed=cfg.run.seed, read_threads=read_threads, worker_count=workers)
    it = iter(loader.face_pairs(data, lcfg, cfg.pairs))
    if data_state is not None:
        it.set_state(data_state)
    sample_batch = None
    if cfg.run.sample_every:  # every process: the sampling jit is a collective on the mesh
        scfg = loader.LoaderConfig(batch_size=min(4, local_bs), seed=12345, shuffle=True, shard_index=0, shard_count=1)
        sb = next(iter(loader.face_pairs(data, scfg, cfg.pairs)))
        sample_batch = {k: sb[k] for k in BATCH_KEYS}
        sample_fn = steps.sample

    end = cfg.run.steps if stop_after is None else min(cfg.run.steps, start + stop_after)
    keys = batch_keys(cfg)
    step, stopped, last = start, False, {}
    with (
        common.StopSignal(time_limit=time_limit) as stop,
        common.MetricLogger(workdir, cfg.run.steps, start, progress=progress) as logger,
    ):
        while step < end:
            if stop.should_stop():
                stopped = True
                break
            batch = common.global_batch(next(it), mesh, keys)
            state, metrics, fakes = gen_step(state, critic_params, batch)
            if disc_step is not None:
                state, dmetrics = disc_step(state, batch["driver"], fakes)
                metrics = {**metrics, **dmetrics}
            step += 1
            if step == start + 1:
                stop.start_clock()  # the time limit counts training, not the first step's compilation
            logger.advance()
            if step % cfg.run.log_every == 0 or step == end:
                last = _host_scalars(metrics)
                last = logger.log(step, last) or last
            if sample_batch is not None and cfg.run.sample_every and step % cfg.run.sample_every == 0:
                _write_samples(workdir, step, state, sample_fn, sample_batch, mesh)
            if ckpt.should_save(step):
                ckpt.save(step, state, it.get_state())
            if on_step is not None:
                on_step(step)
        stopped = stopped or step < cfg.run.steps
        ckpt.save(step, state, it.get_state())
        ckpt.close()
    if stopped and common.is_main_process():
        log.warning("stopped at step %d of %d; run the same command again to resume", step, cfg.run.steps)
    return {"step": step, "stopped": stopped, "metrics": last, "state": state}


def warm_start(state: dict, cfg: FaceTrainConfig) -> dict:
    """``state`` (a fresh train state) with the generator params and EMA of ``cfg.init_from``'s latest checkpoint,
    placed like the fresh ones; optimiser state, step and discriminator stay fresh.

    The model may grow: every weight of that run must exist here with the same shape, and weights only this model
    has (a module an option adds, e.g. ``dyn_2d``'s z_dyn map) keep their fresh initialisation (logged). Anything
    else (a weight that is gone or changed shape) is a UserError naming the model settings that differ."""
    other, theirs_gen = _restore_gen(cfg.init_from)  # one restore: params and EMA together
    params = theirs_gen["params"]
    ema = theirs_gen.get("ema", params)
    gen = dict(state["gen"])

    def by_path(tree):
        return {jax.tree_util.keystr(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}

    skip = tuple(f"['{part}']" for part in cfg.init_skip)

    def carried(tree):
        return {k: v for k, v in by_path(tree).items() if not (skip and k.startswith(skip))}

    mine, theirs = by_path(gen["params"]), carried(params)
    bad = [k for k, v in theirs.items() if k not in mine or tuple(mine[k].shape) != tuple(v.shape)]
    if bad:
        diff = sorted(k for k in cfg.model.__dataclass_fields__ if getattr(other.model, k) != getattr(cfg.model, k))
        raise UserError(
            f"--init-from {cfg.init_from}: its model differs from this run's ({', '.join(diff)}): "
            f"{len(bad)} of its weights do not fit this model (e.g. {bad[0]})"
        )
    fresh = sorted(set(mine) - set(theirs))
    if fresh:
        log.info("weights new in this model (fresh init): %s", ", ".join(fresh))

    def place(new, like):
        new = carried(new)
        paths, leaves = zip(*jax.tree_util.tree_flatten_with_path(like)[0], strict=True)
        out = [
            jax.device_put(jnp.asarray(new[jax.tree_util.keystr(p)], b.dtype), b.sharding)
            if jax.tree_util.keystr(p) in new
            else b
            for p, b in zip(paths, leaves, strict=True)
        ]
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like), out)

    gen["params"] = place(params, gen["params"])
    if "ema" in gen:
        gen["ema"] = place(ema, gen["ema"])
    if "rest" in gen and "rest" in theirs_gen:  # the statistics that go with those weights
        gen["rest"] = place(theirs_gen["rest"], gen["rest"])
    return {**state, "gen": gen}


def _write_samples(workdir, step, state, sample_fn, sample_batch, mesh) -> None:
    params = state["gen"].get("ema", state["gen"]["params"])
    inputs = {k: _replicated_input(v, mesh) for k, v in sample_batch.items()}
    out = {k: np.asarray(v.addressable_data(0)) for k, v in sample_fn(params, inputs, state["gen"].get("rest")).items()}
    if common.is_main_process():
        write_grid(Path(workdir) / "samples" / f"step_{step:07d}.png", sample_batch, out)


# ----------------------------------------------------------------------------------------------- loading


def _upgrade_config(stored: dict) -> dict:
    """A stored run config with the fields added since it was written set to their defaults."""
    return FaceTrainConfig.from_dict(stored).to_dict()


def load_config(workdir: str | Path) -> FaceTrainConfig:
    """The config of a run folder."""
    path = Path(workdir) / "config.json"
    if not path.exists():
        raise UserError(f"{workdir} is not a train-face run folder (no config.json)")
    return FaceTrainConfig.from_dict(json.loads(path.read_text()))


def load_params(workdir: str | Path, *, ema: bool = True, step: int | None = None) -> tuple[Any, nnx.State]:
    """``(model config, params)`` of a run's checkpoint (latest by default; EMA weights when kept), on the
    default device, with the statistics a model keeps beside them merged in. The config's dtype is the run's
    compute dtype. Runs written before a config field existed load with that field's default."""
    cfg, gen = _restore_gen(workdir, step)
    params = gen["ema"] if ema and "ema" in gen else gen["params"]
    if "rest" in gen:
        params = nnx.merge_state(params, gen["rest"])
    return cfg.model_cfg, params


def _restore_gen(workdir: str | Path, step: int | None = None) -> tuple[FaceTrainConfig, dict]:
    """``(run config, the generator's part of the train state: params, opt, EMA)`` of a run's checkpoint (latest by
    default), on the default device."""
    cfg = load_config(workdir)
    ckpt = common.Checkpointer(workdir, cfg.to_dict(), async_save=False, upgrade=_upgrade_config)
    try:
        if ckpt.latest_step is None:
            raise UserError(f"{workdir} has no checkpoint yet")
        abstract = jax.eval_shape(functools.partial(init_state, cfg))
        dev = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        try:
            state, _ = ckpt.restore(common.abstract_like(abstract, jax.tree.map(lambda _: dev, abstract)), step)
        except (ValueError, KeyError) as e:  # orbax: a stored array or key the model built from config.json lacks
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(
                f"{workdir}: its checkpoint does not fit the model its config.json describes in this version of "
                f"vasajax (written by another version, or config.json was edited): {first[:200]}"
            ) from None
    finally:
        ckpt.close()
    return cfg, state["gen"]


def load_model(workdir: str | Path, *, ema: bool = True, step: int | None = None):
    """The model of a run with its trained weights (VASA's ``FaceLatentModel``: what ``encode-dataset`` and the
    pipeline use; another renderer's module: what ``vasajax export`` writes through its entry)."""
    entry = load_config(workdir).entry
    mcfg, params = load_params(workdir, ema=ema, step=step)
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: entry.build(mcfg, nnx.Rngs(0))))
    return nnx.merge(graphdef, params)


@dataclasses.dataclass(frozen=True)
class FrameSize:
    image_size: int
    """Side of the frames a ``Reenactor`` compares (its renderer's output)."""


class Reenactor(nnx.Module):
    """A trained renderer as the stage-1 evaluation (``vasajax.eval.face_recon``) sees a model: ``cfg.image_size``
    and ``reenact(source, driver)`` (float images at that size), through its entry."""

    def __init__(self, entry, model, frame_size: int):
        self.entry, self.model, self.cfg = entry, model, FrameSize(int(frame_size))

    def reenact(self, source, driver):
        return self.entry.reenact(self.model, source, driver)


def load_reenactor(workdir: str | Path):
    """What ``vasajax face-recon`` evaluates: VASA's ``FaceLatentModel`` itself, another renderer's model behind a
    :class:`Reenactor` at its frame size."""
    cfg = load_config(workdir)
    if cfg.renderer == "vasa":
        return load_model(workdir)
    return Reenactor(cfg.entry, load_model(workdir), cfg.entry.frame_size(cfg.model))


def vasa_config(workdir: str | Path, what: str) -> FaceTrainConfig:
    """The config of a run that tool ``what`` (which works on VASA-1's face latent model only) can use; a run of
    another renderer is a UserError that says how to use it (export it: ``RENDERERS`` loads the export)."""
    cfg = load_config(workdir)
    if cfg.renderer != "vasa":
        raise UserError(
            f"{what} works on VASA-1's face latent model; {workdir} trained renderer {cfg.renderer!r}: export it "
            f"(vasajax export --face-run {workdir} --out DIR) and pass the export where a renderer is taken"
        )
    return cfg


def load_vasa_model(workdir: str | Path, what: str):
    """:func:`load_model` after :func:`vasa_config`'s check."""
    vasa_config(workdir, what)
    return load_model(workdir)


# ----------------------------------------------------------------------------------------------- CLI


def build_config(args: argparse.Namespace) -> FaceTrainConfig:
    """The run config of parsed ``train-face`` options (preset + overrides)."""
    overrides = common.run_overrides(args)
    if args.renderer != "vasa" and args.config == "small_warp":
        raise UserError("--config small_warp is VASA's (pixel-warp decoder); use tiny, small or paper")
    cfg = FaceTrainConfig.preset(args.config, args.vgg_weights, args.renderer, **overrides)
    optim = {}
    if args.lr is not None:
        optim["lr"] = args.lr
    if args.accum is not None:
        optim["accum_steps"] = args.accum
    if args.warmup is not None:
        optim["warmup_steps"] = args.warmup
    if args.ema_decay is not None:
        optim["ema_decay"] = args.ema_decay
    cfg = dataclasses.replace(
        cfg,
        optim=dataclasses.replace(cfg.optim, **optim),
        disc_optim=dataclasses.replace(
            cfg.disc_optim, **{k: v for k, v in optim.items() if k not in ("accum_steps", "ema_decay")}
        ),
        adversarial=not args.no_gan,
        init_from=args.init_from,
        init_skip=tuple(args.init_skip),
        freeze=tuple(args.freeze),
    )
    if args.loss:
        cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, **parse_loss_overrides(args.loss, cfg.loss)))
    if args.model:
        model = dataclasses.replace(cfg.model, **parse_model_overrides(args.model, cfg.model))
        size = cfg.entry.frame_size(model)
        cfg = dataclasses.replace(cfg, model=model, pairs=dataclasses.replace(cfg.pairs, size=size))
    return cfg


def parse_model_overrides(items: list[str], model_cfg: Any) -> dict[str, Any]:
    """``["pixel_warp=1", "g2d_blocks=2", "g3d_channels=32,64"]`` → ``{"pixel_warp": True, "g2d_blocks": 2,
    "g3d_channels": (32, 64)}`` for the bool, int, float, str and int-tuple fields of
    :class:`~vasajax.face.config.FaceConfig` (or another renderer's model config); anything else, or a config that
    does not validate, is a UserError."""
    kinds = {f.name: type(getattr(model_cfg, f.name)) for f in dataclasses.fields(model_cfg)}
    settable = sorted(k for k, t in kinds.items() if t in (bool, int, float, str, tuple))
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        kind = kinds.get(key)
        if not sep or kind not in (bool, int, float, str, tuple):
            raise UserError(f"--model {item!r}: expected NAME=VALUE with NAME one of {', '.join(settable)}")
        try:
            if kind is bool:
                if value.lower() not in ("0", "1", "true", "false"):
                    raise ValueError
                out[key] = value.lower() in ("1", "true")
            elif kind is tuple:
                out[key] = tuple(int(v) for v in value.split(","))
            elif kind is str:
                out[key] = value
            else:
                out[key] = float(value) if kind is float else int(value)
        except ValueError:
            want = {bool: "0/1/true/false", tuple: "comma-separated integers"}.get(kind, f"a {kind.__name__}")
            raise UserError(f"--model {item!r}: {key} takes {want}") from None
    try:
        dataclasses.replace(model_cfg, **out)
    except ValueError as e:
        raise UserError(f"--model: {e}") from None
    return out


def parse_loss_overrides(items: list[str], loss_cfg: Any) -> dict[str, float]:
    """``["transfer_weight=0", ...]`` → ``{"transfer_weight": 0.0}``; unknown or non-numeric keys are a UserError.

    Only numeric fields of :class:`~vasajax.face.losses.FaceLossConfig` can be set this way (weights, margins,
    scales): enough to ablate any term from the command line.
    """
    numeric = {f.name for f in dataclasses.fields(loss_cfg) if isinstance(getattr(loss_cfg, f.name), int | float)}
    out: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in numeric:
            raise UserError(f"--loss {item!r}: expected NAME=NUMBER with NAME one of {', '.join(sorted(numeric))}")
        try:
            num = float(value)
        except ValueError:
            raise UserError(f"--loss {item!r}: {value!r} is not a number") from None
        out[key] = int(num) if isinstance(getattr(loss_cfg, key), int) and num.is_integer() else num
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vasajax train-face", description=__doc__.split("\n")[0])
    p.add_argument("--config", choices=sorted(PRESETS), default="tiny", help="model/run preset")
    p.add_argument(
        "--renderer",
        default="vasa",
        help="trainable renderer (vasajax.stages.RENDERER_TRAINING): vasa (VASA-1's face latent model) or "
        "liveportrait (LivePortrait's F, M, W, G)",
    )
    p.add_argument("--data", required=True, help="clip shards from `vasajax prep` or `vasajax synth` (folder)")
    p.add_argument("--workdir", required=True, help="run folder (created; resumed if it holds checkpoints)")
    p.add_argument("--steps", type=int, help="total optimiser steps of the run (sets the cosine schedule)")
    p.add_argument("--stop-after", type=int, help="stop with a checkpoint after this many steps in this job")
    p.add_argument(
        "--time-limit",
        type=float,
        help="stop with a checkpoint at the first step after this many seconds of training in this job (set-up and "
        "compilation in the first step do not count), e.g. to fit a fixed budget of accelerator time",
    )
    p.add_argument("--batch", type=int, help="global batch size")
    p.add_argument("--accum", type=int, help="gradient accumulation micro-batches per step")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--warmup", type=int, help="warm-up steps")
    p.add_argument("--ema-decay", type=float, help="EMA decay of the sampling weights (short runs want ~0.99)")
    p.add_argument("--seed", type=int)
    p.add_argument("--fsdp", type=int, help="devices per FSDP group (params sharded over them)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 compute (params and optimiser stay float32)")
    p.add_argument("--no-gan", action="store_true", help="reconstruction losses only (no discriminator)")
    p.add_argument("--vgg-weights", help="torchvision vgg19 state dict for the VGG perceptual loss (else SSIM)")
    p.add_argument(
        "--loss",
        action="append",
        metavar="NAME=VALUE",
        help="override one loss setting, e.g. --loss transfer_weight=0 (repeatable; ablations, cheaper CPU runs)",
    )
    p.add_argument(
        "--model",
        action="append",
        metavar="NAME=VALUE",
        help="override one model setting, e.g. --model pixel_warp=1 (repeatable; design comparisons)",
    )
    p.add_argument(
        "--init-from",
        metavar="RUN",
        help="start from the latest weights of this stage-1 run (same model; fresh optimiser): fine-tuning",
    )
    p.add_argument(
        "--init-skip",
        metavar="PART",
        action="append",
        default=[],
        help="with --init-from: a model part not to carry over, e.g. warp_to_driver (repeatable; swapping a module)",
    )
    p.add_argument(
        "--freeze",
        metavar="PART",
        action="append",
        default=[],
        help="a model part the optimiser leaves unchanged, e.g. motion_encoder (repeatable; motion latents stay valid)",
    )
    p.add_argument("--log-every", type=int)
    p.add_argument("--ckpt-every", type=int)
    p.add_argument("--sample-every", type=int)
    p.add_argument("--workers", type=int, default=0, help="data worker processes (0: threads in this process)")
    p.add_argument("--coordinator", help="multi-host: coordinator host:port (SLURM is detected without it)")
    p.add_argument("--num-processes", type=int)
    p.add_argument("--process-id", type=int)
    return p


def cli_main(argv: list[str] | None = None) -> int:
    """``vasajax train-face``: returns 0 when the run is complete, ``EXIT_STOPPED`` when it stopped early."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    common.init_distributed(args.coordinator, args.num_processes, args.process_id)
    cfg = build_config(args)
    out = train(
        cfg, args.data, args.workdir, stop_after=args.stop_after, time_limit=args.time_limit, workers=args.workers
    )
    if common.is_main_process():
        print(json.dumps({"step": out["step"], "stopped": out["stopped"], **out["metrics"]}))
    return EXIT_STOPPED if out["stopped"] else 0


if __name__ == "__main__":
    from vasajax.cli import run

    raise SystemExit(run(cli_main))
