r"""An N-D convolution layer kind, channels last, with its δ pass written by hand.

The layer protocol is ``jaxprop._core.layers``'s (Dense is the model). With n
spatial axes, a multi-index t over the output positions, a stride s, a kernel
k, the input zero-padded by p_lo before and p_hi after along each axis
(``pads``), and a^p the padded input,

.. math::
    z_{i,t,o} = b_o + Σ_{u,c} a^p_{i, t s + u, c}\, W_{u,c,o},

    g_{i,x,c} = Σ_{t s + u = x + p_{lo}} Σ_o δ_{i,t,o} W_{u,c,o}
                \quad\text{(the transposed convolution)},

    ∂W_{u,c,o} = Σ_{i,t} s_i\, a^p_{i, t s + u, c}\, δ_{i,t,o},
    \qquad ∂b_o = Σ_{i,t} s_i δ_{i,t,o},

with t s the elementwise product and u running over the kernel's positions.
Every sum is one ``lax.conv_general_dilated``; the dimension numbers name which
axis plays which part, so no operand is transposed in memory.

Shapes: a: (batch, *spatial, C_in), W: (*kernel_size, C_in, C_out) (flax's and
lax's "HWIO" for 2-D), b: (C_out,), z and δ: (batch, *out_spatial, C_out).
Unlike Dense, these functions take no trailing run axis: a conv net is not on
the runs-last fast path.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from .._validate import choice, integer, positive_int
from .layers import Flops
from .params import INITIALIZERS, DenseParams

Array = jax.Array

#: The padding modes, as ``lax.conv_general_dilated`` names them.
PADDINGS = ("SAME", "VALID")

# Spatial axis letters of lax's dimension-number strings, the last n for rank n
# ("W" for 1-D, "HW" for 2-D, "DHW" for 3-D); none is N, C, I or O, which lax
# reserves for batch and feature axes.
_SPATIAL = "ABEFGJKLMPQRSTUVXYZDHW"

#: ``Conv.sq_norms``'s methods.
SQ_NORM_METHODS = ("auto", "gram", "materialized")

#: How many times fewer multiply-adds the Gram form must need to be chosen:
#: materializing is a fused elementwise loop, the Gram form batched matrix
#: products of T×T, slower per multiply-add on XLA:CPU (docs/performance.md,
#: "Conv nets": ConvBase's three layers at batch 256).
GRAM_PENALTY = 2


def _ints(value, name: str, low: int = 1):
    """``value`` checked as an int ≥ ``low`` or a tuple of them (lists become
    tuples, which hash)."""
    if isinstance(value, (tuple, list)):
        if not value:
            raise ValueError(f"{name} must not be empty; got {value!r}.")
        return tuple(integer(v, f"{name}[{i}]", low) for i, v in enumerate(value))
    return integer(value, name, low)


def _padding(value):
    """``padding`` checked: "SAME"/"VALID" (upper-cased), an int p ≥ 0, or a
    tuple of (low, high) pairs of ints ≥ 0."""
    if isinstance(value, str):
        return choice(value.upper(), "padding", PADDINGS)
    if isinstance(value, (tuple, list)):
        pairs = []
        for i, pair in enumerate(value):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(
                    "padding must be 'SAME', 'VALID', an int or a tuple of "
                    f"(low, high) pairs, one per spatial axis; got {value!r}."
                )
            pairs.append(tuple(integer(p, f"padding[{i}]", 0) for p in pair))
        return tuple(pairs)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            "padding must be 'SAME', 'VALID', an int or a tuple of (low, high) "
            f"pairs, one per spatial axis; got {type(value).__name__} {value!r}."
        )
    return integer(value, "padding", 0)


def _per_axis(value, name: str, rank: int, in_shape) -> tuple:
    """``value`` (an int or a tuple) as a tuple of length ``rank``."""
    if not isinstance(value, tuple):
        return (value,) * rank
    if len(value) != rank:
        raise ValueError(
            f"{name} {value} has {len(value)} entries but the input in_shape "
            f"{in_shape} has spatial rank {rank} (in_shape is (*spatial, channels))."
        )
    return value


@dataclasses.dataclass(frozen=True)
class Conv:
    r"""An N-D convolution, z = a ⋆ W + b, channels last (the module's equations).

    θ is ``DenseParams(w: (*kernel_size, C_in, C_out), b: (C_out,))``. Given
    unbound (``in_shape=None``); :meth:`bind` fixes the input shape.

    Attributes:
      features: C_out.
      kernel_size: an int (the same on every spatial axis) or one int per
        spatial axis.
      stride: an int or one int per spatial axis.
      padding: ``"VALID"`` (none), ``"SAME"`` (out = ⌈in / s⌉, the odd zero
        after, as ``lax.padtype_to_pads`` places it), either case; an int p
        (p zeros on both sides of every spatial axis); or one (low, high) pair
        per spatial axis.
      activation: the σ that follows this layer, for the network to read
        (None: the network's); the layer itself ignores it.
      in_shape: one example's input, (*spatial, C_in); None until bound.

    Raises:
      TypeError: a field of the wrong type (a float kernel size, a padding
        that is neither a string, an int nor pairs, an unhashable activation).
      ValueError: a field out of range (a stride of 0, an unknown padding
        name, a negative padding).
    """

    features: int
    kernel_size: int | tuple[int, ...]
    stride: int | tuple[int, ...] = 1
    padding: str | int | tuple[tuple[int, int], ...] = "VALID"
    activation: object = None
    in_shape: tuple[int, ...] | None = None

    def __post_init__(self):
        set_ = lambda name, v: object.__setattr__(self, name, v)  # noqa: E731
        set_("features", positive_int(self.features, "features"))
        set_("kernel_size", _ints(self.kernel_size, "kernel_size"))
        set_("stride", _ints(self.stride, "stride"))
        set_("padding", _padding(self.padding))
        try:
            hash(self.activation)
        except TypeError:
            raise TypeError(
                "activation must be hashable (a name such as 'relu', or an "
                f"object); got {type(self.activation).__name__}."
            ) from None
        if self.in_shape is not None:
            self._bind_fields(set_)

    def _bind_fields(self, set_) -> None:
        """Checks ``in_shape`` = (*spatial, C_in) and sets every field in its
        bound form: kernel_size and stride one int per spatial axis, an int
        padding as (p, p) pairs (a padding name stays a name)."""
        in_shape = self.in_shape
        if not isinstance(in_shape, (tuple, list)):
            raise TypeError(
                f"in_shape must be a tuple (*spatial, channels); got {in_shape!r}."
            )
        in_shape = _ints(tuple(in_shape), "in_shape")
        if len(in_shape) < 2:
            raise ValueError(
                "Conv needs an input (*spatial, channels) with at least one "
                f"spatial axis; got in_shape {in_shape}: put it before Flatten, "
                "or give the input a channel axis (e.g. (40, 1))."
            )
        rank = len(in_shape) - 1
        set_("in_shape", in_shape)
        set_("kernel_size", _per_axis(self.kernel_size, "kernel_size", rank, in_shape))
        set_("stride", _per_axis(self.stride, "stride", rank, in_shape))
        padding = self.padding
        if isinstance(padding, int):
            set_("padding", ((padding, padding),) * rank)
        elif isinstance(padding, tuple):
            _per_axis(padding, "padding", rank, in_shape)
        for axis, (size, k, (lo, hi)) in enumerate(
            zip(in_shape[:-1], self.kernel_size, self.pads, strict=True)
        ):
            if size + lo + hi < k:
                raise ValueError(
                    f"kernel_size {self.kernel_size} is larger than the input "
                    f"in_shape {in_shape} padded ({padding!r}) along spatial "
                    f"axis {axis}: {size} + {lo + hi} < {k}."
                )

    def bind(self, in_shape) -> Conv:
        """A copy for the input ``in_shape`` = (*spatial, C_in), every field
        normalized: kernel_size and stride one int per spatial axis, an int
        padding as (p, p) pairs (a padding name stays a name). Binding a bound
        layer again to the same ``in_shape`` gives an equal layer.

        Raises:
          TypeError: ``in_shape`` not a tuple of positive ints.
          ValueError: ``in_shape`` without a spatial axis; a kernel_size,
            stride or padding of another length than the spatial rank; a kernel
            larger than its padded input (naming kernel_size, in_shape and
            padding).
        """
        return dataclasses.replace(self, in_shape=in_shape)

    #: PRNG keys ``init`` consumes (one for w, one for b).
    n_keys = 2

    def _spatial_in(self) -> tuple[int, ...]:
        """The input's spatial shape; a clear error on an unbound layer."""
        if self.in_shape is None:
            raise ValueError(
                f"{self!r} has no input shape yet: bind it first "
                "(layer.bind(in_shape); a network does this)."
            )
        return self.in_shape[:-1]

    @property
    def pads(self) -> tuple[tuple[int, int], ...]:
        """One (p_lo, p_hi) pair of zeros around the input per spatial axis."""
        spatial = self._spatial_in()
        if isinstance(self.padding, tuple):
            return self.padding
        return tuple(
            tuple(p)
            for p in jax.lax.padtype_to_pads(
                spatial, self.kernel_size, self.stride, self.padding
            )
        )

    def _windows(self) -> tuple[tuple[int, int], ...]:
        """divmod(n + p_lo + p_hi − k, s) per spatial axis: the strides a
        window takes across the padded input, and the entries left after the
        last window."""
        return tuple(
            divmod(size + lo + hi - k, s)
            for size, k, s, (lo, hi) in zip(
                self._spatial_in(),
                self.kernel_size,
                self.stride,
                self.pads,
                strict=True,
            )
        )

    @property
    def out_spatial(self) -> tuple[int, ...]:
        """The output's spatial shape: ⌊(n + p_lo + p_hi − k) / s⌋ + 1 per axis."""
        return tuple(q + 1 for q, _ in self._windows())

    @property
    def out_shape(self) -> tuple[int, ...]:
        """One example's output shape z^l, (*out_spatial, C_out)."""
        return (*self.out_spatial, self.features)

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        """W's shape, (*kernel_size, C_in, C_out)."""
        self._spatial_in()
        return (*self.kernel_size, self.in_shape[-1], self.features)

    def _letters(self) -> str:
        """The spatial axes' letters in lax's dimension-number strings."""
        return _SPATIAL[len(_SPATIAL) - len(self._spatial_in()) :]

    def shapes(self, dtype) -> DenseParams:
        """θ's shapes: DenseParams of ``jax.ShapeDtypeStruct`` (w, b)."""
        return DenseParams(
            jax.ShapeDtypeStruct(self.kernel_shape, dtype),
            jax.ShapeDtypeStruct((self.features,), dtype),
        )

    @property
    def n_params(self) -> int:
        """Entries of θ: (Π kernel_size · C_in + 1) C_out."""
        return math.prod(self.kernel_shape) + self.features

    def flops(self, batch: int) -> Flops:
        """2·batch·T·Π kernel_size·C_in·C_out (T = Π out_spatial) for each of the
        three products (the adjoint's count includes the products with the
        zeros a stride inserts)."""
        n = 2 * batch * math.prod(self.out_spatial) * math.prod(self.kernel_shape)
        return Flops(apply=n, adjoint=n, grads=n)

    def init(self, keys: Array, scheme: str, dtype) -> DenseParams:
        """θ drawn with ``keys``: (n_keys,) and a checked ``scheme``.

        As :meth:`jaxprop._core.layers.Dense.init`, on the (*kernel, C_in,
        C_out) kernel: ``jax.nn.initializers`` read the last two axes as
        (C_in, C_out) and the others as the receptive field, so fan-in is
        Π kernel_size · C_in and fan-out Π kernel_size · C_out (flax's and
        PyTorch's convention).
        """
        key_w, key_b = keys[0], keys[1]
        b_shape = (self.features,)
        if scheme == "uniform01":
            w = jax.random.uniform(key_w, self.kernel_shape, dtype)
            b = jax.random.uniform(key_b, b_shape, dtype)
        else:
            w = INITIALIZERS[scheme](key_w, self.kernel_shape, dtype)
            b = jnp.zeros(b_shape, dtype)
        return DenseParams(w, b)

    def apply(self, theta: DenseParams, a: Array) -> Array:
        """z: (batch, *out_spatial, C_out) from a: (batch, *spatial, C_in)."""
        x = self._letters()
        z = jax.lax.conv_general_dilated(
            a,
            theta.w,
            self.stride,
            self.pads,
            dimension_numbers=(f"N{x}C", f"{x}IO", f"N{x}C"),
        )
        return z + theta.b

    def _uncovered(self) -> tuple[int, ...]:
        """Entries of the padded input after the last window along each axis:
        (n + p_lo + p_hi − k) mod s, which no output reads."""
        return tuple(r for _, r in self._windows())

    def adjoint(self, w: Array, delta: Array, a: Array | None = None) -> Array:
        r"""g = ∂⟨δ, z⟩/∂a: (batch, *spatial, C_in) from δ: (batch,
        *out_spatial, C_out).

        w: (*kernel_size, C_in, C_out) is W for the gradient, or what a rule
        puts in its place (B, sign(W)); ``a`` is not needed and ignored. The
        transposed convolution: δ dilated by the stride (s − 1 zeros between
        entries), padded by k − 1 − p_lo before and k − 1 − p_hi + r after
        (r: the uncovered entries, which get g = 0), and correlated with the
        kernel flipped in space, its C_out axis read as the input feature axis
        (``"HWOI"`` in 2-D).
        """
        x = self._letters()
        pads = tuple(
            (k - 1 - lo, k - 1 - hi + r)
            for k, (lo, hi), r in zip(
                self.kernel_size, self.pads, self._uncovered(), strict=True
            )
        )
        return jax.lax.conv_general_dilated(
            delta,
            jnp.flip(w, axis=tuple(range(len(x)))),
            window_strides=(1,) * len(x),
            padding=pads,
            lhs_dilation=self.stride,
            dimension_numbers=(f"N{x}C", f"{x}OI", f"N{x}C"),
        )

    def grads(self, a: Array, delta: Array, scale: Array | None = None) -> DenseParams:
        """DenseParams(∂W: (*kernel_size, C_in, C_out), ∂b: (C_out,)).

        a: (batch, *spatial, C_in), δ: (batch, *out_spatial, C_out), s:
        (batch,) or None (s_i = 1). ∂W is a convolution of a with δ as the
        kernel: the batch is the contracted feature axis (a read as ``"CHWN"``,
        δ as ``"IHWO"`` in 2-D), δ's entries sit s apart (``rhs_dilation``),
        and the output's spatial axes are the kernel's. The uncovered entries r
        are cropped by a negative high padding.
        """
        x = self._letters()
        if scale is not None:
            delta = jnp.expand_dims(scale, tuple(range(1, delta.ndim))) * delta
        pads = tuple(
            (lo, hi - r)
            for (lo, hi), r in zip(self.pads, self._uncovered(), strict=True)
        )
        w = jax.lax.conv_general_dilated(
            a,
            delta,
            window_strides=(1,) * len(x),
            padding=pads,
            rhs_dilation=self.stride,
            dimension_numbers=(f"C{x}N", f"I{x}O", f"{x}NC"),
        )
        return DenseParams(w=w, b=jnp.sum(delta, axis=tuple(range(delta.ndim - 1))))

    def per_example_grads(self, a: Array, delta: Array) -> DenseParams:
        """DenseParams(w: (batch, *kernel_size, C_in, C_out), b: (batch, C_out)).

        ∂W_i = P_iᵀ δ_i = Σ_t P_{i,t} ⊗ δ_{i,t}, with P_i: (T, Π kernel_size ·
        C_in) the patches of :meth:`patches` and δ_i: (T, C_out); ∂b_i = Σ_t
        δ_{i,t}. Written as a sum over t of outer products, which XLA fuses
        into one loop: on XLA:CPU 2-3× faster than the batched matrix product
        ``einsum("itk,ito->iko")`` at ConvBase's sizes (batch 256), which is
        itself faster than ``vmap`` of :meth:`grads` (a grouped convolution).
        """
        batch = delta.shape[0]
        d = delta.reshape(batch, -1, self.features)  # (batch, T, C_out)
        w = jnp.sum(self.patches(a)[..., :, None] * d[..., None, :], axis=1)
        return DenseParams(w=w.reshape(batch, *self.kernel_shape), b=jnp.sum(d, axis=1))

    def patches(self, a: Array) -> Array:
        """P: (batch, T, Π kernel_size · C_in), P[i, t] the padded input under
        output position t (T = Π out_spatial), by strided slices of a^p."""
        spatial, stride = self.out_spatial, self.stride
        a = jnp.pad(a, ((0, 0), *self.pads, (0, 0)))
        windows = [
            jax.lax.slice(
                a,
                (0, *u, 0),
                (
                    a.shape[0],
                    *(
                        ui + (t - 1) * s + 1
                        for ui, t, s in zip(u, spatial, stride, strict=True)
                    ),
                    a.shape[-1],
                ),
                (1, *stride, 1),
            )
            for u in itertools.product(*map(range, self.kernel_size))
        ]
        p = jnp.stack(windows, axis=-2)  # (batch, *out_spatial, Π k, C_in)
        return p.reshape(a.shape[0], math.prod(spatial), -1)

    def sq_norm_costs(self) -> dict[str, int]:
        """Multiply-adds per example of each ``sq_norms`` method (``SQ_NORM_METHODS``).

        With T output positions, K = Π kernel_size · C_in entries per patch and
        C_out features: the Gram form forms two T×T Gram matrices,
        T²·(K + C_out); materializing forms ∂W_i, T·K·C_out.
        """
        t, k = math.prod(self.out_spatial), math.prod(self.kernel_shape[:-1])
        return {
            "gram": t * t * (k + self.features),
            "materialized": t * k * self.features,
        }

    def sq_norm_method(self) -> str:
        """The form ``"auto"`` takes: ``"gram"`` where it needs
        ``GRAM_PENALTY`` times fewer multiply-adds than materializing
        (:meth:`sq_norm_costs`), else ``"materialized"``."""
        costs = self.sq_norm_costs()
        gram_pays = GRAM_PENALTY * costs["gram"] < costs["materialized"]
        return "gram" if gram_pays else "materialized"

    def sq_norms(self, a: Array, delta: Array, method: str = "auto") -> Array:
        r"""‖∂W_i‖_F² + ‖∂b_i‖² per example: (batch,).

        a: (batch, *spatial, C_in), δ: (batch, *out_spatial, C_out). Two
        forms, with P_t the patch of a_i under output position t (t = 1..T):

        - ``"gram"`` (ghost norm, Li et al. 2022; Bu et al. 2022):

          .. math:: ‖∂W_i‖_F² = Σ_{t,t'} (P_t · P_{t'}) (δ_{i,t} · δ_{i,t'}),
             \qquad ‖∂b_i‖² = ‖Σ_t δ_{i,t}‖²,

          T²·(K + C_out) multiply-adds and T² memory per example, no ∂W_i;
        - ``"materialized"``: ∂W_i formed (:meth:`per_example_grads`) and
          squared, T·K·C_out multiply-adds and K·C_out memory per example.

        ``"auto"`` picks statically from the shapes (:meth:`sq_norm_method`):
        Gram iff ``GRAM_PENALTY``·T·(K + C_out) < K·C_out, i.e. late layers
        with few positions and many channels (Bu et al. 2022, "mixed ghost
        clipping", choose per layer by the same count).

        Raises:
          ValueError: an unknown ``method``.
        """
        return self.sq_norms_and_sums(a, delta, method)[0]

    def sq_norms_and_sums(self, a: Array, delta: Array, method: str = "auto"):
        r"""(‖∂θ_i‖²: (batch,), s ↦ Σ_i s_i ∂θ_i): the norms of
        :meth:`sq_norms`, and the weighted sum of the per-example gradients
        (clipping's) from what the norms formed, so that clipping costs no
        second gradient convolution: with the materialized ∂W_i, one
        contraction over the batch; with the Gram form, ∂W = Σ_{i,t} P_{i,t}ᵀ
        s_i δ_{i,t}, one matrix product of its patches.

        ``"auto"`` picks as :meth:`sq_norms` does (:meth:`sq_norm_method`).

        Raises:
          ValueError: an unknown ``method``.
        """
        method = choice(method, "method", SQ_NORM_METHODS)
        if method == "auto":
            method = self.sq_norm_method()
        if method == "materialized":
            g = self.per_example_grads(a, delta)
            w_sq = jnp.sum(g.w * g.w, axis=tuple(range(1, g.w.ndim)))

            def sums(s):
                return jax.tree.map(lambda leaf: jnp.tensordot(s, leaf, 1), g)

            return w_sq + jnp.sum(g.b * g.b, axis=1), sums
        p = self.patches(a)
        d = delta.reshape(delta.shape[0], -1, self.features)  # (batch, T, C_out)
        gram_p = jnp.einsum("itk,iuk->itu", p, p)
        gram_d = jnp.einsum("ito,iuo->itu", d, d)
        b_sq = jnp.sum(jnp.sum(d, axis=1) ** 2, axis=1)

        def sums(s):
            sd = s[:, None, None] * d
            w = jnp.einsum("itk,ito->ko", p, sd).reshape(self.kernel_shape)
            return DenseParams(w=w, b=jnp.sum(sd, axis=(0, 1)))

        return jnp.sum(gram_p * gram_d, axis=(1, 2)) + b_sq, sums
