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
# # 02 · Stage 1: training the face latent space
#
# VASA-1 never generates pixels directly. Its first stage (§3.1, built on MegaPortraits) learns to **factor a
# face image** into four latents and to render any combination of them back into an image:
#
# | factor | shape | what it holds | encoder |
# |---|---|---|---|
# | $V^{app}$ | $D\times H\times W\times C$ | canonical 3D appearance volume: the face with pose and expression removed | $E_{app}$ + warp $W_{s\to c}$ + $G_{3D}$ |
# | $z^{id}$ | vector | identity | $E_{id}$ |
# | $z^{pose}$ | 6 | $[\text{yaw}, \text{pitch}, \text{roll}, t_x, t_y, t_z]$ | $E_{mot}$ |
# | $z^{dyn}$ | vector | facial dynamics: lips, eyes, brows, expression | $E_{mot}$ |
#
# The appearance encoder lifts the image $x_s$ to a *posed* volume $V_s$; a rigid transform and a learned flow
# $\delta_s = W_{s\to c}(z^{pose}_s, z^{dyn}_s, z^{id}_s)$ warp it to the canonical volume, which a 3D U-Net refines:
#
# $$V^{app}(p) = G_{3D}\Big[\,V_s\big(R_s\,p + t_s + \delta_s(p)\big)\Big].$$
#
# The decoder $\mathcal{D}$ applies the inverse kind of warp for *any* target pose and dynamics, then projects the
# volume to an image with a 2D generator:
#
# $$V_d(q) = V^{app}\big(R_d^{\top}(q - t_d) + \delta_d(q)\big), \qquad
#   \hat{x} = \mathcal{D}(V^{app}, z^{id}, z^{pose}_d, z^{dyn}_d) = G_{2D}(V_d).$$
#
# Stage 2 (notebook 03) then only has to generate $x_i = [z^{pose}_i, z^{dyn}_i]$ per frame from audio. For that
# to work the factors must be **disentangled**: changing $z^{pose}$ must not change the expression or the
# identity, and $z^{dyn}$ must carry no identity. Nothing labels these factors; the training objective below
# makes them so, by swapping latents between frames.
#
# **Smoke or full run.** By default (*smoke* mode, what the test suite executes) the notebook makes two
# 96×96 SynthTalk clips, trains a *slimmed* tiny model (64×64 images) for a couple of dozen steps with the cheapest
# loss terms, and shows its curves and samples: the images are blurry blobs that only start to take the colours
# and layout of the faces — a training run you can watch in about a minute of compilation, not a model. Set
# `VASAJAX_FULL=1` before starting Jupyter (or `FULL = True` below) for the full run: 40 clips at 256×256, the
# `small` config with the whole objective for 2,000 steps (hours on a laptop CPU, minutes on a GPU), whose
# reconstructions and cross-identity reenactments become recognisable faces.

# %%
import dataclasses
import functools
import json
import time

import jax
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx
from PIL import Image

from vasajax import notebook as nb
from vasajax.data import clips
from vasajax.data.synth import shards as synth_shards
from vasajax.data.synth.config import SynthConfig
from vasajax.data.synth.inputs import load_portraits
from vasajax.data.synth.portrait import prepare_portraits
from vasajax.face import model as fm
from vasajax.face.config import FaceConfig
from vasajax.face.model import FaceLatentModel
from vasajax.train import face

FULL = nb.full_run()
OUT = nb.out_dir("02_train_face_latent", fresh=True)
DATA = nb.pick(
    smoke=dataclasses.replace(synth_shards.ShardsConfig.tiny(), num_train=2, num_heldout=0),
    full=synth_shards.ShardsConfig(synth=SynthConfig.small(), num_train=40, num_heldout=0, clips_per_unit=10),
)
print(f"full run: {FULL}; JAX {jax.__version__} on {jax.devices()[0].platform}")

# %% [markdown]
# ## 1. Data: SynthTalk clips straight into shards
#
# Stage 1 needs only frames: a *source* and a *driver* frame of the same clip, and a *cross* frame of another
# identity (`vasajax.data.loader.face_pairs` draws them). We make them with SynthTalk (notebook 01), written as the
# same clip shards `vasajax prep` writes from real videos. Two bundled portraits give two identities.

# %%
portraits = prepare_portraits(load_portraits(), DATA.synth)
manifests = synth_shards.write_dataset(
    OUT / "data", DATA, portraits, splits=("train",), workers=nb.pick(smoke=1, full=2)
)
DATA_DIR = OUT / "data" / "train"
print(json.dumps(manifests["train"]["totals"]))

# %% [markdown]
# ## 2. The model and its latents
#
# The training config bundles the model (`FaceConfig`), the discriminator, the loss weights, two optimisers and the
# run (steps, batch, seed, logging). Smoke mode slims the tiny model (fewer blocks: it compiles faster) and keeps
# only the cheap loss terms; the full run uses `FaceTrainConfig.small()` as it is.

# %%
if FULL:
    TRAIN = face.FaceTrainConfig.small(steps=2000, batch_size=8, sample_every=250, log_every=20, ckpt_every=500)
else:
    tiny = face.FaceTrainConfig.tiny(steps=24, batch_size=4, sample_every=8, log_every=1, ckpt_every=1000)
    TRAIN = dataclasses.replace(
        tiny,
        model=FaceConfig.tiny(
            app_res3d=0, g2d_blocks=0, g3d_channels=(8,), enc_channels=(8, 8, 8), warp_channels=(8,), warp_base_depth=2
        ),
        loss=dataclasses.replace(
            tiny.loss, face_weight=0.0, identity_weight=0.0, contrastive_weight=0.0, ssim_scales=1
        ),
        adversarial=False,  # no discriminator in smoke mode: one program less to compile
    )
print(TRAIN.model)

# %% [markdown]
# What does one image become? `jax.eval_shape` runs the encoder on shapes only (no compute, no memory), and
# the parameter count of each part shows where the model's capacity sits:

# %%
abstract = fm.abstract(TRAIN.model)
graphdef, params = nnx.split(abstract)
images = jax.ShapeDtypeStruct((1, TRAIN.model.image_size, TRAIN.model.image_size, 3), np.float32)
lat = jax.eval_shape(functools.partial(fm.encode_fn, graphdef), params, images)
print("V_app", lat.appearance.shape, " z_id", lat.identity.shape, " z_pose", lat.pose.shape, " z_dyn", lat.dyn.shape)
parts = (
    "appearance_encoder",
    "motion_encoder",
    "identity_encoder",
    "warp_to_canonical",
    "warp_to_driver",
    "g3d",
    "g2d",
)
print({p: fm.count_params(nnx.state(getattr(abstract, p))) for p in parts}, "total", fm.count_params(params))

# %% [markdown]
# ## 3. The objective
#
# Each step takes frames $x_s, x_d$ of one clip and $x_c$ of another identity (images in $[0, 1]$), encodes
# them, and decodes several **swaps** of their latents ($V_k, z^{id}_k, z^{pose}_k, z^{dyn}_k$ are frame $k$'s).
# All of it is `vasajax.face.losses.generator_loss_and_outputs`.
#
# **Self-reenactment** (MegaPortraits). Render the source with the driver's motion and compare with the driver:
#
# $$\hat{x}_{sd} = \mathcal{D}(V_s, z^{id}_s, z^{pose}_d, z^{dyn}_d), \qquad
# \mathcal{L}_{rec} = \lambda_{1}\lVert \hat{x}_{sd} - x_d\rVert_1 + \lambda_{p}\,P(\hat{x}_{sd}, x_d)
#   + \lambda_{f}\,P\big(\mathrm{zoom}(\hat{x}_{sd}), \mathrm{zoom}(x_d)\big).$$
#
# $P$ is pix2pixHD's VGG19 loss $\sum_l w_l\,\mathrm{mean}\,|\phi_l(x) - \phi_l(y)|$ over relu1_1…relu5_1 when VGG
# weights are given; offline there are none, and the fallback is a multi-scale SSIM distance
# $\frac{1}{S}\sum_{s}\big(1 - \mathrm{SSIM}_s\big)$ with a larger L1 weight. The *face* term applies $P$ to the
# central crop zoomed to full size (MegaPortraits uses VGGFace there).
#
# **Adversarial** (hinge GAN + feature matching). A multi-scale patch discriminator $D$ learns
# $\mathcal{L}_D = \mathbb{E}\max(0, 1 - D(x_d)) + \mathbb{E}\max(0, 1 + D(\hat{x}))$; the generator gets
# $\mathcal{L}_{G} = -\mathbb{E}\,D(\hat{x})$ and $\mathcal{L}_{FM} = \sum_l \mathrm{mean}\,|D_l(\hat{x}) - D_l(x_d)|$.
#
# **Motion-descriptor contrastive loss** (MegaPortraits, CosFace). Re-encode the generated images; their
# dynamics $z$ must be closer to the driver's $z^{+} = z^{dyn}_d$ than to the cross frame's $z^{-} = z^{dyn}_c$:
#
# $$\mathcal{L}_{cos} = -\log\frac{e^{s(\cos(z, z^{+}) - m)}}{e^{s(\cos(z, z^{+}) - m)} + \sum_k e^{s\cos(z, z^{-}_k)}},
#   \qquad s = 5,\ m = 0.2.$$
#
# **Pose / dynamics transfer consistency** (VASA-1, after DPE). Give frame $d$ the source's pose, and give frame $s$
# the driver's dynamics. Both images now show *the same person with the same pose and the same expression*, so
#
# $$\hat{x}_{a} = \mathcal{D}(V_d, z^{id}_d, z^{pose}_s, z^{dyn}_d), \quad
#   \hat{x}_{b} = \mathcal{D}(V_s, z^{id}_s, z^{pose}_s, z^{dyn}_d), \qquad
#   \mathcal{L}_{tr} = \lambda_{1}\lVert \hat{x}_{a} - \hat{x}_{b}\rVert_1 + \lambda_{p}\,P(\hat{x}_{a}, \hat{x}_{b}).$$
#
# It is zero only if pose and dynamics do not leak into each other — the disentanglement VASA-1 found lacking.
#
# **Cross-identity identity loss** (VASA-1). Drive the other person with $d$'s motion; the result must still be them:
#
# $$\hat{x}_{cd} = \mathcal{D}(V_c, z^{id}_c, z^{pose}_d, z^{dyn}_d), \qquad
#   \mathcal{L}_{id} = 1 - \cos\big(\mathrm{ID}(\hat{x}_{cd}),\ \mathrm{ID}(x_c)\big).$$
#
# VASA-1 uses ArcFace for $\mathrm{ID}$; no ArcFace weights exist offline, so vasajax uses VGG features when VGG
# weights are given, else its own identity encoder under `stop_gradient` (weaker; plug in a real recogniser with
# `FaceCritics(identity=fn)`). The total is the weighted sum; the weights of this run:

# %%
w = TRAIN.loss_cfg
print(f"perceptual={w.perceptual}: L1 ×{w.l1_weight}, P ×{w.perceptual_weight}, face ×{w.face_weight}, "
      f"GAN ×{w.gan_weight}, FM ×{w.feature_matching_weight}, CosFace ×{w.contrastive_weight}, "
      f"transfer ×{w.transfer_weight}, identity ×{w.identity_weight}")  # fmt: skip

# %% [markdown]
# In smoke mode the face, identity, contrastive and GAN terms are switched off (weight 0): each adds networks to the
# step, and compiling the step is most of the cost of a short CPU run. The reconstruction and VASA-1's transfer
# consistency terms remain. The full run trains with every term.
#
# ## 4. Train
#
# `face.train` is the whole trainer: the same function `vasajax train-face --config small --data DIR --workdir RUN`
# calls, with sharding over every device, checkpoints and exact resume (run the cell again: it continues from the
# newest checkpoint). The first step compiles the generator step; later steps are fast.

# %%
RUN = OUT / "run"
t0 = time.time()
result = face.train(TRAIN, DATA_DIR, RUN, progress=FULL)
print(f"{result['step']} steps in {time.time() - t0:.0f} s (including compilation)")
print(
    {k: round(v, 4) for k, v in result["metrics"].items() if k in ("loss", "l1", "perceptual", "psnr", "transfer_l1")}
)

# %% [markdown]
# ## 5. Curves
#
# The run folder holds `metrics.jsonl` (one line per logged step; also in TensorBoard under `RUN/tb`). PSNR is
# the self-reenactment's, $-10\log_{10}\mathrm{MSE}(\hat{x}_{sd}, x_d)$ in dB.

# %%
rows = [json.loads(line) for line in (RUN / "metrics.jsonl").read_text().splitlines()]
steps = [r["step"] for r in rows]
fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.5))
for key in ("loss", "l1", "perceptual", "transfer_l1", "transfer_perceptual", "identity", "contrastive", "gan"):
    if key in rows[0]:
        a.plot(steps, [r[key] for r in rows], label=key)
a.set_yscale("log")
a.set_xlabel("step")
a.set_title("generator loss terms (unweighted) and total")
a.legend(fontsize=8)
b.plot(steps, [r["psnr"] for r in rows], color="C3")
b.set_xlabel("step")
b.set_title("self-reenactment PSNR (dB)")
fig.tight_layout()

# %% [markdown]
# ## 6. Samples over training
#
# Every `sample_every` steps the trainer renders a fixed batch with the EMA weights into
# `RUN/samples/step_XXXXXXX.png`. Columns are examples; rows are **source** $x_s$, **driver** $x_d$,
# **self-reenactment** $\hat{x}_{sd}$ (should look like the driver), **cross identity** $x_c$ and **cross
# reenactment** $\hat{x}_{cd}$ (should look like $x_c$ with the driver's pose and mouth).
#
# In smoke mode, after two dozen steps of a slimmed model, the generated rows are blurry colour blobs that only
# begin to take the layout and colours of the faces: the point is to see the machinery and the trend, not a face.
# In the full run the self-reenactments become sharp copies of the driver within a few hundred steps, and the
# cross reenactments keep the other person's face while following the driver's head and mouth.

# %%
grids = sorted((RUN / "samples").glob("step_*.png"))
shown = grids[:: max(1, len(grids) // 3)][-3:] if len(grids) > 3 else grids
fig = nb.image_grid(
    [[np.asarray(Image.open(p)) for p in shown]],
    col_titles=[f"step {int(p.stem.split('_')[1])}" for p in shown],
    cell=3.2,
)

# %% [markdown]
# ## 7. Cross-identity reenactment
#
# The test of disentanglement: take each identity's first frame as a **source**, and frames of *both* clips as
# **drivers**. Row $i$, column $j$ is `model.reenact(source_i, driver_j)` — source $i$'s appearance and identity
# with driver $j$'s pose and dynamics. A good latent space keeps each row one person and each column one pose and
# expression. `face.load_model` returns the EMA weights of the newest checkpoint as a `FaceLatentModel`.
# (Smoke mode: expect blobs again, now showing which colours the model attaches to each identity. What 800 steps
# of the `small` config on a 2-core CPU give is in `docs/demo_cross_identity.jpg`: faces, blurry, with identity
# leaking between the two portraits.)

# %%
model = face.load_model(RUN)
first = {}  # the first clip of each identity
for rec in clips.read_records(clips.read_manifest(DATA_DIR), DATA_DIR):
    first.setdefault(rec.identity, rec)
    if len(first) == 2:
        break
records = list(first.values())
sources = np.stack([r.frames_TxSxSx3[0] for r in records])
drivers = np.stack([r.frames_TxSxSx3[int(q * (r.num_frames - 1))] for r in records for q in (0.3, 0.6, 0.9)])
n_src, n_drv, S = len(sources), len(drivers), TRAIN.model.image_size
sources, drivers = (jax.image.resize(x / 255.0, (len(x), S, S, 3), "linear") for x in (sources, drivers))
reenact = nnx.jit(FaceLatentModel.reenact)
out = reenact(model, np.repeat(sources, n_drv, axis=0), np.tile(drivers, (n_src, 1, 1, 1)))
out = np.asarray(out).reshape(n_src, n_drv, S, S, 3)
fig = nb.image_grid(
    [[None, *drivers]] + [[sources[i], *out[i]] for i in range(n_src)],
    col_titles=["source"] + [f"driver {j + 1}" for j in range(n_drv)],
    row_titles=["drivers"] + [records[i].identity for i in range(n_src)],
)

# %% [markdown]
# ## What to try next
#
# - Train longer: raise `steps` (the cosine schedule follows it) and watch the PSNR curve and the sample grids;
#   re-running the training cell with the same config resumes from the last checkpoint.
# - Switch terms on and off: `dataclasses.replace(TRAIN.loss, transfer_weight=0.0)` or `adversarial=True`, and
#   compare cross reenactments — without the transfer term, does the pose leak into the expression?
# - Give it VGG19 weights (`FaceTrainConfig.small(vgg_weights="vgg19.pth")`, a torchvision state dict) and compare
#   the sharpness with the SSIM fallback.
# - Plug in a real face recogniser for the identity loss: `face.train(..., identity_encoder=my_arcface)` with
#   `my_arcface(images_BxHxWx3) -> embeddings_BxE`.
# - Notebook 04 ablates the latent factors; notebook 03 trains stage 2 on the motion latents this encoder extracts
#   (`vasajax encode-dataset --face-checkpoint RUN`).
