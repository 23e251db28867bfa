#!/usr/bin/env bash
# Crash safety of the files training, compile and cache build write (docs/reliability.md,
# "Files and crashes"). kill -9 at random moments, many inside a checkpoint
# save or between an external-data file and its model (the test-only pause
# CB_TEST_WRITE_DELAY_MS widens those windows), then checks:
#   training: every checkpoint-<step> left behind is complete and
#     byte-identical to the uninterrupted run's checkpoint of that step; the
#     next start resumes (recovering an interrupted save); the run finished
#     through all the kills ends bit-identical (state.safetensors, model.onnx,
#     fsm.npy) with the same log (losses per step, no step twice);
#   compile --external-data: OUT.onnx always loads and, with its data file,
#     is one of the two complete outputs, never a mix; one data file is left;
#   cache build: every start after a kill continues (--resume when DIR.partial
#     has progress, else a fresh build) and the cache finished through all the
#     kills equals the uninterrupted build's, file for file.
#
#   bash scripts/crash_safety.sh build/release/codebook /tmp/crash [KILLS] [SEED]
#
# KILLS (default 20) kills of each; ctest runs a short version (crash_safety).
set -euo pipefail
cb=$(realpath "$1")
work=$2
kills=${3:-20}
RANDOM=${4:-$$}
root=$(cd "$(dirname "$0")/.." && pwd)
config="$root/configs/test_fsm.yaml"
model="$root/tests/models/gpt2/model.onnx"
# 24 steps, a checkpoint every 2 (the killed run keeps the default 2, so old
# ones are removed as it goes; the reference keeps all to compare against).
steps=(training_args.max_steps=24 training_args.save_steps=2 training_args.logging_steps=2
       training_args.eval_steps=12 --progress off)
rm -rf "$work"
mkdir -p "$work"
fail() {
  echo "crash_safety: FAIL: $*" >&2
  exit 1
}

# Random whole milliseconds in [0, $1).
random_ms() { echo $(((RANDOM * 32768 + RANDOM) % $1)); }
sleep_ms() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }
now_ms() { date +%s%3N; }

# Starts "$@" with a random test pause of 20-100 ms (none in a quarter of
# the runs, which then get a sixth of the window) and kills it -9 after
# $first_ms plus a random time below $window_ms. Sets outcome=killed, or
# outcome=ended when it ended first (exit 0; other exit codes fail the test).
first_ms=0 window_ms=1000 outcome=
run_and_kill() {
  local pause=$((RANDOM % 4 == 0 ? 0 : 20 + RANDOM % 80)) at
  at=$((first_ms + $(random_ms $((pause ? window_ms : window_ms / 6 + 1)))))
  CB_TEST_WRITE_DELAY_MS=$pause "$@" >>"$work/killed.log" 2>&1 &
  local pid=$!
  sleep_ms "$at"
  if kill -9 "$pid" 2>/dev/null; then
    wait "$pid" 2>/dev/null || true
    outcome=killed
  elif wait "$pid"; then
    outcome=ended
  else
    fail "$* ended with exit code $? before its kill: $(tail -3 "$work/killed.log")"
  fi
}

# The training lines' and evaluations' losses by step, one per line.
losses() { grep -o '"eval_loss":[^,}]*\|"loss":[^,}]*\|"step":[0-9]*' "$1" | paste -sd' ' | sed 's/ "step"/\n"step"/g'; }

# ---------------------------------------------------------------- training
t0=$(now_ms)
"$cb" train "$config" "${steps[@]}" training_args.max_steps=1 --no-checkpoint --output "$work/probe" >/dev/null 2>&1 ||
  fail "a one-step run failed"
t1=$(now_ms)
"$cb" train "$config" "${steps[@]}" training_args.save_total_limit=100 --output "$work/ref" >"$work/ref.log" 2>&1 ||
  fail "the uninterrupted run failed: $(tail -3 "$work/ref.log")"
t2=$(now_ms)
# Kills come after most of the start-up (t1 - t0) and within a window that
# lets a run advance at most about 1/KILLS of the paused run per start (the pauses
# add ~60 ms at ~6 points of each of the 12 saves).
startup=$((t1 - t0))
first_ms=$((startup * 3 / 4))
window_ms=$((startup / 4 + (t2 - t1 - startup + 12 * 6 * 60) / kills))

run="$work/run"
check_checkpoints() {
  local ck name
  for ck in "$run"/checkpoint-*; do
    name=$(basename "$ck")
    [[ $name =~ ^checkpoint-[0-9]+$ ]] || continue  # .tmp/.old/.removing: the next start repairs them
    for f in trainer_state.json state.safetensors model.onnx fsm.npy; do
      [ -f "$ck/$f" ] || fail "after kill $1: $name has no $f"
    done
    for f in state.safetensors model.onnx fsm.npy; do
      cmp -s "$ck/$f" "$work/ref/$name/$f" || fail "after kill $1: $name/$f differs from the uninterrupted run's"
    done
    "$cb" train --resume "$ck" --print-config >/dev/null 2>&1 || fail "after kill $1: $name/trainer_state.json does not load"
  done
}
has_checkpoint() {  # a complete checkpoint, or a copy the next start recovers
  local ck
  for ck in "$run"/checkpoint-*; do [ -f "$ck/trainer_state.json" ] && return 0; done
  return 1
}
in_save() { compgen -G "$run/checkpoint-*.tmp" >/dev/null || compgen -G "$run/checkpoint-*.old" >/dev/null ||
  compgen -G "$run/checkpoint-*.removing" >/dev/null; }

# The oldest complete checkpoint-<step> ("" if none).
oldest_checkpoint() {
  local ck
  for ck in $(ls -d "$run"/checkpoint-* 2>/dev/null | grep -E '/checkpoint-[0-9]+$' | sort -t- -k2 -n); do
    [ -f "$ck/trainer_state.json" ] && { echo "$ck"; return; }
  done
}

killed=0 saving=0
for ((i = 1; i <= kills; i++)); do
  older=$(oldest_checkpoint)
  if [ -n "$older" ] && [ "$older" != "$(ls -d "$run"/checkpoint-* | grep -E '/checkpoint-[0-9]+$' | sort -t- -k2 -n | tail -1)" ] &&
    ((RANDOM % 3 == 0)); then
    # From the older of two checkpoints: the later one moves aside and is
    # saved again (the re-save of a step, old copy renamed aside first).
    cmd=("$cb" train --resume "$older")
  elif has_checkpoint; then
    cmd=("$cb" train --resume "$run")
  else
    cmd=("$cb" train "$config" "${steps[@]}" --output "$run")
  fi
  run_and_kill "${cmd[@]}"
  [ "$outcome" = ended ] && break
  killed=$((killed + 1))
  if in_save; then saving=$((saving + 1)); fi
  check_checkpoints "$i"
done
if [ "$outcome" != ended ]; then
  if has_checkpoint; then
    "$cb" train --resume "$run" >>"$work/killed.log" 2>&1 || fail "the last resume failed: $(tail -3 "$work/killed.log")"
  else
    "$cb" train "$config" "${steps[@]}" --output "$run" >>"$work/killed.log" 2>&1 || fail "the last run failed"
  fi
fi
check_checkpoints final
for f in checkpoint-24/state.safetensors checkpoint-24/model.onnx model.onnx fsm.npy; do
  cmp -s "$run/$f" "$work/ref/$f" || fail "$f differs from the uninterrupted run's"
done
[ "$(losses "$run/log.jsonl")" = "$(losses "$work/ref/log.jsonl")" ] ||
  fail "log.jsonl differs from the uninterrupted run's: $(diff <(losses "$work/ref/log.jsonl") <(losses "$run/log.jsonl") | head -5)"
recovered=$(grep -c '^recovered' "$work/killed.log" || true)
superseded=$(grep -c '^moved .* aside' "$work/killed.log" || true)
cut=$(grep -c '^log.jsonl: cut' "$work/killed.log" || true)
echo "crash_safety: training killed $killed times ($saving inside a checkpoint save; $recovered checkpoints" \
  "recovered, $superseded superseded by resuming from an older one, the log cut back $cut times): every" \
  "checkpoint complete and as uninterrupted, the end bit-identical"

# -------------------------------------------------------- compile --external-data
compile=("$cb" compile "$model" --external-data --codes 16 -k 2 -o)
for seed in 1 2; do
  mkdir -p "$work/ref$seed"
  "${compile[@]}" "$work/ref$seed/m.onnx" --seed "$seed" >/dev/null 2>&1 || fail "compile --seed $seed failed"
done
out="$work/compiled/m.onnx"
mkdir -p "$work/compiled"
t0=$(now_ms)
"${compile[@]}" "$out" --seed 1 >/dev/null 2>&1
first_ms=0
window_ms=$(($(now_ms) - t0 + 250))
check_pair() {
  [ -f "$out" ] || fail "after kill $1: $out is gone"
  "$cb" inspect "$out" >/dev/null 2>&1 || fail "after kill $1: $out does not load: $("$cb" inspect "$out" 2>&1 | tail -2)"
  local seed data
  for seed in 1 2; do
    cmp -s "$out" "$work/ref$seed/m.onnx" || continue
    data=$(cd "$work/ref$seed" && ls m.onnx.*.data)
    cmp -s "$work/compiled/$data" "$work/ref$seed/$data" || fail "after kill $1: the model of seed $seed with other data"
    return 0
  done
  fail "after kill $1: $out is neither complete output"
}
killed=0 between=0
for ((i = 1; i <= kills; i++)); do
  run_and_kill "${compile[@]}" "$out" --seed $((1 + i % 2))
  if [ "$outcome" = killed ]; then killed=$((killed + 1)); fi
  n=$(cd "$work/compiled" && ls m.onnx.*.data | wc -l)
  if ((n > 1)); then between=$((between + 1)); fi
  check_pair "$i"
done
"${compile[@]}" "$out" --seed 2 >/dev/null 2>&1 || fail "the last compile failed"
check_pair final
n=$(cd "$work/compiled" && ls m.onnx.*.data | wc -l)
[ "$n" = 1 ] || fail "$n data files left after a complete compile (stale ones are removed)"
echo "crash_safety: compile --external-data killed $killed times ($between with two data files, between the" \
  "data and the model or before the old data's removal): the model and its data always a pair"

# ------------------------------------------------------------------ cache build
# Progress recorded after every batch (a hidden test option), so that kills
# land before, between and after the records; the reference runs with the
# mean test pause to size the kill window.
cache=("$cb" cache build "$work/ref" --data tokfsm --max-tokens 4096 --batch-size 4 --scores --progress off
       --checkpoint-seconds 0)
t0=$(now_ms)
CB_TEST_WRITE_DELAY_MS=60 "${cache[@]}" -o "$work/cache-ref" >"$work/cache-ref.log" 2>&1 ||
  fail "the uninterrupted cache build failed: $(tail -3 "$work/cache-ref.log")"
first_ms=0
window_ms=$((($(now_ms) - t0) / 2 + 50))  # most starts killed halfway or earlier: many resumes
dir="$work/cache"
killed=0 resumed=0 outcome=
for ((i = 1; i <= kills; i++)); do
  [ -f "$dir/cache.json" ] && break
  if [ -f "$dir.partial/progress.json" ]; then
    cmd=("${cache[@]}" -o "$dir" --resume)
    resumed=$((resumed + 1))
  else
    cmd=("${cache[@]}" -o "$dir")
  fi
  run_and_kill "${cmd[@]}"
  [ "$outcome" = ended ] && break
  killed=$((killed + 1))
done
if [ ! -f "$dir/cache.json" ]; then
  resume=()
  [ -f "$dir.partial/progress.json" ] && resume=(--resume)
  "${cache[@]}" -o "$dir" "${resume[@]}" >>"$work/killed.log" 2>&1 || fail "the last cache build failed: $(tail -3 "$work/killed.log")"
fi
[ ! -e "$dir.partial" ] || fail "$dir.partial is left after a complete build"
# A kill just after the final rename may leave progress.json (ignored by readers).
diff -r -x progress.json "$dir" "$work/cache-ref" >/dev/null || fail "the cache differs from the uninterrupted build's"
"$cb" cache info "$dir" >/dev/null 2>&1 || fail "cache info rejects the cache: $("$cb" cache info "$dir" 2>&1 | tail -2)"
echo "crash_safety: cache build killed $killed times ($resumed starts resumed a partial build): the cache" \
  "identical to the uninterrupted build's"
