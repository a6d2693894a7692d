"""The progress line of a checkpoint series: checkpoint i/N, its label, the stage, the time left.

:class:`SeriesProgress` writes one plain line to stderr (no bar): on a terminal it is rewritten in
place at every stage change (``trace 2/300 step2000: harvest fairness | 1 done, 41.0 s each, about
3h24m left``); elsewhere (a log file, a pipe) it is not written, as tqdm's bars are not, so that
an error stays the only line there; :meth:`SeriesProgress.note` lines (a skipped revision) are
written everywhere. The estimate of the time left is :func:`series_eta`: the mean wall time of
the checkpoints computed in this run (not those resumed from their part files, which take no
time) times the checkpoints still to do, less the time the current one has already taken.

It also answers the two calls a trace makes on its progress display (``update(n)``,
``set_postfix_str(text)``), so :func:`tracing_bench.trace.trace_checkpoint` and the Ray runner
drive it as they would a bar. Stages reach it from :class:`tracing_bench.timings.Timings`
(``on_stage``).
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Sequence
from typing import IO, Any


def series_eta(durations: Sequence[float], total: int, elapsed: float = 0.0, settled: int = 0) -> float | None:
    """Seconds left in a series, from the mean wall time of its completed checkpoints.

    Args:
        durations: wall seconds of each checkpoint computed so far in this run.
        total: checkpoints in the series (completed ones included); those not yet completed
            are the current one and the ones after it.
        elapsed: seconds the current checkpoint has run so far.
        settled: checkpoints done without a duration that says anything about the others (resumed
            from their part files, or skipped after a failed download): done, not in the mean.

    Returns:
        ``mean * (total - done) - elapsed``, never counting less than zero for the current
        checkpoint (one that overruns the mean is estimated as about to end); ``None`` before any
        checkpoint has been computed; 0.0 when none is left.
    """
    done = len(durations) + settled
    if total <= done:
        return 0.0
    if not durations:
        return None
    mean = sum(durations) / len(durations)
    after_current = total - done - 1
    return mean * after_current + max(mean - elapsed, 0.0)


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3m05s``, ``2h07m``: how the progress line writes a duration."""
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class SeriesProgress:
    """The progress line of a series on ``stream`` (see the module docstring).

    Args:
        total: checkpoints in the series.
        stream: where the line goes (stderr by default).
        enabled: ``False``: write nothing (``trace(progress=False)``).
        live: show the line, rewritten in place (a terminal); ``None``: when ``stream`` is a terminal.
        units: dimensions per checkpoint (what :meth:`update` counts).
    """

    def __init__(
        self,
        total: int,
        *,
        stream: IO[str] | None = None,
        enabled: bool = True,
        live: bool | None = None,
        units: int = 0,
    ) -> None:
        self.total, self.units, self.units_done = total, units, 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        isatty = getattr(self.stream, "isatty", None)
        self.live = bool(isatty and isatty()) if live is None else live
        self.durations: list[float] = []
        self.settled = 0  # resumed or failed: done, but not in the mean
        self.index = 0
        self.label = ""
        self.current_stage = ""
        self.detail = ""
        self.began: float | None = None
        self._drawn = 0

    # ---------------------------------------------------------------- the series
    def begin(self, index: int, label: str) -> None:
        """Checkpoint ``index`` (0-based) of the series, named ``label``, starts now."""
        self.index, self.label, self.current_stage, self.detail = index, label, "", ""
        self.began = time.perf_counter()
        self._show()

    def end(self, seconds: float, *, completed: bool = True, resumed: bool = False) -> None:
        """The current checkpoint ended after ``seconds``; ``completed=False``: it failed; ``resumed``:
        its parts were already written. Either way it is done but not in the mean."""
        if completed and not resumed:
            self.durations.append(seconds)
        else:
            self.settled += 1
        self.began, self.current_stage, self.detail = None, "", ""

    def stage(self, name: str) -> None:
        """The current checkpoint entered stage ``name`` (``download``, ``load``, ``harvest``, ...)."""
        self.current_stage = name
        self._show()

    def eta(self) -> float | None:
        """Seconds left in the series now (:func:`series_eta`)."""
        elapsed = time.perf_counter() - self.began if self.began is not None else 0.0
        return series_eta(self.durations, self.total, elapsed, self.settled)

    def line(self) -> str:
        """The progress line as it reads now."""
        if self.began is None:  # between checkpoints or after them: the series' own stages
            head = f"trace {len(self.durations) + self.settled}/{self.total} done"
            return head + (f": {self.current_stage}" if self.current_stage else "")
        what = " ".join(x for x in (self.current_stage, self.detail) if x)
        head = f"trace {self.index + 1}/{self.total} {self.label}" + (f": {what}" if what else "")
        eta = self.eta()
        done = len(self.durations) + self.settled
        if eta is None:
            return f"{head} | " + (f"{done} done, no estimate yet" if done else "first checkpoint, no estimate yet")
        mean = sum(self.durations) / len(self.durations)
        return f"{head} | {done} done, {format_seconds(mean)} each, about {format_seconds(eta)} left"

    def note(self, text: str) -> None:
        """Write ``text`` as a line of its own (a failed revision), keeping the progress line below it."""
        if not self.enabled:
            return
        self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    # ---------------------------------------------------------------- what a trace calls on a bar
    def update(self, n: int = 1) -> None:
        """A bar's ``update``: ``n`` more dimensions done. Shown only when the checkpoints run elsewhere
        (Ray tasks: no :meth:`begin` here), as ``trace: 3/36 checkpoints done``."""
        self.units_done += n
        if self.began is None and self.units and self.live and self.enabled:
            text = f"trace: {self.units_done // self.units}/{self.total} checkpoints done"
            self.stream.write("\r" + text.ljust(self._drawn))
            self._drawn = len(text)
            self.stream.flush()

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        """A bar's ``set_postfix_str``: the detail after the stage (the dimension being traced)."""
        self.detail = text.removeprefix(self.label).strip() if self.label else text

    def close(self) -> None:
        """End the line (a terminal's cursor goes to the next line)."""
        if self.enabled and self.live and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
        self._drawn, self.enabled = 0, False  # nothing after the end

    def __enter__(self) -> SeriesProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---------------------------------------------------------------- drawing
    def _clear(self) -> None:
        if self.live and self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self._drawn = 0

    def _show(self) -> None:
        if not self.enabled or not self.live:
            return
        text = self.line()[: shutil.get_terminal_size().columns - 1]  # a wrapped line cannot be rewritten
        self.stream.write("\r" + text.ljust(self._drawn))
        self._drawn = len(text)
        self.stream.flush()
