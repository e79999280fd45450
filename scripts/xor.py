"""Reproduces the reference document's XOR program with jaxprop (``jaxprop xor``).

    python scripts/xor.py [--epochs N] [--eta ETA] [--seed S] [--float32]

The network and its training live in ``jaxprop/reference.py``, the command in
``jaxprop/_cli/xor.py``; this script runs it from a checkout.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from jaxprop._cli.xor import main
from jaxprop.reference import NET, reference_params, train  # noqa: F401

if __name__ == "__main__":
    main()
