#!/usr/bin/env python3
"""Makes the decomposed-LayerNorm test models in tests/models/decomposed_ln/.

Exporters at opsets below 17 (TorchScript and Optimum at opset 14, the
default of many tools) have no LayerNormalization op and spell each LayerNorm
as ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add. This script rewrites
the committed tiny models (tests/models/{gpt2,gpt-neo,gpt-neox}/model.onnx)
into those forms, without torch: each LayerNormalization node becomes the
nodes below and the opset import is lowered. passes/fuse_layer_norm.h must
fuse them back (tests/test_fuse_layer_norm.cpp).

  torch14  (every model, opset 14), as torch.onnx's TorchScript exporter
           writes it (symbolic_opset9 native_layer_norm), Constant nodes
           for 2 and eps:
             mean = ReduceMean(x) {axes = [-1]}; d = Sub(x, mean)
             var = ReduceMean(Pow(d, 2)) {axes = [-1]}
             y = Add(Mul(Div(d, Sqrt(Add(var, eps))), weight), bias)
  mul13    (gpt2, opset 13): d * d instead of Pow, the affine operands in
           the other order: y = Add(bias, Mul(weight, Div(d, Sqrt(Add(eps, var)))))

Every other node is kept as it is (but for Reshape's allowzero = 0, new in
opset 14 and the old behaviour, dropped at opset 13); the models' ops are all
valid at opsets 13 and 14 (onnx.checker checks the result at the lowered opset). When
onnxruntime is installed, each rewritten model must give the original's
logits on every tests/models/<model>/case<N>/ within 1e-5.

    python3 scripts/make_decomposed_ln_models.py [--out tests/models/decomposed_ln]

Needs numpy and onnx only (onnxruntime optional). Deterministic.
"""
import argparse
import glob
import os
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(REPO_ROOT, "tests", "models")
TOLERANCE = 1e-5

# (output file, source model folder, form, opset)
FIXTURES = [
    ("gpt2-opset14.onnx", "gpt2", "torch14", 14),
    ("gpt-neo-opset14.onnx", "gpt-neo", "torch14", 14),
    ("gpt-neox-opset14.onnx", "gpt-neox", "torch14", 14),
    ("gpt2-opset13-mul.onnx", "gpt2", "mul13", 13),
]


def scalar_constant(name, value):
    """A Constant node holding an f32 scalar, as torch.onnx writes them."""
    t = numpy_helper.from_array(np.array(value, dtype=np.float32), name=name)
    return helper.make_node("Constant", [], [name], name=name, value=t)


def decompose(ln, form):
    """The nodes replacing LayerNormalization node `ln` (axis -1)."""
    axis = next((a.i for a in ln.attribute if a.name == "axis"), -1)
    assert axis == -1, f"{ln.name}: axis {axis}, only -1 is rewritten"
    eps = next((a.f for a in ln.attribute if a.name == "epsilon"), 1e-5)
    x, weight, bias = ln.input[0], ln.input[1], ln.input[2]
    y = ln.output[0]
    scope = ln.name[: ln.name.rfind("/") + 1]  # "/model/transformer/h.0/ln_1/"

    def name(op):
        return scope + op

    def out(op):
        return scope + op + "_output_0"

    nodes = [
        helper.make_node("ReduceMean", [x], [out("ReduceMean")], name=name("ReduceMean"), axes=[-1]),
        helper.make_node("Sub", [x, out("ReduceMean")], [out("Sub")], name=name("Sub")),
    ]
    d = out("Sub")
    if form == "torch14":
        nodes += [
            scalar_constant(out("Constant"), 2.0),
            helper.make_node("Pow", [d, out("Constant")], [out("Pow")], name=name("Pow")),
            helper.make_node("ReduceMean", [out("Pow")], [out("ReduceMean_1")], name=name("ReduceMean_1"), axes=[-1]),
            scalar_constant(out("Constant_1"), eps),
            helper.make_node("Add", [out("ReduceMean_1"), out("Constant_1")], [out("Add")], name=name("Add")),
            helper.make_node("Sqrt", [out("Add")], [out("Sqrt")], name=name("Sqrt")),
            helper.make_node("Div", [d, out("Sqrt")], [out("Div")], name=name("Div")),
            helper.make_node("Mul", [out("Div"), weight], [out("Mul")], name=name("Mul")),
            helper.make_node("Add", [out("Mul"), bias], [y], name=name("Add_1")),
        ]
    elif form == "mul13":
        nodes += [
            helper.make_node("Mul", [d, d], [out("Mul")], name=name("Mul")),
            helper.make_node("ReduceMean", [out("Mul")], [out("ReduceMean_1")], name=name("ReduceMean_1"), axes=[-1]),
            scalar_constant(out("Constant"), eps),
            helper.make_node("Add", [out("Constant"), out("ReduceMean_1")], [out("Add")], name=name("Add")),
            helper.make_node("Sqrt", [out("Add")], [out("Sqrt")], name=name("Sqrt")),
            helper.make_node("Div", [d, out("Sqrt")], [out("Div")], name=name("Div")),
            helper.make_node("Mul", [weight, out("Div")], [out("Mul_1")], name=name("Mul_1")),
            helper.make_node("Add", [bias, out("Mul_1")], [y], name=name("Add_1")),
        ]
    else:
        raise ValueError(form)
    return nodes


def drop_allowzero(graph):
    """Reshape's allowzero attribute is new in opset 14; allowzero = 0 is
    the old behaviour, so below 14 it is dropped (1 cannot be)."""
    for n in graph.node:
        if n.op_type != "Reshape":
            continue
        for a in list(n.attribute):
            if a.name == "allowzero":
                assert a.i == 0, f"{n.name}: allowzero = 1 has no opset-13 form"
                n.attribute.remove(a)


def rewrite(model, form, opset):
    graph = model.graph
    new_nodes, count = [], 0
    for n in graph.node:
        if n.op_type == "LayerNormalization" and n.domain in ("", "ai.onnx"):
            new_nodes += decompose(n, form)
            count += 1
        else:
            new_nodes.append(n)
    assert count > 0, "no LayerNormalization node"
    del graph.node[:]
    graph.node.extend(new_nodes)
    if opset < 14:
        drop_allowzero(graph)
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = opset
    onnx.checker.check_model(model, full_check=True)
    return count


def check_with_ort(original_path, rewritten_bytes, folder):
    try:
        import onnxruntime as ort
    except ImportError:
        print("  onnxruntime not installed: logits not compared")
        return
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = ort.InferenceSession(original_path, opts, providers=["CPUExecutionProvider"])
    new = ort.InferenceSession(rewritten_bytes, opts, providers=["CPUExecutionProvider"])
    wanted = [i.name for i in ref.get_inputs()]
    for case in sorted(glob.glob(os.path.join(MODELS, folder, "case*"))):
        feed = {name: np.load(os.path.join(case, name + ".npy")) for name in wanted}
        a = ref.run(None, feed)[0]
        b = new.run(None, feed)[0]
        diff = float(np.max(np.abs(a - b)))
        print(f"  {os.path.basename(case)}: max |rewritten - original| = {diff:.2e}")
        if not diff <= TOLERANCE:
            sys.exit(f"error: {folder} {os.path.basename(case)}: the rewritten model differs by {diff}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(MODELS, "decomposed_ln"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for file, folder, form, opset in FIXTURES:
        src = os.path.join(MODELS, folder, "model.onnx")
        model = onnx.load(src)
        count = rewrite(model, form, opset)
        data = model.SerializeToString()
        print(f"{file}: {folder}, {count} LayerNorms as {form}, opset {opset}")
        check_with_ort(src, data, folder)
        with open(os.path.join(args.out, file), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
