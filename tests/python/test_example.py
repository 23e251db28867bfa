"""examples/tokfsm_steering.py runs end to end: trains, steers, and asserts that steering works."""
import os
import subprocess
import sys

from conftest import ROOT


def test_tokfsm_steering_example(tmp_path):
    env = dict(os.environ)
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "tokfsm_steering.py"), str(tmp_path / "run")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "steering works" in r.stdout
    table = r.stdout.split("forced sites")[1]
    assert "none" in table and "all attention + MLP" in table
