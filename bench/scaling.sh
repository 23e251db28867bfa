#!/usr/bin/env bash
# Data-parallel scaling of `codebook train` from 1 to 2 processes on this
# machine: the TokFSM main job's model with its codebooks (configs/tokfsm.yaml,
# codebooks in from step 0, no k-means: the steady state of its second stage)
# at the same global batch, as
#   1 process  x 1 thread   (one core),
#   1 process  x 2 threads  (both cores, OpenMP),
#   mpirun -np 2 x 1 thread (both cores, data-parallel, gradients all-reduced).
# Each: the median tokens/s of STEPS steps after 3 warm-up steps; the three
# alternate for ROUNDS rounds (so load changes hit all alike), and the median
# over the rounds is reported. Scaling efficiency = (2-process tokens/s) /
# (2 x 1-process-1-thread tokens/s).
#   bash bench/scaling.sh [BATCH=32] [STEPS=20] [ROUNDS=3] [CONFIG=configs/tokfsm.yaml]
set -euo pipefail
cd "$(dirname "$0")/.."
batch=${1:-32}; steps=${2:-20}; rounds=${3:-3}; config=${4:-configs/tokfsm.yaml}
bin=build/release/codebook
[ -x $bin ] || { cmake --preset release >/dev/null; cmake --build --preset release --target codebook; }
command -v mpirun >/dev/null || { echo "mpirun not found: bash scripts/setup.sh (openmpi-bin)" >&2; exit 1; }
root=""; [ "$(id -u)" = 0 ] && root=--allow-run-as-root
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

run() {  # name threads launcher...
  local name=$1 threads=$2; shift 2
  "$@" $bin train "$config" codebook_args.insert_after_steps=0 codebook_args.kmeans_init=false \
    training_args.per_device_train_batch_size="$batch" training_args.max_steps=$((steps + 3)) \
    training_args.logging_steps=1 training_args.eval_steps=0 training_args.save_steps=0 runtime.threads="$threads" \
    --no-checkpoint --progress off --output "$out/$name" >/dev/null 2>"$out/$name.err" ||
    { cat "$out/$name.err" >&2; exit 1; }
  python3 - "$out/$name/log.jsonl" <<'PY'
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1])][3:]
print(statistics.median(l["tokens_per_s"] for l in lines))
PY
}

median() { python3 -c "import statistics, sys; print(statistics.median(map(float, sys.argv[1:])))" "$@"; }
a=(); b=(); c=()
for ((i = 0; i < rounds; i++)); do
  a+=("$(run one_1thread_$i 1 env)")
  b+=("$(run one_2threads_$i 2 env)")
  # runtime.threads is per machine: 2 ranks get 1 thread each.
  c+=("$(run two_ranks_$i 2 mpirun --oversubscribe $root -np 2)")
done
one1=$(median "${a[@]}"); one2=$(median "${b[@]}"); two=$(median "${c[@]}")
echo "rounds (tokens/s): 1x1 ${a[*]} | 1x2 ${b[*]} | 2x1 ${c[*]}"
printf '%-28s %12s %9s\n' "global batch $batch x 64" "tokens/s" "speedup"
printf '%-28s %12.0f %8.2fx\n' "1 process  x 1 thread" "$one1" 1
printf '%-28s %12.0f %8.2fx\n' "1 process  x 2 threads" "$one2" "$(python3 -c "print($one2 / $one1)")"
printf '%-28s %12.0f %8.2fx\n' "2 processes x 1 thread (MPI)" "$two" "$(python3 -c "print($two / $one1)")"
python3 -c "print(f'scaling efficiency 1 -> 2 processes: {$two / (2 * $one1):.0%}; 2 processes vs 2 threads: {$two / $one2:.2f}x')"
echo "($(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))"
