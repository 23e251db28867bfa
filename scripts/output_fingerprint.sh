#!/usr/bin/env bash
# Prints a SHA-256 for every output the test models produce through the CLI:
# plain runs on both backends, Hugging Face imports, compiled codebook models
# with interventions and taps, the standard-ONNX export, and a short training
# run (state + losses). A refactoring that must not change behaviour prints
# the same lines before and after:
#
#   bash scripts/output_fingerprint.sh build/release/codebook > before.txt
#   ... change, rebuild ...
#   bash scripts/output_fingerprint.sh build/release/codebook | diff before.txt -
#
# The run is deterministic for a given CPU and thread count (2 threads here).
set -euo pipefail
cd "$(dirname "$0")/.."
cb=$(realpath "${1:-build/release/codebook}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=2

hash_dir() {  # label dir: one line per file, sorted
  (cd "$2" && find . -type f | LC_ALL=C sort | while read -r f; do
     printf '%s  %s/%s\n' "$(sha256sum "$f" | cut -c1-16)" "$1" "${f#./}"; done)
}

tokens=5,17,300,2,40,41,7,9
for dir in tests/models/*/; do
  m=$(basename "$dir")
  [ -f "$dir/model.onnx" ] || continue
  for backend in reference cpu; do
    "$cb" run "$dir/model.onnx" --tokens "$tokens" --backend "$backend" --output-dir "$work/$m-$backend" >/dev/null
    hash_dir "$m/run-$backend" "$work/$m-$backend"
  done
  if [ -d "$dir/hf" ]; then
    "$cb" import-hf "$dir/hf" -o "$work/$m-hf.onnx" >/dev/null
    printf '%s  %s\n' "$(sha256sum "$work/$m-hf.onnx" | cut -c1-16)" "$m/import-hf.onnx"
    "$cb" run "$work/$m-hf.onnx" --tokens "$tokens" --output-dir "$work/$m-hf-run" >/dev/null
    hash_dir "$m/import-hf-run" "$work/$m-hf-run"
  fi
  cbm="$work/$m-cb.onnx"
  "$cb" compile "$dir/model.onnx" -o "$cbm" --at mlp,attn_preproj,attn_plus_mlp --codes 64,32,16 -k 2 \
    --groups 1,heads,1 --layers all --seed 3 >/dev/null
  printf '%s  %s\n' "$(sha256sum "$cbm" | cut -c1-16)" "$m/compile.onnx"
  taps=layer0.mlp.input,layer0.mlp.ids,layer0.mlp.scores,layer0.mlp.output
  taps=$taps,layer1.attn_preproj.input,layer1.attn_preproj.ids,layer1.attn_preproj.scores,layer1.attn_preproj.output
  "$cb" run "$cbm" --tokens "$tokens" --output-dir "$work/$m-cb-run" --tap layer0.mlp --tap layer1.attn_preproj \
    --outputs "logits,$taps" >/dev/null
  hash_dir "$m/compiled-run" "$work/$m-cb-run"
  "$cb" run "$cbm" --tokens "$tokens" --ablate layer0.mlp:1,2,3@0,2 --force 'layer1.attn_preproj[0]:5@*' \
    --disable-topk layer0.attn_plus_mlp:1 --compare --json > "$work/$m-iv.json"
  printf '%s  %s\n' "$(sha256sum "$work/$m-iv.json" | cut -c1-16)" "$m/interventions.json"
  "$cb" export "$cbm" -o "$work/$m-std.onnx" --standard --ablate layer0.mlp:1@1 --ablate-mode zero >/dev/null
  printf '%s  %s\n' "$(sha256sum "$work/$m-std.onnx" | cut -c1-16)" "$m/export-standard.onnx"
done

"$cb" train configs/test_fsm.yaml --output "$work/train2" --max-steps 20 > "$work/train2.log" 2>/dev/null
grep -o '"loss": *[-0-9.e]*' "$work/train2/log.jsonl" | sha256sum | cut -c1-16 | sed 's/$/  train\/losses/'
for f in model.onnx state.safetensors; do
  printf '%s  %s\n' "$(sha256sum "$work/train2/checkpoint-20/$f" | cut -c1-16)" "train/checkpoint-20/$f"
done

# The main job's recipe, shortened: GPT-2 with GELU fusion, two-stage
# training with k-means-initialised group codebooks.
"$cb" train configs/tokfsm.yaml --output "$work/train3" training_args.max_steps=24 \
  codebook_args.insert_after_steps=12 codebook_args.num_codes=64 training_args.save_steps=24 \
  training_args.eval_steps=24 training_args.logging_steps=6 training_args.per_device_train_batch_size=8 \
  fsm_args.max_eval_samples=16 fsm_args.generate_samples=4 runtime.threads=2 >/dev/null 2>&1
grep -o '"\(eval_\)\?loss": *[-0-9.e]*' "$work/train3/log.jsonl" | sha256sum | cut -c1-16 | sed 's/$/  tokfsm\/losses/'
for f in model.onnx state.safetensors; do
  printf '%s  %s\n' "$(sha256sum "$work/train3/checkpoint-24/$f" | cut -c1-16)" "tokfsm/checkpoint-24/$f"
done
