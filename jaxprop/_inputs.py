"""Checks and conversions of user inputs ``x`` and ``y``, run before compilation.

Shapes and dtypes are static, so they are checked even while tracing (under
``jax.jit``, ``jax.vmap`` or ``jax.grad``). Values (class ids in range, binary
targets in [0, 1]) are checked only when ``y`` is concrete; inside a traced
function they cannot be read without a host round trip.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

#: Largest tolerated deviation from 1 of the row sums of probability targets.
ROW_SUM_ATOL = 1e-4


def _is_concrete(v) -> bool:
    return not isinstance(v, jax.core.Tracer)


def _as_array(v, argname: str):
    """Returns ``v`` as an array (NumPy stays NumPy) or raises a TypeError."""
    if isinstance(v, (jax.Array, np.ndarray)):
        return v
    try:
        v = np.asarray(v)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"{argname} must be an array; got {type(v).__name__} ({e})."
        ) from None
    if v.dtype == object:
        raise TypeError(
            f"{argname} must be a numeric array; got an object array (ragged rows?)."
        )
    return v


def _check_real_dtype(v, argname: str) -> None:
    """Raises a TypeError unless ``v`` has a floating, integer or bool dtype."""
    real = (jnp.floating, jnp.integer, jnp.bool_)
    if not any(jnp.issubdtype(v.dtype, kind) for kind in real):
        raise TypeError(
            f"{argname} must have a real (floating, integer or bool) "
            f"dtype; got {v.dtype}."
        )


def check_x(x, n_in: int, dtype) -> tuple[jax.Array, bool]:
    """Checks inputs ``x`` and casts them to the parameters' ``dtype``.

    Integer and boolean inputs are cast to ``dtype`` (so are floats of another
    precision); complex inputs are refused.

    Args:
      x: (batch, n_in) or (n_in,) inputs.
      n_in: the network's input size.
      dtype: the parameters' floating dtype.

    Returns:
      ``(x, unbatched)``: x as a (batch, n_in) array of ``dtype``, and whether the
      caller gave a single (n_in,) example.
    """
    x = _as_array(x, "x")
    _check_real_dtype(x, "x")
    if x.ndim not in (1, 2) or x.shape[-1] != n_in:
        raise ValueError(
            f"x must have shape (batch, {n_in}) or ({n_in},) for a "
            f"network with {n_in} inputs; got shape {tuple(x.shape)}."
        )
    if x.ndim == 2 and x.shape[0] == 0:
        raise ValueError(
            f"x must hold at least one example; got shape {tuple(x.shape)}."
        )
    unbatched = x.ndim == 1
    x = jnp.asarray(x, dtype)
    return (x[None] if unbatched else x), unbatched


def check_y(y, cost: str, n_out: int, batch: int, unbatched: bool, dtype) -> jax.Array:
    """Checks targets ``y`` for ``cost`` and returns them batched.

    Args:
      y: targets. For ``mse`` and ``binary_cross_entropy``: (batch, n_out) (or
        (n_out,) with an unbatched x). For ``softmax_cross_entropy``: integer class
        ids (batch,) (or () unbatched), or probability rows (batch, n_out).
      cost: the cost's name.
      n_out: the network's output size.
      batch: the number of examples in x.
      unbatched: whether x was a single example.
      dtype: the parameters' floating dtype.

    Returns:
      (batch, n_out) float targets of ``dtype``, or (batch,) integer class ids.
    """
    y = _as_array(y, "y")
    _check_real_dtype(y, "y")
    lead = () if unbatched else (batch,)
    rows = f"({n_out},)" if unbatched else f"({batch}, {n_out})"
    labels = jnp.issubdtype(y.dtype, jnp.integer) and y.shape == lead
    if cost == "softmax_cross_entropy" and labels:
        if _is_concrete(y) and y.size:
            lo, hi = int(np.min(y)), int(np.max(y))
            if lo < 0 or hi >= n_out:
                raise ValueError(
                    f"y holds class ids from {lo} to {hi}; a network "
                    f"with {n_out} outputs needs ids in [0, {n_out})."
                )
        return y[None] if unbatched else y
    if y.shape != (*lead, n_out):
        if cost == "softmax_cross_entropy":
            want = (
                f"integer class ids of shape {lead} or probability rows of shape {rows}"
            )
            if y.shape == lead:
                want += f" (these ids have dtype {y.dtype}; use an integer dtype)"
        else:
            want = f"shape {rows}"
            if n_out == 1 and y.shape == lead:
                want += " (for a single output, pass y[:, None])"
        raise ValueError(f"y must have {want}; got shape {tuple(y.shape)}.")
    if _is_concrete(y):
        v = np.asarray(y, dtype=np.float64)
        if cost == "binary_cross_entropy" and v.size and (v.min() < 0 or v.max() > 1):
            raise ValueError(
                "binary_cross_entropy needs targets y in [0, 1]; got "
                f"values from {v.min():g} to {v.max():g}."
            )
        if cost == "softmax_cross_entropy" and v.size:
            sums = v.sum(axis=-1)
            if v.min() < 0 or np.max(np.abs(sums - 1)) > ROW_SUM_ATOL:
                raise ValueError(
                    "softmax_cross_entropy needs probability rows y "
                    "(non-negative, each summing to 1) or integer class "
                    f"ids; got values from {v.min():g} to {v.max():g} "
                    f"and row sums from {sums.min():g} to {sums.max():g}."
                )
    y = jnp.asarray(y, dtype)
    return y[None] if unbatched else y
