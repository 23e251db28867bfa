#!/usr/bin/env bash
# The GPU check of the CUDA backend (issue 13, docs/cuda.md), in two halves,
# because the lent GPU machine has nvcc and CMake but none of our Debian
# libraries (oneDNN, protobuf, ...) and cannot install them:
#
#   scripts/gpu-check.sh pack   # here: build release with CUDA, copy the GPU
#                               # tests, the tool and their shared libraries
#                               # into .gpu-pack/gpu-pack.tar.xz (git-ignored)
#   scripts/gpu-check.sh run    # there (device tool, carry [".gpu-pack"]):
#                               # GPU tests, then GPU benchmarks, one table
#
# `run` must finish in <= 8 minutes on an H100 (leaving room for a rerun in a
# 15-minute slot). It writes its log and table to $OUT when that is set.
set -euo pipefail
cd "$(dirname "$0")/.."
pack=.gpu-pack                 # what travels: one compressed archive
stage=build/gpu-pack           # its contents, here and unpacked there
mode=${1:-}
gpu_tests=(test_cuda test_place_devices test_cli_device)  # CudaDevice.* run the kernels, models and training

case "$mode" in
pack)
  cmake --preset release >/dev/null
  grep -q "CB_WITH_CUDA" build/release/compile_commands.json ||
    { echo "gpu-check: the release build has no CUDA (nvcc not found)" >&2; exit 2; }
  cmake --build --preset release -j "$(nproc)" --target codebook "${gpu_tests[@]}"
  rm -rf "$pack" "$stage"
  mkdir -p "$pack" "$stage/bin" "$stage/lib"
  cp build/release/codebook "$stage/bin/"
  for t in "${gpu_tests[@]}"; do cp "build/release/tests/$t" "$stage/bin/"; done
  strip "$stage/bin/"* 2>/dev/null || true
  # Every shared library they need that is not glibc's or CUDA's (the GPU
  # machine brings its own libc, driver, CUDA runtime and cuBLAS; cuBLAS
  # alone is ~600 MB, over the device tool's 64 MiB carry limit).
  for b in "$stage/bin/"*; do ldd "$b"; done | awk '$3 ~ /^\// {print $3}' | sort -u |
    grep -v -E '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libcuda|libcudart|libcublas|libcublasLt|libgcc_s|libstdc\+\+)\.so' |
    while read -r lib; do cp -L "$lib" "$stage/lib/"; done
  pwd >"$stage/source_dir"  # CB_SOURCE_DIR as compiled into the tests
  grep -qx "/$pack/" .git/info/exclude 2>/dev/null || echo "/$pack/" >>.git/info/exclude
  tar -C "$stage" -cJf "$pack/gpu-pack.tar.xz" .
  du -sh "$pack"
  (($(du -sm "$pack" | cut -f1) < 64)) || { echo "gpu-check: $pack is over the 64 MiB the device tool carries" >&2; exit 2; }
  echo "gpu-check: packed; run it there with carry [\"$pack\"]: bash scripts/gpu-check.sh run"
  ;;
run)
  [ -f "$pack/gpu-pack.tar.xz" ] || { echo "gpu-check: no $pack (run 'scripts/gpu-check.sh pack' here first)" >&2; exit 2; }
  rm -rf "$stage" && mkdir -p "$stage" && tar -C "$stage" -xJf "$pack/gpu-pack.tar.xz"
  out=${OUT:-/tmp/gpu-check}
  mkdir -p "$out"
  export LD_LIBRARY_PATH="$PWD/$stage/lib:${LD_LIBRARY_PATH:-}"
  # The tests find tests/models/ through the source path compiled in here.
  src=$(cat "$stage/source_dir")
  [ -e "$src" ] || { mkdir -p "$(dirname "$src")" && ln -s "$PWD" "$src"; }
  start=$(date +%s)
  {
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    echo "== GPU tests"
    status=0
    for t in "${gpu_tests[@]}"; do
      timeout 240 "$stage/bin/$t" --gtest_brief=1 || status=1
    done
    echo "== GPU benchmarks"
    median_ms() {  # model shape device
      "$stage/bin/codebook" bench "$1" --shape "$2" --runs 20 --device "$3" 2>/dev/null |
        grep -o -E 'median [0-9.]+ ms' | head -1 || echo "failed"
    }
    printf '| model | shape | cpu ms | cuda ms |\n|---|---|---|---|\n' >"$out/table.md"
    for m in tests/models/{gpt2,gpt-neo,gpt-neox}/model.onnx; do
      for shape in 1x64 8x64; do  # within the test models' positions
        echo "| $(basename "$(dirname "$m")") | $shape | $(median_ms "$m" "$shape" cpu) | $(median_ms "$m" "$shape" cuda) |" \
          >>"$out/table.md"
      done
    done
    # Training throughput: TokFSM's config (codebooks from the start, no
    # evaluation), the last logged tokens/s of a short run on each device.
    train_tok_s() {  # device steps (at most 2 minutes each: the table must come back)
      timeout 120 "$stage/bin/codebook" train configs/tokfsm.yaml codebook_args.insert_after_steps=0 \
        training_args.logging_steps=10 training_args.eval_steps=100000 --max-steps "$2" --device "$1" \
        --no-checkpoint --progress off -o "$out/train-$1" 2>/dev/null |
        grep -o -E '"tokens_per_s":[0-9.]+' | tail -1 | cut -d: -f2 || echo "failed"
    }
    printf '\n| training (configs/tokfsm.yaml) | cpu tokens/s | cuda tokens/s |\n|---|---|---|\n' >>"$out/table.md"
    echo "| 20 steps (cpu), 200 steps (cuda) | $(train_tok_s cpu 20) | $(train_tok_s cuda 200) |" >>"$out/table.md"
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
