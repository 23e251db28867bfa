#!/usr/bin/env bash
# The main job: trains a TokFSM codebook model from scratch on the CPU
# (configs/tokfsm.yaml: a 4 x 128 GPT-2 with a codebook at every attention
# head and every MLP, k = 1; ~7.5 minutes on 2 cores, transition accuracy
# ~0.975), evaluates it (transition accuracy of sequences it samples), prints
# what its codes mean (code purity per site, the FSM states each code of the
# first MLP layer stands for) and steers it by forcing one state's codes into
# another; then caches the codes of every site over its task's data and
# searches them for the code of one state. Nothing is downloaded.
#   bash scripts/demo.sh [OUTPUT_DIR=runs/tokfsm]
# An interrupted run continues where it stopped; a finished one is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/tokfsm}
bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target codebook
cb=./build/release/codebook
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step "train a TokFSM codebook model from scratch (configs/tokfsm.yaml) -> $out"
if [ -f "$out/model.onnx" ]; then
  echo "already trained: $out/model.onnx (delete $out to train again)"
elif ls -d "$out"/checkpoint-* >/dev/null 2>&1; then
  time $cb train --resume "$out"
else
  time $cb train configs/tokfsm.yaml --output "$out"
fi
step "evaluate: loss, next-token accuracy, codebook usage, transition accuracy of sampled sequences"
$cb eval "$out"
step "what the codes mean, and steering by forcing codes"
$cb fsm-codes "$out" --site layer0.mlp
step "cache the codes of 131,072 tokens of its task, and search them: which code stands for state 43"
if [ -f "$out-cache/cache.json" ]; then
  echo "already cached: $out-cache (delete it to cache again)"
else
  $cb cache build "$out" -o "$out-cache" --data tokfsm --max-tokens 131072
fi
# State 43 at its last digit: the '3' at an odd offset of a document's digits.
$cb search "$out-cache" '4(3)' --parity odd --site layer0.mlp --top 3
code=$($cb search "$out-cache" '4(3)' --parity odd --site layer0.mlp --top 1 --json |
       python3 -c "import json,sys; print(json.load(sys.stdin)['codes'][0]['code'])")
$cb code "$out-cache" layer0.mlp "$code" --max 5
echo
echo "browse the codes and steer the model in a web page: $cb serve $out-cache --model $out"
