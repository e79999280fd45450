"""Training many seeds: how throughput scales with the number of runs, per strategy.

- ``seed-scaling``: the reference XOR network (float32, full-batch SGD) trained
  from 1 to 65536 seeds with each of ``jp.train_seeds``' strategies: ``vmap``
  (all runs in one batched program), ``sequential`` (one run per device at a
  time), ``chunked`` (vmapped chunks of 256 runs, one after another) and
  ``auto``, plus a Python loop calling the jitted single-run ``jp.train`` once per
  seed, the baseline that batching must beat. Throughput is seed-steps per
  second.
- ``log-every``: what the default ``log_every`` costs: XOR over many seeds
  (float32, default strategy) with the default (chosen from the size of the
  record, ``jaxprop._engine.train.LOG_BYTES``), 1, 10, 100 and one block of every
  step, same run, interleaved (issue 14: the default within 10% of the best),
  at 16384 seeds (the issue's workload) and 65536 (its throughput target,
  ≥ 1.2e8 seed-epochs/s on 2 cores).
- ``strategies``: the same strategies at a fixed number of seeds as the network
  grows, which locates the network size from which vmap stops paying.
"""

from __future__ import annotations

import jax
import optax

import jaxprop as jp
from benchmarks._common import median, timed

STRATEGIES = ("vmap", "sequential", "chunked", "auto")
CHUNK = 256
#: On a GPU or TPU, ``sequential`` takes one run's steps at a time, each step a
#: few kernel launches: at 65536 seeds × 500 steps a call would take minutes
#: (an estimate, not measured), so there it runs up to this many seeds.
ACCELERATOR_SEQUENTIAL_MAX = 256

SIZES = {
    # (seed counts, steps, largest seed count for the Python loop)
    "seed-scaling": {
        "full": ((1, 4, 16, 64, 256, 1024, 4096, 16384, 65536), 500, 1024),
        "quick": ((1, 16, 256, 4096), 100, 64),
        "smoke": ((1, 8), 10, 2),
    },
    # (seed counts, steps)
    "log-every": {
        "full": ((1024, 16384, 65536), 2000),
        "quick": ((4096,), 500),
        "smoke": ((8,), 100),
    },
    # (seeds, steps, batch, widths)
    "strategies": {
        "full": (16, 100, 128, (8, 32, 128, 512)),
        "quick": (8, 20, 64, (8, 256)),
        "smoke": (4, 10, 16, (8,)),
    },
}


def _xor():
    net = jp.MLP((2, 2, 1), "sigmoid", "sigmoid", "mse", "sum")
    x, y = jp.data.xor()
    return net, x, y


def bench_seed_scaling(size: str, repeats: int) -> dict:
    """Seed-steps per second of each strategy and of a Python loop, vs seeds."""
    seed_counts, steps, loop_max = SIZES["seed-scaling"][size]
    on_cpu = jax.devices()[0].platform == "cpu"
    sequential_max = None if on_cpu else ACCELERATOR_SEQUENTIAL_MAX
    net, x, y = _xor()
    sgd = optax.sgd(0.1)  # one object: a new one would be a new program
    rows = []
    for n in seed_counts:
        keys = jax.random.split(jax.random.key(0), n)

        def run(strategy, keys=keys, n=n):
            return lambda: jp.train_seeds(
                net,
                keys,
                x,
                y,
                sgd,
                steps,
                scheme="uniform01",
                strategy=strategy,
                chunk_size=min(CHUNK, n) if strategy == "chunked" else None,
                dtype="float32",
                log_every=steps,
            )

        contenders = {
            s: run(s)
            for s in STRATEGIES
            if s != "sequential" or sequential_max is None or n <= sequential_max
        }
        if n <= loop_max:
            params = [net.init(k, "uniform01", "float32") for k in keys]

            def python_loop(params=params):
                return [
                    jp.train(net, p, x, y, sgd, steps, log_every=steps) for p in params
                ]

            contenders["python loop"] = python_loop
        row = {"seeds": n}
        for name, (_first, times) in timed(contenders, repeats).items():
            row[name] = n * steps / median(times)
        row["best"] = max((k for k in row if k != "seeds"), key=row.get)
        rows.append(row)
        print(
            f"  {n:>6} seeds: "
            + ", ".join(f"{k} {row[k]:.3g}" for k in contenders)
            + " seed-steps/s"
        )
    return {
        "network": "XOR 2-2-1 sigmoid, full batch of 4, SGD 0.1, float32",
        "steps": steps,
        "chunk_size": CHUNK,
        "python_loop_max_seeds": loop_max,
        "sequential_max_seeds": sequential_max,
        "devices": len(jax.devices()),
        "rows": rows,
    }


def bench_strategies(size: str, repeats: int) -> dict:
    """Seed-steps per second of each strategy as the network grows."""
    n_seeds, steps, batch, widths = SIZES["strategies"][size]
    keys = jax.random.split(jax.random.key(0), n_seeds)
    sgd = optax.sgd(0.01)
    chunk = {"chunked": max(2, n_seeds // 4)}
    rows = []
    for width in widths:
        net = jp.MLP(
            (32, width, width, 10), "relu", "identity", "softmax_cross_entropy", "mean"
        )
        x, y = jp.data.blobs(jax.random.key(1), batch, n_classes=10, n_features=32)

        def contender(strategy, net=net, x=x, y=y):
            return lambda: jp.train_seeds(
                net,
                keys,
                x,
                y,
                sgd,
                steps,
                strategy=strategy,
                chunk_size=chunk.get(strategy),
                dtype="float32",
                log_every=steps,
            )

        row = {"width": width, "flops_per_seed_step": net.flops(batch)}
        for strategy, (_, times) in timed(
            {s: contender(s) for s in STRATEGIES}, repeats
        ).items():
            row[strategy] = n_seeds * steps / median(times)
        rows.append(row)
        print(
            f"  width {width:>5}: "
            + ", ".join(f"{k} {row[k]:.3g}" for k in STRATEGIES)
            + " seed-steps/s"
        )
    return {"n_seeds": n_seeds, "steps": steps, "batch": batch, "rows": rows}


def bench_log_every(size: str, repeats: int) -> dict:
    """Seed-epochs per second of XOR with the default log_every, 1, 10, 100 and all."""
    seed_counts, steps = SIZES["log-every"][size]
    net, x, y = _xor()
    sgd = optax.sgd(0.1)
    sweeps = []
    for n_seeds in seed_counts:
        keys = jax.random.split(jax.random.key(0), n_seeds)

        def run(keys=keys, **log):
            return lambda: jp.train_seeds(
                net, keys, x, y, sgd, steps, scheme="uniform01", dtype="float32", **log
            )

        default = jp.Trainer(
            net, keys, x, y, sgd, steps, scheme="uniform01", dtype="float32"
        ).log_every
        contenders = {f"default ({default})": run()}
        every = sorted({1, 10, 100, steps})
        contenders |= {f"log_every={k}": run(log_every=k) for k in every}
        rows = []
        print(f"  {n_seeds} seeds × {steps} epochs:")
        for name, (first, times) in timed(contenders, repeats).items():
            rows.append(
                {
                    "contender": name,
                    "seed_epochs_per_s": n_seeds * steps / median(times),
                    "median_s": median(times),
                    "first_call_s": first,
                    "times_s": times,
                }
            )
        best = max(r["seed_epochs_per_s"] for r in rows)
        for r in rows:
            r["vs_best"] = r["seed_epochs_per_s"] / best
            print(
                f"  {r['contender']:>15}: {r['seed_epochs_per_s']:.3g} seed-epochs/s "
                f"({r['vs_best']:.3f} of the best; "
                f"{r['first_call_s']:.1f} s first call)"
            )
        sweeps.append({"n_seeds": n_seeds, "rows": rows})
    return {
        "network": "XOR 2-2-1 sigmoid, full batch of 4, SGD 0.1, float32",
        "steps": steps,
        "sweeps": sweeps,
    }
