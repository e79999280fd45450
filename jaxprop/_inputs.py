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

from ._core.costs import Cost

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


def check_inputs(
    x, in_shape: int | tuple[int, ...], dtype, argname: str = "x"
) -> tuple[jax.Array, bool]:
    """Checks inputs ``x`` and casts them to the parameters' ``dtype``.

    Integer and boolean inputs are cast to ``dtype`` (so are floats of another
    precision); complex inputs are refused.

    Args:
      x: (batch, *in_shape) or one example, in_shape.
      in_shape: one example's input shape, (n_in,) for a flat input (an int
        n_in is (n_in,)).
      dtype: the parameters' floating dtype.
      argname: how messages name ``x`` (``"x_eval"`` for held-out data).

    Returns:
      ``(x, unbatched)``: x as a (batch, *in_shape) array of ``dtype``, and
      whether the caller gave a single example.
    """
    x = _as_array(x, argname)
    _check_real_dtype(x, argname)
    in_shape = (in_shape,) if isinstance(in_shape, int) else tuple(in_shape)
    rank = len(in_shape)
    if x.ndim not in (rank, rank + 1) or tuple(x.shape[x.ndim - rank :]) != in_shape:
        one = ", ".join(map(str, in_shape)) + ("," if rank == 1 else "")
        what = f"{in_shape[0]} inputs" if rank == 1 else f"input_shape {in_shape}"
        raise ValueError(
            f"{argname} must have shape (batch, {', '.join(map(str, in_shape))}) "
            f"or ({one}) for a network with {what}; got shape {tuple(x.shape)}."
        )
    if x.ndim == rank + 1 and x.shape[0] == 0:
        raise ValueError(
            f"{argname} must hold at least one example; got shape {tuple(x.shape)}."
        )
    unbatched = x.ndim == rank
    x = jnp.asarray(x, dtype)
    return (x[None] if unbatched else x), unbatched


def check_targets(
    y, cost: Cost, n_out: int, batch: int, unbatched: bool, dtype, argname: str = "y"
) -> jax.Array:
    """Checks targets ``y`` against the kinds ``cost`` accepts, returns them batched.

    Args:
      y: targets of a kind in ``cost.targets`` (``jp.TARGET_KINDS``): rows
        (batch, n_out) (or (n_out,) with an unbatched x) or, where the cost
        accepts ``"labels"``, integer class ids (batch,) (or () unbatched).
      cost: the net's :class:`jp.Cost` (``net.cost_fn``).
      n_out: the network's output size.
      batch: the number of examples in x.
      unbatched: whether x was a single example.
      dtype: the parameters' floating dtype.
      argname: how messages name ``y`` (``"y_eval"`` for held-out data).

    Returns:
      (batch, n_out) float targets of ``dtype``, or (batch,) integer class ids.
    """
    kinds = cost.targets
    y = _as_array(y, argname)
    _check_real_dtype(y, argname)
    lead = () if unbatched else (batch,)
    rows = f"({n_out},)" if unbatched else f"({batch}, {n_out})"
    labels = jnp.issubdtype(y.dtype, jnp.integer) and y.shape == lead
    if "labels" in kinds and labels:
        if _is_concrete(y) and y.size:
            # On the host: np.min of a jax.Array would trace under jax.jit
            # (labels closed over by a jitted function).
            ids = np.asarray(y)
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= n_out:
                raise ValueError(
                    f"{argname} holds class ids from {lo} to {hi}; a network "
                    f"with {n_out} outputs needs ids in [0, {n_out})."
                )
        return y[None] if unbatched else y
    row_kinds = [k for k in kinds if k != "labels"]
    if y.shape != (*lead, n_out) or not row_kinds:
        if "labels" in kinds:
            want = f"integer class ids of shape {lead}"
            if row_kinds:
                want += f" or {_ROW_NAMES[row_kinds[0]]} of shape {rows}"
            if y.shape == lead:
                want += f" (these ids have dtype {y.dtype}; use an integer dtype)"
        else:
            want = f"shape {rows}"
            if n_out == 1 and y.shape == lead:
                want += " (for a single output, pass y[:, None])"
        raise ValueError(f"{argname} must have {want}; got shape {tuple(y.shape)}.")
    if _is_concrete(y) and y.size and "real" not in row_kinds:
        v = np.asarray(y, dtype=np.float64)
        problems = [_row_problem(k, v, argname) for k in row_kinds]
        if all(problems):
            raise ValueError(
                f"{cost.name} needs "
                + " or ".join(problems)
                + (" or integer class ids" if "labels" in kinds else "")
                + f"; got values from {v.min():g} to {v.max():g}"
                + (
                    f" and row sums from {v.sum(-1).min():g} to {v.sum(-1).max():g}."
                    if "probabilities" in row_kinds
                    else "."
                )
            )
    y = jnp.asarray(y, dtype)
    return y[None] if unbatched else y


#: How messages name the rows of each kind.
_ROW_NAMES = {
    "real": "rows",
    "unit": "rows in [0, 1]",
    "probabilities": "probability rows",
    "signs": "rows of -1 and +1",
}


def _row_problem(kind: str, v: np.ndarray, y: str = "y") -> str | None:
    """What target rows ``v`` (named ``y``) of ``kind`` should be, if they are
    not; else None."""
    if kind == "unit" and (v.min() < 0 or v.max() > 1):
        return f"targets {y} in [0, 1]"
    if kind == "probabilities" and (
        v.min() < 0 or np.max(np.abs(v.sum(axis=-1) - 1)) > ROW_SUM_ATOL
    ):
        return f"probability rows {y} (non-negative, each summing to 1)"
    if kind == "signs" and not np.all(np.abs(v) == 1):
        return f"targets {y} of -1 and +1 (class 0 is -1)"
    return None
