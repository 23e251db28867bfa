#!/usr/bin/env bash
# The GPU check of the CUDA backend (issue 13, docs/cuda.md), in two halves,
# because the lent GPU machine has nvcc and CMake but none of our Debian
# libraries (oneDNN, protobuf, ...) and cannot install them:
#
#   scripts/gpu-check.sh pack   # here: build release with CUDA, copy the GPU
#                               # tests, the tool, their shared libraries and
#                               # the test models into .gpu-pack/ (git-ignored)
#   scripts/gpu-check.sh run    # there (device tool, carry [".gpu-pack"]):
#                               # GPU tests, then GPU benchmarks, one table
#
# `run` must finish in <= 8 minutes on an H100 (leaving room for a rerun in a
# 15-minute slot). It writes its log and table to $OUT when that is set.
set -euo pipefail
cd "$(dirname "$0")/.."
pack=.gpu-pack
mode=${1:-}

case "$mode" in
pack)
  cmake --preset release >/dev/null
  grep -q "CB_WITH_CUDA:INTERNAL=ON\|codebook: CUDA backend enabled" build/release/CMakeCache.txt 2>/dev/null ||
    grep -q "CB_WITH_CUDA" build/release/compile_commands.json ||
    { echo "gpu-check: the release build has no CUDA (nvcc not found)" >&2; exit 2; }
  tests=(test_cuda test_place_devices test_cli_device)
  cmake --build --preset release -j "$(nproc)" --target codebook "${tests[@]}"
  rm -rf "$pack"
  mkdir -p "$pack/bin" "$pack/lib"
  cp build/release/codebook "$pack/bin/"
  for t in "${tests[@]}"; do cp "build/release/tests/$t" "$pack/bin/"; done
  strip "$pack/bin/"* 2>/dev/null || true
  # Every shared library they need that is not glibc's or the driver's
  # (the GPU machine brings its own libc, libcuda and CUDA runtime).
  for b in "$pack/bin/"*; do ldd "$b"; done | awk '$3 ~ /^\// {print $3}' | sort -u |
    grep -v -E '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libcuda|libgcc_s|libstdc\+\+)\.so' |
    while read -r lib; do cp -L "$lib" "$pack/lib/"; done
  pwd >"$pack/source_dir"  # CB_SOURCE_DIR as compiled into the tests
  grep -qx "/$pack/" .git/info/exclude 2>/dev/null || echo "/$pack/" >>.git/info/exclude
  du -sh "$pack"
  echo "gpu-check: packed; run it there with carry [\"$pack\"]: bash scripts/gpu-check.sh run"
  ;;
run)
  [ -d "$pack/bin" ] || { echo "gpu-check: no $pack (run 'scripts/gpu-check.sh pack' here first)" >&2; exit 2; }
  out=${OUT:-/tmp/gpu-check}
  mkdir -p "$out"
  export LD_LIBRARY_PATH="$PWD/$pack/lib:${LD_LIBRARY_PATH:-}"
  # The tests find tests/models/ through the source path compiled in here.
  src=$(cat "$pack/source_dir")
  [ -e "$src" ] || { mkdir -p "$(dirname "$src")" && ln -s "$PWD" "$src"; }
  start=$(date +%s)
  {
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    echo "== GPU tests"
    status=0
    for t in test_cuda test_place_devices test_cli_device; do
      timeout 240 "$pack/bin/$t" --gtest_brief=1 || status=1
    done
    echo "== GPU benchmarks"
    printf '| model | shape | cpu ms | cuda ms |\n|---|---|---|---|\n' >"$out/table.md"
    for m in tests/models/{gpt2,gpt-neo,gpt-neox}/model.onnx; do
      for shape in 1x128 8x512; do
        ms() { "$pack/bin/codebook" bench "$m" --shape "$shape" --runs 20 --device "$1" 2>/dev/null |
          grep -o -E 'median [0-9.]+ ms' | head -1 || echo "failed"; }
        echo "| $(basename "$(dirname "$m")") | $shape | $(ms cpu) | $(ms cuda) |" >>"$out/table.md"
      done
    done
    cat "$out/table.md"
    echo "gpu-check: $(($(date +%s) - start)) s, tests $([ $status = 0 ] && echo passed || echo FAILED)"
    exit $status
  } 2>&1 | tee "$out/gpu-check.log"
  ;;
*)
  echo "usage: scripts/gpu-check.sh pack|run" >&2
  exit 2
  ;;
esac
