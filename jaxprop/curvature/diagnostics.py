r"""Diagnostics of the loss's gradient on a batch: its norm, Byrd et al.'s norm
test, the gradient signal-to-noise ratio and the sharpness
(:func:`grad_diagnostics`, which the trainer logs with ``diagnostics_every``).

With the module's convention (``_stats.py``), g_i is example i's share of the
loss's gradient, Σ_i g_i = ∇L over a batch of B examples, and ḡ = (1/B) Σ_i g_i
their mean. One δ pass gives ∇L and S = Σ_i ‖g_i‖² (:func:`sum_grad_squared`,
no g_i formed), and

    Σ_i ‖g_i − ḡ‖² = S − B ‖ḡ‖²,

so the norm test's statistic (Byrd, Chin, Nocedal & Wu 2012, eq. 3.9 with the
sample variance)

    T = Σ_i ‖g_i − ḡ‖² / ((B − 1) · B · ‖ḡ‖²) = (B S / ‖∇L‖² − 1) / (B − 1)

needs no per-example gradient either. T is the estimated E‖∇L_batch − ∇L‖² /
‖∇L‖² of batches of B: the batch passes Byrd et al.'s test when T ≤ θ². It is
unchanged by rescaling the g_i, so it reads the same for ``reduction="sum"``
(g_i = ∂c_i/∂θ) and ``"mean"`` (g_i = (1/B) ∂c_i/∂θ).

The gradient signal-to-noise ratio is Liu et al. 2020's per-parameter GSNR,
ḡ_j² / Var_j with Var_j = (1/B) Σ_i (g_ij − ḡ_j)² the population variance
(:func:`grad_variance`), averaged over the parameters j whose variance is above
rounding (see :func:`grad_diagnostics`); also unchanged by the reduction.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._core.params import Params, check_key
from .._validate import choice, positive_int
from ._common import checked
from ._eigen import MATRICES, _top_eigenvalue, check_power_iteration
from ._stats import moments, variance

Array = jax.Array

#: A parameter enters the SNR's mean only where Var_j > SNR_RELATIVE_FLOOR · ε
#: · (1/B) Σ_i g_ij² (ε the dtype's machine epsilon): below that, Var_j =
#: (1/B) Σ_i g_ij² − ḡ_j² is rounding of a difference of nearly equal numbers,
#: and ḡ_j²/Var_j would be noise of any size (all g_ij equal: 0/rounding).
SNR_RELATIVE_FLOOR = 64


class GradDiagnostics(NamedTuple):
    """What :func:`grad_diagnostics` returns: scalars of the params' dtype
    (with leading run axes in a ``TrainResult``, and a trailing axis of the
    steps measured).

    Attributes:
      grad_norm: ‖∇L‖, the norm of the loss's gradient (backprop's).
      norm_test: Byrd et al. 2012's statistic T (NaN for a batch of 1).
      snr: the mean gradient signal-to-noise ratio over the parameters.
      sharpness: the Hessian's (or GGN's) top eigenvalue by power iteration,
        or None when not asked for.
    """

    grad_norm: Array
    norm_test: Array
    snr: Array
    sharpness: Array | None = None


def _sum(tree) -> Array:
    return sum(jnp.sum(leaf) for leaf in jax.tree.leaves(tree))


def _statistics(net, params, x: Array, y: Array) -> GradDiagnostics:
    """‖∇L‖, T and the SNR of checked arguments, from one δ pass (traced)."""
    B = x.shape[0]
    grad, sgs = moments(net, params, x, y)
    norm2 = _sum(jax.tree.map(jnp.square, grad))
    # T = (B S / ‖∇L‖² − 1) / (B − 1); clipped at 0 against rounding.
    t = jnp.maximum(B * _sum(sgs) / norm2 - 1, 0) / (B - 1) if B > 1 else jnp.nan
    var = variance(grad, sgs, B)
    eps = jnp.finfo(norm2.dtype).eps
    kept = jax.tree.map(lambda v, s: v > SNR_RELATIVE_FLOOR * eps * s / B, var, sgs)
    ratios = jax.tree.map(
        lambda g, v, k: jnp.where(k, (g / B) ** 2 / jnp.where(k, v, 1), 0),
        grad,
        var,
        kept,
    )
    count = _sum(jax.tree.map(lambda k: k.astype(norm2.dtype), kept))
    snr = _sum(ratios) / count  # NaN where no parameter varies
    return GradDiagnostics(jnp.sqrt(norm2), jnp.asarray(t, norm2.dtype), snr)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def traced_diagnostics(
    net, sharpness: str | None, iters: int, params, x, y, key
) -> GradDiagnostics:
    """:func:`grad_diagnostics` of checked arguments (traced; ``key`` unused
    without ``sharpness``)."""
    out = _statistics(net, params, x, y)
    if sharpness is None:
        return out
    return out._replace(
        sharpness=_top_eigenvalue(net, sharpness, iters, params, x, y, key)
    )


def check_sharpness(
    net, sharpness, iters, names=("sharpness", "iters")
) -> tuple[str | None, int]:
    """(sharpness, iters) checked for ``net`` (see :func:`grad_diagnostics`),
    before anything compiles; errors name the arguments as ``names`` say."""
    iters = positive_int(iters, names[1])
    if sharpness is None:
        return None, iters
    choice(sharpness, names[0], MATRICES)
    try:  # what the net lacks for the products
        return check_power_iteration(net, sharpness, iters, names, "grad_diagnostics")
    except ValueError as e:
        raise ValueError(
            f"{names[0]}={sharpness!r}: {e} Give {names[0]}=None for the other "
            "diagnostics without it."
        ) from None


def grad_diagnostics(
    net, params: Params, x, y, key=None, sharpness: str | None = "hessian",
    iters: int = 20,
) -> GradDiagnostics:  # fmt: skip
    r"""Diagnostics of the loss's gradient on the batch (x, y), from the δ pass.

    With g_i example i's share of ∇L (Σ_i g_i = ∇L, the module's convention),
    ḡ = ∇L / B and S = Σ_i ‖g_i‖² (:func:`sum_grad_squared`):

    - ``grad_norm`` = ‖∇L‖;
    - ``norm_test`` = Σ_i ‖g_i − ḡ‖² / ((B − 1) B ‖ḡ‖²) = (B S / ‖∇L‖² − 1) /
      (B − 1), Byrd, Chin, Nocedal & Wu 2012's statistic (their test of a
      batch size: T ≤ θ²), the same for either reduction (NaN for B = 1);
    - ``snr`` = (1/|J|) Σ_{j∈J} ḡ_j² / Var_j, Liu et al. 2020's gradient
      signal-to-noise ratio averaged over the parameters, Var_j the population
      variance of the g_ij (:func:`grad_variance`), J the parameters with
      Var_j > ``SNR_RELATIVE_FLOOR`` · ε · (1/B) Σ_i g_ij² (NaN if none);
    - ``sharpness``: :func:`top_eigenvalue` of the loss's Hessian
      (``sharpness="hessian"``, Cohen et al. 2021's sharpness) or GGN
      (``"ggn"``), ``iters`` power-iteration steps from a start drawn with
      ``key``; None with ``sharpness=None``.

    The first three cost one δ pass (Dense layers form no per-example
    gradient); the sharpness ``iters`` Hessian- or GGN-vector products.

    Args:
      net, params: as for :func:`sum_grad_squared`.
      x: (batch, *input_shape); y: targets as for ``net.loss``.
      key: a PRNG key for the power iteration's start (needed with
        ``sharpness``).
      sharpness: ``"hessian"``, ``"ggn"`` or None.
      iters: power-iteration steps, ≥ 1 (static).

    Returns:
      A :class:`GradDiagnostics` of scalars of the params' dtype.

    Raises:
      TypeError, ValueError: bad arguments, named, before anything compiles.
    """
    net, params, x, y = checked(net, params, x, y)
    sharpness, iters = check_sharpness(net, sharpness, iters)
    if sharpness is not None:
        if key is None:
            raise ValueError(
                "grad_diagnostics needs key (the power iteration's start) with "
                f"sharpness={sharpness!r}; give sharpness=None to skip it."
            )
        check_key(key)
    return traced_diagnostics(net, sharpness, iters, params, x, y, key)
