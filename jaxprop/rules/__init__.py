"""Credit-assignment rules: ``jp.rules.backprop()``, ``feedback_alignment()``, ...

A rule is a :class:`Rule` (``init``, ``value_and_grads``, and for a δ rule
its ``project``); train one with ``jp.train_seeds(..., rule=rule)``. The
building blocks (``forward``, ``output_delta``, ``delta_recursion``,
``weight_grads``, ``contract``, and the projections ``Through`` (each
layer's adjoint with a weight in W's place) and ``Spread``) and ``delta_rule``
make new rules; ``dp_sgd``
makes any δ rule differentially private; ``kfac`` preconditions the
gradient with Kronecker factors of the GGN; ``alignment`` measures how each
rule's updates align with backprop's (also ``jp.alignment``).
"""

from .._core.backprop import Spread as Spread
from .._core.backprop import Through as Through
from .angles import Alignment as Alignment
from .angles import alignment as alignment
from .delta_rules import RULES as RULES
from .delta_rules import FeedbackState as FeedbackState
from .delta_rules import KolenPollackState as KolenPollackState
from .delta_rules import Rule as Rule
from .delta_rules import autodiff as autodiff
from .delta_rules import backprop as backprop
from .delta_rules import contract as contract
from .delta_rules import delta_recursion as delta_recursion
from .delta_rules import delta_rule as delta_rule
from .delta_rules import direct_feedback_alignment as direct_feedback_alignment
from .delta_rules import feedback_alignment as feedback_alignment
from .delta_rules import forward as forward
from .delta_rules import kolen_pollack as kolen_pollack
from .delta_rules import output_delta as output_delta
from .delta_rules import sign_symmetry as sign_symmetry
from .delta_rules import weight_grads as weight_grads
from .kfac import KFACState as KFACState
from .kfac import kfac as kfac
from .pairing import is_kolen_pollack_sgd as is_kolen_pollack_sgd
from .pairing import kolen_pollack_sgd as kolen_pollack_sgd
from .privacy import DPSGDState as DPSGDState
from .privacy import dp_sgd as dp_sgd
