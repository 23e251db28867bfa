"""The Python half of `codebook cache export` (tools/cache/cache_export.cpp).

The binary embeds this file and runs it as `python3 -c SOURCE MODE ARGS...`;
it writes only what needs Python, from files the C++ side has written:

  original STAGING OUT
      OUT/cb_acts.pkl and OUT/act_count_ft_tkns.pkl: dicts pickled from the
      .npy files STAGING/keys.json lists under "cb_acts" and "act_count"
      ([key, file] pairs, in order); OUT/metrics.npy: the dict under
      "metrics" as a 0-d object array. These are the files the original's
      code_search_cache writes with pickle.dump and np.save. Needs numpy.
  npz SPEC
      compressed NumPy archives (zip, deflate, zip64 when large), as
      np.savez_compressed writes them; SPEC is JSON {"OUT.npz": [[NAME, PATH],
      ...], ...}: each .npy file PATH goes in as NAME.npy. Needs only the
      standard library.

  check
      exits 3 unless numpy imports (run before the C++ side writes anything).

Exit code 3: numpy cannot be imported.
"""

import json
import os
import pickle
import sys
import zipfile


def write_original(staging, out):
    try:
        import numpy as np
    except ImportError:
        sys.exit(3)
    with open(os.path.join(staging, "keys.json"), encoding="utf-8") as f:
        keys = json.load(f)
    for section, name in (("cb_acts", "cb_acts.pkl"), ("act_count", "act_count_ft_tkns.pkl")):
        # Memory-mapped, so only one array at a time is copied while pickling.
        arrays = {key: np.asarray(np.load(os.path.join(staging, file), mmap_mode="r")) for key, file in keys[section]}
        with open(os.path.join(out, name), "wb") as f:
            pickle.dump(arrays, f, protocol=4)
    np.save(os.path.join(out, "metrics.npy"), np.array(keys["metrics"], dtype=object), allow_pickle=True)


def write_npz(spec):
    for out, members in json.loads(spec).items():
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as z:
            for name, path in members:
                z.write(path, arcname=name + ".npy")


def main(argv):
    if argv == ["check"]:
        try:
            import numpy  # noqa: F401
        except ImportError:
            sys.exit(3)
    elif len(argv) == 3 and argv[0] == "original":
        write_original(argv[1], argv[2])
    elif len(argv) == 2 and argv[0] == "npz":
        write_npz(argv[1])
    else:
        sys.exit("usage: original STAGING OUT | npz SPEC | check")


main(sys.argv[1:])
