#!/usr/bin/env bash
# Generation speed: GPT-2 small (124M, random weights), a PROMPT-token prompt
# + NEW new tokens, batch 1, greedy, THREADS threads: `codebook generate`
# (KV cache, docs/generation.md) vs Hugging Face transformers `generate`
# (PyTorch eager, KV cache), in one run, with the ratio and the memory-bound
# estimate (weight bytes read per decode step / measured read bandwidth).
# PRECISION bf16 (docs/precision.md) runs ours with --precision bf16 and
# adds transformers with bf16 weights.
# Installs torch, transformers and onnx from PyPI when missing. Not run in CI.
#   bash bench/generate.sh [THREADS=2] [PROMPT=128] [NEW=128] [PRECISION=f32]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}; prompt=${2:-128}; new=${3:-128}; precision=${4:-f32}
python3 -c "import torch, transformers, onnx" 2>/dev/null || python3 -m pip install --quiet torch transformers onnx
model=build/models/gpt2-small.onnx
[ -f "$model" ] || python3 bench/make_gpt2_small.py --out build/models
[ -x build/release/codebook ] || { cmake --preset release >/dev/null; cmake --build --preset release --target codebook; }
ids=$(python3 -c "import random; random.seed(0); print(','.join(str(random.randrange(50257)) for _ in range($prompt)))")

# Ours: the best of two runs (the first also warms the page cache for the weights).
ours=""
for run in 1 2; do
  line=$(./build/release/codebook generate "$model" --tokens "$ids" --max-new "$new" --threads "$threads" --ids --ignore-eos \
         --precision "$precision" \
         2>&1 >/dev/null | grep '^prompt:')
  ours="$ours$line"$'\n'
done

# ONNX Runtime with past key values (Optimum's export, in its own venv since
# Optimum pins an older transformers); skipped with a note when it cannot be set up.
ort="{}"
venv=build/venv-optimum
if [ ! -x $venv/bin/python ] || ! $venv/bin/python -c "import optimum.exporters.onnx" 2>/dev/null; then
  python3 -m venv --system-site-packages $venv && \
    $venv/bin/python -m pip install --quiet optimum-onnx "transformers<4.58" >/dev/null 2>&1 || true
fi
ort=$(python3 bench/generate_ort.py --export-python $venv/bin/python --threads "$threads" --prompt "$prompt" \
      --new "$new" 2>/dev/null | tail -1) || ort="{}"

python3 - "$threads" "$prompt" "$new" "$ours" "$ort" "$precision" <<'PY'
import json, re, sys, time
import numpy as np
import torch
from transformers import AutoModelForCausalLM, GPT2Config

threads, prompt, new, ours = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ort = json.loads(sys.argv[5] or "{}")
precision = sys.argv[6]
torch.set_num_threads(threads)
torch.manual_seed(0)  # the weights bench/make_gpt2_small.py exports
config = GPT2Config()
model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
import random
random.seed(0)
ids = torch.tensor([[random.randrange(50257) for _ in range(prompt)]])

def hf_generate(model=model):
    with torch.inference_mode():
        t0 = time.perf_counter()
        model(ids, use_cache=True)
        t1 = time.perf_counter()
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                             do_sample=False, use_cache=True, pad_token_id=0)
        t2 = time.perf_counter()
    assert out.shape[1] == prompt + new
    return (t1 - t0) * 1e3, (t2 - t1) * 1e3

hf_generate()  # warm-up
hf = min((hf_generate() for _ in range(2)), key=lambda r: r[1])
hf_prefill, hf_total = hf
hf_decode = (hf_total - hf_prefill) / (new - 1) if new > 1 else float("nan")
hf_bf16 = None
if precision == "bf16":
    model_bf16 = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval().to(torch.bfloat16)
    hf_generate(model_bf16)
    p, t = min((hf_generate(model_bf16) for _ in range(2)), key=lambda r: r[1])
    hf_bf16 = (p, t, (t - p) / (new - 1) if new > 1 else float("nan"))

best = None
for line in ours.strip().splitlines():
    m = re.search(r"prompt: \d+ tokens in ([\d.]+) ms; generated (\d+) tokens in ([\d.]+) ms", line)
    prefill_ms, produced, decode_total = float(m.group(1)), int(m.group(2)), float(m.group(3))
    r = (prefill_ms, prefill_ms + decode_total, decode_total / max(produced - 1, 1))
    best = r if best is None or r[1] < best[1] else best
our_prefill, our_total, our_decode = best

# Memory-bound estimate: fp32 weights every decode step reads (every matmul
# weight, the tied 768 x 50257 unembedding included; embeddings read one row).
d, L, V = config.n_embd, config.n_layer, config.vocab_size
weight_bytes = (2 if precision == "bf16" else 4) * (L * (d * 3 * d + d * d + 2 * d * 4 * d) + d * V)
a = np.ones(2**28 // 4 * 4, dtype=np.float32)  # 1 GiB
a.sum()
t0 = time.perf_counter()
for _ in range(3):
    a.sum()
bandwidth = 3 * a.nbytes / (time.perf_counter() - t0)
bound_ms = weight_bytes / bandwidth * 1e3

print(f"GPT-2 small, {prompt}-token prompt + {new} new tokens, batch 1, greedy, {threads} threads, ours in {precision}")
print(f"{'':22}{'prefill ms':>11}{'total ms':>10}{'ms/token':>10}{'tokens/s':>10}")
rows = [(f"codebook generate {precision}", best), ("transformers eager", (hf_prefill, hf_total, hf_decode))]
if hf_bf16:
    rows.append(("transformers bf16", hf_bf16))
if ort:
    rows.append(("onnxruntime + past", (ort["prefill_ms"], ort["total_ms"], ort["decode_ms_per_token"])))
for name, (p, t, dcd) in rows:
    print(f"{name:22}{p:11.1f}{t:10.1f}{dcd:10.2f}{new / t * 1e3:10.1f}")
print(f"codebook / transformers tokens/s = {hf_total / our_total:.2f}x (end to end), "
      f"decode step {hf_decode / our_decode:.2f}x (higher is better)")
if hf_bf16:
    print(f"codebook / transformers bf16 tokens/s = {hf_bf16[1] / our_total:.2f}x (end to end), "
          f"decode step {hf_bf16[2] / our_decode:.2f}x")
if ort:
    print(f"codebook / onnxruntime tokens/s = {ort['total_ms'] / our_total:.2f}x (end to end), "
          f"decode step {ort['decode_ms_per_token'] / our_decode:.2f}x (onnxruntime {ort['onnxruntime']})")
else:
    print("onnxruntime with past key values: skipped (Optimum's export could not be set up)")
print(f"memory bound: {weight_bytes / 2**20:.0f} MiB of {precision} weights per step / {bandwidth / 1e9:.1f} GB/s "
      f"(numpy single-thread read) = {bound_ms:.1f} ms/token; ours {our_decode / bound_ms:.2f}x of it")
print(f"torch {torch.__version__}, transformers {__import__('transformers').__version__}")
PY
