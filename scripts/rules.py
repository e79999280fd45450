"""Credit-assignment rules on MNIST-1D: accuracy over many seeds and alignment.

Backprop, autodiff (jax.grad, the oracle), feedback alignment (fa), direct
feedback alignment (dfa), sign symmetry (sign) and Kolen-Pollack (kp) train
MNIST-1D MLPs: 40-100-100-10 ReLU ("relu"), the same with tanh ("tanh") and
40-100x4-10 ReLU ("deep"); softmax cross-entropy, batch 100. Each rule's seeds
and learning rates run as one compiled program (``jp.train_seeds`` with an
``hparams`` grid), with the same seeds (initial weights, data order) for every
rule, so that rules can be compared seed by seed.

Optimizers. backprop, autodiff, fa, dfa and sign: Adam, learning rate in
{1e-3, 3e-3, 1e-2}. kp: plain SGD with weight decay, as Akrout et al. (2019)
train it: W ← (1 − d) W − η ∂W and, for the feedback, B ← (1 − d) B − η ∂W,
so that W − B decays as (1 − d)^t; d = 1e-3 per step and η in {0.1, 0.3, 1, 3}
(B's η is set per grid point to the optimizer's). backprop-sgd is backprop with
kp's optimizer, the control that separates the rule from the optimizer.

Learning-rate selection. 500 of the 4000 training examples are held out as a
validation set; the best learning rate of each rule and net is the one with
the highest mean validation accuracy (a diverged run counts as 0). The table
reports test accuracy (1000 examples) at that learning rate.

Alignment (``jp.Alignment``, degrees, against backprop on 1024 training
examples) is measured before training and every ~1/10 of the run: ∂W angle
(the rule's weight update against backprop's, per layer), δ angle (per
example, averaged over examples) and, for fa and kp, the angle between W^l and
its feedback B^l.

Output in --out DIR: results.md (the tables, also printed), results.json,
alignment.npz (median and quartiles across seeds of every curve) and
alignment-<net>.png (the angles per hidden layer per rule, median and IQR
across seeds, at the best learning rate).

    python scripts/rules.py [--seeds 64] [--steps 6000] [--nets relu tanh deep]
        [--rules backprop autodiff fa dfa sign kp backprop-sgd] [--out DIR]
        [--align-points 10] [--jobs 2]
    python scripts/rules.py --quick   # two moons, 4 seeds, 200 steps: seconds
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import _setup  # noqa: F401  (jp.use_all_cores(), before jax starts)
import jax
import numpy as np
import optax

import jaxprop as jp

RULES = ("backprop", "autodiff", "fa", "dfa", "sign", "kp", "backprop-sgd")
NETS = ("relu", "tanh", "deep")
ADAM_LRS = (1e-3, 3e-3, 1e-2)
SGD_LRS = (0.1, 0.3, 1.0, 3.0)
KP_DECAY = 1e-3  # d: weight decay per step of W (and of B)
N_VAL = 500
BATCH = 100
SGD_RULES = ("kp", "backprop-sgd")
# Δ in the table: the paired difference to backprop with the same optimizer.
REFERENCE = {r: "backprop" for r in RULES if r not in ("backprop", "backprop-sgd")}
REFERENCE["kp"] = "backprop-sgd"
FIELDS = ("grad", "delta", "feedback")  # jp.Alignment's
LABELS = ("∂W angle", "δ angle", "angle(W, B) of the layer above (fa, kp)")


def make_net(name: str, n_in: int, n_out: int, width: int) -> jp.MLP:
    hidden = (width,) * (4 if name == "deep" else 2)
    activation = "tanh" if name == "tanh" else "relu"
    return jp.MLP(
        (n_in, *hidden, n_out),
        activation,
        "identity",
        "softmax_cross_entropy",
        "mean",
    )


def describe_net(net: jp.MLP) -> str:
    return "-".join(map(str, net.sizes)) + f" {net.activation}"


def make_rule(name: str):
    return {
        "backprop": jp.rules.backprop,
        "backprop-sgd": jp.rules.backprop,
        "autodiff": jp.rules.autodiff,
        "fa": jp.rules.feedback_alignment,
        "dfa": jp.rules.direct_feedback_alignment,
        "sign": jp.rules.sign_symmetry,
        "kp": lambda: jp.rules.kolen_pollack(SGD_LRS[0], KP_DECAY),
    }[name]()


def optimizer_and_grid(name: str):
    if name in SGD_RULES:
        # W ← (1 − d) W − η ∂W, B's step under kp: the pairing at every η.
        lrs = np.asarray(SGD_LRS)
        opt = jp.rules.kolen_pollack_sgd(SGD_LRS[0], KP_DECAY)
        grid = {"optimizer.learning_rate": lrs}
        if name == "kp":  # B's rate is each grid point's η
            grid["rule.learning_rate"] = lrs
        return opt, lrs, grid
    lrs = np.asarray(ADAM_LRS)
    opt = optax.inject_hyperparams(optax.adam)(learning_rate=ADAM_LRS[0])
    return opt, lrs, {"learning_rate": lrs}


@functools.partial(jax.jit, static_argnums=(0, 1))
def initial_alignment(net, rule, params, rule_state, x, y):
    """jp.alignment of every run (leading (n_lrs, n_seeds) axes) before training."""
    one = lambda p, s: jp.alignment(net, rule, p, s, x, y)  # noqa: E731
    return jax.vmap(jax.vmap(one))(params, rule_state)


@functools.partial(jax.jit, static_argnums=0)
def accuracy(net, params, x, y):
    return jax.vmap(jax.vmap(lambda p: jp.accuracy(net, p, x, y)))(params)


def run_rule(name, net, keys, data, val, steps, align_every, log_every):
    """Trains every seed at every learning rate of one rule in one program.

    Returns a dict of NumPy arrays with leading (n_lrs, n_seeds) axes.
    """
    rule = make_rule(name)
    optimizer, lrs, hparams = optimizer_and_grid(name)
    trainer = jp.Trainer(
        net,
        keys,
        data.x,
        data.y,
        optimizer,
        steps,
        rule=rule,
        hparams=hparams,
        batch_size=BATCH,
        eval_data=(data.x_test, data.y_test),
        alignment_every=align_every,
        log_every=log_every,
        dtype="float32",
    )
    state = trainer.init()
    start = trainer.runs(state)
    initial = initial_alignment(
        net, rule, start.params, start.rule_state, data.x[:1024], data.y[:1024]
    )
    result = trainer.result(trainer.advance(state, steps))
    if name == "kp":
        assert np.allclose(result.rule_state.learning_rate[:, 0], lrs)
    diverged = np.asarray(result.diverged)
    test = np.asarray(result.eval_accuracy[..., -1], np.float64)
    valid = np.asarray(accuracy(net, result.params, *val), np.float64)
    test[diverged] = np.nan
    valid[diverged] = np.nan
    align = {}
    for field in FIELDS:
        curve = np.concatenate(
            [
                np.asarray(getattr(initial, field))[..., None],
                np.asarray(getattr(result.alignment, field)),
            ],
            axis=-1,
        )
        curve[diverged] = np.nan  # (n_lrs, n_seeds, L, n_align + 1)
        align[field] = curve
    align_steps = np.concatenate([[0], np.asarray(result.alignment_steps[0, 0])])
    return {
        "lrs": lrs,
        "test": test,
        "val": valid,
        "diverged": diverged,
        "align": align,
        "align_steps": align_steps,
    }


def quartiles(a, axis):
    """(q25, median, q75) over ``axis``, NaN left out (NaN where all are)."""
    out = np.full((3, *np.delete(a.shape, axis)), np.nan)
    ok = np.isfinite(a).any(axis=axis)
    if ok.any():
        moved = np.moveaxis(a, axis, -1)[ok]
        out[:, ok] = np.nanquantile(moved, [0.25, 0.5, 0.75], axis=-1)
    return out


def best_index(run) -> int:
    """The learning rate with the highest mean validation accuracy (diverged: 0)."""
    score = np.nan_to_num(run["val"], nan=0.0).mean(axis=1)
    return int(np.argmax(score))


def fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def fmt_angles(values) -> str:
    return " / ".join("–" if not np.isfinite(v) else f"{v:.0f}" for v in values)


def tables(results, nets, rules, n_seeds, steps) -> str:
    lines = [
        "| rule | net | lr (best) | test accuracy (mean, 95% CI) | "
        "Δ vs backprop, same optimizer (paired) | diverged | ∂W angle per layer, ° | "
        "δ angle per layer, ° |",
        "|---|---|---|---|---|---|---|---|",
    ]
    grid = [
        "| rule | net | lr | validation accuracy (mean) | test accuracy (mean) "
        "| diverged |",
        "|---|---|---|---|---|---|",
    ]
    for net_name in nets:
        for rule in rules:
            run = results[net_name][rule]
            i = best_index(run)
            acc = run["test"][i]
            s = jp.summarize(acc)
            acc_cell = (
                f"{s.mean:.3f} ({s.ci_low:.3f}–{s.ci_high:.3f})"
                if s.n > 1
                else f"{s.mean:.3f}"
            )
            delta_cell = "–"
            ref = results[net_name].get(REFERENCE.get(rule))
            if ref is not None:
                d = jp.summarize(acc - ref["test"][best_index(ref)])
                delta_cell = (
                    f"{d.mean:+.3f} ({d.ci_low:+.3f}–{d.ci_high:+.3f})"
                    if d.n > 1
                    else f"{d.mean:+.3f}"
                )
            n_div = int(run["diverged"][i].sum())
            final = {
                f: quartiles(run["align"][f][i][..., -1], axis=0)[1] for f in FIELDS
            }
            lines.append(
                f"| {rule} | {net_name} | {run['lrs'][i]:g} | {acc_cell} | "
                f"{delta_cell} | {n_div}/{n_seeds} | {fmt_angles(final['grad'])} | "
                f"{fmt_angles(final['delta'])} |"
            )
            for j, lr in enumerate(run["lrs"]):
                v, t = finite_mean(np.stack([run["val"][j], run["test"][j]]))
                grid.append(
                    f"| {rule} | {net_name} | {lr:g} | {fmt(v)} | {fmt(t)} | "
                    f"{int(run['diverged'][j].sum())}/{n_seeds} |"
                )
    head = (
        f"{n_seeds} seeds, {steps} steps. Test accuracy at the learning rate with "
        "the best mean validation accuracy, over the runs that did not diverge; "
        "Δ: the paired per-seed difference to backprop with the same optimizer "
        "(backprop-sgd for kp, backprop for the others) at its best learning "
        "rate. Angles: final median across seeds, layer 1 (input side) first; "
        "the output layer's δ is exact for every rule."
    )
    return "\n".join([head, "", *lines, "", "All learning rates:", "", *grid])


def plot(results, net_name, rules, path):
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    some = results[net_name][rules[0]]
    n_hidden = some["align"]["grad"].shape[2] - 1
    fig = Figure(figsize=(3.2 * n_hidden, 1.9 * len(rules) + 0.6), layout="constrained")
    axes = fig.subplots(len(rules), n_hidden, sharex=True, sharey=True, squeeze=False)
    for r, rule in enumerate(rules):
        run = results[net_name][rule]
        i = best_index(run)
        steps = run["align_steps"]
        for layer in range(n_hidden):
            ax = axes[r, layer]
            for field, color in zip(FIELDS, ("C0", "C1", "C2"), strict=True):
                # feedback[l + 1] is B^{l+1}, the matrix layer l's δ goes through
                at = layer + 1 if field == "feedback" else layer
                q = quartiles(run["align"][field][i][:, at], axis=0)
                if not np.isfinite(q[1]).any():
                    continue
                ax.fill_between(steps, q[0], q[2], color=color, alpha=0.25, lw=0)
                ax.plot(steps, q[1], color=color, marker=".")
            ax.axhline(90, color="0.6", lw=0.8, ls=":")
            ax.set_ylim(bottom=0)
            if r == 0:
                ax.set_title(f"layer {layer + 1}")
            if layer == 0:
                ax.set_ylabel(f"{rule}\n(lr {run['lrs'][i]:g})\ndegrees")
            if r == len(rules) - 1:
                ax.set_xlabel("step")
    fig.legend(
        handles=[
            Line2D([], [], color=color, marker=".", label=label)
            for color, label in zip(("C0", "C1", "C2"), LABELS, strict=True)
        ],
        loc="outside lower center",
        ncols=3,
        fontsize="small",
    )
    fig.suptitle(
        f"{net_name}: angle to backprop, median and IQR across seeds\n"
        "(hidden layers; the output layer's is 0 for every rule)",
        fontsize="medium",
    )
    fig.savefig(path, dpi=110)


def finite_mean(a):
    """Mean over the last axis of the finite values; None where there are none."""
    a = np.asarray(a, np.float64)
    ok = np.isfinite(a)
    n = ok.sum(axis=-1)
    mean = np.where(ok, a, 0).sum(axis=-1) / np.maximum(n, 1)
    return [None if k == 0 else float(m) for m, k in zip(mean, n, strict=True)]


def write(out: Path, text: str, results, nets, rules):
    """results.md, results.json, alignment.npz and alignment-<net>.png in out."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text)
    summary, curves = {}, {}
    for net_name in nets:
        for rule in rules:
            run = results[net_name][rule]
            i = best_index(run)
            s = jp.summarize(run["test"][i])
            entry = {
                "lrs": run["lrs"].tolist(),
                "best_lr": float(run["lrs"][i]),
                "test_mean": finite_mean(run["test"][i][None])[0],
                "test_ci": [s.ci_low, s.ci_high] if s.n > 1 else None,
                "test_mean_per_lr": finite_mean(run["test"]),
                # per learning rate and seed (null: diverged); seeds are paired
                # across rules
                "test_per_lr_seed": [
                    [None if not np.isfinite(v) else float(v) for v in row]
                    for row in run["test"]
                ],
                "val_mean_per_lr": finite_mean(run["val"]),
                "diverged_per_lr": run["diverged"].sum(axis=1).tolist(),
                "align_steps": run["align_steps"].tolist(),
            }
            curves[f"{net_name}/{rule}/steps"] = run["align_steps"]
            for field in FIELDS:
                q = quartiles(run["align"][field][i], axis=0)  # (3, L, n_align)
                entry[f"{field}_median_final"] = [
                    None if not np.isfinite(v) else float(v) for v in q[1, :, -1]
                ]
                curves[f"{net_name}/{rule}/{field}"] = q
            summary[f"{net_name}/{rule}"] = entry
    (out / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
    np.savez(out / "alignment.npz", **curves)
    for net_name in nets:
        plot(results, net_name, rules, out / f"alignment-{net_name}.png")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=None, help="default 64 (quick 4)")
    parser.add_argument(
        "--steps", type=int, default=None, help="default 6000 (quick 200)"
    )
    parser.add_argument(
        "--nets", nargs="+", choices=NETS, default=None, help="default all (quick relu)"
    )
    parser.add_argument("--rules", nargs="+", choices=RULES, default=list(RULES))
    parser.add_argument("--out", type=Path, default=Path("rules-study"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--align-points",
        type=int,
        default=10,
        help="alignment measures after step 0 (default 10: every ~1/10 of the run)",
    )
    parser.add_argument(
        "--jobs", type=int, default=2, help="rules trained at once (default 2)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="two moons, 8-unit layers, 4 seeds, 200 steps: a smoke test",
    )
    args = parser.parse_args(argv)
    seeds = args.seeds or (4 if args.quick else 64)
    steps = args.steps or (200 if args.quick else 6000)
    nets = args.nets or (["relu"] if args.quick else list(NETS))
    rules = list(dict.fromkeys(args.rules))
    if min(seeds, steps, args.jobs, args.align_points) < 1:
        parser.error("--seeds, --steps, --align-points and --jobs must be positive")

    if args.quick:
        full = jp.data.two_moons(jax.random.key(1), 300, 0.2, n_test=200)
        n_in, n_out, width, n_val = 2, 2, 8, 100
    else:
        full = jp.data.mnist1d()
        n_in, n_out, width, n_val = 40, 10, 100, N_VAL
    x, y = np.asarray(full.x), np.asarray(full.y)
    # Validation: the last n_val training examples (MNIST-1D's are shuffled).
    train = jp.data.split(x, y, n_val)
    data = jp.data.Dataset(train.x, train.y, full.x_test, full.y_test)
    val = (train.x_test, train.y_test)

    log_every = math.gcd(steps, max(1, steps // 100))
    align_every = log_every * max(1, (steps // args.align_points) // log_every)
    keys = jax.random.split(jax.random.key(args.seed), seeds)
    where = "two moons" if args.quick else "MNIST-1D"
    print(
        f"{where}: {len(data.x)} train / {len(val[0])} validation / "
        f"{len(data.x_test)} test; {seeds} seeds, {steps} steps, batch {BATCH}, "
        f"alignment every {align_every} steps; {len(jax.devices())} "
        f"{jax.devices()[0].platform} device(s)",
        flush=True,
    )
    results = {}
    total = time.perf_counter()
    for net_name in nets:
        net = make_net(net_name, n_in, n_out, width)
        results[net_name] = {}

        def one(rule, net=net):
            start = time.perf_counter()
            run = run_rule(rule, net, keys, data, val, steps, align_every, log_every)
            return run, time.perf_counter() - start

        # Two rules at a time: one compiles (XLA compiles on one core) while
        # the other trains.
        with ThreadPoolExecutor(args.jobs) as pool:
            for rule, (run, seconds) in zip(rules, pool.map(one, rules), strict=True):
                results[net_name][rule] = run
                i = best_index(run)
                print(
                    f"  {describe_net(net)}  {rule:12s} {seconds:6.1f} s"
                    f"  best lr {run['lrs'][i]:g}: test "
                    f"{fmt(finite_mean(run['test'][i][None])[0])}",
                    flush=True,
                )
    seconds = time.perf_counter() - total

    text = tables(results, nets, rules, seeds, steps)
    command = " ".join(sys.argv[1:] if argv is None else argv)
    described = ", ".join(
        f"{n} ({describe_net(make_net(n, n_in, n_out, width))})" for n in nets
    )
    setup = (
        f"# Credit-assignment rules: {where}\n\n"
        f"Command: `python scripts/rules.py {command}`. Nets: {described}. "
        f"Adam lrs {list(ADAM_LRS)}; for {', '.join(SGD_RULES)} SGD lrs "
        f"{list(SGD_LRS)}, weight decay {KP_DECAY:g} per step. {seconds:.0f} s "
        f"on {len(jax.devices())} {jax.devices()[0].platform} device(s).\n"
    )
    print()
    print(text)
    write(args.out, setup + "\n" + text + "\n", results, nets, rules)
    print(f"\n{seconds:.0f} s; written to {args.out}/")
    return results


if __name__ == "__main__":
    main()
