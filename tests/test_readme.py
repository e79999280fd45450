"""Every Python block of the README runs, as a user pastes it, and prints what it says.

The blocks run in order in one fresh process (no 64-bit mode, as in a user's
script; later blocks use the names earlier ones define). A comment
``# prints TEXT`` after a statement is a promise: TEXT must appear in the output,
or, for ``# prints about X% ...``, a percentage within one point of X (the
exact count may move with XLA's float32 rounding).
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
PROMISE = re.compile(r"# prints (.+)$", re.MULTILINE)
ABOUT = re.compile(r"about ([0-9.]+)%")


def readme_blocks() -> list[str]:
    return BLOCK.findall((ROOT / "README.md").read_text())


def test_the_readme_has_python_blocks_with_promises():
    blocks = readme_blocks()
    assert len(blocks) >= 4
    assert sum(len(PROMISE.findall(b)) for b in blocks) >= 2


@pytest.mark.slow  # 50-70 s of compiles in one process: run by .ci/run with -m slow
def test_every_readme_block_runs_and_prints_what_it_promises(tmp_path):
    code = "\n".join(readme_blocks())
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,  # files a block writes land here
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for promise in PROMISE.findall(code):
        about = ABOUT.match(promise)
        if about:
            printed = [float(p) for p in re.findall(r"([0-9.]+)%", done.stdout)]
            assert any(abs(p - float(about[1])) <= 1 for p in printed), (
                promise,
                done.stdout,
            )
        else:
            assert promise.strip() in done.stdout, (promise, done.stdout)
