#!/usr/bin/env bash
# `make demo-train`: train the demo config from scratch on a CPU (~15 min of training on 2 idle cores),
# then sample it and add its SWD curve to out/index.html. Every stage resumes: rerunning after an
# interruption continues the training where it stopped. `make demo` does the main job on the shipped model.
set -euo pipefail
cd "$(dirname "$0")/.."
AGORA=${AGORA:-.venv/bin/agora}
OUT=${OUT:-out}
MODEL=${MODEL:-models/demo}    # for the report's other sections (the shipped model's curve beside this run's)
N_IMAGES=${N_IMAGES:-1600}     # synthetic training images
TRAIN_ARGS=${TRAIN_ARGS:-}      # e.g. "--kimg 0.1" for a quick smoke run
mkdir -p "$OUT"

step() { printf '\n\033[1m== %s\033[0m  (%ss)\n' "$*" "$SECONDS"; }

step "synthetic training set ($N_IMAGES images, 64²; configs/demo.yaml trains at 32²)"
$AGORA prep-data --synthetic "$N_IMAGES" "$OUT/train_data" --resolution 64

step "train configs/demo.yaml (CPU; curves in $OUT/demo_run/log.jsonl, grids in $OUT/demo_run/samples/)"
$AGORA train --config configs/demo.yaml --data "$OUT/train_data" --out "$OUT/demo_run" $TRAIN_ARGS

step "random avatars of the new model"
$AGORA sample "$OUT/demo_run" --n 16 --out "$OUT/demo_run_samples.png"

step "report"
$AGORA report "$OUT" --model "$MODEL"
printf '\ndone in %ss. To run the main demo on this model: make demo MODEL=%s/demo_run\n' "$SECONDS" "$OUT"
