#!/usr/bin/env bash
# GPT-2 small (124M, random weights) forward pass: codebook's CPU backend and
# ONNX Runtime on the same model file, inputs, shape and thread count, in one
# run, with the ratio. Needs pip torch/transformers/onnx/onnxruntime (not CI).
#   bash bench/compare_gpt2_small.sh [SHAPE=1x128] [THREADS=2] [RUNS=10]
set -euo pipefail
cd "$(dirname "$0")/.."
shape=${1:-1x128}; threads=${2:-2}; runs=${3:-10}
model=build/models/gpt2-small.onnx
[ -f "$model" ] || python3 bench/make_gpt2_small.py --out build/models
[ -x build/release/codebook ] || { cmake --preset release >/dev/null; cmake --build --preset release --target codebook; }
ours=$(./build/release/codebook bench "$model" --shape "$shape" --threads "$threads" --runs "$runs" --json)
ort=$(python3 bench/ort_forward.py "$model" --shape "$shape" --threads "$threads" --runs "$runs")
python3 - "$ours" "$ort" <<'PY'
import json, sys
ours, ort = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"{'':18}{'median ms':>10}{'min ms':>10}{'max ms':>10}")
print(f"{'codebook cpu':18}{ours['median_ms']:10.1f}{ours['min_ms']:10.1f}{ours['max_ms']:10.1f}")
print(f"{'onnxruntime':18}{ort['median_ms']:10.1f}{ort['min_ms']:10.1f}{ort['max_ms']:10.1f}")
print(f"codebook / onnxruntime = {ours['median_ms'] / ort['median_ms']:.2f}x (lower is better)")
PY
