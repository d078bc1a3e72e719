#!/usr/bin/env bash
# The paper-scale configs on a CPU, a few steps each, on the demo head (no FLAME needed): stage 1
# (configs/ffhq256.yaml: 256², ~53K Gaussians on the demo head) for 2 steps with a checkpoint,
# stage 2 (configs/ffhq512.yaml: 512², ~211K) resumed from it for 1 step, then `agora bench` at
# 512² on that checkpoint. It checks that the configs users train on GPUs build, step, checkpoint,
# hand over between stages and benchmark; it says nothing about quality. ~10 min on 2 cores.
#
#     bash benchmarks/paper_configs_smoke.sh [OUT]      (default OUT: runs/paper_smoke)
set -euo pipefail
cd "$(dirname "$0")/.."
AGORA=${AGORA:-.venv/bin/agora}
OUT=${1:-runs/paper_smoke}
mkdir -p "$OUT"
SMALL=(--set head.source=demo --set batch_size=2 --set metric_kimg=0 --set sample_kimg=1000
       --set num_workers=0 --set xflip=false --no-progress)

$AGORA prep-data --synthetic 8 "$OUT/data256" --resolution 256
$AGORA prep-data --synthetic 4 "$OUT/data512" --resolution 512

echo "== stage 1: configs/ffhq256.yaml, 2 steps"
$AGORA train --config configs/ffhq256.yaml --data "$OUT/data256" --out "$OUT/stage1" "${SMALL[@]}" \
  --set total_kimg=0.004 --set checkpoint_kimg=0.004 --set log_kimg=0.002 --set loss.r1_interval=2

echo "== stage 2: configs/ffhq512.yaml from the stage-1 checkpoint, 1 step"
$AGORA train --config configs/ffhq512.yaml --data "$OUT/data512" --out "$OUT/stage2" "${SMALL[@]}" \
  --set resume_from="$OUT/stage1/checkpoints/kimg000000.004.pt" \
  --set total_kimg=0.002 --set checkpoint_kimg=0.002 --set log_kimg=0.002

echo "== bench at 512² on the stage-2 checkpoint"
$AGORA bench --device cpu --ckpt "$OUT/stage2" --frames 3 --warmup 1 --batch 1 --k 64 --json "$OUT/bench512.json"
