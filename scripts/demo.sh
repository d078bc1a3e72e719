#!/usr/bin/env bash
# The whole pipeline on the embedded demo head, offline, on a CPU. Every stage writes files under
# out/ and resumes: rerunning after an interruption continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
AGORA=${AGORA:-.venv/bin/agora}
OUT=${OUT:-out}
N_IMAGES=${N_IMAGES:-1600}     # synthetic training images
TRAIN_ARGS=${TRAIN_ARGS:-}      # e.g. "--kimg 0.1" for a quick smoke run
BASIS_N=${BASIS_N:-1000}        # tuples for extract-basis
MLP_N=${MLP_N:-2000}            # tuples for fit-mlp
MLP_EPOCHS=${MLP_EPOCHS:-100}
BENCH_FRAMES=${BENCH_FRAMES:-200}
PTI_ARGS=${PTI_ARGS:---w-steps 50 --g-steps 100}   # PTI steps (paper: 450 + 350)
TRACKER_STEPS=${TRACKER_STEPS:-600}                 # demo-head FLAME tracker (for AED/APD)
mkdir -p "$OUT"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "doctor + head contact sheet"
$AGORA doctor --head-sheet "$OUT/head_sheet.png"

step "synthetic dataset ($N_IMAGES images, 64²; the demo config trains at 32²)"
$AGORA prep-data --synthetic "$N_IMAGES" "$OUT/demo_data" --resolution 64

step "train the demo config (CPU)"
$AGORA train --config configs/demo.yaml --data "$OUT/demo_data" --out "$OUT/demo_run" $TRAIN_ARGS

step "random avatars"
$AGORA sample "$OUT/demo_run" --n 16 --out "$OUT/demo_samples.png" --ply "$OUT/demo_ply"

step "AGORA-M: Gaussian blendshapes and the coefficient MLP"
$AGORA extract-basis "$OUT/demo_run" --n "$BASIS_N" --k 32 --out "$OUT/basis.safetensors" --dataset "$OUT/demo_data"
$AGORA fit-mlp "$OUT/demo_run" "$OUT/basis.safetensors" --n "$MLP_N" --epochs "$MLP_EPOCHS" --out "$OUT/mlp.safetensors" --dataset "$OUT/demo_data"

step "bench: AGORA vs AGORA-M on the CPU"
$AGORA bench --device cpu --ckpt "$OUT/demo_run" --basis "$OUT/basis.safetensors" --mlp "$OUT/mlp.safetensors" --frames "$BENCH_FRAMES" --json "$OUT/bench.json"

step "invert: few-shot PTI on 3 views of one synthetic identity"
$AGORA invert-demo-data "$OUT/demo_identity" --seed 0 --resolution 32
$AGORA invert --dataset "$OUT/demo_identity" --index 0 1 2 --ckpt "$OUT/demo_run" --out "$OUT/demo_avatar.pt" $PTI_ARGS

step "reenact: a synthetic driving sequence, side by side with the ground truth"
$AGORA reenact-demo-params "$OUT/demo_driving.npz" --frames 48 --fps 24
$AGORA reenact "$OUT/demo_avatar.pt" --params "$OUT/demo_driving.npz" --ground-truth "$OUT/demo_identity" --side-by-side --out "$OUT/demo_reenact.mp4"

step "eval: SWD and AED/APD through the demo-head tracker (FID/ID need user weights)"
$AGORA train-tracker "$OUT/demo_data" --out "$OUT/tracker.pt" --steps "$TRACKER_STEPS" --no-shape
$AGORA eval "$OUT/demo_run" --data "$OUT/demo_data" --quick --tracker "$OUT/tracker.pt" --json "$OUT/eval.json"

step "web bundle"
$AGORA export web "$OUT/demo_run" --basis "$OUT/basis.safetensors" --mlp "$OUT/mlp.safetensors" --seed 0 --out "$OUT/site"
echo "serve it with:  $AGORA export serve $OUT/site   (then open the printed http://127.0.0.1 address)"
