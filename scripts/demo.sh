#!/usr/bin/env bash
# The main job on the embedded default: sets up, builds, imports the committed
# tiny GPT-2 model, prints its summary and its next-token prediction.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target codebook
model=tests/models/gpt2/model.onnx
./build/release/codebook inspect "$model"
./build/release/codebook run "$model" --tokens 464,268,318,257,92 --backend cpu
