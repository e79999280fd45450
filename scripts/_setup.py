"""Edge configuration shared by the scripts: one XLA CPU device per core.

XLA runs a training loop on one CPU core; with one device per core this process
may run on (``jp.use_all_cores``), ``jp.train_seeds`` splits its runs across
all of them. The count is fixed when JAX starts, so scripts import this module
before anything else.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
# The scripts' own folder leaves the path: scripts/mnist1d.py would otherwise
# shadow the mnist1d package.
_here = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]

import jaxprop as jp  # from the checkout put on the path above

jp.use_all_cores()
