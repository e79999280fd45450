"""Networks: ``jp.MLP`` (Dense layers of given widths) and ``jp.Network`` (any
layers, channels last), their shared checked and jitted methods
(:class:`~jaxprop._network.base.Net`), the checks of their arguments, and the
runs-last batching rule for many runs of a tiny network."""

from .._core.backprop import Cache as Cache
from .._core.backprop import Through as Through
from .base import Net as Net
from .base import check_feedback as check_feedback
from .base import check_net as check_net
from .base import check_params as check_params
from .base import check_x as check_x
from .base import check_xy as check_xy
from .base import compiled_value_and_backprop as compiled_value_and_backprop
from .base import loss_and_output_delta as loss_and_output_delta
from .mlp import MLP as MLP
from .network import Network as Network
from .runs_last import RUNS_LAST_MAX_BATCH as RUNS_LAST_MAX_BATCH
from .runs_last import RUNS_LAST_MAX_WIDTH as RUNS_LAST_MAX_WIDTH
from .runs_last import for_platform as for_platform
from .runs_last import over_runs as over_runs
from .runs_last import runs_last_pays as runs_last_pays
