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
# # 03 · Stage 2: training the motion diffusion transformer
#
# VASA-1 splits talking-face generation in two. Stage 1 (notebook 02) learns a face latent space in which every
# video frame is a motion vector $x = [z_\text{pose}, z_\text{dyn}]$: head pose (yaw, pitch, roll, translation)
# and facial dynamics (lips, eyes, expression). Stage 2, this notebook, learns to **generate sequences of those
# vectors from speech**: a diffusion model over whole windows of motion, $X \in \mathbb{R}^{W \times M}$ ($W$
# frames, $M$ motion dimensions), conditioned on the audio and a few control signals (VASA-1 §3.2).
#
# What you will see:
#
# 1. the training data: motion shards made by `vasajax encode-dataset` from SynthTalk clips;
# 2. the forward (noising) process $q(X_t \mid X_0)$ with the cosine schedule;
# 3. the denoiser's objective: predict $X_0$ itself, with random condition dropout;
# 4. classifier-free guidance over several conditions (the paper's eq. 2);
# 5. a short training run with `vasajax.train.motion`, and sampled motion against the ground truth;
# 6. long clips as sliding windows stitched by the previous window's last frames, and how big the jumps at the
#    seams are.
#
# Code: `src/vasajax/motion/diffusion.py` (schedule, loss, CFG, samplers), `motion/dit.py` (the transformer
# $\mathcal{H}$), `motion/generate.py` (windows), `train/motion.py` (the trainer), `train/encode_dataset.py`.

# %% [markdown]
# ## Smoke run or full run
#
# Every notebook of the course runs in two sizes. **Smoke** (the default, and what the test suite executes):
# tiny SynthTalk data (3 training clips), the tiny DiT (2 layers, width 64, windows of $W=16$ frames with
# $K=4$ context frames) and 150 training steps: the whole notebook runs in about a minute on a laptop CPU,
# and the model has only started to learn, so read the smoke pictures as "the plumbing works", not as results.
# **Full**: 200 SynthTalk clips, the `small` DiT (6 layers, width 256, $W=50$, $K=10$) and thousands of steps
# (tens of minutes on a CPU). Switch with `VASAJAX_FULL=1` in the environment before starting Jupyter, or set
# `FULL = True` below.

# %%
import dataclasses
import json

import jax
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image

from vasajax import notebook as nb
from vasajax.data import loader
from vasajax.data.synth import shards as synth_shards
from vasajax.data.synth.config import SynthConfig
from vasajax.data.synth.inputs import load_portraits
from vasajax.data.synth.portrait import prepare_portraits
from vasajax.eval import ablation
from vasajax.motion import audio as audio_lib
from vasajax.motion import diffusion, generate
from vasajax.train import encode_dataset as ed
from vasajax.train import motion as tm

FULL = nb.full_run()
OUT = nb.out_dir("03_train_motion_diffusion")
print("full run" if FULL else "smoke run", "→ outputs in", OUT)

# %% [markdown]
# ## 1 · Training data: motion shards
#
# Stage 2 never looks at pixels. `vasajax encode-dataset` turns clip shards (from `vasajax prep` on real videos,
# or `vasajax synth --shards`) into **motion records**: per frame the motion vector $x_i$, the audio features
# $a_i$ of that frame (two 20 ms log-mel slots per 40 ms video frame), and the clip's condition labels: gaze
# direction $g=(\theta,\phi)$, head distance $d$ and the emotion offset $e$ (mean of 52 blendshapes).
#
# Where does $x_i$ come from? VASA-1 runs the trained stage-1 motion encoder over every frame
# (`motion_source="encoder"`). SynthTalk also knows the *true* motion of each clip, so the `labels` source writes
# that instead: the head pose plus eight named dynamics (`mouth_open`, `jaw`, `blink`, gaze, `smile`, ...). We use
# `labels` here because it needs no trained stage 1 and every dimension has a name you can plot and check. Set
# `MOTION_SOURCE = "encoder"` to train on stage-1 latents as the paper does (it uses the stage-1 model of
# `nb.demo_checkpoint()` in a full run; the quick run's 96² clips are too small for it, so there a tiny model with
# random weights stands in and its latents are meaningless).

# %%
MOTION_SOURCE = "labels"  # or "encoder" (VASA-1: the stage-1 motion encoder)
SHARDS = nb.pick(
    smoke=synth_shards.ShardsConfig.tiny(),  # 96², 3 train + 2 held-out utterances
    full=synth_shards.ShardsConfig(synth=dataclasses.replace(SynthConfig(), size=128), num_train=200),
)
AUDIO = nb.pick(smoke=audio_lib.AudioConfig.tiny(), full=audio_lib.AudioConfig.small())  # 16 or 80 mel bins

data = OUT / nb.pick(smoke="data-smoke", full="data-full")
clips_dir, motion_dir = data / "synthtalk", data / f"motion-{MOTION_SOURCE}"
portraits = prepare_portraits(load_portraits(), SHARDS.synth)
synth_shards.write_dataset(clips_dir, SHARDS, portraits, workers=nb.pick(smoke=1, full=2))  # resumes if done

# %% [markdown]
# `encode_dataset` is the function behind `vasajax encode-dataset`; the manifest it writes names every motion
# dimension.

# %%
face_model = None
if MOTION_SOURCE == "encoder":
    from vasajax.checkpoint_export import load_export

    face_model = load_export(nb.demo_checkpoint(trained=FULL)).face_model
ecfg = ed.EncodeConfig(motion_source=MOTION_SOURCE, audio=AUDIO)
for split in ("train", "heldout"):
    m = ed.encode_dataset(clips_dir / split, motion_dir / split, ecfg, face_model=face_model)
    print(f"{split}: {m['totals']['records']} records, {m['totals']['frames']} frames")
NAMES = m["motion_names"]
print("motion dimensions:", NAMES)

# %% [markdown]
# One held-out record: its audio features (what the model listens to) above its motion (what it must produce).
# Mouth opening follows the syllables; head pose drifts slowly; blinks and gaze shifts are not in the audio at
# all, which is exactly why stage 2 is a *generative* model and not a regression: many motions fit one audio.

# %%
held = loader.RecordSource(motion_dir / "heldout")
rec = held.record(0)
T = rec.num_frames
MOUTH = tm.mouth_index(NAMES) or 6  # SynthTalk mouth_open (or jawOpen); first dynamics dim otherwise
secs = np.arange(T) / 25
fig, axes = plt.subplots(3, 1, figsize=(9, 5.5), sharex=True)
axes[0].imshow(rec.audio_feat_UxF.T, aspect="auto", origin="lower", extent=(0, T / 25, 0, AUDIO.n_mels))
axes[0].set_ylabel("log-mel bin")
axes[1].plot(secs, rec.motion_TxM[:, MOUTH], "k")
axes[1].set_ylabel(NAMES[MOUTH])
axes[2].plot(secs, np.degrees(rec.motion_TxM[:, :3]), label=NAMES[:3])
axes[2].set_ylabel("degrees")
axes[2].legend(fontsize=8, loc="upper right")
axes[2].set_xlabel("seconds")
fig.suptitle(f"held-out record {rec.source}: audio features A and motion X")
fig.tight_layout()

# %% [markdown]
# ## 2 · The forward process
#
# A diffusion model learns to undo a fixed noising process. Starting from clean motion $X_0$, each step adds a
# little Gaussian noise, $q(X_t \mid X_{t-1}) = \mathcal{N}(\sqrt{1-\beta_t}\,X_{t-1}, \beta_t I)$ (DDPM, which
# VASA-1 uses with $T=1000$ steps). Steps compose in closed form, so any noise level can be sampled directly:
#
# $$q(X_t \mid X_0) = \mathcal{N}\!\left(\sqrt{\bar\alpha_t}\,X_0,\ (1-\bar\alpha_t)\,I\right), \qquad
# \bar\alpha_t = \prod_{s \le t} (1-\beta_s), \qquad X_t = \sqrt{\bar\alpha_t}\,X_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon.$$
#
# The paper does not give the schedule $\beta_t$. We use the **cosine** schedule (Nichol & Dhariwal 2021),
# $\bar\alpha_t = f(t)/f(0)$ with $f(t) = \cos^2\!\big(\tfrac{t/T + s}{1+s}\cdot\tfrac{\pi}{2}\big)$, $s = 0.008$:
# the linear schedule of DDPM destroys a low-dimensional motion vector within the first two thirds of the steps,
# which wastes the last third of a 50-step sampler (plot: the signal-to-noise ratio
# $\bar\alpha_t / (1-\bar\alpha_t)$ of both). Diffusion runs on *normalised* motion (each dimension minus its
# training mean, over its standard deviation), so noise of unit variance means the same for every dimension.

# %%
tcfg = nb.pick(
    smoke=tm.MotionTrainConfig.tiny(steps=150, batch_size=16, log_every=10, sample_every=0, ckpt_every=1000),
    full=tm.MotionTrainConfig.small(steps=4000, log_every=50, sample_every=1000, ckpt_every=1000),
)
dcfg = tcfg.diffusion
stats = tm.norm_stats(motion_dir / "train")  # per-dimension mean / std of the training motion
abar = diffusion.alphas_cumprod(dcfg)
abar_lin = diffusion.alphas_cumprod(dataclasses.replace(dcfg, schedule="linear"))
fig, ax = plt.subplots(figsize=(5, 3))
ax.semilogy(abar / (1 - abar), label="cosine")
ax.semilogy(abar_lin / (1 - abar_lin), label="linear (DDPM)")
ax.set(xlabel="t", ylabel="SNR  ᾱ/(1−ᾱ)", title="noise schedules")
ax.legend()
fig.tight_layout()

# %% [markdown]
# The same clip's head yaw (normalised; grey) and one draw of $X_t$ (red) at six noise levels, all with the same
# $\varepsilon$: the signal fades as $\sqrt{\bar\alpha_t}$ while the noise grows as $\sqrt{1-\bar\alpha_t}$. The
# denoiser's job is to get from any of these back to the grey curve.

# %%
x0 = (rec.motion_TxM - stats["motion_mean"]) / stats["motion_std"]  # normalised X_0 (whole clip)
eps = np.random.default_rng(0).standard_normal(x0.shape).astype(np.float32)
fig, axes = plt.subplots(2, 3, figsize=(11, 4.5), sharex=True, sharey=True)
for ax, t in zip(axes.flat, [0, 100, 300, 500, 700, 900]):
    xt = diffusion.q_sample(x0[None], np.array([t]), eps[None], abar)[0]
    ax.plot(secs, x0[:, 0], color="0.6", lw=2, label="X_0")
    ax.plot(secs, xt[:, 0], "C3", lw=1, label="X_t")
    ax.set_title(f"t = {t}:  √ᾱ = {np.sqrt(abar[t]):.2f},  √(1−ᾱ) = {np.sqrt(1 - abar[t]):.2f}", fontsize=9)
axes[0, 0].legend(fontsize=8)
axes[1, 0].set(xlabel="seconds", ylabel="normalised yaw")
fig.tight_layout()

# %% [markdown]
# ## 3 · The denoiser predicts $X_0$, with condition dropout
#
# The network $\mathcal{H}$ (a DiT, `motion/dit.py`) sees the noisy window $X_t$, the step $t$ and the conditions
#
# $$C = [X_\text{pre}, A_\text{pre};\ A, g, d, e]$$
#
# (the last $K$ motion and audio frames of the previous window, this window's audio, main gaze, head distance,
# emotion offset) and predicts the **clean motion itself**, not the noise (VASA-1 eq. 1):
#
# $$\mathcal{L} = \mathbb{E}_{t,\,X_0,\,C}\ \big\| X_0 - \mathcal{H}(X_t, t, C) \big\|^2 .$$
#
# Our small presets add a velocity term $\lambda_v \|\Delta X_0 - \Delta\mathcal{H}\|^2$ on frame differences,
# which measurably smooths head motion on SynthTalk (see `MotionTrainConfig`); `paper()` keeps the plain loss.
#
# **Condition dropout.** During training each condition is replaced by a learned "empty" embedding $\varnothing$
# at random: $A$, $g$, $d$, $e$ each with $p = 0.1$, and $X_\text{pre}, A_\text{pre}$ together with $p = 0.5$ (so the
# first window of a clip, which has no previous window, is in distribution). The last few audio frames of a
# window are also dropped now and then, for the short last window of a clip. The model thus learns both
# $\mathcal{H}(X_t, t, C)$ and $\mathcal{H}(X_t, t, C \mid c = \varnothing)$ for every condition $c$. Here is the dropout
# of `diffusion.drop_conditions` counted over 4000 training windows:

# %%
from vasajax.motion.dit import CONDITION_NAMES, CondNull, MotionConfig, empty_conditions

B = 4000
all_given = empty_conditions(MotionConfig.tiny(), B)._replace(null=CondNull.none(B))  # every condition present
dropped = diffusion.drop_conditions(all_given, jax.random.key(0), dcfg)
for name in CONDITION_NAMES:
    print(f"{name:>9}: dropped in {np.mean(getattr(dropped.null, name)):.1%} of windows")
print(f"trailing audio frames dropped in {np.mean(~dropped.audio_mask_BxW.all(1)):.1%} of windows")

# %% [markdown]
# ## 4 · Classifier-free guidance over several conditions
#
# At sampling time the two predictions are extrapolated, per condition, away from "condition absent" (VASA-1
# eq. 2):
#
# $$\hat X_0 = \Big(1 + \sum_{c \in C} \lambda_c\Big)\,\mathcal{H}(X_t, t, C) \;-\; \sum_{c \in C} \lambda_c\,
# \mathcal{H}(X_t, t, C \mid c = \varnothing).$$
#
# VASA-1 guides the audio with $\lambda_A = 0.5$ and the main gaze with $\lambda_g = 1.0$: each guided condition
# costs one more forward pass per step, which `diffusion.guided_x0` stacks along the batch axis, so one call of
# the DiT evaluates all three branches. Larger $\lambda_A$ exaggerates mouth motion (better lip sync scores, more
# jitter: the paper's table 5, which notebook 04 reproduces). The sampler (`diffusion.sample`) runs DDIM on
# `dcfg.steps` evenly respaced steps of the $T = 1000$ (50 in the paper; 10 here in smoke mode).

# %%
print(dcfg)
print(
    "eq. 2 weights [H(C), H(C|A=∅), H(C|g=∅)]:",
    [1 + dcfg.lambda_audio + dcfg.lambda_gaze, -dcfg.lambda_audio, -dcfg.lambda_gaze],
)

# %% [markdown]
# ## 5 · Training
#
# `vasajax.train.motion.train` is what `vasajax train-motion` runs: windows of $K + W$ frames cut from the
# motion records (`loader.motion_windows`), one jitted step (condition dropout, eq. 1, AdamW, EMA of the
# weights), orbax checkpoints you can resume, and `metrics.jsonl` in the run folder. Sampling always uses the
# EMA weights. The first step includes XLA's compilation of the whole step (most of this cell's time on a CPU).

# %%
run = nb.out_dir("03_train_motion_diffusion/run", fresh=True)
result = tm.train(tcfg, motion_dir / "train", run, eval_data=motion_dir / "heldout", progress=False)
rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
steps = [r["step"] for r in rows]
fig, ax = plt.subplots(figsize=(7, 3))
ax.plot(steps, [r["loss_x0"] for r in rows], label="x0 loss (eq. 1)")
if "loss_vel" in rows[0]:
    ax.plot(steps, [r["loss_vel"] for r in rows], label="velocity term")
ax.set(xlabel="step", ylabel="loss (normalised units)", yscale="log", title="stage-2 training")
ax.legend()
print({k: round(v, 3) for k, v in result["eval"].items()})

# %% [markdown]
# `result["eval"]` is `tm.evaluate` on the held-out clips: motion sampled from their audio and conditions,
# compared with the true motion. `mouth_corr` is the Pearson correlation of sampled and true mouth opening over
# all frames (it is what lip sync means in motion space); `delta_p_gen` / `delta_p_true` is ΔP, VASA-1's pose
# variation intensity (mean absolute frame-to-frame change of yaw, pitch, roll, degrees); `motion_mse` is the
# squared error in normalised units, which for a *sample* sits above `motion_mse_mean`, the error of always
# predicting the mean — a generative model is not supposed to output the average.
#
# **Smoke run:** 150 steps on 3 clips (a few seconds of speech in total). The loss has dropped and the sampled
# mouth already follows the syllables of an unseen sentence (correlation around 0.5), but the head pose stays
# near the training mean (flat lines below): audio-driven lips are learned first, the much weaker link between
# speech and head motion takes far more data and steps.
# **Full run:** a few thousand steps on 200 clips; with the tiny DiT and 3000 steps the trainer's reference run
# measured mouth correlation 0.87 and ΔP 0.28° (truth 0.21°) on held-out clips.
#
# Sampled (EMA weights) against true motion for one held-out clip: pose angles and the first dynamics.

# %%
model = tm.load_model(run)  # EMA weights of the newest checkpoint
Image(filename=str(tm.plot_motion(model, rec, dcfg, OUT / "sampled_vs_true.png", names=NAMES, seed=0)))

# %% [markdown]
# Diffusion samples, it does not regress: different seeds (different $X_T$) should give different, equally
# plausible motion for the same audio. Three seeds, with the default audio guidance and without it ($\lambda_A = 0$).
# *Smoke run:* the three seeds nearly coincide and the guidance changes little: the barely trained model has not
# learned the variability of the data yet and behaves almost like a regression onto the audio. *Full run:* the
# seeds differ (most visibly in pose and blinks, less in the audio-locked mouth), and $\lambda_A$ sharpens the
# mouth's peaks.

# %%
gaze, dist, emo = rec.gaze_Tx2.mean(0), float(rec.distance_T.mean()), rec.emotion_52
audio_TxA = rec.audio_feat_UxF.reshape(T, -1)
guidance = {
    f"λ_A = {dcfg.lambda_audio} (default)": dcfg,
    "λ_A = 0 (no audio CFG)": dataclasses.replace(dcfg, lambda_audio=0.0),
}
fig, axes = plt.subplots(1, 2, figsize=(11, 3), sharey=True)
for ax, (label, dc) in zip(axes, guidance.items()):
    ax.plot(secs, rec.motion_TxM[:, MOUTH], "k", lw=2, label="true")
    for s in (0, 1, 2):
        gen = generate.generate_motion(model, audio_TxA, dc, gaze=gaze, distance=dist, emotion=emo, seed=s)[0]
        ax.plot(secs, gen[:, MOUTH], lw=1, label=f"seed {s}")
    ax.set(title=label, xlabel="seconds")
axes[0].set_ylabel(NAMES[MOUTH])
axes[0].legend(fontsize=7)
fig.tight_layout()

# %% [markdown]
# ## 6 · Long clips: sliding windows and their seams
#
# The DiT generates $W$ frames at a time. A clip of any length is cut into consecutive windows
# (`motion/generate.py`): window 0 is sampled with $X_\text{pre} = A_\text{pre} = \varnothing$, and every later
# window is conditioned on the **last $K$ frames generated for the previous one** and their audio. The last,
# short window is padded and its padded audio frames are marked absent (the case the trailing-audio dropout
# trained). `MotionStream` does the same incrementally for streaming, with identical results for one seed.
#
# Without the context condition, every window starts from scratch and the motion jumps at each seam. We measure
# it with `eval.ablation.seam_jumps`: the RMS frame-to-frame change (normalised units) between the last frame of
# a window and the first of the next, against the same change between neighbouring frames inside windows. A ratio
# near 1 means the seams are invisible. Dashed lines mark the seams.

# %%
W = model.cfg.window
gen_ctx = generate.generate_motion(model, audio_TxA, dcfg, gaze=gaze, distance=dist, emotion=emo, seed=0)[0]
gen_no = generate.generate_motion(
    model, audio_TxA, dcfg, gaze=gaze, distance=dist, emotion=emo, seed=0, use_context=False
)[0]
std = stats["motion_std"]
fig, axes = plt.subplots(2, 1, figsize=(9, 4.5), sharex=True)
for ax, d, scale in zip(axes, (0, MOUTH), (np.degrees(1.0), 1.0)):
    ax.plot(secs, rec.motion_TxM[:, d] * scale, "k", lw=1.5, label="true")
    ax.plot(secs, gen_ctx[:, d] * scale, "C1", label="windows + context (X_pre, A_pre)")
    ax.plot(secs, gen_no[:, d] * scale, "C0", alpha=0.7, label="windows without context")
    for s in ablation.seam_frames(T, W):
        ax.axvline(s / 25, color="gray", ls="--", lw=0.8)
    ax.set_ylabel(NAMES[d] + (" (°)" if d < 3 else ""))
axes[0].legend(fontsize=7, loc="upper right")
axes[1].set_xlabel("seconds")
fig.tight_layout()
for label, x in (("true motion", rec.motion_TxM), ("with context", gen_ctx), ("without context", gen_no)):
    j = ablation.seam_jumps(x, W, std)
    print(f"{label:>16}: seam {j['seam']:.3f}  inside {j['inside']:.3f}  ratio {j['ratio']:.2f}  ({j['seams']} seams)")

# %% [markdown]
# The true motion has no seams, so its ratio is the reference (it is not exactly 1 on a short clip: only a few
# frame pairs are seams). **Smoke run:** the barely trained model generates nearly the same flat pose and
# audio-locked mouth with or without context, so the two curves overlap, the ratios are noise and may even be in
# the wrong order; do not read much into them. **Full run:** with context the ratio should approach the truth's, without
# it the seams jump visibly (pose in particular). The context's contribution is also what the DiT's extra
# "last context frame" embedding and the velocity loss across the seam (`diffusion.diffusion_loss`) are for.
#
# ## What to try next
#
# - Train longer: `tcfg = tm.MotionTrainConfig.tiny(steps=3000)` takes a few CPU minutes and gives clearly
#   audio-driven mouth motion; compare `result["eval"]` with the smoke run.
# - Set the velocity weight to 0 (`dataclasses.replace(tcfg, diffusion=dataclasses.replace(dcfg,
#   velocity_weight=0.0))`) and compare ΔP and the seam ratio: VASA-1's plain eq. 1.
# - Sample with `schedule="linear"` training, or with fewer steps (`steps=5`) or `sampler="ddpm"`.
# - Train on stage-1 latents (`MOTION_SOURCE = "encoder"`) from your notebook-02 run, like the paper.
# - From the command line: `vasajax encode-dataset` then `vasajax train-motion --config tiny --data ... --workdir
#   ...` (resumable; `--evaluate` prints the same numbers as `result["eval"]`).
# - Notebook 04 ablates the conditions (gaze, distance, emotion, CFG scales) on generated videos.
