#!/usr/bin/env bash
# The inference workflow on the embedded default: sets up, builds, and runs the codebook
# workflow on the committed tiny GPT-2 model: inspect its layers and sites,
# compile it with codebooks (one per head at attn_preproj, one at mlp), show
# which codes fire, then ablate and force codes and measure the effect on the
# next-token distribution.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target codebook
cb=./build/release/codebook
model=tests/models/gpt2/model.onnx
compiled=build/demo/gpt2-codebooks.onnx
tokens=464,268,318,257,92
mkdir -p build/demo
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step "the model, its layers and codebook sites"
$cb inspect "$model"
step "plain next-token prediction"
$cb run "$model" --tokens $tokens
step "compile: codebooks at attn_preproj (one per head) and mlp, every layer"
$cb compile "$model" -o "$compiled" --at attn_preproj,mlp --groups heads,1 --codes 256,128 -k 4,2 --seed 0
step "which codes fire at layer 1's MLP"
$cb run "$compiled" --tokens $tokens --show-codes layer1.mlp
step "ablate the best code at the last position (the next best codes fill in)"
$cb run "$compiled" --tokens $tokens --disable-topk layer1.mlp:1@-1 --show-codes layer1.mlp --compare
step "steer: force codes 1 and 2 into every slot of layer 1's MLP codebook"
$cb run "$compiled" --tokens $tokens --force layer1.mlp:1,2 --compare
