"""The scripts, run small, as users run them (their own process, XLA_FLAGS set)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_script(*args, timeout=300, env=None):
    out = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.slow  # several seconds of compiles: run by .ci/run with -m slow
def test_xor_seeds_script():
    out = run_script(
        "scripts/xor_seeds.py",
        "--seeds",
        "64",
        "--epochs",
        "2000",
        "--hidden",
        "2",
        "8",
    )
    # One XLA device per core, set by scripts/_setup.py.
    assert f"64 seeds, float64, {os.cpu_count()} cpu device(s)" in out
    rows = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [r.split("|")[0].strip() for r in rows] == ["2", "8"]
    assert all("95% CI" in r and "/64;" in r for r in rows)


@pytest.mark.slow  # several seconds of compiles: run by .ci/run with -m slow
def test_mnist1d_script(tmp_path):
    pytest.importorskip("mnist1d")
    env = dict(os.environ, JAXPROP_CACHE=str(tmp_path))
    out = run_script("scripts/mnist1d.py", "--seeds", "2", "--steps", "300", env=env)
    assert list(tmp_path.glob("mnist1d-*.npz"))
    assert "test accuracy: mean" in out and "n=2" in out
    mean = float(out.split("test accuracy: mean ")[1].split()[0])
    assert 0.3 < mean <= 1  # 300 Adam steps already beat the 10% of chance


@pytest.mark.slow  # a duplicate of default-suite coverage, or a long run
def test_scripts_reject_bad_arguments():
    out = subprocess.run(
        [sys.executable, "scripts/xor_seeds.py", "--seeds", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "must be positive" in out.stderr


@pytest.mark.slow
def test_rules_script_quick(tmp_path):
    # Four rules: compilation (~10 s of CPU per rule on this project's 2-core
    # machine) would take all seven past the suite's budget.
    rules = ["backprop", "fa", "dfa", "kp"]
    out = run_script(
        "scripts/rules.py", "--quick", "--rules", *rules, "--out", str(tmp_path)
    )
    table = out.split("All learning rates:")[0]
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in table.splitlines()
        if line.startswith("| ") and not line.startswith("| rule")
    ]
    assert [r[0] for r in rows] == rules  # one row per rule (net: relu)
    for row in rows:
        assert 0 < float(row[3].split()[0]) <= 1  # finite test accuracy
        assert row[5].endswith("/4")  # diverged, of 4 seeds
    assert (tmp_path / "results.md").read_text().count("| relu |") >= len(rules)
    assert (tmp_path / "alignment-relu.png").stat().st_size > 0
