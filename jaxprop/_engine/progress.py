"""A progress display for runs trained in compiled chunks of steps.

On a terminal or in Jupyter, a tqdm bar (``tqdm.auto``: a widget in a notebook)
counting steps, with the runs, the median loss across runs and the diverged runs
as its postfix, and tqdm's rate and ETA. Elsewhere (a log file, CI), the same
facts as plain lines at most every ``interval`` seconds, and at the end.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from typing import TextIO

import numpy as np

from .._validate import choice

MODES = ("auto", "bar", "lines", "off")

_clock = time.perf_counter  # the plain lines' clock (tests replace it)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _columns(stream) -> int | None:
    """The width of the terminal ``stream`` writes to: 0 if the terminal does not
    say (a pseudo-terminal without a size), None if it is not a terminal."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return None


def _in_notebook() -> bool:
    """Whether ``tqdm.auto`` draws a Jupyter widget here."""
    if "IPython" not in sys.modules:  # not in Jupyter: no need to ask tqdm
        return False
    import tqdm.asyncio
    import tqdm.auto

    return tqdm.auto.tqdm is not tqdm.asyncio.tqdm


class Progress:
    """Reports ``update(step, median_loss, n_diverged)`` calls to a stream.

    Pass one to ``jp.train_seeds(..., progress=...)`` to choose its mode or
    stream; ``progress=True`` is ``Progress(steps, n_runs)``.

    Args:
      total: steps of the whole run.
      n_runs: runs trained side by side (seeds × hyperparameters).
      start: steps already taken (a resumed run).
      mode: ``"bar"`` (a ``tqdm.auto`` bar), ``"lines"`` (plain periodic
        lines), ``"off"``, or ``"auto"``: a bar on a terminal or in Jupyter,
        lines otherwise.
      stream: where to write (default ``sys.stderr``; a notebook's bar is a
        widget).
      interval: least seconds between two plain lines (the last always prints).
      width: the bar's line width in characters (default: the terminal's,
        followed as it is resized).
    """

    def __init__(
        self,
        total: int,
        n_runs: int,
        *,
        start: int = 0,
        mode: str = "auto",
        stream: TextIO | None = None,
        interval: float = 10.0,
        width: int | None = None,
    ):
        choice(mode, "mode", MODES)
        self.stream = sys.stderr if stream is None else stream
        if mode == "auto":
            isatty = getattr(self.stream, "isatty", lambda: False)
            bar = isatty() or (stream is None and _in_notebook())
            mode = "bar" if bar else "lines"
        self.mode, self.total, self.n_runs = mode, total, n_runs
        self.interval = interval
        self._rate_step = start
        self._t0 = self._rate_t = _clock()
        self._last_line = -math.inf
        self._first = True
        self.updates = 0  # calls to update
        self._bar = None
        if mode == "bar":
            from tqdm.auto import tqdm

            columns, rows = _columns(self.stream), None
            if columns == 0:  # tqdm would draw nothing: $COLUMNS x $LINES or 80x24
                fallback = shutil.get_terminal_size()
                width, rows = width or fallback.columns, fallback.lines
            self._bar = tqdm(
                total=total,
                initial=start,
                unit="step",
                file=self.stream,
                dynamic_ncols=width is None and columns is not None,
                ncols=width,
                nrows=rows,
                mininterval=0,  # one update per chunk: draw each
                miniters=1,
                postfix=f"{n_runs} runs",
            )

    def _facts(self, median_loss: float, n_diverged: int) -> str:
        loss = f"median loss {median_loss:.4g}"
        return f"{self.n_runs} runs, {loss}, diverged {n_diverged}"

    def update(self, step: int, median_loss: float, n_diverged: int) -> None:
        """Reports that ``step`` steps are done (the bar closes at ``total``)."""
        self.updates += 1
        first, self._first = self._first, False
        if self._bar is not None:
            bar = self._bar
            bar.set_postfix_str(self._facts(median_loss, n_diverged), refresh=False)
            if first:  # its chunk carried the compilation: start the rate after it
                bar.initial = bar.n = bar.last_print_n = step
                bar.last_print_t = bar._time()
                bar.refresh()
            else:
                bar.update(step - bar.n)
            if step >= self.total:
                self.close()
        elif self.mode == "lines":
            self._line(step, median_loss, n_diverged, first)

    def update_losses(self, step: int, losses) -> None:
        """``update`` with the median of the finite ``losses`` (every run's
        latest) and the count of the others (diverged runs)."""
        losses = np.asarray(losses)
        finite = losses[np.isfinite(losses)]
        median = float(np.median(finite)) if finite.size else math.nan
        self.update(step, median, losses.size - finite.size)

    def _line(self, step: int, median_loss: float, n_diverged: int, first: bool):
        now = _clock()
        if first:  # its chunk carried the compilation: the rate starts after it
            self._rate_step, self._rate_t = step, now
        done = step >= self.total
        if not done and now - self._last_line < self.interval:
            return
        self._last_line = now
        eta = math.nan
        if step > self._rate_step and now > self._rate_t:
            rate = (step - self._rate_step) / (now - self._rate_t)
            eta = (self.total - step) / rate
        self.stream.write(
            f"{step}/{self.total} steps, {self._facts(median_loss, n_diverged)}, "
            f"{_duration(now - self._t0)}"
            + ("" if done else f", ETA {_duration(eta)}")
            + f" ({100 * step / self.total:.0f}%)\n"
        )
        self.stream.flush()

    def close(self) -> None:
        """Ends the display (a bar stays on screen); further updates show nothing."""
        if self._bar is not None:
            self._bar.close()
        self._bar, self.mode = None, "off"

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
