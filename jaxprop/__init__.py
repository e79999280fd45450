"""jaxprop: neural networks with a hand-written δ backward pass, checked and vmapped."""

from . import data as data
from . import rules as rules
from ._activations import ACTIVATIONS as ACTIVATIONS
from ._activations import Activation as Activation
from ._check import GradCheckError as GradCheckError
from ._check import GradCheckReport as GradCheckReport
from ._check import GradCheckRow as GradCheckRow
from ._check import check_grads as check_grads
from ._check import numerical_grad as numerical_grad
from ._costs import COSTS as COSTS
from ._costs import REDUCTIONS as REDUCTIONS
from ._costs import Cost as Cost
from ._experiment import SavedRun as SavedRun
from ._experiment import load_run as load_run
from ._io import load as load
from ._io import save as save
from ._loop import RunState as RunState
from ._loop import TrainLog as TrainLog
from ._loop import TrainResult as TrainResult
from ._metrics import Proportion as Proportion
from ._metrics import Summary as Summary
from ._metrics import accuracy as accuracy
from ._metrics import accuracy_from_output as accuracy_from_output
from ._metrics import classification_threshold as classification_threshold
from ._metrics import proportion as proportion
from ._metrics import solved as solved
from ._metrics import summarize as summarize
from ._mlp import MLP as MLP
from ._mlp import Cache as Cache
from ._params import DEFAULT_SCHEME as DEFAULT_SCHEME
from ._params import SCHEMES as SCHEMES
from ._params import Layer as Layer
from ._params import Params as Params
from ._progress import Progress as Progress
from ._rules import Alignment as Alignment
from ._rules import alignment as alignment
from ._train import Trainer as Trainer
from ._train import TrainState as TrainState
from ._train import train as train
from ._train import train_seeds as train_seeds

__version__ = "0.1.0"
