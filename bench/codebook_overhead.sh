#!/usr/bin/env bash
# Codebook overhead on the CPU backend: GPT-2 small (124M, random weights)
# plain, and compiled with one codebook per attention head at attn_preproj on
# all 12 layers (10,000 codes each, k = 8: the original's default setup), timed
# in the same run on the same inputs and threads, with the ratio (floor: <= 2x).
# Makes the model with pip torch/transformers/onnx the first time (not CI).
# PRECISION bf16 times both models with --precision bf16 (docs/precision.md).
#   bash bench/codebook_overhead.sh [SHAPE=1x128] [THREADS=2] [RUNS=10] [PLACEMENT=attn_preproj] [PRECISION=f32]
set -euo pipefail
cd "$(dirname "$0")/.."
shape=${1:-1x128}; threads=${2:-2}; runs=${3:-10}; at=${4:-attn_preproj}; precision=${5:-f32}
model=build/models/gpt2-small.onnx
compiled=build/models/gpt2-small-cb-$at.onnx
[ -f "$model" ] || python3 bench/make_gpt2_small.py --out build/models
[ -x build/release/codebook ] || { cmake --preset release >/dev/null; cmake --build --preset release --target codebook; }
[ -f "$compiled" ] && [ "$compiled" -nt build/release/codebook ] ||
  ./build/release/codebook compile "$model" -o "$compiled" --external-data \
    --at "$at" --groups heads --codes 10000 -k 8 > /dev/null
plain=$(./build/release/codebook bench "$model" --shape "$shape" --threads "$threads" --runs "$runs" --precision "$precision" --json)
cb=$(./build/release/codebook bench "$compiled" --shape "$shape" --threads "$threads" --runs "$runs" --precision "$precision" --json)
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $threads threads, $precision, load:$(uptime | sed 's/.*load average://')"
python3 - "$plain" "$cb" "$at" <<'PY'
import json, sys
plain, cb, at = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
print(f"{'':34}{'median ms':>10}{'min ms':>10}{'max ms':>10}")
print(f"{'gpt2-small plain':34}{plain['median_ms']:10.1f}{plain['min_ms']:10.1f}{plain['max_ms']:10.1f}")
name = f"+ {at} codebooks (12x12x10k, k=8)"
print(f"{name:34}{cb['median_ms']:10.1f}{cb['min_ms']:10.1f}{cb['max_ms']:10.1f}")
print(f"compiled / plain = {cb['median_ms'] / plain['median_ms']:.2f}x (floor: <= 2x)")
PY
