# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Multi-GPU training: meshes, shardings, `shard_map`, FSDP and many hosts
#
# VASA-1 (Xu et al. 2024) trains both of its stages on many GPUs: the face latent space of §3.1 (MegaPortraits'
# recipe, 512² images) and the motion diffusion transformer of §3.2. The paper says nothing about *how* the
# work is split; vasajax uses the approach JAX recommends today, and this notebook takes it apart:
#
# 1. a **device mesh** with axes `('data', 'fsdp')`, built exactly as the trainers build it
#    (`vasajax.train.common.make_mesh`);
# 2. **shardings**: which device holds which block of an array (`NamedSharding`, `PartitionSpec`);
# 3. **data parallelism** twice: written by hand with `shard_map` (the successor of `pmap`) and written as
#    plain `jax.jit` over sharded arrays, where XLA inserts the communication — same numbers;
# 4. **FSDP** (fully sharded data parallel, ZeRO-3): how many bytes of the *paper-size* face model each device
#    holds for 1, 2, 4 or 8 shards, computed from the trainer's own shardings without allocating the model;
# 5. **one real sharded training step** of the stage-2 trainer on 8 devices;
# 6. **many hosts**: `jax.distributed`, the `--coordinator/--num-processes/--process-id` flags and the SLURM
#    script `train/slurm/train_face.sbatch`.
#
# **No GPUs needed.** XLA can split the CPU into several *simulated* devices. They share the same cores, so
# nothing gets faster, but every program below is partitioned, compiled and run exactly as on 8 GPUs: the
# same shardings, the same collectives (all-reduce, all-gather), the same results. That is also how the test
# suite checks the trainers (4 simulated devices, `tests/conftest.py`).
#
# The device count must be set **before JAX starts its backend**, i.e. before the first array is created, so
# it is the first line of the first code cell (`jax.config.update("jax_num_cpu_devices", 8)`; the older way is
# the environment variable `XLA_FLAGS=--xla_force_host_platform_device_count=8`). If you re-run the notebook,
# restart the kernel first. On a machine with GPUs, `jax.devices()` lists the GPUs instead and the cells below
# use however many there are.
#
# **Smoke or full run.** By default (*smoke* mode, what the test suite runs) the training step uses the `tiny`
# motion DiT and a handful of steps on random numbers, so the notebook runs in about a minute on a laptop CPU.
# Set `VASAJAX_FULL=1` before starting Jupyter (or write `FULL = True` in the next cell) for the *full* run: the
# `small` DiT, more steps, and a real two-process `jax.distributed` launch on localhost.

# %%
import jax

jax.config.update("jax_num_cpu_devices", 8)  # 8 simulated CPU devices: before anything touches a device

import functools
import inspect
import math

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from vasajax import notebook as nb
from vasajax.train import common, face, motion

try:  # JAX ≥ 0.6 (the only place from JAX 0.11 on)
    from jax import shard_map

    PER_DEVICE = {"check_vma": False}  # plain per-device semantics, as in pmap (section 3)
except ImportError:  # older JAX
    from jax.experimental.shard_map import shard_map

    PER_DEVICE = {"check_rep": False}

FULL = nb.full_run()
devices = jax.devices()
print(f"full run: {FULL}; JAX {jax.__version__}; {len(devices)} devices: {devices}")

# %% [markdown]
# ## 1 · The mesh
#
# A **mesh** arranges the devices in an $n$-dimensional grid with named axes. The trainers use two axes:
#
# * `data`: devices along it see *different examples* with the *same parameters* (data parallelism);
# * `fsdp`: devices along it also see different examples, but each keeps only a *slice* of every large
#   parameter and of its optimiser state; a layer's full weights are gathered just before it is used.
#
# `make_mesh(fsdp=F)` puts $F$ consecutive devices on the `fsdp` axis (on a GPU node: GPUs linked by NVLink)
# and the rest on `data`, so $|\text{data}| \cdot |\text{fsdp}| = N$ devices. Here is the whole function:

# %%
print(inspect.getsource(common.make_mesh))
mesh = common.make_mesh(fsdp=2)
print("mesh shape:", dict(mesh.shape))
print("device ids (rows = data, columns = fsdp):\n", np.vectorize(lambda d: d.id)(mesh.devices))

# %% [markdown]
# ## 2 · Shardings: who holds which block
#
# A `NamedSharding(mesh, PartitionSpec(...))` says, per array dimension, which mesh axis (or axes) it is split
# over; `None` (or a missing entry) means "not split", so the block is **replicated** along the unused mesh
# axes. The trainers use three kinds (`vasajax.train.common`):
#
# | what | spec | meaning |
# |---|---|---|
# | a batch | `P(('data', 'fsdp'))` | examples split over *all* $N$ devices (`batch_sharding`) |
# | a small parameter, or any with `fsdp = 1` | `P()` | a full copy on every device (`replicated`) |
# | a large parameter under FSDP | e.g. `P(None, 'fsdp')` | columns split over `fsdp`, copies along `data` (`fsdp_shardings`) |
#
# Every sharded `jax.Array` knows its layout: `x.sharding.devices_indices_map(x.shape)` maps each device to
# the slice of `x` it holds, and `x.addressable_shards` are the blocks themselves. The small function below
# draws one rectangle per distinct block, labelled with the devices that hold it (smoke and full mode alike:
# these are just layouts, no model involved).


# %%
def show_sharding(ax, x, title):
    blocks = {}  # (row range, column range) → ids of the devices holding that block
    for dev, idx in x.sharding.devices_indices_map(x.shape).items():
        key = tuple(sl.indices(n)[:2] for sl, n in zip(idx, x.shape, strict=True))
        blocks.setdefault(key, []).append(dev.id)
    for k, (((r0, r1), (c0, c1)), ids) in enumerate(sorted(blocks.items())):
        ax.add_patch(plt.Rectangle((c0, r0), c1 - c0, r1 - r0, fc=plt.cm.Pastel1(k % 9), ec="k"))
        label = "device " + ",".join(map(str, sorted(ids)))
        ax.text((c0 + c1) / 2, (r0 + r1) / 2, label, ha="center", va="center", fontsize=7, wrap=True)
    ax.set(xlim=(0, x.shape[1]), ylim=(x.shape[0], 0), title=title, xlabel="column", ylabel="row")


batch = jax.device_put(jnp.arange(16.0 * 4).reshape(16, 4), common.batch_sharding(mesh))
weight = jax.device_put(jnp.ones((8, 8)), NamedSharding(mesh, P(None, "fsdp")))
bias = jax.device_put(jnp.zeros((8, 8)), common.replicated(mesh))
fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
for ax, (name, x) in zip(
    axes, (("batch 16×4\nP(('data', 'fsdp'))", batch), ("weight 8×8\nP(None, 'fsdp')", weight), ("bias 8×8\nP()", bias))
):
    show_sharding(ax, x, f"{name}: blocks of {x.addressable_shards[0].data.shape}")
fig.tight_layout()
plt.show()

# %% [markdown]
# Reading the picture: the batch's 16 rows are cut into 8 slices of 2 rows, one per device; the weight's
# columns are cut in 2 (the `fsdp` axis), and each half lives on the 4 devices of one `fsdp` column of the
# mesh — devices 0, 2, 4, 6 hold the left half, 1, 3, 5, 7 the right (the `data` axis holds copies); the
# replicated array is one block held by all 8 devices. JAX has a built-in text version of the same picture,
# `jax.debug.visualize_array_sharding(x)` (colours in a notebook, rich text in a terminal):

# %%
jax.debug.visualize_array_sharding(weight)

# %% [markdown]
# ## 3 · Data parallelism, by hand (`shard_map`) and by the compiler (`jit`)
#
# With a global batch of $B$ examples split over $N$ devices ($B/N$ each), the gradient of the mean loss is
# the mean of the per-device gradients:
# $$
# \nabla_\theta \frac{1}{B}\sum_{i=1}^{B} \ell(\theta; x_i)
#   \;=\; \frac{1}{N}\sum_{d=1}^{N} \underbrace{\nabla_\theta \frac{N}{B}\sum_{i \in \text{shard } d} \ell(\theta; x_i)}_{g_d\ \text{(computed on device } d)}
# $$
# so every device computes $g_d$ on its own examples and one **all-reduce** (`psum` / `pmean`) averages them.
#
# *The old way* was `jax.pmap(grad_fn, axis_name='i')` with `jax.lax.pmean(g, 'i')` inside: one Python-level
# function per device over a 1-D device axis, its own compilation path, and stacked per-device inputs. `pmap`
# is in maintenance mode (and is itself implemented with `shard_map` in current JAX). Its successor is
# **`shard_map`**: you write the per-device program, and say with `in_specs`/`out_specs` how global arrays map
# to per-device blocks over a (multi-axis) mesh; it composes with `jit`. Below: a linear model's squared loss
# on a batch split over both mesh axes; the per-device gradient is averaged with `pmean` over `('data', 'fsdp')`.
#
# One subtlety. We pass `check_vma=False` (`check_rep=False` in older JAX; the first cell picks the right
# name): every device then runs a plain independent program, exactly as under `pmap`, and the `pmean` is what
# combines the gradients. With the default checking on, `shard_map` *knows* `w` is the same on every device, so
# `jax.grad` with respect to `w` already returns the per-device gradients **summed** over devices (the
# transpose of broadcasting `w` to all of them is a sum), and the same code gives $N$ times the true gradient
# (the `pmean` then has nothing left to average). Try it (see the end of the notebook).
#
# *The vasajax way* writes no per-device code at all: `jax.jit` with the batch sharded and the parameters
# replicated, and the XLA SPMD partitioner inserts the same all-reduce. The trainers do only this.


# %%
def loss(w, x, y):
    return jnp.mean((x @ w - y) ** 2)


def per_device_grad(w, x, y):  # runs on one device with its own slice of x and y
    return jax.lax.pmean(jax.grad(loss)(w, x, y), common.DATA_AXES)


N = len(devices)
kx, ky, kw = jax.random.split(jax.random.key(0), 3)
x = jax.random.normal(kx, (4 * N, 3))
y = jax.random.normal(ky, (4 * N,))
w = jax.random.normal(kw, (3,))

dp = common.make_mesh(fsdp=1)  # pure data parallel: ('data', 'fsdp') = (N, 1)
specs = dict(in_specs=(P(), P(common.DATA_AXES), P(common.DATA_AXES)), out_specs=P())
by_hand = jax.jit(shard_map(per_device_grad, mesh=dp, **specs, **PER_DEVICE))
by_jit = jax.jit(
    jax.grad(loss),
    in_shardings=(common.replicated(dp), common.batch_sharding(dp), common.batch_sharding(dp)),
    out_shardings=common.replicated(dp),
)
g_hand, g_jit, g_one = by_hand(w, x, y), by_jit(w, x, y), jax.grad(loss)(w, x, y)
print("shard_map + pmean:", np.asarray(g_hand))
print("jit + shardings:  ", np.asarray(g_jit))
print("one device:       ", np.asarray(g_one))
print("max |difference|:", float(jnp.max(jnp.abs(g_hand - g_jit))), float(jnp.max(jnp.abs(g_jit - g_one))))
print("all-reduces XLA put in the jit version:", by_jit.lower(w, x, y).compile().as_text().count("all-reduce("))

# %% [markdown]
# The three gradients agree to float32 rounding (summing in a different order changes the last bits), and the
# compiled `jit` program contains the all-reduce we wrote by hand. Where would you still use `shard_map`?
# For code that must talk to its neighbours explicitly (ring attention, pipeline stages, custom collectives):
# vasajax does not need it, and its model code never mentions devices.
#
# ## 4 · FSDP for the paper-size face model, without allocating it
#
# Data parallelism keeps a full copy of the **train state** on every device: parameters $\theta$, Adam's two
# moment estimates $m, v$, and the EMA of $\theta$ — four numbers per parameter, plus the discriminator's.
# FSDP (ZeRO-3) splits each large array over the `fsdp` axis instead, so a device holds about
# $$
# \text{bytes}(F) \;\approx\; \frac{\text{bytes of the sharded arrays}}{F} \;+\; \text{bytes of the replicated ones},
# $$
# and XLA all-gathers a layer's weights where the forward and backward passes use them (and reduce-scatters its
# gradient). The rule (`fsdp_spec`) looks at shapes only, so $m$, $v$ and the EMA get their parameter's layout:

# %%
print(inspect.getsource(common.fsdp_spec))

# %% [markdown]
# `jax.eval_shape` runs the trainer's `init_state` for `FaceTrainConfig.paper()` (512², 114.9 M generator
# parameters, plus the discriminator) *abstractly*: it returns shapes and dtypes, no memory is allocated. With
# the trainer's `fsdp_shardings` on meshes with $F$ = 1, 2, 4, 8, each sharding tells us the shape of the block
# one device holds (`sharding.shard_shape`). The CPU devices stand in for GPUs: nothing runs on them.

# %%
paper = face.FaceTrainConfig.paper()
abstract = jax.eval_shape(functools.partial(face.init_state, paper))
cpus = jax.devices("cpu")


def mib_per_device(tree, shardings):
    leaves = zip(jax.tree.leaves(tree), jax.tree.leaves(shardings), strict=True)
    return sum(math.prod(s.shard_shape(x.shape)) * x.dtype.itemsize for x, s in leaves) / 2**20


fsdps = [f for f in (1, 2, 4, 8) if len(cpus) % f == 0]
leaves, rows = jax.tree.leaves(abstract), []
for f in fsdps:
    sh = common.fsdp_shardings(abstract, common.make_mesh(f, devices=cpus), paper.run.fsdp_min_size)
    rows.append((mib_per_device(abstract["gen"]["params"], sh["gen"]["params"]), mib_per_device(abstract, sh)))
    kept = [x for x, s in zip(leaves, jax.tree.leaves(sh), strict=True) if s.spec == P()]  # replicated arrays
    kept_mib = sum(math.prod(x.shape) * x.dtype.itemsize for x in kept) / 2**20
    print(
        f"fsdp={f}: generator params {rows[-1][0]:6.1f} MiB/device, whole train state {rows[-1][1]:6.1f} MiB/device"
        f" ({len(kept)} of {len(leaves)} arrays replicated: {kept_mib:6.1f} MiB)"
    )

# %%
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.bar(np.arange(len(fsdps)) - 0.2, [r[1] for r in rows], 0.4, label="whole train state (gen + disc, Adam, EMA)")
ax.bar(np.arange(len(fsdps)) + 0.2, [r[0] for r in rows], 0.4, label="generator parameters")
ax.plot(np.arange(len(fsdps)) - 0.2, [rows[0][1] / f for f in fsdps], "k--", lw=1, label="ideal 1/F")
ax.set(
    xticks=range(len(fsdps)),
    xticklabels=[f"fsdp={f}" for f in fsdps],
    ylabel="MiB per device",
    title="FaceTrainConfig.paper(): state held by one device",
)
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# The state shrinks nearly as $1/F$, but not quite: arrays below `fsdp_min_size` ($2^{18}$ elements: biases,
# norms, small convolutions) stay replicated. They are most of the arrays (about 1,550 of 1,781) but only about
# 104 MiB of the 1.8 GiB — which at $F = 8$ is already a third of what a device holds, so the last bar sits
# visibly above the dashed line. These are exact numbers from the trainer's shardings, not a model of them.
#
# Keep the scale in mind, though: the whole paper train state is under 2 GiB, while one bf16 (L1-loss) training
# step at batch 8 peaks at 18.7 GiB on an H100 (README, measured) — **activations** dominate, and FSDP does not
# shard them. That is why `train/slurm/train_face.sbatch` defaults to `FSDP=1` (plain data parallelism over 8 GPUs per
# node); `--fsdp` matters for bigger models, or when you trade memory for a larger per-GPU batch.
# `--accum K` (gradient accumulation) is the other memory knob: it cuts activation memory by running a step as K
# micro-batches.
#
# ## 5 · One real sharded training step (stage 2)
#
# Now the real thing: the stage-2 trainer (`vasajax.train.motion`, the motion DiT of §3.2, which compiles about
# twice as fast on a CPU as the stage-1 step) on the 8 devices, with `fsdp=2` (so `data=4`). `motion.compiled`
# returns what `vasajax train-motion` itself uses: the abstract state, its shardings from `fsdp_shardings`, a
# jitted `init` that creates the state directly in its shards (it is never assembled in one place), and the
# jitted step — `train_step` with `in_shardings`/`out_shardings` and the state **donated** (its buffers are
# reused for the new state):

# %%
print(inspect.getsource(motion.jit_train_step))

# %% [markdown]
# The `tiny` DiT's matrices are far below the default `fsdp_min_size` of $2^{18}$ elements, so here we lower it
# to 4096 to see them split. The batch is **random numbers** shaped like real motion windows (W + K frames of
# motion, audio features, gaze, distance, emotion): this checks the plumbing, it does not teach the model to
# talk (`vasajax train-motion` on motion shards does that). Both smoke and full mode use random data; full mode
# uses the `small` DiT, a bigger batch and more steps. The first step compiles the program (most of the time of
# the cell below); each further step of the `tiny` DiT takes a fraction of a second.

# %%
FSDP = 2 if len(devices) % 2 == 0 else 1
BATCH = nb.pick(smoke=2, full=4) * len(devices)
preset = nb.pick(smoke=motion.MotionTrainConfig.tiny, full=motion.MotionTrainConfig.small)
STEPS = nb.pick(smoke=40, full=200)
cfg = preset(batch_size=BATCH, steps=STEPS, fsdp=FSDP, fsdp_min_size=4096, seed=0)
train_mesh = common.make_mesh(cfg.run.fsdp)
graphdef, abstract_state, shardings, init, train_step = motion.compiled(cfg, train_mesh)
state = init()

sharded = {
    jax.tree_util.keystr(k): (v.shape, v.sharding.spec)
    for k, v in jax.tree_util.tree_leaves_with_path(state["params"])
    if v.sharding.spec != P()
}
print(f"{len(sharded)} of {len(jax.tree.leaves(state['params']))} parameter arrays are split over 'fsdp', e.g.:")
for name, (shape, spec) in list(sharded.items())[:4]:
    print(f"  {name:45s} {shape}  {spec}")
print(
    f"train state per device: {mib_per_device(state, shardings):.3f} MiB "
    f"(replicated it would be {mib_per_device(state, common.fsdp_shardings(state, common.make_mesh(1))):.3f} MiB)"
)
fig, ax = plt.subplots(figsize=(6, 2.2))
show_sharding(ax, state["params"]["blocks"][0]["fc1"]["kernel"][...], "blocks[0].fc1.kernel of the DiT")
plt.show()

# %% [markdown]
# The MLP weight `fc1` ($64 \times 256$ in `tiny`) is split into two column blocks, one per `fsdp` index, each
# copied along `data` — exactly the layout of the toy weight in section 2. Now a few steps. Each process feeds
# **its own** slice of the global batch (`common.global_batch` → `jax.make_array_from_process_local_data`;
# with one process that is the whole batch), and the step returns replicated scalars.

# %%
L = cfg.model.window + cfg.model.context  # W generated frames + K context frames
rng = np.random.default_rng(0)
host = {
    "motion": rng.standard_normal((BATCH, L, cfg.model.motion_dim), np.float32),
    "audio": rng.standard_normal((BATCH, L, cfg.model.audio_dim), np.float32),
    "gaze": rng.uniform(-0.3, 0.3, (BATCH, 2)).astype(np.float32),
    "distance": rng.uniform(0.8, 1.2, (BATCH, 1)).astype(np.float32),
    "emotion": np.zeros((BATCH, 52), np.float32),
}
global_batch = common.global_batch(host, train_mesh)
print(
    "global batch 'motion':",
    global_batch["motion"].shape,
    global_batch["motion"].sharding.spec,
    "→ per device",
    global_batch["motion"].addressable_shards[0].data.shape,
)
history = []
for _ in range(STEPS):
    state, metrics = train_step(state, global_batch)  # first call compiles (most of this cell's time)
    history.append({k: float(v) for k, v in metrics.items()})
print("step", int(state["step"]), {k: round(v, 4) for k, v in history[-1].items()})

# %%
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(range(1, len(history) + 1), [h["loss"] for h in history], "o-", ms=3)
ax.set(
    xlabel="step",
    ylabel="loss (eq. 1 + velocity term)",
    title=f"stage-2 {'small' if FULL else 'tiny'} DiT, data={train_mesh.shape['data']} × fsdp={FSDP}, random batch",
)
plt.show()

# %% [markdown]
# With one fixed random batch the loss goes down as the DiT memorises it; the curve is noisy because every step
# draws new diffusion times and condition dropouts (§3.2), and it says nothing about lip sync — the batch is
# random. What it does show: a sharded, donated, FSDP train step that trains. The test suite checks the harder property on the stage-1 trainer: one
# step on 4 devices gives the same losses and parameter updates as on 1 device
# (`tests/test_train_face.py::test_one_step_on_4_devices_equals_1_device`), and 2 processes match 1 process.
#
# While compiling the step, XLA may print a warning `Involuntary full rematerialization` about a 2×64
# intermediate of the backward pass: its SPMD partitioner found no cheap way from the batch-split layout to the
# `fsdp` layout and copied the array whole instead. Harmless at this size; on a big model, warnings like this
# point at layouts worth fixing (an explicit `jax.lax.with_sharding_constraint` in the step is the usual cure).
#
# ## 6 · Many hosts: `jax.distributed`
#
# One process drives the GPUs of one node (or one GPU). Before anything touches a device, every process calls
# `jax.distributed.initialize(coordinator_address, num_processes, process_id)`: process 0 runs a small
# coordination service at `coordinator_address`, the others connect, and from then on `jax.devices()` lists
# **every device of every process** (`jax.local_devices()` only this process's). A mesh built from
# `jax.devices()` spans the cluster, and the same jitted step runs unchanged; XLA routes collectives over
# NVLink inside a node and over the network between nodes (NCCL on GPUs; gloo on CPUs).
#
# In vasajax this is `common.init_distributed()`, called first by `vasajax train-face` and `train-motion`.
# It looks, in order, at:
#
# * the flags `--coordinator HOST:PORT --num-processes N --process-id I` (every process gets the same
#   coordinator and count, and its own id from 0 to N−1);
# * the environment variables `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`;
# * a SLURM job step with more than one task (`srun`): JAX reads `SLURM_*` itself (coordinator = first node,
#   process id = task rank), so no flag is needed;
#
# and otherwise does nothing (a single-process run). Each process then reads a **disjoint slice of the clips**
# (the loader shards by `jax.process_index()`), passes its local batch of `global_batch / num_processes`
# examples to `common.global_batch`, and `jax.make_array_from_process_local_data` stitches the global array.
# Checkpoints are written cooperatively by orbax (the run folder must be on a shared filesystem); logs and
# sample images come from process 0 only.
#
# **On SLURM** (`train/slurm/train_face.sbatch`): `--nodes=N --ntasks-per-node=1 --gpus-per-node=8`, one
# process per node driving its 8 GPUs; the global batch defaults to 2 per GPU
# (`BATCH=$((SLURM_JOB_NUM_NODES * 8 * 2))`), `FSDP=1`, `--bf16`; `--signal=TERM@300` asks SLURM for a SIGTERM
# five minutes before the time limit, on which every process saves the same step and exits with status 75, and
# the script then runs `scontrol requeue` so the next allocation resumes from that checkpoint:
#
# ```bash
# DATA=/data/vox2-clips WORKDIR=/shared/runs/face-paper sbatch --nodes=4 train/slurm/train_face.sbatch
# ```
#
# **By hand** (any cluster, or two processes on one machine — what `tests/test_train_face.py` does on CPU):

# %%
launch = "vasajax train-face --config tiny --data D --workdir R --coordinator 127.0.0.1:12355 --num-processes 2"
print(f"{launch} --process-id 0 &\n{launch} --process-id 1")

# %% [markdown]
# In the full run, the next cell really starts two processes on this machine (one CPU device each, gloo
# collectives): each joins through `common.init_distributed`, then they all-gather their process ids — a
# cross-process collective. In smoke mode it only says so (two more JAX start-ups would double the run time).

# %%
if FULL:
    import os
    import socket
    import subprocess
    import sys

    code = (
        "import sys, jax, numpy as np\nfrom jax.experimental import multihost_utils\n"
        "from vasajax.train import common\ncommon.init_distributed(sys.argv[1], 2, int(sys.argv[2]), timeout_s=60)\n"
        "ids = multihost_utils.process_allgather(np.array([jax.process_index()])).ravel().tolist()\n"
        "print(f'process {jax.process_index()} of {jax.process_count()}: {jax.device_count()} devices, ids {ids}')"
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, f"127.0.0.1:{port}", str(i)],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i in range(2)
    ]
    for p in procs:
        print(p.communicate(timeout=300)[0].strip().splitlines()[-1])
else:
    print("smoke mode: the two-process launch runs only in the full run (VASAJAX_FULL=1)")

# %% [markdown]
# ## What to try next
#
# * Change `make_mesh(fsdp=2)` in section 1 to `fsdp=4` or `8` and re-run sections 2 and 5: watch the blocks of
#   `fc1` get thinner and the train state per device shrink.
# * In section 3, drop `**PER_DEVICE` (turning JAX's replication checks back on) and see the `shard_map`
#   gradient come out $N$ = 8 times too large. With `**PER_DEVICE` kept, no `pmean` and
#   `out_specs=P(common.DATA_AXES)` you get the 8 per-device gradients $g_d$ side by side instead.
# * Print `train_step.lower(state, global_batch).compile().as_text()` and search for `all-gather` and
#   `reduce-scatter` (FSDP) versus `all-reduce` (data parallel); compare with `fsdp=1`.
# * Restart the kernel with `jax_num_cpu_devices` = 4 and `BATCH = 16` in section 5: the first step's loss
#   should match the 8-device run up to float rounding (the same global batch, split differently).
# * Run `python benchmarks/train.py --config tiny --devices 1 2 4` for stage-1 step times on simulated devices,
#   and on a GPU node `python benchmarks/train.py --config paper --bf16 --batch 8` for the real memory peak.
# * Launch the two-process command above yourself on synthetic shards (`vasajax synth --shards --out D ...`)
#   and compare `R/metrics.jsonl` with a single-process run of the same global batch.
