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
# # 04 · Taking the latent space apart: factor swaps and condition ablations
#
# VASA-1's central claim is a **disentangled** face latent space (§3.1): a face image is encoded into four factors
# that can be recombined freely,
#
# | factor | symbol | what it holds | shape here |
# |---|---|---|---|
# | appearance | $V_\text{app}$ | canonical 3D feature volume (texture, hair, clothes) | $D\times H\times W\times C$ |
# | identity | $z_\text{id}$ | who it is (face shape) | vector |
# | head pose | $z_\text{pose}$ | yaw, pitch, roll, translation | 6 |
# | dynamics | $z_\text{dyn}$ | lips, eyes, brows, expression | vector |
#
# and the decoder renders any combination, $I = \mathcal{D}(V_\text{app}, z_\text{id}, z_\text{pose}, z_\text{dyn})$.
# The paper shows it with swaps: the same generated motion on different faces (figure 4), pose and dynamics
# varied one at a time (figure 5). Its stage-2 model adds control signals — main gaze $g$, head distance $d$,
# emotion offset $e$ — and classifier-free guidance scales $\lambda_A, \lambda_g$, whose effect it measures
# (table 5: gaze error $\mathcal{E}_g$, distance error $\mathcal{E}_d$, ΔP, lip sync).
#
# This notebook does both with the library: `FaceLatentModel.encode` / `decode` with mixed latents
# (`vasajax.eval.ablation.swap`, `hold`, `spin_pose`), and `ablation.run_ablation`, which animates a portrait
# under each setting with `pipeline.Animator` and measures the video with `vasajax.eval` (face tracking,
# `pose.gaze_error_deg`, `pose.distance_error`, `pose.delta_p`, `lipsync`).

# %% [markdown]
# ## The model, and the quick and full runs
#
# `nb.demo_checkpoint()` is the shipped checkpoint `checkpoints/demo` (stage 1 and 2 `small` configs, 256², the
# pixel-warp decoder, trained on SynthTalk's two portraits on a CPU). By default the notebook uses two seconds of
# speech and 10 diffusion steps (about a minute on a laptop CPU); `VASAJAX_FULL=1` (or `FULL = True`) uses four
# seconds, the checkpoint's steps and more settings in the table. The test suite runs it with `VASAJAX_SMOKE=1`: a
# tiny model with random weights, whose pictures are noise and whose tracked metrics are empty.

# %%
import dataclasses

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown

from vasajax import notebook as nb
from vasajax.data.speech import synthesize_speech
from vasajax.eval import ablation as ab
from vasajax.eval.report import markdown_table
from vasajax.face.model import jitted
from vasajax.motion.audio import frame_features
from vasajax.motion.generate import generate_motion
from vasajax.pipeline import Animator, Video

FULL = nb.full_run()
OUT = nb.out_dir("04_latent_ablation")
anim = Animator.from_pretrained(nb.demo_checkpoint())
params, encode, decode = jitted(anim.export.face_model)  # pure, jitted encode / decode
print(anim.export.manifest.get("weights", "trained weights"), "| face", anim.face_cfg.image_size, "px")

# %% [markdown]
# ## 1 · Two subjects, four factors each
#
# `Animator.prepare` finds the face (MediaPipe), cuts the crop the models were trained on and encodes it once:
# `portrait.latent` is a `FaceLatent(appearance, identity, pose, dyn)` with batch 1. Decoding it unchanged is
# the self-reconstruction.

# %%
subjects = {"astronaut": anim.prepare(nb.asset("astronaut.png")), "hopper": anim.prepare(nb.asset("grace_hopper.jpg"))}
A, B = (p.latent for p in subjects.values())
for name, p in subjects.items():
    lat = p.latent
    print(f"{name:>9}: appearance {lat.appearance.shape}, identity {lat.identity.shape}, pose {lat.pose.shape},"
          f" dyn {lat.dyn.shape}; yaw/pitch/roll (°) {np.degrees(np.asarray(lat.pose)[0, :3]).round(1)}")  # fmt: skip

# %% [markdown]
# ## 2 · Swapping one factor between subjects
#
# Each row keeps one subject as the base and takes the named factor(s) from the other: `ab.swap(base, donor,
# factors)`. In a well-disentangled space, taking the donor's **pose** turns the head, its **dynamics** changes
# only mouth/eyes/expression, and **appearance + identity** changes who it is while keeping the base's motion.
# (VASA-1 keeps appearance and identity together in practice; swapping only one of them shows how much each
# carries.) The last column takes all four factors: the donor's reconstruction.
#
# *With the demo model:* the appearance factor carries who it is — with the pixel-warp decoder the photo itself
# travels with it, so "+ appearance" is the donor's face, pulled out of shape by the base's other codes (its
# landmark points come from the base's pose and dynamics); identity alone changes nothing visible; pose turns the
# head a little (the two portraits' poses are close); dynamics changes the mouth and cheeks towards the donor's
# — and with them some of the face's layout, since this small model's z_dyn is not free of identity (section 3
# works around it with relative dynamics). Under the test suite's random weights the columns show noise.

# %%
columns = [[], ["appearance"], ["identity"], ["appearance", "identity"], ["pose"], ["dyn"], list(ab.FACTORS)]
titles = ["input crop", "reconstruction"] + ["+ " + " + ".join(c) for c in columns[1:-1]] + ["all (donor)"]
rows = []
for base, donor, p in ((A, B, subjects["astronaut"]), (B, A, subjects["hopper"])):
    mixed = ab.stack([ab.swap(base, donor, c) for c in columns])  # 7 latents, decoded in fixed batches
    rows.append([p.crop] + list(ab.decode_batched(decode, params, mixed)))
fig = nb.image_grid(rows, row_titles=["astronaut ← hopper", "hopper ← astronaut"], col_titles=titles, cell=1.6)
fig.savefig(OUT / "factor_swaps.png", dpi=80)

# %% [markdown]
# ## 3 · One generated motion, two faces (VASA-1 figure 4)
#
# Stage 2 turns speech into a motion sequence $X = \{[z^i_\text{pose}, z^i_\text{dyn}]\}$. The same sequence can
# drive any face: appearance and identity come from the portrait, motion from the DiT. Generated head pose is
# applied *around each portrait's own pose* (`ab.retarget`, the convention `Animator` uses), so each subject
# keeps its framing. The motion is generated for the astronaut (its first window primed with her own motion, as
# the Animator does); for the other face its dynamics are applied *relative* to hers,
# $z^{dyn}_{B} + (\hat z^{dyn}_i - z^{dyn}_{A})$: this model's $z^{dyn}$ also encodes the face's layout (eye
# spacing, mouth width), and the absolute codes would pull Hopper's face into the astronaut's. Speech: one
# sentence synthesised offline with espeak-ng.

# %%
speech = synthesize_speech("The parrot repeated every word the captain said.", seed=0)
wave = speech.audio_16k[: int(nb.pick(smoke=2.0, full=4.0) * 16_000)]
dcfg = dataclasses.replace(anim.diffusion, steps=nb.pick(smoke=10, full=anim.diffusion.steps))
mean = np.asarray(anim.motion_model.motion_mean.get_value())
context_motion, context_audio = anim.portrait_context(subjects["astronaut"])
motion = generate_motion(
    anim.motion_model, frame_features(wave, anim.audio_cfg), dcfg, gaze=(0.0, 0.0), seed=0,
    context_motion=context_motion, context_audio=context_audio,
)[0]  # fmt: skip
show = np.linspace(0, len(motion) - 1, 6).round().astype(int)  # six frames across the clip
grid = [
    ab.decode_motion(
        decode,
        params,
        lat,
        ab.retarget(motion[show], lat.pose[0], mean, portrait_dyn=lat.dyn[0], reference_dyn=A.dyn[0]),
    )
    for lat in (A, B)
]
fig = nb.image_grid(grid, row_titles=list(subjects), col_titles=[f"{t / 25:.2f} s" for t in show], cell=1.6,
                    title="the same generated motion on two faces")  # fmt: skip
nb.show_audio(wave)

# %% [markdown]
# ## 4 · Pose vs. facial dynamics (VASA-1 figure 5)
#
# Hold one part of the motion constant while the other moves (`ab.hold(motion, "pose" | "dyn", value=...)`),
# frozen at the portrait's own pose or dynamics:
#
# 1. the raw generated sequence;
# 2. generated **pose**, dynamics frozen at the portrait's: the head moves, the face does not speak;
# 3. generated **dynamics**, pose frozen at the portrait's: the face speaks, the head is still;
# 4. generated dynamics with a pre-defined **spinning** pose (`ab.spin_pose`, ±25° yaw around the portrait's
#    pose): speech under a head turn the audio never asked for.
#
# If pose and dynamics were entangled, row 3 would still show head motion and row 2 lip motion.

# %%
rel = ab.retarget(motion, A.pose[0], mean)
variants = {
    "raw": rel,
    "pose only": ab.hold(rel, "dyn", value=A.dyn[0]),
    "dynamics only": ab.hold(rel, "pose", value=A.pose[0]),
    "dynamics + spin": np.concatenate([ab.spin_pose(len(rel), A.pose[0]), rel[:, 6:]], axis=1),
}
clips = {name: ab.decode_motion(decode, params, A, m) for name, m in variants.items()}
fig = nb.image_grid([c[show] for c in clips.values()], row_titles=list(clips), cell=1.6,
                    col_titles=[f"{t / 25:.2f} s" for t in show])  # fmt: skip
side_by_side = np.concatenate(list(clips.values()), axis=2)  # T × S × 4S × 3
path = Video(frames=(side_by_side * 255).round().astype(np.uint8), fps=25.0, audio=wave, motion=motion).save(
    OUT / "pose_vs_dynamics.mp4"
)
nb.show_video(path, width=4 * 160)

# %% [markdown]
# *With the demo model:* rows 1–2 show the generated head motion (small nods and turns), row 2 with the photo's
# closed smile throughout; row 3 keeps the head still while the lips part and close (play the video: the stills
# show it faintly at this size). Row 4 is the rigid warp at work: the head spins, and beyond the small angles
# SynthTalk trained it on the pixel warp tears the face and hair apart. So figure 5's first two claims hold here
# (head motion without speech, speech without head motion); speech during a large turn does not. (Random test
# weights: noise, often warped out of frame.)
#
# ## 5 · Condition ablation (VASA-1 table 5)
#
# Stage 2 is conditioned on the main gaze $g = (\theta, \phi)$, the head distance $d$ and an emotion offset $e$,
# and guided with the CFG scales of eq. 2,
# $\hat X_0 = (1 + \sum_c \lambda_c)\,\mathcal{H}(X_t,t,C) - \sum_c \lambda_c\,\mathcal{H}(X_t,t,C\mid c=\varnothing)$.
# VASA-1 measures each control on the generated video:
#
# - $\mathcal{E}_g$ (`gaze_err`): angle between the requested gaze and the main gaze measured by a gaze tracker
#   (here MediaPipe's iris landmarks, `facetrack.labels.gaze_from_landmarks`), degrees;
# - $\mathcal{E}_d$ (`dist_err`): |requested − measured| normalised head distance;
# - ΔP (`delta_p`): mean absolute frame-to-frame change of the tracked yaw/pitch/roll, degrees;
# - lip sync: the paper uses SyncNet; here `av_corr`/`av_conf` correlate the tracked mouth opening with the
#   audio energy (`eval/lipsync.py`; SyncNet needs weights you supply, see `eval/syncnet.py`).
#
# `ab.run_ablation` animates the astronaut once per setting with the same seed and adds two measurements that
# need no face tracking: `delta_p_latent` (ΔP of the generated pose latent itself) and `effect` (RMS change of
# the whole motion against the default setting, in units of the DiT's per-dimension std: how much the control
# moved the motion at all).

# %%
deg = np.radians
settings = {
    "default (λ_A 0.5, λ_g 1)": {},
    "gaze left 20°": {"gaze": (deg(-20), 0.0)},
    "gaze right 20°": {"gaze": (deg(20), 0.0)},
    "gaze up 15°": {"gaze": (0.0, deg(15))},
    "distance × 0.8 (nearer)": {"distance": 0.8 * subjects["astronaut"].distance},
    "distance × 1.25 (farther)": {"distance": 1.25 * subjects["astronaut"].distance},
    "emotion happy": {"emotion": "happy"},
    "emotion surprised": {"emotion": "surprised"},
}
cfg_settings = nb.pick(
    smoke=[(0.0, 0.0)],  # each new pair of scales compiles the sampler again: one in smoke mode
    full=[(0.0, 0.0), (0.0, 1.0), (0.0, 2.0), (1.0, 1.0), (2.0, 1.0)],
)
settings.update({f"λ_A {a}, λ_g {g}": {"cfg_audio": a, "cfg_gaze": g} for a, g in cfg_settings})
if FULL:
    settings["λ_A 0.5, λ_g 1, 10 steps"] = {"steps": 10}
common = {} if FULL else {"steps": 10}
rows, videos = ab.run_ablation(anim, subjects["astronaut"], wave, {k: {**common, **v} for k, v in settings.items()})
Markdown(markdown_table(rows, first="setting"))

# %% [markdown]
# How far each control moves the motion (left), and the generated yaw over time for the gaze and CFG settings
# (right). *With the demo model* (the session-13 checkpoint, this notebook's default run): gaze left and right move
# the measured gaze the requested way — θ from −2.4° at the default to −11.2° and +6.0° for ∓20° — by a third to a
# half of the request and partly by turning the head; "up" barely moves it. Requests are standardised by the
# training labels' spread and clipped at ±3σ (SynthTalk's eyes move within ±14°), so a larger angle asks for no
# more than the data's edge. (Before the conditions were standardised the DiT ignored gaze altogether:
# `checkpoints/README.md`, "The gaze control that did nothing".) Emotion moves the motion about half as far as gaze;
# distance moves the motion but hardly the measured distance (SynthTalk varies it by ~1 %), and the "farther" clip
# loses its lip sync at the default lag; turning off guidance (λ = 0) sends the gaze 8° away from the camera. The
# tracked columns of the table come from MediaPipe on the rendered frames: the mouth follows the speech under the
# other settings (av_corr 0.22–0.44 at the default lag on this 2-s clip, 0.44–0.59 at the best lag; real SynthTalk
# clips score about 0.7). Read the table like VASA-1's: $\mathcal{E}_g$ should fall as
# $\lambda_g$ grows, the measured gaze should follow left/right/up, the measured distance should shrink for
# "farther", and $\lambda_A$ should raise lip sync and ΔP (the paper: λ_A = 0.5
# improves Sync-C from 7.13 to 7.96 and ΔP from 0.290 to 0.316; larger λ_A exaggerates the mouth and adds jitter).

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.6), gridspec_kw={"width_ratios": [1, 1.3]})
axes[0].barh([r["setting"] for r in rows], [r["effect"] for r in rows])
axes[0].invert_yaxis()
axes[0].set_xlabel("motion change vs default (RMS, units of std)")
secs = np.arange(len(motion)) / 25
for name, v in videos.items():
    if name.startswith(("default", "gaze", "λ")):
        axes[1].plot(secs[: len(v.motion)], np.degrees(v.motion[:, 0]), lw=1, label=name)
axes[1].set(xlabel="seconds", ylabel="generated yaw (°)")
axes[1].legend(fontsize=7, ncol=2)
fig.tight_layout()

# %% [markdown]
# The middle frame of each controlled video (compare with VASA-1 figure 3: gaze, distance, emotion rows):

# %%
names = [n for n in settings if not n.startswith("λ")]
fig = nb.image_grid(
    [[videos[n].frames[len(videos[n].frames) // 2] for n in names]],
    col_titles=[n.split(" (")[0] for n in names],
    cell=1.6,
)
fig.savefig(OUT / "controls.png", dpi=80)

# %% [markdown]
# ## What to try next
#
# - Swap factors between *frames* of one video instead of two subjects: encode SynthTalk frames (notebook 01)
#   with `encode` and decode frame 0's appearance with frame 30's pose — the stage-1 transfer loss trains exactly
#   this (`face/losses.py`).
# - Add a row per identity to section 3 with your own portraits (`anim.prepare("me.jpg")`).
# - Sweep `cfg_audio` finely and plot `av_corr` and ΔP against it; add `steps` (5, 10, 25, 50) to see the
#   paper's speed/quality trade-off.
# - Measure SyncNet Sync-C/D and CAPP (`vasajax eval --syncnet ... --capp ...`) on the saved videos instead of
#   the audio-energy proxy.
# - Try `ab.spin_pose(..., pitch_deg=15)` or your own pose curves: the decoder is a renderer you can drive by
#   hand.
