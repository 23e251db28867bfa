#!/usr/bin/env bash
# Sets up a fresh machine, builds the release and sanitizer presets, and runs
# every test under both. This is exactly what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/check_format.sh
jobs=$(nproc)
cmake --preset release >/dev/null
cmake --build --preset release -j "$jobs"
ctest --preset release -j "$jobs"
if [ "${CB_SKIP_ASAN:-0}" != 1 ]; then
  cmake --preset asan >/dev/null
  cmake --build --preset asan -j "$jobs"
  ctest --preset asan -j "$jobs"
fi
[ "${CB_SKIP_FUZZ:-0}" = 1 ] || bash scripts/fuzz.sh "${CB_FUZZ_SECONDS:-10}"  # 10 s per harness (docs/reliability.md#fuzzing)
