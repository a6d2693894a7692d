"""The two phases of mutual information during pre-training: where I(T;X) turns from rising to falling.

The paper (docs/METHOD.md, "Mutual information") sees a short *fitting* phase in which
I(T;X) and I(T;Y) both rise, then a long *compression* phase in which I(T;X) falls.

* :func:`noisy_turn` is the turn that ``trace`` reports (``findings.json``,
  :mod:`tracing_bench.compare.findings`): the first peak whose rise and fall both exceed the
  estimator's own noise, measured on seeded half-samples of the statements.
* :func:`mi_turns` is the point estimate: the first local maximum of I(T;X) per (dimension,
  layer) from the rows of a ``mi.csv``, however small the rise; on a flat, noisy curve it
  finds a "turn" that is only noise. Kept for tables without a noise estimate.

>>> rows = [{"dimension": "fairness", "layer": 3, "step": s, "i_xt": v}
...         for s, v in [(0, 1.0), (10, 2.0), (20, 3.0), (40, 2.5), (80, 2.0)]]
>>> mi_turns(rows)
{('fairness', 3): 20}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Checkpoint = int | str


def cell_float(value: Any) -> float:
    """A float from a CSV cell or a number; NaN for empty or unparsable cells."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def checkpoint_key(row: Mapping[str, Any]) -> Checkpoint:
    """The step of a row (an int), or its revision (or model) when the row has no step.

    Args:
        row: a row of ``probes.csv`` / ``mi.csv`` (CSV strings or typed values).

    Returns:
        ``int(step)`` when the step cell is set, else the revision, else the model.
    """
    step = row.get("step")
    if step not in (None, ""):
        try:
            return int(float(step))
        except (TypeError, ValueError):
            pass
    return str(row.get("revision") or row.get("model") or "")


def first_peak(values: list[float], *, rel_tol: float = 0.0) -> int | None:
    """Index of the first point that the series rises into and falls after, or ``None``.

    Runs of equal values (within ``rel_tol`` times the series' range) count as one point; the
    index returned is the first of its run. NaN values are skipped.

    Args:
        values: the series, in checkpoint order.
        rel_tol: changes smaller than ``rel_tol * (max - min)`` are treated as flat.

    Returns:
        the index into ``values``, or ``None`` when the series never rises and then falls.

    >>> first_peak([1, 2, 2, 1])
    1
    >>> first_peak([3, 2, 1]) is None
    True
    """
    pts = [(i, v) for i, v in enumerate(values) if not math.isnan(v)]
    if len(pts) < 3:
        return None
    vals = [v for _, v in pts]
    tol = rel_tol * (max(vals) - min(vals))
    runs: list[tuple[int, float]] = []  # (first index of the run, value of the run's first point)
    for i, v in pts:
        if runs and abs(v - runs[-1][1]) <= tol:
            continue
        runs.append((i, v))
    for k in range(1, len(runs) - 1):
        if runs[k][1] > runs[k - 1][1] and runs[k + 1][1] < runs[k][1]:
            return runs[k][0]
    return None


def mi_turns(mi_rows: Iterable[Mapping[str, Any]], *, rel_tol: float = 0.0) -> dict[tuple[str, int], Checkpoint | None]:
    """The checkpoint at which I(T;X) turns from rising to falling, per (dimension, layer).

    Rows are ordered by step when every row of a (dimension, layer) has one, otherwise kept in
    file order (the series order that ``trace`` writes).

    Args:
        mi_rows: rows of ``mi.csv`` (``dimension``, ``layer``, ``step``, ``revision``, ``i_xt``);
            CSV strings or typed values.
        rel_tol: changes smaller than this fraction of the series' range count as flat.

    Returns:
        ``{(dimension, layer): step}`` -- the step (or the revision, for checkpoints without a
        step) of the first local maximum of I(T;X); ``None`` when I(T;X) never rises and then falls.
    """
    series: dict[tuple[str, int], list[tuple[Checkpoint, float]]] = {}
    for row in mi_rows:
        key = (str(row["dimension"]), int(float(row["layer"])))
        series.setdefault(key, []).append((checkpoint_key(row), cell_float(row.get("i_xt"))))
    turns: dict[tuple[str, int], Checkpoint | None] = {}
    for key, pts in series.items():
        if all(isinstance(c, int) for c, _ in pts):
            pts = sorted(pts, key=lambda p: p[0])
        idx = first_peak([v for _, v in pts], rel_tol=rel_tol)
        turns[key] = None if idx is None else pts[idx][0]
    return turns


@dataclass(frozen=True)
class Turn:
    """A turn of a series from rising to falling that exceeds the estimator's noise.

    Attributes:
        index: the checkpoint of the peak (index into the series).
        before: the lowest checkpoint before the peak; ``after``: the lowest after it.
        rise: ``value[index] - value[before]``; ``rise_sd``: spread of that difference over the
            replicates (paired: the same replicate at both checkpoints).
        fall: ``value[index] - value[after]``; ``fall_sd``: its spread.
    """

    index: int
    before: int
    after: int
    rise: float
    rise_sd: float
    fall: float
    fall_sd: float


def noisy_turn(values: list[float], replicates: list[list[float]], *, z: float = 2.0) -> Turn | None:
    """The first peak of a series whose rise into it and fall after it both exceed the noise.

    A candidate is a checkpoint higher than the one before it and at least as high as the one
    after it. Its rise is measured from the lowest checkpoint before it, its fall to the lowest
    after it. The noise of a difference between checkpoints i and j is the standard deviation
    (ddof 1) over the replicates of ``replicates[i][r] - replicates[j][r]`` (replicate r is the
    same subsample of statements at every checkpoint). The candidate is a turn when
    ``rise > z * rise_sd`` and ``fall > z * fall_sd``.

    Args:
        values: the estimate at each checkpoint, in series order (NaN = missing, skipped).
        replicates: per checkpoint, the replicate estimates (at least two, the same number at
            every checkpoint).
        z: how many noise standard deviations a rise and a fall must exceed.

    Returns:
        the first :class:`Turn`, or ``None`` ("no turn detected").

    >>> noisy_turn([1.0, 3.0, 1.0], [[1.0, 1.1], [3.0, 3.1], [1.0, 1.0]]).index
    1
    >>> noisy_turn([1.0, 1.2, 1.0], [[1.0, 1.4], [1.2, 1.0], [1.0, 1.2]]) is None
    True
    """
    # lazy: numpy loads on first use, so importing compare.phases stays light
    import numpy as np

    pts = [i for i, v in enumerate(values) if not math.isnan(v) and i < len(replicates) and len(replicates[i]) >= 2]
    if len(pts) < 3:
        return None
    v = np.array([values[i] for i in pts], dtype=np.float64)
    reps = np.array([replicates[i] for i in pts], dtype=np.float64)
    for k in range(1, len(pts) - 1):
        if not (v[k] > v[k - 1] and v[k] >= v[k + 1]):
            continue
        j = int(np.argmin(v[:k]))
        a = k + 1 + int(np.argmin(v[k + 1 :]))
        rise, fall = float(v[k] - v[j]), float(v[k] - v[a])
        rise_sd = float(np.std(reps[k] - reps[j], ddof=1))
        fall_sd = float(np.std(reps[k] - reps[a], ddof=1))
        if rise > z * rise_sd and fall > z * fall_sd:
            return Turn(pts[k], pts[j], pts[a], rise, rise_sd, fall, fall_sd)
    return None
