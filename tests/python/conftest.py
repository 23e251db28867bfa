"""Fixtures of the Python package's tests (docs/python.md).

Run against the build tree (ctest: python_tests) with
PYTHONPATH=build/release/python, or against an installed package (pip install .).
A tiny TokFSM run is trained once per session, and a code cache of it built
with the `codebook` tool (CODEBOOK_BIN, else build/release/codebook; the cache
tests skip without it).
"""
import os
import pathlib
import shutil
import subprocess

import pytest

import codebook

ROOT = pathlib.Path(__file__).resolve().parents[2]
GPT2 = ROOT / "tests" / "models" / "gpt2"

# configs/test_fsm.yaml made smaller still: trains in a second or two.
TINY_OVERRIDES = [
    "training_args.max_steps=6",
    "training_args.logging_steps=2",
    "training_args.eval_steps=6",
    "training_args.save_steps=3",
    "fsm_args.generate_samples=0",
]


@pytest.fixture(scope="session")
def root():
    return ROOT


@pytest.fixture(scope="session")
def gpt2_path():
    return str(GPT2 / "model.onnx")


@pytest.fixture(scope="session")
def gpt2(gpt2_path):
    return codebook.load(gpt2_path)


@pytest.fixture(scope="session")
def compiled(gpt2):
    """The tiny GPT-2 with codebooks at every MLP and every attention head, k = 2."""
    return codebook.compile(gpt2, at=["mlp", "attn_preproj"], codes=[64, 32], k=2, groups=[1, "heads"])


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    result = codebook.train(str(ROOT / "configs" / "test_fsm.yaml"), output=out, overrides=TINY_OVERRIDES,
                            quiet=True)
    assert result["model"] is not None
    return out


def codebook_bin():
    path = os.environ.get("CODEBOOK_BIN") or str(ROOT / "build" / "release" / "codebook")
    return path if os.path.exists(path) else shutil.which("codebook")


@pytest.fixture(scope="session")
def tiny_cache(tiny_run, tmp_path_factory):
    tool = codebook_bin()
    if not tool:
        pytest.skip("the codebook tool is not built (set CODEBOOK_BIN)")
    out = tmp_path_factory.mktemp("cache") / "tiny"
    subprocess.run([tool, "cache", "build", str(tiny_run), "-o", str(out), "--data", "tokfsm", "--max-tokens",
                    "2048"], check=True, capture_output=True)
    return out
