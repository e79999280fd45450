"""Gradient checks: the manual δ backward against ``jax.grad`` and finite differences.

Three oracles meet here. ``jax.grad(net.loss)`` differentiates the forward pass
automatically; :func:`numerical_grad` takes central differences of the loss and
uses no derivative at all; the manual gradient is ``net.backprop``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .._core.params import Params
from .._network import MLP, check_xy, compiled_value_and_backprop
from .._validate import positive_int

Array = jax.Array

#: Relative tolerances of the verdict, by dtype: (manual vs autodiff, manual vs
#: finite differences). Manual and automatic gradients do the same arithmetic in
#: another order, so they agree to a few ulps times the depth; central
#: differences carry an O(h²) truncation and an O(eps/h) rounding error, about
#: eps^(2/3) ≈ 4e-11 in float64 but 5e-5 in float32, amplified by cancellation,
#: which makes them a weak oracle in float32.
TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-10, 1e-6),
    "float32": (1e-4, 5e-2),
    "bfloat16": (5e-2, 5e-1),
    "float16": (5e-2, 5e-1),
}


class GradCheckError(AssertionError):
    """Raised by a failed gradient check when asked to raise."""


class GradCheckRow(NamedTuple):
    """Errors of one parameter array (``inf``/``nan``-free unless the grads are).

    Attributes:
      layer: 1-based layer index l.
      param: ``"w"`` or ``"b"``.
      shape: the array's shape.
      autodiff_abs: max |manual − autodiff|.
      autodiff_rel: max |manual − autodiff| / max(|manual|, |autodiff|, tiny).
      numeric_abs: max |manual − finite differences| (nan when not computed).
      numeric_rel: the symmetric relative error against finite differences.
      passed: whether both comparisons are within tolerance.
      autodiff_ratio, numeric_ratio: the largest error as a fraction of its
        tolerance, max |manual − ref| / (rtol · (|ref| + scale)); a comparison
        passes when it is ≤ 1 (numeric_ratio is nan when not computed).
    """

    layer: int
    param: str
    shape: tuple[int, ...]
    autodiff_abs: float
    autodiff_rel: float
    numeric_abs: float
    numeric_rel: float
    passed: bool
    autodiff_ratio: float = float("nan")
    numeric_ratio: float = float("nan")


class GradCheckReport(NamedTuple):
    """The outcome of :func:`check_grads`; ``str(report)`` is a readable table.

    Attributes:
      rows: one :class:`GradCheckRow` per layer and parameter (w, then b).
      dtype: the parameters' dtype name.
      rtol_autodiff: relative tolerance against ``jax.grad``.
      rtol_numeric: relative tolerance against finite differences.
      passed: whether every row passed.
    """

    rows: tuple[GradCheckRow, ...]
    dtype: str
    rtol_autodiff: float
    rtol_numeric: float
    passed: bool

    def raise_if_failed(self) -> GradCheckReport:
        """Raises :class:`GradCheckError` with the table if any row failed."""
        if not self.passed:
            raise GradCheckError(
                "manual gradients disagree with the references:\n" + str(self)
            )
        return self

    def __str__(self) -> str:
        head = (
            f"{'layer':>5} {'param':>5} {'shape':>12} | {'manual-autodiff':^19} | "
            f"{'manual-numeric':^19} | verdict\n"
            f"{'':>5} {'':>5} {'':>12} | {'max abs':>9} {'max rel':>9} | "
            f"{'max abs':>9} {'max rel':>9} |"
        )
        lines = [
            f"Gradient check ({self.dtype}): {'PASSED' if self.passed else 'FAILED'}",
            head,
            "-" * len(head.split("\n")[0]),
        ]
        for r in self.rows:
            lines.append(
                f"{r.layer:>5} {r.param:>5} {r.shape!s:>12} | "
                f"{r.autodiff_abs:9.2e} {r.autodiff_rel:9.2e} | "
                f"{r.numeric_abs:9.2e} {r.numeric_rel:9.2e} | "
                f"{'ok' if r.passed else 'FAIL'}"
            )
        lines.append(
            f"tolerance: |manual - ref| <= rtol * (|ref| + scale), rtol "
            f"{self.rtol_autodiff:g} vs autodiff (scale: the array's largest "
            f"gradient), {self.rtol_numeric:g} vs numeric (scale: the "
            f"network's largest gradient)"
        )
        return "\n".join(lines)


def _loss_fn(net: MLP, x: Array, y: Array) -> Callable[[Params], Array]:
    return lambda params: compiled_value_and_backprop(net, params, x, y, False)[0]


@functools.partial(jax.jit, static_argnums=(0, 5))
def _central_differences(
    net: MLP, params: Params, x: Array, y: Array, eps: Array, batch_size: int, index
) -> Params:
    """Central differences at the flat entries ``index`` (all if None); NaN
    elsewhere."""
    theta, unravel = ravel_pytree(params)
    loss = _loss_fn(net, x, y)
    # A step relative to |θ_i|, and the step actually represented in floating
    # point as the divisor.
    h = eps * jnp.maximum(1.0, jnp.abs(theta))

    def partial_derivative(i):
        up = theta.at[i].add(h[i])
        down = theta.at[i].add(-h[i])
        return (loss(unravel(up)) - loss(unravel(down))) / (up[i] - down[i])

    if index is None:
        return unravel(
            jax.lax.map(
                partial_derivative, jnp.arange(theta.size), batch_size=batch_size
            )
        )
    values = jax.lax.map(partial_derivative, index, batch_size=batch_size)
    return unravel(jnp.full_like(theta, jnp.nan).at[index].set(values))


def numerical_grad(
    net: MLP, params: Params, x, y, eps: float | None = None, *, entries=None
) -> Params:
    """∂L/∂params by central differences, one parameter at a time.

    Uses no derivative of any kind: 2P loss evaluations for P parameters
    (vectorized in chunks), or 2k for ``entries`` of k of them. Meant for
    float64, where it is accurate to about 1e-9 relative; in float32 expect
    errors near 1e-2.

    Args:
      net: the network.
      params: as returned by ``net.init``.
      x, y: as for ``net.loss``.
      eps: relative step; the step for θ_i is eps · max(1, |θ_i|). Default
        ``finfo(dtype).eps ** (1/3)``, which balances truncation and rounding.
      entries: optional (k,) int indices into the flattened parameters
        (``jax.flatten_util.ravel_pytree`` order): only those are computed.

    Returns:
      A pytree like ``params``; NaN at the entries not computed.
    """
    x, y = check_xy(net, params, x, y)
    dtype = x.dtype
    if eps is None:
        eps = float(jnp.finfo(dtype).eps) ** (1.0 / 3.0)
    elif not (isinstance(eps, (int, float)) and eps > 0):
        raise ValueError(f"eps must be a positive number; got {eps!r}.")
    n_params = sum(leaf.size for leaf in jax.tree.leaves(params))
    if entries is not None:
        entries = np.asarray(entries)
        if entries.ndim != 1 or entries.dtype.kind not in "iu" or entries.size == 0:
            raise ValueError(
                "entries must be a non-empty 1-D array of integer indices; got "
                f"{entries.dtype} of shape {entries.shape}."
            )
        if entries.min() < 0 or entries.max() >= n_params:
            raise ValueError(
                f"entries must lie in [0, {n_params}) (the parameter count)."
            )
        entries = jnp.asarray(entries, jnp.int32)
    n = n_params if entries is None else entries.size
    return _central_differences(
        net, params, x, y, jnp.asarray(eps, dtype), min(n, 256), entries
    )


def _sample_entries(params: Params, k: int, seed: int) -> np.ndarray:
    """Flat indices of up to k random entries of every array of ``params``."""
    rng = np.random.default_rng(seed)
    chosen, offset = [], 0
    for leaf in jax.tree.leaves(params):
        size = int(np.size(leaf))
        chosen.append(offset + rng.choice(size, min(k, size), replace=False))
        offset += size
    return np.sort(np.concatenate(chosen))


def _errors(manual: np.ndarray, ref: np.ndarray, rtol: float, scale: float):
    """(max abs error, max symmetric relative error, within tolerance, largest
    error as a fraction of its tolerance)."""
    diff = np.abs(manual - ref)
    tiny = np.finfo(manual.dtype).tiny
    rel = diff / np.maximum(np.maximum(np.abs(manual), np.abs(ref)), tiny)
    bound = rtol * (np.abs(ref) + scale)
    ok = bool(np.all(diff <= bound))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(diff == 0, 0.0, diff / bound)
    return (
        float(diff.max(initial=0.0)),
        float(rel.max(initial=0.0)),
        ok,
        float(ratio.max(initial=0.0)),
    )


def check_grads(
    net: MLP,
    params: Params,
    x,
    y,
    *,
    backprop: Callable[[Params, Array, Array], Params] | None = None,
    numeric: bool = True,
    numeric_entries: int | None = None,
    seed: int = 0,
    rtol: tuple[float, float] | None = None,
    raise_on_failure: bool = False,
) -> GradCheckReport:
    """Compares manual gradients with ``jax.grad`` and with finite differences.

    For each layer and for w and b separately, reports the largest absolute and
    symmetric relative error of manual vs autodiff and manual vs numerical
    gradients. An element passes when |manual − ref| ≤ rtol · (|ref| + scale),
    where scale is the largest |gradient| of that array (vs autodiff) or of the
    whole network (vs finite differences, whose error is absolute, set by the
    loss's size); rtol comes from ``TOLERANCES`` by dtype.

    Args:
      net: the network.
      params: as returned by ``net.init``.
      x, y: as for ``net.loss``.
      backprop: the backward to check, ``(params, x, y) -> grads``;
        ``net.backprop`` by default.
      numeric: whether to compute finite differences (2P loss evaluations).
      numeric_entries: compute finite differences at only this many random
        entries of each array (2k loss evaluations per array, drawn with
        ``seed``), as ``jax.test_util.check_vjp`` checks along a few
        directions: cheap on wide networks, and a wrong entry still fails
        wherever it is sampled. None: every entry.
      seed: seed of the sampled entries.
      rtol: ``(vs autodiff, vs numeric)`` relative tolerances overriding the
        dtype's defaults.
      raise_on_failure: raise :class:`GradCheckError` if any check fails.

    Returns:
      A :class:`GradCheckReport`; ``print(report)`` shows the table.
    """
    x, y = check_xy(net, params, x, y)
    if numeric_entries is not None:
        numeric_entries = positive_int(numeric_entries, "numeric_entries")
    dtype = str(x.dtype)
    if rtol is None:
        rtol = TOLERANCES.get(dtype, TOLERANCES["float32"])
    rtol_autodiff, rtol_numeric = rtol
    manual = (net.backprop if backprop is None else backprop)(params, x, y)
    autodiff = jax.grad(_loss_fn(net, x, y))(params)
    if jax.tree.structure(manual) != jax.tree.structure(params):
        raise ValueError(
            "backprop must return a pytree like params; got "
            f"{jax.tree.structure(manual)}."
        )
    entries = (
        None
        if numeric_entries is None
        else _sample_entries(params, int(numeric_entries), seed)
    )
    numerical = numerical_grad(net, params, x, y, entries=entries) if numeric else None
    # Which entries each comparison covers (finite differences: the sampled).
    sizes = [int(np.size(l)) for l in jax.tree.leaves(params)]
    covered = np.ones(sum(sizes), bool)
    if entries is not None:
        covered[:] = False
        covered[entries] = True
    covered = np.split(covered, np.cumsum(sizes)[:-1])
    to_np = functools.partial(jax.tree.map, np.asarray)
    manual, autodiff = to_np(manual), to_np(autodiff)
    scale_all = max(
        float(np.abs(g).max(initial=0.0)) for g in jax.tree.leaves(autodiff)
    )
    rows = []
    for l in range(net.n_layers):
        for p in ("w", "b"):
            m, a = getattr(manual[l], p), getattr(autodiff[l], p)
            ad_abs, ad_rel, ad_ok, ad_ratio = _errors(
                m, a, rtol_autodiff, float(np.abs(a).max(initial=0.0))
            )
            if numerical is None:
                nu_abs = nu_rel = nu_ratio = float("nan")
                nu_ok = True
            else:
                keep = covered[2 * l + (p == "b")].reshape(m.shape)
                nu_abs, nu_rel, nu_ok, nu_ratio = _errors(
                    m[keep],
                    np.asarray(getattr(numerical[l], p))[keep],
                    rtol_numeric,
                    scale_all,
                )
            rows.append(
                GradCheckRow(
                    l + 1,
                    p,
                    tuple(m.shape),
                    ad_abs,
                    ad_rel,
                    nu_abs,
                    nu_rel,
                    ad_ok and nu_ok,
                    ad_ratio,
                    nu_ratio,
                )
            )
    report = GradCheckReport(
        tuple(rows), dtype, rtol_autodiff, rtol_numeric, all(r.passed for r in rows)
    )
    return report.raise_if_failed() if raise_on_failure else report
