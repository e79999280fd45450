r"""A 2-D convolution layer kind, channels last, with its δ pass written by hand.

The layer protocol is ``jaxprop._core.layers``'s (Dense is the model). With a
stride s = (s_h, s_w), a kernel (k_h, k_w), the input zero-padded by p_lo rows
above and p_hi below (and likewise for columns: ``pads``), and a^p the padded
input,

.. math::
    z_{n,p,q,o} = b_o + Σ_{i,j,c} a^p_{n, p s_h + i, q s_w + j, c}\, W_{i,j,c,o},

    g_{n,x,y,c} = Σ_{p s_h + i = x + p^h_{lo},\; q s_w + j = y + p^w_{lo}}
                  Σ_o δ_{n,p,q,o} W_{i,j,c,o}
                  \quad\text{(the transposed convolution)},

    ∂W_{i,j,c,o} = Σ_{n,p,q} s_n\, a^p_{n, p s_h + i, q s_w + j, c}\, δ_{n,p,q,o},
    \qquad ∂b_o = Σ_{n,p,q} s_n δ_{n,p,q,o}.

Every sum is one ``lax.conv_general_dilated``; the dimension numbers name which
axis plays which part, so no operand is transposed in memory.

Shapes: a: (batch, H, W, C_in), W: (k_h, k_w, C_in, C_out) (HWIO), b: (C_out,),
z and δ: (batch, H', W', C_out). Unlike Dense, these functions take no trailing
run axis: a conv net is not on the runs-last fast path.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from .._validate import choice, positive_int
from .layers import Flops
from .params import INITIALIZERS, DenseParams

Array = jax.Array

#: The padding modes, as ``lax.conv_general_dilated`` names them.
PADDINGS = ("SAME", "VALID")

_NHWC = ("NHWC", "HWIO", "NHWC")


def _pair(value, name: str) -> tuple[int, int]:
    """``value`` as a pair of positive ints: "kernel must be a pair of positive
    integers (height, width); got 3."."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(
            f"{name} must be a pair of positive integers (height, width); "
            f"got {value!r}."
        )
    return tuple(positive_int(v, f"{name}[{i}]") for i, v in enumerate(value))


@dataclasses.dataclass(frozen=True)
class Conv2D:
    r"""A 2-D convolution, z = a ⋆ W + b, channels last (the module's equations).

    θ is ``DenseParams(w: (k_h, k_w, C_in, C_out), b: (C_out,))``.

    Attributes:
      in_channels: C_in.
      out_channels: C_out.
      kernel: (k_h, k_w).
      stride: (s_h, s_w).
      padding: ``"VALID"`` (none) or ``"SAME"`` (H' = ⌈H / s_h⌉, the odd row
        below, as ``lax.padtype_to_pads`` places it); either case.
      in_hw: (H, W), one example's input height and width.

    Raises:
      TypeError: a field of the wrong type (``kernel`` not a pair, a float
        channel count, a padding that is not a string).
      ValueError: a field out of range, or a kernel larger than its padded
        input (naming ``kernel`` and ``in_hw``).
    """

    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: str = "VALID"
    in_hw: tuple[int, int] = (1, 1)

    def __post_init__(self):
        for field in ("in_channels", "out_channels"):
            object.__setattr__(self, field, positive_int(getattr(self, field), field))
        for field in ("kernel", "stride", "in_hw"):
            object.__setattr__(self, field, _pair(getattr(self, field), field))
        padding = self.padding
        # lax's spelling is upper case; accept either, as lax does.
        padding = padding.upper() if isinstance(padding, str) else padding
        object.__setattr__(self, "padding", choice(padding, "padding", PADDINGS))
        for axis, (size, k, (lo, hi)) in enumerate(
            zip(self.in_hw, self.kernel, self.pads, strict=True)
        ):
            if size + lo + hi < k:
                raise ValueError(
                    f"kernel {self.kernel} is larger than the input in_hw "
                    f"{self.in_hw} padded ({self.padding}) along axis {axis}: "
                    f"{size} + {lo + hi} < {k}."
                )

    #: PRNG keys ``init`` consumes (one for w, one for b).
    n_keys = 2

    @property
    def pads(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """((p_lo, p_hi) rows, (p_lo, p_hi) columns) of zeros around the input."""
        return tuple(
            tuple(p)
            for p in jax.lax.padtype_to_pads(
                self.in_hw, self.kernel, self.stride, self.padding
            )
        )

    @property
    def out_hw(self) -> tuple[int, int]:
        """(H', W'): ⌊(H + p_lo + p_hi − k_h) / s_h⌋ + 1, and likewise W'."""
        return tuple(
            (size + lo + hi - k) // s + 1
            for size, k, s, (lo, hi) in zip(
                self.in_hw, self.kernel, self.stride, self.pads, strict=True
            )
        )

    @property
    def in_shape(self) -> tuple[int, ...]:
        """One example's input shape, (H, W, C_in)."""
        return (*self.in_hw, self.in_channels)

    @property
    def out_shape(self) -> tuple[int, ...]:
        """One example's output shape z^l, (H', W', C_out)."""
        return (*self.out_hw, self.out_channels)

    @property
    def kernel_shape(self) -> tuple[int, int, int, int]:
        """W's shape, (k_h, k_w, C_in, C_out): HWIO."""
        return (*self.kernel, self.in_channels, self.out_channels)

    def shapes(self, dtype) -> DenseParams:
        """θ's shapes: DenseParams of ``jax.ShapeDtypeStruct`` (w, b)."""
        return DenseParams(
            jax.ShapeDtypeStruct(self.kernel_shape, dtype),
            jax.ShapeDtypeStruct((self.out_channels,), dtype),
        )

    @property
    def n_params(self) -> int:
        """Entries of θ: (k_h k_w C_in + 1) C_out."""
        return (math.prod(self.kernel) * self.in_channels + 1) * self.out_channels

    def flops(self, batch: int) -> Flops:
        """2·batch·H'·W'·k_h·k_w·C_in·C_out for each of the three products (the
        adjoint's count includes the products with the zeros a stride inserts)."""
        n = 2 * batch * math.prod(self.out_hw) * math.prod(self.kernel_shape)
        return Flops(apply=n, adjoint=n, grads=n)

    def init(self, keys: Array, scheme: str, dtype) -> DenseParams:
        """θ drawn with ``keys``: (n_keys,) and a checked ``scheme``.

        As :meth:`jaxprop._core.layers.Dense.init`, on the HWIO kernel:
        ``jax.nn.initializers`` read the last two axes as (C_in, C_out) and the
        others as the receptive field, so fan-in is k_h k_w C_in and fan-out
        k_h k_w C_out (flax's and PyTorch's convention).
        """
        key_w, key_b = keys[0], keys[1]
        b_shape = (self.out_channels,)
        if scheme == "uniform01":
            w = jax.random.uniform(key_w, self.kernel_shape, dtype)
            b = jax.random.uniform(key_b, b_shape, dtype)
        else:
            w = INITIALIZERS[scheme](key_w, self.kernel_shape, dtype)
            b = jnp.zeros(b_shape, dtype)
        return DenseParams(w, b)

    def apply(self, theta: DenseParams, a: Array) -> Array:
        """z: (batch, H', W', C_out) from a: (batch, H, W, C_in)."""
        z = jax.lax.conv_general_dilated(
            a, theta.w, self.stride, self.pads, dimension_numbers=_NHWC
        )
        return z + theta.b

    def _uncovered(self) -> tuple[int, int]:
        """Rows (columns) of the padded input below (right of) the last window:
        (H + p_lo + p_hi − k_h) mod s_h, which no output reads."""
        return tuple(
            (size + lo + hi - k) % s
            for size, k, s, (lo, hi) in zip(
                self.in_hw, self.kernel, self.stride, self.pads, strict=True
            )
        )

    def adjoint(self, w: Array, delta: Array) -> Array:
        r"""g = ∂⟨δ, z⟩/∂a: (batch, H, W, C_in) from δ: (batch, H', W', C_out).

        w: (k_h, k_w, C_in, C_out) is W for the gradient, or what a rule puts in
        its place (B, sign(W)). The transposed convolution: δ dilated by the
        stride (s − 1 zeros between entries), padded by k − 1 − p_lo before and
        k − 1 − p_hi + r after (r: the uncovered rows, which get g = 0), and
        correlated with the kernel flipped in space, its C_out axis read as
        the input feature axis (``"HWOI"``).
        """
        pads = tuple(
            (k - 1 - lo, k - 1 - hi + r)
            for k, (lo, hi), r in zip(
                self.kernel, self.pads, self._uncovered(), strict=True
            )
        )
        return jax.lax.conv_general_dilated(
            delta,
            w[::-1, ::-1],
            window_strides=(1, 1),
            padding=pads,
            lhs_dilation=self.stride,
            dimension_numbers=("NHWC", "HWOI", "NHWC"),
        )

    def grads(self, a: Array, delta: Array, scale: Array | None = None) -> DenseParams:
        """DenseParams(∂W: (k_h, k_w, C_in, C_out), ∂b: (C_out,)).

        a: (batch, H, W, C_in), δ: (batch, H', W', C_out), s: (batch,) or None
        (s_i = 1). ∂W is a convolution of a with δ as the kernel: the batch is
        the contracted feature axis (a read as ``"CHWN"``, δ as ``"IHWO"``),
        δ's entries sit s apart (``rhs_dilation``), and the output's spatial
        axes are the kernel's. The uncovered rows r are cropped by a negative
        high padding.
        """
        if scale is not None:
            delta = scale[:, None, None, None] * delta
        pads = tuple(
            (lo, hi - r)
            for (lo, hi), r in zip(self.pads, self._uncovered(), strict=True)
        )
        w = jax.lax.conv_general_dilated(
            a,
            delta,
            window_strides=(1, 1),
            padding=pads,
            rhs_dilation=self.stride,
            dimension_numbers=("CHWN", "IHWO", "HWNC"),
        )
        return DenseParams(w=w, b=jnp.sum(delta, axis=(0, 1, 2)))

    def per_example_grads(self, a: Array, delta: Array) -> DenseParams:
        """DenseParams(w: (batch, k_h, k_w, C_in, C_out), b: (batch, C_out)):
        :meth:`grads` of each example alone (``vmap`` batches the convolutions
        into one grouped convolution)."""

        def one(a_i, delta_i):
            return self.grads(a_i[None], delta_i[None])

        return jax.vmap(one)(a, delta)

    def sq_norms(self, a: Array, delta: Array) -> Array:
        r"""‖∂W_i‖_F² + ‖∂b_i‖²: (batch,), from :meth:`per_example_grads`.

        This materializes every example's ∂W_i, O(batch·k_h k_w C_in C_out).
        The Gram ("ghost") form, with P_t the patch of a_i under output
        position t and T = H' W',

        .. math:: ‖∂W_i‖_F² = Σ_{t,t'} (P_t · P_{t'}) (δ_{i,t} · δ_{i,t'}),

        costs O(batch·T²·(k_h k_w C_in + C_out)) and O(batch·T²) memory instead:
        it pays when T² < k_h k_w C_in C_out, i.e. late layers with few
        positions and many channels (Bu et al. 2022, "mixed ghost clipping",
        choose per layer).
        """
        g = self.per_example_grads(a, delta)
        return jnp.sum(g.w * g.w, axis=(1, 2, 3, 4)) + jnp.sum(g.b * g.b, axis=1)
