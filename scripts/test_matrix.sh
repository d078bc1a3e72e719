#!/usr/bin/env bash
# The test suite from a fresh clone of this checkout's HEAD under other float rounding: thread counts,
# ATen's SIMD level, MKL's and OpenBLAS's kernels (what another CPU changes). Run it on a machine
# without Chromium to check that the browser tests skip with their reason. Prints each setting's
# summary line; exits non-zero if any setting fails. ~4-8 min per setting on 2 CPU cores.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$PWD/.venv/bin/python}
clone=$(mktemp -d)/agora
git clone -q "$PWD" "$clone"
cd "$clone"
echo "fresh clone of $(git log --oneline -1) in $clone"
status=0
run() {
  echo "== $*"
  env "$@" "$PY" -m pytest -q -p no:cacheprovider 2>&1 | tail -1
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
}
run OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 ATEN_CPU_CAPABILITY=default
run OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 ATEN_CPU_CAPABILITY=avx2 OPENBLAS_CORETYPE=Haswell
run OMP_NUM_THREADS=2 MKL_CBWR=COMPATIBLE ONEDNN_MAX_CPU_ISA=SSE41 OPENBLAS_CORETYPE=Sandybridge \
  ATEN_CPU_CAPABILITY=default
rm -rf "$(dirname "$clone")"
exit $status
