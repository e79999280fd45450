r"""Checks of a user's activation or cost: hand-written derivatives vs ``jax.grad``.

A net's gradient is only as right as its σ' and its output error δ^L, and
``jp.check_grads`` finds a wrong one only on the inputs a net happens to reach.
:func:`check_activation` and :func:`check_cost` test them directly, over random
inputs of every size (|z| up to 300) and the neighbourhoods of kinks:

- **vs jax.grad**: ``derivative(z, fn(z))`` against ``jax.vmap(jax.grad(fn))``,
  and the cost's δ against ``jax.grad`` of Σ_batch c with respect to z (a = σ(z)
  recomputed inside, so δ is the total derivative ∂c/∂z the backward pass needs).
  An element passes when |hand − jax.grad| ≤ rtol (|jax.grad| + scale), scale the
  largest |jax.grad| of the check, as in ``jp.check_grads``. Where ``jax.grad``
  itself overflows (a naive value at |z| = 300), nothing is compared: a fused
  hand-written form may well be finite there.
- **finite**: every output is finite where every input is.
- **runs last**: tiny networks train many runs at once on arrays with the runs
  as a trailing axis (``jaxprop._network.runs_last``): z: (batch, n, runs), y:
  (batch, n_out, runs), or (batch, n_out, 1) when every run shares it, and
  labels (batch, runs). The functions must give each run what they give it
  alone: the features are axis 1 (reduce over ``axis=1``, never ``-1``) and
  trailing axes broadcast.

Both run in float64 whatever the global setting: inside a scoped
``jax.enable_x64(True)``, which is switched back on return (they are host-side
checks, not meant to be called under ``jax.jit``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._core.activations import Activation, get_activation
from .._core.costs import Cost, get_cost
from .._validate import positive_int
from .grads import TOLERANCES, GradCheckError

Array = jax.Array

#: Output activations a cost defined for any (``output_activations=None``) is
#: checked with by default: one with σ' = 1, two saturating, one with a kink.
DEFAULT_OUTPUTS = ("identity", "sigmoid", "tanh", "relu")

#: Where a kink usually is (relu's 0, hinge's margin y z = 1); ``points=`` adds
#: a function's own. Each is checked at, and at relative offsets around, it.
KINKS = (0.0, 1.0, -1.0)
_OFFSETS = (0.0, 1e-12, -1e-12, 1e-8, -1e-8, 1e-4, -1e-4)

_WIDTH = 4  # features of the (rows, _WIDTH) arrays an activation is checked on
_RUNS = 3  # runs of the runs-last check


class FunctionCheckRow(NamedTuple):
    """One check of :func:`check_activation` or :func:`check_cost` on one input class.

    Attributes:
      check: ``"vs jax.grad"`` (with finiteness), ``"runs last"``, or
        ``"call"`` when the function raised or returned wrong shapes.
      case: the inputs: the input class, and for a cost the output activation
        and target kind.
      n: values compared.
      n_disagree: values outside the tolerance (vs jax.grad, or vs each run
        alone).
      n_nonfinite: non-finite outputs for finite inputs.
      max_ratio: the largest error as a fraction of its tolerance (≤ 1 passes;
        nan where nothing was compared).
      passed: whether nothing disagreed and everything was finite.
      worst: where the worst disagreement is, with both values (or the error
        raised); empty when passed.
    """

    check: str
    case: str
    n: int
    n_disagree: int
    n_nonfinite: int
    max_ratio: float
    passed: bool
    worst: str = ""


class FunctionCheckReport(NamedTuple):
    """The outcome of :func:`check_activation` or :func:`check_cost`.

    ``str(report)`` is a table with a verdict per row and, below it, where each
    failed row disagrees worst.

    Attributes:
      kind: ``"activation"`` or ``"cost"``.
      name: the function's name.
      rows: one :class:`FunctionCheckRow` per check and input class.
      rtol: the relative tolerance.
      passed: whether every row passed.
    """

    kind: str
    name: str
    rows: tuple[FunctionCheckRow, ...]
    rtol: float
    passed: bool

    def raise_if_failed(self) -> FunctionCheckReport:
        """Raises ``jp.GradCheckError`` with the table if any row failed."""
        if not self.passed:
            raise GradCheckError(
                f"the {self.kind} {self.name!r} failed its check:\n{self}"
            )
        return self

    def __str__(self) -> str:
        width = max(len(r.case) for r in self.rows)
        head = (
            f"{'check':<11} | {'inputs':<{width}} | {'n':>5} {'off':>5} "
            f"{'nonfin':>6} {'err/tol':>8} | verdict"
        )
        lines = [
            f"{self.kind.capitalize()} check of {self.name!r} (float64): "
            f"{'PASSED' if self.passed else 'FAILED'}",
            head,
            "-" * len(head),
        ]
        for r in self.rows:
            lines.append(
                f"{r.check:<11} | {r.case:<{width}} | {r.n:>5} {r.n_disagree:>5} "
                f"{r.n_nonfinite:>6} {r.max_ratio:>8.2g} | "
                f"{'ok' if r.passed else 'FAIL'}"
            )
        lines.append(
            f"tolerance: |hand - ref| <= rtol * (|ref| + scale), rtol {self.rtol:g}, "
            "scale: the check's largest |ref|; ref: jax.grad, jax.hessian, or each "
            "run alone; sampler rows: err/tol in units of 5 standard errors"
        )
        failed = [r for r in self.rows if not r.passed]
        if failed:
            lines.append("where they disagree most:")
            lines += [f"  {r.check}, {r.case}: {r.worst}" for r in failed]
        return "\n".join(lines)


def _fmt(v) -> str:
    v = np.asarray(v)
    if v.ndim == 0:
        return f"{float(v):.10g}"
    return "[" + ", ".join(f"{float(x):.6g}" for x in v.ravel()) + "]"


def _compare(hand: np.ndarray, ref: np.ndarray, rtol: float, scale: float):
    """(n disagreeing, largest error/tolerance, flat index of the worst or None),
    over the elements where both are finite."""
    both = np.isfinite(hand) & np.isfinite(ref)
    hand, ref = np.where(both, hand, 0.0), np.where(both, ref, 0.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        diff = np.abs(hand - ref)
        ratio = np.where(diff == 0, 0.0, diff / (rtol * (np.abs(ref) + scale)))
    bad = ratio > 1
    worst = int(np.argmax(ratio)) if ratio.size else None
    return int(bad.sum()), float(ratio.max(initial=0.0)), worst


def _scale(*refs: np.ndarray) -> float:
    finite = [np.abs(r[np.isfinite(r)]) for r in refs]
    return max(float(f.max(initial=0.0)) for f in finite)


def _error_row(check: str, case: str, e: Exception) -> FunctionCheckRow:
    message = f"{type(e).__name__}: {e}".splitlines()[0][:300]
    return FunctionCheckRow(check, case, 0, 0, 0, float("nan"), False, message)


def _kink_values(points: Sequence[float]) -> np.ndarray:
    centers = sorted({*KINKS, *(float(p) for p in points)})
    return np.array(
        [c + o * max(1.0, abs(c)) for c in centers for o in _OFFSETS], np.float64
    )


def _z_cases(rng, n: int, points, multiple: int) -> dict[str, np.ndarray]:
    """Input classes of n values each; the kinks' class holds every kink value,
    tiled to at least n and to a multiple of ``multiple``."""
    sign = rng.choice([-1.0, 1.0], n)
    large = sign * np.exp(rng.uniform(np.log(30.0), np.log(300.0), n))
    large[:4] = [30.0, -30.0, 300.0, -300.0]
    kinks = _kink_values(points)
    size = max(n, -(-kinks.size // multiple) * multiple)
    return {
        "z ~ N(0, 1)": rng.normal(size=n),
        "1 < |z| < 30": rng.choice([-1.0, 1.0], n)
        * np.exp(rng.uniform(0.0, np.log(30.0), n)),
        "30 <= |z| <= 300": large,
        "near kinks": np.resize(rng.permutation(kinks), size),
    }


def _check_points(points) -> tuple[float, ...]:
    try:
        values = tuple(float(p) for p in points)
    except (TypeError, ValueError):
        raise TypeError(
            f"points must be a sequence of numbers; got {points!r}."
        ) from None
    if not all(np.isfinite(values)):
        raise ValueError(f"points must be finite; got {points!r}.")
    return values


def _check_rtol(rtol) -> float:
    if rtol is None:
        return TOLERANCES["float64"][0]
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not rtol > 0:
        raise ValueError(f"rtol must be a positive number or None; got {rtol!r}.")
    return float(rtol)


def check_activation(
    activation,
    *,
    points: Sequence[float] = (),
    seed: int = 0,
    rtol: float | None = None,
    raise_on_failure: bool = False,
) -> FunctionCheckReport:
    """Checks an activation's hand-written σ' against ``jax.grad``, in float64.

    Over four input classes (z ~ N(0, 1); 1 < |z| < 30; 30 ≤ |z| ≤ 300, ±30
    and ±300 included; z at and around the kinks 0, ±1 and ``points``, at
    relative offsets 0, ±1e-12, ±1e-8, ±1e-4): ``derivative(z, fn(z))`` against
    ``jax.vmap(jax.grad(fn))(z)``, and ``fn`` and ``derivative`` finite. Then
    the runs-last constraint: on z: (batch, n, runs) both must give what they
    give each run alone. At a kink the hand-written derivative must take the
    value ``jax.grad`` takes (as the built-ins do), so that gradient checks of a
    net agree everywhere.

    Args:
      activation: a ``jp.Activation`` (or a built-in's name).
      points: more z where ``fn`` has a kink.
      seed: seed of the random inputs.
      rtol: relative tolerance; default ``jp.check_grads``' float64 one vs
        autodiff (1e-10).
      raise_on_failure: raise ``jp.GradCheckError`` if any check fails.

    Returns:
      A :class:`FunctionCheckReport`; ``print(report)`` shows the table.
    """
    act = get_activation(activation, "activation")
    points, rtol = _check_points(points), _check_rtol(rtol)
    rng = np.random.default_rng(seed)
    with jax.enable_x64(True):
        cases = _z_cases(rng, 16 * _WIDTH, points, _WIDTH)
        rows = _activation_rows(act, cases, rtol)
        if act.second_derivative is not None:
            rows += _second_derivative_rows(act, cases, rtol)
        rows.append(_activation_runs_last(act, rng, rtol))
    report = FunctionCheckReport(
        "activation", act.name, tuple(rows), rtol, all(r.passed for r in rows)
    )
    return report.raise_if_failed() if raise_on_failure else report


def _activation_rows(act: Activation, cases, rtol: float) -> list[FunctionCheckRow]:
    flat = np.concatenate(list(cases.values()))
    z = jnp.asarray(flat.reshape(-1, _WIDTH))

    def values(z):
        a = act.fn(z)
        return a, act.derivative(z, a)

    def evaluate(z):
        return *values(z), jax.vmap(jax.grad(act.fn))(z.ravel())

    try:
        a, d, g = jax.jit(evaluate)(z)
    except Exception:  # a user's function: find which part raised, and report it
        try:
            jax.eval_shape(values, z)
        except Exception as e:
            return [_error_row("call", f"fn, derivative on z {tuple(z.shape)}", e)]
        try:
            jax.eval_shape(jax.vmap(jax.grad(act.fn)), z.ravel())
        except Exception as e:
            return [_error_row("call", "jax.grad(fn) on scalar z (elementwise?)", e)]
        raise
    for what, v in (("fn(z)", a), ("derivative(z, fn(z))", d)):
        if v.shape != z.shape:
            message = ValueError(
                f"{what} has shape {v.shape} for z of shape {z.shape}; "
                "it must be elementwise"
            )
            return [
                _error_row("call", f"fn, derivative on z {tuple(z.shape)}", message)
            ]
    a, d, g = (np.asarray(v).ravel() for v in (a, d, g))
    shown = {"fn": a, "derivative": d}
    return _class_rows(cases, flat, shown, d, g, rtol, ("derivative", "jax.grad"))


def _class_rows(cases, flat, shown, hand, ref, rtol, what, check="vs jax.grad"):
    """One row per input class of ``cases``: ``hand`` against ``ref`` (flat,
    in the classes' order), every array of ``shown`` finite; ``what`` names
    hand and ref in the worst disagreement."""
    scale, rows, start = _scale(ref), [], 0
    for name, values in cases.items():
        part = slice(start, start + values.size)
        start += values.size
        zs, hs, rs = flat[part], hand[part], ref[part]
        parts = {k: v[part] for k, v in shown.items()}
        nonfinite = ~np.logical_and.reduce([np.isfinite(v) for v in parts.values()])
        n_bad, ratio, i = _compare(hs, rs, rtol, scale)
        if nonfinite.any():
            j = int(np.argmax(nonfinite))
            worst = f"z={_fmt(zs[j])}: " + ", ".join(
                f"{k}={_fmt(v[j])}" for k, v in parts.items()
            )
        elif n_bad:
            worst = f"z={_fmt(zs[i])}: {what[0]} {_fmt(hs[i])}, {what[1]} {_fmt(rs[i])}"
        else:
            worst = ""
        rows.append(_grad_row(name, values.size, n_bad, nonfinite, ratio, worst, check))
    return rows


def _grad_row(
    name, size, n_bad, nonfinite, ratio, worst, check="vs jax.grad"
) -> FunctionCheckRow:
    """A "vs jax.grad" row: passed when nothing disagrees and all is finite."""
    ok = not n_bad and not nonfinite.any()
    return FunctionCheckRow(
        check, name, size, n_bad, int(nonfinite.sum()), ratio, ok, worst
    )


#: The check column of :func:`check_activation`'s σ'' rows.
SECOND = "σ'' vs grad"


def _second_derivative_rows(
    act: Activation, cases, rtol: float
) -> list[FunctionCheckRow]:
    """σ'' = ``second_derivative(z, fn(z))`` against ``jax.grad(jax.grad(fn))``,
    one row per input class (as :func:`_activation_rows` for σ')."""
    flat = np.concatenate(list(cases.values()))
    z = jnp.asarray(flat.reshape(-1, _WIDTH))
    case = f"second_derivative on z {tuple(z.shape)}"

    def evaluate(z):
        d2 = act.second_derivative(z, act.fn(z))
        return d2, jax.vmap(jax.grad(jax.grad(act.fn)))(z.ravel())

    try:
        d2, g2 = jax.jit(evaluate)(z)
        if d2.shape != z.shape:
            raise ValueError(
                f"second_derivative(z, fn(z)) has shape {d2.shape} for z of shape "
                f"{z.shape}; it must be elementwise"
            )
    except Exception as e:  # a user's function: report whatever it raised
        return [_error_row("call", case, e)]
    d2, g2 = np.asarray(d2).ravel(), np.asarray(g2).ravel()
    what = ("second_derivative", "jax.grad(jax.grad(fn))")
    shown = {"second_derivative": d2}
    return _class_rows(cases, flat, shown, d2, g2, rtol, what, SECOND)


def _runs_last_row(
    case: str, outputs: Callable, together: tuple, alone: list[tuple], rtol: float
) -> FunctionCheckRow:
    """``outputs(*together)`` (a tuple of arrays with a trailing runs axis)
    against ``outputs(*alone[r])`` stacked along a last axis."""
    try:
        got, each = jax.jit(
            lambda together, alone: (
                outputs(*together),
                [outputs(*args) for args in alone],
            )
        )(together, alone)
        got = [np.asarray(v) for v in got]
        want = [np.stack(out, -1) for out in zip(*each, strict=True)]
        for g, w in zip(got, want, strict=True):
            if g.shape != w.shape:
                raise ValueError(
                    f"an output has shape {g.shape} with the runs last; each run's "
                    f"stacked along a last axis has {w.shape}"
                )
    except Exception as e:  # a user's function: report whatever it raised
        return _error_row("runs last", case, e)
    scale = _scale(*want)
    n = n_bad = 0
    max_ratio, worst = 0.0, ""
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        bad, ratio, i = _compare(g.ravel(), w.ravel(), rtol, scale)
        n, n_bad = n + g.size, n_bad + bad
        if bad and ratio > max_ratio:
            where = np.unravel_index(i, g.shape)
            worst = (
                f"output {k} at {tuple(int(j) for j in where)}: "
                f"{_fmt(g.ravel()[i])} with the runs last, {_fmt(w.ravel()[i])} alone"
            )
        max_ratio = max(max_ratio, ratio)
    nonfinite = sum(int((~np.isfinite(g)).sum()) for g in got)
    return FunctionCheckRow(
        "runs last",
        case,
        n,
        n_bad,
        nonfinite,
        max_ratio,
        not n_bad and not nonfinite,
        worst,
    )


def _activation_runs_last(act: Activation, rng, rtol: float) -> FunctionCheckRow:
    z = jnp.asarray(rng.normal(size=(5, _WIDTH, _RUNS)))

    def outputs(z):
        a = act.fn(z)
        if act.second_derivative is None:
            return a, act.derivative(z, a)
        return a, act.derivative(z, a), act.second_derivative(z, a)

    return _runs_last_row(
        f"z (batch, n, {_RUNS})",
        outputs,
        (z,),
        [(z[..., r],) for r in range(_RUNS)],
        rtol,
    )


def check_cost(
    cost,
    *,
    output_activations=None,
    n_out: int = 3,
    points: Sequence[float] = (),
    seed: int = 0,
    rtol: float | None = None,
    raise_on_failure: bool = False,
) -> FunctionCheckReport:
    """Checks a cost's hand-written δ^L against ``jax.grad``, in float64.

    For each output activation σ it fits and each kind of target it accepts
    (``cost.targets``), over four classes of logits z: (batch, n_out) (as in
    :func:`check_activation`; with ±1 targets the hinge's kink y z = 1 is at
    z = ±1): the δ of ``value_and_delta(z, σ(z), y, σ)`` against ``jax.grad``
    of Σ_batch c with respect to z, and c and δ finite. Then the runs-last
    constraint: with z: (batch, n_out, runs) and y per run, (batch, n_out,
    runs) or (batch, runs) labels, and y shared, (batch, n_out, 1) or (batch,
    1), c and δ must be what each run gives alone. A cost with curvature
    (``hessian_sqrt``, ``sample_targets``) gets two more rows per case: S Sᵀ
    against ``jax.hessian`` of c in u (tolerance ``rtol``), and the sampler's
    output errors' mean and second moment against 0 and the GGN's middle
    factor, within 5 standard errors of 50 000 draws
    (``jaxprop._checks.cost_curvature``).

    Args:
      cost: a ``jp.Cost`` (or a built-in's name).
      output_activations: the output activations to check it with, names or
        Activations (one, or a sequence); default ``cost.output_activations``,
        or ``DEFAULT_OUTPUTS`` for a cost defined for any.
      n_out: the output width of the checked arrays.
      points: more z where the cost has a kink.
      seed: seed of the random inputs and targets.
      rtol: relative tolerance; default 1e-10, as :func:`check_activation`.
      raise_on_failure: raise ``jp.GradCheckError`` if any check fails.

    Returns:
      A :class:`FunctionCheckReport`; ``print(report)`` shows the table.
    """
    # Imported here: the curvature checks build on this module's rows.
    from .cost_curvature import curvature_rows

    cost = get_cost(cost, "cost")
    if output_activations is None:
        output_activations = cost.output_activations or DEFAULT_OUTPUTS
    if isinstance(output_activations, (str, Activation)):
        output_activations = (output_activations,)
    outputs = [get_activation(s, "output_activations") for s in output_activations]
    n_out = positive_int(n_out, "n_out")
    points, rtol = _check_points(points), _check_rtol(rtol)
    rng = np.random.default_rng(seed)
    rows = []
    with jax.enable_x64(True):
        cases = {
            name: v.reshape(-1, n_out)
            for name, v in _z_cases(rng, 32 * n_out, points, n_out).items()
        }
        for sigma in outputs:
            for kind in cost.targets:
                label = f"output {sigma.name}, targets {kind}"
                rows += _cost_rows(cost, sigma, kind, label, cases, n_out, rng, rtol)
                rows.append(_cost_runs_last(cost, sigma, kind, label, n_out, rng, rtol))
                rows += curvature_rows(
                    cost, sigma, kind, label, cases, n_out, rng, rtol
                )
    report = FunctionCheckReport(
        "cost", cost.name, tuple(rows), rtol, all(r.passed for r in rows)
    )
    return report.raise_if_failed() if raise_on_failure else report


def _targets(kind: str, rng, batch: int, n_out: int) -> np.ndarray:
    """Targets of ``kind`` for ``batch`` examples, with the edge values included."""
    if kind == "labels":
        return rng.integers(0, n_out, batch)
    if kind == "real":
        return rng.normal(size=(batch, n_out))
    if kind == "unit":
        y = rng.uniform(size=(batch, n_out))
        y[: batch // 4] = rng.integers(0, 2, (batch // 4, n_out))  # exact 0 and 1
        return y
    if kind == "probabilities":
        e = np.exp(2 * rng.normal(size=(batch, n_out)))
        y = e / e.sum(axis=1, keepdims=True)
        y[: batch // 4] = np.eye(n_out)[rng.integers(0, n_out, batch // 4)]
        return y
    return rng.choice([-1.0, 1.0], (batch, n_out))  # signs


def _cost_rows(
    cost: Cost, sigma: Activation, kind, label, cases, n_out, rng, rtol
) -> list[FunctionCheckRow]:
    names = list(cases)
    z = np.concatenate(list(cases.values()))
    batch = [v.shape[0] for v in cases.values()]
    y = _targets(kind, rng, z.shape[0], n_out)

    @jax.jit
    def evaluate(z, y):
        c, delta = cost.value_and_delta(z, sigma.fn(z), y, sigma)

        def total(z):
            return jnp.sum(cost.value_and_delta(z, sigma.fn(z), y, sigma)[0])

        return c, delta, jax.grad(total)(z)

    try:
        c, delta, g = evaluate(jnp.asarray(z), jnp.asarray(y))
        if c.shape != z.shape[:1] or delta.shape != z.shape:
            raise ValueError(
                f"value_and_delta returned c: {c.shape}, delta: {delta.shape} for "
                f"z: {z.shape}; they must be (batch,) and (batch, n_out)"
            )
    except Exception as e:  # a user's function: report whatever it raised
        return [_error_row("call", f"{label}: z: (batch, n_out)", e)]
    c, delta, g = np.asarray(c), np.asarray(delta), np.asarray(g)
    scale = _scale(g)
    rows, start = [], 0
    for name, size in zip(names, batch, strict=True):
        part = slice(start, start + size)
        start += size
        zs, ys, cs, ds, gs = z[part], y[part], c[part], delta[part], g[part]
        nonfinite = ~(np.isfinite(ds).all(axis=1) & np.isfinite(cs))
        n_bad, ratio, i = _compare(ds.ravel(), gs.ravel(), rtol, scale)
        if nonfinite.any():
            j = int(np.argmax(nonfinite))
            worst = (
                f"z={_fmt(zs[j])}, y={_fmt(ys[j])}: c={_fmt(cs[j])}, δ={_fmt(ds[j])}"
            )
        elif n_bad:
            j, k = divmod(i, n_out)
            worst = (
                f"z={_fmt(zs[j])}, y={_fmt(ys[j])}: δ[{k}] {_fmt(ds[j, k])}, "
                f"jax.grad {_fmt(gs[j, k])}"
            )
        else:
            worst = ""
        rows.append(
            _grad_row(f"{label}: {name}", ds.size, n_bad, nonfinite, ratio, worst)
        )
    return rows


def _cost_runs_last(
    cost: Cost, sigma: Activation, kind, label, n_out, rng, rtol
) -> FunctionCheckRow:
    batch = 6
    z = jnp.asarray(rng.normal(size=(batch, n_out, _RUNS)))
    per_run = np.stack([_targets(kind, rng, batch, n_out) for _ in range(_RUNS)], -1)
    per_run = jnp.asarray(per_run)
    shared = per_run[..., :1]  # one y for every run: a trailing axis of 1

    def outputs(z, y):
        return cost.value_and_delta(z, sigma.fn(z), y, sigma)

    def twice(z, y_per_run, y_shared):  # y per run, then y shared by the runs
        return (*outputs(z, y_per_run), *outputs(z, y_shared))

    return _runs_last_row(
        f"{label}: z (batch, n_out, {_RUNS}), y per run/shared",
        twice,
        (z, per_run, shared),
        [(z[..., r], per_run[..., r], shared[..., 0]) for r in range(_RUNS)],
        rtol,
    )
