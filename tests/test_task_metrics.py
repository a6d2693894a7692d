"""The trust tasks' chance-corrected metrics against scikit-learn, and their stderrs against a
plain bootstrap loop over documents (scikit-learn's functions, another generator)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, matthews_corrcoef, roc_auc_score

from tracing_bench.tasks import metrics


def _loop_bootstrap_se(fn, columns, n_boot=2000, seed=123):
    rng = np.random.default_rng(seed)
    n = len(columns[0])
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        v = fn(*(np.asarray(c)[idx] for c in columns))
        if np.isfinite(v):
            values.append(v)
    return float(np.std(values, ddof=1))


def _sk_mcc(gold, pred):
    return matthews_corrcoef(gold, pred)


def _sk_kappa(a, b):
    if len(set(a)) == 1 and len(set(b)) == 1:
        return 0.0  # both answers constant: the convention metrics.kappa documents
    with np.errstate(invalid="ignore", divide="ignore"):
        v = cohen_kappa_score(a, b)
    return 0.0 if not np.isfinite(v) else v


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mcc_kappa_pearson_auroc_equal_scikit_learn_and_numpy(seed):
    rng = np.random.default_rng(seed)
    n = 200
    gold = rng.integers(0, 2, n)
    noise = rng.normal(size=n)
    score = gold * (0.5 + seed * 0.3) + noise
    pred = (score > 0.4).astype(int)
    other = (score + rng.normal(size=n) > 0.6).astype(int)
    assert metrics.mcc(list(zip(gold, pred, strict=True))) == pytest.approx(matthews_corrcoef(gold, pred))
    assert metrics.kappa(list(zip(pred, other, strict=True))) == pytest.approx(cohen_kappa_score(pred, other))
    assert metrics.auroc(list(zip(score, gold, strict=True))) == pytest.approx(roc_auc_score(gold, score))
    x, y = score, score + rng.normal(size=n)
    assert metrics.pearson(list(zip(x, y, strict=True))) == pytest.approx(np.corrcoef(x, y)[0, 1])
    pair = rng.choice([0.0, 0.5, 1.0], n)
    assert metrics.twice_mean_minus_one(list(pair)) == pytest.approx(2 * pair.mean() - 1)
    answers = rng.integers(0, 2, (n, 2))
    share = max(answers.mean(), 1 - answers.mean())
    assert metrics.top_answer_share([list(a) for a in answers]) == pytest.approx(share)


def test_bootstrap_stderrs_agree_with_a_plain_loop():
    rng = np.random.default_rng(7)
    n = 150
    gold = rng.integers(0, 2, n)
    score = gold * 0.8 + rng.normal(size=n)
    pred = (score > 0.4).astype(int)
    other = (score + rng.normal(size=n) * 0.7 > 0.4).astype(int)
    y = score + rng.normal(size=n)
    cases = [
        (metrics.mcc, list(zip(gold, pred, strict=True)), _sk_mcc, (gold, pred)),
        (metrics.kappa, list(zip(pred, other, strict=True)), _sk_kappa, (pred, other)),
        (metrics.pearson, list(zip(score, y, strict=True)), lambda a, b: np.corrcoef(a, b)[0, 1], (score, y)),
        (metrics.auroc, list(zip(score, gold, strict=True)), lambda s, g: roc_auc_score(g, s), (score, gold)),
        (metrics.top_answer_share, list(pred), lambda p: max(p.mean(), 1 - p.mean()), (pred,)),
    ]
    for fn, items, independent, columns in cases:
        ours = metrics.stderr_of(fn)(items)
        loop = _loop_bootstrap_se(independent, columns)
        assert ours == pytest.approx(loop, rel=0.15), fn.__name__


def test_one_answer_to_every_prompt_reads_chance():
    rng = np.random.default_rng(3)
    gold = rng.integers(0, 2, 300)
    ones = np.ones_like(gold)
    assert metrics.mcc(list(zip(gold, ones, strict=True))) == 0.0
    assert metrics.stderr_of(metrics.mcc)(list(zip(gold, ones, strict=True))) == 0.0
    assert metrics.kappa(list(zip(ones, ones, strict=True))) == 0.0
    assert metrics.top_answer_share(list(ones)) == 1.0
    # log-odds unrelated to the label: AUROC within its interval of 0.5
    logodds = 2.0 + rng.normal(size=gold.size)  # " 1" wins everywhere
    items = list(zip(logodds, gold, strict=True))
    auc, se = metrics.auroc(items), metrics.stderr_of(metrics.auroc)(items)
    assert abs(auc - 0.5) < 1.96 * se


def test_lm_eval_asks_our_stderr_and_keeps_its_own_for_the_rest():
    from lm_eval import evaluator_utils
    from lm_eval.api.metrics import mean, mean_stderr

    assert metrics.install_stderr()
    assert evaluator_utils.stderr_for_metric(metrics.mcc, 100) is metrics.stderr_of(metrics.mcc)
    assert evaluator_utils.stderr_for_metric(mean, 100) is mean_stderr
    assert evaluator_utils.stderr_for_metric(metrics.mcc, 0) is None  # bootstrap_iters 0: no stderr
    assert metrics.install_stderr()  # idempotent: still one wrapper
    assert not hasattr(getattr(evaluator_utils.stderr_for_metric, "__wrapped__", None), "tracing_bench")


def test_twice_mean_stderr_is_the_closed_form():
    x = [1.0, 0.0, 0.5, 1.0, 1.0, 0.0]
    sd = float(np.std(x, ddof=1))
    assert metrics.stderr_of(metrics.twice_mean_minus_one)(x) == pytest.approx(2 * sd / math.sqrt(len(x)))


@pytest.mark.parametrize("seed", [0, 1])
def test_one_answer_and_its_mirror_image_read_the_same(seed):
    """A model that answers " 1" everywhere and one that answers " 0" everywhere (log-odds negated)
    get the same value on every metric the tasks added."""
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 2, 200)
    logodds = 2.0 + rng.normal(size=gold.size)
    ones, zeros = np.ones_like(gold), np.zeros_like(gold)
    for fn in (metrics.mcc,):
        a, b = list(zip(gold, ones, strict=True)), list(zip(gold, zeros, strict=True))
        assert fn(a) == fn(b) == 0.0 and metrics.stderr_of(fn)(a) == metrics.stderr_of(fn)(b)
    assert metrics.kappa(list(zip(ones, ones, strict=True))) == metrics.kappa(list(zip(zeros, zeros, strict=True)))
    assert metrics.top_answer_share(list(ones)) == metrics.top_answer_share(list(zeros)) == 1.0
    # the mirror image negates the log-odds; AUROC's distance from chance is the same
    up, down = list(zip(logodds, gold, strict=True)), list(zip(-logodds, gold, strict=True))
    assert metrics.auroc(up) - 0.5 == pytest.approx(0.5 - metrics.auroc(down))
    assert metrics.stderr_of(metrics.auroc)(up) == pytest.approx(metrics.stderr_of(metrics.auroc)(down))
