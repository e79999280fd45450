"""Curvature from the δ pass (``jp.curvature``) against a gradient step, and
BackPACK on the same net where it installs.

Every quantity is timed against "a gradient step", the hand-written
``net.value_and_backprop`` of the same net, params and batch, in interleaved
rounds (``benchmarks.conv.pairs``: each round runs every contender ``inner``
times, blocked at the end; compilation is the first call, timed apart).
Reported: the median of the per-round ratios contender / step and its
distribution-free 95% confidence interval (``benchmarks.conv.median_ci``);
``jax.value_and_grad(net.loss)`` is timed beside them for reference. Every
contender is one jitted function of (params, x, y, key, v), so the argument
checks run once, at tracing. All float32, softmax cross-entropy, mean.

Contenders: ``sum_grad_squared``, ``grad_variance``, ``diag_ggn_mc``
(``samples=1``), ``kfac_mc`` (``kfac`` with a key: K-FAC's Monte Carlo
factors), ``kflr`` (``kfac(key=None)``: the exact loss Hessian's factors),
``diag_ggn``, ``ggn_vector_product`` and ``hessian_vector_product`` (a fixed
random v).

Settings (the issue's):

- **single**: 784-1000-10 tanh, batch 256, one net; random N(0, 1) inputs of
  MNIST's shape and uniform random labels (timing does not depend on the
  data);
- **seeds**: 40-100-100-10 ReLU (MNIST-1D's MLP), batch 100, 64 seeds: params,
  inputs, labels, keys and v of every seed stacked, every contender (the step
  too) ``jit(vmap(...))`` over seeds.

Targets (ratio to the step, both settings): ``sum_grad_squared`` ≤ 1.3,
``diag_ggn_mc`` ≤ 2.0, ``kfac_mc`` ≤ 2.5, ``hessian_vector_product`` ≤ 2.5,
``diag_ggn`` ≤ C + 1 (C outputs). BackPACK (optional: ``torch`` and
``backpack-for-pytorch``, not test dependencies) runs its extensions
``SumGradSquared``, ``Variance``, ``DiagGGNExact``, ``DiagGGNMC``, ``KFAC`` and
``KFLR`` on the single net's nn.Sequential with the same weights and batch,
torch's threads set to the cores this process may use, in the same rounds as
ours; each extension's result is checked against ours (the Monte Carlo ones
excepted) before timing.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import jaxprop as jp
from benchmarks.conv import _summary, pairs
from jaxprop._devices import usable_cores

C = jp.curvature

SIZES = {
    "full": {
        "single": ((784, 1000, 10), "tanh", 256),
        "seeds": ((40, 100, 100, 10), "relu", 100, 64),
        "inner": 2,
    },
    "quick": {
        "single": ((784, 256, 10), "tanh", 64),
        "seeds": ((40, 100, 100, 10), "relu", 100, 8),
        "inner": 2,
    },
    "smoke": {
        "single": ((16, 32, 10), "tanh", 8),
        "seeds": ((8, 16, 16, 4), "relu", 8, 2),
        "inner": 1,
    },
}

#: Minimum rounds at full size (the issue asks for ≥ 15 interleaved pairs).
MIN_PAIRS = 15

#: contender -> fn(net, params, x, y, key, v), in timing order; "step" first.
CONTENDERS = {
    "step": lambda net, p, x, y, k, v: net.value_and_backprop(p, x, y),
    "jax_grad": lambda net, p, x, y, k, v: jax.value_and_grad(net.loss)(p, x, y),
    "sum_grad_squared": lambda net, p, x, y, k, v: C.sum_grad_squared(net, p, x, y),
    "grad_variance": lambda net, p, x, y, k, v: C.grad_variance(net, p, x, y),
    "diag_ggn_mc": lambda net, p, x, y, k, v: C.diag_ggn_mc(net, p, x, y, k, 1),
    "kfac_mc": lambda net, p, x, y, k, v: C.kfac(net, p, x, y, k),
    "kflr": lambda net, p, x, y, k, v: C.kfac(net, p, x, y, None),
    "diag_ggn": lambda net, p, x, y, k, v: C.diag_ggn(net, p, x, y),
    "ggn_vector_product": (
        lambda net, p, x, y, k, v: C.ggn_vector_product(net, p, x, y, v)
    ),
    "hessian_vector_product": (
        lambda net, p, x, y, k, v: C.hessian_vector_product(net, p, x, y, v)
    ),
}

#: The BackPACK extension standing beside each of our contenders.
BACKPACK = {
    "sum_grad_squared": "SumGradSquared",
    "grad_variance": "Variance",
    "diag_ggn": "DiagGGNExact",
    "diag_ggn_mc": "DiagGGNMC",
    "kfac_mc": "KFAC",
    "kflr": "KFLR",
}


def targets(n_out: int) -> dict[str, float]:
    """The issue's bound on each contender's time over the step's."""
    return {
        "sum_grad_squared": 1.3,
        "diag_ggn_mc": 2.0,
        "kfac_mc": 2.5,
        "hessian_vector_product": 2.5,
        "diag_ggn": n_out + 1.0,
    }


def make_problem(sizes, activation: str, batch: int, seeds: int | None = None):
    """(net, (params, x, y, key, v)) from fixed keys, float32; every argument
    stacked over ``seeds`` when given (each seed its own batch)."""
    net = jp.MLP(sizes, activation, "identity", "softmax_cross_entropy", "mean")

    def one(key):
        k_params, k_x, k_y, k_mc, k_v = jax.random.split(key, 5)
        params = net.init(k_params, dtype="float32")
        x = jax.random.normal(k_x, (batch, sizes[0]), jnp.float32)
        y = jax.random.randint(k_y, (batch,), 0, sizes[-1])
        leaves, treedef = jax.tree.flatten(params)
        keys = jax.random.split(k_v, len(leaves))
        v = jax.tree.unflatten(
            treedef,
            [
                jax.random.normal(k, t.shape, t.dtype)
                for k, t in zip(keys, leaves, strict=True)
            ],
        )
        return params, x, y, k_mc, v

    if seeds is None:
        return net, one(jax.random.key(0))
    return net, jax.vmap(one)(jax.random.split(jax.random.key(0), seeds))


def compiled(net, seeds: bool) -> dict:
    """{contender: jitted fn(params, x, y, key, v)}, vmapped over seeds if asked."""
    out = {}
    for name, fn in CONTENDERS.items():

        def f(p, x, y, k, v, fn=fn):
            return fn(net, p, x, y, k, v)

        out[name] = jax.jit(jax.vmap(f) if seeds else f)
    return out


# ------------------------------------------------------------------ BackPACK
def backpack_missing() -> str | None:
    """Why the BackPACK baseline cannot run here, or None."""
    for module, package in (("torch", "torch"), ("backpack", "backpack-for-pytorch")):
        if importlib.util.find_spec(module) is None:
            return f"{module} does not import (pip install {package})"
    return None


def _torch_net(net, params):
    """The single net as an extended nn.Sequential with the same weights, and
    its extended loss (mean softmax cross-entropy)."""
    import torch
    from backpack import extend

    layers = []
    for l, theta in enumerate(params):
        linear = torch.nn.Linear(*theta.w.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.asarray(theta.w).T.copy()))
            linear.bias.copy_(torch.from_numpy(np.asarray(theta.b).copy()))
        layers.append(linear)
        if l < len(params) - 1:
            layers.append(
                {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[net.sigma.name]()
            )
    model = extend(torch.nn.Sequential(*layers))
    return model, extend(torch.nn.CrossEntropyLoss(reduction="mean"))


def _ours_like_backpack(name: str, ours, linears) -> list[np.ndarray]:
    """Our result laid out as BackPACK's per parameter (weight (out, in))."""
    if name in ("kflr", "kfac_mc"):
        out = []
        for f in ours:  # BackPACK: weight [G, A without the ones], bias [G]
            out += [np.asarray(f.G), np.asarray(f.A)[:-1, :-1], np.asarray(f.G)]
        return out
    return [a for t in ours for a in (np.asarray(t.w).T, np.asarray(t.b))]


def _backpack_result(name: str, linears) -> list[np.ndarray]:
    field = {
        "sum_grad_squared": "sum_grad_squared",
        "grad_variance": "variance",
        "diag_ggn": "diag_ggn_exact",
        "diag_ggn_mc": "diag_ggn_mc",
        "kfac_mc": "kfac",
        "kflr": "kflr",
    }[name]
    out = []
    for linear in linears:
        for p in (linear.weight, linear.bias):
            value = getattr(p, field)
            out += (
                [v.numpy() for v in value]
                if isinstance(value, list)
                else [value.numpy()]
            )
    return out


def backpack_contenders(net, args, ours: dict) -> tuple[dict, dict]:
    """({"torch_step" and each of BACKPACK's keys prefixed "backpack_":
    zero-argument callables}, {extension: max relative error against ours}).

    The error is max |BackPACK − ours| / max |ours| over every array, for the
    deterministic extensions; the Monte Carlo ones (DiagGGNMC, KFAC) draw
    their own targets and are only timed."""
    import torch
    from backpack import backpack, extensions

    torch.set_num_threads(usable_cores())
    params, x, y, _, _ = args
    model, loss_fn = _torch_net(net, params)
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    xt = torch.from_numpy(np.asarray(x).copy())
    yt = torch.from_numpy(np.asarray(y).astype(np.int64))

    def run(extension=None):
        model.zero_grad(set_to_none=True)
        loss = loss_fn(model(xt), yt)
        # The extended modules' hooks warn that x needs no gradient; asking
        # for one would add a product the JAX contenders do not make.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Full backward hook", UserWarning)
            if extension is None:
                loss.backward()
            else:
                with backpack(extension()):
                    loss.backward()
        return loss

    fns = {"torch_step": run}
    errors = {}
    for name, ext in BACKPACK.items():
        extension = getattr(extensions, ext)
        fns[f"backpack_{name}"] = lambda extension=extension: run(extension)
        if name in ("diag_ggn_mc", "kfac_mc"):
            continue
        run(extension)
        theirs = _backpack_result(name, linears)
        mine = _ours_like_backpack(name, ours[name], linears)
        errors[name] = max(
            float(np.max(np.abs(t - m)) / max(np.max(np.abs(m)), 1e-30))
            for t, m in zip(theirs, mine, strict=True)
        )
    return fns, errors


# --------------------------------------------------------------------- study
def bench_setting(size: str, setting: str, repeats: int) -> dict:
    """One setting (module docstring): every contender against the step."""
    s = SIZES[size]
    if setting == "single":
        (sizes, activation, batch), n_seeds = s["single"], None
    else:
        sizes, activation, batch, n_seeds = s["seeds"]
    net, args = make_problem(sizes, activation, batch, n_seeds)
    fns = compiled(net, n_seeds is not None)
    calls = {name: (lambda fn=fn: fn(*args)) for name, fn in fns.items()}
    out = {
        "sizes": list(sizes),
        "activation": activation,
        "batch": batch,
        "seeds": n_seeds,
        "inner": s["inner"],
        "pairs": repeats,
        "targets": targets(sizes[-1]),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    if setting == "single":
        missing = backpack_missing()
        out["backpack"] = {"missing": missing}
        if missing is None:
            import torch

            ours = {name: calls[name]() for name in BACKPACK}
            torch_fns, errors = backpack_contenders(net, args, ours)
            calls |= torch_fns
            out["backpack"] |= {
                "torch": torch.__version__,
                "backpack": importlib.metadata.version("backpack-for-pytorch"),
                "torch_threads": torch.get_num_threads(),
                "max_rel_error": errors,
            }
    r = pairs(calls, "step", repeats, s["inner"])
    out["median_s"] = {k: v["median_s"] for k, v in r.items()}
    out["times_s"] = {k: v["times_s"] for k, v in r.items()}
    out["over_step"] = {
        k: {m: v[m] for m in ("median", "ci95", "ratios")}
        for k, v in r.items()
        if k != "step" and not k.startswith(("torch", "backpack"))
    }
    times = out["times_s"]
    out["over_jax_grad"] = {
        k: _per_round(times[k], times["jax_grad"])
        for k in out["over_step"]
        if k != "jax_grad"
    }
    out["met"] = {
        k: out["over_step"][k]["median"] <= bound for k, bound in out["targets"].items()
    }
    if "torch_step" in r:
        b = out["backpack"]
        b["over_ours"] = {
            n: _per_round(times[f"backpack_{n}"], times[n]) for n in BACKPACK
        }
        b["over_torch_step"] = {
            n: _per_round(times[f"backpack_{n}"], times["torch_step"]) for n in BACKPACK
        }
    _print(out)
    return out


def _per_round(a: list[float], b: list[float]) -> dict:
    """Median and 95% CI of the per-round ratios a / b."""
    return _summary([x / y for x, y in zip(a, b, strict=True)])


def _print(out: dict) -> None:
    label = "-".join(map(str, out["sizes"]))
    seeds = f" × {out['seeds']} seeds" if out["seeds"] else ""
    print(f"  {label} {out['activation']} batch {out['batch']}{seeds}:")
    print(f"  {'step':>22}: {out['median_s']['step'] * 1e3:8.2f} ms")
    for k, v in out["over_step"].items():
        bound = out["targets"].get(k)
        verdict = (
            ""
            if bound is None
            else f" (≤ {bound:g}: {'met' if out['met'][k] else 'MISSED'})"
        )
        print(
            f"  {k:>22}: {out['median_s'][k] * 1e3:8.2f} ms, ×{v['median']:.3f} step "
            f"[{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]{verdict}"
        )
    b = out.get("backpack", {})
    if b.get("missing"):
        print(f"  BackPACK: skipped: {b['missing']}")
    elif "over_ours" in b:
        print(f"  {'torch step':>22}: {out['median_s']['torch_step'] * 1e3:8.2f} ms")
        for name, v in b["over_ours"].items():
            err = b["max_rel_error"].get(name)
            print(
                f"  {'BackPACK ' + BACKPACK[name]:>22}: "
                f"{out['median_s']['backpack_' + name] * 1e3:8.2f} ms, "
                f"×{v['median']:.2f} ours"
                + ("" if err is None else f"; max rel. diff {err:.1e}")
            )


def bench_curvature(size: str, repeats: int) -> dict:
    """Both settings (module docstring); ≥ 15 rounds at full size."""
    if size == "full":
        repeats = max(repeats, MIN_PAIRS)
    return {s: bench_setting(size, s, repeats) for s in ("single", "seeds")}


# ------------------------------------------------------------------ report
def _ratio(r: dict, digits: int = 3) -> str:
    low, high = r["ci95"]
    return f"{r['median']:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def markdown(r: dict) -> list[str]:
    """The study's section of the Markdown summary (``benchmarks.report``)."""
    from benchmarks.report import _table

    out = [
        "## Curvature from the δ pass (`benchmarks/curvature.py`)",
        "",
        "Each quantity's time over a gradient step (`net.value_and_backprop`) "
        "of the same net and batch: median of the per-round ratios over "
        "interleaved rounds, [95% CI of the median]. Random inputs and labels.",
        "",
    ]
    for key in ("single", "seeds"):
        if key not in r:
            continue
        s = r[key]
        seeds = f", {s['seeds']} seeds (jit of vmap)" if s["seeds"] else ""
        out += [
            f"### {'-'.join(map(str, s['sizes']))} {s['activation']}, batch "
            f"{s['batch']}{seeds}, {s['pairs']} rounds",
            "",
        ]
        if "ynn" in s.get("xla_flags", ""):
            out += [f"XLA_FLAGS: `{s['xla_flags'].strip()}`.", ""]
        rows = [
            ["step (`value_and_backprop`)", _ms(s["median_s"]["step"]), "1", "", "", ""]
        ]
        for k, v in s["over_step"].items():
            bound = s["targets"].get(k)
            g = s.get("over_jax_grad", {}).get(k)
            rows.append(
                [
                    f"`{k}`",
                    _ms(s["median_s"][k]),
                    _ratio(v),
                    "" if g is None else f"{g['median']:.2f}",
                    "" if bound is None else f"≤ {bound:g}",
                    "" if bound is None else ("met" if s["met"][k] else "**missed**"),
                ]
            )
        out += _table(
            [
                "contender",
                "median",
                "/ step [95% CI]",
                "/ jax.grad",
                "target",
                "verdict",
            ],
            rows,
        )
        if "backpack" in s:
            out += _backpack_markdown(s)
    return out


def _backpack_markdown(s: dict) -> list[str]:
    """The BackPACK baseline's paragraph and table, or why it was skipped."""
    from benchmarks.report import _table

    b = s["backpack"]
    if b.get("missing"):
        return [f"BackPACK baseline: skipped ({b['missing']}).", ""]
    out = [
        f"BackPACK {b['backpack']} on torch {b['torch']} "
        f"({b['torch_threads']} threads), the same net, weights and batch, "
        "in the same rounds; torch's own gradient step "
        f"{_ms(s['median_s']['torch_step'])}. Max relative difference from "
        "ours: max |BackPACK − ours| / max |ours| (Monte Carlo ones: "
        "different draws, not compared).",
        "",
    ]
    return out + _table(
        [
            "quantity",
            "BackPACK extension",
            "ours",
            "BackPACK",
            "BackPACK / ours [95% CI]",
            "BackPACK / torch step",
            "max rel. diff",
        ],
        [
            [
                f"`{name}`",
                ext,
                _ms(s["median_s"][name]),
                _ms(s["median_s"][f"backpack_{name}"]),
                _ratio(b["over_ours"][name], 2),
                f"{b['over_torch_step'][name]['median']:.2f}",
                (
                    f"{b['max_rel_error'][name]:.1e}"
                    if name in b["max_rel_error"]
                    else "(MC)"
                ),
            ]
            for name, ext in BACKPACK.items()
        ],
    )
