"""tracing_bench.stats against independent computations: scipy, brute-force loops, textbook values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import binomtest, norm

from tracing_bench.errors import TracingBenchError
from tracing_bench.stats import (
    auroc_interval,
    delong,
    diff_interval,
    holm,
    mcnemar_exact,
    paired_bootstrap_diff,
    wilson_interval,
)


def test_wilson_textbook_and_scipy():
    # Newcombe (1998), Statistics in Medicine 17:857, table I: 81/263 -> 0.2553 to 0.3662
    lo, hi = wilson_interval(81, 263)
    assert (round(lo, 4), round(hi, 4)) == (0.2553, 0.3662)
    for k, n in [(0, 10), (1, 10), (10, 10), (37, 50), (250, 500), (499, 500)]:
        ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(k, n) == pytest.approx((ref.low, ref.high), abs=1e-12)
    ref = binomtest(7, 20).proportion_ci(confidence_level=0.9, method="wilson")
    assert wilson_interval(7, 20, confidence=0.9) == pytest.approx((ref.low, ref.high), abs=1e-12)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(TracingBenchError, match="0 <= successes <= n"):
        wilson_interval(5, 3)


def _brute_delong(scores, labels):
    """Placement values by explicit loops over every (positive, negative) pair."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]

    def psi(x, z):
        return 1.0 if x > z else 0.5 if x == z else 0.0

    v10 = np.array([np.mean([psi(x, z) for z in neg]) for x in pos])
    v01 = np.array([np.mean([psi(x, z) for x in pos]) for z in neg])
    auc = float(np.mean([psi(x, z) for x in pos for z in neg]))
    var = v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg)
    return auc, var


def test_delong_matches_brute_force_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    s = np.round(rng.normal(size=120) + 0.8 * y, 1)  # rounding makes ties
    auc, var = delong(s, y)
    ref_auc, ref_var = _brute_delong(s.tolist(), y.tolist())
    assert auc == pytest.approx(ref_auc, abs=1e-12) and var == pytest.approx(ref_var, rel=1e-10)
    from sklearn.metrics import roc_auc_score

    assert auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    a, lo, hi = auroc_interval(s, y)
    half = norm.ppf(0.975) * math.sqrt(ref_var)
    assert (lo, hi) == pytest.approx((ref_auc - half, ref_auc + half), abs=1e-12)


def test_delong_variance_agrees_with_a_brute_force_bootstrap():
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(150, int), np.zeros(150, int)]
    s = rng.normal(size=300) + 1.0 * y
    _, var = delong(s, y)
    pos, neg = s[:150], s[150:]
    boots = []
    for _ in range(1500):  # stratified resampling, as DeLong's variance conditions on n1, n0
        p1 = pos[rng.integers(0, 150, 150)]
        p0 = neg[rng.integers(0, 150, 150)]
        boots.append((p1[:, None] > p0[None, :]).mean())  # AUROC by counting pairs (no ties here)
    assert math.sqrt(var) == pytest.approx(np.std(boots), rel=0.1)


def test_auroc_degenerate_cases():
    assert auroc_interval([0.1, 0.2, 0.9, 0.8], [0, 0, 1, 1]) == (1.0, 1.0, 1.0)  # perfect: variance 0
    assert all(math.isnan(v) for v in auroc_interval([1, 2, 3], [1, 1, 1]))
    auc, lo, hi = auroc_interval([1, 2, 3], [0, 1, 1])  # one negative: no variance
    assert auc == 1.0 and math.isnan(lo) and math.isnan(hi)


@pytest.mark.parametrize("b,c", [(0, 0), (0, 1), (5, 5), (12, 3), (3, 12), (40, 21), (0, 30), (200, 170)])
def test_mcnemar_exact_is_scipys_two_sided_binomial_test(b, c):
    expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5, alternative="two-sided").pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_paired_bootstrap_matches_a_brute_force_resampling_loop():
    rng = np.random.default_rng(2)
    n = 300
    a = rng.random(n) < 0.6
    b = np.where(rng.random(n) < 0.8, a, ~a) | (rng.random(n) < 0.1)  # correlated with a, a bit better
    res = paired_bootstrap_diff(a, b, n_boot=20000, seed=3)
    assert res.diff == pytest.approx(b.mean() - a.mean())
    assert (res.b, res.c) == (int((a & ~b).sum()), int((~a & b).sum()))
    assert res.p_value == pytest.approx(binomtest(min(res.b, res.c), res.b + res.c, 0.5).pvalue)
    loop = []
    r2 = np.random.default_rng(4)
    for _ in range(4000):  # the literal definition: resample statements, recompute both accuracies
        idx = r2.integers(0, n, n)
        loop.append(b[idx].mean() - a[idx].mean())
    lo, hi = np.quantile(loop, [0.025, 0.975])
    assert res.lo == pytest.approx(lo, abs=0.006) and res.hi == pytest.approx(hi, abs=0.006)
    assert res.lo < res.diff < res.hi
    with pytest.raises(TracingBenchError, match="same statements"):
        paired_bootstrap_diff(a, b[:-1])


def _holm_rejects(p, alpha):
    """Holm's procedure as written in the 1979 paper: step down until the first acceptance."""
    order = np.argsort(p)
    m = len(p)
    rejected = np.zeros(m, bool)
    for k, i in enumerate(order):
        if p[i] <= alpha / (m - k):
            rejected[i] = True
        else:
            break
    return rejected


def test_holm_adjusted_pvalues_reproduce_the_step_down_procedure():
    rng = np.random.default_rng(5)
    for _ in range(50):
        p = np.concatenate([rng.random(6) ** 3, rng.random(4)])
        adj = holm(p)
        assert np.all(adj >= p - 1e-15) and np.all(adj <= 1.0)
        for alpha in (0.01, 0.05, 0.1, 0.2):
            assert np.array_equal(adj <= alpha, _holm_rejects(p, alpha))
    # hand-worked: m = 4, sorted 0.01, 0.02, 0.03, 0.5 -> 0.04, 0.06, 0.06, 0.5
    assert holm([0.03, 0.01, 0.5, 0.02]) == pytest.approx([0.06, 0.04, 0.5, 0.06])
    out = holm([0.01, math.nan, 0.04])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)


def test_diff_interval_and_within_noise():
    d = diff_interval(0.50, 0.02, 0.60, 0.03)
    se = math.sqrt(0.02**2 + 0.03**2)
    assert d.diff == pytest.approx(0.1) and d.se == pytest.approx(se)
    assert (d.lo, d.hi) == pytest.approx((0.1 - 1.959964 * se, 0.1 + 1.959964 * se), abs=1e-6)
    assert not d.within_noise
    assert diff_interval(0.50, 0.05, 0.55, 0.05).within_noise
    assert diff_interval(0.5, None, 0.9, 0.01).within_noise  # unknown error: never claimed
    with pytest.raises(TracingBenchError, match="confidence"):
        wilson_interval(1, 2, confidence=1.5)


def test_pack_bits_round_trip():
    from tracing_bench.files import pack_bits, unpack_bits

    for n in (0, 1, 7, 8, 9, 513):
        bits = np.random.default_rng(n).random(n) < 0.5
        text = pack_bits(bits)
        assert isinstance(text, str) and len(text) <= 4 * ((n + 7) // 8 + 2) // 3 + 4
        assert np.array_equal(unpack_bits(text, n), bits)
    assert list(itertools.islice(unpack_bits(pack_bits([True, False, True]), 3), 3)) == [True, False, True]
