"""Curvature and gradient statistics from the δ pass (``jp.curvature``).

Plain functions of ``(net, params, x, y)`` that reuse the hand-written
backward's quantities: the sum and variance of per-example gradients, the
generalized Gauss-Newton's diagonal (exact and Monte Carlo), its Kronecker
factors (K-FAC, KFLR) and products with it, and Hessian-vector products by
Pearlmutter's R-operator. Each works under ``jit`` and ``vmap`` over seeds.
"""

__all__: list[str] = []
