"""The progress display: a tqdm bar on terminals, plain lines elsewhere, and
jp.train_seeds(progress=...)."""

import io
import re

import jax
import numpy as np
import optax
import pytest

import jaxprop as jp
from jaxprop._engine import progress as _progress
from jaxprop._engine import train as _train
from jaxprop._engine.progress import Progress


class Tty(io.StringIO):
    def isatty(self):
        return True


class Clock:
    """A fake clock the test moves by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(_progress, "_clock", clock)
    return clock


def test_lines_when_not_a_terminal(clock):
    stream = io.StringIO()
    bar = Progress(100, 8, stream=stream, interval=0)
    assert bar.mode == "lines"
    clock.now = 2.0  # compilation and the first chunk
    bar.update(10, 0.5, 0)
    clock.now = 3.0
    bar.update(60, 0.25, 1)
    clock.now = 3.5
    bar.update(100, 0.125, 1)
    assert stream.getvalue().splitlines() == [
        "10/100 steps, 8 runs, median loss 0.5, diverged 0, 2s, ETA ? (10%)",
        "60/100 steps, 8 runs, median loss 0.25, diverged 1, 3s, ETA 1s (60%)",
        "100/100 steps, 8 runs, median loss 0.125, diverged 1, 4s (100%)",
    ]  # the ETA's rate starts after the first chunk: 50 steps/s


def test_lines_at_most_every_interval_and_at_the_end(clock):
    stream = io.StringIO()
    bar = Progress(1000, 1, mode="lines", stream=stream, interval=10)
    for t, step in [(1, 100), (5, 200), (10.9, 300), (11, 400), (20, 500), (21, 1000)]:
        clock.now = t
        bar.update(step, 1.0, 0)
    steps = [line.split("/")[0] for line in stream.getvalue().splitlines()]
    assert steps == ["100", "400", "1000"]
    assert bar.updates == 6


def test_bar_on_a_terminal_is_tqdm():
    stream = Tty()
    with Progress(200, 6, stream=stream) as bar:
        assert bar.mode == "bar"
        bar.update(10, 0.5, 0)
        bar.update(100, 0.25, 1)
        bar.update(200, 0.125, 2)
    out = stream.getvalue()
    assert out.endswith("\n") and "\n" not in out[:-1]  # one line, redrawn
    frames = out.split("\r")[1:]
    assert frames[0].startswith("  0%|") and "0/200 [" in frames[0]
    assert "?step/s, 6 runs]" in frames[0]
    # The first chunk carried the compilation: no rate from it.
    assert "10/200 [" in frames[1]
    assert "?step/s, 6 runs, median loss 0.5, diverged 0]" in frames[1]
    assert re.search(r" 50%\|.*\| 100/200 \[.*step/s, 6 runs, median loss 0\.25", out)
    assert "100%|" in frames[-1] and "median loss 0.125, diverged 2]" in frames[-1]
    bar.update(200, 0.1, 0)  # closed: draws nothing more
    assert stream.getvalue() == out


def test_bar_on_a_terminal_that_gives_no_size(monkeypatch):
    # A pseudo-terminal without a size reports 0 columns, on which tqdm alone
    # draws nothing; the bar takes $COLUMNS x $LINES instead.
    monkeypatch.setattr(_progress, "_columns", lambda stream: 0)
    monkeypatch.setenv("COLUMNS", "70")
    monkeypatch.setenv("LINES", "20")
    stream = Tty()
    with Progress(100, 2, stream=stream) as bar:
        bar.update(100, 0.5, 0)
    frames = stream.getvalue().split("\r")[1:]
    assert frames and all(60 <= len(f.rstrip()) <= 70 for f in frames)


def test_off_writes_nothing_and_modes_are_checked():
    for stream in (io.StringIO(), Tty()):
        bar = Progress(100, 2, mode="off", stream=stream)
        bar.update(50, 0.5, 0)
        bar.update(100, 0.5, 0)
        bar.close()
        assert stream.getvalue() == "" and bar.updates == 2
    with pytest.raises(ValueError, match="Unknown mode"):
        Progress(100, 2, mode="fancy")


def test_update_losses_takes_the_median_of_finite_runs(clock):
    stream = io.StringIO()
    bar = Progress(10, 4, stream=stream)
    bar.update_losses(10, np.array([[0.5, np.nan], [0.25, 1.0]]))
    assert "median loss 0.5, diverged 1" in stream.getvalue()
    bar = Progress(10, 1, stream=stream)
    bar.update_losses(10, np.array([np.inf]))
    assert "median loss nan, diverged 1" in stream.getvalue()


# -------------------------------------------------------------- train_seeds
XOR_NET = jp.MLP((2, 2, 1), "sigmoid", "sigmoid", "mse", "sum")


def xor_seeds(**kw):
    x, y = jp.data.xor()
    keys = jax.random.split(jax.random.key(0), 4)
    return jp.train_seeds(XOR_NET, keys, x, y, optax.sgd(0.5), 200, log_every=10, **kw)


@pytest.mark.slow  # a duplicate of default-suite coverage, or a long run
def test_train_seeds_with_progress_gives_the_same_bits(monkeypatch):
    plain = xor_seeds()
    stream = io.StringIO()
    lines = Progress(200, 4, mode="lines", stream=stream, interval=0)
    # Chunks of one block, then growing: many chunks even on a fast machine.
    monkeypatch.setattr(_train, "CHUNK_SECONDS", 1e-4)
    chunked = xor_seeds(progress=lines)
    assert lines.updates >= 3  # it really ran in chunks
    out = stream.getvalue().splitlines()
    assert out[0].startswith("10/200 steps, 4 runs, median loss ")
    assert out[-1].startswith("200/200 steps, 4 runs, median loss ")
    assert out[-1].endswith("(100%)")
    tty = Tty()
    monkeypatch.setattr("sys.stderr", tty)
    with_bar = xor_seeds(progress=True)
    assert "200/200 [" in tty.getvalue() and "4 runs, median loss" in tty.getvalue()
    for result in (chunked, with_bar):
        jax.tree.map(np.testing.assert_array_equal, result, plain)


def test_train_seeds_checks_progress():
    for bad in ("bar", 1, None, np.bool_(True)):
        with pytest.raises(TypeError, match="progress must be True, False or a"):
            xor_seeds(progress=bad)
    with pytest.raises(ValueError, match="progress counts 100 steps"):
        xor_seeds(progress=Progress(100, 4, mode="off"))
