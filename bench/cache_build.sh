#!/usr/bin/env bash
# Throughput of `codebook cache build` next to the plain forward pass of the
# same compiled model (`codebook bench`, same batch shape and threads), in the
# same run, with the ratio (issue floor: >= 0.9) and the cache's bytes per token;
# then the build's peak RSS at two dataset sizes (it must not grow).
#   bash bench/cache_build.sh [MODEL=tokfsm|gpt2-small|rss] [TOKENS] [THREADS=2]
# tokfsm: the main job's model (runs/tokfsm, scripts/demo.sh trains it), 64-token
# TokFSM sequences, batch 64. gpt2-small: GPT-2 small with random weights
# (import-hf --random-init, no download) compiled with per-head attn_preproj
# codebooks on all 12 layers (12 x 12 x 10,000 codes, k = 8), 128-token rows of
# Debian's fortunes text, batch 8. rss: only the peak RSS at 1 M and 10 M
# tokens (the tiny test GPT-2 with codebooks on TokFSM sequences, so the model
# is fast and the builder's own memory shows), with a 32 MiB budget for the
# inverted index (INDEX_MB=...; the default 256 MiB budget is reached only from
# ~8 M tokens of this model on, so below that RSS rises with it).
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-tokfsm}; threads=${3:-2}
bin=build/release/codebook
[ -x $bin ] || { cmake --preset release >/dev/null; cmake --build --preset release --target codebook; }
work=build/bench-cache
mkdir -p $work
rss() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }   # peak RSS in KiB

if [ "$which" = rss ]; then
  $bin compile tests/models/gpt2/model.onnx -o $work/tiny-cb.onnx --at mlp,attn_preproj --groups 1,heads \
    --codes 256,64 -k 2 --layers all >/dev/null
  for n in 1000000 10000000; do
    kib=$(rss $bin cache build $work/tiny-cb.onnx -o $work/rss-$n --data tokfsm:configs/tokfsm.yaml --max-tokens $n \
      --threads $threads --progress off --overwrite --index-memory-mb ${INDEX_MB:-32})
    echo "$n tokens: peak RSS $((kib / 1024)) MiB, cache $(du -sm $work/rss-$n | cut -f1) MiB"
  done
  exit 0
fi
if [ "$which" = tokfsm ]; then
  model=${MODEL_DIR:-runs/tokfsm}
  [ -f "$model/model.onnx" ] || { echo "train the main job first: bash scripts/demo.sh" >&2; exit 1; }
  tokens=${2:-262144}; batch=64; block=64
  data=(--data tokfsm)
  plain="$model/model.onnx"
else
  tokens=${2:-8192}; batch=8; block=128
  if [ ! -f $work/gpt2-small-cb.onnx ]; then
    echo '{"model_type": "gpt2", "vocab_size": 50257, "n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024}' \
      > $work/gpt2-small.json
    $bin import-hf --config $work/gpt2-small.json --random-init -o $work/gpt2-small.onnx
    $bin compile $work/gpt2-small.onnx -o $work/gpt2-small-cb.onnx --at attn_preproj --groups heads --codes 10000 -k 8 \
      --layers all --tokenizer ../shared/data/gpt2-bpe
  fi
  model=$work/gpt2-small-cb.onnx; plain=$model
  cat /usr/share/games/fortunes/{computers,science,literature,art,education,work,wisdom} > $work/fortunes.txt
  data=(--data $work/fortunes.txt --doc-split sep:% --block-size $block)
fi

build() {  # out tokens -> JSON summary
  $bin cache build "$model" -o "$1" "${data[@]}" --max-tokens "$2" --batch-size $batch --threads $threads \
    --progress off --overwrite --json
}
fwd=$($bin bench "$plain" --shape ${batch}x${block} --runs 5 --threads $threads --json |
      python3 -c "import json,sys; print(json.loads(sys.stdin.read())['tokens_per_s'])")
summary=$(build $work/cache-$which "$tokens")
fwd2=$($bin bench "$plain" --shape ${batch}x${block} --runs 5 --threads $threads --json |
       python3 -c "import json,sys; print(json.loads(sys.stdin.read())['tokens_per_s'])")
python3 - "$fwd" "$fwd2" "$summary" <<'PY'
import json, sys
fwd = (float(sys.argv[1]) + float(sys.argv[2])) / 2
s = json.loads(sys.argv[3])
print(f"forward pass (codebook bench, before/after): {float(sys.argv[1]):.0f} / {float(sys.argv[2]):.0f} tokens/s")
print(f"cache build: {s['tokens']} tokens in {s['seconds']:.1f} s = {s['tokens_per_s']:.0f} tokens/s "
      f"(model {s['model_seconds']:.1f} s), {s['bytes_per_token']:.1f} bytes/token")
print(f"ratio build / forward: {s['tokens_per_s'] / fwd:.3f}")
PY
if [ "${RSS:-1}" = 1 ]; then
  small=$((tokens / 8)); big=$tokens
  echo "peak RSS (KiB): $small tokens: $(rss build $work/rss-small $small)   $big tokens: $(rss build $work/rss-big $big)"
fi
