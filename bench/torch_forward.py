#!/usr/bin/env python3
"""Times PyTorch's forward pass of GPT-2 small (Hugging Face transformers,
eager, random weights: timing does not depend on them) in fp32 and under
bf16 autocast: the PyTorch peers of `bench/compare_gpt2_small.sh`. Run by
hand, never in CI (torch is gigabytes).

    python3 bench/torch_forward.py [--shape 1x128] [--runs 10] [--threads 2] [--warmup 2]

Full logits, torch.inference_mode(), the thread count set with
torch.set_num_threads. Prints one JSON line: for "fp32" and "bf16_autocast",
median/min/max ms and the median process CPU time per run.
"""
import argparse
import json
import statistics
import time

import torch
from transformers import AutoModelForCausalLM, GPT2Config


def timed(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(runs):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return {"median_ms": statistics.median(wall), "min_ms": min(wall), "max_ms": max(wall),
            "median_cpu_ms": statistics.median(cpu)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="1x128")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    batch, seq = (int(x) for x in args.shape.lower().split("x"))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(GPT2Config(), attn_implementation="eager").eval()
    ids = torch.randint(0, 50257, (batch, seq))

    def fp32():
        with torch.inference_mode():
            model(ids, use_cache=False)

    def bf16():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            model(ids, use_cache=False)

    out = {"torch": torch.__version__, "threads": args.threads, "shape": args.shape,
           "fp32": timed(fp32, args.runs, args.warmup), "bf16_autocast": timed(bf16, args.runs, args.warmup)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
