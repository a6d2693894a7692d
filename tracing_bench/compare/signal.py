"""Which metric ranks checkpoints: each metric's signal-to-noise over a checkpoint series.

After AI2's "Signal and Noise" (2025): a metric is useful for telling checkpoints apart when its
spread across the checkpoints (signal) is large against its own sampling noise. Here, per task
and metric, over the rows of a leaderboard (one results file per checkpoint):

* signal: the standard deviation of the metric's values across the checkpoints (ddof 1);
* noise: the root mean square of the values' stderrs (lm-eval's, bootstrapped or closed form);
* ``snr`` = signal / noise. Below about 1, the differences between checkpoints are of the size
  of one checkpoint's noise: the metric cannot rank them; the table says "within noise".

>>> rows = snr_table(build_leaderboard(["results/"]))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tracing_bench.compare.leaderboard import Leaderboard

#: Metrics compared when a results file reports them (a task's other metrics are diagnostics).
METRICS: tuple[str, ...] = (
    "chance_corrected",
    "acc",
    "consistency",
    "p_trust",
    "mcc",
    "auroc",
    "kappa",
    "logodds_agreement",
    "pair_discrimination",
    "pct_stereotype",
    "score",
)


@dataclass(frozen=True)
class MetricSignal:
    """Signal and noise of one task's metric over the checkpoints of a series.

    Attributes:
        task, metric: what was measured.
        n_checkpoints: checkpoints with a value and a numeric stderr.
        signal: sd of the values across checkpoints.
        noise: root mean square stderr.
        snr: signal / noise (inf when noise is 0 and signal is not; NaN when undefined).
        values: the checkpoints' values, in leaderboard order.
    """

    task: str
    metric: str
    n_checkpoints: int
    signal: float
    noise: float
    snr: float
    values: tuple[float, ...]

    @property
    def claim(self) -> str:
        """``snr 3.2`` / ``snr 0.6, within noise`` / ``undefined (...)``."""
        if math.isnan(self.snr):
            if self.n_checkpoints >= 2 and self.signal == 0 and self.noise == 0:
                return "undefined (every checkpoint reads the same value with stderr 0)"
            return "undefined (fewer than 2 checkpoints with a stderr)"
        text = "snr inf" if math.isinf(self.snr) else f"snr {self.snr:.2f}"
        return text + (", within noise" if self.snr < 1 else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "metric": self.metric,
            "n_checkpoints": self.n_checkpoints,
            "signal": self.signal,
            "noise": self.noise,
            "snr": self.snr,
            "claim": self.claim,
        }


def metric_signal(task: str, metric: str, values: list[float], stderrs: list[float]) -> MetricSignal:
    """Signal-to-noise of one metric from its per-checkpoint values and stderrs (pairs with a NaN dropped)."""
    keep = [(v, s) for v, s in zip(values, stderrs, strict=True) if math.isfinite(v) and math.isfinite(s)]
    if len(keep) < 2:
        return MetricSignal(task, metric, len(keep), math.nan, math.nan, math.nan, tuple(v for v, _ in keep))
    v = np.array([x for x, _ in keep])
    s = np.array([x for _, x in keep])
    signal = float(v.std(ddof=1))
    noise = float(np.sqrt(np.mean(s**2)))
    snr = signal / noise if noise > 0 else (math.inf if signal > 0 else math.nan)
    return MetricSignal(task, metric, len(keep), signal, noise, snr, tuple(float(x) for x in v))


def snr_table(board: Leaderboard, metrics: tuple[str, ...] = METRICS) -> list[MetricSignal]:
    """Per task (not groups) and metric the rows report: its signal-to-noise over the board's rows."""
    out = []
    for task in board.columns:
        if any(f.scores.get(task) is not None and f.scores[task].is_group for f in board.rows):
            continue
        for metric in metrics:
            cells = [f.metric(task, metric) for f in board.rows]
            if not any(c is not None for c in cells):
                continue
            values = [c.value if c is not None else math.nan for c in cells]
            stderrs = [c.stderr if c is not None and c.stderr is not None else math.nan for c in cells]
            out.append(metric_signal(task, metric, values, stderrs))
    return out


def format_snr(rows: list[MetricSignal]) -> str:
    """A plain-text table: task, metric, checkpoints, signal, noise, snr claim."""
    head = f"{'task':<22} {'metric':<20} {'n':>3} {'signal':>8} {'noise':>8}  snr"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.task:<22} {r.metric:<20} {r.n_checkpoints:>3} {r.signal:>8.4f} {r.noise:>8.4f}  {r.claim}")
    return "\n".join(lines)
