#!/usr/bin/env python3
"""Runs lowered codebook models with ONNX Runtime and compares the outputs.

usage: ort_codebook_check.py DIR [DIR ...]

Each DIR is a case directory holding
    model.onnx             a standard-ONNX model (`codebook export --standard`)
    inputs/<name>.npy      one file per graph input
    expected/<name>.npy    expected outputs (the name as `codebook run -o`
                           writes it: characters outside [A-Za-z0-9._-] -> _)
or a directory of such case directories. Integer outputs (ids) must match
exactly, float outputs within 1e-4 (infinities must match exactly).

Exit code: 0 all cases pass, 1 a mismatch or an ORT error, 2 bad usage or
layout, 77 onnxruntime (or numpy) is not importable, which ctest reports as
skipped (SKIP_RETURN_CODE 77).
"""
import os
import re
import sys

try:
    import numpy as np
    import onnxruntime as ort
except ImportError as e:  # the CI image may lack them
    print(f"skipped: {e}")
    sys.exit(77)

FLOAT_TOLERANCE = 1e-4


def file_safe(name):
    s = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return s or "output"


def case_dirs(paths):
    found = []
    for p in paths:
        if os.path.isfile(os.path.join(p, "model.onnx")):
            found.append(p)
        elif os.path.isdir(p):
            found += sorted(os.path.join(p, d) for d in os.listdir(p)
                            if os.path.isfile(os.path.join(p, d, "model.onnx")))
    return found


def compare(name, want, got):
    """Returns a description of the mismatch, or None."""
    if want.shape != got.shape:
        return f"{name}: shape {got.shape}, expected {want.shape}"
    if np.issubdtype(want.dtype, np.integer) or want.dtype == np.bool_:
        bad = np.argwhere(want != got)
        if len(bad):
            i = tuple(int(v) for v in bad[0])
            return f"{name}: {len(bad)} of {want.size} differ, first at {i}: {got[i]} != {want[i]}"
        return None
    want = want.astype(np.float64)
    got = got.astype(np.float64)
    inf_w, inf_g = np.isinf(want), np.isinf(got)
    bad = (inf_w != inf_g) | (inf_w & (want != got))
    finite = ~inf_w & ~inf_g
    bad |= finite & ~(np.abs(want - got) <= FLOAT_TOLERANCE)  # NaN counts as bad
    if bad.any():
        i = tuple(int(v) for v in np.argwhere(bad)[0])
        err = np.max(np.abs(want - got)[finite]) if finite.any() else float("nan")
        return (f"{name}: {int(bad.sum())} of {want.size} differ, first at {i}: {got[i]} != {want[i]}"
                f" (max finite error {err:.3g})")
    return None


def check_case(d):
    model = os.path.join(d, "model.onnx")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for i in sess.get_inputs():
        f = os.path.join(d, "inputs", file_safe(i.name) + ".npy")
        if not os.path.isfile(f):
            return [f"missing input file {f} for graph input '{i.name}'"]
        feeds[i.name] = np.load(f)
    names = [o.name for o in sess.get_outputs()]
    outs = dict(zip(names, sess.run(names, feeds)))
    expected_dir = os.path.join(d, "expected")
    files = sorted(f for f in os.listdir(expected_dir) if f.endswith(".npy")) if os.path.isdir(expected_dir) else []
    if not files:
        return [f"no expected outputs in {expected_dir}"]
    by_file = {file_safe(n): n for n in names}
    problems = []
    for f in files:
        name = by_file.get(f[:-4])
        if name is None:
            problems.append(f"expected/{f} names no output of the model (outputs: {', '.join(names)})")
            continue
        p = compare(name, np.load(os.path.join(expected_dir, f)), outs[name])
        if p:
            problems.append(p)
    return problems


def main(argv):
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    dirs = case_dirs(argv[1:])
    if not dirs:
        print(f"error: no case directory (with model.onnx) in {' '.join(argv[1:])}", file=sys.stderr)
        return 2
    failed = 0
    for d in dirs:
        try:
            problems = check_case(d)
        except Exception as e:  # ORT rejects the model or fails to run it
            problems = [f"onnxruntime: {type(e).__name__}: {e}"]
        status = "ok" if not problems else "FAILED"
        print(f"{status:6} {d}")
        for p in problems:
            print(f"       {p}")
        failed += bool(problems)
    print(f"onnxruntime {ort.__version__}: {len(dirs) - failed} of {len(dirs)} cases pass")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
