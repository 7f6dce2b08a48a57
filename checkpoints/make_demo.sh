#!/usr/bin/env bash
# Rebuild the shipped demo checkpoint (checkpoints/demo) from nothing but this repository, offline.
#
#   bash checkpoints/make_demo.sh [WORK_DIR]         (default WORK_DIR: runs/demo)
#
# These are the exact commands that made checkpoints/demo (see its manifest.json for the steps actually run:
# on a 2-core CPU the stage-1 run was stopped early). On a GPU raise FACE_STEPS/MOTION_STEPS and the batches:
#   FACE_STEPS=20000 FACE_STOP=20000 FACE_BATCH=16 MOTION_STEPS=20000 MOTION_BATCH=32 bash checkpoints/make_demo.sh
# Each stage resumes where it stopped when run again (orbax checkpoints in WORK_DIR).
set -euo pipefail
W=${1:-runs/demo}
VJ=${VASAJAX:-vasajax}
FACE_STEPS=${FACE_STEPS:-1200}; FACE_BATCH=${FACE_BATCH:-2}
FACE_STOP=${FACE_STOP:-800}  # the shipped run was stopped at step 800 of its 1,200-step schedule, for time
MOTION_STEPS=${MOTION_STEPS:-3000}; MOTION_BATCH=${MOTION_BATCH:-8}
mkdir -p "$W"

# 1. SynthTalk: 120 training clips (train sentences, 2 bundled portraits, random espeak-ng voices) + 12 held-out
#    clips (held-out sentences; odd clips use the held-out voice), 256², with tracker labels and ground truth.
[ -f "$W/synthtalk/train/manifest.json" ] ||
  $VJ synth --shards --out "$W/synthtalk" --num-clips 120 --num-heldout 12 --size 256 --workers 2

# 2. Stage 1 (face latent model, small config). The CPU recipe keeps L1 + SSIM + face-crop SSIM and drops the
#    terms that need extra encodes/decodes per sample (transfer, cross-identity, contrastive) and the GAN.
$VJ train-face --config small --data "$W/synthtalk/train" --workdir "$W/face" --steps "$FACE_STEPS" --stop-after "$FACE_STOP" \
  --batch "$FACE_BATCH" --lr 3e-4 --warmup 50 --ema-decay 0.99 --no-gan \
  --loss transfer_weight=0 --loss identity_weight=0 --loss contrastive_weight=0 \
  --log-every 10 --sample-every 100 --ckpt-every 50

# 3. Motion latents of every clip with the trained stage-1 encoder (+ 80-bin log-mel audio features).
for split in train heldout; do
  [ -f "$W/motion/$split/manifest.json" ] ||
    $VJ encode-dataset --face-checkpoint "$W/face" --data "$W/synthtalk/$split" --out "$W/motion/$split"
done

# 4. Stage 2 (motion DiT, small config: W = 50, K = 10), evaluated on the held-out clips.
$VJ train-motion --config small --data "$W/motion/train" --eval-data "$W/motion/heldout" --workdir "$W/motion-run" \
  --steps "$MOTION_STEPS" --batch "$MOTION_BATCH" --lr 3e-4 --warmup 100 --log-every 50 --ckpt-every 250 --sample-every 1000

# 5. The export: bf16 params, configs, sha256 manifest.
$VJ export --face-run "$W/face" --motion-run "$W/motion-run" --motion-data "$W/motion/train" --out checkpoints/demo \
  --steps 25 --note "SynthTalk demo model: see checkpoints/README.md for what it can and cannot do"
