"""codebook.train and codebook.train_config."""
import json
import threading

import numpy as np
import pytest

import codebook
from conftest import ROOT, TINY_OVERRIDES

TEST_FSM = str(ROOT / "configs" / "test_fsm.yaml")


def test_train_config_resolves_files_dicts_and_overrides():
    c = codebook.train_config(TEST_FSM, overrides=["training_args.max_steps=7"])
    assert c["training_args"]["max_steps"] == 7
    assert c["fsm_args"]["num_states"] == 4
    d = codebook.train_config({"fsm_args": {"num_states": 6}}, overrides={"training_args.learning_rate": 0.5})
    assert d["fsm_args"]["num_states"] == 6 and d["training_args"]["learning_rate"] == 0.5
    defaults = codebook.train_config()
    assert defaults["fsm_args"]["num_states"] == 100


def test_train_config_errors():
    with pytest.raises(codebook.Error, match="unknown key 'fsm_args.num_statez'"):
        codebook.train_config({"fsm_args": {"num_statez": 6}})
    with pytest.raises(codebook.Error, match="must be a mapping"):
        codebook.train_config({"fsm_args": 3})
    with pytest.raises(codebook.Error):
        codebook.train_config("/no/such/config.yaml")
    with pytest.raises(codebook.Error, match="not a configuration value"):
        codebook.train_config({"fsm_args": {"num_states": object()}})


def test_train_reports_progress_and_writes_the_run(tmp_path):
    lines = []
    out = tmp_path / "run"
    r = codebook.train(TEST_FSM, output=out, overrides=TINY_OVERRIDES, progress=lines.append, quiet=True)
    assert r["step"] == r["max_steps"] == 6
    assert r["model"] == str(out / "model.onnx") and (out / "model.onnx").exists()
    steps = [l["step"] for l in lines if "loss" in l]
    assert steps == [1, 2, 4, 6]
    assert any("eval_loss" in l for l in lines)
    assert r["history"] == lines
    logged = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    assert [l["step"] for l in logged] == [l["step"] for l in lines]
    # The run folder loads as a model that knows its tokenizer (TokFSM, base 2).
    m = codebook.load(str(out))
    assert m.tokenizer.startswith("tokfsm")
    shown = m.show_codes(prompt="0110", sites="layer0.mlp")
    assert shown["tokens"] == m.tokenize("0110") and len(shown["tokens"]) == 5
    assert shown["codes"]["layer0.mlp"].shape == (5, 1, 2)  # test_fsm.yaml: k = 2 at mlp


def test_train_as_the_cli_refuses_an_output_with_checkpoints(tiny_run):
    with pytest.raises(codebook.Error, match="already holds checkpoints"):
        codebook.train(TEST_FSM, output=tiny_run, overrides=TINY_OVERRIDES, quiet=True)


def test_stop_and_resume_continue_the_run(tmp_path):
    out = tmp_path / "run"
    r = codebook.train(TEST_FSM, output=out, overrides=TINY_OVERRIDES, stop_at=3, quiet=True)
    assert r["step"] == 3 and r["model"] is None
    lines = []
    r = codebook.train(resume=out, progress=lines.append, quiet=True)
    assert r["step"] == 6 and r["model"] is not None
    assert [l["step"] for l in lines if "loss" in l] == [4, 6]
    with pytest.raises(codebook.Error, match="takes the configuration from the checkpoint"):
        codebook.train(TEST_FSM, resume=out)


def test_a_callback_exception_stops_training(tmp_path):
    class Stop(Exception):
        pass

    def progress(line):
        if line["step"] >= 2:
            raise Stop()

    with pytest.raises(Stop):
        codebook.train(TEST_FSM, output=tmp_path / "run", overrides=TINY_OVERRIDES, progress=progress, quiet=True)


def test_training_releases_the_gil(tmp_path):
    # A Python thread keeps counting while the model trains.
    count = [0]
    done = threading.Event()

    def spin():
        while not done.is_set():
            count[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        codebook.train(TEST_FSM, output=tmp_path / "run", overrides=TINY_OVERRIDES, quiet=True)
    finally:
        done.set()
        t.join()
    assert count[0] > 10000


def test_trained_model_runs_with_steering(tiny_run):
    m = codebook.load(str(tiny_run))
    a = m.tokenize("00")
    b = m.tokenize("11")
    want = m.run(b, tap="layer0.mlp")["layer0.mlp.ids"][0, -1]
    forced = m.run(a, tap="layer0.mlp", force="layer0.mlp:state-of:" + ",".join(map(str, b)) + "@-1",
                   check=False)["layer0.mlp.ids"][0, -1]
    np.testing.assert_array_equal(np.sort(forced, axis=-1), np.sort(want, axis=-1))


def test_generate_continues_a_prompt_with_and_without_interventions(tiny_run, gpt2):
    m = codebook.load(str(tiny_run))
    g = m.generate(prompt="01", max_new=6, ignore_eos=True)
    assert g["prompt_ids"] == m.tokenize("01")
    assert len(g["ids"]) == 6 and g["stop"] == "max-new"
    assert all(m.token_text(t) in ("0", "1", "<|endoftext|>") for t in g["ids"])
    assert g["text"] == "".join(m.token_text(t) for t in g["ids"])
    again = m.generate(m.tokenize("01"), max_new=6, ignore_eos=True)
    assert again == g  # greedy: the same every time
    forced = m.generate(prompt="01", max_new=6, force="layer0.mlp:0,1@-1", temperature=1.0, seed=3)
    assert 1 <= len(forced["ids"]) <= 6
    with pytest.raises(codebook.Error, match="max_new"):
        m.generate(prompt="01", max_new=-1)
    with pytest.raises(codebook.Error, match="not a base-2 digit"):
        m.generate(prompt="012")
    with pytest.raises(codebook.Error, match="records no tokenizer"):
        gpt2.generate(prompt="12")
