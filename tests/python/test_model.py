"""codebook.load, codebook.compile and Model: run, show_codes, sites, codebooks."""
import threading
import warnings

import numpy as np
import pytest

import codebook
from conftest import GPT2

TOKENS = [464, 268, 318, 257, 92, 17]


def test_load_onnx_and_hf_folder_give_the_same_logits(gpt2):
    hf = codebook.load(str(GPT2 / "hf"))
    a = gpt2.run(TOKENS)["logits"]
    b = hf.run(TOKENS)["logits"]
    assert a.shape == (1, len(TOKENS), 500)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_run_matches_the_reference_outputs(gpt2):
    case = GPT2 / "case0"
    ids = np.load(case / "input_ids.npy")
    out = gpt2.run(ids, inputs={"attention_mask": np.load(case / "attention_mask.npy")})
    np.testing.assert_allclose(out["logits"], np.load(case / "logits.npy"), atol=1e-4)


def test_load_errors_are_codebook_errors():
    with pytest.raises(codebook.Error):
        codebook.load("/no/such/model.onnx")
    assert issubclass(codebook.Error, RuntimeError)


def test_sites_and_codebooks(gpt2, compiled):
    sites = gpt2.sites()
    names = [s["site"] for s in sites]
    assert "layer0.mlp" in names and "layer1.attn_preproj" in names
    assert all(not s["codebook"] for s in sites)
    assert gpt2.codebooks() == []
    with_cb = {s["site"] for s in compiled.sites() if s["codebook"]}
    assert with_cb == {"layer0.mlp", "layer1.mlp", "layer0.attn_preproj", "layer1.attn_preproj"}
    cbs = {c["site"]: c for c in compiled.codebooks()}
    assert cbs["layer0.mlp"]["num_codes"] == 64 and cbs["layer0.mlp"]["k"] == 2
    assert cbs["layer1.attn_preproj"]["groups"] == 4 and cbs["layer1.attn_preproj"]["num_codes"] == 32
    assert compiled.num_layers == 2


def test_compile_writes_the_output_and_cleans_up_a_temporary_file(gpt2, tmp_path):
    out = tmp_path / "cb.onnx"
    m = codebook.compile(gpt2, at="mlp", codes=16, k=1, layers=[0], output=str(out))
    assert out.exists() and not m.temporary and m.path == str(out)
    assert [c["site"] for c in m.codebooks()] == ["layer0.mlp"]
    t = codebook.compile(gpt2, at="mlp", codes=16, k=1)
    path = t.path
    assert t.temporary
    import os
    assert os.path.exists(path)
    del t
    import gc
    gc.collect()
    assert not os.path.exists(path)


def test_compile_bad_options_give_the_cli_messages(gpt2):
    with pytest.raises(codebook.Error, match="placement"):
        codebook.compile(gpt2, at="nowhere")
    with pytest.raises(codebook.Error):
        codebook.compile(gpt2, codes=0)
    with pytest.raises(codebook.Error):
        codebook.compile(gpt2, layers=[7])


def test_outputs_share_the_runtime_memory(compiled):
    out = compiled.run(TOKENS, tap="layer0.mlp")
    logits = out["logits"]
    assert not logits.flags.owndata  # a view of the runtime's buffer, not a copy
    again = np.from_dlpack(logits)  # DLPack: what torch.from_dlpack uses
    assert np.shares_memory(again, logits)
    # The buffer outlives the next run (it is not reused while the array holds it).
    before = logits.copy()
    compiled.run([1, 2, 3], tap="layer0.mlp")
    np.testing.assert_array_equal(logits, before)


def test_taps_and_output_selection(compiled):
    out = compiled.run(TOKENS, tap="layer0.mlp")
    assert {"layer0.mlp.ids", "layer0.mlp.input", "layer0.mlp.scores", "layer0.mlp.output"} <= set(out)
    ids = out["layer0.mlp.ids"]
    assert ids.shape == (1, len(TOKENS), 1, 2) and ids.dtype == np.int64
    assert ((ids >= 0) & (ids < 64)).all()
    only = compiled.run(TOKENS, tap="layer0.mlp", outputs=["layer0.mlp.ids"])
    assert list(only) == ["layer0.mlp.ids"]
    np.testing.assert_array_equal(only["layer0.mlp.ids"], ids)
    with pytest.raises(codebook.Error, match="no output 'nope'"):
        compiled.run(TOKENS, outputs=["nope"])


def test_batches_run(compiled):
    ids = np.array([TOKENS, TOKENS[::-1]])
    out = compiled.run(ids)
    assert out["logits"].shape == (2, len(TOKENS), 500)
    single = compiled.run(TOKENS[::-1])["logits"]
    np.testing.assert_allclose(out["logits"][1], single[0], atol=1e-5)


def test_ablate_changes_the_codes(compiled):
    clean = compiled.run(TOKENS, tap="layer0.mlp")["layer0.mlp.ids"]
    code = int(clean[0, 2, 0, 0])
    out = compiled.run(TOKENS, tap="layer0.mlp", ablate=f"layer0.mlp:{code}@2")["layer0.mlp.ids"]
    assert code not in out[0, 2, 0].tolist()
    np.testing.assert_array_equal(out[0, :2], clean[0, :2])


def test_force_puts_codes_in(compiled):
    out = compiled.run(TOKENS, tap="layer0.mlp", force=["layer0.mlp:5,6@*"])["layer0.mlp.ids"]
    assert (np.sort(out[0, :, 0], axis=-1) == [5, 6]).all()
    group = compiled.run(TOKENS, tap="layer0.attn_preproj", force="layer0.attn_preproj[3]:7@-1#0")
    assert group["layer0.attn_preproj.ids"][0, -1, 3, 0] == 7


def test_force_state_of(compiled):
    other = [17, 92, 257]
    want = compiled.run(other, tap="layer0.mlp")["layer0.mlp.ids"][0, -1, 0]
    got = compiled.run(TOKENS, tap="layer0.mlp", force="layer0.mlp:state-of:17,92,257@-1")["layer0.mlp.ids"]
    assert sorted(got[0, -1, 0].tolist()) == sorted(want.tolist())


def test_bad_interventions_give_the_cli_messages(compiled, gpt2):
    with pytest.raises(codebook.Error, match="bad code 'x' in 'layer0.mlp:x'"):
        compiled.run(TOKENS, ablate="layer0.mlp:x")
    with pytest.raises(codebook.Error, match="code"):
        compiled.run(TOKENS, force="layer0.mlp:999")
    with pytest.raises(codebook.Error):
        gpt2.run(TOKENS, ablate="layer0.mlp:1")  # no codebook there
    with pytest.raises(codebook.Error, match="unknown keyword argument 'ablat'"):
        compiled.run(TOKENS, ablat="layer0.mlp:1")
    with pytest.raises(codebook.Error, match="--ablate-mode 'maybe': expected skip or zero"):
        compiled.run(TOKENS, ablate="layer0.mlp:1", ablate_mode="maybe")


def test_bad_inputs(gpt2):
    with pytest.raises(codebook.Error, match="give the model's inputs"):
        gpt2.run()
    with pytest.raises(codebook.Error, match="integer token ids"):
        gpt2.run([1.5, 2.0])
    with pytest.raises(codebook.Error):
        gpt2.run([1, 2, 100000])  # past the vocabulary
    with pytest.raises(codebook.Error, match="records no tokenizer"):
        gpt2.run(prompt="hello")
    with pytest.raises(codebook.Error, match="not both"):
        gpt2.run([1], prompt="x")


def test_ineffective_interventions_warn(compiled):
    clean = compiled.run(TOKENS, tap="layer0.mlp")["layer0.mlp.ids"]
    unused = next(c for c in range(64) if c not in clean[0, 0, 0].tolist())
    with pytest.warns(UserWarning, match="is not selected at position 0"):
        compiled.run(TOKENS, ablate=f"layer0.mlp:{unused}@0")
    with pytest.warns(UserWarning, match="past the sequence"):
        compiled.run(TOKENS, ablate="layer0.mlp:1@50")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compiled.run(TOKENS, ablate=f"layer0.mlp:{unused}@0", check=False)


def test_show_codes(compiled):
    shown = compiled.show_codes(TOKENS, sites="layer0.mlp")
    assert shown["tokens"] == TOKENS
    assert shown["token_texts"] is None  # the test model records no tokenizer
    codes = shown["codes"]["layer0.mlp"]
    assert codes.shape == (len(TOKENS), 1, 2)
    np.testing.assert_array_equal(codes, compiled.run(TOKENS, tap="layer0.mlp")["layer0.mlp.ids"][0])
    nxt = shown["next"]
    assert len(nxt) == 5 and abs(sum(t["p"] for t in nxt)) <= 1.0
    assert nxt[0]["p"] >= nxt[-1]["p"]
    member = compiled.show_codes(TOKENS, sites="layer1.attn_preproj[2]")["codes"]["layer1.attn_preproj[2]"]
    assert member.shape == (len(TOKENS), 1, 2)
    every = compiled.show_codes(TOKENS)["codes"]
    assert set(every) == {"layer0.attn_preproj", "layer0.mlp", "layer1.attn_preproj", "layer1.mlp"}


def test_show_codes_scores_and_compare(compiled):
    clean = compiled.show_codes(TOKENS, sites="layer0.mlp")["codes"]["layer0.mlp"]
    used = sorted(set(clean.ravel().tolist()))
    shown = compiled.show_codes(TOKENS, sites=["layer0.mlp"], scores=True, compare=True,
                                ablate="layer0.mlp:" + ",".join(map(str, used)))
    s = shown["scores"]["layer0.mlp"]
    c = shown["cosines"]["layer0.mlp"]
    assert s.shape == c.shape == (len(TOKENS), 1, 2)
    assert (s[:, 0, 0] >= s[:, 0, 1]).all()  # best code first
    assert (np.abs(c) <= 1 + 1e-6).all()
    assert not set(used) & set(shown["codes"]["layer0.mlp"].ravel().tolist())
    np.testing.assert_array_equal(shown["clean_codes"]["layer0.mlp"], clean)
    assert len(shown["jsd_per_position"]) == len(TOKENS)
    assert 0 < shown["jsd"] <= 1
    assert [t["token"] for t in shown["clean_next"]] != [t["token"] for t in shown["next"]] or shown["jsd"] > 0


def test_show_codes_errors(compiled, gpt2):
    with pytest.raises(codebook.Error, match="--show-codes"):
        compiled.show_codes(TOKENS, sites="layer0.mlp_mid")
    with pytest.raises(codebook.Error, match="has no codebooks"):
        gpt2.show_codes(TOKENS)
    with pytest.raises(codebook.Error, match="batch 1"):
        compiled.show_codes([TOKENS, TOKENS])


def test_runs_release_the_gil(compiled):
    # Two threads run the model at once; each run holds no GIL, so both finish.
    results = {}

    def work(i):
        results[i] = compiled.run([TOKENS] * 8)["logits"].shape

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == {0: (8, 6, 500), 1: (8, 6, 500)}


def test_precision_bf16_runs_near_f32_or_is_a_clear_error(gpt2):
    """precision="bf16" (docs/precision.md): on a CPU with AVX512_BF16 the
    logits stay near f32's and differ from them; elsewhere one clear error."""
    f32 = gpt2.run(TOKENS)["logits"]
    try:
        bf16 = gpt2.run(TOKENS, precision="bf16")["logits"]
    except codebook.Error as e:
        assert "bf16 needs a CPU with AVX512_BF16" in str(e)
        ref = gpt2.run(TOKENS, precision="bf16", backend="reference")["logits"]  # emulated anywhere
        assert 0 < np.abs(ref - f32).max() < 0.05 * (1 + np.abs(f32).max())
        return
    assert 0 < np.abs(bf16 - f32).max() < 0.05 * (1 + np.abs(f32).max())
    g = gpt2.generate(TOKENS, max_new=4, ignore_eos=True, precision="bf16")
    assert len(g["ids"]) == 4
    with pytest.raises(codebook.Error, match="precision 'fp8' is not one of f32, bf16"):
        gpt2.run(TOKENS, precision="fp8")
