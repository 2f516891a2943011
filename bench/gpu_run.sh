#!/usr/bin/env bash
# Every GPU benchmark in one call (for the device tool or any CUDA machine); results go to $OUT.
# Needs only torch, torchaudio, numpy and PyYAML beside the repository (no MLflow, DVC, kfp, soundfile).
set -euo pipefail
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
export PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python bench/bench_train.py --device cuda --width 64 --batch 64 --iters 30 --out "$OUT/train_eager.json"
python bench/bench_train.py --device cuda --width 64 --batch 64 --iters 50 --compile --out "$OUT/train_compiled.json"
if [ -f bench/bench_griffinlim.py ]; then
  python bench/bench_griffinlim.py --device cuda --clips 4096 --out "$OUT/griffinlim.json"
fi
