r"""Parameter-free maps between layers: average and max pooling, flatten.

Arrays are channels last: one example's shape is (*spatial, C), and pooling
acts on every spatial axis of it (W for 1-D, (H, W) for 2-D, (D, H, W) for
3-D). With a window k = (k_1, …, k_r), a stride s and no padding ("VALID"),
output position p = (p_1, …, p_r) reads the window

.. math::
    Ω_p = \{(p_1 s_1 + j_1, …, p_r s_r + j_r) : 0 ≤ j_i < k_i\},
    \qquad o_i = ⌊(n_i − k_i) / s_i⌋ + 1 \text{ positions along axis } i,

of the input a: (batch, n_1, …, n_r, C); entries that no window covers (the
last (n_i − k_i) mod s_i along axis i when the stride does not divide, and the
gaps when s_i > k_i) are read by no output.

The δ pass carries g = ∂L/∂(output) back through each map by its adjoint,
written by hand (the equations are each class's): pooling routes or spreads
every window's g over the window, and the contributions of overlapping
windows add.

A map is static configuration, a frozen dataclass hashable by value. The user
gives it unbound (``in_shape=None``); the network calls :meth:`bind` with one
example's input shape, which checks the fields against it and returns a copy
with every field normalized (an int window broadcast to every spatial axis, a
``None`` stride set to the window).

When the windows tile the input (s = k, the common case), the windows are a
reshape of the input, (batch, o_1, k_1, …, o_r, k_r, C) after cropping the
uncovered tail, and every function is a reduction or a broadcast of that view;
otherwise the windows are the |k| strided slices of a, one per offset j, and
each slice's adjoint is a ``lax.pad`` with s − 1 zeros between entries. No
gather or scatter is used.

Each map also has ``tangent(r, a)``, its linearization at the input a applied
to a tangent r of a's shape (what the forward-mode passes of ``jp.curvature``
carry): the map itself for the linear ones (average pooling, flatten), each
window's first maximum's entry of r for max pooling.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import operator

import jax
import jax.numpy as jnp
import numpy as np

from .._validate import positive_int

Array = jax.Array


def _window_like(value, name: str) -> int | tuple[int, ...]:
    """A window or stride as given: a positive int or a non-empty tuple of them."""
    if isinstance(value, (tuple, list)):
        if not value:
            raise ValueError(
                f"{name} must be a positive integer or a non-empty tuple of them; "
                f"got {value!r}."
            )
        return tuple(positive_int(v, f"{name}[{i}]") for i, v in enumerate(value))
    return positive_int(value, name)


def _checked_in_shape(value) -> tuple[int, ...]:
    """One example's input shape as a non-empty tuple of positive ints."""
    if not isinstance(value, (tuple, list)):
        raise TypeError(
            "in_shape must be a tuple of positive integers (one example's shape, "
            f"channels last); got {value!r}."
        )
    if not value:
        raise ValueError(
            "in_shape must be a non-empty tuple of positive integers (one "
            "example's shape, channels last); got ()."
        )
    return tuple(positive_int(v, f"in_shape[{i}]") for i, v in enumerate(value))


def _check_shape(x: Array, shape: tuple[int, ...], name: str, owner: str) -> None:
    """A ValueError unless x is (batch, *shape)."""
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        raise ValueError(
            f"{owner}: {name} must have shape (batch, *{shape}); got {x.shape}."
        )


class _Bound:
    """``in_shape`` access for the maps, with a clear error when unbound."""

    def _bound_in_shape(self) -> tuple[int, ...]:
        if self.in_shape is None:
            raise ValueError(
                f"{type(self).__name__} has no in_shape: call bind(in_shape) first "
                "(a network binds its layers to their input shapes)."
            )
        return self.in_shape

    def bind(self, in_shape):
        """A copy with ``in_shape`` (one example's input shape) set and every
        field checked against it and normalized; binding a bound map to the
        same shape returns an equal map."""
        return dataclasses.replace(self, in_shape=in_shape)


@dataclasses.dataclass(frozen=True)
class _Pool(_Bound):
    """The windows shared by :class:`AvgPool` and :class:`MaxPool`."""

    window: int | tuple[int, ...]
    stride: int | tuple[int, ...] | None = None
    in_shape: tuple[int, ...] | None = None

    def __post_init__(self):
        window = _window_like(self.window, "window")
        stride = None if self.stride is None else _window_like(self.stride, "stride")
        if self.in_shape is not None:
            in_shape = _checked_in_shape(self.in_shape)
            spatial = in_shape[:-1]
            if not spatial:
                raise ValueError(
                    f"{type(self).__name__} pools over the spatial axes (all but "
                    f"the last, the channels), but in_shape {in_shape} has none; "
                    "pool before Flatten."
                )
            window = self._per_axis(window, "window", in_shape)
            stride = (
                window if stride is None else self._per_axis(stride, "stride", in_shape)
            )
            for axis, (n, k) in enumerate(zip(spatial, window, strict=True)):
                if k > n:
                    raise ValueError(
                        f"window {window} does not fit in_shape {in_shape}: "
                        f"{k} > {n} along spatial axis {axis} (pooling is VALID, "
                        "no padding)."
                    )
            object.__setattr__(self, "in_shape", in_shape)
        object.__setattr__(self, "window", window)
        object.__setattr__(self, "stride", stride)

    @staticmethod
    def _per_axis(value, name: str, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """An int broadcast to every spatial axis; a tuple of the spatial rank."""
        rank = len(in_shape) - 1
        if isinstance(value, int):
            return (value,) * rank
        if len(value) != rank:
            axes = "axis" if rank == 1 else "axes"
            raise ValueError(
                f"{name} {value} has {len(value)} entries, but in_shape {in_shape} "
                f"has {rank} spatial {axes} (every axis but the last, the channels)."
            )
        return value

    @property
    def out_shape(self) -> tuple[int, ...]:
        """One example's output shape, (o_1, …, o_r, C): o_i = ⌊(n_i − k_i)/s_i⌋ + 1."""
        in_shape = self._bound_in_shape()
        return (
            *(
                (n - k) // s + 1
                for n, k, s in zip(in_shape[:-1], self.window, self.stride, strict=True)
            ),
            in_shape[-1],
        )

    @property
    def size(self) -> int:
        """|k| = k_1 ⋯ k_r, the entries of one window (per channel)."""
        return math.prod(self.window)

    @property
    def _tiled(self) -> bool:
        """Whether the windows tile the input (s = k): their view is a reshape."""
        return self.stride == self.window

    def _reduce_window(self, a: Array, init, op) -> Array:
        """``lax.reduce_window`` of ``op`` over every window, VALID.

        ``init`` goes in as a NumPy scalar: a concrete identity is what makes
        lax pick its differentiable sum and max primitives (a traced one
        builds a generic reduction that JAX cannot differentiate).
        """
        return jax.lax.reduce_window(
            a,
            np.array(init, a.dtype),
            op,
            (1, *self.window, 1),
            (1, *self.stride, 1),
            "VALID",
        )

    def _windows_layout(self, batch: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(shape, axes) of :meth:`_windows`' view: the window axes ``axes``."""
        out = self.out_shape
        if self._tiled:
            blocks = itertools.chain.from_iterable(
                zip(out[:-1], self.window, strict=True)
            )
            rank = len(self.window)
            return (batch, *blocks, out[-1]), tuple(range(2, 2 * rank + 1, 2))
        return (self.size, batch, *out), (0,)

    def _offsets(self):
        """The window offsets j in row-major order (the last axis fastest)."""
        return itertools.product(*(range(k) for k in self.window))

    def _windows(self, a: Array) -> tuple[Array, tuple[int, ...]]:
        """Every window's entries, and the axes of the view they lie along.

        Tiled (s = k): a cropped to o_i k_i along each axis and reshaped to
        (batch, o_1, k_1, …, o_r, k_r, C), windows along axes (2, 4, …, 2r).
        Otherwise: the |k| strided slices a[:, j_1 :: s_1, …] (o_i entries
        each), stacked in row-major order of j to (|k|, batch, o_1, …, o_r, C),
        windows along axis 0.
        """
        shape, axes = self._windows_layout(a.shape[0])
        out = self.out_shape[:-1]
        if self._tiled:
            crop = (slice(0, o * k) for o, k in zip(out, self.window, strict=True))
            return a[(slice(None), *crop)].reshape(shape), axes
        slices = [
            a[
                (
                    slice(None),
                    *(
                        slice(j, j + (o - 1) * s + 1, s)
                        for j, o, s in zip(offset, out, self.stride, strict=True)
                    ),
                )
            ]
            for offset in self._offsets()
        ]
        return jnp.stack(slices), axes

    def _windows_adjoint(self, c: Array) -> Array:
        """The adjoint of :meth:`_windows`: c of the view's shape back to
        (batch, *in_shape), each entry added to the input entry it was read
        from; entries no window reads get 0."""
        spatial, out = self.in_shape[:-1], self.out_shape[:-1]
        if self._tiled:
            c = c.reshape(
                c.shape[0],
                *(o * k for o, k in zip(out, self.window, strict=True)),
                c.shape[-1],
            )
            tail = (
                (0, n - o * k)
                for n, o, k in zip(spatial, out, self.window, strict=True)
            )
            return jnp.pad(c, ((0, 0), *tail, (0, 0)))
        zero = jnp.zeros((), c.dtype)
        # Slice j's entry p sits at p s + j: j before, s − 1 between, the rest after.
        padded = (
            jax.lax.pad(
                c[i],
                zero,
                (
                    (0, 0, 0),
                    *(
                        (j, n - j - (o - 1) * s - 1, s - 1)
                        for j, n, o, s in zip(
                            offset, spatial, out, self.stride, strict=True
                        )
                    ),
                    (0, 0, 0),
                ),
            )
            for i, offset in enumerate(self._offsets())
        )
        return functools.reduce(operator.add, padded)

    def _check_input(self, a: Array) -> None:
        """A ValueError unless a is (batch, *in_shape)."""
        _check_shape(a, self._bound_in_shape(), "a", type(self).__name__)

    def _check_output(self, g: Array) -> None:
        """A ValueError unless g is (batch, *out_shape)."""
        _check_shape(g, self.out_shape, "g", type(self).__name__)


@dataclasses.dataclass(frozen=True)
class AvgPool(_Pool):
    r"""Average pooling over the spatial axes, VALID (the module's windows Ω_p).

    .. math::
        z_{n,p,c} = \frac{1}{|k|} Σ_{x ∈ Ω_p} a_{n,x,c},
        \qquad
        g^a_{n,x,c} = \frac{1}{|k|} Σ_{p : x ∈ Ω_p} g_{n,p,c},

    |k| = k_1 ⋯ k_r: each window's g spread evenly back over the window, the
    shares of overlapping windows (s < k) added, entries no window covers 0.

    Attributes:
      window: k, an int (the same along every spatial axis) or a tuple of the
        spatial rank (its length is checked at :meth:`bind`).
      stride: s, likewise; ``None`` means s = k (windows that tile).
      in_shape: one example's input shape (n_1, …, n_r, C), or ``None`` until
        the network binds the map.

    Raises:
      TypeError: a window or stride that is not an int or a tuple of ints.
      ValueError: a window or stride entry < 1, a tuple whose length is not
        the spatial rank, a window larger than the input along some axis, or
        an input with no spatial axis (after Flatten).
    """

    def apply(self, a: Array) -> Array:
        """z: (batch, o_1, …, o_r, C) from a: (batch, n_1, …, n_r, C)."""
        self._check_input(a)
        if self._tiled:
            x, axes = self._windows(a)
            return jnp.sum(x, axis=axes) / self.size
        return self._reduce_window(a, 0, jax.lax.add) / self.size

    def adjoint(self, g: Array, a: Array | None = None) -> Array:
        """g^a: (batch, n_1, …, n_r, C) from g: (batch, o_1, …, o_r, C); ``a``
        (the input) is accepted and ignored."""
        self._check_output(g)
        shape, axes = self._windows_layout(g.shape[0])
        share = jnp.broadcast_to(jnp.expand_dims(g / self.size, axes), shape)
        return self._windows_adjoint(share)

    def tangent(self, r: Array, a: Array | None = None) -> Array:
        """The map is linear: ``apply(r)``, (batch, o_1, …, o_r, C)."""
        return self.apply(r)


@dataclasses.dataclass(frozen=True)
class MaxPool(_Pool):
    r"""Max pooling over the spatial axes, VALID (the module's windows Ω_p).

    .. math::
        z_{n,p,c} = \max_{x ∈ Ω_p} a_{n,x,c},
        \qquad
        g^a_{n,x,c} = Σ_{p : x = x^*_{n,p,c}} g_{n,p,c},

    where x^*_{n,p,c} is the window's first maximal entry in row-major order
    of the window offsets j (the last spatial axis fastest): of tied maxima,
    the one nearest the window's first row, then its first column, takes the
    window's whole g and the others get 0. Overlapping windows (s < k) each
    route their own g, and the routes add. This is exactly ``jax.grad`` of
    ``lax.reduce_window(a, -inf, lax.max, …)``, whose VJP is
    ``select_and_scatter_add`` with select ``≥`` (keep the earlier entry on
    ties); ``jnp.max``'s VJP instead splits g evenly over ties, so
    :meth:`apply` is ``lax.reduce_window``, and ``jax.grad`` of a network's
    loss agrees with this adjoint on windows of ReLU zeros. (Windows holding a
    NaN route g to no entry.)

    Attributes and errors: as :class:`AvgPool`'s.
    """

    def apply(self, a: Array) -> Array:
        """z: (batch, o_1, …, o_r, C) from a: (batch, n_1, …, n_r, C)."""
        self._check_input(a)
        return self._reduce_window(a, -jnp.inf, jax.lax.max)

    def adjoint(self, g: Array, a: Array) -> Array:
        """g^a: (batch, n_1, …, n_r, C) from g: (batch, o_1, …, o_r, C) and the
        input a: (batch, n_1, …, n_r, C), which locates each window's maximum."""
        self._check_input(a)
        self._check_output(g)
        first, axes = self._first_max(a)
        routed = jnp.where(first, jnp.expand_dims(g, axes), 0)
        return self._windows_adjoint(routed)

    def tangent(self, r: Array, a: Array) -> Array:
        """The linearization at a of r: (batch, *in_shape): each window's entry
        of r at a's first maximum x^*, (batch, o_1, …, o_r, C) (the transpose
        of :meth:`adjoint`)."""
        self._check_input(a)
        self._check_input(r)
        first, axes = self._first_max(a)
        return jnp.sum(jnp.where(first, self._windows(r)[0], 0), axis=axes)

    def _first_max(self, a: Array) -> tuple[Array, tuple[int, ...]]:
        """(whether each entry of the windows' view is its window's first
        maximum x^*, the window axes of the view)."""
        x, axes = self._windows(a)
        # Row-major rank of each entry in its window; the first maximum has the
        # least rank among the window's maxima.
        rank = np.arange(self.size).reshape(
            [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
        )
        is_max = x == jnp.max(x, axis=axes, keepdims=True)
        first = jnp.min(jnp.where(is_max, rank, self.size), axis=axes, keepdims=True)
        return rank == first, axes


@dataclasses.dataclass(frozen=True)
class Flatten(_Bound):
    r"""Flattens each example: (batch, *in_shape) → (batch, ∏ in_shape).

    .. math::
        z_{n, \mathrm{flat}(x)} = a_{n,x}, \qquad g^a_{n,x} = g_{n,\mathrm{flat}(x)},

    with flat the row-major (C order) index, channels fastest; the adjoint
    reshapes back.

    Attributes:
      in_shape: one example's input shape, or ``None`` until the network binds
        the map.

    Raises:
      TypeError: an in_shape that is not a tuple of ints.
      ValueError: an empty in_shape or an entry < 1.
    """

    in_shape: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.in_shape is not None:
            object.__setattr__(self, "in_shape", _checked_in_shape(self.in_shape))

    @property
    def out_shape(self) -> tuple[int, ...]:
        """One example's output shape, (∏ in_shape,)."""
        return (math.prod(self._bound_in_shape()),)

    def apply(self, a: Array) -> Array:
        """z: (batch, ∏ in_shape) from a: (batch, *in_shape)."""
        _check_shape(a, self._bound_in_shape(), "a", "Flatten")
        return a.reshape(a.shape[0], *self.out_shape)

    def adjoint(self, g: Array, a: Array | None = None) -> Array:
        """g^a: (batch, *in_shape) from g: (batch, ∏ in_shape); ``a`` is
        accepted and ignored."""
        _check_shape(g, self.out_shape, "g", "Flatten")
        return g.reshape(g.shape[0], *self.in_shape)

    def tangent(self, r: Array, a: Array | None = None) -> Array:
        """The map is linear: ``apply(r)``, (batch, ∏ in_shape)."""
        return self.apply(r)
