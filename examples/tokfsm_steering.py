"""The TokFSM tutorial's state steering (codebook-spec section 8.3), in Python.

A notebook-style walk through `import codebook` (docs/python.md): train a small
TokFSM codebook model from scratch (well under a minute on 2 cores), read the
codes each state's numeral selects, and steer the model by forcing state b's
codes into every other state a at its last digit. The Jensen-Shannon
divergence between the steered next-token distribution and b's own falls from
its unsteered value as more of b's codes go in.

    PYTHONPATH=build/release/python python3 examples/tokfsm_steering.py [RUN_DIR]

Without RUN_DIR the run goes to a temporary folder. tests/python/test_example.py
runs it as a test.
"""
# %% Setup
import itertools
import sys
import tempfile

import numpy as np

import codebook

run_dir = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="tokfsm-steering-") + "/run"

# %% Train: 16 states with 2 edges each, written as 2-digit base-4 numerals; a
# 2-layer GPT-2 with one codebook per attention head (attn_preproj) and one
# at every MLP, k = 1, as the tutorial's model (which is 4 x 128, 100 states).
config = {
    "model_config_args": {
        "model_type": "gpt2", "vocab_size": 5, "n_embd": 64, "n_inner": 256, "n_layer": 2, "n_head": 4,
        "n_positions": 32, "activation_function": "gelu_new", "tie_word_embeddings": False,
        "bos_token_id": 4, "eos_token_id": 4,
    },
    "codebook_args": {
        "codebook_at": ["attn_preproj", "mlp"], "codebook_type": ["group", "vanilla"], "num_codebooks": [-1, 1],
        "k_codebook": [1, 1], "num_codes": 64, "kmeans_init": True, "insert_after_steps": 150,
        "replace_after_steps": 20,
    },
    "dataset_args": {"seq_len": 32},
    "fsm_args": {"num_states": 16, "num_edges": 2, "representation_base": 4, "max_eval_samples": 64,
                 "generate_samples": 32},
    "training_args": {
        "per_device_train_batch_size": 32, "per_device_eval_batch_size": 64, "learning_rate": 3.0e-3,
        "adam_beta2": 0.99, "lr_scheduler_type": "linear", "warmup_steps": 20, "max_steps": 300,
        "logging_steps": 50, "eval_steps": 300, "save_steps": 300,
    },
    "runtime": {"threads": 1},  # a model this small runs best on one core
}


def show(line):
    if "loss" in line:
        print(f"step {line['step']:4d}  loss {line['loss']:.4f}  accuracy {line['accuracy']:.3f}", flush=True)
    elif "eval_transition_accuracy" in line:
        print(f"evaluation: transition accuracy {line['eval_transition_accuracy']:.3f}", flush=True)


result = codebook.train(config, output=run_dir, progress=show, quiet=True)
model = codebook.load(run_dir)
print("trained:", result["model"])

# %% Each state's numeral: [<|endoftext|>, digit, digit]; the tokenizer of the
# run ("tokfsm:4") turns "13" into those ids.
states = [np.base_repr(s, 4).rjust(2, "0") for s in range(16)]
prompts = np.array([model.tokenize(s) for s in states])  # [16, 3]

# %% The codes every state selects at its last digit, at every site: one run
# over all 16 prompts, the codes tapped ({site}.ids is [B, T, G, k]).
sites = [c["site"] for c in model.codebooks()]
out = model.run(prompts, tap=sites)
codes = {site: out[site + ".ids"][:, -1] for site in sites}  # site -> [16, G, k]
clean_probs = out["logits"][:, -1]


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def jsd_bits(p, q):
    m = (p + q) / 2
    kl = lambda a, b: np.sum(np.where(a > 0, a * np.log2(np.where(a > 0, a, 1) / b), 0), axis=-1)
    return (kl(p, m) + kl(q, m)) / 2


clean_probs = softmax(clean_probs)


# %% Steering: force b's codes at the chosen sites into every other state a at
# its last digit (all k slots of every member, as the tutorial's patching),
# and compare with b's own next-token distribution.
def forces(b, chosen):
    out = []
    for site in chosen:
        members = codes[site].shape[1]
        for g in range(members):
            name = f"{site}[{g}]" if members > 1 else site
            out.append(f"{name}:{','.join(map(str, codes[site][b, g]))}@-1")
    return out


def steered_jsd(chosen):
    total = 0.0
    for b in range(16):
        others = [a for a in range(16) if a != b]
        if chosen:
            logits = model.run(prompts[others], force=forces(b, chosen), check=False)["logits"][:, -1]
            probs = softmax(logits)
        else:
            probs = clean_probs[others]
        total += jsd_bits(probs, clean_probs[b]).sum() / len(others)
    return total / 16


layers = model.num_layers
site_sets = {
    "none": [],
    "layer 0 attention (all heads)": ["layer0.attn_preproj"],
    "layer 1 MLP": ["layer1.mlp"],
    "all attention": [f"layer{l}.attn_preproj" for l in range(layers)],
    "all MLP": [f"layer{l}.mlp" for l in range(layers)],
    "all attention + MLP": sites,
}
jsd = {name: steered_jsd(chosen) for name, chosen in site_sets.items()}

# %% The tutorial's table: JSD to b's distribution, normalised by the maximum
# (lower = the model behaves more like state b).
top = max(jsd.values())
print(f"\n{'forced sites':32s} {'JSD (bits)':>10s} {'normalised':>10s}")
for name, v in jsd.items():
    print(f"{name:32s} {v:10.4f} {v / top:10.3f}")

# %% What steering did: the patched model behaves much more like b.
assert jsd["all attention + MLP"] < 0.5 * jsd["none"], jsd
print("\nsteering works: forcing all of b's codes moves a's next-token distribution to b's")
