"""jaxprop benchmarks: ``python -m benchmarks {study,all,gpu} [--quick]``.

Every figure is a steady-state median of interleaved repeats (compilation timed
apart, ``block_until_ready`` around each), saved with the device and versions to
``benchmarks/results/<device>-<date>[-size].json``, with a Markdown summary and
PNG plots beside it. Running one study updates that study in an existing result
file. ``--quick`` runs CI-sized problems (every study in under 2 minutes on 2
cores); ``--size smoke`` seconds-long ones for the test suite. ``gpu`` runs
step-time, seed-scaling and the GPU's own study (benchmarks/gpu.py) when JAX's
first device is a GPU; elsewhere it prints why not, and runs nothing.
"""

from __future__ import annotations

import argparse
import os
import sys


def _devices_flag(argv) -> None:
    """One XLA CPU device per core this process may run on (``jp.use_all_cores``:
    its affinity, so ``taskset -c 0`` gives one), or ``--devices N``; before JAX
    starts."""
    n = None
    for i, a in enumerate(argv):
        if a == "--devices" and i + 1 < len(argv):
            n = int(argv[i + 1])
        elif a.startswith("--devices="):
            n = int(a.split("=", 1)[1])
    if n is None:
        import jaxprop as jp

        jp.use_all_cores()
        return
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}"
    )


if __name__ == "__main__":  # imported (jaxprop bench, tests): JAX is set up already
    _devices_flag(sys.argv[1:])

import json
import time
from pathlib import Path

import jax

from benchmarks import (
    agreement,
    alignment,
    baselines,
    conv,
    curvature,
    gpu,
    mnist1d,
    per_example,
    processes,
    progress,
    report,
    rules,
    seeds,
    steps,
    utilization,
)
from benchmarks._common import SIZE_NAMES, device_name, environment

RESULTS = Path(__file__).resolve().parent / "results"

#: name: (function(size, repeats) -> dict, default repeats at full size).
STUDIES = {
    "agreement": (agreement.bench_agreement, 1),
    "step-time": (steps.bench_step_time, 10),
    "memory": (steps.bench_memory, 1),
    "seed-scaling": (seeds.bench_seed_scaling, 5),
    "strategies": (seeds.bench_strategies, 5),
    "log-every": (seeds.bench_log_every, 5),
    "baselines": (baselines.bench_baselines, 5),
    "utilization": (utilization.bench_utilization, 10),
    "mnist1d": (mnist1d.bench_mnist1d, 3),
    "progress": (progress.bench_progress, 5),
    "rules": (rules.bench_rules, 10),
    "per-example": (per_example.bench_per_example, 25),
    "gpu": (gpu.bench_gpu, 10),
    "processes": (processes.bench_processes, 3),
    "alignment": (alignment.bench_alignment, 5),
    "conv": (conv.bench_conv, 15),
    "curvature": (curvature.bench_curvature, 25),
}
#: What ``gpu`` runs besides its own measurements (benchmarks/gpu.py).
GPU_STUDIES = ("step-time", "seed-scaling")

# float64 contenders (the NumPy baseline's precision, the agreement study) need
# 64-bit mode; every study names its dtypes explicitly.
jax.config.update("jax_enable_x64", True)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "study", nargs="+", choices=[*STUDIES, "all"], help="studies to run"
    )
    parser.add_argument(
        "--quick", action="store_true", help="CI-sized runs (same as --size quick)"
    )
    parser.add_argument("--size", choices=SIZE_NAMES, default="full")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed repeats after the warm-up (default: 10 for step-time, "
        "utilization and rules, 3 for mnist1d, 5 for the others; at most 5 with "
        "--quick)",
    )
    parser.add_argument(
        "--devices",
        type=int,
        default=None,
        help="XLA CPU devices (default: one per core this process may run on)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="result file (default benchmarks/results/<device>-<date>[-size].json)",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start a new result file instead of updating the studies in it",
    )
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be at least 1; got {args.repeats}")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    size = "quick" if args.quick else args.size
    env = environment()
    print(
        f"jaxprop {env['jaxprop']}, jax {env['jax']}, numpy {env['numpy']}, "
        f"Python {env['python']}; {env['n_devices']} {env['platform']} device(s) "
        f"on {env['cpu']} ({env['cpu_count']} cores); size {size}"
    )
    out = args.out or RESULTS / (
        f"{device_name(env)}-{env['date']}{'' if size == 'full' else '-' + size}.json"
    )
    results = {}
    if out.exists() and not args.fresh:
        results = json.loads(out.read_text())
        if results.get("size") != size:
            results = {}
    results.update(environment=env, size=size)
    names = list(STUDIES) if "all" in args.study else list(dict.fromkeys(args.study))
    if "gpu" in names:
        reason = gpu.why_not()
        if reason is not None:
            print(f"gpu: skipped: {reason}")
            names.remove("gpu")
            if not names:
                return {}
        else:
            at = names.index("gpu")
            names[at:at] = [n for n in GPU_STUDIES if n not in names]
    repeats_used = results.setdefault("repeats_by_study", {})
    for name in names:
        study, default_repeats = STUDIES[name]
        repeats = args.repeats or (
            default_repeats
            if size == "full"
            else min(default_repeats, 5 if size == "quick" else 1)
        )
        print(f"{name} ({repeats} repeats):")
        start = time.perf_counter()
        results[name] = study(size, repeats)
        results[name]["study_s"] = time.perf_counter() - start
        repeats_used[name] = repeats
        print(f"  ({results[name]['study_s']:.0f} s)")
        results["repeats"] = max(repeats_used.values())
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))  # after each study
        # Every compiled program stays mapped until its cache is cleared: a
        # full run compiles thousands, which exhausted LLVM's memory mappings.
        jax.clear_caches()
    summary = out.with_suffix(".md")
    summary.write_text(report.markdown(results))
    written = report.plots(results, out.with_suffix(""))
    print(f"wrote {out}, {summary.name}" + "".join(f", {p.name}" for p in written))
    return results


if __name__ == "__main__":
    main()
