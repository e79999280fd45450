"""Curvature and gradient statistics from the δ pass (``jp.curvature``).

Plain functions of ``(net, params, x, y)`` that reuse the hand-written
backward's quantities: the sum and variance of per-example gradients, the
generalized Gauss-Newton's diagonal (exact and Monte Carlo), its Kronecker
factors (K-FAC, KFLR) and products with it, and Hessian-vector products by
Pearlmutter's R-operator; diagnostics of the gradient (its norm, the norm
test, the signal-to-noise ratio, the sharpness). Each works under ``jit`` and
``vmap`` over seeds. The trainer reads ``diagnostics``' checks and its
traced, unchecked function, as it checks its options before compiling.
"""

from .._core.curvature import KFactors as KFactors
from ._eigen import top_eigenvalue as top_eigenvalue
from ._ggn import diag_ggn as diag_ggn
from ._ggn import diag_ggn_mc as diag_ggn_mc
from ._ggn import ggn_vector_product as ggn_vector_product
from ._hvp import hessian_vector_product as hessian_vector_product
from ._kfac import kfac as kfac
from ._stats import grad_variance as grad_variance
from ._stats import sum_grad_squared as sum_grad_squared
from .diagnostics import GradDiagnostics as GradDiagnostics
from .diagnostics import grad_diagnostics as grad_diagnostics

__all__: list[str] = [
    "GradDiagnostics",
    "KFactors",
    "diag_ggn",
    "diag_ggn_mc",
    "ggn_vector_product",
    "grad_diagnostics",
    "grad_variance",
    "hessian_vector_product",
    "kfac",
    "sum_grad_squared",
    "top_eigenvalue",
]
