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
# # 07 · The zoo: swappable stages, converted models, and VASA's DiT driving LivePortrait
#
# A talking-face model here is three parts — an **audio encoder**, a **motion generator** and a **renderer** — that
# talk only through small interfaces (`vasajax.stages`). VASA-1 is one combination (log-mel → motion DiT → face
# latent model). The *zoo* holds ports of other models that split the same way: LivePortrait's renderer
# (KwaiVGI/LivePortrait) and JoyVASA's motion generator and HuBERT audio encoder (jdh-algo/JoyVASA), converted from
# their released PyTorch weights into vasajax exports.
#
# This notebook shows:
#
# 1. **the registry**: which entries exist, by name;
# 2. **the interfaces**: what a renderer, a motion generator and an audio encoder must provide, on one screen;
# 3. **a conversion**: LivePortrait weights in the upstream layout → an export, through the writer `vasajax convert`
#    uses;
# 4. **mixing stages** (JoyVASA's recipe, in JAX): encode talking-face clips with the LivePortrait renderer's
#    motion extractor, train VASA's motion DiT on that motion, export the pair, and animate — side by side with the
#    VASA demo model on the same speech.
#
# **Modes.** The default run uses *random* LivePortrait weights in the upstream layout (the tiny parity fixtures of
# `tests/fixtures/zoo`, 5 keypoints, 64² crops) and trains the DiT for a few hundred steps: minutes on a CPU, and
# the LivePortrait faces are noise (random weights), though every step is the real one. `VASAJAX_FULL=1` converts
# the released weights if you downloaded them (see section 3) and trains longer. The test suite runs it with
# `VASAJAX_SMOKE=1`: tiny everything, a few training steps, seconds.

# %%
import inspect
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from vasajax import notebook as nb
from vasajax import params, stages
from vasajax.data.speech import Voice, synthesize_speech
from vasajax.data.synth import shards as synth_shards
from vasajax.data.synth.inputs import load_portraits, load_sentences
from vasajax.data.synth.portrait import prepare_portraits
from vasajax.motion import audio as audio_lib
from vasajax.pipeline import Animator
from vasajax.train import encode_dataset as ed
from vasajax.train import export as ex
from vasajax.train import motion as tm
from vasajax.zoo import cli as zoo_cli
from vasajax.zoo import export as zoo_export
from vasajax.zoo.liveportrait import convert as lpc
from vasajax.zoo.liveportrait.config import LivePortraitConfig

FULL, SMOKE = nb.full_run(), nb.smoke_test()
OUT = nb.out_dir("07_zoo")
print("full run" if FULL else ("smoke run" if SMOKE else "default run"), "→ outputs in", OUT)

# %% [markdown]
# ## 1 · The registry
#
# Each kind of stage has a registry: a name → an entry class with `load(directory, manifest)`. An export's
# `manifest.json` names its entries (`{"stages": {"renderer": "liveportrait", "motion": "vasa", ...}}`), and
# `vasajax.load.load_stages` loads each one from the folder. Entries are registered lazily (`"module:attr"`
# strings), so listing them imports nothing heavy; user code adds its own with `RENDERERS.register("name", cls)`.
#
# Two more registries name what the trainers can train: `vasajax train-face --renderer NAME` takes any entry of
# `RENDERER_TRAINING` (VASA-1's face latent model; LivePortrait's F, M, W, G with the objective its paper describes)
# and `vasajax train-motion --generator NAME` any of `MOTION_TRAINING` (VASA-1's DiT; JoyVASA's). Each entry brings
# its configs, its model and its loss; the loops (sharding, exact resume, EMA, checkpoints) are shared, and a run
# exports to the files the inference registry above loads.

# %%
for registry in (stages.RENDERERS, stages.MOTION_GENERATORS, stages.AUDIO_ENCODERS):
    print(f"{registry.kind:27s}: {', '.join(registry.names())}")
for registry in (stages.RENDERER_TRAINING, stages.MOTION_TRAINING):
    print(f"{registry.kind:27s}: {', '.join(registry.names())}")

# %% [markdown]
# ## 2 · The interfaces, on one screen
#
# `Animator`, `encode-dataset` and the evaluation tools use only these members (Python `Protocol`s: any class with
# them fits; no inheritance). A renderer and a generator fit together when their `motion_space` (and
# `motion_dim`, `pose_dim`) agree — `stages.check_compatible` says why when they do not.

# %%
for proto in (stages.AudioEncoder, stages.MotionGenerator, stages.Renderer):
    print(f"class {proto.__name__}:")
    for name, annot in inspect.get_annotations(proto).items():
        print(f"    {name}: {getattr(annot, '__name__', annot)}")
    for name, fn in vars(proto).items():
        if inspect.isfunction(fn) and not name.startswith("_"):
            doc = (inspect.getdoc(fn) or "").split("\n")[0]
            print(f"    def {name}{inspect.signature(fn)}" + (f"\n        # {doc}" if doc else ""))
    print()

# %% [markdown]
# ## 3 · A conversion: LivePortrait → an export
#
# LivePortrait ships five PyTorch networks: appearance extractor F, motion extractor M, warping module W,
# generator G and the stitching/retargeting MLPs S. `vasajax convert liveportrait` reads their `.pth` state dicts,
# maps every upstream key to our NNX parameter through a rule table (`zoo.liveportrait.convert.rules_for`), and
# writes `liveportrait.safetensors` + `liveportrait.json` + a sha256 manifest (`zoo.export.write_export`).
#
# **With the released weights** (full run): download them as LivePortrait's README says
# (`huggingface-cli download KwaiVGI/LivePortrait --local-dir pretrained_weights --exclude "*.git*" "README.md"
# "docs"`), then either run
#
#     vasajax convert liveportrait pretrained_weights/liveportrait checkpoints/liveportrait
#
# or set `VASAJAX_FULL=1` and `LIVEPORTRAIT_SRC` below (reading `.pth` needs torch; CPU is enough).
#
# **Without them** (default and smoke): the same conversion on the tiny state dicts in the upstream layout that the
# parity tests use (`tests/fixtures/zoo`: upstream key names, random weights, the tiny network sizes); only the
# `.pth` reading is skipped. The export is written by the same function `vasajax convert` calls.

# %%
LIVEPORTRAIT_SRC = Path("../pretrained_weights/liveportrait")  # the released weights, if downloaded
FIXTURES = Path("../tests/fixtures/zoo")
lp_dir = OUT / "liveportrait"
if FULL and LIVEPORTRAIT_SRC.is_dir():
    zoo_cli.convert_liveportrait(LIVEPORTRAIT_SRC, lp_dir)  # = vasajax convert liveportrait SRC OUT
else:
    lp_cfg = LivePortraitConfig.tiny()
    state_dicts = {}
    for name in (*lpc.MODULES, lpc.RETARGETING):
        tensors, _ = params.read_safetensors(FIXTURES / f"liveportrait_{name}.safetensors")
        state_dicts[name] = {k[3:]: v for k, v in tensors.items() if k.startswith("sd.")}  # "sd.<upstream key>"
    some = list(state_dicts["motion_extractor"])[:3]
    print("upstream keys, e.g.:", some)
    model = lpc.convert_state_dicts(state_dicts, lp_cfg)  # rule tables: upstream key → our parameter
    zoo_export.write_liveportrait_export(lp_dir, lp_cfg, model, {"weights": "random tiny fixtures (upstream layout)"})
manifest = json.loads((lp_dir / "manifest.json").read_text())
print("stages:", manifest["stages"])
for f, info in manifest["files"].items():
    print(f"  {f:28s} {info['bytes'] / 1e6:7.2f} MB  sha256 {info['sha256'][:12]}…")

# %% [markdown]
# A renderer-only export names no motion generator, so `load_stages` refuses it; the renderer alone loads through
# the registry (`encode_dataset.load_renderer` checks the files and calls `RENDERERS.load`). Its motion is
# LivePortrait's keypoint motion: `[pitch, yaw, roll (degrees), tx, ty, tz, scale, exp (K×3)]`.

# %%
renderer = ed.load_renderer(lp_dir)
print(f"{renderer.name}: motion space {renderer.motion_space!r}, {renderer.motion_dim} dims "
      f"({', '.join(renderer.motion_names[:9])}, …), {renderer.image_size}² crops → {renderer.output_size}² frames")  # fmt: skip

# %% [markdown]
# ## 4 · Mixing: VASA's motion DiT on LivePortrait's motion
#
# JoyVASA's idea is that a diffusion model can learn *audio → LivePortrait keypoint motion* and LivePortrait then
# renders it for any face. vasajax has every piece: `encode-dataset --renderer EXPORT` turns talking-face clips
# into motion with any renderer's `encode_motion` (here LivePortrait's motion extractor M), `train-motion` trains
# VASA's DiT on those motion shards (it only sees vectors, whatever their meaning), and `export --renderer-export`
# writes the DiT beside the renderer's files with `stages = {renderer: liveportrait, motion: vasa, audio: logmel,
# motion_space: liveportrait}`. The commands, for your own data:
#
#     vasajax encode-dataset --renderer checkpoints/liveportrait --data data/clips --out data/motion-lp
#     vasajax train-motion --config small --data data/motion-lp --workdir runs/motion-lp
#     vasajax export --renderer-export checkpoints/liveportrait --motion-run runs/motion-lp \
#         --motion-data data/motion-lp --out checkpoints/vasa-on-liveportrait
#
# `train-motion --generator joyvasa` trains JoyVASA's own network (its decoder with the audio alignment mask, its
# start context and objective; `zoo/joyvasa/training.py`) in the same loop instead of VASA's, and `export` writes
# it as generator `joyvasa-trained` — JoyVASA's whole recipe in JAX, and a way to compare the two generators on one
# dataset (`checkpoints/README.md`, "Two generators on one dataset").
#
# Here the clips are SynthTalk's (`vasajax synth --shards`, as in notebook 03).

# %%
SHARDS = synth_shards.ShardsConfig.tiny()  # 96² clips, 3 training + 2 held-out utterances
clips_dir = OUT / "synthtalk"
portraits = prepare_portraits(load_portraits(), SHARDS.synth)
synth_shards.write_dataset(clips_dir, SHARDS, portraits, workers=1)  # resumes if done
motion_dir = OUT / "motion-liveportrait"
ecfg = ed.EncodeConfig(motion_source="renderer", audio=audio_lib.AudioConfig.tiny(), frames_per_batch=16)
m = ed.encode_dataset(clips_dir / "train", motion_dir, ecfg, renderer=ed.RendererMotion(renderer, 16, lp_dir))
print(f"{m['totals']['records']} records, {m['totals']['frames']} frames, motion space {m['motion_space']!r}, "
      f"{len(m['motion_names'])} dims")  # fmt: skip

# %% [markdown]
# Train the DiT (tiny preset) on that motion, then export it with the renderer.

# %%
STEPS = 3 if SMOKE else nb.pick(smoke=300, full=3000)
tcfg = tm.MotionTrainConfig.tiny(steps=STEPS, batch_size=8, log_every=max(1, STEPS // 10), sample_every=0,
                                 ckpt_every=10_000)  # fmt: skip
run = nb.out_dir("07_zoo/motion-run", fresh=True)
result = tm.train(tcfg, motion_dir, run, progress=False)
print(f"trained {result['step']} steps, last loss {result['metrics'].get('loss', float('nan')):.3f}")
mixed_dir = ex.export_with_renderer(lp_dir, run, motion_dir, OUT / "vasa-on-liveportrait", sampling_steps=10)
print("stages:", json.loads((mixed_dir / "manifest.json").read_text())["stages"])
print("files:", sorted(p.name for p in mixed_dir.iterdir()))

# %% [markdown]
# ## 5 · Two renderers, one speech
#
# Left column of each pair: the VASA demo model (`nb.demo_checkpoint()`: its own DiT, its own face latent
# renderer). Right: the export just written — VASA's DiT, trained on LivePortrait motion, driving the LivePortrait
# renderer. Both are `Animator`s; nothing in the pipeline knows which model it runs. (Under the default and smoke
# runs the LivePortrait weights are random, so its frames show noise moving with the motion; with the released
# weights and enough training they show the face.)

# %%
speech = synthesize_speech(load_sentences("heldout")[0], Voice(variant="f3"), seed=0).audio_16k
speech = speech[: int(nb.pick(smoke=2.0, full=4.0) * 16_000)]
portrait = nb.asset("grace_hopper.jpg")
vasa = Animator.from_pretrained(nb.demo_checkpoint())
mixed = Animator.from_pretrained(mixed_dir)
SIZE = vasa.renderer.image_size  # both videos at the demo's crop size (LivePortrait's frames are resized)
videos = {}
for label, anim in (("VASA demo", vasa), ("VASA DiT → LivePortrait", mixed)):
    videos[label] = anim.animate(portrait, speech, seed=0, steps=10, size=SIZE)
    print(f"{label:24s} {stages.describe((anim.renderer, anim.generator, anim.audio))}: "
          f"{videos[label].frames.shape[0]} frames of {videos[label].frames.shape[1]}², "
          f"{videos[label].motion.shape[1]}-dim motion")  # fmt: skip

# %%
n = len(videos["VASA demo"].frames)
idx = np.linspace(0, n - 1, 5).astype(int)
fig = nb.image_grid([[v.frames[i] for i in idx] for v in videos.values()], row_titles=list(videos),
                    col_titles=[f"{i / 25:.2f} s" for i in idx], title="one speech, two renderers")  # fmt: skip
fig.savefig(OUT / "two_renderers.png", dpi=80)

# %% [markdown]
# The motion each generator produced: VASA's pose is in radians (`yaw, pitch, roll, …`), LivePortrait's in degrees
# (`pitch, yaw, roll, …`), and the rest are different things (VASA's learned dynamics latent; LivePortrait's 3-D
# keypoint offsets). Only their first six dimensions mean the same kind of thing: head pose.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3), sharex=True)
secs = np.arange(n) / 25
axes[0].plot(secs, np.degrees(videos["VASA demo"].motion[:, :3]))
axes[0].legend(["yaw", "pitch", "roll"])
axes[0].set_title("VASA demo: head pose (degrees)")
lp_motion = videos["VASA DiT → LivePortrait"].motion
axes[1].plot(secs[: len(lp_motion)], lp_motion[:, :3])
axes[1].legend(["pitch", "yaw", "roll"])
axes[1].set_title("VASA DiT on LivePortrait motion: head pose (degrees)")
for ax in axes:
    ax.set_xlabel("seconds")
fig.tight_layout()

# %% [markdown]
# **What this shows, honestly.** The pipeline runs end to end with a foreign renderer: the same DiT code,
# trainer and exporter work on any renderer's motion space, and the export loads with `Animator.from_pretrained`
# like any other. It does *not* show quality: in the default run the LivePortrait weights are random and the DiT
# saw a few hundred steps on five short clips. For a real model, convert the released weights (section 3), encode a
# real talking-face dataset with them and train with `--config small` or `paper`.
#
# **Next.** `vasajax convert joyvasa pretrained_weights checkpoints/joyvasa` gives JoyVASA's own generator and
# HuBERT encoder with the LivePortrait renderer (`stages: joyvasa · joyvasa-hubert · liveportrait`); the tests in
# `tests/test_zoo_stages.py` and `tests/test_zoo_mix.py` build both kinds of export from the tiny fixtures.
