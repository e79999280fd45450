r"""Layer kinds: what the δ pass needs of one parametrized layer, as pure functions.

A parametrized layer l maps a^{l-1} to z^l = f_l(a^{l-1}; θ^l); its activation
a^l = σ_l(z^l) is the network's. The δ pass (``jaxprop._core.backprop``, where
the recursion's equations are) asks each layer for

    apply(θ, a)          z^l = f_l(a^{l-1}; θ^l)
    adjoint(w, δ)        g = δ^l ∂f_l/∂a^{l-1}, with the weight replaceable:
                         W^l (backprop), B^l (feedback alignment,
                         Kolen-Pollack), sign(W^l) (sign symmetry)
    grads(a, δ, s)       ∂θ^l from a^{l-1} and δ^l, each example weighted by s_i
    per_example_grads    every example's own ∂θ^l, unreduced
    sq_norms(a, δ)       ‖∂θ^l_i‖² per example, without forming ∂θ^l_i

and, to build and cost a network, its parameter shapes, ``init``, output shape
and FLOPs. A layer kind is static configuration: a frozen dataclass of ints,
hashable by value, so that equal layers share compiled programs. Parameter-free
maps (pooling, flatten) will need only ``apply`` and ``adjoint``.

Every function works on the runs-last arrays of the tiny-network fast path
(``jaxprop._engine.steps`` through ``jaxprop._network.over_runs``): a trailing
run axis on every array, which :func:`contract`, :func:`sum_batch` and
elementwise operations broadcast.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import operator
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._validate import positive_int
from .params import INITIALIZERS, DenseParams

Array = jax.Array


def contract(u: Array, v: Array, i: int, j: int) -> Array:
    """Σ_k u[..k..] v[..k..] over axis i of u and axis j of v (i, j ∈ {0, 1}).

    For matrices, ``a.T @ d`` and ``d @ w.T`` written as one ``dot_general``
    with the contracted axes named, not a transpose and a dot: XLA:CPU otherwise
    materializes wᵀ before a matrix-vector product, a full copy of w at every
    step (docs/design.md, "The δ recursion names its contracted axes").

    With trailing run axes (u: (m, k, *runs), v: (k, n, *runs) up to the
    transposes, runs broadcasting), the sum is written as elementwise products:
    every run's small product is computed at once, vectorized along the runs.
    """
    if u.ndim == 2 and v.ndim == 2:
        return jax.lax.dot_general(u, v, (((i,), (j,)), ((), ())))
    u = u if i == 1 else jnp.swapaxes(u, 0, 1)  # (m, k, *runs)
    v = v if j == 0 else jnp.swapaxes(v, 0, 1)  # (k, n, *runs)
    terms = (u[:, k : k + 1] * v[k : k + 1] for k in range(u.shape[1]))
    return functools.reduce(operator.add, terms)


def sum_batch(a: Array, ndim: int) -> Array:
    """Σ over axis 0, the batch, of ``a`` whose own rank is ``ndim``.

    With trailing run axes (``a.ndim > ndim``: the runs-last layout, batches of
    at most ``RUNS_LAST_MAX_BATCH``) the sum is a chain of adds of the batch's
    slices, elementwise along the runs: XLA fuses it with what follows, where a
    reduction would be a kernel of its own.
    """
    if a.ndim == ndim:
        return jnp.sum(a, axis=0)
    return functools.reduce(operator.add, (a[i] for i in range(a.shape[0])))


class Flops(NamedTuple):
    """FLOPs of one layer's three products over a batch (multiply and add: two).

    Attributes:
      apply: the forward map, z^l from a^{l-1}.
      adjoint: δ^l carried back to a^{l-1} (not run for the first layer).
      grads: ∂θ^l from a^{l-1} and δ^l.
    """

    apply: int
    adjoint: int
    grads: int


@dataclasses.dataclass(frozen=True)
class Dense:
    r"""A fully connected layer, z = a W + b (row-vector convention).

    .. math::
        z^l = a^{l-1} W^l + b^l,\qquad
        g = δ^l (W^l)ᵀ,\qquad
        ∂W^l = (a^{l-1})ᵀ (s ⊙ δ^l),\quad ∂b^l = Σ_i s_i δ^l_i,

    with θ^l = ``DenseParams(w: (n_in, n_out), b: (n_out,))``; a^{l-1}:
    (batch, n_in), δ^l and z^l: (batch, n_out).

    Attributes:
      n_in: input width n_{l-1}.
      n_out: output width n_l.
    """

    n_in: int
    n_out: int

    def __post_init__(self):
        for field in ("n_in", "n_out"):
            object.__setattr__(self, field, positive_int(getattr(self, field), field))

    #: PRNG keys ``init`` consumes (one for w, one for b).
    n_keys = 2

    @property
    def in_shape(self) -> tuple[int, ...]:
        """One example's input shape, (n_in,)."""
        return (self.n_in,)

    def bind(self, in_shape: tuple[int, ...]) -> Dense:
        """Itself, for a ``jp.Network`` whose layer before gives (n_in,)."""
        if tuple(in_shape) != self.in_shape:
            raise ValueError(
                f"Dense(n_in={self.n_in}, n_out={self.n_out}) takes inputs of "
                f"shape ({self.n_in},); got {tuple(in_shape)} (jp.layers.Dense"
                f"(features) reads its input width from the layer before)."
            )
        return self

    @property
    def out_shape(self) -> tuple[int, ...]:
        """One example's output shape z^l, (n_out,)."""
        return (self.n_out,)

    @property
    def width(self) -> int:
        """The widest axis of its products (the runs-last rule's "tiny")."""
        return max(self.n_in, self.n_out)

    def shapes(self, dtype) -> DenseParams:
        """θ's shapes: DenseParams of ``jax.ShapeDtypeStruct`` (w, b)."""
        return DenseParams(
            jax.ShapeDtypeStruct((self.n_in, self.n_out), dtype),
            jax.ShapeDtypeStruct((self.n_out,), dtype),
        )

    @property
    def n_params(self) -> int:
        """Entries of θ: (n_in + 1) n_out."""
        return (self.n_in + 1) * self.n_out

    def flops(self, batch: int) -> Flops:
        """2·batch·n_in·n_out for each of the three products."""
        n = 2 * batch * self.n_in * self.n_out
        return Flops(apply=n, adjoint=n, grads=n)

    def init(self, keys: Array, scheme: str, dtype) -> DenseParams:
        """θ drawn with ``keys``: (n_keys,) and a checked ``scheme`` (fan-in n_in).

        ``uniform01`` draws every weight and bias from U[0, 1), like the
        reference program's ``np.random.rand``; the other schemes draw weights
        from ``jax.nn.initializers`` (glorot_uniform, he_normal, lecun_normal)
        and set biases to zero.
        """
        key_w, key_b = keys[0], keys[1]
        w_shape, b_shape = (self.n_in, self.n_out), (self.n_out,)
        if scheme == "uniform01":
            w = jax.random.uniform(key_w, w_shape, dtype)
            b = jax.random.uniform(key_b, b_shape, dtype)
        else:
            w = INITIALIZERS[scheme](key_w, w_shape, dtype)
            b = jnp.zeros(b_shape, dtype)
        return DenseParams(w, b)

    def apply(self, theta: DenseParams, a: Array) -> Array:
        """z = a W + b: (batch, n_out) from a: (batch, n_in)."""
        return contract(a, theta.w, 1, 0) + theta.b

    def adjoint(self, w: Array, delta: Array, a: Array | None = None) -> Array:
        """g = δ wᵀ: (batch, n_in) from δ: (batch, n_out); w: (n_in, n_out) is
        W for the gradient, or what a rule puts in its place (B, sign(W)). The
        layer's input ``a`` is not needed (the protocol passes it for maps such
        as max pooling)."""
        del a
        return contract(delta, w, 1, 1)

    def grads(self, a: Array, delta: Array, scale: Array | None = None) -> DenseParams:
        """DenseParams(aᵀ (s ⊙ δ): (n_in, n_out), Σ_batch s ⊙ δ: (n_out,)).

        a: (batch, n_in), δ: (batch, n_out), s: (batch,) or None (s_i = 1):
        one contraction however the examples are weighted (per-example
        clipping, a Poisson sample's mask).
        """
        if scale is not None:
            delta = jnp.expand_dims(scale, 1) * delta
        return DenseParams(w=contract(a, delta, 0, 0), b=sum_batch(delta, 2))

    def per_example_grads(self, a: Array, delta: Array) -> DenseParams:
        """DenseParams(w: (batch, n_in, n_out), b: (batch, n_out)):
        w_i = (a_i)ᵀ δ_i, b_i = δ_i, one outer product per example."""
        return DenseParams(w=a[:, :, None] * delta[:, None, :], b=delta)

    def sq_norms(self, a: Array, delta: Array) -> Array:
        r"""‖w_i‖_F² + ‖b_i‖² = ‖δ_i‖² (‖a_i‖² + 1): (batch,).

        The Frobenius norm of an outer product u vᵀ is ‖u‖ ‖v‖ (Goodfellow 2015,
        "Efficient per-example gradient computations"): O(batch·(n_in + n_out)).
        """
        return jnp.sum(delta * delta, axis=1) * (jnp.sum(a * a, axis=1) + 1)


@dataclasses.dataclass(frozen=True)
class Block:
    r"""Layer l of a network with parameter-free maps before it: the unit of
    the δ pass when pooling or flattening sits between parametrized layers.

    With maps m_1..m_k (pooling, flatten) applied to a^{l-1} first,
    u = m_k(...m_1(a^{l-1})), the block is z^l = f_l(u; θ^l), and

    .. math::
        g = m_1^*(\cdots m_k^*(δ^l\, ∂f_l/∂u)),

    each map's adjoint m^*(g, its input) in reverse order (max pooling routes
    by its input). ∂θ^l is the layer's, from u. The maps' forward is
    recomputed from a^{l-1} where the adjoint and gradients need it; inside
    one compiled program XLA computes it once.

    A layer without ``per_example_grads`` or ``sq_norms`` (a user's layer that
    gives only ``grads``) gets them here, from ``grads`` of one example at a
    time under ``vmap``.

    Attributes:
      maps: the bound parameter-free maps, in order (may be empty).
      layer: the bound parametrized layer.
    """

    maps: tuple
    layer: object

    @property
    def n_keys(self) -> int:
        """PRNG keys ``init`` consumes: the layer's."""
        return self.layer.n_keys

    @property
    def in_shape(self) -> tuple[int, ...]:
        """One example's a^{l-1}: the first map's input."""
        return (self.maps[0] if self.maps else self.layer).in_shape

    @property
    def out_shape(self) -> tuple[int, ...]:
        """One example's z^l."""
        return self.layer.out_shape

    @property
    def n_params(self) -> int:
        """Entries of θ^l."""
        return sum(math.prod(s.shape) for s in self.shapes(jnp.float32))

    def shapes(self, dtype) -> DenseParams:
        """θ^l's shapes: the layer's."""
        return self.layer.shapes(dtype)

    def flops(self, batch: int) -> Flops:
        """The layer's FLOPs (the maps' few are not counted); zeros for a
        layer that does not say."""
        flops = getattr(self.layer, "flops", None)
        return Flops(0, 0, 0) if flops is None else flops(batch)

    def init(self, keys: Array, scheme: str, dtype) -> DenseParams:
        """θ^l drawn by the layer."""
        return self.layer.init(keys, scheme, dtype)

    def inputs(self, a: Array) -> tuple[Array, ...]:
        """(a^{l-1}, m_1(a^{l-1}), ..., u): every map's input, then u."""
        out = [a]
        for m in self.maps:
            out.append(m.apply(out[-1]))
        return tuple(out)

    def apply(self, theta: DenseParams, a: Array) -> Array:
        """z^l = f_l(u; θ^l): (batch, *out_shape) from a^{l-1}."""
        return self.layer.apply(theta, self.inputs(a)[-1])

    def adjoint(self, w: Array, delta: Array, a: Array | None = None) -> Array:
        """g: (batch, *in_shape), δ^l carried back through the layer (with
        ``w`` in W's place) and the maps' adjoints; ``a``: a^{l-1}."""
        inputs = self.inputs(a)
        g = self.layer.adjoint(w, delta, inputs[-1])
        for m, u in zip(reversed(self.maps), reversed(inputs[:-1]), strict=True):
            g = m.adjoint(g, u)
        return g

    def grads(self, a: Array, delta: Array, scale: Array | None = None) -> DenseParams:
        """∂θ^l from u and δ^l, each example weighted by ``scale``."""
        return self.layer.grads(self.inputs(a)[-1], delta, scale)

    def per_example_grads(self, a: Array, delta: Array) -> DenseParams:
        """Every example's ∂θ^l, with a leading batch axis."""
        u = self.inputs(a)[-1]
        own = getattr(self.layer, "per_example_grads", None)
        if own is not None:
            return own(u, delta)
        return jax.vmap(lambda u_i, d_i: self.layer.grads(u_i[None], d_i[None]))(
            u, delta
        )

    def sq_norms_and_sums(self, a: Array, delta: Array):
        """(‖∂θ^l_i‖², s ↦ Σ_i s_i ∂θ^l_i), the layer's from u (see
        :func:`sq_norms_and_sums`)."""
        u = self.inputs(a)[-1]
        if hasattr(self.layer, "sq_norms"):
            return sq_norms_and_sums(self.layer, u, delta)
        return self.sq_norms(a, delta), functools.partial(self.grads, a, delta)

    def sq_norms(self, a: Array, delta: Array) -> Array:
        """‖∂θ^l_i‖² per example: (batch,)."""
        own = getattr(self.layer, "sq_norms", None)
        if own is not None:
            return own(self.inputs(a)[-1], delta)
        g = self.per_example_grads(a, delta)
        return sum(
            jnp.sum(leaf * leaf, axis=tuple(range(1, leaf.ndim)))
            for leaf in jax.tree.leaves(g)
        )


def sq_norms_and_sums(layer, a: Array, delta: Array):
    """(‖∂θ_i‖²: (batch,), s ↦ Σ_i s_i ∂θ_i) of one layer: its own
    ``sq_norms_and_sums`` where it has one (Conv: clipping then reuses what the
    norms formed), else its ``sq_norms`` and its ``grads`` with the scale."""
    own = getattr(layer, "sq_norms_and_sums", None)
    if own is not None:
        return own(a, delta)
    return layer.sq_norms(a, delta), functools.partial(layer.grads, a, delta)


def dense_layers(sizes: tuple[int, ...]) -> tuple[Dense, ...]:
    """The Dense layers of widths ``sizes`` = (n_0, ..., n_L)."""
    return tuple(Dense(i, o) for i, o in itertools.pairwise(sizes))


def in_size(layers) -> int:
    """Entries of one example's input to the first layer."""
    return math.prod(layers[0].in_shape)


def out_sizes(layers) -> tuple[int, ...]:
    """Entries of one example's z^l, for each layer."""
    return tuple(math.prod(layer.out_shape) for layer in layers)
