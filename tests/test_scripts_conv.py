"""The convolutional studies (scripts/conv_*.py), run tiny in their own process."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import write_idx
from tests.test_scripts import ROOT, run_script


def table_rows(text: str) -> dict[str, list[str]]:
    """A markdown table's cells by its first column, header and rule left out."""
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("| rule")
    ]
    return {r[0]: r[1:] for r in rows}


def mnist1d_env(tmp_path):
    pytest.importorskip("mnist1d")
    return dict(os.environ, JAXPROP_CACHE=str(tmp_path / "cache"))


def check_mnist1d_outputs(out_dir, stdout, rules, seeds):
    text = (out_dir / "results.md").read_text()
    assert text in stdout  # the table printed is the table written
    rows = table_rows(text)
    assert list(rows) == rules
    data = json.loads((out_dir / "results.json").read_text())
    assert list(data["rules"]) == rules
    for rule in rules:
        cells, entry = rows[rule], data["rules"][rule]
        assert cells[0] == str(seeds[rule])
        assert float(cells[1]) == entry["best_lr"] and entry["best_lr"] in entry["lrs"]
        assert 0 <= entry["mean"] <= 1 and cells[2].startswith(f"{entry['mean']:.3f}")
        assert len(entry["test_per_seed"]) == seeds[rule]
        angles = cells[5]
        if rule == "backprop":
            assert angles == "–" and "align_steps" not in entry
        else:  # three conv layers' ∂W angles, in degrees
            assert len(angles.split(" / ")) == 3
            assert all(0 <= float(a) <= 180 for a in angles.split(" / "))
            assert np.shape(entry["grad_angle_median"]) == (
                4,
                len(entry["align_steps"]),
            )
    assert (out_dir / "conv-mnist1d.png").stat().st_size > 10_000


@pytest.mark.slow  # one rule's compile in a fresh process: 20 s idle, 80 s loaded
def test_conv_mnist1d_script_tiny(tmp_path):
    out = run_script(
        "scripts/conv_mnist1d.py", "--steps", "10", "--seeds", "2", "--n-train",
        "400", "--rules", "fa", "--out", str(tmp_path / "out"),
        env=mnist1d_env(tmp_path),
    )  # fmt: skip
    assert "300 train / 100 validation / 1000 test; 10 steps, batch 100" in out
    check_mnist1d_outputs(tmp_path / "out", out, ["fa"], {"fa": 2})


@pytest.mark.slow  # five rules' compiles: over a minute on a 2-core machine
def test_conv_mnist1d_script_every_rule(tmp_path):
    rules = ["backprop", "fa", "dfa", "sign", "kp"]
    out = run_script(
        "scripts/conv_mnist1d.py", "--steps", "40", "--bp-seeds", "3", "--seeds",
        "2", "--n-train", "600", "--out", str(tmp_path / "out"),
        env=mnist1d_env(tmp_path), timeout=600,
    )  # fmt: skip
    seeds = {r: 3 if r == "backprop" else 2 for r in rules}
    check_mnist1d_outputs(tmp_path / "out", out, rules, seeds)
    data = json.loads((tmp_path / "out" / "results.json").read_text())["rules"]
    assert data["backprop"]["lrs"] == [0.01]
    assert data["kp"]["lrs"] == [0.03, 0.1, 0.3]
    # 40 Adam steps at 1e-2 already beat chance (10%) on MNIST-1D.
    assert data["backprop"]["mean"] > 0.2


@pytest.mark.slow  # seconds of compiles: .ci/run runs it
def test_conv_scripts_reject_bad_arguments():
    for script, bad in [
        ("scripts/conv_mnist1d.py", ["--steps", "10", "--eval-every", "3"]),
        ("scripts/conv_fashion.py", ["--epochs", "0"]),
    ]:
        out = subprocess.run(
            [sys.executable, script, *bad],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 2, (script, out.stderr[-2000:])
        assert "must be positive" in out.stderr or "must divide" in out.stderr


@pytest.mark.slow  # two LeNet-5 compiles: about 40 s
def test_conv_fashion_script_on_tiny_idx_files(tmp_path):
    # Learnable 28×28 images: class c lights rows 2c and 2c + 1, plus noise.
    rng = np.random.default_rng(0)

    def images(labels):
        x = rng.integers(0, 60, (len(labels), 28, 28))
        for i, c in enumerate(labels):
            x[i, 2 * c : 2 * c + 2] = 255
        return x.astype(np.uint8)

    y, y_test = np.arange(640) % 10, np.arange(100) % 10
    arrays = {"x": images(y), "y": y, "x_test": images(y_test), "y_test": y_test}
    write_idx(
        tmp_path, {k: np.asarray(a, np.uint8) for k, a in arrays.items()}, gz=True
    )
    out_dir = tmp_path / "out"
    out = run_script(
        "scripts/conv_fashion.py", "--path", str(tmp_path), "--epochs", "3",
        "--seeds", "2", "--evals", "3", "--rules", "backprop", "sign-usf", "--lr",
        "0.05", "--out", str(out_dir),
    )  # fmt: skip
    assert "640 training / 100 test images; 30 steps (3.00 epochs)" in out
    text = (out_dir / "results.md").read_text()
    rows = table_rows(text)
    assert list(rows) == ["backprop", "sign-usf"]
    assert rows["backprop"][3] == "9.2%" and rows["sign-usf"][3] == "9.69% (uSF)"
    data = json.loads((out_dir / "results.json").read_text())
    assert data["steps"] == 30
    assert data["rules"]["sign-usf"]["eval_steps"] == [10, 20, 30]
    for rule, cells in rows.items():
        error = float(cells[1].split("%")[0])
        assert error == pytest.approx(100 * (1 - data["rules"][rule]["mean"]), abs=0.01)
        assert cells[2] == "0/2"
    assert data["rules"]["backprop"]["mean"] > 0.5  # 30 steps learn the bands
    assert (out_dir / "conv-fashion.png").stat().st_size > 10_000
