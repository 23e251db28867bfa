#!/usr/bin/env python3
"""Times ONNX Runtime's forward pass on a causal-LM ONNX model: the baseline
that codebook's `bench` numbers are compared with. Run by hand, never in CI.

    python3 bench/ort_forward.py MODEL [--shape 1x128] [--runs 20] [--threads 1] [--warmup 3]

CPUExecutionProvider, intra_op_num_threads=T, sequential execution, all graph
optimisations on. Inputs are random token ids (seed 0), an all-ones attention
mask and 0..S-1 position ids, fed only where the model has such an input.
Warm-up runs are excluded. Prints one JSON line with median/min/max ms and
the median process CPU time per run (all threads; at one thread, the run's
work even on a busy machine).
"""
import argparse
import json
import statistics
import time

import numpy as np
import onnxruntime as ort


def parse_shape(text):
    try:
        batch, seq = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shape wants BATCHxSEQ, e.g. 1x128, not '{text}'")
    if batch < 1 or seq < 1:
        raise argparse.ArgumentTypeError(f"--shape sizes must be positive, not '{text}'")
    return batch, seq


def make_feeds(session, batch, seq):
    rng = np.random.default_rng(0)
    vocab = None
    for out in session.get_outputs():
        if out.name == "logits" and isinstance(out.shape[-1], int):
            vocab = out.shape[-1]
    candidates = {
        "input_ids": rng.integers(0, vocab or 1000, size=(batch, seq), dtype=np.int64),
        "attention_mask": np.ones((batch, seq), dtype=np.int64),
        "position_ids": np.broadcast_to(np.arange(seq, dtype=np.int64), (batch, seq)).copy(),
    }
    feeds = {}
    for inp in session.get_inputs():
        if inp.name not in candidates:
            raise SystemExit(f"don't know what to feed model input '{inp.name}' {inp.shape}")
        feeds[inp.name] = candidates[inp.name]
    return feeds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--shape", type=parse_shape, default=(1, 128), help="BATCHxSEQ")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    start = time.perf_counter()
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - start) * 1e3

    batch, seq = args.shape
    feeds = make_feeds(session, batch, seq)
    for _ in range(args.warmup):
        session.run(None, feeds)
    times, cpu_times = [], []
    for _ in range(args.runs):
        start, cpu_start = time.perf_counter(), time.process_time()
        session.run(None, feeds)
        times.append((time.perf_counter() - start) * 1e3)
        cpu_times.append((time.process_time() - cpu_start) * 1e3)
    print(json.dumps({
        "model": args.model, "engine": "onnxruntime " + ort.__version__,
        "shape": [batch, seq], "threads": args.threads, "runs": args.runs,
        "median_ms": round(statistics.median(times), 3), "min_ms": round(min(times), 3),
        "max_ms": round(max(times), 3), "median_cpu_ms": round(statistics.median(cpu_times), 3),
        "load_ms": round(load_ms, 1),
    }))


if __name__ == "__main__":
    main()
