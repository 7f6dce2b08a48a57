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
# # 00 · Quickstart: one photo + one sentence → a talking face
#
# [VASA-1](https://arxiv.org/abs/2404.10667) (Xu et al. 2024) turns **one portrait photo** and **a speech clip**
# into a video of that person talking: lips in sync, natural head motion, blinks and expressions. vasajax is a
# JAX + Flax NNX reimplementation you can read and change. This notebook runs the whole product in three lines,
# then opens it up into its three stages, each a **pure function of (parameters, inputs)**:
#
# 1. **Stage 1, encode** (paper §3.1): the photo is factored into a *face latent*
#    $$\text{image} \;\mapsto\; \big(V^{app},\ z^{id},\ z^{pose},\ z^{dyn}\big)$$
#    a canonical 3D appearance volume $V^{app}$ (the face with pose and expression removed), an identity code
#    $z^{id}$, the head pose $z^{pose} = [\text{yaw}, \text{pitch}, \text{roll}, t_x, t_y, t_z]$ and the facial
#    dynamics $z^{dyn}$ (lips, eyes, brows, expression).
# 2. **Stage 2, motion** (§3.2): a diffusion transformer generates, from the audio, a sequence of per-frame
#    motion latents $X = \{x_i\}_{i=1}^{T}$, $x_i = [z^{pose}_i, z^{dyn}_i]$, one per video frame, in sliding
#    windows.
# 3. **Stage 1, decode**: every frame is rendered from the photo's $V^{app}, z^{id}$ and that frame's
#    $x_i$ — the photo is encoded once, each frame costs one decode.
#
# **The model.** This notebook animates with the shipped demo checkpoint `checkpoints/demo`: the `small` configs
# at 256×256 with the pixel-warp decoder (plus mouth/eye glimpses and a landmark-guided flow), trained for about
# four hours on a 2-core CPU on SynthTalk (two public-domain portraits, synthetic speech); `checkpoints/README.md`
# says what it can and cannot do. By default it uses one
# sentence and 10 diffusion steps, so it runs top to bottom in about a minute on a laptop CPU; `VASAJAX_FULL=1`
# (or `FULL = True` in the next cell) uses the checkpoint's own number of steps. The test suite executes it with
# `VASAJAX_SMOKE=1`, which swaps in a tiny model with random weights (its pictures are then noise).

# %%
import dataclasses

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

from vasajax import notebook as nb
from vasajax import provenance
from vasajax.data.speech import Voice, synthesize_speech
from vasajax.face.model import decode_fn, encode_fn
from vasajax.motion.audio import frame_features
from vasajax.motion.generate import generate_motion
from vasajax.pipeline import Animator

FULL = nb.full_run()
STEPS = nb.pick(smoke=10, full=None)  # diffusion sampling steps; None = the checkpoint's default
OUT = nb.out_dir("00_quickstart")
print(f"full run: {FULL}; JAX {jax.__version__} on {jax.devices()[0].platform}")

# %% [markdown]
# ## 1. The product in three lines
#
# An `Animator` loads an *export* (a folder with both models' weights in safetensors, their configs and a
# manifest of sha256 hashes). Speech comes from **espeak-ng**, a formant synthesiser that runs offline, so the
# notebooks need no recordings; any 16 kHz mono waveform or audio file works the same way.

# %%
ckpt = nb.demo_checkpoint()
anim = Animator.from_pretrained(ckpt)
print("checkpoint:", ckpt)
mc = anim.motion_cfg
print(f"weights: {anim.export.manifest.get('weights', 'trained')} | face images {anim.face_cfg.image_size}² px")
print(f"motion window W = {mc.window} frames, context K = {mc.context} frames, {anim.fps:g} fps")

# %%
speech = synthesize_speech("Hello! I am a photograph, and now I can talk.", Voice(variant="f3"), seed=0)
wave = speech.audio_16k
print(f"{speech.duration_s:.2f} s of speech, {len(speech.phonemes)} phonemes")
nb.show_audio(wave)

# %% [markdown]
# `animate` finds the face (MediaPipe), crops it, encodes it once, generates the motion from the audio and
# decodes every frame; `save` writes an h264 + AAC mp4 (every frame carries an invisible watermark and the
# file a metadata tag, see notebook 05). Same seed, same video.

# %%
video = anim.animate(nb.asset("astronaut.png"), wave, seed=0, steps=STEPS)
path = video.save(OUT / "astronaut.mp4")
print(
    f"{len(video.frames)} frames of {video.frames.shape[1]}×{video.frames.shape[2]} px, "
    f"{video.duration_s:.2f} s → {path.name}"
)
nb.show_video(path)

# %% [markdown]
# **What you see.** The astronaut's own photo moving her head with the speech (nods, turns, sway), her lips
# parting over her teeth and closing again with the syllables. The inside of the mouth stays pale (teeth over
# stretched lip texture, no dark cavity), she does not blink, and the face is softer than the photo — a model
# trained for about two hours on a 2-core CPU (`checkpoints/README.md` measures it: held-out lip sync 0.65 where
# real clips score 0.70). Under `VASAJAX_SMOKE=1`, the test suite's tiny random model, the video is a flickering noise
# texture instead of a face.
#
# ## 2. Under the hood: the three stages as pure functions
#
# Every model is an `nnx.Module`. `nnx.split` separates it into a static *graph definition* (the structure, hashable)
# and a pytree of parameters; `nnx.merge` puts them back together. The hot paths are pure functions of
# `(graphdef, params, inputs)` — `vasajax.face.model.encode_fn` and `decode_fn` — that `jax.jit` compiles with the
# graph definition as a static argument. (The Animator jits the very same functions the same way, so JAX reuses
# its compiled code here; `vasajax.face.model.jitted(model)` is a shortcut returning `(params, encode, decode)`.)
#
# First, the input stage 1 sees: `Animator.prepare` finds the face and cuts the square crop the model was
# trained on (the box is computed from MediaPipe's 478 face landmarks).

# %%
portrait = anim.prepare(nb.asset("astronaut.png"))
cx, cy, side = portrait.crop_params
print(
    f"crop centre ({cx:.0f}, {cy:.0f}), side {side:.0f} px of a {portrait.image.shape[1]}×"
    f"{portrait.image.shape[0]} photo; head distance {portrait.distance:.3f}"
)
fig = nb.image_grid(
    [[portrait.image, portrait.crop]], col_titles=["photo", f"face crop ({anim.face_cfg.image_size}²)"], cell=3.0
)

# %% [markdown]
# ### Stage 1, encode: the face latent
#
# `encode(params, images)` maps a batch of crops (B×H×W×3 in [0, 1]) to a `FaceLatent` pytree.

# %%
graphdef, params = nnx.split(anim.export.face_model)
encode = jax.jit(encode_fn, static_argnums=0)
decode = jax.jit(decode_fn, static_argnums=0)
print("face model parameters:", sum(x.size for x in jax.tree.leaves(params)))

latent = encode(graphdef, params, jnp.asarray(portrait.crop[None], jnp.float32) / 255.0)  # B×H×W×3 in [0, 1]
for field in dataclasses.fields(latent):  # source, source_grid (pixel warp), source_points (landmark flow)
    value = getattr(latent, field.name)
    print(f"{field.name:>13}: {'—' if value is None else value.shape}")
print("pose [yaw, pitch, roll, tx, ty, tz] =", np.round(np.asarray(latent.pose[0]), 3))

# %% [markdown]
# The appearance volume $V^{app}$ is B×D×H×W×C: a stack of D depth slices of C-channel feature maps. Below, the
# feature magnitude $\lVert V^{app}_{d,h,w,:}\rVert$ of a few depth slices: the face's layout (eyes, nose,
# mouth, hair outline) shows in them (with the test suite's random weights they are noise).

# %%
vol = np.linalg.norm(np.asarray(latent.appearance[0], np.float32), axis=-1)  # D×H×W
slices = np.linspace(0, vol.shape[0] - 1, min(6, vol.shape[0])).astype(int)
fig = nb.image_grid(
    [[vol[d] / vol.max() for d in slices]], col_titles=[f"depth {d}" for d in slices], title="‖V_app‖ per depth slice"
)

# %% [markdown]
# ### Stage 2: motion from audio
#
# The audio becomes one feature vector per video frame (`frame_features`: two log-mel spectra per frame for the
# demo models; VASA-1 uses wav2vec2). The motion diffusion transformer $H$ then samples the motion latents
# window by window: each window of $W$ frames is denoised from Gaussian noise with classifier-free guidance,
# conditioned on its audio, on the last $K$ frames of the previous window, and on the controls (gaze $g$,
# head distance $d$, emotion $e$):
#
# $$\hat X_0 = (1+\lambda_A)\,H(X_t, t, C) - \lambda_A\, H(X_t, t, C\,|\,A=\varnothing) + \lambda_g \big[H(X_t, t, C) -
#   H(X_t, t, C\,|\,g=\varnothing)\big]$$
#
# The first window has no previous window. The Animator gives it one: the photo's own motion, held over $K$
# frames of silence (`anim.portrait_context`), so the clip continues from the face in the photo the way a
# training clip continues from its silent lead-in (`start="portrait"`; `start="free"` leaves that context empty).
# `generate_motion` is the same function the Animator streams through; with the same context, conditions and seed
# it returns exactly the motion of the video above.

# %%
feats = frame_features(wave, anim.audio_cfg)
dcfg = anim.diffusion if STEPS is None else dataclasses.replace(anim.diffusion, steps=STEPS)
distance = anim.export.conditions.get("distance", portrait.distance)  # what the Animator's "auto" picks
context_motion, context_audio = anim.portrait_context(portrait)  # [μ (the photo's pose in the DiT's space), z_dyn]
motion = generate_motion(
    anim.motion_model, feats, dcfg, gaze=(0.0, 0.0), distance=distance, seed=0,
    context_motion=context_motion, context_audio=context_audio,
)[0]  # fmt: skip
print("audio features", feats.shape, "→ motion", motion.shape, "(T frames × [6 pose + dyn])")

# %%
T, W = len(motion), anim.motion_cfg.window
fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
axes[0].imshow(feats.T, aspect="auto", origin="lower", cmap="magma")
axes[0].set_ylabel("audio feature")
for j, name in enumerate(["yaw", "pitch", "roll", "tx", "ty", "tz"]):
    axes[1].plot(motion[:, j], label=name)
axes[1].legend(ncol=6, fontsize=8)
axes[1].set_ylabel("pose")
dyn = motion[:, 6:]
dyn_std = (dyn - dyn.mean(0)) / (dyn.std(0) + 1e-6)  # each dimension standardised over the clip: its changes
axes[2].imshow(dyn_std.T, aspect="auto", origin="lower", cmap="coolwarm", vmin=-3, vmax=3)
axes[2].set_ylabel("z_dyn dim (standardised)")
for ax in axes:
    for w in range(W, T, W):
        ax.axvline(w - 0.5, color="k", ls="--", lw=0.8)
axes[2].set_xlabel("video frame (dashed: window boundaries)")
fig.tight_layout()

# %% [markdown]
# **Reading the plot.** Top: the log-mel features of the sentence (bright = loud) — silence before and after the
# speech is visible. Middle: the generated head pose moves smoothly, nodding and turning with the phrases, across
# the window boundary (dashed). Bottom: the dynamics $z^{dyn}$, each dimension standardised over the clip so its
# changes show: they change in vertical bands at the syllables and hold still in the pauses (the dark gaps of the
# spectrogram) — the lips, jaw and cheeks following the speech. The window boundary leaves no seam. (With the test
# suite's random weights all of these are noise-like curves with no relation to the speech.)
#
# ### Stage 1, decode: frames
#
# The Animator applies the generated head *movement* around the photo's own pose
# ($z^{pose}_i = z^{pose}_{photo} + (\hat z^{pose}_i - \mu^{pose})$, with $\mu$ the motion model's training mean),
# so the portrait keeps its framing, and decodes each frame from the photo's appearance and identity. Then it
# rounds to 8 bits and adds the watermark. Doing the same by hand, for 8 frames spread over the clip (one batch,
# the Animator's decode batch size), reproduces the video.

# %%
mean_pose = np.asarray(anim.motion_model.motion_mean.get_value(), np.float32)[:6]
offset = np.asarray(latent.pose[0], np.float32) - mean_pose  # z_photo − μ, added to every generated pose
pose = motion[:, :6] + offset  # in this order, as the Animator does: float32 sums in another order differ in bits
idx = np.linspace(0, T - 1, 8).astype(int)
# (the pixel-warp decoder of the demo model also reads the photo and where each voxel came from in it)
frames = np.asarray(
    decode(
        graphdef,
        params,
        latent.appearance,
        latent.identity,
        pose[idx],
        motion[idx, 6:],
        latent.source,
        latent.source_grid,
        latent.source_points,
    )
)
frames_u8 = provenance.embed((np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))  # 8 bits + watermark
print("decoded", frames.shape, "| motion equals the video's:", np.allclose(pose, video.motion[:, :6], atol=1e-5))
print("frames equal the video's:", np.array_equal(frames_u8, video.frames[idx]))
fig = nb.image_grid(
    [list(frames), list(video.frames[idx])], row_titles=["decode()", "video"], col_titles=[f"frame {i}" for i in idx]
)

# %% [markdown]
# Both rows show the astronaut mid-sentence (noise under the test suite's random weights). The top row is the
# raw decoder output, the bottom row the video's frames (the fine grain on flat grey areas is the ±3 grey-level watermark). Rounded
# to 8 bits and watermarked like the Animator does, our frames equal the video's bit for bit: the three pure
# functions *are* the Animator. (Bit-exactness needs the very same inputs: `np.float32(x) / 255` in numpy and
# `/ 255.0` in XLA can differ in the last bit, and that shows up as 1 grey level here and there.)
#
# ## What to try next
#
# * Your own photo and voice: `anim.animate("me.jpg", "hello.wav")`, or the CLI
#   `vasajax animate --image me.jpg --audio hello.wav --out me.mp4 --paste-back`.
# * Change `seed`: same audio, different head motion and expressions (the diffusion model samples).
# * Decode the motion of one sentence with *another* portrait's latent (`anim.prepare(nb.asset("grace_hopper.jpg"))`):
#   motion and appearance are disentangled, so the same motion drives any face.
# * Edit `pose` by hand before `decode` (e.g. add 0.3 rad of yaw) and watch the head turn.
# * The other notebooks: 01 data preparation (face tracking, SynthTalk), 02 training the face latent model,
#   03 training the motion diffusion model, 04 a latent ablation, 05 the product (long audio, the controls
#   gaze / distance / emotion / CFG, streaming latency, the watermark), 06 multi-GPU training.
