#!/usr/bin/env bash
# GPT-2 small (124M, random weights) forward pass: codebook's CPU backend and
# ONNX Runtime on the same model file, inputs, shape and thread count, in one
# run, with the ratio, and the box's matmul bound measured in the same run
# (oneDNN's matmul primitive alone on the forward's matrix products:
# `codebook bench --matmul-bound`), with each runtime's time as % of it.
# The model is the TorchScript export of bench/make_gpt2_small.py (needs pip
# torch/transformers/onnx); without torch, `codebook import-hf --random-init`
# builds GPT-2 small from its config instead (same shapes, the importer's graph).
# ONNX Runtime needs pip onnxruntime; the PyTorch rows (fp32 eager, bf16
# autocast: bench/torch_forward.py) need torch and transformers. Not run in CI.
#   bash bench/compare_gpt2_small.sh [SHAPE=1x128] [THREADS=2] [RUNS=10]
set -euo pipefail
cd "$(dirname "$0")/.."
shape=${1:-1x128}; threads=${2:-2}; runs=${3:-10}
[ -x build/release/codebook ] || { cmake --preset release >/dev/null; cmake --build --preset release --target codebook; }
model=build/models/gpt2-small.onnx
if [ ! -f "$model" ]; then
  if python3 -c "import torch, transformers" 2>/dev/null; then
    python3 bench/make_gpt2_small.py --out build/models
  else
    model=build/models/gpt2-small-hf.onnx
    if [ ! -f "$model" ]; then
      mkdir -p build/models
      cat > build/models/gpt2-small-config.json <<'JSON'
{"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12,
 "activation_function": "gelu_new", "layer_norm_epsilon": 1e-05, "tie_word_embeddings": true}
JSON
      ./build/release/codebook import-hf --config build/models/gpt2-small-config.json --random-init --seed 0 -o "$model"
    fi
  fi
fi
echo "model $model, shape $shape, $threads threads, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load:$(uptime | sed 's/.*load average://')"
ours=$(./build/release/codebook bench "$model" --shape "$shape" --threads "$threads" --runs "$runs" --matmul-bound --json)
# bf16 (docs/precision.md) where the CPU has AVX512_BF16; PyTorch's fp32 and
# bf16 autocast where torch and transformers are installed.
ours_bf16=$(./build/release/codebook bench "$model" --shape "$shape" --threads "$threads" --runs "$runs" --precision bf16 \
            --matmul-bound --json 2>/dev/null) || ours_bf16="{}"
ort=$(python3 bench/ort_forward.py "$model" --shape "$shape" --threads "$threads" --runs "$runs")
torch_json="{}"
if python3 -c "import torch, transformers" 2>/dev/null; then
  torch_json=$(python3 bench/torch_forward.py --shape "$shape" --threads "$threads" --runs "$runs" 2>/dev/null | tail -1) ||
    torch_json="{}"
fi
python3 - "$ours" "$ort" "$ours_bf16" "$torch_json" <<'PY'
import json, sys
ours, ort, ours_bf16, pt = (json.loads(a) for a in sys.argv[1:5])
bound, bound_cpu = ours["matmul_bound_ms"], ours["matmul_bound_cpu_ms"]
print(f"matmul bound: {ours['matmul_gflop']:.1f} GFLOP, oneDNN's matmul alone {bound:.1f} ms "
      f"({ours['matmul_bound_gflops']:.1f} GFLOP/s), {bound_cpu:.1f} ms of CPU time")
print(f"{'':22}{'median ms':>10}{'min ms':>9}{'max ms':>9}{'% of bound':>11}{'CPU ms':>9}{'% (CPU)':>9}")
rows = [("codebook cpu f32", ours), ("onnxruntime f32", ort)]
if ours_bf16:
    rows.append(("codebook cpu bf16", ours_bf16))
if pt:
    rows += [("pytorch eager fp32", pt["fp32"]), ("pytorch bf16 autocast", pt["bf16_autocast"])]
for name, r in rows:
    print(f"{name:22}{r['median_ms']:10.1f}{r['min_ms']:9.1f}{r['max_ms']:9.1f}{100 * bound / r['median_ms']:10.0f}%"
          f"{r['median_cpu_ms']:9.1f}{100 * bound_cpu / r['median_cpu_ms']:8.0f}%")
print(f"codebook / onnxruntime = {ours['median_ms'] / ort['median_ms']:.2f}x wall, "
      f"{ours['median_cpu_ms'] / ort['median_cpu_ms']:.2f}x CPU time (lower is better; at 1 thread on a busy "
      "machine, trust CPU time)")
if ours_bf16:
    print(f"codebook bf16 / onnxruntime f32 = {ours_bf16['median_ms'] / ort['median_ms']:.2f}x wall; its own bf16 "
          f"bound ({ours_bf16['matmul_bound_gflops']:.0f} GFLOP/s, the kernels it picks): "
          f"{100 * ours_bf16['matmul_bound_ms'] / ours_bf16['median_ms']:.0f}%")
else:
    print("codebook bf16: skipped (no AVX512_BF16)")
if pt:
    print(f"codebook f32 / pytorch fp32 = {ours['median_ms'] / pt['fp32']['median_ms']:.2f}x"
          + (f"; codebook bf16 / pytorch bf16 autocast = "
             f"{ours_bf16['median_ms'] / pt['bf16_autocast']['median_ms']:.2f}x" if ours_bf16 else "")
          + f" (torch {pt['torch']})")
PY
