"""codebook.Cache: search, code, topics, similar over a cache of the tiny run."""
import pytest

import codebook


@pytest.fixture(scope="module")
def cache(tiny_cache):
    return codebook.Cache(tiny_cache)


def test_open_errors():
    with pytest.raises(codebook.Error):
        codebook.Cache("/no/such/cache")


def test_info(cache):
    info = cache.info()
    assert info["tokens"] == cache.num_tokens > 0
    assert info["documents"] == cache.num_documents > 0
    assert {s["name"] for s in info["sites"]} >= {"layer0.mlp", "layer1.mlp"}
    assert cache.document(0).startswith(b"")
    with pytest.raises(codebook.Error, match="out of range"):
        cache.document(cache.num_documents)


def test_search(cache):
    r = cache.search("(1)", site="layer0.mlp", min_precision=0.0)
    assert r["matches"] > 0
    assert r["codes"], r
    best = r["codes"][0]
    assert set(best) >= {"site", "group", "member", "code", "precision", "recall", "activations"}
    assert best["site"] == "layer0.mlp"
    assert all(0 <= c["precision"] <= 1 and 0 <= c["recall"] <= 1 for c in r["codes"])
    precisions = [c["precision"] for c in r["codes"]]
    assert precisions == sorted(precisions, reverse=True)
    by_recall = cache.search("(1)", site="layer0.mlp", min_precision=0.0, sort="recall")["codes"]
    assert [c["recall"] for c in by_recall] == sorted((c["recall"] for c in by_recall), reverse=True)


def test_search_errors(cache):
    with pytest.raises(codebook.Error):
        cache.search("(unclosed")
    with pytest.raises(codebook.Error):
        cache.search("1", site="layer9.mlp")
    with pytest.raises(codebook.Error, match="sort"):
        cache.search("1", sort="sideways")
    with pytest.raises(codebook.Error, match="parity"):
        cache.search("1", parity="both")


def test_code(cache):
    code = cache.search("(1)", site="layer0.mlp", min_precision=0.0)["codes"][0]["code"]
    c = cache.code("layer0.mlp", code, per_page=3)
    assert c["code"] == code and c["activations"] > 0
    assert 0 < c["density"] <= 1
    assert len(c["examples"]) <= 3 and c["examples"]
    assert "[[" in c["examples"][0]["snippet"]
    assert sum(t["count"] for t in c["top_tokens"]) <= c["activations"]


def test_code_errors(cache):
    with pytest.raises(codebook.Error, match="code"):
        cache.code("layer0.mlp", 10**6)
    with pytest.raises(codebook.Error):
        cache.code("layer7.mlp", 0)


def test_topics(cache):
    t = cache.topics(0, recall=0.0)
    assert t["doc"] == 0 and t["tokens"] > 0 and t["text"]
    recalls = [c["recall"] for c in t["codes"]]
    assert recalls == sorted(recalls, reverse=True)
    with pytest.raises(codebook.Error):
        cache.topics(cache.num_documents)
    with pytest.raises(codebook.Error):
        cache.topics(0, recall=2.0)


def test_similar(cache):
    s = cache.similar("layer0.mlp", 0, n=3)
    assert s["code"] == 0
    if "not_available" not in s:
        assert len(s["similar"]) == 3
