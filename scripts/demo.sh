#!/usr/bin/env bash
# `make demo`: the main job on the shipped demo model (models/demo), offline, on a CPU: random avatars,
# few-shot inversion of a held-out identity, reenactment beside its ground truth (AGORA and AGORA-M),
# AGORA-M blendshapes + regressor, bench, eval, the web viewer, and out/index.html showing it all.
# Every stage writes under $OUT and a rerun repeats it (or, for fit-mlp, continues it).
# `make demo-train` (scripts/demo_train.sh) trains a model from scratch instead.
set -euo pipefail
cd "$(dirname "$0")/.."
AGORA=${AGORA:-.venv/bin/agora}
OUT=${OUT:-out}
MODEL=${MODEL:-models/demo}     # a model folder (agora export model), a run folder or a checkpoint
N_IMAGES=${N_IMAGES:-400}       # synthetic dataset: examples, eval's reals, AGORA-M's conditions, the tracker
BASIS_N=${BASIS_N:-200}         # tuples for extract-basis
MLP_N=${MLP_N:-400}             # tuples for fit-mlp
MLP_EPOCHS=${MLP_EPOCHS:-60}
BENCH_FRAMES=${BENCH_FRAMES:-24}
FRAMES=${FRAMES:-48}            # driving sequence length (24 fps)
SIZE=${SIZE:-256}               # pixels per avatar in every picture and video
PTI_ARGS=${PTI_ARGS:---w-steps 30 --g-steps 60}     # PTI steps (paper: 450 + 350)
TRACKER_STEPS=${TRACKER_STEPS:-150}                 # demo-head FLAME tracker (for AED/APD)
EVAL_ARGS=${EVAL_ARGS:---swd-images 256 --identities 4 --pairs 4}
THREADS=${THREADS:-2}
if [ ! -e "$MODEL" ]; then
  echo "no model at $MODEL: pass MODEL=path (a model folder, run folder or checkpoint), or train one with make demo-train" >&2
  exit 2
fi
mkdir -p "$OUT"

step() { printf '\n\033[1m== %s\033[0m  (%ss)\n' "$*" "$SECONDS"; }

step "synthetic dataset ($N_IMAGES images, 64²)"
$AGORA prep-data --synthetic "$N_IMAGES" "$OUT/demo_data" --resolution 64

step "random avatars"
$AGORA sample "$MODEL" --n 16 --size "$SIZE" --out "$OUT/demo_samples.png" --ply "$OUT/demo_ply" --threads "$THREADS"

step "invert: few-shot PTI on 3 views of a held-out identity, its 4th view kept out"
$AGORA invert-demo-data "$OUT/demo_identity" --seed 0 --resolution 64
$AGORA invert --dataset "$OUT/demo_identity" --index 0 1 2 --heldout 3 --ckpt "$MODEL" --out "$OUT/demo_avatar.pt" \
  --size "$SIZE" --threads "$THREADS" --no-progress $PTI_ARGS

step "AGORA-M: Gaussian blendshapes and the coefficient MLP"
$AGORA extract-basis "$MODEL" --n "$BASIS_N" --k 32 --heldout 32 --out "$OUT/basis.safetensors" --dataset "$OUT/demo_data" --threads "$THREADS"
$AGORA fit-mlp "$MODEL" "$OUT/basis.safetensors" --n "$MLP_N" --epochs "$MLP_EPOCHS" --out "$OUT/mlp.safetensors" \
  --dataset "$OUT/demo_data" --threads "$THREADS"

step "reenact: a synthetic driving sequence beside the ground truth (AGORA, then AGORA-M)"
$AGORA reenact-demo-params "$OUT/demo_driving.npz" --frames "$FRAMES" --fps 24
$AGORA reenact "$OUT/demo_avatar.pt" --params "$OUT/demo_driving.npz" --ground-truth "$OUT/demo_identity" \
  --side-by-side --size "$SIZE" --out "$OUT/demo_reenact.mp4" --threads "$THREADS" --no-progress
$AGORA reenact "$OUT/demo_avatar.pt" --params "$OUT/demo_driving.npz" --ground-truth "$OUT/demo_identity" \
  --side-by-side --size "$SIZE" --mobile --basis "$OUT/basis.safetensors" --mlp "$OUT/mlp.safetensors" \
  --out "$OUT/demo_reenact_m.mp4" --threads "$THREADS" --no-progress

step "bench: AGORA vs AGORA-M on the CPU"
$AGORA bench --device cpu --ckpt "$MODEL" --basis "$OUT/basis.safetensors" --mlp "$OUT/mlp.safetensors" \
  --frames "$BENCH_FRAMES" --json "$OUT/bench.json" --threads "$THREADS"

step "eval: SWD and AED/APD through a demo-head tracker (FID/ID need user weights)"
$AGORA train-tracker "$OUT/demo_data" --out "$OUT/tracker.pt" --steps "$TRACKER_STEPS" --no-shape --no-progress
$AGORA eval "$MODEL" --data "$OUT/demo_data" --quick $EVAL_ARGS --tracker "$OUT/tracker.pt" --json "$OUT/eval.json"

step "web bundle"
$AGORA export web "$MODEL" --basis "$OUT/basis.safetensors" --mlp "$OUT/mlp.safetensors" --seed 0 --out "$OUT/site"

step "report"
$AGORA report "$OUT" --model "$MODEL"
printf '\ndone in %ss. Open %s/index.html; the interactive viewer: %s export serve %s/site\n' "$SECONDS" "$OUT" "$AGORA" "$OUT"
