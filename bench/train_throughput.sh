#!/usr/bin/env bash
# Training throughput (tokens/s) of `codebook train` next to PyTorch eager
# (bench/train_torch.py) on the same model, batch, sequence length and thread
# count, in the same run, with the ratio (floor: >= 1x PyTorch).
#   bash bench/train_throughput.sh [MODEL=all|tokfsm|gpt2-small] [BATCH] [THREADS=2] [STEPS=8] [PRECISION=f32]
# PRECISION bf16: ours with runtime.precision=bf16 (docs/precision.md), PyTorch
# under bf16 autocast.
# tokfsm: GPT-NeoX 4 x 128, codebooks at attn_preproj (per head) and mlp, 1000
# codes, k = 1, model and codebooks trained (default batch 64 x 128).
# gpt2-small: frozen GPT-2 small with attn_preproj codebooks, 12 x 12 x 10,000
# codes, k = 8, codebooks trained (default batch 1 x 128; the model is made by
# bench/make_gpt2_small.py the first time, needs pip torch/transformers/onnx).
# Ours: the median of the per-step tokens/s after 2 warm-up steps. Both count
# B x T tokens per step; neither uses dropout (gpt2-small gets --no-dropout).
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}; batch_arg=${2:-}; threads=${3:-2}; steps=${4:-8}; precision=${5:-f32}
torch_precision=""; [ "$precision" = bf16 ] && torch_precision=--bf16
bin=build/release/codebook
[ -x $bin ] || { cmake --preset release >/dev/null; cmake --build --preset release --target codebook; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

ours() {  # name batch config overrides...
  local name=$1 batch=$2; shift 2
  $bin train "$@" training_args.per_device_train_batch_size=$batch training_args.max_steps=$((steps + 2)) \
    training_args.logging_steps=1 training_args.eval_steps=0 training_args.save_steps=0 runtime.threads=$threads \
    runtime.precision=$precision \
    --no-checkpoint --progress off --output "$out/$name" 2>/dev/null |
    python3 -c "
import json, statistics, sys
v = [json.loads(l)['tokens_per_s'] for l in sys.stdin if l.startswith('{')][2:]
print(statistics.median(v))"
}

results=()
if [ "$which" = all ] || [ "$which" = tokfsm ]; then
  b=${batch_arg:-64}
  o=$(ours tokfsm "$b")
  t=$(python3 bench/train_torch.py --model tokfsm --batch "$b" --seq 128 --threads "$threads" --steps "$steps" $torch_precision 2>/dev/null |
      python3 -c "import json,sys; print(json.loads(sys.stdin.read())['tokens_per_s'])")
  results+=("tokfsm ${b}x128 $o $t")
fi
if [ "$which" = all ] || [ "$which" = gpt2-small ]; then
  b=${batch_arg:-1}
  [ -f build/models/gpt2-small.onnx ] || python3 bench/make_gpt2_small.py --out build/models
  o=$(ours gpt2 "$b" configs/gpt2_small_attn_preproj.yaml)
  t=$(python3 bench/train_torch.py --model gpt2-small --no-dropout --batch "$b" --seq 128 --threads "$threads" --steps "$steps" $torch_precision 2>/dev/null |
      python3 -c "import json,sys; print(json.loads(sys.stdin.read())['tokens_per_s'])")
  results+=("gpt2-small ${b}x128 $o $t")
  # The step's share of the box's FLOP bound: forward and backward (the
  # activations' gradients through the frozen weights: about the forward's
  # matrix products again) plus the codebooks' scoring (2 x tokens x 12
  # layers x 12 heads x 10,000 codes x 64), over oneDNN's f32 matmul rate on
  # the forward's shapes, measured now (`codebook bench --matmul-bound`).
  bound=$($bin bench build/models/gpt2-small.onnx --shape "${b}x128" --threads "$threads" --runs 1 --warmup 1 \
    --matmul-bound --json 2>/dev/null | tail -1)
  flop_line=$(python3 -c "
import json, sys
j = json.loads(sys.argv[1]); tokens = $b * 128
step = 2 * j['matmul_gflop'] + 2 * tokens * 12 * 12 * 10000 * 64 / 1e9
rate = step * $o / tokens
print(f'gpt2-small step: {step:.1f} GFLOP ({2 * j[\"matmul_gflop\"]:.1f} forward + backward, {step - 2 * j[\"matmul_gflop\"]:.1f} codebook scoring), '
      f'{rate:.0f} GFLOP/s = {100 * rate / j[\"matmul_bound_gflops\"]:.0f}% of the f32 matmul bound ({j[\"matmul_bound_gflops\"]:.0f} GFLOP/s)')
" "$bound")
fi
printf '%-12s %-8s %14s %14s %8s\n' model batch "codebook tok/s" "pytorch tok/s" ratio
for r in "${results[@]}"; do
  set -- $r
  printf '%-12s %-8s %14.0f %14.0f %7.2fx\n' "$1" "$2" "$3" "$4" "$(python3 -c "print($3 / $4)")"
done
echo "($threads threads, $precision; ratio = codebook / pytorch eager${torch_precision:+ under bf16 autocast}, floor >= 1x)"
if [ -n "${flop_line:-}" ]; then echo "$flop_line"; fi
