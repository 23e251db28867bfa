#!/usr/bin/env python3
"""Makes the tiny causal-LM test models in tests/models/ and their reference outputs.

Run once by a developer (never in CI; it needs torch, transformers, onnx and
onnxruntime), and the outputs are committed. For each architecture it builds a
2-layer, 64-wide, 4-head model with random (seeded) weights, exports it to ONNX
and writes reference cases computed by ONNX Runtime; tests/test_models.cpp then
checks codebook against them. Everything is deterministic: the same library
versions give byte-identical files. See tests/models/README.md.

    python3 scripts/make_test_models.py [--out tests/models] [--only gpt2,gpt-neo]
                                        [--optimum-python PATH] [--no-dynamo]

Optional extra exports of the GPT-2 model: `gpt2-dynamo` (torch.onnx.export with
dynamo=True) and `gpt2-optimum` (Hugging Face Optimum's exporter, run with the
Python given by --optimum-python, e.g. a venv with `pip install optimum-onnx`,
which needs transformers<4.58). A failing extra export is reported and skipped.

Each of gpt2, gpt-neo, gpt-neox and gpt-neox-sequential also gets `hf/` with the
same model as `save_pretrained` writes it (config.json, model.safetensors), for
`codebook import-hf` (tests/test_hf_import.cpp checks it against the same cases).
"""
import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import transformers
from transformers import AutoModelForCausalLM, GPT2Config, GPTNeoConfig, GPTNeoXConfig

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = 500  # not a power of two; small so the committed files stay small
MAX_POSITIONS = 128
WEIGHT_STD = 0.1   # large enough that attention is far from uniform
NORM_JITTER = 0.1  # LayerNorm weight = 1 + N(0, jitter), bias = N(0, jitter)
BIAS_STD = 0.05

# Reference cases: (batch, sequence, left padding per row). One case pads a row
# of a batch-2 input; the 40-token case is longer than GPT-Neo's local window.
CASES = [
    (1, 7, [0]),
    (2, 16, [0, 5]),
    (1, 1, [0]),
    (3, 40, [0, 0, 11]),
]

COMMON = dict(vocab_size=VOCAB, use_cache=False, bos_token_id=0, eos_token_id=0)


def gpt2_config():
    return GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=MAX_POSITIONS, **COMMON)


def gpt_neo_config():
    # Layer 0 global, layer 1 local with a window shorter than the long cases.
    return GPTNeoConfig(num_layers=2, hidden_size=64, num_heads=4, intermediate_size=256,
                        max_position_embeddings=MAX_POSITIONS,
                        attention_types=[[["global", "local"], 1]], window_size=8, **COMMON)


def gpt_neox_config(parallel_residual):
    return GPTNeoXConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                         intermediate_size=256, max_position_embeddings=MAX_POSITIONS,
                         rotary_pct=0.25, use_parallel_residual=parallel_residual, **COMMON)


# name -> (config factory, graph inputs, opset). The input sets and opsets vary
# on purpose so the importer sees both in-graph and fed position ids, and both
# opset-17 and opset-18 forms.
MODELS = {
    "gpt2": (gpt2_config, ["input_ids", "attention_mask", "position_ids"], 17),
    "gpt-neo": (gpt_neo_config, ["input_ids", "attention_mask"], 18),
    "gpt-neox": (lambda: gpt_neox_config(True), ["input_ids", "attention_mask", "position_ids"], 17),
    "gpt-neox-sequential": (lambda: gpt_neox_config(False), ["input_ids", "attention_mask"], 18),
}


class LogitsWithPositions(torch.nn.Module):
    """Calls the HF model with explicit position ids and returns only the logits."""
    input_names = ["input_ids", "attention_mask", "position_ids"]

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids):
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          position_ids=position_ids, use_cache=False).logits


class LogitsOnly(torch.nn.Module):
    """Calls the HF model (positions computed in the graph) and returns the logits."""
    input_names = ["input_ids", "attention_mask"]

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


def randomize_(model, seed):
    """Deterministic, non-degenerate weights, independent of HF's init scheme."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module_name, module in sorted(model.named_modules()):
            for pname, p in sorted(module.named_parameters(recurse=False)):
                noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
                if isinstance(module, torch.nn.LayerNorm):
                    p.copy_((1.0 if pname == "weight" else 0.0) + NORM_JITTER * noise)
                elif p.dim() == 1:
                    p.copy_(BIAS_STD * noise)
                else:
                    p.copy_(WEIGHT_STD * noise)


def build_model(name, seed=0):
    config_fn, input_names, _ = MODELS[name]
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config_fn(), attn_implementation="eager")
    randomize_(model, seed)
    model.eval()
    wrapper_class = LogitsWithPositions if "position_ids" in input_names else LogitsOnly
    wrapper = wrapper_class(model).eval()
    return model, wrapper


def make_case_inputs(batch, seq, pads, seed):
    """input_ids, attention_mask (left padding zeros) and HF-style position ids."""
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(0, VOCAB, size=(batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), dtype=np.int64)
    for row, pad in enumerate(pads):
        mask[row, :pad] = 0
    position_ids = np.cumsum(mask, axis=-1) - 1
    position_ids[mask == 0] = 1  # what transformers' generate() feeds for padding
    return {"input_ids": input_ids, "attention_mask": mask, "position_ids": position_ids}


def dynamic_axes_for(input_names):
    axes = {n: {0: "batch", 1: "sequence"} for n in input_names}
    axes["logits"] = {0: "batch", 1: "sequence"}
    return axes


def save_embedded(model_proto, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    onnx.save(model_proto, path, save_as_external_data=False)
    stray = path + ".data"
    if os.path.exists(stray):
        os.remove(stray)


def export_torchscript(wrapper, input_names, opset, path):
    example = make_case_inputs(2, 16, [0, 5], seed=1234)
    args = tuple(torch.from_numpy(example[n]) for n in input_names)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmp_path = os.path.join(tmp, "model.onnx")
        torch.onnx.export(wrapper, args, tmp_path, dynamo=False, opset_version=opset,
                          input_names=input_names, output_names=["logits"],
                          dynamic_axes=dynamic_axes_for(input_names), do_constant_folding=True)
        save_embedded(onnx.load(tmp_path), path)
    wrapper.eval()  # the exporter restores the wrapper's training flag; keep eval


def export_dynamo(wrapper, input_names, path):
    example = make_case_inputs(2, 16, [0, 5], seed=1234)
    args = tuple(torch.from_numpy(example[n]) for n in input_names)
    batch = torch.export.Dim("batch", min=1, max=64)
    seq = torch.export.Dim("sequence", min=1, max=MAX_POSITIONS)
    dynamic_shapes = tuple({0: batch, 1: seq} for _ in input_names)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmp_path = os.path.join(tmp, "model.onnx")
        program = torch.onnx.export(wrapper, args, dynamo=True, dynamic_shapes=dynamic_shapes,
                                    input_names=input_names, output_names=["logits"])
        program.save(tmp_path)
        model = onnx.load(tmp_path)  # pulls in any external data
        save_embedded(model, path)
    wrapper.eval()


def export_optimum(model, python, path):
    """Runs Optimum's exporter on a save_pretrained copy, in a separate Python."""
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = os.path.join(tmp, "hf")
        out_dir = os.path.join(tmp, "onnx")
        model.save_pretrained(model_dir)
        cmd = [python, "-m", "optimum.exporters.onnx", "--model", model_dir,
               "--task", "text-generation", "--no-post-process", out_dir]
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if proc.returncode != 0:
            raise RuntimeError("optimum export failed:\n" + proc.stdout[-3000:] + proc.stderr[-3000:])
        save_embedded(onnx.load(os.path.join(out_dir, "model.onnx")), path)


def save_hf_checkpoint(model, folder):
    """Writes folder/hf/{config.json,model.safetensors} as save_pretrained makes them."""
    hf_dir = os.path.join(folder, "hf")
    os.makedirs(hf_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        for file in ("config.json", "model.safetensors"):
            shutil.copyfile(os.path.join(tmp, file), os.path.join(hf_dir, file))


def op_histogram(model_proto):
    counts = collections.Counter(
        (n.domain + "::" if n.domain not in ("", "ai.onnx") else "") + n.op_type
        for n in model_proto.graph.node)
    return dict(sorted(counts.items()))


def write_cases(folder, wrapper, onnx_path):
    """Writes case<N>/ with the inputs the ONNX graph takes, ORT and torch logits."""
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    graph_inputs = [i.name for i in session.get_inputs()]
    results = []
    for index, (batch, seq, pads) in enumerate(CASES):
        inputs = make_case_inputs(batch, seq, pads, seed=100 + index)
        feeds = {n: inputs[n] for n in graph_inputs}
        ort_logits = session.run(["logits"], feeds)[0]
        with torch.no_grad():
            torch_logits = wrapper(*(torch.from_numpy(inputs[n]) for n in wrapper.input_names)).numpy()
        assert ort_logits.dtype == np.float32 and np.isfinite(ort_logits).all()
        diff = np.abs(ort_logits - torch_logits)
        valid = inputs["attention_mask"].astype(bool)
        case_dir = os.path.join(folder, f"case{index}")
        os.makedirs(case_dir, exist_ok=True)
        for n in graph_inputs:
            np.save(os.path.join(case_dir, n + ".npy"), inputs[n])
        np.save(os.path.join(case_dir, "logits.npy"), ort_logits)
        np.save(os.path.join(case_dir, "logits_torch.npy"), torch_logits.astype(np.float32))
        results.append(dict(case=index, shape=[batch, seq], pads=pads,
                            max_abs_diff=float(diff.max()),
                            max_abs_diff_unpadded=float(diff[valid].max()),
                            logits_std=float(ort_logits.std())))
        print(f"  case{index} {batch}x{seq} pads={pads}: max|ORT-torch| = {diff.max():.3g} "
              f"(unpadded {diff[valid].max():.3g}), logits std {ort_logits.std():.3f}")
    return graph_inputs, results


def record(summary, name, folder, graph_inputs, results, exporter):
    path = os.path.join(folder, "model.onnx")
    proto = onnx.load(path)
    summary[name] = dict(exporter=exporter,
                         opset=max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
                         bytes=os.path.getsize(path), inputs=graph_inputs,
                         ops=op_histogram(proto), cases=results)
    print(f"  {name}: {summary[name]['bytes']} bytes, opset {summary[name]['opset']}, "
          f"ops {summary[name]['ops']}")


def default_optimum_python():
    probe = subprocess.run([sys.executable, "-c", "import optimum.exporters.onnx"],
                           capture_output=True)
    return sys.executable if probe.returncode == 0 else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "tests", "models"))
    parser.add_argument("--only", default="", help="comma-separated subset of model folders")
    parser.add_argument("--no-dynamo", action="store_true", help="skip the gpt2-dynamo export")
    parser.add_argument("--optimum-python", default=None,
                        help="Python with optimum-onnx installed (default: this one, if it has it)")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    known = set(MODELS) | {"gpt2-dynamo", "gpt2-optimum"}
    if only - known:
        parser.error(f"unknown model(s) {sorted(only - known)}; known: {sorted(known)}")
    wanted = lambda name: not only or name in only
    torch.set_num_threads(1)  # deterministic reductions

    summary = {}
    failures = {}
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"onnx {onnx.__version__}, onnxruntime {ort.__version__}")
    for name, (_, input_names, opset) in MODELS.items():
        extras = {"gpt2": ["gpt2-dynamo", "gpt2-optimum"]}.get(name, [])
        if not wanted(name) and not any(wanted(e) for e in extras):
            continue
        model, wrapper = build_model(name)
        if wanted(name):
            print(f"{name}: TorchScript exporter, opset {opset}")
            folder = os.path.join(args.out, name)
            shutil.rmtree(folder, ignore_errors=True)
            path = os.path.join(folder, "model.onnx")
            export_torchscript(wrapper, input_names, opset, path)
            graph_inputs, results = write_cases(folder, wrapper, path)
            record(summary, name, folder, graph_inputs, results, f"torch.onnx.export(dynamo=False, opset {opset})")
            save_hf_checkpoint(model, folder)
        if name != "gpt2":
            continue
        if wanted("gpt2-dynamo") and not args.no_dynamo:
            print("gpt2-dynamo: dynamo exporter")
            folder = os.path.join(args.out, "gpt2-dynamo")
            shutil.rmtree(folder, ignore_errors=True)
            try:
                export_dynamo(wrapper, input_names, os.path.join(folder, "model.onnx"))
                graph_inputs, results = write_cases(folder, wrapper, os.path.join(folder, "model.onnx"))
                record(summary, "gpt2-dynamo", folder, graph_inputs, results, "torch.onnx.export(dynamo=True)")
            except Exception as e:  # reported, not fatal: the extra export is optional
                shutil.rmtree(folder, ignore_errors=True)
                failures["gpt2-dynamo"] = f"{type(e).__name__}: {e}"[:2000]
                print("  FAILED:", failures["gpt2-dynamo"])
        if wanted("gpt2-optimum"):
            python = args.optimum_python or default_optimum_python()
            folder = os.path.join(args.out, "gpt2-optimum")
            if python is None:
                failures["gpt2-optimum"] = "skipped: no Python with optimum-onnx (see --optimum-python)"
                print("gpt2-optimum:", failures["gpt2-optimum"])
                continue
            print(f"gpt2-optimum: Optimum exporter via {python}")
            shutil.rmtree(folder, ignore_errors=True)
            try:
                export_optimum(model, python, os.path.join(folder, "model.onnx"))
                graph_inputs, results = write_cases(folder, wrapper, os.path.join(folder, "model.onnx"))
                record(summary, "gpt2-optimum", folder, graph_inputs, results, "optimum.exporters.onnx")
            except Exception as e:
                shutil.rmtree(folder, ignore_errors=True)
                failures["gpt2-optimum"] = f"{type(e).__name__}: {e}"[:2000]
                print("  FAILED:", failures["gpt2-optimum"])

    report = dict(versions=dict(torch=torch.__version__, transformers=transformers.__version__,
                                onnx=onnx.__version__, onnxruntime=ort.__version__),
                  models=summary, failures=failures)
    if not only:
        with open(os.path.join(args.out, "summary.json"), "w") as f:
            json.dump(report, f, indent=1, sort_keys=True)
            f.write("\n")
    print(json.dumps(failures) if failures else "all exports succeeded")


if __name__ == "__main__":
    main()
