"""Reading a code cache with numpy alone (the example of docs/cache.md).

usage: python3 cache_numpy_example.py CACHE
"""

import json
import sys

import numpy as np

cache = sys.argv[1]
load = lambda name: np.load(f"{cache}/{name}", mmap_mode="r")  # nothing is read until used
manifest = json.load(open(f"{cache}/cache.json"))
text, doc_text = load("text.npy"), load("doc_text.npy")  # UTF-8 bytes; document d = text[doc_text[d]:doc_text[d+1]]
for d in range(min(3, manifest["documents"])):
    print(f"document {d}:", bytes(text[doc_text[d] : doc_text[d + 1]]).decode("utf-8", "replace"))

site = manifest["sites"][0]  # {"name": "layer0.mlp", "groups": G, "codes": K, "k": k, ...}
ids = load(f"sites/{site['name']}/ids.npy")  # [N, G, k]; the dtype's largest value = a blocked slot
tokens, offsets = load("tokens.npy"), load("token_offsets.npy")  # token i = text bytes [offsets[i], offsets[i+1])
pos, g = 5, 0
token = bytes(text[offsets[pos] : offsets[pos + 1]]).decode("utf-8", "replace")
codes = [int(c) for c in ids[pos, g] if c != np.iinfo(ids.dtype).max]
print(f"token {pos} (id {tokens[pos]}, {token!r}) has codes {codes} at {site['name']}")

index_offsets = load(f"sites/{site['name']}/index_offsets.npy")  # [G*K + 1]
positions = load(f"sites/{site['name']}/index_positions.npy")  # ascending per code
i = g * site["codes"] + codes[0]
where = positions[index_offsets[i] : index_offsets[i + 1]]
print(f"code {codes[0]} fires at {len(where)} tokens: {where[:10].tolist()}")
