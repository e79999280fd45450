"""The Markdown summary and the PNG plots of a result file.

``python -m benchmarks.report RESULT.json`` rewrites them from a saved result;
``python -m benchmarks <study>`` writes them next to the result it saves.
"""

from __future__ import annotations

from pathlib import Path


def _si(x: float) -> str:
    return f"{x:.3g}"


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs" if seconds < 1e-3 else f"{seconds * 1e3:,.1f} ms"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _step_cells(row: dict) -> list:
    """depth, width, batch, manual and autodiff time per step, their ratio."""
    return [
        row["depth"],
        row["width"],
        row["batch"],
        _us(row["manual"]["step_s"]),
        _us(row["autodiff"]["step_s"]),
        f"{row['ratio']:.3f}",
    ]


def markdown(results: dict) -> str:
    """A Markdown summary of every study present in ``results``."""
    env = results["environment"]
    out = [
        f"# jaxprop benchmarks: {env['platform']} ({env['device_kind']}), "
        f"{env['date']}",
        "",
        f"{env['cpu']}, {env['cpu_count']} cores, {env['n_devices']} XLA "
        f"device(s); Python {env['python']}, jax {env['jax']}, jaxlib "
        f"{env['jaxlib']}, NumPy {env['numpy']}, optax {env['optax']}, jaxprop "
        f"{env['jaxprop']}; matmul precision {env['matmul_precision']}. Size "
        f"`{results['size']}`, {results['repeats']} timed repeats (interleaved, "
        "medians).",
        "",
    ]
    if "agreement" in results:
        r = results["agreement"]
        out += ["## Gradient agreement (max |manual − ref| / max |ref| per array)", ""]
        out += _table(
            [
                "dtype",
                "cost",
                "networks",
                "worst vs autodiff",
                "at",
                "worst vs finite differences",
                "at",
                "check_grads passed",
            ],
            [
                [
                    w["dtype"],
                    w["cost"],
                    w["networks"],
                    f"{w['worst_autodiff']:.1e}",
                    w["worst_autodiff_at"],
                    f"{w['worst_numeric']:.1e}",
                    w["worst_numeric_at"],
                    f"{w['passed']}/{w['networks']}",
                ]
                for w in r["worst"]
            ],
        )
    if "step-time" in results:
        r = results["step-time"]
        s = r["summary"]
        out += [
            "## Step time, manual vs autodiff (jitted, steady state)",
            "",
            f"{r['network']}. Ratio manual/autodiff: median {s['median_ratio']:.3f}, "
            f"max {s['max_ratio']:.3f}, max at width ≥ 64 "
            f"{s['max_ratio_width_ge_64']:.3f}.",
            "",
        ]
        out += _table(
            [
                "depth",
                "width",
                "batch",
                "manual",
                "autodiff",
                "ratio",
                "manual GFLOP/s",
                "compile manual / autodiff",
            ],
            [
                [
                    *_step_cells(row),
                    f"{row['manual']['gflops']:.1f}",
                    f"{row['manual']['compile_s']:.2f} / "
                    f"{row['autodiff']['compile_s']:.2f} s",
                ]
                for row in r["rows"]
            ],
        )
        if r["skipped"]:
            out += [
                "Not run (step above the size's FLOP budget): "
                + ", ".join(f"width {w} batch {b}" for _, w, b in r["skipped"]),
                "",
            ]
        out += ["### Eager (un-jitted) step", ""]
        out += _table(
            ["depth", "width", "batch", "manual", "autodiff", "ratio"],
            [_step_cells(row) for row in r["eager"]],
        )
    if "memory" in results:
        r = results["memory"]
        out += [
            "## Compiled memory of one step (bytes)",
            "",
            f"Manual temp > autodiff temp at {r['manual_temp_worse']} of "
            f"{r['points']} points.",
            "",
        ]
        out += _table(
            [
                "depth",
                "width",
                "batch",
                "temp manual",
                "temp autodiff",
                "arguments",
                "outputs manual / autodiff",
            ],
            [
                [
                    row["depth"],
                    row["width"],
                    row["batch"],
                    f"{row['manual']['temp_bytes']:,}",
                    f"{row['autodiff']['temp_bytes']:,}",
                    f"{row['manual']['argument_bytes']:,}",
                    f"{row['manual']['output_bytes']:,} / "
                    f"{row['autodiff']['output_bytes']:,}",
                ]
                for row in r["rows"]
            ],
        )
    if "seed-scaling" in results:
        r = results["seed-scaling"]
        names = [k for k in r["rows"][-1] if k not in ("seeds", "best")]
        names += [k for k in r["rows"][0] if k not in names + ["seeds", "best"]]
        out += [
            "## Seed scaling (seed-steps/s)",
            "",
            f"{r['network']}, {r['steps']} steps, {r['devices']} device(s); "
            f"chunks of {r['chunk_size']}; the Python loop runs up to "
            f"{r['python_loop_max_seeds']} seeds.",
            "",
        ]
        out += _table(
            ["seeds", *names, "best"],
            [
                [
                    row["seeds"],
                    *(_si(row[k]) if k in row else "not run" for k in names),
                    row["best"],
                ]
                for row in r["rows"]
            ],
        )
    if "strategies" in results:
        r = results["strategies"]
        names = ("vmap", "sequential", "chunked", "auto")
        out += [
            f"## Strategies vs network size ({r['n_seeds']} seeds, batch "
            f"{r['batch']}, seed-steps/s)",
            "",
        ]
        out += _table(
            ["width", "FLOPs per seed-step", *names],
            [
                [
                    row["width"],
                    f"{row['flops_per_seed_step']:.2g}",
                    *(_si(row[k]) for k in names),
                ]
                for row in r["rows"]
            ],
        )
    if "log-every" in results:
        r = results["log-every"]
        # result files before 2026-12-02 held one sweep at the top level
        for sweep in r.get("sweeps", [r]):
            out += [
                f"## log_every on XOR, {sweep['n_seeds']} seeds × {r['steps']} "
                "epochs (same run)",
                "",
            ]
            out += _table(
                ["log_every", "seed-epochs/s", "of the best", "first call"],
                [
                    [
                        row["contender"],
                        f"{row['seed_epochs_per_s']:.3g}",
                        f"{row['vs_best']:.3f}",
                        f"{row['first_call_s']:.1f} s",
                    ]
                    for row in sweep["rows"]
                ],
            )
    if "progress" in results:
        out += [
            "## Progress reporting: chunks of steps vs one compiled call",
            "",
        ]
        out += _table(
            [
                "workload",
                "seeds × steps",
                "one call",
                "chunks",
                "with progress",
                "overhead",
                "train_seeds progress",
                "overhead",
            ],
            [
                [
                    row["workload"],
                    f"{row['seeds']} × {row['steps']}",
                    f"{row['one_call_s']:.3f} s",
                    row["chunks"],
                    f"{row['chunked_s']:.3f} s",
                    f"{100 * row['overhead']:+.1f}%",
                    *(
                        [
                            f"{row['train_seeds_s']:.3f} s",
                            f"{100 * row['train_seeds_overhead']:+.1f}%",
                        ]
                        if "train_seeds_s" in row
                        else ["", ""]
                    ),
                ]
                for row in results["progress"]["rows"]
            ],
        )
    if "rules" in results:
        out += _rules_markdown(results["rules"])
    if "per-example" in results:
        from benchmarks import per_example

        out += per_example.markdown(results["per-example"])
    if "conv" in results:
        from benchmarks import conv

        out += conv.markdown(results["conv"])
    if "curvature" in results:
        from benchmarks import curvature

        out += curvature.markdown(results["curvature"])
    if "baselines" in results:
        r = results["baselines"]
        np_rate = r["numpy"]["epochs_per_s"]
        out += [
            f"## XOR over {r['n_seeds']} seeds × {r['epochs']} epochs: baselines",
            "",
            f"NumPy reference program (one network, float64): {_si(np_rate)} "
            "epochs/s."
            + (
                f" PyTorch {r['torch']['torch']}, {r['torch']['torch_threads']} "
                "threads."
                if "torch" in r
                else ""
            ),
            "",
        ]
        out += _table(
            [
                "contender",
                "dtype",
                "seed-epochs/s",
                "× NumPy",
                "× best PyTorch",
                "median",
                "first call",
            ],
            [
                [
                    row["contender"],
                    row["dtype"],
                    _si(row["seed_epochs_per_s"]),
                    f"{row['x_numpy']:.0f}",
                    f"{row['x_best_torch']:.2f}" if row["x_best_torch"] else "n/a",
                    f"{row['median_s']:.3f} s",
                    f"{row['first_call_s']:.2f} s",
                ]
                for row in r["rows"]
            ],
        )
        out += [f"- {k}: {v}" for k, v in r["notes"].items()] + [""]
    if "utilization" in results:
        r = results["utilization"]
        out += [
            f"## Utilization: {'-'.join(map(str, r['network']))}, batch {r['batch']}",
            "",
            f"Matmul ceiling measured in the same run: "
            f"{r['ceiling']['gflops']:.1f} GFLOP/s (best of "
            f"{len(r['ceiling']['rows'])} shapes).",
            "",
        ]
        out += _table(
            ["gradients", "step", "GFLOP/s", "of ceiling"],
            [
                [
                    g,
                    _us(r[g]["step_s"]),
                    f"{r[g]['gflops']:.1f}",
                    f"{100 * r[g]['fraction_of_ceiling']:.0f}%",
                ]
                for g in ("manual", "autodiff")
            ],
        )
    if "mnist1d" in results:
        r = results["mnist1d"]
        if "seed_counts" in r:  # jaxprop and the plain JAX loops, same run
            out += [f"## MNIST-1D recipe, {r['steps']} steps (same run)", ""]
            out += _table(
                [
                    "seeds",
                    "contender",
                    "steady",
                    "first call",
                    "× replacement",
                    "test accuracy",
                ],
                [
                    [
                        str(row["seeds"]),
                        row["contender"],
                        f"{row['median_s']:.2f} s",
                        f"{row['first_call_s']:.1f} s",
                        f"{row['vs_replacement']:.3f}",
                        f"{100 * row['test_accuracy']['mean']:.1f}%"
                        if "test_accuracy" in row
                        else "",
                    ]
                    for row in r["rows"]
                ],
            )
        else:  # the older format: jaxprop alone
            out += [
                f"## MNIST-1D recipe, {r['n_seeds']} seeds × {r['steps']} steps",
                "",
            ]
            out += _table(
                ["gradients", "steady", "first call", "test accuracy (mean, 95% CI)"],
                [
                    [
                        row["grad"],
                        f"{row['median_s']:.1f} s",
                        f"{row['first_call_s']:.1f} s",
                        f"{100 * row['test_accuracy']['mean']:.1f}% "
                        f"({100 * row['test_accuracy']['ci_low']:.1f}% to "
                        f"{100 * row['test_accuracy']['ci_high']:.1f}%)",
                    ]
                    for row in r["rows"]
                ],
            )
    if "gpu" in results:
        out += gpu_markdown(results["gpu"])
    if "processes" in results:
        r = results["processes"]
        out += [
            "## Across processes: 2 processes × 1 device vs 1 process × 2 devices",
            "",
        ]
        out += _table(
            ["workload", "layout", "steady", "first call", "× one process",
             "same bits"],
            [
                [
                    f"{row['workload']} {row['seeds']} seeds × {row['steps']} steps",
                    row["layout"],
                    f"{row['median_s']:.3f} s",
                    f"{row['first_call_s']:.1f} s",
                    f"{row['vs_one_process']:.3f}",
                    "yes" if row["same_bits"] else "**no**",
                ]
                for row in r["rows"]
            ],
        )  # fmt: skip
        out += [f"- {k}: {v}" for k, v in r.get("notes", {}).items()]
    if "alignment" in results:
        r = results["alignment"]
        out += [
            "## Alignment during training: `alignment_every` on vs off",
            "",
            f"`jp.train_seeds`, steady state (compile excluded), {r['devices']} "
            f"XLA device(s). Target: on/off ≤ {r['target']}.",
            "",
        ]
        out += _table(
            ["setting", "rule", "alignment_every", "off", "on", "on/off", "target"],
            [
                [
                    row["setting"],
                    row["rule"],
                    row["alignment_every"],
                    f"{row['off_s']:.3f} s",
                    f"{row['on_s']:.3f} s",
                    f"{row['ratio']:.3f}",
                    "met" if row["met"] else "**missed**",
                ]
                for row in r["rows"]
            ],
        )
    return "\n".join(out)


def gpu_markdown(r: dict) -> list[str]:
    """The GPU study: XOR over 10^6 seeds, the step against the GPU's peaks."""
    out = ["## GPU", ""]
    if "skipped" in r:
        return out + [f"Not run: {r['skipped']}.", ""]
    peak = r["peak_tflops"]
    memory = "unknown" if r["bytes_limit"] is None else f"{r['bytes_limit']:,} B"
    out += [
        f"{r['device_kind']}; XLA's memory limit {memory}; dense peaks "
        + (
            "unknown for this device_kind (benchmarks/gpu.py PEAKS)."
            if peak is None
            else f"FP32 {peak['fp32']:g}, TF32 {peak['tf32']:g} TFLOP/s "
            "(datasheet figures, benchmarks/gpu.py PEAKS)."
        ),
        "",
    ]
    x = r["xor"]
    strategy, chunk = x["strategy"]
    out += [
        f"### {x['network']}: {x['n_seeds']:,} seeds × {x['epochs']} epochs",
        "",
        f'`strategy="auto"` chose `{strategy}` (chunks of {chunk}); '
        f"{_si(x['seed_epochs_per_s'])} seed-epochs/s (median of "
        f"{len(x['times_s'])}: {x['median_s']:.3f} s; first call "
        f"{x['first_call_s']:.1f} s); median final loss "
        f"{x['final_loss_median']:.3g}.",
        "",
    ]
    u = r["utilization"]
    ceilings = ", ".join(
        f"{p} {c['gflops'] / 1e3:.1f}" for p, c in u["ceilings"].items()
    )
    out += [
        f"### Utilization: {'-'.join(map(str, u['network']))}, batch {u['batch']}",
        "",
        f"Matmul ceiling measured in the same run (TFLOP/s): {ceilings}.",
        "",
    ]
    out += _table(
        ["precision", "runs", "gradients", "step", "TFLOP/s", "of peak", "of ceiling"],
        [
            [
                row["precision"],
                row["runs"],
                row["grad"],
                _us(row["step_s"]),
                _si(row["tflops"]),
                "unknown"
                if row["of_peak"] is None
                else f"{100 * row['of_peak']:.1f}% of {row['peak_tflops']:g}",
                f"{100 * row['of_ceiling']:.0f}%",
            ]
            for row in u["rows"]
        ],
    )
    return out


_RULE_NAMES = {
    "autodiff": "autodiff (jax.grad, reference)",
    "fa": "feedback alignment",
    "dfa": "direct feedback alignment",
    "sign": "sign symmetry",
    "kp": "Kolen-Pollack",
}


def _verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def _rules_markdown(r: dict) -> list[str]:
    """The rules study: step time over backprop's per rule, then many seeds."""
    st, sd = r["step_time"], r["seeds"]
    names = [n for n in st["rules"] if n != "backprop"]
    out = [
        "## Credit-assignment rules vs backprop",
        "",
        f"### Step time over backprop's (jitted, steady state; {st['network']})",
        "",
        f"Median of {st['repeats']} interleaved repeats per point, ratio = rule's "
        "time per step / backprop's at the same point; autodiff is the noise "
        "floor (the same arithmetic as backprop).",
        "",
    ]
    rows = []
    for n in names:
        s = st["summary"][n]
        a, d = s["all"], s["depth>=3"]
        t = s.get("target")
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        rows.append(
            [
                _RULE_NAMES.get(n, n),
                fmt(a["median_ratio"]),
                fmt(a["max_ratio"]),
                fmt(d["median_ratio"]),
                fmt(d["max_ratio"]),
                f"≤ {t['ratio']:.2f}"
                + ("" if t["points"] == "all" else " at depth ≥ 3")
                if t
                else "",
                f"median {_verdict(t['median_met'])}; {t['points_over']} of "
                f"{a['points'] if t['points'] == 'all' else d['points']} points over"
                if t
                else "",
            ]
        )
    out += _table(
        [
            "rule",
            "median ratio",
            "max ratio",
            "median, depth ≥ 3",
            "max, depth ≥ 3",
            "target",
            "measured",
        ],
        rows,
    )
    out += _table(
        ["depth", "width", "batch", "backprop", *names],
        [
            [
                row["depth"],
                row["width"],
                row["batch"],
                _us(row["step_s"]["backprop"]),
                *(f"{row['ratio'][n]:.3f}" for n in names),
            ]
            for row in st["rows"]
        ],
    )
    t = sd["target"]
    out += [
        f"### XOR over {sd['n_seeds']} seeds × {sd['epochs']} epochs "
        f"(`jp.train_seeds`, {sd['devices']} device(s))",
        "",
        f"{sd['network']}. Target: {_RULE_NAMES.get(t['rule'], t['rule'])} within "
        f"{t['ratio']}× backprop's time: {_verdict(t['met'])}.",
        "",
    ]
    out += _table(
        ["rule", "seed-epochs/s", "time / backprop", "median", "first call"],
        [
            [
                _RULE_NAMES.get(row["rule"], row["rule"]),
                _si(row["seed_epochs_per_s"]),
                f"{row['ratio']:.3f}",
                f"{row['median_s']:.3f} s",
                f"{row['first_call_s']:.2f} s",
            ]
            for row in sd["rows"]
        ],
    )
    return out


def plots(results: dict, stem: Path) -> list[Path]:
    """PNG plots of the studies present; returns the files written.

    ``<stem>-step-time.png`` (time per step vs width, manual vs autodiff, one
    line per batch), ``<stem>-ratio.png`` (manual/autodiff heatmap over width ×
    batch), ``<stem>-seed-scaling.png`` (seed-steps/s vs seeds per strategy),
    ``<stem>-rules.png`` (each rule's step time over backprop's, per grid point).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    if "step-time" in results:
        rows = [r for r in results["step-time"]["rows"] if r["depth"] == 2]
        widths = sorted({r["width"] for r in rows})
        batches = sorted({r["batch"] for r in rows})
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for i, batch in enumerate(batches):
            these = sorted(
                (r for r in rows if r["batch"] == batch), key=lambda r: r["width"]
            )
            w = [r["width"] for r in these]
            color = f"C{i}"
            ax.plot(
                w,
                [r["manual"]["step_s"] for r in these],
                "-o",
                color=color,
                label=f"manual, batch {batch}",
            )
            ax.plot(
                w,
                [r["autodiff"]["step_s"] for r in these],
                "--x",
                color=color,
                label=f"autodiff, batch {batch}",
            )
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="hidden width",
            ylabel="time per training step (s)",
            title="Jitted step, depth 2: manual (solid) vs autodiff (dashed)",
        )
        ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        written.append(_save(fig, stem, "step-time"))

        ratio = np.full((len(batches), len(widths)), np.nan)
        for r in rows:
            ratio[batches.index(r["batch"]), widths.index(r["width"])] = r["ratio"]
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        image = ax.imshow(ratio, cmap="RdBu_r", vmin=0.8, vmax=1.2, origin="lower")
        for (i, j), v in np.ndenumerate(ratio):
            ax.text(
                j,
                i,
                "not run" if np.isnan(v) else f"{v:.2f}",
                ha="center",
                va="center",
                fontsize=8,
            )
        ax.set_xticks(range(len(widths)), [str(w) for w in widths])
        ax.set_yticks(range(len(batches)), [str(b) for b in batches])
        ax.set(
            xlabel="hidden width",
            ylabel="batch",
            title="Step time ratio manual / autodiff (depth 2)",
        )
        fig.colorbar(image, ax=ax)
        fig.tight_layout()
        written.append(_save(fig, stem, "ratio"))
    if "rules" in results:
        st = results["rules"]["step_time"]
        names = [n for n in st["rules"] if n != "backprop"]
        depths = sorted({r["depth"] for r in st["rows"]})
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for i, name in enumerate(names):
            for j, depth in enumerate(depths):
                ratios = [r["ratio"][name] for r in st["rows"] if r["depth"] == depth]
                offset = (j - (len(depths) - 1) / 2) * 0.2
                ax.plot(
                    [i + offset] * len(ratios),
                    ratios,
                    "o",
                    color=f"C{j}",
                    alpha=0.7,
                    label=f"depth {depth}" if i == 0 else None,
                )
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axhline(1.05, color="grey", linestyle="--", linewidth=0.8, label="1.05")
        ax.set_xticks(range(len(names)), names)
        ax.set(
            ylabel="time per step / backprop's",
            title="Jitted step of each rule over backprop's, one point per "
            "width × batch",
        )
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(_save(fig, stem, "rules"))
    if "seed-scaling" in results:
        rows = results["seed-scaling"]["rows"]
        names = [k for k in rows[0] if k not in ("seeds", "best")]
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for name in names:
            these = [r for r in rows if name in r]
            ax.plot(
                [r["seeds"] for r in these], [r[name] for r in these], "-o", label=name
            )
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="seeds",
            ylabel="seed-steps per second",
            title=f"XOR seed scaling, {results['environment']['platform']}",
        )
        ax.legend()
        fig.tight_layout()
        written.append(_save(fig, stem, "seed-scaling"))
    return written


def _save(fig, stem: Path, name: str) -> Path:
    import matplotlib.pyplot as plt

    path = stem.with_name(f"{stem.name}-{name}.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> None:
    """``python -m benchmarks.report RESULT.json``: rewrite its summary and plots."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m benchmarks.report")
    parser.add_argument("result", type=Path, help="a result file from a run")
    args = parser.parse_args(argv)
    results = json.loads(args.result.read_text())
    summary = args.result.with_suffix(".md")
    summary.write_text(markdown(results))
    written = plots(results, args.result.with_suffix(""))
    print(f"wrote {summary}" + "".join(f", {p.name}" for p in written))


if __name__ == "__main__":
    main()
