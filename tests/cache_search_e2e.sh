#!/usr/bin/env bash
# The code cache end to end, as a user runs it (docs/cache.md): train a model,
# cache its codes over a dataset, and search them.
#   * TokFSM: the main job's model (configs/tokfsm.yaml, reused from
#     $CB_TOKFSM_RUN when set; trained here for 1000 of its 1800 steps, which
#     keeps CI short: at 1000 steps all 10 states reached precision >= 0.989
#     on the 2-core AMD EPYC) cached on its own task; for 10 states s the
#     regex matching s at its last digit (`4(3)` with --parity odd) must find a
#     code of layer0.mlp with precision >= 0.9 for at least 8 of them.
#   * English: a small GPT-2 trained briefly on Debian's fortunes
#     (configs/fortunes.yaml) cached on the same text; at least 3 of 5 common
#     words (' (the)\b', ...) must have a layer0.mlp code with precision >= 0.9.
# usage: tests/cache_search_e2e.sh CODEBOOK_BIN WORK_DIR [all|tokfsm|english]
set -euo pipefail
bin=$(realpath "$1"); work=$2; which=${3:-all}
cd "$(dirname "$0")/.."
mkdir -p "$work"

best_precision() {  # cache regex [search options] -> precision of the best layer0.mlp code (0 if none)
  local cache=$1 regex=$2; shift 2
  "$bin" search "$cache" "$regex" --site layer0.mlp --top 1 --min-precision 0 --json "$@" |
    python3 -c "import json,sys; c=json.load(sys.stdin)['codes']; print(max([x['precision'] for x in c], default=0))"
}

if [ "$which" = all ] || [ "$which" = tokfsm ]; then
  run=${CB_TOKFSM_RUN:-$work/tokfsm-run}
  if [ ! -f "$run/model.onnx" ]; then
    "$bin" train configs/tokfsm.yaml --max-steps 1000 --output "$run" --progress off > "$work/tokfsm-train.log"
  fi
  "$bin" cache build "$run" -o "$work/tokfsm-cache" --data tokfsm --max-tokens 131072 --progress off --overwrite
  good=0
  for s in 01 12 23 34 45 56 67 78 89 90; do
    p=$(best_precision "$work/tokfsm-cache" "${s:0:1}(${s:1:1})" --parity odd)
    echo "state $s: best layer0.mlp code precision $p"
    python3 -c "import sys; sys.exit(0 if float('$p') >= 0.9 else 1)" && good=$((good + 1))
  done
  echo "TokFSM: $good of 10 states have a layer0.mlp code with precision >= 0.9"
  [ "$good" -ge 8 ]
fi

if [ "$which" = all ] || [ "$which" = english ]; then
  run=$work/fortunes-run
  if [ ! -f "$run/model.onnx" ]; then
    "$bin" train configs/fortunes.yaml --output "$run" --progress off > "$work/fortunes-train.log"
  fi
  cat /usr/share/games/fortunes/{computers,science,literature,wisdom,work,people} > "$work/fortunes.txt"
  "$bin" cache build "$run" -o "$work/fortunes-cache" --data "$work/fortunes.txt" --doc-split sep:% --progress off \
    --overwrite
  good=0
  for w in the and of is you; do
    p=$(best_precision "$work/fortunes-cache" " ($w)\\b")
    echo "English: ' ($w)\\b': best layer0.mlp code precision $p"
    python3 -c "import sys; sys.exit(0 if float('$p') >= 0.9 else 1)" && good=$((good + 1))
  done
  echo "English: $good of 5 common words have a layer0.mlp code with precision >= 0.9"
  [ "$good" -ge 3 ]
fi
