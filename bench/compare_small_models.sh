#!/usr/bin/env bash
# Small models, where per-node overhead and memory matter most: a
# Pythia-70m-like GPT-NeoX (6 x 512, 8 heads, vocabulary 50304) and a
# TinyStories-1M-like GPT-Neo (8 x 64, 16 heads, local/global attention,
# vocabulary 50257), random weights made by `codebook import-hf --random-init`
# (no torch needed). Codebook's CPU backend and ONNX Runtime run the same ONNX
# file, inputs, shape and thread count, in interleaved rounds of one run, and
# the ratios are printed. Needs pip onnxruntime (not CI).
#   bash bench/compare_small_models.sh [SHAPE=8x128] [THREADS=2] [RUNS=10] [ROUNDS=2]
# The machine may be shared: each side prints median and min wall time and
# CPU time per run (ORT's where bench/ort_forward.py reports it); the load
# average is printed before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
shape=${1:-8x128}; threads=${2:-2}; runs=${3:-10}; rounds=${4:-2}
dir=build/models
cb=./build/release/codebook
[ -x "$cb" ] || { cmake --preset release >/dev/null; cmake --build --preset release --target codebook; }
python3 -c "import onnxruntime" 2>/dev/null || python3 -m pip install --quiet onnxruntime
mkdir -p "$dir"

# The configs of EleutherAI/pythia-70m and roneneldan/TinyStories-1M (architecture only).
cat > "$dir/pythia-70m-like.json" <<'JSON'
{"model_type": "gpt_neox", "hidden_act": "gelu", "hidden_size": 512, "intermediate_size": 2048,
 "num_attention_heads": 8, "num_hidden_layers": 6, "vocab_size": 50304, "max_position_embeddings": 2048,
 "rotary_emb_base": 10000, "rotary_pct": 0.25, "use_parallel_residual": true, "layer_norm_eps": 1e-05,
 "tie_word_embeddings": false, "initializer_range": 0.02}
JSON
cat > "$dir/tinystories-1m-like.json" <<'JSON'
{"model_type": "gpt_neo", "activation_function": "gelu_new", "attention_types": [[["global", "local"], 4]],
 "hidden_size": 64, "num_heads": 16, "num_layers": 8, "vocab_size": 50257, "max_position_embeddings": 2048,
 "window_size": 256, "layer_norm_epsilon": 1e-05, "initializer_range": 0.02}
JSON

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
for name in tinystories-1m-like pythia-70m-like; do
  model=$dir/$name.onnx
  [ -f "$model" ] || "$cb" import-hf --config "$dir/$name.json" --random-init --seed 0 -o "$model" >/dev/null
  results=()
  for ((r = 0; r < rounds; r++)); do
    results+=("$("$cb" bench "$model" --shape "$shape" --threads "$threads" --runs "$runs" --json)")
    results+=("$(python3 bench/ort_forward.py "$model" --shape "$shape" --threads "$threads" --runs "$runs")")
  done
  python3 - "$name" "$shape" "$threads" "${results[@]}" <<'PY'
import json, sys
name, shape, threads, rows = sys.argv[1], sys.argv[2], sys.argv[3], [json.loads(a) for a in sys.argv[4:]]
ours, ort = rows[0::2], rows[1::2]
print(f"\n{name} {shape}, {threads} threads ({len(ours)} interleaved rounds)")
cpu = lambda r: f"{r['median_cpu_ms']:9.1f}" if "median_cpu_ms" in r else f"{'-':>9}"
print(f"{'':16}{'median ms':>11}{'min ms':>9}{'CPU ms':>9}{'faults':>8}{'pooled MiB':>12}")
for i, (o, t) in enumerate(zip(ours, ort)):
    print(f"{'codebook cpu':16}{o['median_ms']:11.1f}{o['min_ms']:9.1f}{cpu(o)}{o['page_faults']:8.0f}"
          f"{o['pooled_bytes'] / 2**20:12.1f}")
    print(f"{'onnxruntime':16}{t['median_ms']:11.1f}{t['min_ms']:9.1f}{cpu(t)}")
med = lambda rs, k: sorted(r[k] for r in rs)[len(rs) // 2]
best = lambda rs: min(r['min_ms'] for r in rs)
print(f"codebook / onnxruntime: medians {med(ours, 'median_ms') / med(ort, 'median_ms'):.2f}x, "
      f"minima {best(ours) / best(ort):.2f}x (lower is better)")
PY
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
