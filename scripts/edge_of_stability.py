"""The edge of stability on MNIST-1D: full-batch gradient descent with step η
drives the sharpness, the top eigenvalue of the loss's Hessian, up to 2/η and
holds it there (Cohen, Kaur, Li, Kolter & Talwalkar, ICLR 2021).

A 40-h-h-10 tanh MLP, mean ½‖ŷ − y‖² on one-hot targets (the MSE setting of
Cohen et al.), trains by full-batch gradient descent on the first --examples
MNIST-1D training examples, for every η of --lrs and --seeds seeds: all runs in
one compiled program (``jp.train_seeds`` with an ``hparams`` grid over η). The
trainer measures the sharpness every --every steps (``diagnostics_every``:
``jp.curvature.top_eigenvalue`` by --iters steps of power iteration on the
hand-written R-operator's H v, from a fresh random start each time), with the
gradient norm, Byrd et al.'s norm test and the gradient signal-to-noise ratio
(``jp.curvature.grad_diagnostics``). The same runs also train without
diagnostics: the cost of measuring is the wall time of the two (each program's
compile timed apart from its steps).

Output in --out DIR: results.md (also printed), results.json and
sharpness.png (per η: the sharpness's median and quartiles over seeds with the
2/η line, and the training loss).

    python scripts/edge_of_stability.py [--seeds 64] [--steps 1500]
        [--lrs 0.3 0.4] [--every 50] [--examples 1000] [--width 32] [--out DIR]
    python scripts/edge_of_stability.py --quick   # digits, 8 seeds: seconds
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import _setup  # noqa: F401  (jp.use_all_cores(), before jax starts)
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxprop as jp


def load_data(name: str, n: int) -> tuple[jax.Array, jax.Array]:
    """The first n training examples (x standardized per feature) and one-hot y."""
    data = jp.data.mnist1d() if name == "mnist1d" else jp.data.digits()
    x, labels = np.asarray(data.x[:n], np.float32), np.asarray(data.y[:n])
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    return jnp.asarray(x), jax.nn.one_hot(labels, 10, dtype=jnp.float32)


def train(net, keys, x, y, lrs, args, diagnostics: bool):
    """(result, compile seconds (init and first block), seconds of the other
    steps) of every run: jp.Trainer, timed apart."""
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=float(lrs[0]))
    kw = dict(hparams={"learning_rate": jnp.asarray(lrs)}, log_every=args.log_every)
    if diagnostics:
        kw |= dict(diagnostics_every=args.every, sharpness_iters=args.iters)
    trainer = jp.Trainer(net, keys, x, y, opt, args.steps, **kw)
    start = time.perf_counter()
    state = trainer.advance(trainer.init(), args.log_every)
    jax.block_until_ready(state.runs)
    compiled = time.perf_counter() - start
    start = time.perf_counter()
    state = trainer.advance(state, args.steps - args.log_every)
    jax.block_until_ready(state.runs)
    return trainer.result(state), compiled, time.perf_counter() - start


def quartiles(a: np.ndarray, axis: int = 0) -> np.ndarray:
    """(25%, 50%, 75%) over ``axis``, NaN (diverged) runs left out."""
    import warnings

    with warnings.catch_warnings():  # all-NaN columns: NaN, said once below
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanpercentile(a, [25, 50, 75], axis=axis)


def summarize(result, lrs, args) -> list[dict]:
    """Per η: 2/η and what the sharpness (n_seeds, n_measures) did."""
    steps = np.asarray(result.diagnostics_steps[0, 0])
    rows = []
    for i, eta in enumerate(lrs):
        lam = np.asarray(result.diagnostics.sharpness[i])
        diverged = np.asarray(result.diverged[i])
        q = quartiles(lam[~diverged]) if (~diverged).any() else np.full((3, 1), np.nan)
        median, limit = q[1], 2 / eta
        reached = np.flatnonzero(median >= 0.9 * limit)
        last = lam[~diverged, -(len(steps) // 4 or 1) :]  # the last quarter
        rows.append({
            "eta": float(eta),
            "two_over_eta": limit,
            "sharpness_first_median": float(median[0]),
            "sharpness_last_median": float(median[-1]),
            "sharpness_last_quartiles": [float(q[0, -1]), float(q[2, -1])],
            "last_quarter_over_limit_median": float(np.nanmedian(last / limit))
            if last.size else None,
            "first_step_median_at_0.9_limit": int(steps[reached[0]])
            if reached.size else None,
            "loss_last_median": float(np.nanmedian(result.losses[i, :, -1])),
            "diverged": int(diverged.sum()),
            "seeds": int(diverged.size),
        })  # fmt: skip
    return rows


def plot(result, lrs, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.asarray(result.diagnostics_steps[0, 0])
    n_blocks = result.losses.shape[-1]
    loss_steps = np.arange(1, n_blocks + 1) * (steps[-1] // n_blocks)
    fig, axes = plt.subplots(
        2, len(lrs), figsize=(4.2 * len(lrs), 5.6), sharex=True, squeeze=False
    )
    for i, eta in enumerate(lrs):
        top, bottom = axes[0, i], axes[1, i]
        q = quartiles(np.asarray(result.diagnostics.sharpness[i]))
        top.fill_between(steps, q[0], q[2], alpha=0.3, label="quartiles")
        top.plot(steps, q[1], label="median")
        top.axhline(2 / eta, color="k", ls="--", lw=1, label="2/η")
        top.set_title(f"η = {eta:g}")
        top.set_ylabel("sharpness λ_max(H)")
        top.legend(loc="lower right", fontsize=8)
        q = quartiles(np.asarray(result.losses[i]))
        bottom.fill_between(loss_steps, q[0], q[2], alpha=0.3)
        bottom.plot(loss_steps, q[1])
        bottom.set_yscale("log")
        bottom.set_ylabel("training loss")
        bottom.set_xlabel("step")
    n = result.losses.shape[1]
    fig.suptitle(f"Full-batch GD, {n} seeds per η: median and quartiles")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(rows, times, args, net) -> str:
    on, off = times["with diagnostics"], times["training alone"]
    per_step = {
        k: v["steps_s"] / (args.steps - args.log_every) for k, v in times.items()
    }
    lines = [
        f"# Edge of stability: {args.data}, {'-'.join(map(str, net.sizes))} tanh, "
        f"mse, full batch of {args.examples}, {args.seeds} seeds per η, "
        f"{args.steps} steps",
        "",
        "Command: `python scripts/edge_of_stability.py " + " ".join(args.argv) + "`.",
        "",
        f"jax {jax.__version__}, {len(jax.devices())} {jax.devices()[0].platform} "
        f"device(s); sharpness every {args.every} steps, {args.iters} "
        "power-iteration steps.",
        "",
        "| η | 2/η | sharpness at first measure | last (median [quartiles]) "
        "| last quarter / (2/η), median | first step median ≥ 0.9·2/η "
        "| final loss | diverged |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lo, hi = r["sharpness_last_quartiles"]
        ratio = r["last_quarter_over_limit_median"]
        lines.append(
            f"| {r['eta']:g} | {r['two_over_eta']:.1f} "
            f"| {r['sharpness_first_median']:.2f} "
            f"| {r['sharpness_last_median']:.2f} [{lo:.2f}, {hi:.2f}] "
            f"| {'-' if ratio is None else f'{ratio:.2f}'} "
            f"| {r['first_step_median_at_0.9_limit'] or '-'} "
            f"| {r['loss_last_median']:.4f} | {r['diverged']}/{r['seeds']} |"
        )
    lines += [
        "",
        "| program | compile + first block (s) | other steps (s) | per step (ms) |",
        "| --- | --- | --- | --- |",
    ]
    for name, t in times.items():
        lines.append(
            f"| {name} | {t['compile_s']:.1f} | {t['steps_s']:.1f} "
            f"| {1e3 * per_step[name]:.2f} |"
        )
    lines += [
        "",
        f"Diagnostics cost {on['steps_s'] / off['steps_s']:.2f}× training alone "
        f"in steps ({sum(on.values()) / sum(off.values()):.2f}× with the compiles).",
    ]  # fmt: skip
    return "\n".join(lines)


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=["mnist1d", "digits"], default="mnist1d")
    parser.add_argument("--seeds", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.3, 0.4])
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("eos-results"))
    parser.add_argument(
        "--quick", action="store_true", help="digits, 8 seeds, 200 steps"
    )
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    if args.quick:
        args.data, args.seeds, args.steps, args.examples = "digits", 8, 200, 300
        args.every, args.width, args.log_every = 25, 16, 5
    if min(args.seeds, args.steps, args.every, args.iters, args.examples) < 1:
        parser.error(
            "--seeds, --steps, --every, --iters and --examples must be positive"
        )
    if args.every % args.log_every or args.steps % args.log_every:
        parser.error("--log-every must divide --every and --steps")
    if min(args.lrs) <= 0:
        parser.error("--lrs must be positive")
    return args


def main(argv=None):
    args = parse(argv)
    x, y = load_data(args.data, args.examples)
    net = jp.MLP((x.shape[1], args.width, args.width, 10), "tanh", "identity", "mse")
    keys = jax.random.split(jax.random.key(args.seed), args.seeds)
    lrs = np.asarray(args.lrs)
    times = {}
    for name, on in [("training alone", False), ("with diagnostics", True)]:
        result, compiled, steps_s = train(net, keys, x, y, lrs, args, on)
        times[name] = {"compile_s": compiled, "steps_s": steps_s}
    rows = summarize(result, lrs, args)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(result, lrs, args.out / "sharpness.png")
    text = report(rows, times, args, net)
    (args.out / "results.md").write_text(text + "\n")
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    (args.out / "results.json").write_text(
        json.dumps({"settings": settings, "per_eta": rows, "times": times}, indent=1)
    )
    print(text)
    print(f"\nwrote {args.out}/results.md, results.json, sharpness.png")


if __name__ == "__main__":
    sys.exit(main())
