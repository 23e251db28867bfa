#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz harnesses into tests/fuzz/corpus/NAME/.

Run once from the repository root (python3 tests/fuzz/make_seed_corpus.py);
the output is committed. Seeds are real, valid inputs: the repository's
configs and test-model files, the ONNX backend node-test models beside the
repository (../shared/onnx-node-tests), and small .npy / .safetensors files
in the formats the readers accept (and a few they must refuse). Regression
inputs that the fuzzers found are committed beside them as regress-*.
"""
import glob
import json
import os
import shutil
import struct

import numpy as np

ROOT = os.getcwd()
OUT = os.path.join(ROOT, "tests/fuzz/corpus")


def put(name, file, data):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, file), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def copy(name, file, src):
    with open(src, "rb") as f:
        put(name, file, f.read())


def npy_bytes(a, version=None):
    import io
    buf = io.BytesIO()
    if version is None:
        np.save(buf, a)
    else:
        np.lib.format.write_array(buf, a, version=version)
    return buf.getvalue()


def safetensors_bytes(tensors, metadata=None):
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def main():
    # JSON: the test models' Hugging Face configs and a few hand-written values.
    for cfg in sorted(glob.glob("tests/models/*/hf/config.json")):
        copy("json", os.path.basename(os.path.dirname(os.path.dirname(cfg))) + "-config.json", cfg)
    put("json", "scalars.json", '[null, true, false, 0, -1, 9223372036854775807, 1.5e-300, -0.0, 1E+2, ""]')
    put("json", "strings.json", r'{"a": "\u00e9\ud83d\ude00\n\t\"\\\/", "b": "\u0000", "k\u00e9y": {"nested": [[[]]], "o": {}}}')

    # YAML: the shipped configs, and override lines ("a.b=value") for apply_override.
    for y in sorted(glob.glob("configs/*.yaml")):
        copy("yaml", os.path.basename(y), y)
    put("yaml", "overrides.txt",
        "training_args.learning_rate=1e-3\ncodebook_args.codebook_at=[mlp, attn]\n"
        "model_config_args={n_layer: 2, n_embd: 16}\nfsm_args.fsm_path='a ''quoted'' path'\n"
        "a.b.c=\"x\\ty\"\nflag=true\nnothing=~\n")
    put("yaml", "flow-and-blocks.yaml",
        "a:\n  - 1\n  - [2, {x: 3, 'y': \"z\"}]\n  - key: v\n    other: .5\nb: {c: [d, e], f: -2}\n# comment\n"
        "- \n")

    # Training config: the shipped configs, one with overrides after a NUL byte.
    for y in sorted(glob.glob("configs/*.yaml")):
        copy("train_config", os.path.basename(y), y)
    with open("configs/test_fsm.yaml") as f:
        put("train_config", "test_fsm-with-overrides.yaml",
            f.read() + "\0codebook_args.codebook_at=[attn_preproj, mlp]\ntraining_args.max_steps=7\n"
            "dataset_args.kind=text\ndataset_args.train_files=[a.txt]\ndataset_args.tokenizer=gpt2\n")

    # .npy: the test models' inputs, and every dtype and header version we read.
    for src in sorted(glob.glob("tests/models/gpt2/case0/*_ids.npy")):
        copy("npy", "gpt2-case0-" + os.path.basename(src), src)
    arrays = {
        "f32-2x3.npy": np.arange(6, dtype="<f4").reshape(2, 3),
        "f16.npy": np.array([1.5, -2, 65504], dtype="<f2"),
        "f64-scalar.npy": np.array(3.25, dtype="<f8"),
        "i64-empty.npy": np.zeros((0, 4), dtype="<i8"),
        "i32.npy": np.array([[-1, 2], [3, 4]], dtype="<i4"),
        "i8.npy": np.array([-128, 127], dtype="i1"),
        "u8.npy": np.array([0, 255], dtype="u1"),
        "bool.npy": np.array([True, False, True]),
        "big-endian.npy": np.array([1, 2], dtype=">i4"),   # refused
        "fortran.npy": np.asfortranarray(np.arange(6, dtype="<f4").reshape(2, 3)),  # refused
    }
    for file, a in arrays.items():
        put("npy", file, npy_bytes(a))
    put("npy", "v2-header.npy", npy_bytes(np.arange(3, dtype="<i8"), version=(2, 0)))
    put("npy", "v3-header.npy", npy_bytes(np.arange(3, dtype="<f4"), version=(3, 0)))

    # safetensors: small files of each dtype, metadata, an empty one.
    f32 = np.arange(6, dtype="<f4").tobytes()
    put("safetensors", "f32.safetensors", safetensors_bytes({"w": ("F32", [2, 3], f32)}))
    put("safetensors", "mixed.safetensors", safetensors_bytes({
        "a.f16": ("F16", [3], np.array([1, 2, 3], dtype="<f2").tobytes()),
        "b.bf16": ("BF16", [2], b"\x80\x3f\x00\x40"),
        "c.f64": ("F64", [1], np.array([2.5], dtype="<f8").tobytes()),
        "d.i64": ("I64", [2, 1], np.array([7, -7], dtype="<i8").tobytes()),
        "e.bool": ("BOOL", [2], b"\x01\x00"),
        "f.u8": ("U8", [], b"\x05"),
        "g.f8": ("F8_E4M3", [2], b"\x38\x40"),
        "h.i32": ("I32", [0], b""),
    }, metadata={"format": "pt", "note": "seed"}))
    put("safetensors", "empty.safetensors", safetensors_bytes({}))

    # BPE tokenizer: text of every kind the pre-tokenizer splits, and bytes that are not UTF-8.
    texts = {
        "english.txt": "Hello world! It's a test, isn't it? We'll see: 42 apples, 3.14 pies.\n",
        "special.txt": "first<|endoftext|>second <|endoftext|> third<|endoftext|",
        "unicode.txt": "caf\u00e9 \u65e5\u672c\u8a9e \ud55c\uad6d\uc5b4 \U0001F600\U0001F44D\u200d \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u00bd\u2153 \u0661\u0662",
        "whitespace.txt": "  leading\t\ttabs\r\n\n   \u00a0\u3000trailing   ",
        "code.txt": "def f(x):\n    return x ** 2  # squares\n\nprint(f(3)); s = 'I'M'\n",
    }
    for file, t in texts.items():
        put("bpe_tokenizer", file, t.encode("utf-8"))
    put("bpe_tokenizer", "invalid-utf8.bin", b"ok \xff\xfe \xc3\x28 \xe2\x82 \xed\xa0\x80 end")

    # ONNX: the backend node-test models (one per op and variant).
    for model in sorted(glob.glob(os.path.join(ROOT, "../shared/onnx-node-tests/*/model.onnx"))):
        copy("onnx", os.path.basename(os.path.dirname(model)) + ".onnx", model)


if __name__ == "__main__":
    main()
