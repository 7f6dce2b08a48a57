#!/usr/bin/env bash
# Rebuild the shipped demo checkpoint (checkpoints/demo) from nothing but this repository, offline.
#
#   bash checkpoints/make_demo.sh [WORK_DIR]                     (default WORK_DIR: runs/demo; 2-core CPU, ~2.5 h)
#   PRESET=gpu bash checkpoints/make_demo.sh runs/demo-gpu        (one H100/H200, < 10 min: the full stage-1 objective)
#   PRESET=curriculum bash checkpoints/make_demo.sh runs/demo-cur (the ten-run history behind the Dec-3 demo, ~4 h)
#
# CPU preset (the default; PRESET=fast is the same) = how the shipped checkpoints/demo is made: stage 1 trains the
# final design (FaceConfig options on small_warp; checkpoints/README.md says what each does and what it measured)
# with the CPU objective from step 0 in one run of 1,600 steps, then fits the landmark head on the frozen encoder's
# codes; then motion latents, 3,000 stage-2 steps and the export (session 12, with FaceConfig.static_flow: 2 h 06 min
# on the 2-core CPU, held-out self-reenactment 29.2 dB; stage 2 re-run in session 13 with MotionConfig.condition_norm,
# now in the small preset: held-out lip sync av_corr 0.65, gaze error 4.4 deg). TUNE_STEPS (default 0) adds a fine-tune of
# everything after the fit (unmeasured). PRESET=curriculum replays the ten warm-started runs the previous demo
# (December 3) grew from over four sessions of design work: ~3,500 stage-1 steps, the same renderer within 0.1 dB
# (checkpoints/README.md, "One run instead of ten"). Every stage resumes where it stopped when run again (orbax
# checkpoints in WORK_DIR); a finished stage is skipped. OUT (default checkpoints/demo) is where the export goes;
# CFG_AUDIO, if set, the export's default audio CFG scale λ_A (default: the motion run's, 0.5). FACE_TIME and
# MOTION_TIME (seconds, optional) cap each stage-1 run's and the stage-2 run's training loop (--time-limit: a
# fixed budget of accelerator time; the cosine schedule still spans FACE_STEPS / MOTION_STEPS). SYNTH_WORKERS
# (default 2): SynthTalk's processes; SYNTH_CLIPS / SYNTH_HELDOUT (120 / 12): its clip counts (smaller for a
# smoke run). GPU preset: FACE_STEPS (1300), FACE_BATCH (16), FACE_EMA (0.995), TUNE_STEPS (0), MOTION_STEPS
# (1500), MOTION_BATCH (64); JAX_COMPILATION_CACHE_DIR (default WORK_DIR/jax-cache) keeps compiled steps across
# runs, and WARM=1 (default) fills it beside the data synthesis (warm_up below). VASAJAX: the command (default
# `vasajax`; `python3 -m vasajax` works too).
#
# Objective (CPU): reconstruction only (L1 + SSIM + face-crop SSIM + mouth-box L1 + tracker head pose), then the
# tracker's blendshapes on z_dyn[:52] (expression_weight), the decoder's flow at the tracker's landmarks
# (flow_weight) and the landmark-flow head's points (landmark_weight). VASA-1's transfer and cross-identity
# losses, the contrastive loss and the GAN each cost extra encodes/decodes per sample that a 2-core CPU cannot
# pay. GPU preset: the final design from step 0 with the full objective (SSIM or, with
# VGG_WEIGHTS=path/to/torchvision-vgg19.pth, the VGG19 perceptual loss; hinge GAN + feature matching; transfer
# consistency; cross-identity identity loss; CosFace contrastive), then the same landmark fit (no fine-tune by
# default). On one H200 (session 11, benchmarks/results/demo_recipe-nvidia-h200-2026-12-04-full.json) these
# defaults (with FACE_TIME=210 MOTION_TIME=40) took 558 s from nothing to an export, data included: 0.162 s per batch-16 full-objective step,
# 0.025 s per batch-64 stage-2 step. That export (before static_flow, which both presets now use; not yet run on a
# GPU) scored 28.8 dB held-out, but its mouth opened half as far; the CPU preset with static_flow scores 29.2 dB
# with a mouth that follows the driver, and is what checkpoints/demo holds (checkpoints/README.md).
set -euo pipefail
W=${1:-runs/demo}
VJ=${VASAJAX:-vasajax}
OUT=${OUT:-checkpoints/demo}
PRESET=${PRESET:-cpu}
[ "$PRESET" = fast ] && PRESET=cpu
FINAL=face-k  # the stage-1 run that stage 2 and the export use
mkdir -p "$W"

CPU_LOSS=(--no-gan --loss transfer_weight=0 --loss identity_weight=0 --loss contrastive_weight=0)
SUPERVISE=(--loss expression_weight=10 --loss flow_weight=100)
# The final stage-1 design (FaceConfig options on the small_warp preset).
GLIMPSE=(--model dyn_2d=1 --model glimpse_channels=32,64 --model dyn_2d_gain=20 --model patch_channels=32)
FLOWS=(--model warp_keypoints=32 --model fine_flow=1 --model stretch_cue=1)
POINTS=(--model landmark_flow=98)
# Since session 12 (CPU and GPU presets; the curriculum replays its history without it): the "stay" candidate.
STATIC=(--model static_flow=1)
COMMON=(--data "$W/synthtalk/train" --batch 2 --ema-decay 0.99 --log-every 10 --sample-every 100)
if [ "$PRESET" = gpu ]; then
  # GPU preset settings (used by the warm-up below and by stage 1 and 2).
  FACE_STEPS=${FACE_STEPS:-1300}; FACE_BATCH=${FACE_BATCH:-16}; FACE_EMA=${FACE_EMA:-0.995}
  MOTION_STEPS=${MOTION_STEPS:-1500}; MOTION_BATCH=${MOTION_BATCH:-64}
  GAN=()
  [ -n "${VGG_WEIGHTS:-}" ] && GAN+=(--vgg-weights "$VGG_WEIGHTS")
  GPU_FACE=("${GLIMPSE[@]}" "${FLOWS[@]}" "${POINTS[@]}" "${STATIC[@]}" "${GAN[@]}" "${SUPERVISE[@]}" --loss landmark_weight=100)
  FACE_LR=3e-4; FACE_WARMUP=200; FACE_CKPT=500
  GPU_STEPS=(--batch "$FACE_BATCH" --ema-decay "$FACE_EMA" --steps "$FACE_STEPS" --lr "$FACE_LR" --warmup "$FACE_WARMUP"
    --ckpt-every "$FACE_CKPT")
  export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$W/jax-cache}
  export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=${JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-0}
fi

# train_motion ARGS...: the stage-2 run of step 4 (the warm-up compiles the same program); MOTION_STEPS and
# MOTION_BATCH are read when it runs.
train_motion() {
  $VJ train-motion --config small --steps "$MOTION_STEPS" --batch "$MOTION_BATCH" --lr 3e-4 --warmup 100 \
    --log-every 50 --ckpt-every 250 --sample-every 1000 "$@"
}

# warm_up: fill JAX's compile cache with the GPU preset's training steps while the CPU is busy with SynthTalk: a
# two-step train-face on a 2-clip set with the real options (a step's compiled code depends on the options and
# shapes, not on the clips), then — in the background, beside stage-1 training — the landmark fit, the encoder
# and two stage-2 steps. The real runs then load compiled executables (on an H200: first stage-1 step 18 s
# instead of ~140 s). Failures here only cost the saving.
warm_up() {
  local K=$W/warm
  [ -f "$K/data/train/manifest.json" ] ||
    $VJ synth --shards --out "$K/data" --num-clips 2 --num-heldout 0 --size 256 --workers 1 || return 0
  XLA_PYTHON_CLIENT_PREALLOCATE=false $VJ train-face --config small_warp "${GPU_FACE[@]}" "${GPU_STEPS[@]}" \
    --workdir "$K/face" --data "$K/data/train" --log-every 10 --sample-every 1 --stop-after 2 || true
  ( export XLA_PYTHON_CLIENT_PREALLOCATE=false
    $VJ fit-landmarks --face-run "$K/face" --data "$K/data/train" --eval-data "$K/data/train" --out "$K/fit" &&
      $VJ encode-dataset --face-checkpoint "$K/fit" --data "$K/data/train" --out "$K/motion" --no-progress &&
      train_motion --data "$K/motion" --eval-data "$K/motion" --workdir "$K/motion-run" --stop-after 2
  ) > "$W/warm-later.log" 2>&1 &
}

# 1. SynthTalk: 120 training clips (train sentences, 2 bundled portraits, random espeak-ng voices) + 12 held-out
#    clips (held-out sentences; odd clips use the held-out voice), 256², with tracker labels and ground truth.
#    The GPU preset warms the compile cache beside it (WARM=0: no warm-up).
synth_main() {
  $VJ synth --shards --out "$W/synthtalk" --num-clips "${SYNTH_CLIPS:-120}" --num-heldout "${SYNTH_HELDOUT:-12}" --size 256 \
    --workers "${SYNTH_WORKERS:-2}"
}
if [ ! -f "$W/synthtalk/train/manifest.json" ]; then
  if [ "$PRESET" = gpu ] && [ "${WARM:-1}" = 1 ]; then
    synth_main &
    synth_pid=$!
    warm_up > "$W/warm.log" 2>&1
    wait "$synth_pid"
  else
    synth_main
  fi
elif [ "$PRESET" = gpu ] && [ "${WARM:-1}" = 1 ] && [ ! -d "$W/face-i" ]; then
  warm_up > "$W/warm.log" 2>&1
fi

# trained CMD...: run a trainer; with a time budget (--time-limit in CMD) its "stopped early" exit (75) is the
# budget being spent, and the recipe goes on with the checkpoint it left.
trained() {
  local rc=0
  "$@" || rc=$?
  [ "$rc" = 0 ] || { [ "$rc" = 75 ] && [[ " $* " == *" --time-limit "* ]]; } || return "$rc"
}

# face RUN PREVIOUS STEPS STOP LR WARMUP CKPT_EVERY [train-face options...]: one curriculum stage, skipped when
# its run already holds the checkpoint at STOP. FACE_TIME (seconds, optional) caps each run's training loop.
face() {
  local run=$1 prev=$2 steps=$3 stop=$4 lr=$5 warmup=$6 every=$7
  shift 7
  [ -d "$W/$run/checkpoints/$stop" ] && return 0
  local init=()
  [ "$prev" = - ] || init=(--init-from "$W/$prev")
  [ -n "${FACE_TIME:-}" ] && init+=(--time-limit "$FACE_TIME")
  trained $VJ train-face --config small_warp "$@" "${init[@]}" --workdir "$W/$run" "${COMMON[@]}" \
    --steps "$steps" --stop-after "$stop" --lr "$lr" --warmup "$warmup" --ckpt-every "$every"
}

if [ "$PRESET" = curriculum ]; then
  MOTION_STEPS=${MOTION_STEPS:-3000}; MOTION_BATCH=${MOTION_BATCH:-8}
  # 2. Stage 1, the curriculum (run, from, planned steps, stopped at, lr, warm-up, checkpoint every, options).
  #    a. the pixel-warp decoder with the reconstruction losses (the previous demo's stage 1)
  face face-a - 1000 1000 3e-4 50 25 "${CPU_LOSS[@]}"
  #    b. blendshapes on z_dyn[:52] and the decoder's flow at the tracker's landmarks
  face face-b face-a 500 250 2e-4 30 25 "${CPU_LOSS[@]}" "${SUPERVISE[@]}"
  #    c-f. G2D reads z_dyn (dyn_2d), the mouth/eye glimpses, their gain, the patch painters
  face face-c face-b 450 220 2e-4 20 25 --model dyn_2d=1 "${CPU_LOSS[@]}" "${SUPERVISE[@]}"
  face face-d face-c 700 275 2e-4 20 25 --model dyn_2d=1 --model glimpse_channels=32,64 \
    "${CPU_LOSS[@]}" "${SUPERVISE[@]}"
  face face-e face-d 500 125 2e-4 20 25 --model dyn_2d=1 --model glimpse_channels=32,64 --model dyn_2d_gain=20 \
    "${CPU_LOSS[@]}" "${SUPERVISE[@]}"
  face face-f face-e 500 125 2e-4 20 25 "${GLIMPSE[@]}" "${CPU_LOSS[@]}" "${SUPERVISE[@]}"
  #    g. keypoint warps replace the dense warp generators (their weights start fresh)
  face face-g face-f 1500 370 3e-4 20 50 "${GLIMPSE[@]}" --model warp_keypoints=32 \
    --init-skip warp_to_canonical --init-skip warp_to_driver "${CPU_LOSS[@]}" "${SUPERVISE[@]}"
  #    h. the fine residual flow and the stretch cue
  face face-h face-g 1200 200 3e-4 20 50 "${GLIMPSE[@]}" "${FLOWS[@]}" "${CPU_LOSS[@]}" "${SUPERVISE[@]}"
  #    i. the landmark flow (98 lip/eye/face points)
  face face-i face-h 1000 490 3e-4 20 50 "${GLIMPSE[@]}" "${FLOWS[@]}" "${POINTS[@]}" \
    "${CPU_LOSS[@]}" "${SUPERVISE[@]}" --loss landmark_weight=100
  #    j. fit the landmark head alone on the frozen encoder's codes (seconds), then k. fine-tune everything
  [ -d "$W/face-j" ] ||
    $VJ fit-landmarks --face-run "$W/face-i" --data "$W/synthtalk/train" --eval-data "$W/synthtalk/heldout" \
      --out "$W/face-j"
  face face-k face-j 600 460 2e-4 20 50 "${GLIMPSE[@]}" "${FLOWS[@]}" "${POINTS[@]}" \
    "${CPU_LOSS[@]}" "${SUPERVISE[@]}" --loss landmark_weight=100
elif [ "$PRESET" = cpu ]; then
  MOTION_STEPS=${MOTION_STEPS:-3000}; MOTION_BATCH=${MOTION_BATCH:-8}
  FACE_STEPS=${FACE_STEPS:-1600}
  # 2. Stage 1 in one run: the final design and the CPU objective from step 0, then the landmark fit and a short
  #    fine-tune of everything.
  face face-i - "$FACE_STEPS" "$FACE_STEPS" 3e-4 50 50 "${GLIMPSE[@]}" "${FLOWS[@]}" "${POINTS[@]}" "${STATIC[@]}" \
    "${CPU_LOSS[@]}" "${SUPERVISE[@]}" --loss landmark_weight=100
  [ -d "$W/face-j" ] ||
    $VJ fit-landmarks --face-run "$W/face-i" --data "$W/synthtalk/train" --eval-data "$W/synthtalk/heldout" \
      --out "$W/face-j"
  TUNE_STEPS=${TUNE_STEPS:-0}
  if [ "$TUNE_STEPS" -gt 0 ]; then
    face face-k face-j "$TUNE_STEPS" "$TUNE_STEPS" 2e-4 20 50 "${GLIMPSE[@]}" "${FLOWS[@]}" "${POINTS[@]}" "${STATIC[@]}" \
      "${CPU_LOSS[@]}" "${SUPERVISE[@]}" --loss landmark_weight=100
  else
    FINAL=face-j
  fi
elif [ "$PRESET" = gpu ]; then
  COMMON=(--data "$W/synthtalk/train" --batch "$FACE_BATCH" --ema-decay "$FACE_EMA" --log-every 10 --sample-every 500)
  face face-i - "$FACE_STEPS" "$FACE_STEPS" "$FACE_LR" "$FACE_WARMUP" "$FACE_CKPT" "${GPU_FACE[@]}"
  [ -d "$W/face-j" ] ||
    $VJ fit-landmarks --face-run "$W/face-i" --data "$W/synthtalk/train" --eval-data "$W/synthtalk/heldout" \
      --out "$W/face-j"
  TUNE_STEPS=${TUNE_STEPS:-0}
  if [ "$TUNE_STEPS" -gt 0 ]; then
    face face-k face-j "$TUNE_STEPS" "$TUNE_STEPS" 1e-4 50 500 "${GPU_FACE[@]}"
  else
    FINAL=face-j
  fi
else
  echo "PRESET must be cpu (= fast), gpu or curriculum, not $PRESET" >&2; exit 2
fi

# 3. Motion latents of every clip with the finished stage-1 encoder (+ 80-bin log-mel audio features).
for split in train heldout; do
  [ -f "$W/motion/$split/manifest.json" ] ||
    $VJ encode-dataset --face-checkpoint "$W/$FINAL" --data "$W/synthtalk/$split" --out "$W/motion/$split"
done

# 4. Stage 2 (motion DiT, small config: W = 50, K = 10), evaluated on the held-out clips.
MOTION_LIMIT=()
[ -n "${MOTION_TIME:-}" ] && MOTION_LIMIT=(--time-limit "$MOTION_TIME")
trained train_motion --data "$W/motion/train" --eval-data "$W/motion/heldout" --workdir "$W/motion-run" \
  "${MOTION_LIMIT[@]}"

# 5. The export: bf16 params, configs, sha256 manifest.
$VJ export --face-run "$W/$FINAL" --motion-run "$W/motion-run" --motion-data "$W/motion/train" --out "$OUT" \
  --steps 25 ${CFG_AUDIO:+--cfg-audio "$CFG_AUDIO"} --note "SynthTalk demo model ($PRESET preset): see checkpoints/README.md for what it can and cannot do"
