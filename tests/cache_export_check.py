"""Checks a `codebook cache export` against the cache it came from, both read
with numpy alone (tests/test_cache_export.cpp runs it).

  cache_export_check.py original CACHE EXPORT PLACEMENT PAD_ID REGEX
  cache_export_check.py npz CACHE EXPORT

original: loads EXPORT the way the original library's load helpers do
(code_search_utils.load_dataset_cache / load_code_search_cache, the webapp's
ModelInfoForWebapp.load), and runs the original's search_re and
byte_id_to_token_pos_id on REGEX: every hit must land on the token whose bytes
hold the matched character in the cache. npz: every array of every archive
equals the cache's .npy file. Exit code 77 (skip) without numpy.
"""

import json
import os
import pickle
import re
import sys

try:
    import numpy as np
except ImportError:
    sys.exit(77)

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)


# --- the original library's code, verbatim in substance (code_search_utils.py, utils.py) ---


def load_dataset_cache(cache_base_path):
    tokens_str = np.load(cache_base_path + "tokens_str.npy")
    tokens_text = np.load(cache_base_path + "tokens_text.npy")
    token_byte_pos = np.load(cache_base_path + "token_byte_pos.npy")
    return tokens_str, tokens_text, token_byte_pos


def load_code_search_cache(cache_base_path):
    metrics = np.load(cache_base_path + "metrics.npy", allow_pickle=True).item()
    with open(cache_base_path + "cb_acts.pkl", "rb") as f:
        cb_acts = pickle.load(f)
    with open(cache_base_path + "act_count_ft_tkns.pkl", "rb") as f:
        act_count_ft_tkns = pickle.load(f)
    return cb_acts, act_count_ft_tkns, metrics


def load_model_info(path):
    with open(os.path.join(path, "info.txt")) as f:
        return dict(line.strip().split(": ") for line in f.readlines())


def search_re(re_pattern, tokens_text):
    if re_pattern.find("(") == -1:
        re_pattern = f"({re_pattern})"
    return [
        (i, m.span(1)[0])
        for i, text in enumerate(tokens_text)
        for m in re.finditer(re_pattern, text)
        if m.span(1)[0] != m.span(1)[1]
    ]


def byte_id_to_token_pos_id(example_byte_id, token_byte_pos):
    example_id, byte_id = example_byte_id
    index = np.searchsorted(token_byte_pos[example_id], byte_id, side="right")
    return (example_id, index)


def convert_to_base_name(name):
    split_name = name.split("_")
    layer, head = split_name[0], split_name[-1][3:]
    return layer + "_head" + head if "gcb" in name else layer


# --- the cache, read directly ---


class Cache:
    def __init__(self, path):
        self.path = path
        self.manifest = json.load(open(os.path.join(path, "cache.json")))
        load = lambda name: np.load(os.path.join(path, name), mmap_mode="r")
        self.tokens, self.offsets = load("tokens.npy"), load("token_offsets.npy")
        self.doc_tokens, self.doc_text = load("doc_tokens.npy"), load("doc_text.npy")
        self.text, self.rows = bytes(load("text.npy")), load("rows.npy")
        self.load = load

    def site_ids(self, site):
        """int64 [N, G, k], blocked slots -1."""
        ids = self.load(f"sites/{site['name']}/ids.npy")
        out = ids.astype(np.int64)
        out[ids == np.iinfo(ids.dtype).max] = -1
        return out

    def token_at_byte(self, b):
        """The token whose byte span holds text byte b (the last one starting at or before it)."""
        return int(np.searchsorted(self.offsets[:-1], b, side="right")) - 1


def check_original(cache_dir, export_dir, placement, pad_id, pattern):
    c = Cache(cache_dir)
    base = export_dir + "/"
    tokens_str, tokens_text, token_byte_pos = load_dataset_cache(base)
    cb_acts, act_count_ft_tkns, metrics = load_code_search_cache(base)
    tokens = np.load(base + "tokens.npy")
    info = load_model_info(export_dir)
    rows = np.asarray(c.rows)
    S, T = len(rows) - 1, int(np.max(np.diff(rows)))
    check(tokens.dtype == np.int64 and tokens.shape == (S, T), f"tokens.npy {tokens.dtype} {tokens.shape}")
    check(tokens_str.shape == (S, T) and tokens_str.dtype.kind == "U", f"tokens_str {tokens_str.dtype} {tokens_str.shape}")
    check(tokens_text.shape == (S,) and tokens_text.dtype.kind == "U", f"tokens_text {tokens_text.shape}")
    check(token_byte_pos.dtype == np.int64 and token_byte_pos.shape == (S, T), "token_byte_pos dtype/shape")

    # Tokens and text, row by row.
    for r in range(S):
        b, n = rows[r], rows[r + 1] - rows[r]
        check(np.array_equal(tokens[r, :n], c.tokens[b : b + n]), f"tokens.npy row {r}")
        check(np.all(tokens[r, n:] == pad_id), f"tokens.npy row {r}: padding is not {pad_id}")
        check(all(s == "" for s in tokens_str[r, n:]), f"tokens_str row {r}: padding not empty")
        check("".join(tokens_str[r]) == tokens_text[r], f"row {r}: tokens_text is not the joined tokens_str")
        # The original's definition: cumulative character lengths of tokens_str.
        ends = np.cumsum([len(s) for s in tokens_str[r]])
        check(np.array_equal(token_byte_pos[r], ends), f"token_byte_pos row {r}")
    # Every document's text, decoded, is the export's text: characters neither
    # lost nor doubled where tokens or rows split them.
    decoded = "".join(c.text[c.doc_text[d] : c.doc_text[d + 1]].decode("utf-8", "replace")
                      for d in range(len(c.doc_text) - 1)).replace("\0", "\ufffd")  # NUL: as invalid UTF-8
    check("".join(tokens_text) == decoded, "the rows' text is not the documents' text")
    # A token whose bytes are whole characters is those characters (the
    # others own the characters starting in their bytes: checked by the join
    # above and the regex hits below).
    whole = 0
    for r in range(S):
        for t in range(rows[r + 1] - rows[r]):
            p = rows[r] + t
            raw = c.text[c.offsets[p] : c.offsets[p + 1]]
            if is_utf8(raw):
                whole += 1
                want = raw.decode("utf-8").replace("\0", "\ufffd")
                check(tokens_str[r, t] == want, f"token {p}: {tokens_str[r, t]!r} vs {raw!r}")
    check(whole < rows[-1], "no token splits a character: the test data tests too little")

    # Regex hits land on the token holding the matched character.
    hits = search_re(pattern, tokens_text)
    check(len(hits) > 0, f"no hit for {pattern!r}")
    for row, char_off in hits:
        _, t = byte_id_to_token_pos_id((row, char_off), token_byte_pos)
        pos = rows[row] + t
        # Independently: the byte of that character, found by encoding the
        # row's text before it, from the row's first character (a row can
        # start inside a character that the row before holds).
        prefix = tokens_text[row][:char_off]
        check("\ufffd" not in prefix, "the regex must hit before any invalid UTF-8 (test data)")
        row_start = int(c.offsets[rows[row]])
        while c.text[row_start] & 0xC0 == 0x80:
            row_start += 1
        byte = row_start + len(prefix.encode("utf-8"))
        check(c.token_at_byte(byte) == pos, f"hit {row}:{char_off} -> token {pos}, expected {c.token_at_byte(byte)}")

    # Codes and counts.
    sites = sorted((s for s in c.manifest["sites"] if s["placement"] == placement), key=lambda s: s["layer"])
    check(len(sites) > 0, f"no site of placement {placement}")
    G, K, k = sites[0]["groups"], sites[0]["codes"], sites[0]["k"]
    expected_keys = []
    dead_total = 0
    for s in sites:
        ids = c.site_ids(s)
        L = s["layer"]
        dead_layer = 0
        for g in range(G):
            key = f"layer{L}_{placement}" + (f"_gcb{g}" if G > 1 else "")
            expected_keys.append(key)
            got = cb_acts.get(key)
            check(got is not None, f"cb_acts has no {key}")
            if got is None:
                continue
            check(got.dtype == np.int64 and got.shape == (S, T, k), f"{key}: {got.dtype} {got.shape}")
            for r in range(S):
                b, n = rows[r], rows[r + 1] - rows[r]
                check(np.array_equal(got[r, :n], ids[b : b + n, g]), f"{key} row {r}")
                check(np.all(got[r, n:] == -1), f"{key} row {r}: padding")
            base_name = convert_to_base_name(key)
            counts = act_count_ft_tkns.get(base_name)
            check(counts is not None, f"act_count_ft_tkns has no {base_name} (for {key})")
            if counts is None:
                continue
            member = ids[:, g].reshape(-1)
            brute = np.bincount(member[member >= 0], minlength=K)
            check(np.array_equal(np.asarray(counts), brute), f"{base_name} counts {counts} vs {brute}")
            dead_layer += int(np.sum(brute == 0))
        check(abs(metrics[f"eval_dead_code_fraction/layer{L}"] - dead_layer / (G * K)) < 1e-12, f"dead fraction layer {L}")
        dead_total += dead_layer
    check(list(cb_acts.keys()) == expected_keys, f"cb_acts keys {list(cb_acts.keys())} vs {expected_keys}")
    check(abs(metrics["eval_dead_code_fraction"] - dead_total / (len(sites) * G * K)) < 1e-12, "dead fraction")
    check(abs(metrics["eval_loss"] - c.manifest["metrics"]["loss"]) < 1e-12, "eval_loss")
    check(abs(metrics["eval_accuracy"] - c.manifest["metrics"]["accuracy"]) < 1e-12, "eval_accuracy")
    # What the Code Browser reads from info.txt.
    check(info["cb_at"] == placement and int(info["num_codes"]) == K, f"info.txt {info}")
    check(int(info["n_layers"]) == max(s["layer"] for s in sites) + 1, f"info.txt n_layers {info}")
    check(info["gcb"] == ("_gcb" if G > 1 else "_vcb") and info["n_grps"] == (str(G) if G > 1 else "None"), str(info))
    check(int(info["max_samples"]) == S and int(info["seed"]) >= 0, str(info))
    check(next(iter(cb_acts.values())).shape[2] == k, "k from cb_acts")  # the Code Browser's k_codebook


def is_utf8(raw):
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def check_npz(cache_dir, export_dir):
    c = Cache(cache_dir)
    archives = {"tokens.npz": ("", ["tokens", "token_offsets", "doc_tokens", "doc_text", "text", "rows", "row_metrics"])}
    for s in c.manifest["sites"]:
        members = ["ids"] + (["scores"] if s["scores"] else []) + ["counts", "index_offsets", "index_positions"]
        archives[s["name"] + ".npz"] = (f"sites/{s['name']}/", members)
    for name, (prefix, members) in archives.items():
        with np.load(os.path.join(export_dir, name)) as z:
            check(sorted(z.files) == sorted(members), f"{name}: {z.files}")
            for m in members:
                want = np.load(os.path.join(cache_dir, prefix + m + ".npy"))
                got = z[m]
                check(got.dtype == want.dtype and np.array_equal(got, want), f"{name}[{m}]")
    check(json.load(open(os.path.join(export_dir, "cache.json"))) == c.manifest, "cache.json copy")


if sys.argv[1] == "original":
    check_original(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6])
else:
    check_npz(sys.argv[2], sys.argv[3])
for f in failures[:20]:
    print("FAIL:", f)
print(f"{len(failures)} failures")
sys.exit(1 if failures else 0)
