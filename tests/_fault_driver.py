"""Runs ``jaxprop train`` with a fault injected, for ``test_faults.py``.

Usage: python tests/_fault_driver.py FAULT ARGS... where FAULT is

- ``kill-before-checkpoint``: SIGKILL when the first checkpoint is due;
- ``kill-mid-write``: SIGKILL half-way through writing the second checkpoint
  (half a file written to the temporary file, the rename never done);
- ``kill-before-results``: SIGKILL after the final checkpoint, before any result file;
- ``none``: no fault.
"""

import os
import signal
import sys

import numpy as np

from jaxprop import _experiment
from jaxprop._cli import main


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def inject(fault: str) -> None:
    if fault == "kill-before-checkpoint":
        _experiment.driver.save_checkpoint = lambda *a, **k: die()
    elif fault == "kill-mid-write":
        savez, calls = np.savez, []

        def half_then_die(f, **arrays):
            if "__jaxprop__" in arrays:  # a jp.save file: the checkpoints
                calls.append(1)
                if len(calls) == 2:
                    f.write(b"PK\x03\x04" + b"\0" * 4096)  # the start of a zip
                    f.flush()
                    os.fsync(f.fileno())
                    die()
            return savez(f, **arrays)

        np.savez = half_then_die
    elif fault == "kill-before-results":
        _experiment.write_results = lambda *a, **k: die()
    elif fault != "none":
        raise SystemExit(f"unknown fault {fault!r}")


if __name__ == "__main__":
    inject(sys.argv[1])
    sys.exit(main(sys.argv[2:]))
