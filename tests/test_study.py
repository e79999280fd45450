"""Several rules in one command (a study), and comparing runs: the settings each
rule gets, the folder and its resumption, and the table's statistics checked
against independent computations."""

import json
import math

import jax
import numpy as np
import pytest
import scipy.stats

import jaxprop as jp
from jaxprop._cli import main
from jaxprop._experiment import (
    Compared,
    build,
    comparison,
    format_table,
    make_config,
    read_folders,
    study_configs,
    study_rules,
)
from jaxprop._experiment.compare import difference, pairing

TINY = [
    "--data", "moons", "--n-train", "32", "--n-test", "32", "--sizes", "2,4,4,1",
    "--lr", "0.2,0.5", "--steps", "40", "--seeds", "3", "--log-every", "10",
    "--quiet",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _started_backend():
    """In-process calls of the command leave this worker's devices as they are."""
    jax.devices()


def _assert_same_leaves(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------- settings
def test_a_study_is_two_or_more_rules_by_their_short_names():
    assert study_rules({"rule": "fa"}) is None
    assert study_rules({}) is None
    assert study_rules({"rule": "backprop, feedback_alignment,kp"}) == [
        "backprop", "fa", "kp",
    ]  # fmt: skip
    assert study_rules({"rule": ["sign", "dfa"]}) == ["sign", "dfa"]  # TOML list
    with pytest.raises(ValueError, match="names 'fa' twice"):
        study_rules({"rule": "fa,feedback_alignment"})
    with pytest.raises(ValueError, match="Unknown --rule 'bogus'"):
        study_rules({"rule": "fa,bogus"}, lambda k: "--" + k)
    with pytest.raises(ValueError, match="grad and rule: give one"):
        study_rules({"rule": "fa,dfa", "grad": "manual"})


def test_each_rule_gets_the_settings_it_reads_and_no_other():
    values = {"data": "moons", "rule": "backprop,fa,kp", "feedback_scale": "0.5",
              "kp_decay": "0.01", "alignment_every": "10", "steps": "100"}  # fmt: skip
    configs = study_configs(values)
    assert list(configs) == ["backprop", "fa", "kp"]
    bp, fa, kp = configs.values()
    assert (bp.feedback_scale, fa.feedback_scale, kp.feedback_scale) == (None, 0.5, 0.5)
    assert (fa.kp_decay, kp.kp_decay) == (None, 0.01)
    assert (bp.alignment_every, fa.alignment_every) == (None, 10)
    # The rest is the same for every rule: the study is paired.
    for c in (fa, kp):
        assert (c.seed, c.seeds, c.data, c.lr, c.steps) == (0, 1, "moons", (0.1,), 100)
    # A single rule's config is what make_config gives that rule alone.
    assert fa == make_config({k: v for k, v in values.items() if "kp" not in k}
                             | {"rule": "fa"})  # fmt: skip


def test_a_setting_no_rule_of_the_study_reads_is_refused():
    with pytest.raises(ValueError, match="kp_decay applies to rule kp only; none of"):
        study_configs({"rule": "backprop,fa", "kp_decay": "0.1"})
    # One rule's own check names the rule.
    with pytest.raises(ValueError, match="rule autodiff: clip_norm"):
        study_configs({"rule": "backprop,autodiff", "clip_norm": "1",
                       "noise_multiplier": "1"})  # fmt: skip


def test_the_rules_of_a_study_start_from_the_same_params_and_batches():
    configs = study_configs({"data": "moons", "rule": "backprop,kp",
                             "seeds": "3", "batch_size": "8"})  # fmt: skip
    inits = [build(c).trainer for c in configs.values()]
    params = [t.runs(t.init()).params for t in inits]
    for p in params[1:]:
        _assert_same_leaves(p, params[0])


# ------------------------------------------------------------ the statistics
def _run(label, accuracy, seed=0, data="moons", lr=(0.1,), sha="s", diverged=None):
    """A Compared with final held-out accuracies ``accuracy`` (n_lr, n_seeds)."""
    accuracy = np.asarray(accuracy, float)
    n_lr, n_seeds = accuracy.shape
    config = make_config({"data": data, "seed": seed, "seeds": n_seeds, "lr": lr})
    curves = {
        "steps": np.array([10, 20]),
        "losses": np.ones((n_lr, n_seeds, 2)),
        "eval_steps": np.array([10, 20]),
        "eval_accuracy": np.stack([accuracy / 2, accuracy], -1),
        "diverged": np.zeros((n_lr, n_seeds), bool) if diverged is None else diverged,
    }
    return Compared(label, config, sha, "eval_accuracy", curves)


def test_paired_differences_are_the_mean_and_t_interval_of_per_seed_differences():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.7, 0.9, (1, 8))
    b = a - rng.uniform(0.0, 0.1, (1, 8))
    doc = comparison([_run("bp", a), _run("fa", b)])
    d = doc["rows"][1]["difference"]
    diff = b[0] - a[0]
    half = scipy.stats.t.ppf(0.975, 7) * diff.std(ddof=1) / math.sqrt(8)
    assert d["paired"] and d["n"] == 8
    np.testing.assert_allclose([d["mean"], d["ci95_low"], d["ci95_high"]],
                               [diff.mean(), diff.mean() - half, diff.mean() + half],
                               rtol=1e-12)  # fmt: skip
    assert doc["pairing"]["fa"].startswith("paired seed by seed")
    # The table's mean and interval of each run are its own summary.
    row = doc["rows"][0]
    s = jp.summarize(a[0])
    np.testing.assert_allclose([row["mean"], row["ci95_low"], row["ci95_high"]],
                               [s.mean, s.ci_low, s.ci_high], rtol=1e-12)  # fmt: skip


def test_unpaired_differences_are_welch_intervals_and_say_why():
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.6, 0.9, (1, 6)), rng.uniform(0.5, 0.8, (1, 9))
    doc = comparison([_run("bp", a), _run("fa", b, seed=100)])
    d = doc["rows"][1]["difference"]
    assert not d["paired"] and d["n"] == [9, 6]
    # Welch–Satterthwaite by hand.
    va, vb = b[0].var(ddof=1) / 9, a[0].var(ddof=1) / 6
    df = (va + vb) ** 2 / (va**2 / 8 + vb**2 / 5)
    mean = b[0].mean() - a[0].mean()
    half = scipy.stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    want = [mean, mean - half, mean + half]
    np.testing.assert_allclose([d["mean"], d["ci95_low"], d["ci95_high"]], want,
                               rtol=1e-10)  # fmt: skip
    assert doc["pairing"]["fa"] == (
        "unpaired: seeds differ (seed 100, 9 seeds against seed 0, 6 seeds)"
    )


def test_pairing_needs_the_same_seeds_and_the_same_data():
    ref = _run("a", [[0.8, 0.9]])
    assert pairing(_run("b", [[0.7, 0.8]]), ref) is None
    assert "seeds differ" in pairing(_run("b", [[0.7, 0.8, 0.9]]), ref)
    assert pairing(_run("b", [[0.7, 0.8]], data="spirals"), ref) == "data differ (data)"
    assert "SHA-256" in pairing(_run("b", [[0.7, 0.8]], sha="t"), ref)


def test_diverged_runs_are_counted_and_left_out_pairwise():
    a = np.array([[0.8, 0.9, 0.85, 0.7]])
    diverged = np.array([[False, True, False, False]])
    b = np.array([[0.6, 0.95, 0.8, 0.65]])
    doc = comparison([_run("bp", a), _run("fa", b, diverged=diverged)])
    row = doc["rows"][1]
    assert (row["diverged"], row["runs"], row["n"]) == (1, 4, 3)
    assert row["diverged_fraction"] == 0.25
    d = row["difference"]
    assert d["n"] == 3
    np.testing.assert_allclose(d["mean"], np.mean([-0.2, -0.05, -0.05]), rtol=1e-12)
    table = format_table(doc)
    assert "| fa | 0.1 |" in table and "1/4 (25%)" in table and "paired" in table


def test_a_learning_rate_the_reference_lacks_is_compared_to_its_best():
    ref = _run("bp", [[0.6, 0.65], [0.9, 0.8]], lr=(0.1, 0.3))
    doc = comparison([ref, _run("fa", [[0.5, 0.6]], lr=(1.0,))])
    d = doc["rows"][-1]["difference"]
    assert d["reference_lr"] == 0.3
    np.testing.assert_allclose(d["mean"], np.mean([0.5 - 0.9, 0.6 - 0.8]))
    assert "(vs lr 0.3)" in format_table(doc)


def test_difference_catches_a_shift_of_a_tenth_of_a_percent():
    rng = np.random.default_rng(2)
    a = rng.uniform(0.8, 0.9, 64)
    same = difference(a, a, paired=True)
    assert same["mean"] == 0
    shifted = difference(a * 1.001, a, paired=True)
    assert shifted["ci95_low"] > 0  # the interval excludes 0


def test_runs_with_other_metrics_or_one_run_are_refused():
    ref = _run("a", [[0.8, 0.9]])
    other = ref._replace(label="b", headline="train_loss")
    with pytest.raises(ValueError, match="b reports train_loss and a eval_accuracy"):
        comparison([ref, other])
    with pytest.raises(ValueError, match="two or more runs"):
        comparison([ref])


# ------------------------------------------------------- the command, end to end
@pytest.mark.slow  # seconds of compiles: .ci/run runs it
def test_a_study_trains_each_rule_into_one_folder_with_its_comparison(tmp_path, capsys):
    out = tmp_path / "study"
    code = main(["train", *TINY, "--rule", "backprop,fa", "--out", str(out)])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "| fa | 0.5 |" in stdout and "comparison in" in stdout
    names = {p.name for p in out.iterdir()}
    assert names == {"study.json", "backprop", "fa", "comparison.md",
                     "comparison.json", "comparison.png"}  # fmt: skip
    study = json.loads((out / "study.json").read_text())
    assert study["rules"] == ["backprop", "fa"]
    assert (out / "backprop" / "gradcheck.txt").exists()  # once: the net's check

    saved = jp.load_run(out)
    assert isinstance(saved, jp.SavedStudy) and list(saved) == ["backprop", "fa"]
    assert saved["fa"].config.rule == "fa" and saved.comparison["reference"] == (
        "backprop"
    )
    alone = jp.load_run(out / "fa")
    _assert_same_leaves(saved["fa"].params, alone.params)
    # The table's paired differences are those of the two folders' metrics.json.
    runs = {r: json.loads((out / r / "metrics.json").read_text())["runs"]
            for r in ("backprop", "fa")}  # fmt: skip
    rows = {(r["label"], r["lr"]): r for r in saved.comparison["rows"]}
    for lr in (0.2, 0.5):
        acc = {r: np.array([x["eval_accuracy"] for x in runs[r] if x["lr"] == lr])
               for r in runs}  # fmt: skip
        d = rows[("fa", lr)]["difference"]
        np.testing.assert_allclose(d["mean"], np.mean(acc["fa"] - acc["backprop"]),
                                   rtol=1e-6)  # fmt: skip
        assert d["paired"]
    # compare of the study's folder gives the same table.
    assert main(["compare", str(out), "--out", str(tmp_path / "c")]) == 0
    again = json.loads((tmp_path / "c" / "comparison.json").read_text())
    assert again == saved.comparison
    # A second study in the same folder is refused: --resume goes on with it.
    assert main(["train", *TINY, "--rule", "backprop,fa", "--out", str(out)]) == 2
    assert "already holds a study" in capsys.readouterr().err


@pytest.mark.slow  # several compiles: .ci/run runs it
def test_an_interrupted_study_resumes_to_the_same_bits(tmp_path, capsys, monkeypatch):
    from jaxprop._experiment import driver

    whole = tmp_path / "whole"
    rules = ["--rule", "backprop,dfa,sign"]
    assert main(["train", *TINY, *rules, "--out", str(whole)]) == 0
    train_chunks, calls = driver.train_chunks, []

    def interrupted(exp, checkpoint, *, on_checkpoint=None, **kw):
        calls.append(exp.config.rule)
        if exp.config.rule == "dfa":  # a checkpoint was written, then Ctrl-C
            on_checkpoint(checkpoint)
            raise KeyboardInterrupt
        return train_chunks(exp, checkpoint, on_checkpoint=on_checkpoint, **kw)

    monkeypatch.setattr(driver, "train_chunks", interrupted)
    cut = tmp_path / "cut"
    assert main(["train", *TINY, *rules, "--out", str(cut)]) == 130
    err = capsys.readouterr().err
    assert f"jaxprop train --resume {cut} continues from dfa's last checkpoint" in err
    assert not (cut / "sign").exists() and (cut / "dfa" / "checkpoint.npz").exists()
    monkeypatch.setattr(driver, "train_chunks", train_chunks)
    # Only --steps goes with --resume.
    assert main(["train", "--resume", str(cut), "--seeds", "4"]) == 2
    assert "drop --seeds" in capsys.readouterr().err
    assert main(["train", "--resume", str(cut)]) == 0
    a, b = jp.load_run(whole), jp.load_run(cut)
    for rule in ("backprop", "dfa", "sign"):
        _assert_same_leaves(a[rule].params, b[rule].params)
    assert a.comparison == b.comparison


@pytest.mark.slow  # several compiles: .ci/run runs it
def test_a_study_extended_by_steps_equals_one_given_them_at_first(tmp_path):
    short, long = tmp_path / "short", tmp_path / "long"
    rules = ["--rule", "backprop,kp"]
    assert main(["train", *TINY, *rules, "--out", str(short)]) == 0
    # kp not started yet: it must take the schedule the others resolved.
    import shutil

    shutil.rmtree(short / "kp")
    assert main(["train", "--resume", str(short), "--steps", "80", "--quiet"]) == 0
    steps80 = [a if a != "40" else "80" for a in TINY]
    assert main(["train", *steps80, *rules, "--out", str(long)]) == 0
    a, b = jp.load_run(short), jp.load_run(long)
    for rule in ("backprop", "kp"):
        assert a[rule].config.steps == 80
        _assert_same_leaves(a[rule].params, b[rule].params)


@pytest.mark.slow  # two runs and their compiles: .ci/run runs it
def test_compare_of_folders_trained_apart_says_unpaired_and_why(tmp_path, capsys):
    common = [a for a in TINY if a not in ("0.2,0.5",)]
    common[common.index("--lr") + 1 : common.index("--lr") + 1] = ["0.5"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", *common, "--rule", "fa", "--out", str(a),
                 "--no-gradcheck"]) == 0  # fmt: skip
    assert main(["train", *common, "--rule", "sign", "--seed", "7", "--out", str(b),
                 "--no-gradcheck"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "c")]) == 0
    stdout = capsys.readouterr().out
    assert "unpaired" in stdout
    assert (
        "b against a: unpaired: seeds differ (seed 7, 3 seeds against seed 0" in stdout
    )
    doc = json.loads((tmp_path / "c" / "comparison.json").read_text())
    assert [r["label"] for r in doc["rows"]] == ["a", "b"]
    assert (tmp_path / "c" / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    # Mistakes are one line, status 2.
    assert main(["compare", str(a)]) == 2
    assert "two or more runs" in capsys.readouterr().err
    assert main(["compare", str(a), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a run's folder" in err
    with pytest.raises(ValueError, match="the same run is given twice"):
        read_folders([a, a])


def test_a_study_without_out_prints_its_table_and_writes_nothing(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--data", "xor", "--sizes", "2,2,1", "--steps", "20",
                 "--seeds", "2", "--log-every", "10", "--quiet",
                 "--rule", "sign,backprop"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "comparison of the rules (train accuracy):" in out
    assert "| backprop | 0.1 |" in out and "- backprop against sign: paired" in out
    assert "comparison in" not in out and list(tmp_path.iterdir()) == []
