#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run sized for under 10 minutes on one GPU, with one JSON:
#   1. the GPU-marked tests (gsplat against our rasterizer, CUDA timing events, ...);
#   2. a few training steps of both paper configs (configs/ffhq256.yaml, then configs/ffhq512.yaml
#      resumed from it) on the demo head, on CUDA;
#   3. `agora bench --device cuda` at 512² on the stage-2 checkpoint (~211K Gaussians on the demo
#      head), AGORA vs AGORA-M at batch 1 and 8, rendering included (gsplat): the figure to compare
#      with the paper's FPS (AGORA-M 560 FPS at 512² on an A6000).
# On a machine without CUDA it stops at once and says so. Not yet run on a GPU (none was lent).
#
#     bash benchmarks/gpu_check.sh [OUT]     (default OUT: runs/gpu_check; writes OUT/gpu_check.json)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
AGORA=${AGORA:-.venv/bin/agora}
OUT=${1:-runs/gpu_check}
mkdir -p "$OUT"
if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device here (torch.cuda.is_available() is False); run it on a GPU machine" >&2
  exit 1
fi
$PY -c "import json, torch, gsplat; print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, \
'gpu': torch.cuda.get_device_name(0), 'gsplat': gsplat.__version__}))" > "$OUT/env.json"

echo "== 1. GPU-marked tests"
set +e
$PY -m pytest -q -m gpu -p no:cacheprovider --junitxml "$OUT/gpu_tests.xml" > "$OUT/gpu_tests.log" 2>&1
TESTS_RC=$?
set -e
tail -3 "$OUT/gpu_tests.log"

SMALL=(--device cuda --set head.source=demo --set batch_size=4 --set metric_kimg=0 --set sample_kimg=1000
       --set num_workers=0 --set xflip=false --no-progress)
$AGORA prep-data --synthetic 16 "$OUT/data256" --resolution 256
$AGORA prep-data --synthetic 8 "$OUT/data512" --resolution 512
echo "== 2. paper configs: stage 1 (4 steps), stage 2 from it (2 steps)"
T0=$(date +%s)
$AGORA train --config configs/ffhq256.yaml --data "$OUT/data256" --out "$OUT/stage1" "${SMALL[@]}" \
  --set total_kimg=0.016 --set checkpoint_kimg=0.016 --set log_kimg=0.004 --set loss.r1_interval=2
T1=$(date +%s)
$AGORA train --config configs/ffhq512.yaml --data "$OUT/data512" --out "$OUT/stage2" "${SMALL[@]}" \
  --set resume_from="$(ls "$OUT"/stage1/checkpoints/*.pt | tail -1)" \
  --set total_kimg=0.008 --set checkpoint_kimg=0.008 --set log_kimg=0.004
T2=$(date +%s)

echo "== 3. bench at 512² on CUDA"
$AGORA bench --device cuda --ckpt "$OUT/stage2" --frames 400 --warmup 20 --k 64 --json "$OUT/bench512.json"

$PY - "$OUT" "$TESTS_RC" "$((T1 - T0))" "$((T2 - T1))" <<'PYEOF'
import json, sys
from pathlib import Path
out, tests_rc, s1, s2 = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
doc = {"env": json.loads((out / "env.json").read_text()),
       "gpu_tests": {"exit_code": tests_rc, "summary": (out / "gpu_tests.log").read_text().strip().splitlines()[-1:]},
       "train_seconds": {"stage1_ffhq256_4_steps": s1, "stage2_ffhq512_2_steps": s2},
       "bench512": json.loads((out / "bench512.json").read_text())}
(out / "gpu_check.json").write_text(json.dumps(doc, indent=1))
print(f"wrote {out / 'gpu_check.json'}")
sys.exit(tests_rc)
PYEOF
