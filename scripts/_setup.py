"""Edge configuration shared by the scripts: one XLA CPU device per core.

XLA runs a training loop on one CPU core; with one device per core,
``jp.train_seeds`` splits its runs across all of them. The flag must be set
before jax is imported, so scripts import this module first.
"""

import os
import sys
from pathlib import Path

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + f" --xla_force_host_platform_device_count={os.cpu_count()}"
    )
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
# The scripts' own folder leaves the path: scripts/mnist1d.py would otherwise
# shadow the mnist1d package.
_here = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
