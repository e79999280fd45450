"""Credit-assignment rules: ``jp.rules.backprop()``, ``feedback_alignment()``, ...

A rule is a :class:`Rule` (``init``, ``value_and_grads``, and for a δ rule
its ``project``); train one with ``jp.train_seeds(..., rule=rule)``. The
building blocks (``forward``, ``output_delta``, ``delta_recursion``,
``weight_grads``, ``contract``) and ``delta_rule`` make new rules; ``dp_sgd``
makes any δ rule differentially private; ``alignment`` measures how each
rule's updates align with backprop's (also ``jp.alignment``).
"""

from ._alignment import Alignment as Alignment
from ._alignment import alignment as alignment
from ._dp_sgd import DPSGDState as DPSGDState
from ._dp_sgd import dp_sgd as dp_sgd
from ._rules import RULES as RULES
from ._rules import FeedbackState as FeedbackState
from ._rules import KolenPollackState as KolenPollackState
from ._rules import Rule as Rule
from ._rules import autodiff as autodiff
from ._rules import backprop as backprop
from ._rules import contract as contract
from ._rules import delta_recursion as delta_recursion
from ._rules import delta_rule as delta_rule
from ._rules import direct_feedback_alignment as direct_feedback_alignment
from ._rules import feedback_alignment as feedback_alignment
from ._rules import forward as forward
from ._rules import is_kolen_pollack_sgd as is_kolen_pollack_sgd
from ._rules import kolen_pollack as kolen_pollack
from ._rules import kolen_pollack_sgd as kolen_pollack_sgd
from ._rules import output_delta as output_delta
from ._rules import sign_symmetry as sign_symmetry
from ._rules import weight_grads as weight_grads
