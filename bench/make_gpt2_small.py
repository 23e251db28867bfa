#!/usr/bin/env python3
"""Exports GPT-2 small (124M parameters, random weights) to ONNX for benchmarks.

Run by hand, never in CI (needs torch, transformers and onnx); the ~500 MB
output is never committed. GPT2Config() defaults (12 layers, 768 wide, 12
heads, vocab 50257, 1024 positions), seed 0, eager attention, no KV cache;
exported with the TorchScript exporter (dynamo=False, opset 17) with dynamic
batch and sequence axes on input_ids / attention_mask / position_ids, and the
weights embedded in the .onnx file (it is well under protobuf's 2 GB limit).

    python3 bench/make_gpt2_small.py [--out build/models]   # -> DIR/gpt2-small.onnx
"""
import argparse
import os
import sys
import tempfile
import time
import warnings

import onnx
import torch
from transformers import AutoModelForCausalLM, GPT2Config

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO_ROOT, "scripts"))
from make_test_models import LogitsWithPositions  # noqa: E402  (the same export wrapper)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "build", "models"),
                        help="output folder (default: build/models)")
    parser.add_argument("--opset", type=int, default=17)
    args = parser.parse_args()

    torch.manual_seed(0)
    config = GPT2Config(use_cache=False)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    wrapper = LogitsWithPositions(model).eval()

    input_ids = torch.randint(0, config.vocab_size, (2, 16))
    attention_mask = torch.ones_like(input_ids)
    position_ids = torch.arange(16).expand(2, 16).contiguous()
    names = ["input_ids", "attention_mask", "position_ids"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names + ["logits"]}

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "gpt2-small.onnx")
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmp_path = os.path.join(tmp, "model.onnx")
        torch.onnx.export(wrapper, (input_ids, attention_mask, position_ids), tmp_path,
                          dynamo=False, opset_version=args.opset, input_names=names,
                          output_names=["logits"], dynamic_axes=axes)
        proto = onnx.load(tmp_path)  # also pulls in external data, if any
        onnx.save(proto, path, save_as_external_data=False)
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {path}: {os.path.getsize(path) / 2**20:.1f} MiB, {params / 1e6:.1f}M parameters, "
          f"{len(proto.graph.node)} nodes, {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
