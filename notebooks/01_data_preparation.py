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
# # 01 · Data: face tracking, SynthTalk and clip shards
#
# VASA-1 learns from talking-face **videos**: stage 1 (§3.1) learns a face latent space by reenacting one frame
# of a clip with the motion of another, and stage 2 (§3.2) learns to generate motion from speech, conditioned on
# per-frame control signals — the main eye **gaze** direction $g$ (two spherical angles), a normalised
# **head-to-camera distance** $d$ and an **emotion offset** $e$. Before any of that, every video must be
#
# 1. **tracked**: find the face in each frame (478 landmarks, 52 blendshape scores, a head pose matrix);
# 2. **cropped**: one square, temporally smooth face crop per frame, the same definition at training and at
#    inference time;
# 3. **labelled**: pose, gaze, distance, blendshapes per frame; emotion per clip;
# 4. **cut and stored**: fixed-length clips of $T$ frames at 25 fps with $T/25$ s of 16 kHz audio, in shards that
#    a training job can read two random frames from without decoding a video.
#
# This notebook walks through each step with the library: `vasajax.facetrack` (1–3), `vasajax.data.synth`
# (SynthTalk, a dataset you can make offline), `vasajax.data.prep` (what `vasajax prep` runs) and
# `vasajax.data.clips` (the record format).
#
# **Smoke or full run.** By default (*smoke* mode, what the test suite executes) clips are 128×128, a couple of
# seconds long, and the prepared crops are 64×64 — the whole notebook takes well under a minute on a laptop CPU.
# Face tracking and SynthTalk are not learned models here, so even smoke mode shows real results, only smaller.
# Set `VASAJAX_FULL=1` before starting Jupyter (or `FULL = True` below) for 256×256 clips, longer sentences and
# 100-frame (4 s) prepared clips, as the demo data uses.

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from vasajax import modelfiles
from vasajax import notebook as nb
from vasajax.data import clips, prep
from vasajax.data.synth.clip import synthesize_clip, write_clip
from vasajax.data.synth.config import SynthConfig
from vasajax.data.synth.inputs import load_portraits, load_sentences
from vasajax.data.synth.portrait import prepare_portraits
from vasajax.facetrack.crop import CropConfig, apply_crop, crop_params
from vasajax.facetrack.labels import clip_labels, frame_labels
from vasajax.facetrack.landmarks import BLENDSHAPE_NAMES, NUM_BLENDSHAPES
from vasajax.facetrack.tracker import FaceTracker, track_image
from vasajax.image import load_image

FULL = nb.full_run()
OUT = nb.out_dir("01_data_preparation", fresh=True)
SYNTH = nb.pick(smoke=SynthConfig.tiny(), full=SynthConfig.small())
PREP = nb.pick(smoke=prep.PrepConfig.tiny(), full=prep.PrepConfig.small())
SENTENCES = load_sentences("train")
print(f"full run: {FULL}; SynthTalk frames {SYNTH.size}², prepared crops {PREP.size}², {PREP.clip_frames}-frame clips")

# %% [markdown]
# ## 1. The face tracker
#
# vasajax uses MediaPipe's **FaceLandmarker**, a small CPU model that returns, per face, 478 landmarks (468 on
# the canonical face mesh plus 5 per iris), 52 ARKit-style blendshape scores in $[0, 1]$ (`jawOpen`,
# `eyeBlinkLeft`, `mouthSmileLeft`, …) and a $4\times4$ matrix taking the canonical head into camera space.
# The model file is not shipped with `mediapipe`; `python -m vasajax.modelfiles fetch` (run by `make models`)
# downloads and verifies it once. At run time the library only *resolves* it — nothing downloads:

# %%
print(modelfiles.face_landmarker_path())

# %% [markdown]
# ### A photo
#
# `load_image` reads any photo as upright uint8 RGB; `track_image` returns the largest face as a
# `FaceObservation`. The **crop** is defined from rotation-invariant face measures, as in the FFHQ alignment: with
# $e$ the eye-to-eye vector and $m$ the eye-midpoint-to-mouth vector,
#
# $$\text{side} = 2\,s\,\max\!\big(2\lVert e\rVert,\ 1.8\lVert m\rVert\big), \qquad
#   \text{centre} = \text{eye midpoint} + 0.1\,m + (0,\ \delta_y\,\text{side}),$$
#
# with $s = 1.35$ and $\delta_y = 0.05$ (`CropConfig`), which frames like the VoxCeleb crops: the whole head with
# some hair and chin. The crop is axis-aligned: head roll stays in the image, for the model to learn.

# %%
photo = load_image(nb.asset("astronaut.png"))
face = track_image(photo)
crop_cfg = CropConfig(size=256)
cx, cy, side = crop_params(face.landmarks, crop_cfg)
crop = apply_crop(photo, (cx, cy, side), crop_cfg.size)

fig, (a, b) = plt.subplots(1, 2, figsize=(9, 4.5))
a.imshow(photo)
a.scatter(face.landmarks[:468, 0], face.landmarks[:468, 1], s=0.3, c="lime")
a.scatter(face.landmarks[468:, 0], face.landmarks[468:, 1], s=2, c="red")  # the irises
a.add_patch(Rectangle((cx - side / 2, cy - side / 2), side, side, fill=False, ec="yellow", lw=2))
a.set_title(f"{photo.shape[1]}×{photo.shape[0]} photo: landmarks and crop")
b.imshow(crop)
b.set_title(f"the {crop_cfg.size}² crop")
for ax in (a, b):
    ax.axis("off")

# %% [markdown]
# From one observation, `frame_labels` computes the per-frame labels a clip record stores. **Pose** is
# $[\text{yaw}, \text{pitch}, \text{roll}, t_x, t_y, t_z]$ from the matrix ($R = R_y(\text{yaw})R_x(\text{pitch})
# R_z(\text{roll})$, radians; translation in cm). **Gaze** $(\theta, \varphi)$ comes from each iris's offset inside
# its eye, mapped to an eyeball rotation by $\arcsin(1.25\cdot\text{offset})$ and rotated by the head pose into
# camera space ($(0, 0)$ = looking into the camera). **Distance** is the 3D eye-to-eye distance over the crop side:
# larger means a bigger face in the crop.

# %%
labels = frame_labels(face, (cx, cy, side))
print("pose  yaw/pitch/roll (deg):", np.round(np.degrees(labels["pose"][:3]), 1), " t (cm):", labels["pose"][3:])
print("gaze  θ, φ (deg):", np.round(np.degrees(labels["gaze"]), 1), " distance:", round(float(labels["distance"]), 3))
top = np.argsort(labels["blendshapes"])[::-1][1:6]  # the strongest five after `_neutral`
print("top blendshapes:", {BLENDSHAPE_NAMES[k]: round(float(labels["blendshapes"][k]), 2) for k in top})

# %% [markdown]
# ## 2. SynthTalk: talking-face clips with ground truth
#
# No talking-face video can be downloaded on the machines vasajax is developed on, so `vasajax.data.synth`
# makes some: a real portrait is animated by a landmark-driven mesh warp in sync with espeak-ng speech. Phoneme
# timings give viseme targets for the jaw and lips; head sway and nods, blinks, gaze shifts and a smile are
# sampled from simple stochastic models. Every frame comes with its **ground truth** (pose relative to the
# portrait, mouth opening, blink, gaze, emotion, phoneme) — which real data never has. It is a teaching and
# testing set, *not* a substitute for VoxCeleb2 / HDTF (see `data_prep/README.md`).
#
# `prepare_portraits` tracks each portrait once and rigs it; `synthesize_clip` is deterministic given its seed.

# %%
portraits = prepare_portraits(load_portraits(), SYNTH)
sentence = nb.pick(smoke="Hello there, how are you today?", full=SENTENCES[3])
clip = synthesize_clip(portraits[0], sentence, seed=0, cfg=SYNTH)
T = len(clip.frames)
print(f"{clip.meta['text']!r}: {T} frames ({T / clip.fps:.2f} s), voice {clip.meta['voice']['name']}")
print("ground truth:", {k: v.shape for k, v in clip.ground_truth.items()})
paths = write_clip(clip, OUT / "videos" / portraits[0].name, "take0")  # mp4 + wav + npz + json
nb.show_video(paths["mp4"], width=256)

# %%
step = max(1, T // 8)
strip = list(clip.frames[::step][:8])
fig = nb.image_grid([strip], col_titles=[f"t={i * step / clip.fps:.2f}s" for i in range(len(strip))], cell=1.6)

# %% [markdown]
# The mouth follows the speech. Below, the loudness of the audio in each frame's 40 ms (RMS of its 640 samples)
# against the ground-truth **mouth opening** (inner-lip gap over the eye-corner distance), with the phonemes
# shaded: the lips part on vowels and close on /m/, /b/, /p/ and in the pauses. This is the relation stage 2
# has to learn from audio alone.

# %%
t = np.arange(T) / clip.fps
rms = np.sqrt(np.mean(clip.audio.reshape(T, -1) ** 2, axis=1))
fig, ax = plt.subplots(figsize=(10, 3))
ax.plot(t, rms / rms.max(), color="gray", label="audio RMS (normalised)")
ax.plot(t, clip.ground_truth["mouth_open"] / clip.ground_truth["mouth_open"].max(), lw=2, label="mouth opening (GT)")
for k, p in enumerate(clip.meta["phonemes"]):
    ax.axvspan(p["start_s"], p["end_s"], color=f"C{k % 2 + 2}", alpha=0.08)
    ax.text((p["start_s"] + p["end_s"]) / 2, 1.03, p["name"], ha="center", fontsize=7)
ax.set_xlabel("time (s)")
ax.legend(loc="upper right", fontsize=8)
nb.show_audio(clip.audio)

# %% [markdown]
# ## 3. Tracking a video
#
# In `"video"` mode the tracker follows the face from frame to frame (faster and steadier than detecting anew).
# Here it labels the SynthTalk clip we just made, so we can compare what the tracker *measures* with what the
# clip *is*. The SynthTalk frame is already the crop, so the crop box is the whole frame $(S/2, S/2, S)$.

# %%
S = SYNTH.size
with FaceTracker(mode="video", max_faces=1) as tracker:
    tracked = clip_labels([frame_labels(tracker.detect(f)[0], (S / 2, S / 2, S)) for f in clip.frames])
gt = clip.ground_truth
corr = [np.corrcoef(tracked["blendshapes"][:, k], gt["mouth_open"])[0, 1] for k in range(NUM_BLENDSHAPES)]
mouthy = BLENDSHAPE_NAMES[int(np.nanargmax(corr))]  # the blendshape that best follows the mouth
names = (mouthy, "eyeBlinkLeft", "mouthSmileLeft")
bs = {n: tracked["blendshapes"][:, BLENDSHAPE_NAMES.index(n)] for n in names}
print(f"blendshape most correlated with the true mouth opening: {mouthy} (r = {np.nanmax(corr):.2f})")

fig, axes = plt.subplots(2, 2, figsize=(11, 6), sharex=True)
for k, name in enumerate(("yaw", "pitch", "roll")):  # the tracker's absolute pose minus its first frame vs GT
    axes[0, 0].plot(t, np.degrees(tracked["pose"][:, k] - tracked["pose"][0, k]), c=f"C{k}", label=f"{name} tracked")
    axes[0, 0].plot(t, np.degrees(gt["pose"][:, k] - gt["pose"][0, k]), c=f"C{k}", ls="--", label=f"{name} GT")
axes[0, 0].set_title("head pose change (deg)")
for k, name in enumerate(("θ", "φ")):  # eye-in-head gaze: tracker vs GT
    axes[0, 1].plot(t, np.degrees(tracked["gaze_head"][:, k]), c=f"C{k}", label=f"{name} tracked")
    axes[0, 1].plot(t, np.degrees(gt["gaze"][:, k]), c=f"C{k}", ls="--", label=f"{name} GT")
axes[0, 1].set_title("gaze in the head (deg)")
axes[1, 0].plot(t, tracked["distance"], label="tracked")
axes[1, 0].plot(t, gt["distance"], ls="--", label="GT")
axes[1, 0].set_title("head distance (eye distance / crop side)")
for k, (name, v) in enumerate(bs.items()):  # each scaled to a peak of 1: some scores are tiny
    axes[1, 1].plot(t, v / max(v.max(), 1e-6), c=f"C{k}", label=f"{name} ÷ {v.max():.2g}")
axes[1, 1].plot(t, gt["mouth_open"] / gt["mouth_open"].max(), c="k", ls="--", label="mouth opening GT")
axes[1, 1].plot(t, gt["blink"], c="gray", ls="--", label="blink GT")
axes[1, 1].set_title("blendshapes (tracked, scaled) vs ground truth")
for ax in axes.flat:
    ax.legend(fontsize=7, ncol=2)
for ax in axes[1]:
    ax.set_xlabel("time (s)")
fig.tight_layout()
print(
    "emotion offset e (clip mean of the blendshapes), strongest:",
    {BLENDSHAPE_NAMES[k]: round(float(tracked["emotion"][k]), 2) for k in np.argsort(tracked["emotion"])[::-1][1:4]},
)

# %% [markdown]
# What to look for: the dashed ground truth and the solid tracker curves should move together. Head **pose**
# is the tracker's strongest label: yaw, pitch and roll follow the truth to about a degree. **Distance** sits a
# little off the truth (the tracker's landmarks are not the rendered ones) and can jump when the eyelids move: it
# is measured between eye corners, which the tracker shifts during a blink. **Gaze** is the weakest: at a few
# pixels per iris the tracker's θ is offset by several degrees and noisy — keep that in mind when stage 2 is
# conditioned on it. Among the **blendshapes**, `eyeBlinkLeft` peaks with the blinks (when the clip has one), but
# `jawOpen` stays near 0 on these small synthetic frames; the blendshape that best follows the mouth (printed
# above) does so with a tiny score, hence the scaling. The clip's blendshapes are still a usable *emotion* signal
# (the astronaut's smile is clear), a poor lip signal. These disagreements are the tracker's errors, which real
# data has too — without ground truth to measure them with.

# %% [markdown]
# ## 4. A folder of videos → clip shards (`vasajax prep`)
#
# `vasajax prep VIDEOS OUT` runs `prep.prepare`. Per video it extracts 16 kHz audio, streams the frames
# resampled to 25 fps through the tracker (pass 1), drops frames with no face, two faces or a face too small,
# cuts the track where the crop jumps, smooths the crop over time (a zero-phase Gaussian of σ = 0.5 s on
# $c_x, c_y, \log \text{side}$), cuts each usable run into clips of $T$ frames, then crops only those frames (pass 2)
# and writes **clip records** with the labels above. The identity of a video is its folder (`alice/talk1.mp4` →
# `alice`; VoxCeleb2, HDTF and CelebV-HQ layouts are understood too).
#
# Here the "videos" are SynthTalk mp4s (with their AAC audio), one folder per portrait — a stand-in for a real
# dataset.

# %%
longest = sorted(SENTENCES, key=len)[::-1]  # long enough for prep's 4 s clips in the full run
for k, p in enumerate(portraits):  # one more take per portrait (the astronaut already has take0)
    take = synthesize_clip(p, longest[k], seed=10 + k, cfg=SYNTH)
    write_clip(take, OUT / "videos" / p.name, "take1")
print(sorted(str(p.relative_to(OUT)) for p in (OUT / "videos").rglob("*.mp4")))
report = prep.prepare(OUT / "videos", OUT / "shards", PREP, progress=False)
print(prep.format_report(report))

# %% [markdown]
# ## 5. Inside a shard
#
# The output folder holds ArrayRecord shards and a `manifest.json`: totals, what was dropped and why, and one
# entry per clip (which shard, which record, source video, identity, label summary).

# %%
manifest = clips.read_manifest(OUT / "shards")
print(json.dumps(manifest["totals"], indent=1))
print("dropped:", manifest["dropped"])
print(json.dumps(manifest["records"][0], indent=None)[:600], "...")

# %% [markdown]
# A clip record is a small JSON header (array names, dtypes, shapes, offsets) followed by the raw arrays; with
# `split_frames` (the default) each JPEG frame is its own ArrayRecord record right after the header, so a
# stage-1 loader that needs two frames decodes two images, not $T$. `EncodedRecord` parses just the header and
# decodes what you ask for:

# %%
entry = manifest["records"][-1]
shard = clips.read_shard(clips.shard_paths(manifest, OUT / "shards")[entry["shard"]])
parts = shard[entry["index"] : entry["index"] + entry["parts"]]  # the header record, then one per frame
rec = clips.EncodedRecord(parts[0], frame_part=lambda i: parts[1 + i])
print("meta:", rec.meta)
print("arrays:", {n: (h["dtype"], h["shape"]) for n, h in rec.header["arrays"].items()})
print("frames:", {k: v for k, v in rec.header["frames"].items() if k != "offsets"})

# %%
shown = range(0, rec.num_frames, max(1, rec.num_frames // 6))
fig = nb.image_grid([list(rec.frames(shown))], col_titles=[f"frame {i}" for i in shown])
pose = rec.array("pose_Tx6")
fig, ax = plt.subplots(figsize=(8, 2.5))
ax.plot(np.degrees(pose[:, :3]), label=["yaw", "pitch", "roll"])
ax.set_xlabel("frame")
ax.set_ylabel("degrees")
ax.set_title(f"pose labels of {rec.meta['source']} clip {rec.meta['clip_index']}")
ax.legend(fontsize=8)
print("audio samples:", rec.array("audio_N").shape, "= T ×", clips.SAMPLES_PER_FRAME)

# %% [markdown]
# The same dataset can be made in one command, straight from SynthTalk into shards with a train and a held-out
# split (unseen sentences and voice), labelled by the same tracker as `prep`:
#
# ```bash
# vasajax synth --shards --out data/synthtalk-small --num-clips 200 --size 256 --workers 2
# ```
#
# (`vasajax.data.synth.shards.write_dataset` from Python; notebook 02 uses it to train stage 1.)

# %% [markdown]
# ## What to try next
#
# - Track your own photo: `track_image("me.jpg")` and draw it as above; try a profile view or two faces
#   and see what `track_image` says.
# - Change the crop: `CropConfig(scale=1.1)` (tighter) or `offset_y=0.15`, and look at the crop it gives.
# - Make SynthTalk livelier: `dataclasses.replace(SYNTH, head_yaw_deg=12, gaze_deg=25, smile_prob=1.0)`, re-run
#   section 2 and compare the tracker's labels with the ground truth — where does the tracker start to fail?
# - Prepare real videos: put a few talking-head mp4s under `videos/<person>/` and run
#   `vasajax prep videos/ shards/ --size 256`; `data_prep/README.md` covers VoxCeleb2, HDTF and CelebV-HQ.
# - Read a whole dataset with `clips.read_records(manifest, root)` and plot the spread of the gaze and distance
#   labels: those are the ranges stage 2's controls can be trusted in.
