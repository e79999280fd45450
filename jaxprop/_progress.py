"""A progress display for runs trained in compiled chunks of steps.

On a terminal, one line redrawn in place: a bar, steps, runs, the median loss
across runs, diverged runs, elapsed time and ETA. Elsewhere (a log file, CI),
the same facts as plain lines at most every ``interval`` seconds, and at the end.
"""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO

MODES = ("auto", "bar", "lines", "off")


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


class Progress:
    """Reports ``update(step, median_loss, n_diverged)`` calls to a stream.

    Args:
      total: steps of the whole run.
      n_runs: runs trained side by side (seeds × hyperparameters).
      start: steps already taken (a resumed run).
      mode: ``"bar"`` (redrawn line), ``"lines"`` (plain periodic lines),
        ``"off"``, or ``"auto"``: a bar on a terminal, lines otherwise.
      stream: where to write (default ``sys.stderr``).
      interval: least seconds between two plain lines (the last always prints).
      width: the bar's width in characters.
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
        width: int = 24,
    ):
        if mode not in MODES:
            raise ValueError(f"Unknown mode {mode!r}; expected one of {list(MODES)}.")
        self.stream = sys.stderr if stream is None else stream
        if mode == "auto":
            isatty = getattr(self.stream, "isatty", lambda: False)
            mode = "bar" if isatty() else "lines"
        self.mode, self.total, self.n_runs = mode, total, n_runs
        self.interval, self.width = interval, width
        self._start_step = self._rate_step = start
        self._t0 = self._rate_t = time.perf_counter()
        self._last_line = -math.inf
        self._first = True
        self.updates = 0  # calls to update

    def _eta(self, step: int, now: float) -> float:
        # The rate is measured from the end of the first chunk, which includes
        # the compilation.
        if step <= self._rate_step or now <= self._rate_t:
            return math.nan
        rate = (step - self._rate_step) / (now - self._rate_t)
        return (self.total - step) / rate

    def update(self, step: int, median_loss: float, n_diverged: int) -> None:
        """Reports that ``step`` steps are done."""
        self.updates += 1
        if self.mode == "off":
            return
        now = time.perf_counter()
        if self._first:  # its chunk included the compilation: no rate yet
            self._first = False
            self._rate_step, self._rate_t = step, now
        eta = self._eta(step, now)
        done = step == self.total
        facts = (
            f"{step}/{self.total} steps, {self.n_runs} runs, median loss "
            f"{median_loss:.4g}, diverged {n_diverged}, "
            f"{_duration(now - self._t0)}" + ("" if done else f", ETA {_duration(eta)}")
        )
        if self.mode == "bar":
            filled = round(self.width * step / self.total)
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(f"\r[{bar}] {facts}\x1b[K" + ("\n" if done else ""))
        elif done or now - self._last_line >= self.interval:
            percent = 100 * step / self.total
            self.stream.write(f"{facts} ({percent:.0f}%)\n")
            self._last_line = now
        self.stream.flush()
