"""Where the time of a trace goes: seconds per stage and per checkpoint, without passing a timer around.

:class:`Timings` is made active for a run (``with timings:``); code anywhere below marks its work
with :func:`stage` (``with stage("probe"): ...``), a no-op when no timings are active (Ray
workers, direct calls). Stages are exclusive: a stage inside another counts only for itself, so
the stages of a run add up to its wall time, less what no stage covers.
:meth:`Timings.checkpoint` groups the stages of one checkpoint. :meth:`Timings.summary` is what
trace.json records under ``timings``.

Work done in another thread while the stages run (a prefetched download,
:mod:`tracing_bench.prefetch`) overlaps them, so it is not a stage: :meth:`Timings.background`
records its seconds apart (``background`` in the summary and in each checkpoint), and only
``stages`` add up to ``wall_seconds``. ``on_stage`` is told the name of each stage as it begins
(the progress line, :mod:`tracing_bench.progress`).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_ACTIVE: contextvars.ContextVar[Timings | None] = contextvars.ContextVar("tracing_bench_timings", default=None)


class Timings:
    """Seconds per stage of a run (see the module docstring)."""

    def __init__(self, on_stage: Callable[[str], None] | None = None) -> None:
        self.start = time.perf_counter()
        self.on_stage = on_stage
        self.series: dict[str, float] = {}
        self.checkpoints: list[dict[str, Any]] = []
        self.background_seconds: dict[str, dict[str, float]] = {}  # checkpoint label -> name -> seconds
        self._current: dict[str, float] | None = None
        self._stack: list[tuple[str, list[float]]] = []  # (name, [began, child seconds])
        self._token: contextvars.Token[Timings | None] | None = None

    def __enter__(self) -> Timings:
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _ACTIVE.reset(self._token)

    @contextmanager
    def checkpoint(self, label: str) -> Iterator[None]:
        """Count the stages inside to checkpoint ``label``."""
        seconds: dict[str, float] = {}
        began = time.perf_counter()
        self._current = seconds
        try:
            yield
        finally:
            self._current = None
            self.checkpoints.append({"checkpoint": label, "wall": time.perf_counter() - began, "seconds": seconds})

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Count the time inside, less that of nested stages, to ``name``."""
        if self.on_stage is not None:
            self.on_stage(name)
        frame = [time.perf_counter(), 0.0]
        self._stack.append((name, frame))
        try:
            yield
        finally:
            self._stack.pop()
            spent = time.perf_counter() - frame[0]
            if self._stack:
                self._stack[-1][1][1] += spent
            target = self._current if self._current is not None else self.series
            target[name] = target.get(name, 0.0) + spent - frame[1]

    def background(self, label: str, name: str, seconds: float) -> None:
        """Record ``seconds`` of ``name`` done for checkpoint ``label`` in another thread (not a stage)."""
        got = self.background_seconds.setdefault(label, {})
        got[name] = got.get(name, 0.0) + seconds

    def summary(self) -> dict[str, Any]:
        """``wall_seconds`` so far, ``stages`` (totals), ``series`` (outside checkpoints), ``checkpoints``,
        ``background`` (totals of :meth:`background`; they overlap the stages and do not add up with them).

        A stage still open (the one writing this summary) counts with its seconds so far.
        """
        now = time.perf_counter()
        series = dict(self.series)
        for name, (began, child) in self._stack:
            series[name] = series.get(name, 0.0) + now - began - child
        totals = dict(series)
        for c in self.checkpoints:
            for k, v in c["seconds"].items():
                totals[k] = totals.get(k, 0.0) + v
        background: dict[str, float] = {}
        checkpoints = []
        for c in self.checkpoints:
            extra = self.background_seconds.get(c["checkpoint"], {})
            checkpoints.append({**c, "background": extra} if extra else c)
            for k, v in extra.items():
                background[k] = background.get(k, 0.0) + v
        return {
            "wall_seconds": now - self.start,
            "stages": totals,
            "series": series,
            "checkpoints": checkpoints,
            "background": background,
        }


@contextmanager
def stage(name: str) -> Iterator[None]:
    """The active :class:`Timings`' stage ``name``, or nothing."""
    timings = _ACTIVE.get()
    if timings is None:
        yield
        return
    with timings.stage(name):
        yield


@contextmanager
def checkpoint(label: str) -> Iterator[None]:
    """The active :class:`Timings`' checkpoint ``label``, or nothing."""
    timings = _ACTIVE.get()
    if timings is None:
        yield
        return
    with timings.checkpoint(label):
        yield


def active() -> Timings | None:
    """The active timings, if any."""
    return _ACTIVE.get()
