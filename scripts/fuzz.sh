#!/usr/bin/env bash
# Builds the libFuzzer harnesses (in the sanitizer build, preset "asan": clang,
# ASan + UBSan; build preset "fuzz" builds only them) and runs
# each for SECONDS_EACH seconds (default 30) on a scratch copy of its committed
# seed corpus (tests/fuzz/corpus/NAME/; the repository's corpus is never
# written). Fails if any harness finds a crash, an out-of-memory, a
# timeout or a sanitizer report, and prints the path of the input that did it.
# Usage: scripts/fuzz.sh [SECONDS_EACH] [HARNESS...]   (docs/reliability.md#fuzzing)
# Environment: CB_FUZZ_WORK (scratch folder, default build/asan/fuzz-work),
# CB_FUZZ_JOBS (build jobs, default nproc), CB_FUZZ_ARGS (extra libFuzzer flags).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
harnesses=("$@")
((${#harnesses[@]})) || harnesses=(json yaml npy safetensors onnx bpe_tokenizer train_config)

start=$(date +%s)
cmake --preset asan >/dev/null
cmake --build --preset fuzz -j "${CB_FUZZ_JOBS:-$(nproc)}"
echo "fuzz: build took $(($(date +%s) - start)) s"

work=${CB_FUZZ_WORK:-build/asan/fuzz-work}
status=0
for name in "${harnesses[@]}"; do
  bin=build/asan/tests/fuzz/fuzz_$name
  [ -x "$bin" ] || { echo "fuzz: no harness '$name' ($bin)" >&2; exit 2; }
  corpus=$work/$name/corpus
  artifacts=$work/$name/findings/
  rm -rf "$work/$name"
  mkdir -p "$corpus" "$artifacts"
  cp -r tests/fuzz/corpus/"$name"/. "$corpus"/
  dict=()
  [ -f tests/fuzz/$name.dict ] && dict=(-dict=tests/fuzz/$name.dict)
  echo "fuzz: $name for ${seconds}s"
  # -rss_limit_mb: a reader must refuse an absurd size before allocating it;
  # -timeout: no single input may take more than 10 s (a hang is a finding).
  # shellcheck disable=SC2086
  if ! ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=0 UBSAN_OPTIONS=print_stacktrace=1 \
    "$bin" "$corpus" "${dict[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2560 \
    -artifact_prefix="$artifacts" -seed="${CB_FUZZ_SEED:-1}" -print_final_stats=1 ${CB_FUZZ_ARGS:-} >"$work/$name/log" 2>&1; then
    echo "fuzz: $name FOUND A FAILURE; log: $work/$name/log" >&2
    tail -n 40 "$work/$name/log" >&2
    for f in "$artifacts"*; do
      [ -e "$f" ] && echo "fuzz: failing input: $f (replay: $bin $f)" >&2
    done
    status=1
  else
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$work/$name/log" | sed "s/^/fuzz: $name /"
  fi
done
echo "fuzz: done in $(($(date +%s) - start)) s"
exit $status
