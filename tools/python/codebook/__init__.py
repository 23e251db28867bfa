"""codebook: codebook features in Python (docs/python.md).

The command line's workflow with Python objects::

    import codebook
    model = codebook.load("tests/models/gpt2/model.onnx")
    cb = codebook.compile(model, at="mlp", codes=100, k=4)
    out = cb.run([464, 3797, 3332], tap=["layer0.mlp"])      # {output name: numpy array}
    shown = cb.show_codes([464, 3797, 3332], sites="layer0.mlp")
    cb.run([464, 3797, 3332], ablate="layer0.mlp:12,40@0,1")
    codebook.train("configs/test_fsm.yaml", output="runs/x", progress=print)
    codebook.Cache("caches/tokfsm").search("(7)")

Interventions and sites are written as the CLI writes them
(docs/interventions.md); errors are codebook.Error with the CLI's messages.
Arrays returned by Model.run share the runtime's memory (no copy); numpy
arrays hand it on to torch without a copy too (torch.from_dlpack).
"""

import os

# oneDNN's OpenMP threads sleep while idle instead of spinning for
# milliseconds after each call, which would take cores from our thread pool
# (docs/performance.md#threads). libgomp reads this once, when it loads with
# the extension below; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

from ._codebook import Cache, Error, Model, compile, load, train, train_config  # noqa: E402

__all__ = ["Cache", "Error", "Model", "compile", "load", "train", "train_config"]
