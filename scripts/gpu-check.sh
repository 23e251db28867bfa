#!/usr/bin/env bash
# The one prepared script for sessions that are lent a GPU: builds with CUDA,
# runs the GPU tests and prints a short table. Run it on the device machine:
#   bash scripts/gpu-check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
bash scripts/setup.sh >/dev/null 2>&1 || echo "setup failed (offline?); trying with what is installed"
cmake --preset release -DCB_BUILD_BENCH=OFF >/dev/null && cmake --build --preset release -j "$(nproc)" --target test_cuda codebook
./build/release/tests/test_cuda --gtest_brief=1
echo "| check | result |"
echo "|---|---|"
./build/release/tests/test_cuda --gtest_filter='Cuda.*' >/dev/null 2>&1 && echo "| test_cuda | pass |" || echo "| test_cuda | FAIL |"
