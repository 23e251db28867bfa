"""Model.generate: KV-cache generation as `codebook generate` does it (docs/generation.md)."""
import json
import shutil
import threading

import numpy as np
import pytest

import codebook
from conftest import GPT2

TOKENS = [464, 268, 318, 257, 92]


def rerun_greedy(model, ids, n, **interventions):
    """The old way: re-run the whole prefix for each new token."""
    seq = list(ids)
    for _ in range(n):
        seq.append(int(np.argmax(model.run(seq, check=False, **interventions)["logits"][0, -1])))
    return seq[len(ids):]


def test_greedy_equals_rerunning_the_prefix(gpt2, compiled):
    g = gpt2.generate(TOKENS, max_new=8)
    assert g["prompt_ids"] == TOKENS and g["stop"] == "max-new" and "text" not in g
    assert g["ids"] == rerun_greedy(gpt2, TOKENS, 8)
    forced = compiled.generate(TOKENS, max_new=6, force="layer0.mlp:3,4")
    assert forced["ids"] == rerun_greedy(compiled, TOKENS, 6, force="layer0.mlp:3,4")
    assert forced["ids"] != compiled.generate(TOKENS, max_new=6)["ids"]
    assert compiled.generate(np.array(TOKENS), max_new=6, force="layer0.mlp:3,4") == forced  # cached generator


def test_sampling_is_seeded(gpt2):
    a = gpt2.generate(TOKENS, max_new=10, temperature=1.0, top_k=40, top_p=0.9, seed=3)
    assert a == gpt2.generate(TOKENS, max_new=10, temperature=1.0, top_k=40, top_p=0.9, seed=3)
    assert a["ids"] != gpt2.generate(TOKENS, max_new=10, temperature=1.0, top_k=40, top_p=0.9, seed=4)["ids"]


def test_a_batch_equals_each_prompt_alone(gpt2):
    prompts = [TOKENS, [7, 8], [1, 2, 3, 4, 5]]
    batch = gpt2.generate(prompts, max_new=6, temperature=1.0, seed=10)
    assert isinstance(batch, list) and len(batch) == 3
    for i, p in enumerate(prompts):
        assert batch[i] == gpt2.generate(p, max_new=6, temperature=1.0, seed=10 + i)
    two_d = gpt2.generate(np.array([TOKENS, [5, 4, 3, 2, 1]]), max_new=4)
    assert [r["prompt_ids"] for r in two_d] == [TOKENS, [5, 4, 3, 2, 1]]


def test_text_prompts_and_stops(tmp_path, gpt2_path, root):
    m = codebook.load(gpt2_path, tokenizer=str(root.parent / "shared" / "data" / "gpt2-bpe"))
    g = m.generate(prompt="a b c", max_new=8, temperature=1.0, seed=2)
    assert g["prompt_ids"] == m.tokenize("a b c") and isinstance(g["text"], str)
    ids = g["ids"]
    first = ids.index(ids[3])
    at_id = m.generate(prompt="a b c", max_new=8, temperature=1.0, seed=2, stop_at=ids[3])
    assert at_id["ids"] == ids[:first + 1] and at_id["stop"] == "stop-at %d" % ids[3]
    seq = m.generate(prompt="a b c", max_new=8, temperature=1.0, seed=2, stop_at=[(ids[5], ids[6])])
    assert len(seq["ids"]) <= 7 and seq["stop"].startswith("stop-at")
    text = m.token_text(ids[4])
    by_text = m.generate(prompt="a b c", max_new=8, temperature=1.0, seed=2, stop_at=text)
    assert text in by_text["text"] and len(by_text["ids"]) <= 5
    batch = m.generate(prompt=["a b c", "c d"], max_new=3)
    assert [len(r["ids"]) for r in batch] == [3, 3]


def test_the_models_eos_stops_unless_ignored(tmp_path):
    # The tiny GPT-2's Hugging Face folder, its config's eos_token_id set to a token it generates.
    free = codebook.load(str(GPT2 / "hf")).generate(TOKENS, max_new=12, temperature=1.0, seed=1, ignore_eos=True)
    eos = free["ids"][5]
    config = json.loads((GPT2 / "hf" / "config.json").read_text())
    config["eos_token_id"] = eos
    (tmp_path / "config.json").write_text(json.dumps(config))
    shutil.copy(GPT2 / "hf" / "model.safetensors", tmp_path / "model.safetensors")
    m = codebook.load(str(tmp_path))
    stopped = m.generate(TOKENS, max_new=12, temperature=1.0, seed=1)
    assert stopped["ids"] == free["ids"][:free["ids"].index(eos) + 1] and stopped["stop"] == "stop-at %d" % eos
    assert m.generate(TOKENS, max_new=12, temperature=1.0, seed=1, ignore_eos=True) == free


def test_the_context_ends_generation(gpt2):
    g = gpt2.generate(TOKENS, max_new=10, context=8)
    assert len(g["ids"]) == 3 and g["stop"] == "context"


def test_bad_arguments_are_codebook_errors(gpt2, compiled):
    for kwargs, message in [
        (dict(max_new=-1), "max_new"),
        (dict(temperature=-1.0), "temperature"),
        (dict(top_k=5), "give temperature > 0"),
        (dict(temperature=1.0, top_p=0.0), "top-p must be in"),
        (dict(stop_at=1.5), "stop_at"),
        (dict(stop_at="x"), "needs a tokenizer"),
        (dict(tap="layer0.mlp"), "unknown keyword argument 'tap'"),
    ]:
        with pytest.raises(codebook.Error, match=message):
            gpt2.generate(TOKENS, **kwargs)
    with pytest.raises(codebook.Error, match="out of range"):
        gpt2.generate([1, 999])
    with pytest.raises(codebook.Error, match="one of them"):
        gpt2.generate(TOKENS, prompt="x")
    with pytest.raises(codebook.Error, match="records no tokenizer"):
        gpt2.generate(prompt="x")
    with pytest.raises(codebook.Error, match="layer9"):
        compiled.generate(TOKENS, ablate="layer9.mlp:1")
    with pytest.raises(codebook.Error, match="context"):
        gpt2.generate([1] * 9, context=8)


def test_generate_releases_the_gil(gpt2):
    results = {}

    def work(i):
        results[i] = len(gpt2.generate(TOKENS, max_new=20)["ids"])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == {0: 20, 1: 20}
