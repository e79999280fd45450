"""The scripts, run small, as users run them (their own process, XLA_FLAGS set)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import write_idx

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
    # One XLA device per core it may run on, set by scripts/_setup.py.
    cores = len(os.sched_getaffinity(0))
    assert f"64 seeds, float64, {cores} cpu device(s)" in out
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
    # Three rules, one of them with state (KP): compilation (~10 s of CPU per
    # rule on this project's 2-core machine) would take all seven past the
    # suite's budget; tests/test_rules.py trains every rule.
    rules = ["backprop", "fa", "kp"]
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


def mnist_rows(out: str) -> dict[str, list[str]]:
    """scripts/mnist.py's table: the cells of each rule's row."""
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in out.splitlines()
        if line.startswith("| ") and not line.startswith("| rule")
    ]
    return {r[0]: r[1:] for r in rows}


@pytest.mark.slow  # two rules' compiles in a fresh process: about 20 s
def test_mnist_script_on_tiny_idx_files(tmp_path):
    # Learnable 28×28 images: class c lights rows 2c and 2c + 1, plus noise.
    rng = np.random.default_rng(0)

    def images(labels):
        x = rng.integers(0, 60, (len(labels), 28, 28))
        for i, c in enumerate(labels):
            x[i, 2 * c : 2 * c + 2] = 255
        return x.astype(np.uint8)

    y, y_test = np.arange(300) % 10, np.arange(100) % 10
    arrays = {"x": images(y), "y": y, "x_test": images(y_test), "y_test": y_test}
    write_idx(
        tmp_path, {k: np.asarray(a, np.uint8) for k, a in arrays.items()}, gz=True
    )
    out = run_script(
        "scripts/mnist.py", "--path", str(tmp_path), "--seeds", "2", "--epochs",
        "20", "--batch-size", "50",
    )  # fmt: skip
    assert "MNIST (" in out and "784-1000-10 sigmoid/sigmoid" in out
    assert "300 training and 100 test images" in out
    rows = mnist_rows(out)
    assert list(rows) == ["backprop", "fa"]
    for cells in rows.values():
        assert float(cells[0].split("%")[0]) < 20  # 120 steps learn the bands
        assert cells[2] == "0/2"
    assert rows["fa"][1].endswith(")") and "pt" in rows["fa"][1]  # paired Δ, CI
    assert "published: Lillicrap et al. (2016)" in out


@pytest.mark.slow
def test_mnist_script_on_digits_and_bad_arguments():
    pytest.importorskip("sklearn")
    out = run_script(
        "scripts/mnist.py", "--dataset", "digits", "--rules", "backprop",
        "--seeds", "1", "--epochs", "20",
    )  # fmt: skip
    assert "digits: 64-1000-10" in out and "1437 training and 360 test" in out
    (error,) = [float(c[0].rstrip("%")) for c in mnist_rows(out).values()]
    assert 0 <= error < 50  # 280 Adam steps are far better than chance (90%)
    bad = subprocess.run(
        [sys.executable, "scripts/mnist.py", "--path", "nowhere"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "no such folder or file" in bad.stderr


@pytest.mark.slow  # digits, 8 seeds, two programs compiled: about 30 s
def test_edge_of_stability_script_quick(tmp_path):
    out = run_script(
        "scripts/edge_of_stability.py", "--quick", "--lrs", "0.4", "--out",
        str(tmp_path)
    )  # fmt: skip
    assert "| 0.4 | 5.0 |" in out and "Diagnostics cost" in out
    assert (tmp_path / "sharpness.png").stat().st_size > 0

    summary = json.loads((tmp_path / "results.json").read_text())
    (row,) = summary["per_eta"]
    assert row["seeds"] == 8 and np.isfinite(row["sharpness_last_median"])
    assert set(summary["times"]) == {"training alone", "with diagnostics"}
    bad = subprocess.run(
        [sys.executable, "scripts/edge_of_stability.py", "--every", "7"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "--log-every must divide" in bad.stderr


@pytest.mark.slow  # three compiled programs: run by .ci/run with -m slow
def test_kfac_script_quick(tmp_path):
    out = run_script("scripts/kfac.py", "--quick", "--out", str(tmp_path))
    rows = [line.split("|")[1].strip() for line in out.splitlines() if "n=2 |" in line]
    assert rows == ["sgd", "adam", "kfac"], out
    assert (tmp_path / "kfac.png").stat().st_size > 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["method"] for r in results] == ["sgd", "adam", "kfac"]
    assert all(r["seconds_per_step"] > 0 for r in results)
