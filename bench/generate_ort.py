#!/usr/bin/env python3
"""ONNX Runtime generation with past key values, for bench/generate.sh.

Exports GPT-2 small (the random weights of bench/make_gpt2_small.py: seed 0)
with Optimum's exporter (task text-generation-with-past: past_key_values.L.key
/ .value inputs, present.L.* outputs) once, then times a greedy loop of NEW
tokens after a PROMPT-token prompt, batch 1, THREADS intra-op threads, and
prints one JSON line: prefill_ms, total_ms, decode_ms_per_token.

Optimum pins transformers < 4.58, so the export runs in a separate venv
(build/venv-optimum, made by bench/generate.sh with --system-site-packages).

    python3 bench/generate_ort.py --export-python build/venv-optimum/bin/python --threads 2
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def export(out_dir, python):
    if os.path.exists(os.path.join(out_dir, "model.onnx")):
        return
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(GPT2Config(), attn_implementation="eager").eval()
    hf_dir = out_dir + "-hf"
    model.save_pretrained(hf_dir)
    subprocess.run([python, "-m", "optimum.exporters.onnx", "--model", hf_dir, "--task",
                    "text-generation-with-past", out_dir], check=True, stdout=subprocess.DEVNULL)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--export-python", default=sys.executable)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt", type=int, default=128)
    p.add_argument("--new", type=int, default=128)
    p.add_argument("--out", default=os.path.join(REPO_ROOT, "build", "models", "gpt2-small-optimum"))
    a = p.parse_args()
    export(a.out, a.export_python)

    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(os.path.join(a.out, "model.onnx"), so, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    pasts = [n for n in names if n.startswith("past_key_values")]
    heads, head_dim = 12, 64
    random.seed(0)
    prompt = [random.randrange(50257) for _ in range(a.prompt)]

    def run():
        feeds = {n: np.zeros((1, heads, 0, head_dim), np.float32) for n in pasts}
        ids, total = prompt, len(prompt)
        times = []
        t0 = time.perf_counter()
        for step in range(a.new):
            feeds["input_ids"] = np.array([ids], np.int64)
            if "attention_mask" in names:
                feeds["attention_mask"] = np.ones((1, total), np.int64)
            if "position_ids" in names:
                feeds["position_ids"] = np.arange(total - len(ids), total, dtype=np.int64)[None]
            outs = sess.run(None, feeds)
            times.append(time.perf_counter())
            token = int(np.argmax(outs[0][0, -1]))
            for name, value in zip([o.name for o in sess.get_outputs()][1:], outs[1:]):
                feeds[name.replace("present", "past_key_values")] = value
            ids, total = [token], total + 1
        return (times[0] - t0) * 1e3, (times[-1] - t0) * 1e3

    run()  # warm-up
    prefill, total = min((run() for _ in range(2)), key=lambda r: r[1])
    print(json.dumps({"prefill_ms": prefill, "total_ms": total,
                      "decode_ms_per_token": (total - prefill) / max(a.new - 1, 1), "onnxruntime": ort.__version__}))


if __name__ == "__main__":
    main()
