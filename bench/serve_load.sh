#!/usr/bin/env bash
# Load test of `codebook serve` (issue 11): 8 concurrent clients x 30 s of mixed
# regex search / code examples / live-model run and intervene requests against
# a 1 M-token cache of the main job (bench/bench_serve_load prints requests,
# errors and p50/p99 latency per kind), then the server's memory with a
# 10 M-token cache after the same mix (peak RSS, and how much of it is the
# memory-mapped cache's file pages).
#   bash bench/serve_load.sh [CLIENTS=8] [SECONDS=30] [TOKENS=1048576] [BIG_TOKENS=10485760]
# Needs the main job's run (runs/tokfsm: bash scripts/demo.sh, or MODEL_DIR=...).
# The caches are built once into build/bench-serve/ (the 10 M one takes a while).
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-8}; seconds=${2:-30}; tokens=${3:-1048576}; big=${4:-10485760}
run=${MODEL_DIR:-runs/tokfsm}
[ -f "$run/model.onnx" ] || { echo "train the main job first: bash scripts/demo.sh" >&2; exit 1; }
[ -x build/release/bench/bench_serve_load ] || { cmake --preset release >/dev/null; cmake --build --preset release --target codebook bench_serve_load; }
cb=build/release/codebook
work=build/bench-serve
mkdir -p $work

cache_of() {  # TOKENS -> a cache of that many TokFSM tokens (its build time on stderr)
  local dir=$work/cache-$1
  if [ ! -f $dir/cache.json ]; then
    local t0=$SECONDS
    $cb cache build "$run" -o $dir --data tokfsm --max-tokens $1 --progress off >/dev/null
    echo "built $dir in $((SECONDS - t0)) s ($(du -sh $dir | cut -f1))" >&2
  fi
  echo $dir
}

serve_and_load() {  # CACHE SECONDS: serve it, run the load, print the server's memory
  local out=$work/serve.out
  # --queue as large as the clients: model requests wait their turn, none is refused.
  $cb serve "$1" --model "$run" --port 0 --read-only --queue $clients >$out 2>&1 &
  local pid=$!
  trap "kill $pid 2>/dev/null" EXIT
  for _ in $(seq 100); do grep -q 'http://' $out && break; sleep 0.1; done
  local port
  port=$(grep -o '127.0.0.1:[0-9]*' $out | cut -d: -f2)
  local rc=0
  build/release/bench/bench_serve_load $port --clients $clients --seconds $2 || rc=$?
  awk '/VmHWM|RssAnon|RssFile/ {printf "  %s %.0f MiB", $1, $2 / 1024} END {print ""}' /proc/$pid/status
  # The resident pages of the cache's memory-mapped files (of its $(du) on disk).
  awk -v dir="$(realpath "$1")/" '/^[0-9a-f]+-[0-9a-f]+ / {m = index($0, dir) > 0} m && /^Rss:/ {kb += $2}
    END {printf "  cache pages %.0f MiB resident", kb / 1024}' /proc/$pid/smaps
  echo " of $(du -sm "$1" | cut -f1) MiB on disk"
  kill $pid; wait $pid 2>/dev/null || true
  trap - EXIT
  return $rc
}

# The machine and its load: the numbers mean little without them.
lscpu | grep 'Model name' || true
echo "nproc $(nproc); $(uptime)"
echo "== $clients clients x $seconds s, $tokens-token cache"
serve_and_load "$(cache_of $tokens)" $seconds
echo "== memory with a $big-token cache (same mix, 10 s)"
serve_and_load "$(cache_of $big)" 10
echo "$(uptime)"
