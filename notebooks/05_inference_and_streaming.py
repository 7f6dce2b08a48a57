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
# # 05 · Inference and streaming: long audio, the controls, latency, provenance
#
# VASA-1's headline claim is *real time*: 512² video at up to 40 fps online "with negligible starting latency"
# (abstract, §1), which is what makes it usable for live conversation. It also gives the user **controls** over
# the generation — main gaze direction $g$, head distance $d$ and emotion offset $e$ — and strengths for
# classifier-free guidance (CFG). And because lifelike talking faces can be misused, the paper discusses
# responsible use; vasajax, being open, marks everything it makes (an invisible watermark and a metadata tag).
#
# This notebook covers the product side of `vasajax.pipeline.Animator`:
#
# 1. **Streaming** long audio in chunks, with first-frame latency and steady frame rate measured;
# 2. **offline = streaming**: for one seed the frames are identical, whatever the audio chunking;
# 3. **the controls**: seed, gaze, distance, emotion, CFG scales, sampling steps — and what they change;
# 4. **provenance**: the watermark is invisible, `detect` finds it in our mp4 and not in a video we did not make.
#
# **The model, quick or full.** The notebook animates with the shipped demo checkpoint `checkpoints/demo` (256²,
# trained on a CPU; `checkpoints/README.md` says what it can and cannot do). By default it uses a few seconds of
# speech and 10 diffusion steps, so it runs in a few minutes on a laptop CPU; `VASAJAX_FULL=1` (or `FULL = True`
# in the next cell) streams a minute of speech and tries more controls — tens of minutes on a CPU (decoding
# dominates). The test suite runs it with `VASAJAX_SMOKE=1`: a tiny model with random weights at 64×64, whose
# numbers (latency, equality, detection) are real but whose faces are noise.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

from vasajax import detect, media, provenance
from vasajax import notebook as nb
from vasajax.data.speech import Voice, synthesize_speech
from vasajax.data.synth.clip import synthesize_clip
from vasajax.data.synth.config import SynthConfig
from vasajax.data.synth.inputs import load_portraits, load_sentences
from vasajax.data.synth.portrait import prepare_portraits
from vasajax.pipeline import Animator, pad_to_frames

FULL = nb.full_run()
STEPS = nb.pick(smoke=10, full=None)  # diffusion steps; None = the checkpoint's default
OUT = nb.out_dir("05_inference_and_streaming")
SR = 16_000

anim = Animator.from_pretrained(nb.demo_checkpoint())
portrait = anim.prepare(nb.asset("grace_hopper.jpg"))  # find, crop and encode the face once
print(f"full run: {FULL} | {anim.export.manifest.get('weights', 'trained')} weights, {anim.face_cfg.image_size}² px")

# %% [markdown]
# ## The audio
#
# A long clip: held-out sentences of the bundled corpus (never used for training), spoken by espeak-ng (default: two
# sentences; full: twenty, about a minute). The first seconds also serve as a short clip for the comparisons below.

# %%
sentences = load_sentences("heldout")
speech = synthesize_speech(" ".join(sentences[: nb.pick(smoke=2, full=20)]), Voice(variant="f3"), seed=0)
long_wave = speech.audio_16k
short = long_wave[: int(nb.pick(smoke=2.0, full=4.0) * SR)]
print(f"long clip {long_wave.size / SR:.1f} s, short clip {short.size / SR:.1f} s")
nb.show_audio(long_wave)

# %% [markdown]
# ## 1. Offline: `animate`
#
# `animate` returns the whole clip in memory (a `Video`: frames, fps, audio, motion). The first call also
# compiles the jitted functions (one motion-window sampler, one decode batch of 8 frames), which is why it is
# slow; every later call with the same shapes and sampling settings reuses the compiled code.

# %%
t0 = time.perf_counter()
reference = anim.animate(portrait, short, seed=0, steps=STEPS)
print(f"{len(reference.frames)} frames in {time.perf_counter() - t0:.1f} s (including JIT compilation)")

# %% [markdown]
# ## 2. Streaming long audio
#
# `Animator.stream` takes audio as an iterable of chunks of any size (a microphone delivers, say, 0.2 s at a time)
# and yields batches of finished frames as soon as they are decoded. Internally the audio features are computed
# incrementally, the motion diffusion model samples one **window of W frames** as soon as W frames of audio have
# arrived (conditioned on the last K frames of the previous window), and each window is decoded in batches. Device
# and host memory stay bounded by one window, so an hour of audio streams in flat memory; here we write the
# frames straight into an mp4.
#
# Two latencies matter for live use:
# * **algorithmic**: the first window needs $W/\text{fps}$ seconds of audio before it can be sampled;
# * **compute**: the time from that point to the first decoded frame — `FrameStream.first_frame_s` measures it
#   (our audio is already all there, so the stream never waits for it).
#
# After the first frame, the **steady frame rate** tells whether generation keeps up with real time (fps ≥ 25).

# %%
chunks = (long_wave[i : i + SR // 5] for i in range(0, long_wave.size, SR // 5))  # 0.2 s "microphone" chunks
fs = anim.stream(portrait, chunks, seed=0, steps=STEPS)
audio = np.pad(long_wave, (0, pad_to_frames(long_wave.size, anim.fps) - long_wave.size))  # whole frames
arrivals = []  # (wall seconds, frames so far)
with media.VideoWriter(OUT / "long.mp4", fps=anim.fps, audio=audio, metadata=provenance.metadata_tag()) as writer:
    for batch in fs:
        writer.write(batch)
        arrivals.append((fs.elapsed_s, fs.frames))
W = anim.motion_cfg.window
print(f"algorithmic latency: {W / anim.fps:.2f} s of audio (one window of {W} frames)")
print(f"compute latency to the first frame: {fs.first_frame_s:.3f} s")
print(
    f"steady {fs.steady_fps:.1f} fps, overall {fs.fps:.1f} fps for {fs.frames} frames "
    f"({long_wave.size / SR / fs.elapsed_s:.2f}× real time)"
)

# %%
t, n = np.array(arrivals).T
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.step(t, n, where="post", label="frames delivered")
ax.plot([0, t[-1]], [0, anim.fps * t[-1]], "k--", label=f"real time ({anim.fps:g} fps)")
ax.set_xlabel("wall-clock seconds since the stream started")
ax.set_ylabel("frames")
ax.legend()
fig.tight_layout()
nb.show_video(writer.path)

# %% [markdown]
# **Reading the plot.** Frames arrive in steps: one step per decode batch, a pause per motion window. When the
# staircase stays above the dashed line, generation is faster than real time and a live stream never stalls. The
# 256² demo model ran at about 5.3 fps on an idle 2-core CPU (0.21× real time: below the line), its first frame
# 1.4 s after the stream started; on a GPU it decodes thousands of frames per second (README, "Model sizes and speed").
# The test suite's tiny random model runs at about 55 fps, above the line. The numbers printed above are what your
# machine did. For a live microphone add the audio's own wait: a whole window (2 s) by default, or 160 ms with
# live mode (`first_window`, `vasajax animate --audio -`).
#
# ## 3. Offline = streaming
#
# `animate` is `stream` collected, and window $i$ always draws its noise from the key `fold_in(key(seed), i)`;
# the log-mel features do not depend on where the chunks are cut. So for one seed, streaming the short clip in
# randomly sized chunks gives **exactly** the offline frames.

# %%
cuts = np.sort(np.random.default_rng(0).integers(0, short.size, size=9))  # 10 chunks of random sizes
print("chunk sizes (samples):", np.diff(np.r_[0, cuts, short.size]).tolist())
streamed = np.concatenate(list(anim.stream(portrait, np.split(short, cuts), seed=0, steps=STEPS)))
print("identical frames:", np.array_equal(streamed, reference.frames), "| shape", streamed.shape)
idx = np.linspace(0, len(streamed) - 1, 5).astype(int)
diff = np.abs(streamed[idx].astype(int) - reference.frames[idx]) * 50
fig = nb.image_grid(
    [list(reference.frames[idx]), list(streamed[idx]), list(diff.clip(0, 255).astype(np.uint8))],
    row_titles=["offline", "streamed", "|diff| × 50"],
    col_titles=[f"frame {i}" for i in idx],
)

# %% [markdown]
# The bottom row is black: not a single pixel differs.
#
# ## 4. The controls
#
# The motion model $H$ is conditioned on $C = (A, X_{pre}, A_{pre}, g, d, e)$: the window's audio, the previous
# window's motion and audio, and the three controls. Each condition was dropped at random during training, so $H$
# also knows the *unconditional* prediction ($c = \varnothing$). Sampling mixes them with classifier-free guidance
# (VASA-1 eq. 2):
#
# $$\hat X_0 = (1+\lambda_A)\,H(X_t, t, C) - \lambda_A\, H(X_t, t, C\,|\,A=\varnothing)
#   + \lambda_g \big[H(X_t, t, C) - H(X_t, t, C\,|\,g=\varnothing)\big]$$
#
# | control | argument | meaning (default) |
# |---|---|---|
# | seed | `seed` | the diffusion noise: same audio, another plausible performance (0) |
# | gaze $g$ | `gaze=(θ, φ)` | main gaze direction, radians in camera space ((0, 0): into the camera) |
# | distance $d$ | `distance` | head distance, inter-ocular distance / crop side (the training mean, else the photo's) |
# | emotion $e$ | `emotion` | `neutral` (∅: the model's average), `happy`, `sad`, `surprised`, `angry`, or blendshape values |
# | $\lambda_A$, $\lambda_g$ | `cfg_audio`, `cfg_gaze` | CFG strengths of eq. 2 (the paper's 0.5 and 1.0) |
# | steps | `steps` | DDIM sampling steps (the checkpoint's; `DiffusionConfig.small()` has 25, the paper 50) |
#
# We animate the short clip under each setting and compare the generated motion and a frame. The CFG scales
# $\lambda_A$, $\lambda_g$ are *data* to the compiled window sampler (`vasajax.motion.generate.split_guidance`):
# changing them, even to 0, reuses the compiled code. A new number of `steps` compiles it once more, so only the
# full run tries one.

# %%
d0 = anim.export.conditions.get("distance", portrait.distance)  # what distance="auto" uses
CONTROLS = {
    "default": {},
    "seed 1": {"seed": 1},
    "gaze right": {"gaze": (0.35, 0.0)},
    "gaze up": {"gaze": (0.0, 0.35)},
    "closer": {"distance": 1.3 * d0},
    "happy": {"emotion": "happy"},
    "λ_A = 2": {"cfg_audio": 2.0},
    "λ_A = 0": {"cfg_audio": 0.0},
    "λ_g = 0": {"cfg_gaze": 0.0},
    **nb.pick(smoke={}, full={"10 steps": {"steps": 10}}),
}
runs = {name: anim.animate(portrait, short, **{"seed": 0, "steps": STEPS, **kw}) for name, kw in CONTROLS.items()}
base = runs["default"].motion
for name, v in runs.items():
    print(
        f"{name:>10}: mean |Δ motion| vs default {np.abs(v.motion - base).mean():.3f}, "
        f"yaw range {np.ptp(v.motion[:, 0]):.3f} rad"
    )

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for name, v in runs.items():
    axes[0].plot(v.motion[:, 0], label=name, lw=2 if name == "default" else 1)
    axes[1].plot(np.abs(v.motion - base).mean(axis=1), label=name)
axes[0].set(title="head yaw (rad)", xlabel="video frame")
axes[1].set(title="mean |motion − default motion| per frame", xlabel="video frame")
axes[1].legend(fontsize=7, ncol=2)
fig.tight_layout()
mid = len(base) // 2
fig = nb.image_grid(
    [[v.frames[mid] for v in runs.values()]], col_titles=list(runs), cell=1.6, title=f"frame {mid} under each setting"
)

# %% [markdown]
# **Reading the plots.** With the demo model every control moves the motion a little (the printed mean |Δ motion|)
# and at this size the frames barely differ: another seed moves most (another head-motion and lip path), λ_A = 2
# widens the yaw range a little (0.052 → 0.060 rad), gaze, emotion and λ_A = 0 nudge the motion; "closer" and λ_g = 0 change
# nothing measurable — SynthTalk barely varies the head distance, and with the gaze at (0, 0) its CFG branch is
# close to the unconditional one. The mouth moves with the speech under every setting (notebook 00 shows it up
# close); no control changes it visibly at this size. On a model that has learned each condition,
# expect: another seed → another head-motion path with the same lip sync; gaze → the eyes (and a little the head)
# turn towards the given direction; closer → a larger face; happy → a smile; larger $\lambda_A$ → stronger,
# crisper lip motion (too large exaggerates it); $\lambda_g = 0$ → gaze drifts more freely; fewer steps →
# faster, slightly less detailed motion. (Under the test suite's random weights every control changes the motion
# arbitrarily and the frames are noise. How much each condition really matters on the trained model
# is measured in notebook 04, with the evaluation metrics, like the paper's table 5.)
#
# ## 5. Provenance: the watermark and `detect`
#
# Every frame vasajax writes carries an **invisible watermark**: a key-seeded ±1 tile of 16×16 cells, repeated
# four times across the frame's short side (64 cells in all), upsampled and added to the luma with amplitude 3.5
# grey levels (about 40.5 dB PSNR). Every mp4 also carries a **metadata tag** (the `comment` field), and with
# `animate --c2pa` a signed C2PA manifest. Here is the mark on the photo itself: invisible, until the difference
# is amplified 40×.

# %%
photo = portrait.image
marked = provenance.embed(photo)
delta = marked.astype(int) - photo
psnr = 10 * np.log10(255**2 / np.mean(delta.astype(float) ** 2))
amplified = np.clip(128 + 40 * delta, 0, 255).astype(np.uint8)
key = (provenance.pattern(provenance.default_key()) > 0).astype(np.float32)
fig = nb.image_grid(
    [[photo, marked, amplified, np.repeat(key[..., None], 3, axis=-1)]],
    cell=2.8,
    col_titles=["photo", "watermarked", "difference × 40", "the key's 16×16 tile"],
)
print(f"PSNR {psnr:.1f} dB, max change {np.abs(delta).max()} grey levels")

# %% [markdown]
# **Detection** is blind (it needs only the key) and survives crops, flips, small rotations, rescaling and
# paste-back: because the tile repeats, a crop at any offset is a cyclic shift of it, which one FFT correlation
# finds at all offsets at once. The detector averages the frames' luma, whitens it, folds it onto one tile for
# each lattice an edit could have left (the frame's own, rotated by up to ±5°, the longer period of a crop, the
# shorter one of a paste into a larger frame) and correlates the fold with the key's tile and its mirror. The best
# score over that whole search is turned into a z-score against 64 decoy keys scored with *the same search* — the
# null distribution for this very video — and the mark counts as present at $z \ge 5$ (false-positive probability
# ≈ 10⁻³ per video from the decoys' extreme-value fit; 0 in 1050 unmarked files in `benchmarks/provenance.py`).
#
# We test three videos: our streamed mp4; a SynthTalk clip (a talking face made by warping the photo, *not* by
# vasajax's models, written without mark or tag); and the same SynthTalk clip watermarked but re-encoded at low
# quality (CRF 28) with no metadata tag, to show that the mark does not depend on the tag.

# %%
cfg = SynthConfig(size=nb.pick(smoke=128, full=256))
face = prepare_portraits(load_portraits()[:1], cfg)[0]  # the astronaut, rigged for warping
clip = synthesize_clip(face, sentences[2], seed=0, cfg=cfg)
other = media.write_video(OUT / "synthtalk.mp4", clip.frames, fps=clip.fps, audio=clip.audio)
marked_other = media.write_video(
    OUT / "synthtalk_marked_crf28.mp4", provenance.embed(clip.frames), fps=clip.fps, audio=clip.audio, crf=28
)
results = {p.name: detect.detect_video(p) for p in (writer.path, other, marked_other)}
for name, d in results.items():
    print(
        f"{name:>28}: watermark {'FOUND' if d.watermark.present else 'absent'} (z = {d.z:6.1f}, confidence "
        f"{d.confidence:.6f}, {d.watermark.num_frames} frames); metadata tag {'found' if d.tag else 'absent'}"
    )
print("\nthe tag:", media.read_metadata(writer.path).get("comment"))

# %%
fig, ax = plt.subplots(figsize=(7, 2.8))
colors = ["C2" if d.watermark.present else "C7" for d in results.values()]
ax.bar_label(ax.barh(list(results), [d.z for d in results.values()], color=colors), fmt="z = %.1f", padding=3)
ax.axvline(provenance.Z_THRESHOLD, color="k", ls="--", label=f"threshold z = {provenance.Z_THRESHOLD:g}")
ax.set_xlabel("watermark z-score")
ax.legend()
fig.tight_layout()

# %% [markdown]
# The generated video scores far above the threshold and the unmarked SynthTalk clip near zero (an unmarked video
# scores like the decoys, z ≈ 0 ± 1); the mark survives the low-quality re-encode. `detect` also says which edit it
# had to undo ("on the frame's own grid", "after re-aligning a crop", "after undoing a horizontal flip", ...). The same check is a command,
# `vasajax detect VIDEO` (add `--json` for a machine-readable answer):

# %%
for path in (writer.path, other):
    detect.cli_main([str(path)])

# %% [markdown]
# Limits, honestly: the default key is public, so anyone can estimate and subtract the pattern (or forge it) —
# and a repeating tile is easier to estimate than a non-repeating pattern; rotations beyond 5°, crops keeping
# under 60 % of the area and heavy downscaling defeat the search; the tag is trivial to strip. Set your own key
# (`VASAJAX_WATERMARK_KEY`) to make removal and forgery harder (docs/provenance.md has the measured table).
#
# ## What to try next
#
# * Stream from a real microphone: any iterable of 16 kHz float32 chunks works (e.g. from `sounddevice`); show
#   each batch as it arrives.
# * `vasajax animate --image me.jpg --audio talk.mp3 --out me.mp4 --stream --paste-back` prints the same latency
#   numbers and pastes the animated face back into the photo.
# * Sweep one control finely (e.g. `cfg_audio` from 0 to 3) on the full checkpoint and measure lip-sync with
#   `vasajax eval` (notebook 04 measures the conditions' effects).
# * Attack the watermark beyond what it is built for: re-encode at CRF 35, downscale to 0.25×, rotate 10°, crop
#   to 40 % of the area, and see which `detect` survives (`benchmarks/provenance.py` measures the edits it is
#   built for).
# * On a GPU, time `stream` with the 256² demo model: first-frame latency and steady fps (README: thousands of
#   decoded frames per second on an H100).
