"""nHSIC / estimate_mi against a plain float64 implementation of the released code's formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

from tracing_bench.errors import TracingBenchError
from tracing_bench.probes import estimate_mi, mi_layers, nhsic


def _r_literal(a, sigma=50.0, eps=1e-5):
    """R = Kc (Kc + eps m I)^-1 with Kc = K H, written out as in the released code (float64)."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    m, d = a.shape
    sq = (a * a).sum(1)
    dist = np.abs(sq[:, None] - 2 * a @ a.T + sq[None, :])
    k = np.exp(-dist / (2 * sigma * sigma * d))
    kc = k @ (np.eye(m) - np.ones((m, m)) / m)
    return kc @ np.linalg.inv(kc + eps * m * np.eye(m))


def _nhsic_literal(a, b, sigma=50.0, eps=1e-5):
    return float(np.sum(_r_literal(a, sigma, eps) * _r_literal(b, sigma, eps).T))


def _data(m=120, d=12, layers=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, m)
    x = rng.standard_normal((m, d))
    t = np.stack(
        [
            x @ rng.standard_normal((d, d)) * (k + 1) + (2 * y - 1)[:, None] * k + rng.standard_normal((m, d))
            for k in range(layers)
        ]
    )
    return x, y, t


def test_symmetric_form_equals_literal_algebra():
    """trace(R_A R_B) = trace(P_A P_B), P = Kt (Kt + lam I)^-1, Kt = H K H: the derivation used."""
    x, y, t = _data(m=60, d=5)
    m, lam = 60, 1e-5 * 60
    h = np.eye(m) - np.ones((m, m)) / m

    def p_sym(a):
        a = a.reshape(m, -1)
        sq = (a * a).sum(1)
        k = np.exp(-np.abs(sq[:, None] - 2 * a @ a.T + sq[None, :]) / (2 * 2500 * a.shape[1]))
        kt = h @ k @ h
        return kt @ np.linalg.inv(kt + lam * np.eye(m))

    for a, b in ((x, t[1]), (y.astype(float), t[2])):
        lit = _nhsic_literal(a, b)
        assert np.trace(p_sym(a) @ p_sym(b)) == pytest.approx(lit, rel=1e-9)


@pytest.mark.parametrize("sigma", [50.0, 7.0])
def test_estimate_mi_matches_float64_formula(sigma):
    x, y, t = _data(m=150, d=10, layers=3, seed=1)
    i_xt, i_yt = estimate_mi(x, y, t, sigma=sigma)
    assert isinstance(i_xt, np.ndarray) and i_xt.shape == (3,)
    for k in range(3):
        assert i_xt[k] == pytest.approx(_nhsic_literal(x, t[k], sigma), rel=1e-6)
        assert i_yt[k] == pytest.approx(_nhsic_literal(y, t[k], sigma), rel=1e-6)
    one_x, one_y = estimate_mi(x, y, t[1], sigma=sigma)  # [m, d] -> floats
    assert isinstance(one_x, float) and isinstance(one_y, float)
    assert one_x == pytest.approx(i_xt[1], rel=1e-12) and one_y == pytest.approx(i_yt[1], rel=1e-12)


def test_estimate_mi_random_data_and_torch_input():
    rng = np.random.default_rng(2)
    m = 90
    x, t = rng.standard_normal((m, 4)), rng.standard_normal((2, m, 30)) * 5
    y = rng.integers(0, 2, m)
    i_xt, i_yt = estimate_mi(torch.from_numpy(x).float(), torch.from_numpy(y), torch.from_numpy(t).float())
    for k in range(2):
        tk = torch.from_numpy(t[k]).float().double().numpy()
        xk = torch.from_numpy(x).float().double().numpy()
        assert i_xt[k] == pytest.approx(_nhsic_literal(xk, tk), rel=1e-6)
        assert i_yt[k] == pytest.approx(_nhsic_literal(y, tk), rel=1e-6)


def test_nhsic_general_inputs():
    x, y, t = _data(m=80, d=6, seed=3)
    assert nhsic(x, t[0]) == pytest.approx(_nhsic_literal(x, t[0]), rel=1e-6)
    assert nhsic(t[0], y) == pytest.approx(_nhsic_literal(t[0], y), rel=1e-6)  # either order
    assert nhsic(y, y) == pytest.approx(_nhsic_literal(y, y), rel=1e-6)  # both low rank
    y3 = np.random.default_rng(0).integers(0, 3, 80)  # three classes: rank-2 label kernel
    assert nhsic(y3, t[1]) == pytest.approx(_nhsic_literal(y3, t[1]), rel=1e-6)
    assert nhsic(np.ones(80), t[1]) == pytest.approx(0.0, abs=1e-12)
    dup = np.repeat(x[:40], 2, axis=0)  # duplicated statements: a singular kernel
    assert nhsic(dup, t[0]) == pytest.approx(_nhsic_literal(dup, t[0]), rel=1e-6)


def test_subsample_is_seeded():
    x, y, t = _data(m=200, d=5, layers=2, seed=4)
    a = estimate_mi(x, y, t, subsample=80, seed=3)
    b = estimate_mi(x, y, t, subsample=80, seed=3)
    c = estimate_mi(x, y, t, subsample=80, seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    idx = np.sort(np.random.default_rng(3).choice(200, 80, replace=False))
    assert a[0][1] == pytest.approx(_nhsic_literal(x[idx], t[1][idx]), rel=1e-6)
    full = estimate_mi(x, y, t, subsample=1000)
    np.testing.assert_allclose(full[0], estimate_mi(x, y, t)[0], rtol=1e-12)


def test_mi_layers_rows():
    x, y, t = _data(m=150, d=8, layers=3, seed=5)
    splits = {"probe_train": np.arange(100), "probe_val": np.arange(100, 150)}
    rows = mi_layers(t, y, splits, protocol="paper", sigma=50.0)
    assert [set(r) for r in rows] == [{"layer", "sigma", "m", "i_xt", "i_yt"}] * 3
    tt = torch.from_numpy(t)[:, :100]  # probe-train statistics, ddof 0 (the reference protocol: test_reference.py)
    scaled = ((tt - tt.mean(1, keepdim=True)) / tt.std(1, keepdim=True, correction=0)).numpy()
    assert rows[2]["i_xt"] == pytest.approx(_nhsic_literal(scaled[0], scaled[2]), rel=1e-6)
    assert rows[2]["i_yt"] == pytest.approx(_nhsic_literal(y[:100], scaled[2]), rel=1e-6)
    assert rows[0]["m"] == 100


def test_bad_inputs_raise_one_line():
    x, y, t = _data(m=50, d=4, layers=2)
    bad = t.copy()
    bad[1, 3, 2] = np.nan
    cases = [
        lambda: estimate_mi(x[:-1], y, t),  # rows differ
        lambda: estimate_mi(x, y, t[..., None]),  # 4-D t
        lambda: estimate_mi(x, np.zeros(50), t),  # one class
        lambda: estimate_mi(x, y, bad),  # NaN
        lambda: estimate_mi(x, y, t, sigma=0.0),
        lambda: estimate_mi(x, y, t, eps=-1.0),
        lambda: estimate_mi(x, y, t, subsample=1),
        lambda: nhsic(x, t[0][:10]),
        lambda: nhsic(np.array(["a"] * 50), t[0]),
    ]
    for case in cases:
        with pytest.raises(TracingBenchError) as info:
            case()
        assert "\n" not in str(info.value) and len(str(info.value)) > 20


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_estimate_mi_on_cuda():  # pragma: no cover - exercised where a GPU exists
    x, y, t = _data(m=100, d=6, layers=3, seed=6)
    cpu = estimate_mi(x, y, t)
    gpu = estimate_mi(torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda(), torch.from_numpy(t).cuda())
    np.testing.assert_allclose(gpu[0], cpu[0], rtol=1e-9)
    np.testing.assert_allclose(gpu[1], cpu[1], rtol=1e-9)


def test_device_path_equals_cpu_path(monkeypatch):
    """The batched torch linear algebra (CUDA's path, layers in chunks) gives what the CPU's
    numpy/scipy path gives, and both match the float64 formula."""
    import tracing_bench.probes.kernels as kernels

    x, y, t = _data(m=120, d=9, layers=4, seed=7)
    cpu = estimate_mi(x, y, t)
    monkeypatch.setattr(kernels, "_CPU_LAPACK", False)
    batched = estimate_mi(x, y, t)
    np.testing.assert_allclose(batched[0], cpu[0], rtol=1e-10)
    np.testing.assert_allclose(batched[1], cpu[1], rtol=1e-10)
    assert batched[0][3] == pytest.approx(_nhsic_literal(x, t[3]), rel=1e-6)
    assert nhsic(t[1], t[2]) == pytest.approx(_nhsic_literal(t[1], t[2]), rel=1e-6)


def test_degenerate_layers():
    x, y, t = _data(m=80, d=5, layers=2, seed=8)
    const = np.ones((1, 80, 5))  # a layer that says nothing: its centred kernel is 0, so is nHSIC
    dup = np.repeat(t[:1, :40], 2, axis=1)  # duplicated statements: a singular kernel, still exact
    wide = np.random.default_rng(8).standard_normal((1, 80, 400))  # d > m
    i_xt, i_yt = estimate_mi(x, y, np.concatenate([const, t[:1]]))
    assert i_xt[0] == pytest.approx(0.0, abs=1e-9) and i_yt[0] == pytest.approx(0.0, abs=1e-9)
    assert estimate_mi(x, y, dup[0])[0] == pytest.approx(_nhsic_literal(x, dup[0]), rel=1e-6)
    i_xt, i_yt = estimate_mi(x, y, wide)
    assert i_xt[0] == pytest.approx(_nhsic_literal(x, wide[0]), rel=1e-6)
    assert i_yt[0] == pytest.approx(_nhsic_literal(y, wide[0]), rel=1e-6)


def test_layers_in_threads_equal_one_thread_and_the_formula(monkeypatch):
    """The CPU path's threads (X side and layers side by side, each BLAS call on one thread)
    give the one-thread numbers, both within 1e-9 of the float64 formula, and leave torch's
    and the BLAS libraries' thread counts as they were."""
    import tracing_bench.probes.mi as mi

    x, y, t = _data(m=160, d=20, layers=4, seed=9)
    x, t = x / x.std(0), t / t.std(1, keepdims=True)  # standardised, as mi_layers does
    serial = estimate_mi(x, y, t)
    monkeypatch.setattr(mi, "_PARALLEL_FLOPS", 0)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        blas = {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
        assert mi._workers(160, 20, 4) == 3
        threaded = estimate_mi(x, y, t)
        assert torch.get_num_threads() == 3
        assert {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"} == blas
    finally:
        torch.set_num_threads(before)
    np.testing.assert_allclose(threaded[0], serial[0], rtol=1e-12)
    np.testing.assert_allclose(threaded[1], serial[1], rtol=1e-12)
    for k in range(4):
        assert threaded[0][k] == pytest.approx(_nhsic_literal(x, t[k]), rel=1e-9)
        assert threaded[1][k] == pytest.approx(_nhsic_literal(y, t[k]), rel=1e-9)


@pytest.mark.parametrize("rows", [64, 256])
def test_cpu_kernel_lower_triangle_by_blocks(monkeypatch, rows):
    """The CPU builds only the lower triangle of H K H + lam I, by row blocks; it equals the
    float64 formula there, and B z (a symmetric product reading that triangle) is exact."""
    import tracing_bench.probes.kernels as kernels

    monkeypatch.setattr(kernels, "_ROWS", rows)
    x = _data(m=300, d=7, seed=10)[2][1]
    m, lam = 300, 1e-5 * 300
    sq = (x * x).sum(1)
    k = np.exp(-np.abs(sq[:, None] - 2 * x @ x.T + sq[None, :]) / (2 * 2500 * 7))
    h = np.eye(m) - np.ones((m, m)) / m
    want = h @ k @ h + lam * np.eye(m)
    b = kernels.regularised_centred_kernel(torch.from_numpy(x).unsqueeze(0), 50.0, lam)
    np.testing.assert_allclose(np.tril(b[0].numpy()), np.tril(want), rtol=0, atol=1e-14)
    z = torch.from_numpy(np.random.default_rng(1).standard_normal((1, m, 2)))
    np.testing.assert_allclose(kernels._sym_product(b, z)[0].numpy(), want @ z[0].numpy(), rtol=0, atol=1e-12)


def test_lapack_calls_against_numpy():
    """probes.lapack (OpenBLAS through scipy's Cython pointers, without the GIL): the Cholesky
    factor reads only the lower triangle, its inverse and a solve on a sub-block match numpy."""
    import scipy.linalg

    from tracing_bench.probes import lapack

    rng = np.random.default_rng(11)
    m = 130
    a = rng.standard_normal((m, m))
    spd = a @ a.T / m + np.eye(m)
    noisy_upper = np.tril(spd) + np.triu(rng.standard_normal((m, m)), 1)
    chol, ok = lapack.cholesky_lower(noisy_upper)
    assert ok
    np.testing.assert_allclose(chol, np.linalg.cholesky(spd), rtol=0, atol=1e-13)
    inv, info = lapack.cholesky_inverse_lower(chol)
    assert info == 0
    np.testing.assert_allclose(np.tril(inv), np.tril(np.linalg.inv(spd)), rtol=0, atol=1e-12)
    rhs = rng.standard_normal((m, 7))
    got = lapack.solve_lower(chol[40:, 40:], rhs[40:])  # a view with the parent's row stride
    np.testing.assert_allclose(got, scipy.linalg.solve_triangular(chol[40:, 40:], rhs[40:], lower=True), atol=1e-12)
    not_pd = np.eye(m)
    not_pd[3, 3] = -1.0
    assert lapack.cholesky_lower(not_pd)[1] is False
