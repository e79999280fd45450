"""The benchmark suite, at its seconds-long smoke size."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_benchmarks_smoke(tmp_path):
    pytest.importorskip("mnist1d")
    out_file = tmp_path / "result.json"
    env = dict(os.environ, JAXPROP_CACHE=str(tmp_path / "cache"))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "all",
            "--size",
            "smoke",
            "--repeats",
            "1",
            "--out",
            str(out_file),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out_file.read_text())
    env_info = result["environment"]
    assert env_info["platform"] == "cpu" and env_info["n_devices"] == os.cpu_count()
    assert env_info["jax"] and env_info["numpy"] and env_info["python"]
    xor = result["xor-seeds"]
    assert xor["numpy"]["epochs_per_s"] > 0
    rows = {(r["dtype"], r["grad"]) for r in xor["jaxprop"]}
    assert rows == {
        (d, g) for d in ("float32", "float64") for g in ("manual", "autodiff")
    }
    for r in xor["jaxprop"]:
        assert r["seed_epochs_per_s"] > 0 and len(r["times_s"]) == 1
    assert {r["grad"] for r in result["mnist1d"]["rows"]} == {"manual", "autodiff"}
    strategies = result["strategies"]["rows"][0]
    assert all(strategies[k] > 0 for k in ("vmap", "sequential", "chunked"))
    assert "seed-epochs/s" in out.stdout and "wrote" in out.stdout


def test_benchmarks_reject_unknown_study():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "bogus"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "invalid choice: 'bogus'" in out.stderr
