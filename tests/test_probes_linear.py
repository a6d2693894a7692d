"""Linear probes: scikit-learn's estimator checks, parity with LogisticRegression, protocols, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_info

from tracing_bench.errors import TracingBenchError
from tracing_bench.probes import LinearProbe, MassMeanProbe, fit_logistic, probe_layers


# The whole check suite applies; LinearProbe and MassMeanProbe are binary-only, which they
# declare through the `classifier_tags.multi_class = False` tag, so scikit-learn skips the
# multi-class checks itself and runs check_classifiers_one_label/-train on binary data.
@parametrize_with_checks([LinearProbe(), MassMeanProbe(), MassMeanProbe(threshold="logistic")])
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def _layers(n_layers=4, n=300, d=20, seed=0, signal=0.8):
    """Structured synthetic activations [layers, n, d] (float64) and balanced labels."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 2)
    base = rng.standard_normal((n, 5)) @ rng.standard_normal((5, d)) + rng.standard_normal((n, d))
    acts = np.stack(
        [
            base * (1 + 0.3 * k)
            + signal * (k + 1) / n_layers * np.outer(2 * y - 1, rng.standard_normal(d))
            + 3.0 * rng.standard_normal(d)
            for k in range(n_layers)
        ]
    )
    return acts, y


def _paper_splits(n, seed=0):
    perm = np.random.default_rng(seed).permutation(n)
    test, dev = perm[: n // 2], perm[n // 2 :]
    k = len(dev) // 5
    return {
        "test": np.sort(test),
        "probe_val": np.sort(dev[:k]),
        "probe_train": np.sort(dev[k:]),
        "dev": np.sort(dev),
        "all": np.arange(n),
    }


def _ref_splits(n):
    cut = int(0.8 * n)
    return {"probe_train": np.arange(cut), "probe_val": np.arange(cut, n), "all": np.arange(n)}


@pytest.mark.parametrize("d", [20, 400])  # d < n and d >= n
def test_batched_solver_matches_sklearn(d):
    acts, y = _layers(n_layers=3, n=250, d=d, seed=1)
    acts = (acts - acts.mean(1, keepdims=True)) / acts.std(1, keepdims=True)
    fit = fit_logistic(torch.from_numpy(acts), torch.from_numpy(y), C=0.5, tol=1e-9)
    assert bool(fit.converged.all())
    for k in range(acts.shape[0]):
        ref = LogisticRegression(C=0.5, tol=1e-10, max_iter=20000).fit(acts[k], y)
        scale = np.abs(ref.coef_).max()
        assert np.abs(fit.coef[k].numpy() - ref.coef_[0]).max() <= 1e-4 * scale
        assert abs(fit.intercept[k].item() - ref.intercept_[0]) <= 1e-4 * max(1.0, scale)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n, d", [(240, 30), (120, 300)])  # n > d and n < d (separable: weights grow)
def test_solver_float32_and_float64_against_sklearn(dtype, n, d):
    acts, y = _layers(n_layers=3, n=n, d=d, seed=7)
    acts = (acts - acts.mean(1, keepdims=True)) / acts.std(1, keepdims=True)
    x = torch.from_numpy(acts).to(dtype)
    fit = fit_logistic(x, torch.from_numpy(y), tol=1e-9 if dtype == torch.float64 else 1e-6)
    assert bool(fit.converged.all()) and fit.coef.dtype == torch.float64
    for k in range(3):
        xk = x[k].double().numpy()  # the same (rounded) data for scikit-learn
        ref = LogisticRegression(tol=1e-10, max_iter=20000).fit(xk, y)
        scale = np.abs(ref.coef_).max()
        rel = 1e-5 if dtype == torch.float64 else 1e-3  # float32 products: about 1e-7 per entry
        assert np.abs(fit.coef[k].numpy() - ref.coef_[0]).max() <= rel * scale
        assert abs(fit.intercept[k].item() - ref.intercept_[0]) <= rel * max(1.0, scale)
        ours = xk @ fit.coef[k].numpy() + fit.intercept[k].item()
        assert ((ours > 0) != (ref.decision_function(xk) > 0)).sum() <= 1


def test_device_path_equals_cpu_loop(monkeypatch):
    """The batched torch products (CUDA's path) give what the CPU's numpy loop gives."""
    import tracing_bench.probes.solver as solver

    acts, y = _layers(n_layers=4, n=300, d=40, seed=8)
    splits = _paper_splits(300)
    loop = probe_layers(acts, y, splits, tol=1e-9)
    monkeypatch.setattr(solver, "_CPU_LOOP", False)
    batched = probe_layers(acts, y, splits, tol=1e-9)
    for a, b in zip(loop, batched, strict=False):
        assert a == pytest.approx(b, abs=1e-9)
    fit = fit_logistic(torch.from_numpy(acts), torch.from_numpy(y), tol=1e-9)
    monkeypatch.setattr(solver, "_CPU_LOOP", True)
    ref = fit_logistic(torch.from_numpy(acts), torch.from_numpy(y), tol=1e-9)
    torch.testing.assert_close(fit.coef, ref.coef, rtol=1e-6, atol=1e-8)


def test_degenerate_problems():
    rng = np.random.default_rng(9)
    y = np.arange(60) % 2
    base = rng.standard_normal((60, 5))
    cases = {
        "constant and zero features": np.concatenate([base, np.zeros((60, 2)), np.ones((60, 1))], 1),
        "one feature": base[:, :1],
        "duplicated rows": np.repeat(base[:30], 2, axis=0),
        "separable": np.concatenate([(2 * y - 1)[:, None] * 3.0, base], 1),
        "no signal (all rows equal)": np.ones((60, 3)),
    }
    for name, x in cases.items():
        fit = fit_logistic(torch.from_numpy(x)[None], torch.from_numpy(y), tol=1e-9)
        ref = LogisticRegression(tol=1e-12, max_iter=20000).fit(x, y)
        assert bool(fit.converged.all()), name
        np.testing.assert_allclose(fit.coef[0].numpy(), ref.coef_[0], atol=1e-6, err_msg=name)
        assert fit.intercept[0].item() == pytest.approx(ref.intercept_[0], abs=1e-6), name
    no_icpt = fit_logistic(torch.from_numpy(base)[None], torch.from_numpy(y), fit_intercept=False, tol=1e-9)
    ref = LogisticRegression(fit_intercept=False, tol=1e-12, max_iter=20000).fit(base, y)
    np.testing.assert_allclose(no_icpt.coef[0].numpy(), ref.coef_[0], atol=1e-6)
    assert no_icpt.intercept[0].item() == 0.0
    bad = torch.from_numpy(base)[None].clone()
    bad[0, 3, 1] = float("nan")
    for kwargs in ({"history": 0}, {"max_iter": 0}, {"tol": -1.0}, {"C": 0.0}):
        with pytest.raises(TracingBenchError):
            fit_logistic(torch.from_numpy(base)[None], torch.from_numpy(y), **kwargs)
    with pytest.raises(TracingBenchError, match="NaN"):
        fit_logistic(bad, torch.from_numpy(y))


def test_warm_start():
    acts, y = _layers(n_layers=2, n=200, d=15, seed=10)
    x, yy = torch.from_numpy(acts), torch.from_numpy(y)
    cold = fit_logistic(x, yy, tol=1e-8)
    warm = fit_logistic(x, yy, tol=1e-8, init=cold)  # from the solution: nothing left to do
    assert int(warm.n_iter.max()) <= 1
    torch.testing.assert_close(warm.coef, cold.coef, rtol=1e-5, atol=1e-7)
    from tracing_bench.probes.solver import LogisticFit

    one = LogisticFit(
        coef=-5 * cold.coef[:1], intercept=cold.intercept[:1], n_iter=cold.n_iter, converged=cold.converged
    )
    bad_start = fit_logistic(x, yy, tol=1e-8, init=one)  # a poor start is scaled away (a >= 0)
    torch.testing.assert_close(bad_start.coef, cold.coef, rtol=1e-4, atol=1e-6)
    with pytest.raises(TracingBenchError, match="init"):
        fit_logistic(
            x,
            yy,
            init=LogisticFit(
                coef=cold.coef[:, :3], intercept=cold.intercept, n_iter=cold.n_iter, converged=cold.converged
            ),
        )


def test_short_memory_wraps_the_ring_to_the_same_optimum():
    acts, y = _layers(n_layers=2, n=150, d=25, seed=11)
    x, yy = torch.from_numpy(acts), torch.from_numpy(y)
    short = fit_logistic(x, yy, history=3, tol=1e-9)  # the ring of pairs wraps many times
    long = fit_logistic(x, yy, history=40, tol=1e-9)
    assert bool(short.converged.all()) and int(short.n_iter.min()) > 3
    torch.testing.assert_close(short.coef, long.coef, rtol=1e-5, atol=1e-7)


def test_linear_probe_equals_logistic_regression():
    acts, y = _layers(n_layers=1, n=200, d=8, seed=2)
    x = acts[0]
    ours = LinearProbe(C=2.0, tol=1e-10).fit(x, y)
    ref = LogisticRegression(C=2.0, tol=1e-10, max_iter=10000).fit(x, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours.predict_proba(x), ref.predict_proba(x), atol=1e-6)
    assert (ours.predict(x) == ref.predict(x)).all()
    assert ours.score(x, y) == ref.score(x, y)
    labels = np.where(y == 1, "true", "false")  # any two labels, classes_ sorted as in sklearn
    named = LinearProbe(C=2.0, tol=1e-10).fit(x, labels)
    assert list(named.classes_) == ["false", "true"]
    assert (named.predict(x) == np.where(ref.predict(x) == 1, "true", "false")).all()


def _sklearn_rows(acts, y, splits, protocol):
    rows = []
    tr = splits["probe_train"]
    names = ("probe_val", "test") if protocol == "paper" else ("probe_val", "probe_val")
    for k in range(acts.shape[0]):
        x = acts[k]
        mu, sd = (x[tr].mean(0), x[tr].std(0)) if protocol == "paper" else (x.mean(0), x.std(0, ddof=1))
        x = (x - mu) / sd
        clf = LogisticRegression(tol=1e-10, max_iter=10000).fit(x[tr], y[tr])
        vals = []
        for name in names:
            idx = splits[name]
            vals += [clf.score(x[idx], y[idx]), roc_auc_score(y[idx], clf.decision_function(x[idx]))]
        rows.append(vals)
    return np.array(rows)


@pytest.mark.parametrize("protocol", ["paper", "reference"])
def test_probe_layers_matches_per_layer_sklearn(protocol):
    acts, y = _layers(n_layers=5, n=400, d=30, seed=3)
    splits = _paper_splits(400) if protocol == "paper" else _ref_splits(400)
    rows = probe_layers(acts.astype(np.float32), y, splits, protocol=protocol, tol=1e-7)
    assert [(r["layer"], r["probe"]) for r in rows] == [(k, p) for k in range(5) for p in ("logistic", "mass_mean")]
    common = {"layer", "probe", "n_train", "val_acc", "val_auroc", "test_acc", "test_auroc"}
    assert set(rows[0]) == common | ({"n_iter", "converged", "constant_features"} if protocol == "reference" else set())
    assert all(r["n_train"] == len(splits["probe_train"]) for r in rows)
    ours = np.array(
        [[r["val_acc"], r["val_auroc"], r["test_acc"], r["test_auroc"]] for r in rows if r["probe"] == "logistic"]
    )
    ref = _sklearn_rows(acts, y, splits, protocol)
    n_eval = len(splits["test" if protocol == "paper" else "probe_val"])
    assert np.abs(ours[:, [0, 2]] - ref[:, [0, 2]]).max() <= 1.0 / n_eval + 1e-12  # at most 1 statement
    assert np.abs(ours[:, [1, 3]] - ref[:, [1, 3]]).max() <= 2e-3
    if protocol == "reference":
        np.testing.assert_array_equal(ours[:, 0], ours[:, 2])


def test_reference_protocol_matches_released_code_literally():
    """The released train_probes.py: whole-file centring + torch.std scaling, first 80 % / last 20 %,
    LogisticRegression() with its defaults (max_iter=100): the same accuracies, exactly."""
    acts, y = _layers(n_layers=3, n=300, d=16, seed=4)
    t = torch.from_numpy(acts.astype(np.float32))
    n_train = int(t.shape[1] * 0.8)
    accs = []
    for k in range(t.shape[0]):  # load_acts(center=True, scale=True), then LogisticRegression()
        a = t[k] - torch.mean(t[k], dim=0)
        a = a / torch.std(a, dim=0)
        probe = LogisticRegression().fit(a[:n_train].numpy(), y[:n_train].astype(np.float32))
        accs.append(float((probe.predict(a[n_train:].numpy()) == y[n_train:]).mean()))
    splits = {"probe_train": np.arange(n_train), "probe_val": np.arange(n_train, 300)}
    rows = probe_layers(t, y, splits, protocol="reference", probes=("logistic",))
    assert [r["test_acc"] for r in rows] == accs


def test_mass_mean_probe():
    acts, y = _layers(n_layers=2, n=300, d=10, seed=5)
    x = acts[1]
    est = MassMeanProbe().fit(x, y)
    mu1, mu0 = x[y == 1].mean(0), x[y == 0].mean(0)
    np.testing.assert_allclose(est.direction_, mu1 - mu0)
    assert est.decision_function(((mu1 + mu0) / 2)[None])[0] == pytest.approx(0.0, abs=1e-9)
    splits = _paper_splits(300)
    rows = [r for r in probe_layers(acts, y, splits) if r["probe"] == "mass_mean"]
    tr = splits["probe_train"]
    for k, row in enumerate(rows):  # batched mass-mean == the estimator on standardised data
        xk = acts[k]
        xs = (xk - xk[tr].mean(0)) / xk[tr].std(0)
        est = MassMeanProbe().fit(xs[tr], y[tr])
        assert row["test_acc"] == pytest.approx(est.score(xs[splits["test"]], y[splits["test"]]))
    calibrated = MassMeanProbe(threshold="logistic").fit(x, y)
    assert calibrated.score(x, y) >= 0.5


def _with_nan(acts, layer, row, value=np.nan):
    out = acts.copy()
    out[layer, row, 1] = value
    return out


def test_bad_inputs_raise_one_line():
    acts, y = _layers(n_layers=2, n=100, d=5)
    sp = _paper_splits(100)
    cases = [
        (acts[0], y, sp, {}),  # 2-D acts
        (acts, y[:-1], sp, {}),  # label count mismatch
        (acts, np.where(y == 1, 2, 0), sp, {}),  # labels not 0/1
        (acts, np.zeros_like(y), sp, {}),  # one class
        (np.where(np.arange(5) == 2, np.nan, acts), y, sp, {}),  # NaN
        (_with_nan(acts, 1, sp["test"][3]), y, sp, {}),  # NaN in one test statement only
        (_with_nan(acts, 0, sp["probe_train"][0], np.inf), y, sp, {}),  # inf in training
        (acts, y, {"probe_train": sp["probe_train"]}, {}),  # missing split
        (acts, y, {**sp, "test": np.array([0, 100])}, {}),  # index out of range
        (acts, y, sp, {"protocol": "papers"}),
        (acts, y, sp, {"probes": ("svm",)}),
        (acts, y, sp, {"C": -1.0}),
    ]
    for a, labels, splits, kw in cases:
        with pytest.raises(TracingBenchError) as info:
            probe_layers(a, labels, splits, **kw)
        msg = str(info.value)
        assert "\n" not in msg and len(msg) > 20
    with pytest.raises(TracingBenchError, match="class"):
        LinearProbe().fit(acts[0], np.zeros(100))


def test_probe_layers_keeps_dtype_and_device():
    acts, y = _layers(n_layers=2, n=120, d=6)
    sp = _paper_splits(120)
    r64 = probe_layers(torch.from_numpy(acts), y, sp, tol=1e-8)
    r32 = probe_layers(torch.from_numpy(acts).float(), y, sp, tol=1e-8)
    rbf = probe_layers(torch.from_numpy(acts).bfloat16(), y, sp)
    assert [r["test_acc"] for r in r64] == pytest.approx([r["test_acc"] for r in r32], abs=1 / 60 + 1e-12)
    assert len(rbf) == 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_probe_layers_on_cuda():  # pragma: no cover - exercised where a GPU exists
    acts, y = _layers(n_layers=3, n=200, d=12)
    sp = _paper_splits(200)
    cpu = probe_layers(torch.from_numpy(acts), y, sp, tol=1e-8)
    gpu = probe_layers(torch.from_numpy(acts).cuda(), y, sp, tol=1e-8)
    assert [r["test_acc"] for r in gpu] == pytest.approx([r["test_acc"] for r in cpu], abs=1e-9)


def test_probe_layers_details_are_the_mass_mean_probe_computed_by_hand():
    """details=True: per-statement correctness, Wilson and DeLong intervals, checked with numpy and scipy."""
    from scipy.stats import binomtest

    acts, y = _layers(n_layers=3, n=240, d=10, seed=7, signal=0.4)
    sp = _paper_splits(240)
    rows = probe_layers(acts, y, sp, details=True)
    plain = probe_layers(acts, y, sp)
    assert [{k: r[k] for k in p} for r, p in zip(rows, plain, strict=False)] == plain  # same numbers, more keys
    tr, te = sp["probe_train"], sp["test"]
    for r in rows:
        assert r["n_test"] == len(te) and r["test_correct"].dtype == bool and r["test_correct"].shape == (len(te),)
        assert r["test_acc"] == pytest.approx(r["test_correct"].mean(), abs=1e-12)
        ci = binomtest(int(r["test_correct"].sum()), len(te)).proportion_ci(method="wilson")
        assert (r["test_acc_lo"], r["test_acc_hi"]) == pytest.approx((ci.low, ci.high), abs=1e-12)
        assert r["test_auroc_lo"] <= r["test_auroc"] <= r["test_auroc_hi"]
        if r["probe"] == "mass_mean":  # the probe by hand: probe-train scaling, class means, midpoint
            x = acts[r["layer"]]
            x = (x - x[tr].mean(0)) / x[tr].std(0)
            mu1, mu0 = x[tr][y[tr] == 1].mean(0), x[tr][y[tr] == 0].mean(0)
            w = mu1 - mu0
            pred = (x[te] @ w - w @ (mu1 + mu0) / 2) > 0
            np.testing.assert_array_equal(r["test_correct"], pred == (y[te] == 1))
    ref = probe_layers(acts, y, _ref_splits(240), protocol="reference", details=True)
    assert ref[0]["n_test"] == len(_ref_splits(240)["probe_val"])  # reference: probe_val is the test split
    for r in ref:  # scikit-learn's own predictions give the correctness bits and the accuracy
        assert r["test_acc"] == pytest.approx(r["test_correct"].mean(), abs=1e-12)
        assert r["test_acc_lo"] <= r["test_acc"] <= r["test_acc_hi"]


def test_cpu_fit_runs_each_call_on_one_thread(monkeypatch):
    """On the CPU the solver's library calls run on one thread (BLAS and torch), and the
    caller's thread counts come back afterwards; the fit still matches scikit-learn."""
    import tracing_bench.probes.solver as solver

    seen = []
    real = solver.lbfgs

    def spy(*args, **kwargs):
        seen.append(({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}, torch.get_num_threads()))
        return real(*args, **kwargs)

    monkeypatch.setattr(solver, "lbfgs", spy)
    x, y = _layers(n_layers=2, n=200, d=10)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        blas = {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
        fit = fit_logistic(torch.from_numpy(x), torch.from_numpy(y))
        assert seen == [({1}, 1)]
        assert torch.get_num_threads() == 2
        assert {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"} == blas
    finally:
        torch.set_num_threads(before)
    ref = LogisticRegression().fit(x[1], y)
    np.testing.assert_allclose(fit.coef[1].numpy(), ref.coef_[0], rtol=1e-3, atol=1e-3)
