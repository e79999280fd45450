"""The benchmark suite at its seconds-long smoke size: every study runs, its
figures are consistent, and the contenders it compares do the same work."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from benchmarks import (
    agreement,
    alignment,
    baselines,
    gpu,
    per_example,
    report,
    rules,
    seeds,
    steps,
    torch_xor,
    utilization,
)
from benchmarks._common import environment

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def assert_reported(tmp_path, study: str, result: dict, headings, plots):
    """The study's Markdown section and PNG plots, from its result."""
    results = {"environment": environment(), "size": "smoke", "repeats": 1}
    results[study] = result
    assert all(h in report.markdown(results) for h in headings)
    written = report.plots(results, tmp_path / "r")
    assert sorted(p.name for p in written) == sorted(f"r-{n}.png" for n in plots)
    assert all(p.read_bytes()[:8] == PNG for p in written)


@pytest.mark.slow  # several seconds of compiles: run by .ci/run with -m slow
def test_agreement_study(seed):
    result = agreement.bench_agreement("smoke", 1)
    assert {w["dtype"] for w in result["worst"]} == {"float32", "float64"}
    for w in result["worst"]:
        assert w["passed"] == w["networks"] > 0
        if w["dtype"] == "float64":
            assert w["worst_autodiff"] < 1e-12 and w["worst_numeric"] < 1e-7
        else:
            assert w["worst_autodiff"] < 1e-5
    for row in result["rows"]:
        n_layers = row["depth"] + 1
        assert (
            len(row["per_layer_autodiff"]) == len(row["per_layer_numeric"]) == n_layers
        )


def test_agreement_error_catches_a_tenth_of_a_percent():
    net, params, x, y = agreement.make_case(2, 4, "tanh", "mse", "float64")
    grads = net.backprop(params, x, y)
    assert max(agreement.scaled_errors(grads, grads)) == 0.0
    wrong = (grads[0], grads[1]._replace(w=grads[1].w * 1.001), grads[2])
    errors = agreement.scaled_errors(wrong, grads)
    assert errors[2] == pytest.approx(1e-3, rel=1e-6)
    assert errors[:2] == [0.0, 0.0] and errors[3:] == [0.0] * 3


@pytest.mark.slow  # a duplicate of default-suite coverage, or a long run
def test_step_time_study(tmp_path):
    result = steps.bench_step_time("smoke", 1)
    assert_reported(
        tmp_path, "step-time", result, ["## Step time"], ["step-time", "ratio"]
    )
    assert len(result["rows"]) == len(steps.grid("smoke")) > 0
    for row in result["rows"]:
        net = steps.make_net(row["width"], row["depth"])
        assert row["flops_per_step"] == net.flops(row["batch"])
        for g in steps.GRADS:
            r = row[g]
            assert r["step_s"] > 0 and r["compile_s"] > 0
            assert r["gflops"] == pytest.approx(
                row["flops_per_step"] / r["step_s"] / 1e9
            )
        assert row["ratio"] == pytest.approx(
            row["manual"]["step_s"] / row["autodiff"]["step_s"]
        )
    assert result["eager"] and all(r["ratio"] > 0 for r in result["eager"])


@pytest.mark.slow  # a duplicate of default-suite coverage, or a long run
def test_steps_are_the_same_update():
    # The two contenders differ only in where the gradient comes from.
    net, params, x, y = steps.make_problem(16, 2, 8, "float64")
    (lm, pm), (la, pa) = (steps.make_step(net, g)(params, x, y) for g in steps.GRADS)
    np.testing.assert_allclose(lm, la, rtol=1e-12)
    for m, a in zip(jax.tree.leaves(pm), jax.tree.leaves(pa), strict=True):
        np.testing.assert_allclose(m, a, rtol=1e-12, atol=1e-15)
    looped = steps.make_loop(net, "manual")(params, x, y, 3)
    once = params
    for _ in range(3):
        once = steps.make_step(net, "manual")(once, x, y)[1]
    for m, a in zip(jax.tree.leaves(looped), jax.tree.leaves(once), strict=True):
        np.testing.assert_allclose(m, a, rtol=1e-12)


@pytest.mark.slow  # a duplicate of default-suite coverage, or a long run
def test_manual_step_needs_no_more_temp_memory(tmp_path):
    # A target of the suite, and deterministic: compiled sizes do not vary.
    result = steps.bench_memory("smoke", 1)
    assert_reported(tmp_path, "memory", result, ["## Compiled memory"], [])
    assert result["points"] == len(result["rows"]) > 0
    for row in result["rows"]:
        assert row["manual"]["temp_bytes"] <= row["autodiff"]["temp_bytes"], row
        assert row["manual"]["argument_bytes"] == row["autodiff"]["argument_bytes"]
    assert result["manual_temp_worse"] == 0


@pytest.mark.slow  # several seconds of compiles: run by .ci/run with -m slow
def test_log_every_study():
    result = seeds.bench_log_every("smoke", 1)
    [sweep] = result["sweeps"]
    assert sweep["n_seeds"] == 8
    assert [r["contender"] for r in sweep["rows"]] == [
        "default (10)",  # XOR 2-2-1: 112 FLOPs a step, 10 to a block
        "log_every=1",
        "log_every=10",
        "log_every=100",  # = steps: one block
    ]
    assert all(r["seed_epochs_per_s"] > 0 for r in sweep["rows"])
    assert max(r["vs_best"] for r in sweep["rows"]) == 1.0
    assert "## log_every on XOR" in report.markdown(
        {
            "log-every": result,
            "environment": environment(),
            "size": "smoke",
            "repeats": 1,
        }
    )


@pytest.mark.slow  # several seconds of compiles: run by .ci/run with -m slow
def test_seed_scaling_study(tmp_path):
    result = seeds.bench_seed_scaling("smoke", 1)
    assert_reported(
        tmp_path, "seed-scaling", result, ["## Seed scaling"], ["seed-scaling"]
    )
    seed_counts, _, loop_max = seeds.SIZES["seed-scaling"]["smoke"]
    assert [r["seeds"] for r in result["rows"]] == list(seed_counts)
    for row in result["rows"]:
        assert all(row[s] > 0 for s in seeds.STRATEGIES)
        assert ("python loop" in row) == (row["seeds"] <= loop_max)
        assert row[row["best"]] == max(
            v for k, v in row.items() if k not in ("seeds", "best")
        )


def test_baselines_do_the_same_work():
    # Every contender starts from the same draws and must end at the same
    # parameters (float64, rounding apart): the benchmark compares equal work.
    final = baselines.final_params(8, 50, "float64")
    expected = {"jaxprop manual", "jaxprop autodiff", "plain JAX"}
    if torch_xor.available():
        expected |= {"torch eager", "torch.func"}
    assert set(final) == expected
    reference = final["plain JAX"]
    moved = max(
        np.abs(reference[k] - np.asarray(v)).max() for k, v in numpy_start(8).items()
    )
    assert moved > 1e-3  # training changed the parameters
    for name, params in final.items():
        for k in reference:
            np.testing.assert_allclose(
                params[k], reference[k], rtol=1e-12, err_msg=name
            )


def numpy_start(n_seeds):
    from benchmarks import numpy_xor

    return {
        k: v.reshape(n_seeds, -1)
        for k, v in numpy_xor.ensemble_params(n_seeds, "float64").items()
    }


@pytest.mark.slow  # several seconds of compiles: run by .ci/run with -m slow
def test_baselines_study():
    result = baselines.bench_baselines("smoke", 1)
    names = {r["contender"] for r in result["rows"]}
    assert {"jaxprop manual", "jaxprop autodiff", "plain JAX grad+vmap+scan"} <= names
    if torch_xor.available():
        assert "torch eager autograd" in names and "torch" in result
    else:
        assert any("not installed" in note for note in result["notes"].values())
    for r in result["rows"]:
        assert r["x_numpy"] == pytest.approx(
            r["seed_epochs_per_s"] / result["numpy"]["epochs_per_s"]
        )


@pytest.mark.slow  # several seconds of compiles: run by .ci/run with -m slow
def test_utilization_study():
    result = utilization.bench_utilization("smoke", 1)
    ceiling = result["ceiling"]["gflops"]
    assert ceiling == max(r["gflops"] for r in result["ceiling"]["rows"]) > 0
    for g in ("manual", "autodiff"):
        assert result[g]["fraction_of_ceiling"] == pytest.approx(
            result[g]["gflops"] / ceiling
        )


@pytest.mark.slow
def test_command_line_writes_results_and_summary(tmp_path):
    out_file = tmp_path / "result.json"
    env = dict(os.environ, JAXPROP_CACHE=str(tmp_path / "cache"))
    run = [
        sys.executable,
        "-m",
        "benchmarks",
        "--size",
        "smoke",
        "--out",
        str(out_file),
    ]
    for study in ("memory", "utilization"):  # the second updates the same file
        done = subprocess.run(
            [*run, study, "--repeats", "1"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out_file.read_text())
    assert {"memory", "utilization"} <= set(result)
    assert result["repeats_by_study"] == {"memory": 1, "utilization": 1}
    environment = result["environment"]
    assert environment["platform"] == "cpu"
    # One device per core it may run on.
    assert environment["n_devices"] == len(os.sched_getaffinity(0))
    assert environment["jax"] and environment["numpy"] and environment["python"]
    summary = out_file.with_suffix(".md").read_text()
    for heading in ("## Compiled memory", "## Utilization"):
        assert heading in summary
    assert f"wrote {out_file}" in done.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        pytest.param(["bogus"], "invalid choice: 'bogus'", marks=pytest.mark.slow),
        pytest.param(
            ["memory", "--repeats", "0"],
            "--repeats must be at least 1",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_command_line_rejects_bad_arguments(args, message):
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and message in out.stderr


@pytest.mark.slow  # several seconds of compiles: run by .ci/run with -m slow
def test_progress_study():
    from benchmarks import progress

    result = progress.bench_progress("smoke", 1)
    assert len(result["rows"]) == len(progress.WORKLOADS)
    for row in result["rows"]:
        assert row["one_call_s"] > 0 and row["chunked_s"] > 0
        assert row["chunks"] >= 2  # the loop really ran in chunks
        assert row["overhead"] == row["chunked_s"] / row["one_call_s"] - 1
        assert row["train_seeds_s"] > 0 and row["train_seeds_chunks"] >= 2


@pytest.mark.slow
def test_rules_study(tmp_path):
    result = rules.bench_rules("smoke", 1)
    assert_reported(
        tmp_path,
        "rules",
        result,
        ["## Credit-assignment rules", "### XOR over"],
        ["rules"],
    )
    st = result["step_time"]
    assert st["rules"] == list(rules.RULES) and st["rules"][0] == "backprop"
    assert [(r["depth"], r["width"], r["batch"]) for r in st["rows"]] == rules.grid(
        "smoke"
    )
    others = [n for n in rules.RULES if n != "backprop"]
    for row in st["rows"]:
        assert all(row["step_s"][n] > 0 for n in rules.RULES)
        assert set(row["ratio"]) == set(others)
        for n in others:
            ratio = row["ratio"][n]
            assert np.isfinite(ratio) and ratio > 0
            assert ratio == pytest.approx(row["step_s"][n] / row["step_s"]["backprop"])
    for n in others:
        s = st["summary"][n]
        for part in ("all", "depth>=3"):
            assert s[part]["points"] > 0  # the smoke grid is at depth 3
            assert 0 < s[part]["median_ratio"] <= s[part]["max_ratio"] < np.inf
        assert ("target" in s) == (n in rules.STEP_TARGETS)
    assert st["summary"]["dfa"]["target"]["points"] == "depth>=3"
    sd = result["seeds"]
    names = [r["rule"] for r in sd["rows"]]
    assert names == list(rules.SIZES["smoke"]["xor_rules"]) == ["backprop", "fa"]
    for r in sd["rows"]:
        assert np.isfinite(r["ratio"]) and r["ratio"] > 0
        assert r["seed_epochs_per_s"] == pytest.approx(
            sd["n_seeds"] * sd["epochs"] / r["median_s"]
        )
    assert sd["rows"][0]["ratio"] == 1.0
    assert sd["target"]["rule"] == "fa" and isinstance(sd["target"]["met"], bool)


@pytest.mark.slow  # a duplicate of default-suite coverage, or a long run
def test_rule_steps_are_the_training_step():
    # backprop's step is steps.py's manual step (SGD through optax), and the
    # loop carries the rule state: k steps in one call are k single steps.
    net, params, x, y = steps.make_problem(16, 3, 8, "float64")
    carry = rules.initial_carry(net, rules.RULES["backprop"], params)
    step = jax.jit(rules.make_step(net, rules.RULES["backprop"]))
    loss, (new, _, _) = step(carry, x, y)
    ref_loss, ref = jax.jit(steps.make_step(net, "manual"))(params, x, y)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    kp = rules.RULES["kp"]
    carry = rules.initial_carry(net, kp, params)
    looped = rules.make_loop(net, kp)(carry, x, y, 3)
    once, step = carry, jax.jit(rules.make_step(net, kp))
    for _ in range(3):
        once = step(once, x, y)[1]
    assert not np.allclose(looped[2].feedback[0], carry[2].feedback[0])
    for a, b in zip(jax.tree.leaves(looped), jax.tree.leaves(once), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.slow  # ~30 s of compiles at smoke size: run by .ci/run with -m slow
def test_per_example_study(tmp_path):
    result = per_example.bench_per_example("smoke", 1)
    assert_reported(tmp_path, "per-example", result, ["## Per-example norms"], [])
    nd = result["norms_dp"]
    assert set(nd["ratio"]) == {
        "norms",
        "vmap_norms",
        "dp_sgd",
        "clipped",
        "noise",
        "noise_jax",
        "vmap_dp",
        "vjp",
    } | ({"jax_privacy_dp"} if importlib.util.find_spec("jax_privacy") else set())
    assert all(t > 0 for t in nd["step_s"].values())
    assert set(result["opacus_memory"]["extra_bytes"]) == set(nd["ratio"])
    rows = result["activations"]["rows"]
    assert [r["activation"] for r in rows] == ["relu", "gelu"]
    assert set(result["targets"]) == {
        "norms_time",
        "norms_vs_vmap",
        "norms_memory",
        "dp_sgd_time",
        "vjp_time",
        "activations_max",
    } | (
        {"dp_sgd_vs_jax_privacy"} if importlib.util.find_spec("jax_privacy") else set()
    )


@pytest.mark.slow  # a duplicate of default-suite coverage, or a long run
def test_per_example_contenders_do_the_same_work():
    # float32 smoke net: the norms by one δ pass equal vmap-of-grad's, the VJP
    # step equals the plain step, and DP-SGD's noiseless part is vmap's.
    s = per_example.SIZES["smoke"]
    net, params, x, y = per_example.make_problem(s["sizes"], s["batch"])
    fns = {
        n: fn(*args)
        for n, (fn, args) in per_example.contenders(net, params, x, y).items()
    }
    np.testing.assert_allclose(fns["norms"], fns["vmap_norms"], rtol=1e-4)
    np.testing.assert_allclose(fns["vjp"][0], fns["plain"][0], rtol=1e-6)
    leaves = jax.tree.leaves
    for a, b in zip(leaves(fns["vjp"][1]), leaves(fns["plain"][1]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    dp_grads = fns["dp_sgd"][1]
    assert jax.tree.structure(dp_grads) == jax.tree.structure(fns["vmap_dp"])


def test_gpu_study_says_no_gpu_on_cpu_and_runs_nothing(tmp_path, monkeypatch, capsys):
    assert gpu.bench_gpu("smoke", 1) == {"skipped": gpu.why_not()}
    assert gpu.why_not().startswith("no GPU: JAX's first device is 'cpu'")
    # The command, in this process: importing it sets XLA_FLAGS (restored after).
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
    from benchmarks.__main__ import main

    out_file = tmp_path / "result.json"
    assert main(["gpu", "--size", "smoke", "--out", str(out_file)]) == {}
    assert "gpu: skipped: no GPU" in capsys.readouterr().out
    assert not out_file.exists()


@pytest.mark.parametrize(
    "device_kind, fp32",
    [
        ("NVIDIA H100 80GB HBM3", 67.0),
        ("NVIDIA H100 PCIe", 51.0),
        ("NVIDIA H200", 67.0),
        ("NVIDIA A100-SXM4-80GB", 19.5),
        ("NVIDIA H200 NVL", None),  # not verified: left out
        ("Tesla V100-SXM2-16GB", None),
    ],
)
def test_gpu_peaks_by_device_kind(device_kind, fp32):
    peak = gpu.peak_tflops(device_kind)
    assert (peak and peak["fp32"]) == fp32
    if peak:
        assert peak["tf32"] > 7 * peak["fp32"]  # dense TF32: 7.4-8x FP32


def test_gpu_peaks_reject_a_device_kind_that_is_not_a_string():
    with pytest.raises(ValueError, match="device_kind must be a string"):
        gpu.peak_tflops(None)


def fake_gpu_result():
    """What the GPU study returns on an H100, with made-up times."""
    peak = gpu.peak_tflops("NVIDIA H100 80GB HBM3")
    rows = []
    for precision, name in gpu.PRECISIONS.items():
        for runs in (1, 64):
            for g in ("manual", "autodiff"):
                tflops = 0.3 * runs * peak[name] / 64
                rows.append(
                    {
                        "precision": precision,
                        "runs": runs,
                        "grad": g,
                        "steps_per_call": 16,
                        "flops_per_step": runs * 8.8e9,
                        "step_s": runs * 8.8e9 / tflops / 1e12,
                        "times_s": [],
                        "tflops": tflops,
                        "peak_tflops": peak[name],
                        "of_peak": tflops / peak[name],
                        "of_ceiling": 0.5,
                    }
                )
    return {
        "device_kind": "NVIDIA H100 80GB HBM3",
        "peak_tflops": peak,
        "bytes_limit": 63 * 2**30,
        "matmul_precisions": dict(gpu.PRECISIONS),
        "xor": {
            "network": "XOR 2-2-1 sigmoid, full batch of 4, SGD 0.1, float32",
            "n_seeds": 10**6,
            "epochs": 2000,
            "log_every": 200,
            "strategy": ["vmap", 10**6],
            "first_call_s": 3.0,
            "times_s": [0.5, 0.4, 0.6],
            "median_s": 0.5,
            "seed_epochs_per_s": 4e9,
            "final_loss_median": 0.01,
        },
        "utilization": {
            "network": [784, 1024, 1024, 1024, 10],
            "batch": 512,
            "ceilings": {p: {"gflops": 4e5, "rows": []} for p in gpu.PRECISIONS},
            "rows": rows,
        },
    }


def test_gpu_report_renders_results_and_skips(tmp_path):
    env = environment()
    results = {"environment": env, "size": "full", "repeats": 10}
    summary = report.markdown({**results, "gpu": fake_gpu_result()})
    for text in (
        "## GPU",
        "NVIDIA H100 80GB HBM3",
        "FP32 67, TF32 494.7 TFLOP/s",
        "1,000,000 seeds × 2000 epochs",
        "chose `vmap` (chunks of 1000000)",
        "4e+09 seed-epochs/s",
        "### Utilization: 784-1024-1024-1024-10, batch 512",
        "| tensorfloat32 | 64 | manual |",
        "30.0% of 494.7",
        "0.5% of 67 |",  # 1 run: 0.3/64 of the peak
    ):
        assert text in summary, text
    assert report.plots({**results, "gpu": fake_gpu_result()}, tmp_path / "r") == []
    skipped = report.markdown({**results, "gpu": {"skipped": "no GPU: here"}})
    assert "## GPU\n\nNot run: no GPU: here." in skipped


@pytest.mark.slow  # ~40 s of compiles on 2 cores
def test_gpu_study_parts_run_on_cpu(tmp_path):
    # The GPU study's own measurements, on the CPU: what a lent GPU will run.
    result = gpu.run_parts("smoke", 1)
    assert result["peak_tflops"] is None  # a CPU's device_kind
    x = result["xor"]
    assert x["n_seeds"] == gpu.SIZES["smoke"]["xor_seeds"]
    assert x["seed_epochs_per_s"] == pytest.approx(
        x["n_seeds"] * x["epochs"] / x["median_s"]
    )
    assert x["strategy"][0] in ("vmap", "chunked")
    rows = result["utilization"]["rows"]
    s = gpu.SIZES["smoke"]
    assert len(rows) == len(gpu.PRECISIONS) * len(s["runs"]) * 2
    for row in rows:
        assert row["tflops"] == pytest.approx(
            row["flops_per_step"] / row["step_s"] / 1e12
        )
        assert row["of_peak"] is None and row["of_ceiling"] > 0
    summary = report.markdown(
        {"environment": environment(), "size": "smoke", "repeats": 1, "gpu": result}
    )
    assert "peaks unknown for this device_kind" in summary


@pytest.mark.slow  # four processes started: run by .ci/run with -m slow
def test_processes_study(tmp_path):
    from benchmarks import processes

    result = processes.bench_processes("smoke", 1)
    assert [r["layout"] for r in result["rows"]] == list(processes.LAYOUTS)
    for row in result["rows"]:
        assert row["same_bits"]  # the same work in both layouts
        assert row["median_s"] > 0 and len(row["times_s"]) == processes.INNER
    assert result["rows"][0]["vs_one_process"] == 1
    assert_reported(
        tmp_path, "processes", result, ["## Across processes: 2 processes"], []
    )


@pytest.mark.slow  # a minute of compiles on 2 cores: .ci/run runs it
def test_alignment_study(tmp_path):
    result = alignment.bench_alignment("smoke", 1)
    assert_reported(tmp_path, "alignment", result, ["## Alignment during"], [])
    s = alignment.SIZES["smoke"]
    names = [(r["setting"].split(",")[0], r["rule"]) for r in result["rows"]]
    assert names == [("readme", n) for n in s["readme_rules"] * 4] + [
        ("rules.py", n) for n in s["mnist_rules"]
    ]
    for row in result["rows"]:
        assert row["off_s"] > 0 and row["on_s"] > 0
        assert row["ratio"] == pytest.approx(row["on_s"] / row["off_s"])
        assert row["met"] == (row["ratio"] <= alignment.TARGET)
    # The two contenders train alike; only one measures alignment.
    run = alignment.rules_setting(1, s["mnist_steps"], s["mnist_every"][0])
    on = run(alignment.RULES["fa"], s["mnist_every"][1])
    off = run(alignment.RULES["fa"], None)
    assert off.alignment is None and np.all(np.isfinite(on.alignment.grad))
    jax.tree.map(np.testing.assert_array_equal, on.params, off.params)


@pytest.mark.slow
def test_conv_study(tmp_path):
    from benchmarks import conv

    result = conv.bench_conv("smoke", 1)
    assert_reported(tmp_path, "conv", result, ["## Conv nets"], [])
    (row,) = result["step"]["rows"]
    assert row["net"] == "convbase" and row["manual_s"] > 0 < row["autodiff_s"]
    assert result["seeds"]["seeds"] == 2 and result["seeds"]["auto_strategy"]
    labels = {r["strategy"] for r in result["strategies"]["rows"]}
    assert labels == {"vmap", "sequential"}


@pytest.mark.slow  # four launches of the command: .ci/run runs it
@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity")
    or len(os.sched_getaffinity(0)) < 2
    or __import__("shutil").which("taskset") is None,
    reason="needs taskset and two usable cores",
)
def test_processes_command_benchmark_times_both_layouts(tmp_path):
    from benchmarks import processes_command

    result = processes_command.main(1, 20, results=tmp_path)
    assert result["devices"]["two"].endswith("in 2 processes")
    assert all(len(t) == 1 and t[0] > 0 for t in result["times_s"].values())
    assert result["ratio"] == result["median_s"]["two"] / result["median_s"]["one"]
    written = sorted(p.suffix for p in tmp_path.iterdir())
    assert written == [".json", ".md"]


@pytest.mark.slow  # about a minute of compiles at smoke size: .ci/run runs it
def test_curvature_study(tmp_path):
    from benchmarks import curvature

    result = curvature.bench_curvature("smoke", 1)
    assert_reported(tmp_path, "curvature", result, ["## Curvature from"], [])
    assert result["seeds"]["seeds"] == 2 and result["single"]["seeds"] is None
    for s in result.values():
        assert set(s["over_step"]) == set(curvature.CONTENDERS) - {"step"}
        assert all(t > 0 for t in s["median_s"].values())
        assert set(s["met"]) == set(s["targets"])
        assert s["targets"]["diag_ggn"] == s["sizes"][-1] + 1
    backpack = result["single"]["backpack"]
    if backpack["missing"] is None:  # the same quantities as BackPACK's
        assert all(e < 1e-5 for e in backpack["max_rel_error"].values())
    else:
        assert "skipped" in report.markdown(
            {
                "curvature": result,
                "environment": environment(),
                "size": "smoke",
                "repeats": 1,
            }
        )
