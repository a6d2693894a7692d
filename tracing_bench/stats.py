"""The statistics behind every interval and test that tracing-bench prints.

* :func:`wilson_interval`: 95 % Wilson score interval of a proportion (probe test accuracy).
* :func:`auroc_interval`: AUROC with DeLong's variance and a normal interval (probe test AUROC).
* :func:`mcnemar_exact`: two-sided exact McNemar test of two classifiers scored on the same
  statements (the discordant pairs against Binomial(b + c, 1/2)).
* :func:`paired_bootstrap_diff`: the change in accuracy between two classifiers on the same
  statements with a paired bootstrap percentile interval (statements resampled together).
* :func:`holm`: Holm's step-down adjusted p-values (family-wise error control).
* :func:`diff_interval`: the difference of two independent estimates with standard errors
  (leaderboard rows, a steering setting against the unsteered model) and whether it is within
  noise (its interval contains 0).

Every function is a few lines of numpy (scipy for the binomial tail); tests/test_stats.py checks
each against an independent computation (scipy.stats.binomtest, brute-force loops, textbook
values).

>>> [round(x, 4) for x in wilson_interval(81, 263)]
[0.2553, 0.3662]
>>> mcnemar_exact(12, 3)                          # doctest: +ELLIPSIS
0.0351...
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tracing_bench.errors import TracingBenchError

__all__ = [
    "Diff",
    "PairedDiff",
    "auroc_interval",
    "delong",
    "diff_interval",
    "holm",
    "mcnemar_exact",
    "paired_bootstrap_diff",
    "wilson_interval",
    "z_value",
]


def z_value(confidence: float = 0.95) -> float:
    """Two-sided standard-normal quantile for ``confidence`` (1.959964 for 0.95).

    Raises:
        TracingBenchError: ``confidence`` outside (0, 1).
    """
    if not 0.0 < float(confidence) < 1.0:
        raise TracingBenchError(f"confidence={confidence!r} is not valid: give a level between 0 and 1, e.g. 0.95")
    # lazy: scipy loads on first use, so importing stats stays light
    from scipy.stats import norm

    return float(norm.ppf(0.5 + float(confidence) / 2))


def wilson_interval(successes: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion.

    Args:
        successes: number of successes (e.g. correctly classified test statements).
        n: number of trials.
        confidence: two-sided level.

    Returns:
        ``(lo, hi)``; ``(nan, nan)`` when ``n`` is 0.

    Raises:
        TracingBenchError: negative counts or ``successes > n``.
    """
    if n < 0 or successes < 0 or successes > n:
        raise TracingBenchError(f"wilson_interval({successes}, {n}): need 0 <= successes <= n")
    if n == 0:
        return (math.nan, math.nan)
    z = z_value(confidence)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _midranks(values: np.ndarray) -> np.ndarray:
    # lazy: scipy loads on first use, so importing stats stays light
    from scipy.stats import rankdata

    return rankdata(values)  # average ranks for ties, 1-based


def delong(scores: Any, labels: Any) -> tuple[float, float]:
    """AUROC and DeLong's estimate of its variance (ties count one half).

    With placement values V10_i (share of negatives scored below positive i) and V01_j (share
    of positives scored above negative j), AUROC = mean(V10) and
    Var = var(V10) / n1 + var(V01) / n0 (sample variances, DeLong et al. 1988).

    Args:
        scores: [n] classifier scores (higher = label 1).
        labels: [n] 0/1 labels.

    Returns:
        ``(auroc, variance)``; ``(nan, nan)`` when a class is missing, variance ``nan`` when a
        class has a single member.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise TracingBenchError(f"scores has {s.size} entries but labels {y.size}; give one label per score")
    pos, neg = s[y], s[~y]
    n1, n0 = pos.size, neg.size
    if n1 == 0 or n0 == 0:
        return (math.nan, math.nan)
    r_all = _midranks(s)
    v10 = (r_all[y] - _midranks(pos)) / n0  # negatives below each positive (+1/2 per tie)
    v01 = 1.0 - (r_all[~y] - _midranks(neg)) / n1  # positives above each negative (+1/2 per tie)
    auc = float(v10.mean())
    if n1 < 2 or n0 < 2:
        return (auc, math.nan)
    return (auc, float(v10.var(ddof=1) / n1 + v01.var(ddof=1) / n0))


def auroc_interval(scores: Any, labels: Any, *, confidence: float = 0.95) -> tuple[float, float, float]:
    """AUROC with a DeLong normal interval, clipped to [0, 1].

    A perfectly separating (or perfectly inverted) score has DeLong variance 0, so its interval
    is the point itself.

    Returns:
        ``(auroc, lo, hi)``; NaNs when a class is missing or has a single member.
    """
    auc, var = delong(scores, labels)
    if math.isnan(var):
        return (auc, math.nan, math.nan)
    half = z_value(confidence) * math.sqrt(max(var, 0.0))
    return (auc, max(0.0, auc - half), min(1.0, auc + half))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts.

    Args:
        b: statements that classifier A got right and B wrong.
        c: statements that A got wrong and B right.

    Returns:
        ``min(1, 2 P(X <= min(b, c)))`` for X ~ Binomial(b + c, 1/2); 1.0 when ``b + c`` is 0.
    """
    if b < 0 or c < 0:
        raise TracingBenchError(f"mcnemar_exact({b}, {c}): counts must be non-negative")
    n = int(b) + int(c)
    if n == 0:
        return 1.0
    # lazy: scipy loads on first use, so importing stats stays light
    from scipy.stats import binom

    return float(min(1.0, 2.0 * binom.cdf(min(b, c), n, 0.5)))


@dataclass(frozen=True)
class PairedDiff:
    """Change in accuracy between two classifiers scored on the same statements.

    Attributes:
        acc_a, acc_b: accuracies of A (e.g. the first checkpoint) and B (the last).
        diff: ``acc_b - acc_a``.
        lo, hi: paired bootstrap percentile interval of ``diff``.
        b: statements A got right and B wrong; c: A wrong and B right.
        p_value: exact McNemar p-value (two-sided).
        n: statements.
        n_boot, seed, confidence: bootstrap settings.
    """

    acc_a: float
    acc_b: float
    diff: float
    lo: float
    hi: float
    b: int
    c: int
    p_value: float
    n: int
    n_boot: int
    seed: int
    confidence: float


def paired_bootstrap_diff(
    correct_a: Any, correct_b: Any, *, n_boot: int = 10000, seed: int = 0, confidence: float = 0.95
) -> PairedDiff:
    """Accuracy change B - A on the same statements: paired bootstrap interval and McNemar test.

    Resampling n statements with replacement (each statement keeps its pair of outcomes) is
    drawing the counts of the four outcome pairs (both right, A only, B only, neither) from a
    multinomial with the observed shares, so the bootstrap costs n_boot multinomial draws.

    Args:
        correct_a, correct_b: [n] booleans, statement i right under A / under B.
        n_boot: bootstrap resamples.
        seed: seed of the resampling.
        confidence: two-sided level of the percentile interval.

    Returns:
        :class:`PairedDiff`.

    Raises:
        TracingBenchError: different lengths or no statements.
    """
    a = np.asarray(correct_a).astype(bool).ravel()
    b_ = np.asarray(correct_b).astype(bool).ravel()
    if a.shape != b_.shape or a.size == 0:
        raise TracingBenchError(
            f"paired comparison needs the same statements on both sides: got {a.size} and {b_.size} outcomes"
        )
    if n_boot < 1:
        raise TracingBenchError(f"n_boot={n_boot}: give a positive number of bootstrap resamples")
    z_value(confidence)  # validates
    n = a.size
    a_only = int((a & ~b_).sum())
    b_only = int((~a & b_).sum())
    both = int((a & b_).sum())
    counts = np.array([both, a_only, b_only, n - both - a_only - b_only])
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, counts / n, size=int(n_boot))
    diffs = (draws[:, 2] - draws[:, 1]) / n
    tail = (1.0 - confidence) / 2
    lo, hi = np.quantile(diffs, [tail, 1.0 - tail])
    return PairedDiff(
        acc_a=float(a.mean()),
        acc_b=float(b_.mean()),
        diff=float(b_.mean() - a.mean()),
        lo=float(lo),
        hi=float(hi),
        b=a_only,
        c=b_only,
        p_value=mcnemar_exact(a_only, b_only),
        n=n,
        n_boot=int(n_boot),
        seed=int(seed),
        confidence=float(confidence),
    )


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as given; NaNs stay NaN and do not count).

    Rejecting every hypothesis whose adjusted p-value is at most alpha controls the family-wise
    error rate at alpha (Holm 1979).
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    vals = p[ok]
    m = vals.size
    if m == 0:
        return out
    order = np.argsort(vals, kind="stable")
    scaled = (m - np.arange(m)) * vals[order]
    adj_sorted = np.minimum(1.0, np.maximum.accumulate(scaled))
    adj = np.empty(m)
    adj[order] = adj_sorted
    out[ok] = adj
    return out


@dataclass(frozen=True)
class Diff:
    """Difference of two independent estimates, each with a standard error.

    Attributes:
        diff: ``b - a``.
        se: ``sqrt(se_a^2 + se_b^2)`` (``nan`` when either is unknown).
        lo, hi: normal interval of ``diff``.
        within_noise: True when the interval contains 0 (or the standard error is unknown).
    """

    diff: float
    se: float
    lo: float
    hi: float
    within_noise: bool


def diff_interval(a: float, se_a: float | None, b: float, se_b: float | None, *, confidence: float = 0.95) -> Diff:
    """``b - a`` with the normal interval from the two standard errors (independent samples).

    For two scores of the same documents (a steering setting against the unsteered model) the
    errors are positively correlated, so this interval is wider than a paired one: a change it
    calls beyond noise is beyond noise.
    """
    diff = float(b) - float(a)
    ses = [s for s in (se_a, se_b) if s is not None and not (isinstance(s, float) and math.isnan(s))]
    if len(ses) < 2:
        return Diff(diff, math.nan, math.nan, math.nan, True)
    se = math.sqrt(float(se_a) ** 2 + float(se_b) ** 2)  # type: ignore[arg-type]
    half = z_value(confidence) * se
    lo, hi = diff - half, diff + half
    return Diff(diff, se, lo, hi, not (lo > 0 or hi < 0))
