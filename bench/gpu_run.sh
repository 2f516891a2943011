#!/usr/bin/env bash
# Every GPU measurement in one call (device tool or any CUDA machine); results go to $OUT.
# On a bare GPU machine carry soundfile's wheels in .whl/ (see BENCHMARKS.md); everything else is there.
set -euo pipefail
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
TQDM_DISABLE=1 PYTHONUNBUFFERED=1 python3 bench/gpu_run.py --device cuda --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_run.log"
