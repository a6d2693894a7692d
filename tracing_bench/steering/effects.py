"""What a steering setting does to each document: paired changes and steerability.

A task's mean score of a steered model against the unsteered one, each with its own standard
error, hides what steering does when the answer barely flips (a model answering " 1" almost
everywhere keeps its ``acc`` at the label mix whatever the vector does). Both runs score the
same documents, so the change can be measured per document and paired:

* :func:`paired_change`: for one setting, the change in every document's trustworthy log-odds
  (:mod:`tracing_bench.doc_logodds`) against the unsteered run, paired by ``doc_id``: its mean
  with a Student t interval over documents, and the share of documents that move the wrong way
  (their log-odds fall: away from the trustworthy answer). Within noise unless the interval
  excludes 0.
* :func:`steerability`: for one vector and layer, each document's least-squares slope of its
  log-odds over the swept alphas with alpha 0 = the unsteered run (Tan et al. 2024, "Analyzing
  the generalization and reliability of steering vectors": the per-example steerability): the
  mean slope with a t interval, and the share of anti-steerable documents (negative slope).
  Positive alphas point toward the trustworthy side, so a helpful vector has a positive slope.

Log-odds are in nats; a change of +1 multiplies the odds of the trustworthy answer by e.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tracing_bench.stats import z_value


@dataclass(frozen=True)
class PairedEffect:
    """A per-document quantity summarised over documents (a change or a slope).

    Attributes:
        n: documents paired (present in every run compared).
        mean: mean over documents.
        sd: standard deviation over documents (ddof 1; ``nan`` below 2 documents).
        lo, hi: Student t interval of the mean (``nan`` below 2 documents).
        wrong_way: share of documents below 0 (the log-odds fell / an anti-steerable slope).
        within_noise: True unless the interval excludes 0 (also True when not tested).
        unit: what the mean is in (``nats`` or ``nats per alpha``).
    """

    n: int
    mean: float
    sd: float
    lo: float
    hi: float
    wrong_way: float
    within_noise: bool
    unit: str = "nats"

    @property
    def tested(self) -> bool:
        return self.lo == self.lo

    @property
    def claim(self) -> str:
        """``+0.412 nats [+0.201, +0.623], 9% of 100 documents the wrong way``, ``..., within noise``."""
        if self.n == 0:
            return "no documents in common: not tested"
        way = "anti-steerable" if self.unit != "nats" else "the wrong way"
        text = f"{self.mean:+.3f} {self.unit}"
        text += f" [{self.lo:+.3f}, {self.hi:+.3f}]" if self.tested else " (fewer than 2 documents: not tested)"
        text += f", {100 * self.wrong_way:.0f}% of {self.n} documents {way}"
        return text + (", within noise" if self.within_noise else "")

    def as_dict(self) -> dict[str, Any]:
        """JSON fields: ``n, mean, sd, ci, wrong_way, within_noise, unit, claim``."""
        d = asdict(self)
        d["ci"] = [d.pop("lo"), d.pop("hi")]
        d["claim"] = self.claim
        return d


def t_value(df: int, confidence: float = 0.95) -> float:
    """Two-sided Student t quantile (``df`` >= 1) at ``confidence``."""
    # lazy: scipy loads on first use, so importing steering.effects stays light
    from scipy.stats import t

    z_value(confidence)  # validates the level, one line when wrong
    return float(t.ppf(0.5 + float(confidence) / 2, df))


def summarise(values: Any, *, confidence: float = 0.95, unit: str = "nats") -> PairedEffect:
    """Mean of per-document values with its t interval and the share below 0."""
    x = np.asarray(values, dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return PairedEffect(0, math.nan, math.nan, math.nan, math.nan, math.nan, True, unit)
    mean = float(x.mean())
    wrong = float(np.mean(x < 0))
    if n < 2:
        return PairedEffect(n, mean, math.nan, math.nan, math.nan, wrong, True, unit)
    sd = float(x.std(ddof=1))
    half = t_value(n - 1, confidence) * sd / math.sqrt(n)
    lo, hi = mean - half, mean + half
    return PairedEffect(n, mean, sd, lo, hi, wrong, not (lo > 0 or hi < 0), unit)


def paired_changes(base: Mapping[int, float], steered: Mapping[int, float]) -> dict[int, float]:
    """``{doc_id: steered - base}`` over the documents both runs scored."""
    return {k: float(steered[k]) - float(base[k]) for k in sorted(base) if k in steered}


def paired_change(base: Mapping[int, float], steered: Mapping[int, float], *, confidence: float = 0.95) -> PairedEffect:
    """The per-document change of one setting against the unsteered run (see the module docstring).

    Args:
        base: ``{doc_id: log-odds}`` of the unsteered run.
        steered: the same of the steered run.
        confidence: level of the t interval.
    """
    return summarise(list(paired_changes(base, steered).values()), confidence=confidence)


def doc_slopes(alphas: Any, values: Any) -> np.ndarray:
    """Least-squares slope of each row of ``values`` (documents x alphas) over ``alphas``."""
    a = np.asarray(alphas, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    ac = a - a.mean()
    denom = float(ac @ ac)
    if y.ndim != 2 or y.shape[1] != a.size or denom == 0.0:
        return np.full(y.shape[0] if y.ndim == 2 else 0, np.nan)
    return (y - y.mean(axis=1, keepdims=True)) @ ac / denom


def steerability(by_alpha: Mapping[float, Mapping[int, float]], *, confidence: float = 0.95) -> PairedEffect:
    """Per-document slope of the log-odds over alpha, summarised (see the module docstring).

    Args:
        by_alpha: ``{alpha: {doc_id: log-odds}}``, the unsteered run as alpha 0, one vector and layer.
        confidence: level of the t interval.

    Returns:
        a :class:`PairedEffect` in nats per unit of alpha over the documents present at every
        alpha (``n`` 0 with fewer than two distinct alphas).
    """
    alphas = sorted(float(a) for a in by_alpha)
    if len(alphas) < 2:
        return summarise([], confidence=confidence, unit="nats per alpha")
    runs = [by_alpha[a] for a in alphas]
    docs = sorted(set(runs[0]).intersection(*runs[1:]))
    matrix = np.array([[float(r[d]) for r in runs] for d in docs], dtype=np.float64).reshape(len(docs), len(alphas))
    return summarise(doc_slopes(alphas, matrix), confidence=confidence, unit="nats per alpha")


# ------------------------------------------------------------------------------ sweep.csv columns
def logodds_score(values: Mapping[int, float]) -> tuple[float, float]:
    """Mean per-document log-odds of one run and its standard error (``nan`` below 2 documents)."""
    x = np.asarray(list(values.values()), dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan
    return float(x.mean()), (float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else math.nan)


def sweep_effects(
    base: Mapping[str, Mapping[int, float]],
    runs: Mapping[tuple[Any, float], Mapping[str, Mapping[int, float]]],
    *,
    confidence: float = 0.95,
) -> dict[tuple[Any, float, str], dict[str, Any]]:
    """Paired change and steerability of every steered setting and task of a sweep.

    Args:
        base: per task, ``{doc_id: log-odds}`` of the unsteered run.
        runs: per ``(layer, alpha)``, the same of the steered run.
        confidence: level of the t intervals.

    Returns:
        per ``(layer, alpha, task)``: ``change`` and ``steerability`` (:class:`PairedEffect`, the
        latter over the layer's alphas and alpha 0) and the ``sweep.csv`` fields ``delta``,
        ``delta_lo``, ``delta_hi``, ``wrong_way``, ``n_docs``, ``slope``, ``slope_lo``,
        ``slope_hi``, ``anti_steerable``.
    """
    out: dict[tuple[Any, float, str], dict[str, Any]] = {}
    layers = list(dict.fromkeys(layer for layer, _ in runs))
    for task, base_values in base.items():
        for layer in layers:
            mine = {float(a): r[task] for (lay, a), r in runs.items() if lay == layer and task in r}
            slope = steerability({0.0: base_values, **mine}, confidence=confidence)
            for alpha, values in mine.items():
                change = paired_change(base_values, values, confidence=confidence)
                out[(layer, alpha, task)] = {
                    "change": change,
                    "steerability": slope,
                    "delta": change.mean,
                    "delta_lo": change.lo,
                    "delta_hi": change.hi,
                    "wrong_way": change.wrong_way,
                    "n_docs": change.n,
                    "slope": slope.mean,
                    "slope_lo": slope.lo,
                    "slope_hi": slope.hi,
                    "anti_steerable": slope.wrong_way,
                }
    return out


__all__ = [
    "PairedEffect",
    "doc_slopes",
    "logodds_score",
    "paired_change",
    "paired_changes",
    "steerability",
    "summarise",
    "sweep_effects",
    "t_value",
]
