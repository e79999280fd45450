"""jaxprop benchmarks: ``python -m benchmarks {xor-seeds,mnist1d,strategies,all}``.

Every figure is a steady-state median of repeated runs (compilation timed apart,
``block_until_ready`` around each), printed with the device and versions and
written to ``benchmarks/results/<device>-<date>.json``. ``--quick`` runs small
sizes (CI-sized, under 2 minutes on 2 cores); ``--size smoke`` seconds-long ones
for the test suite.
"""

from __future__ import annotations

import argparse
import os
import sys


def _devices_flag(argv) -> None:
    """One XLA CPU device per core (or --devices N); must precede importing jax."""
    n = os.cpu_count()
    for i, a in enumerate(argv):
        if a == "--devices" and i + 1 < len(argv):
            n = int(argv[i + 1])
        elif a.startswith("--devices="):
            n = int(a.split("=", 1)[1])
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}"
    )


_devices_flag(sys.argv[1:])

import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import jax
import numpy as np
import optax

import jaxprop as jp
from benchmarks import numpy_xor

RESULTS = Path(__file__).resolve().parent / "results"

#: Problem sizes per study: the targets' sizes, a CI-sized run, a seconds-long
#: smoke test for the test suite.
SIZES = {
    "full": {
        "xor": (16384, 10000),
        "mnist1d": (32, 6000),
        "strategies": (16, 100, 128, (8, 32, 128, 512, 1024)),
    },
    "quick": {
        "xor": (2048, 2000),
        "mnist1d": (8, 600),
        "strategies": (8, 20, 64, (8, 64, 256)),
    },
    "smoke": {"xor": (64, 100), "mnist1d": (2, 100), "strategies": (4, 10, 16, (8,))},
}

# float64 contenders (the NumPy baseline's precision) need 64-bit mode; every
# study names its dtype explicitly.
jax.config.update("jax_enable_x64", True)


def environment() -> dict:
    """Device, versions and machine facts recorded with every result."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = jax.devices()[0]
    return {
        "date": datetime.date.today().isoformat(),
        "platform": device.platform,
        "device_kind": device.device_kind,
        "n_devices": len(jax.devices()),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
        "numpy": np.__version__,
        "optax": optax.__version__,
        "jaxprop": jp.__version__,
        "matmul_precision": str(jax.config.jax_default_matmul_precision),
    }


def timed(contenders: dict, repeats: int) -> dict[str, tuple[float, list[float]]]:
    """{name: (first call in seconds, steady-state times)} of zero-argument callables.

    Every contender is warmed up (compiled) first; the timed repeats are then
    interleaved, so that a slow phase of a shared machine falls on all of them
    alike instead of on whichever ran last.
    """
    first = {}
    for name, fn in contenders.items():
        start = time.perf_counter()
        jax.block_until_ready(fn())
        first[name] = time.perf_counter() - start
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    return {name: (first[name], times[name]) for name in contenders}


def numpy_reference(epochs: int, repeats: int) -> dict:
    """The reference NumPy XOR program (one network), epochs per second."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        numpy_xor.train(epochs)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"epochs": epochs, "median_s": median, "epochs_per_s": epochs / median}


def bench_xor_seeds(size: str, repeats: int) -> dict:
    """XOR 2-2-1 over many seeds vs the NumPy reference program, same run."""
    n_seeds, epochs = SIZES[size]["xor"]
    x, y = jp.data.xor()
    net = jp.MLP((2, 2, 1), "sigmoid", "sigmoid", "mse", "sum")
    keys = jax.random.split(jax.random.key(0), n_seeds)
    base = numpy_reference(epochs, repeats)
    # One optimizer object: it is static configuration, and a new one would be a
    # new program to compile.
    sgd = optax.sgd(0.1)

    def contender(dtype, grad):
        return lambda: jp.train_seeds(
            net,
            keys,
            x,
            y,
            sgd,
            epochs,
            scheme="uniform01",
            grad=grad,
            dtype=dtype,
            log_every=epochs // 10,
        )

    names = [(d, g) for d in ("float32", "float64") for g in ("manual", "autodiff")]
    rows = []
    for (dtype, grad), (first, times) in timed(
        {name: contender(*name) for name in names}, repeats
    ).items():
        median = statistics.median(times)
        rate = n_seeds * epochs / median
        rows.append(
            {
                "dtype": dtype,
                "grad": grad,
                "first_call_s": first,
                "median_s": median,
                "times_s": times,
                "seed_epochs_per_s": rate,
                "x_numpy": rate / base["epochs_per_s"],
            }
        )
        print(
            f"  {dtype} {grad:>8}: {rate:.3g} seed-epochs/s = "
            f"{rate / base['epochs_per_s']:.0f}x NumPy "
            f"(median {median:.2f} s, first call {first:.2f} s)"
        )
    return {"n_seeds": n_seeds, "epochs": epochs, "numpy": base, "jaxprop": rows}


def bench_mnist1d(size: str, repeats: int) -> dict:
    """The MNIST-1D paper's MLP recipe over 32 seeds, wall time."""
    n_seeds, steps = SIZES[size]["mnist1d"]
    data = jp.data.mnist1d()
    net = jp.MLP(
        (40, 100, 100, 10), "relu", "identity", "softmax_cross_entropy", "mean"
    )
    keys = jax.random.split(jax.random.key(0), n_seeds)
    adam = optax.adam(1e-2)

    def contender(grad):
        return lambda: jp.train_seeds(
            net,
            keys,
            data.x,
            data.y,
            adam,
            steps,
            batch_size=100,
            grad=grad,
            dtype="float32",
            log_every=steps // 10 if steps % 10 == 0 else 1,
            eval_data=(data.x_test, data.y_test),
        )

    rows = []
    for grad, (first, times) in timed(
        {g: contender(g) for g in ("manual", "autodiff")}, repeats
    ).items():
        accuracy = jp.summarize(np.asarray(contender(grad)().eval_accuracy[:, -1]))
        median = statistics.median(times)
        rows.append(
            {
                "grad": grad,
                "first_call_s": first,
                "median_s": median,
                "times_s": times,
                "test_accuracy": accuracy._asdict(),
            }
        )
        print(
            f"  {grad:>8}: {median:.1f} s steady ({first:.1f} s first call); "
            f"test accuracy {accuracy}"
        )
    return {"n_seeds": n_seeds, "steps": steps, "batch_size": 100, "rows": rows}


def bench_strategies(size: str, repeats: int) -> dict:
    """Seed-steps per second of each strategy as the network grows."""
    n_seeds, steps, batch, widths = SIZES[size]["strategies"]
    keys = jax.random.split(jax.random.key(0), n_seeds)
    sgd = optax.sgd(0.01)
    strategies = {"vmap": None, "sequential": None, "chunked": max(2, n_seeds // 4)}
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
                chunk_size=strategies[strategy],
                dtype="float32",
                log_every=steps,
            )

        row = {
            "width": width,
            "flops_per_seed_step": 6
            * batch
            * (32 * width + width * width + width * 10),
        }
        for strategy, (_, times) in timed(
            {s: contender(s) for s in strategies}, repeats
        ).items():
            row[strategy] = n_seeds * steps / statistics.median(times)
        rows.append(row)
        print(
            f"  width {width:>5}: "
            + ", ".join(f"{k} {row[k]:.3g}" for k in strategies)
            + " seed-steps/s"
        )
    return {"n_seeds": n_seeds, "steps": steps, "batch": batch, "rows": rows}


STUDIES = {
    "xor-seeds": bench_xor_seeds,
    "mnist1d": bench_mnist1d,
    "strategies": bench_strategies,
}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("study", choices=[*STUDIES, "all"])
    parser.add_argument(
        "--quick", action="store_true", help="CI-sized runs (same as --size quick)"
    )
    parser.add_argument("--size", choices=list(SIZES), default="full")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed repeats after the warm-up (default 5, quick 3)",
    )
    parser.add_argument(
        "--devices",
        type=int,
        default=os.cpu_count(),
        help="XLA CPU devices (default: one per core)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="result file (default benchmarks/results/<device>-<date>[-quick].json)",
    )
    args = parser.parse_args(argv)
    size = "quick" if args.quick else args.size
    repeats = args.repeats or (5 if size == "full" else 3)
    env = environment()
    print(
        f"jaxprop {env['jaxprop']}, jax {env['jax']}, numpy {env['numpy']}, "
        f"Python {env['python']}; {env['n_devices']} {env['platform']} device(s) "
        f"on {env['cpu']} ({env['cpu_count']} cores)"
    )
    results = {"environment": env, "size": size, "repeats": repeats}
    for name in STUDIES if args.study == "all" else [args.study]:
        print(f"{name}:")
        results[name] = STUDIES[name](size, repeats)
    out = args.out or RESULTS / (
        f"{env['platform']}-{env['cpu_count']}core-"
        f"{env['date']}{'' if size == 'full' else '-' + size}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
