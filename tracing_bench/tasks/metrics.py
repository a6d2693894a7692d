"""Metrics of the trust tasks that a constant answer cannot move, each with a numeric stderr.

A model that gives one answer to every prompt scores the label mix of the documents on ``acc``.
The metrics here are computed from each document's log-probabilities and read chance (0 for
the correlation-like ones, 0.5 for the ranking ones) for such a model:

* :func:`mcc`: Matthews correlation of the answer (the most likely choice) with the gold
  label; 0 when either side is constant (scikit-learn's convention).
* :func:`auroc`: area under the ROC curve of the per-document log-odds
  ``log P(" 1") - log P(" 0")`` against the label (threshold-free; ties count one half).
* :func:`kappa`: Cohen's kappa of two answers per document (robustness: clean vs perturbed);
  0 when the agreement expected by chance is 1 (both answers constant).
* :func:`pearson`: correlation of two log-odds per document (robustness: clean vs perturbed).
* :func:`twice_mean_minus_one`: ``2 * mean - 1`` of a per-pair 1 / 0.5 / 0 score (fairness: did
  the more stereotypical sentence get the higher stereotype log-odds?), 0 = cannot tell them apart.
* :func:`top_answer_share`: share of the most frequent answer, a diagnostic (1 = one answer).

``chance_corrected`` is each task's headline: MCC (reliability, privacy, toxicity),
``2 * pair_discrimination - 1`` (fairness), kappa (robustness); the group ``trust`` averages it.

lm-eval gives a stderr only to the aggregations it knows (``mean`` in closed form, a few
scikit-learn ones by a slow multiprocess bootstrap) and writes ``N/A`` for the rest. Every
aggregation here carries its own ``stderr`` attribute: DeLong's variance for AUROC, the closed
form of a mean, and a seeded bootstrap over documents (:data:`N_BOOT` resamples, vectorised) for
MCC, kappa, Pearson's r and the top-answer share. :func:`install_stderr` lets lm-eval find it;
importing this module installs it (a task's YAML names these functions, so lm-eval imports
this module before it aggregates).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tracing_bench.stats import delong

#: Bootstrap resamples of the stderrs that have no closed form.
N_BOOT = 1000
#: Seed of those resamples (stderrs are the same on every run).
SEED = 0

Items = Sequence[Any]


def _pairs(items: Items) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray([list(map(float, it)) for it in items], dtype=np.float64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def _resample(n: int) -> np.ndarray:
    """[N_BOOT, n] document indices drawn with replacement (seeded)."""
    return np.random.default_rng(SEED).integers(0, n, size=(N_BOOT, n))


def _sd(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(values.std(ddof=1)) if values.size > 1 else math.nan


# ------------------------------------------------------------------ Matthews correlation
def mcc_rows(gold: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """MCC of each row of two [B, n] 0/1 arrays (0 where a margin is empty)."""
    tp = (gold * pred).sum(-1)
    tn = ((1 - gold) * (1 - pred)).sum(-1)
    fp = ((1 - gold) * pred).sum(-1)
    fn = (gold * (1 - pred)).sum(-1)
    den = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (tp * tn - fp * fn) / np.sqrt(den)
    return np.where(den > 0, out, 0.0)


def mcc(items: Items) -> float:
    """Matthews correlation of ``(gold, answer)`` items (0/1 each).

    >>> mcc([(1, 1), (0, 0), (1, 0), (0, 0)])  # doctest: +ELLIPSIS
    0.577...
    >>> mcc([(1, 1), (0, 1)])  # one answer to every prompt
    0.0
    """
    gold, pred = _pairs(items)
    return float(mcc_rows(gold[None], pred[None])[0])


def _mcc_se(items: Items) -> float:
    gold, pred = _pairs(items)
    idx = _resample(gold.size)
    return _sd(mcc_rows(gold[idx], pred[idx]))


# ------------------------------------------------------------------ Cohen's kappa
def kappa_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cohen's kappa of each row of two [B, n] 0/1 arrays (0 where chance agreement is 1)."""
    n = a.shape[-1]
    po = (a == b).mean(-1)
    pa, pb = a.mean(-1), b.mean(-1)
    pe = pa * pb + (1 - pa) * (1 - pb)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (po - pe) / (1 - pe)
    return np.where((1 - pe) > 0.5 / max(n, 1) ** 2, out, 0.0)


def kappa(items: Items) -> float:
    """Cohen's kappa of ``(answer_a, answer_b)`` items (0/1 each).

    >>> kappa([(0, 0), (1, 1), (1, 1), (0, 1)])
    0.5
    >>> kappa([(1, 1), (1, 1)])  # both answers constant: no agreement beyond chance can be shown
    0.0
    """
    a, b = _pairs(items)
    return float(kappa_rows(a[None], b[None])[0])


def _kappa_se(items: Items) -> float:
    a, b = _pairs(items)
    idx = _resample(a.size)
    return _sd(kappa_rows(a[idx], b[idx]))


# ------------------------------------------------------------------ Pearson's r
def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xc = x - x.mean(-1, keepdims=True)
    yc = y - y.mean(-1, keepdims=True)
    den = np.sqrt((xc * xc).sum(-1) * (yc * yc).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (xc * yc).sum(-1) / den
    return np.where(den > 0, out, 0.0)


def pearson(items: Items) -> float:
    """Pearson correlation of ``(x, y)`` items (0 when either side is constant)."""
    x, y = _pairs(items)
    return float(_pearson_rows(x[None], y[None])[0])


def _pearson_se(items: Items) -> float:
    x, y = _pairs(items)
    idx = _resample(x.size)
    return _sd(_pearson_rows(x[idx], y[idx]))


# ------------------------------------------------------------------ AUROC
def auroc(items: Items) -> float:
    """AUROC of ``(score, label)`` items: the chance that a label-1 document scores above a
    label-0 one (ties one half); NaN when a label is missing.

    >>> auroc([(0.3, 1), (0.1, 0), (0.2, 1), (0.2, 0)])
    0.875
    """
    s, y = _pairs(items)
    return delong(s, y)[0]


def _auroc_se(items: Items) -> float:
    s, y = _pairs(items)
    var = delong(s, y)[1]
    return math.sqrt(max(var, 0.0)) if not math.isnan(var) else math.nan


# ------------------------------------------------------------------ means
def twice_mean_minus_one(items: Items) -> float:
    """``2 * mean - 1`` of per-document scores in [0, 1] (0.5 -> 0: chance).

    >>> twice_mean_minus_one([1.0, 0.5, 1.0, 0.0])
    0.25
    """
    x = np.asarray(items, dtype=np.float64)
    return float(2 * x.mean() - 1) if x.size else math.nan


def _twice_mean_se(items: Items) -> float:
    x = np.asarray(items, dtype=np.float64)
    return float(2 * x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else math.nan


# ------------------------------------------------------------------ the most frequent answer
def _answers(items: Items) -> list[list[int]]:
    return [[int(a) for a in it] if isinstance(it, (list, tuple)) else [int(it)] for it in items]


def top_answer_share(items: Items) -> float:
    """Share of the most frequent answer; an item is one answer or a document's list of answers.

    >>> top_answer_share([1, 1, 0, 1])
    0.75
    >>> top_answer_share([[0, 1], [1, 1]])
    0.75
    """
    flat = [a for doc in _answers(items) for a in doc]
    if not flat:
        return math.nan
    return max(flat.count(v) for v in set(flat)) / len(flat)


def _top_share_se(items: Items) -> float:
    docs = _answers(items)
    if len(docs) < 2:
        return math.nan
    values = sorted({a for d in docs for a in d})
    counts = np.array([[d.count(v) for v in values] for d in docs], dtype=np.float64)  # [n, k]
    idx = _resample(len(docs))
    totals = counts[idx].sum(1)  # [B, k]
    return _sd(totals.max(-1) / totals.sum(-1))


# ------------------------------------------------------------------ lm-eval's stderr
def _with_stderr(fn: Callable[[Items], float], se: Callable[[Items], float]) -> None:
    fn.stderr = se  # type: ignore[attr-defined]


_with_stderr(mcc, _mcc_se)
_with_stderr(kappa, _kappa_se)
_with_stderr(pearson, _pearson_se)
_with_stderr(auroc, _auroc_se)
_with_stderr(twice_mean_minus_one, _twice_mean_se)
_with_stderr(top_answer_share, _top_share_se)


def stderr_of(fn: Any) -> Callable[[Items], float] | None:
    """The stderr function an aggregation carries (None for lm-eval's own)."""
    return getattr(fn, "stderr", None)


def install_stderr() -> bool:
    """Make lm-eval use an aggregation's own ``stderr`` (idempotent).

    lm-eval asks ``stderr_for_metric(aggregation, bootstrap_iters)`` for each metric; the
    wrapper answers with the aggregation's ``stderr`` attribute when it has one (and
    ``bootstrap_iters > 0``, as lm-eval does), else with lm-eval's own answer.

    Returns:
        whether lm-eval's evaluator now asks the wrapper.
    """
    try:
        from lm_eval import evaluator_utils
        from lm_eval.api import metrics as lm_metrics
    except ImportError:  # pragma: no cover - lm-eval is a dependency
        return False
    current = getattr(evaluator_utils, "stderr_for_metric", None)
    if current is None:
        return False
    if getattr(current, "tracing_bench", False):
        return True
    original = current

    def stderr_for_metric(metric: Any, bootstrap_iters: int) -> Any:
        own = stderr_of(metric)
        if own is not None and bootstrap_iters > 0:
            return own
        return original(metric=metric, bootstrap_iters=bootstrap_iters)

    stderr_for_metric.tracing_bench = True  # type: ignore[attr-defined]
    evaluator_utils.stderr_for_metric = stderr_for_metric
    lm_metrics.stderr_for_metric = stderr_for_metric
    return True


def aggregation_for(task: str, metric: str) -> Callable[[Items], float] | None:
    """The aggregation of a trust task's metric defined here (None for lm-eval's ``mean``).

    >>> aggregation_for("trust_robustness", "chance_corrected").__name__
    'kappa'
    """
    if metric == "chance_corrected":
        return {"trust_fairness": twice_mean_minus_one, "trust_robustness": kappa}.get(task, mcc)
    return {
        "mcc": mcc,
        "auroc": auroc,
        "kappa": kappa,
        "logodds_agreement": pearson,
        "top_answer_share": top_answer_share,
    }.get(metric)


install_stderr()
