"""Mutual-information probes: the released code's normalised HSIC (nHSIC), computed well.

The estimator (docs/METHOD.md, "Mutual information"): for A of shape [m, d] (a vector is [m, 1]),

    K_ij = exp(-||a_i - a_j||^2 / (2 sigma^2 d)),   Kc = K H,   H = I - 11^T / m,
    R = Kc (Kc + eps m I)^-1,                         nHSIC(A, B) = trace(R_A R_B),

and I(X;T) = nHSIC(X, T), I(Y;T) = nHSIC(Y, T) with X the layer-0 activations, Y the labels and
T the layer-l activations. The released code inverts four m x m matrices per layer in float32
and rebuilds the layer-0 kernel for every layer. Here the same number is computed in float64
with Cholesky factors (:mod:`tracing_bench.probes.kernels` has the algebra), the X and Y kernels
factored once per call (so once for all the layers of a checkpoint's dimension in
:func:`mi_layers`), one Cholesky factor per layer. On the CPU the X side and the layers run
side by side in torch's thread count of Python threads, each library call on one thread (whole
layers need no synchronisation; a layer's products are too small for OpenBLAS's own threads).
bench/bench_mi.py times every stage against its flops.

>>> i_xt, i_yt = estimate_mi(acts[0, train], labels[train], acts[:, train])   # arrays over layers
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tracing_bench.errors import TracingBenchError
from tracing_bench.probes.inputs import (
    check_finite,
    layer_names,
    one_thread_per_call,
    prepare_inputs,
    standardise,
    subsample_rows,
)
from tracing_bench.probes.kernels import (
    Dense,
    LowRank,
    cholesky,
    cross,
    factor,
    gaussian_kernel,
    lapack_on,
    low_low,
    regularised_centred_kernel,
)
from tracing_bench.probes.reference import reference_mi_layers

__all__ = ["estimate_mi", "gaussian_kernel", "mi_layers", "nhsic"]

# layers per batched chunk on CUDA: keep about this many bytes of m x m float64 work buffers
_CUDA_CHUNK_BYTES = 2 * 1024**3
# CPU: layers run in parallel threads while their m x m work buffers stay within this many bytes
_CPU_WORKER_BYTES = 2 * 1024**3
# CPU: a layer of fewer flops (m^2 (m / 3 + d), its Cholesky factor and Gram matrix) runs in the
# calling thread; a thread and the switch of the BLAS thread count cost about a millisecond
_PARALLEL_FLOPS = 5e7


def _as_tensor(a: Any, name: str, device: torch.device | None = None, keep_float32: bool = False) -> Tensor:
    """float64 tensor on `device` (or a's own device); complain about non-numeric or NaN input.

    With ``keep_float32`` float32 stays float32 (the layers: converted one at a time later)."""
    if isinstance(a, Tensor):
        t = a.detach()
        if device is not None:
            t = t.to(device)
    else:
        try:
            arr = np.asarray(a)
        except Exception as e:  # ragged lists and the like
            raise TracingBenchError(
                f"{name} could not be read as an array ({e}); pass a numpy array or a torch tensor"
            ) from None
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise TracingBenchError(
                f"{name} has dtype {arr.dtype}; pass numbers (a float or int numpy array or tensor)"
            )
        if np.iscomplexobj(arr):
            raise TracingBenchError(f"{name} is complex; pass real numbers")
        t = torch.from_numpy(np.ascontiguousarray(arr))
        if device is not None:
            t = t.to(device)
    if t.is_complex():
        raise TracingBenchError(f"{name} is complex; pass real numbers")
    if not (keep_float32 and t.dtype == torch.float32):
        t = t.to(torch.float64)
    if t.numel() and not bool(torch.isfinite(t).all()):
        n_bad = int((~torch.isfinite(t)).sum())
        raise TracingBenchError(f"{name} has {n_bad} NaN or infinite values; drop or repair those statements first")
    return t


def _check_hyper(sigma: float, eps: float) -> None:
    if not (np.isfinite(sigma) and sigma > 0):
        raise TracingBenchError(f"sigma={sigma!r}: the kernel width must be a positive number (the paper uses 50-400)")
    if not (np.isfinite(eps) and eps > 0):
        raise TracingBenchError(f"eps={eps!r}: the ridge must be a positive number (the released code uses 1e-5)")


def _as_2d(a: Tensor, name: str) -> Tensor:
    if a.ndim == 1:
        return a.unsqueeze(1)
    if a.ndim != 2:
        raise TracingBenchError(f"{name} has shape {tuple(a.shape)}; expected [m] or [m, d] (one row per statement)")
    return a


def nhsic(a: Any, b: Any, *, sigma: float = 50.0, eps: float = 1e-5) -> float:
    """Normalised HSIC of the released code, ``trace(R_A R_B)``, in float64.

    Args:
        a: [m] or [m, d] array or tensor.
        b: [m] or [m, d'] array or tensor (same m).
        sigma: Gaussian kernel width (the squared distance is divided by ``2 sigma^2 d``).
        eps: ridge; the released code uses ``eps * m``.

    Returns:
        nHSIC(a, b) as a float (0 if either input is constant).

    >>> nhsic(np.random.randn(100, 8), np.random.randint(0, 2, 100))  # doctest: +SKIP
    """
    _check_hyper(sigma, eps)
    ta = _as_2d(_as_tensor(a, "a"), "a")
    dev = ta.device
    tb = _as_2d(_as_tensor(b, "b", device=dev), "b")
    if ta.shape[0] != tb.shape[0]:
        raise TracingBenchError(f"a has {ta.shape[0]} rows but b has {tb.shape[0]}; both need one row per statement")
    m = ta.shape[0]
    if m < 2:
        raise TracingBenchError(f"nHSIC needs at least 2 rows, got {m}; pass more statements")
    lam = eps * m
    fa = factor(ta, sigma, lam, eps, "a")
    fb = factor(tb, sigma, lam, eps, "b")
    if isinstance(fa, LowRank) and isinstance(fb, LowRank):
        return float(low_low(fa, fb))
    if isinstance(fb, Dense):
        val = cross(fa, fb.b.unsqueeze(0), fb.chol.unsqueeze(0), lam)
    else:
        assert isinstance(fa, Dense)  # narrowed for mypy; both branches above cover the rest
        val = cross(fb, fa.b.unsqueeze(0), fa.chol.unsqueeze(0), lam)
    return float(val[0])


def _chunk_size(m: int, device: torch.device, n_layers: int) -> int:
    per_layer = 6 * m * m * 8
    return int(max(1, min(n_layers, _CUDA_CHUNK_BYTES // per_layer)))


def _workers(m: int, d: int, n_layers: int) -> int:
    """CPU threads for the layers: torch's thread count, one per layer (+ the X side) at most,
    as memory allows, and one where a layer is too small to pay for a thread."""
    if m * m * (m / 3 + d) < _PARALLEL_FLOPS:
        return 1
    by_memory = _CPU_WORKER_BYTES // (4 * m * m * 8)
    return int(max(1, min(torch.get_num_threads(), n_layers + 1, by_memory)))


def _cpu_layers(tx: Tensor, fy: LowRank | Dense, tt: Tensor, sigma: float, lam: float, eps: float) -> tuple[Any, Any]:
    """I(X;T), I(Y;T) for every layer on the CPU: each layer whole in one thread (BLAS at one thread).

    With several threads the X side and the layers run side by side, one layer per thread,
    each call to OpenBLAS on one thread: a layer's products are too small for OpenBLAS's own
    threads to pay (they wait for each other at every step, and far longer when other jobs
    hold a core), while whole layers need no synchronisation. The first layers start while
    the X side is factored; their I(X;T) waits for it.
    """
    n_layers, m, d = tt.shape
    workers = _workers(m, d, n_layers)

    def x_side() -> LowRank | Dense:
        return factor(tx, sigma, lam, eps, "x")

    def layer(i: int, fx: Callable[[], LowRank | Dense]) -> tuple[float, float]:
        b = regularised_centred_kernel(tt[i].to(torch.float64).unsqueeze(0), sigma, lam)
        chol = cholesky(b, f"t (layer {i})", eps)
        i_yt = float(cross(fy, b, chol, lam)[0])
        return float(cross(fx(), b, chol, lam)[0]), i_yt

    if workers == 1:
        fx = x_side()
        rows = [layer(i, lambda: fx) for i in range(n_layers)]
    else:
        with one_thread_per_call(), ThreadPoolExecutor(workers) as pool:
            try:
                fx_future = pool.submit(x_side)  # first in the queue: no layer waits on an unstarted task
                futures = [pool.submit(layer, i, fx_future.result) for i in range(n_layers)]
                fx_future.result()  # its error first, as in one thread
                rows = [f.result() for f in futures]
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    out = np.array(rows, dtype=np.float64).reshape(n_layers, 2)
    return out[:, 0].copy(), out[:, 1].copy()


def estimate_mi(
    x: Any,
    y: Any,
    t: Any,
    *,
    sigma: float = 50.0,
    eps: float = 1e-5,
    subsample: int | None = None,
    seed: int = 0,
) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """I(X;T) and I(Y;T) by the released code's normalised HSIC, in float64.

    The X and Y kernels are factored once per call; each layer of ``t`` costs one Gram matrix,
    one Cholesky factor and one triangular solve (see the module docstring). Computation runs
    on ``t``'s device when it is a tensor (CUDA included), else on the CPU.

    Args:
        x: [m, d_x] layer-0 activations (a vector is [m, 1]).
        y: [m] labels (or [m, k] codes); must take at least two distinct values.
        t: [m, d] activations of one layer, or [layers, m, d] for several.
        sigma: Gaussian kernel width (the paper grid-searches 50-400; the released code uses 50).
        eps: ridge of the normalisation, ``(Kc + eps m I)^-1``.
        subsample: if set and smaller than m, use this many statements drawn without
            replacement (the same ones for x, y and t), seeded by ``seed``.
        seed: seed of the subsample.

    Returns:
        ``(i_xt, i_yt)``: floats for 2-D ``t``, numpy float64 arrays of length ``layers`` for 3-D.

    Raises:
        TracingBenchError: mismatched shapes, NaN/inf, one-class ``y``, bad sigma/eps/subsample.
    """
    _check_hyper(sigma, eps)
    device = t.device if isinstance(t, Tensor) else None
    tt = _as_tensor(t, "t", device=device, keep_float32=True)
    single = tt.ndim == 2
    if single:
        tt = tt.unsqueeze(0)
    if tt.ndim != 3:
        raise TracingBenchError(f"t has shape {tuple(tt.shape)}; expected [m, d] (one layer) or [layers, m, d]")
    dev = tt.device
    tx = _as_2d(_as_tensor(x, "x", device=dev), "x")
    ty = _as_2d(_as_tensor(y, "y", device=dev), "y")
    m = tt.shape[1]
    if tx.shape[0] != m or ty.shape[0] != m:
        raise TracingBenchError(
            f"x has {tx.shape[0]} rows, y {ty.shape[0]} and t {m} statements; all three must "
            "describe the same statements in the same order"
        )
    if tt.shape[0] == 0 or tt.shape[2] == 0 or tx.shape[1] == 0:
        raise TracingBenchError(
            f"t has shape {tuple(tt.shape)} and x {tuple(tx.shape)}; need at least one layer and one feature"
        )
    pick = subsample_rows(m, subsample, seed)
    if pick is not None:
        idx = torch.from_numpy(pick).to(dev)
        tx, ty, tt = tx[idx], ty[idx], tt[:, idx]
        m = len(pick)
    if m < 2:
        raise TracingBenchError(f"MI needs at least 2 statements, got {m}")
    if torch.unique(ty, dim=0).shape[0] < 2:
        raise TracingBenchError(
            f"y has a single class over the {m} statements; I(Y;T) needs both labels (check the split and the labels)"
        )
    lam = eps * m
    fy = factor(ty, sigma, lam, eps, "y")
    n_layers = tt.shape[0]
    if lapack_on(dev):
        out_x, out_y = _cpu_layers(tx, fy, tt, sigma, lam, eps)
    else:
        fx = factor(tx, sigma, lam, eps, "x")
        i_xt = torch.empty(n_layers, dtype=torch.float64, device=dev)
        i_yt = torch.empty(n_layers, dtype=torch.float64, device=dev)
        step = _chunk_size(m, dev, n_layers)
        for lo in range(0, n_layers, step):
            hi = min(n_layers, lo + step)
            b = regularised_centred_kernel(tt[lo:hi].to(torch.float64), sigma, lam)
            chol = cholesky(b, f"t (layers {lo}-{hi - 1})", eps)
            i_xt[lo:hi] = cross(fx, b, chol, lam)
            i_yt[lo:hi] = cross(fy, b, chol, lam)
            del b, chol
        out_x, out_y = i_xt.cpu().numpy(), i_yt.cpu().numpy()
    if single:
        return float(out_x[0]), float(out_y[0])
    return out_x, out_y


def mi_layers(
    acts: Any,
    labels: Any,
    splits: dict[str, np.ndarray],
    *,
    protocol: str = "paper",
    split: str = "probe_train",
    x_layer: int = 0,
    layers: list[int] | None = None,
    sigma: float = 50.0,
    eps: float = 1e-5,
    subsample: int | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """I(X;T), I(Y;T) for every layer of a checkpoint: the mi.csv columns this module owns.

    X = ``acts[x_layer]``, Y = labels, T = each layer, all on ``split``, after standardising
    every feature with the statistics of ``split`` (``paper``; constant features are left
    unscaled), in float64. ``reference`` is handed to
    :func:`tracing_bench.probes.reference.reference_mi_layers`: whole-file float32 scaling and
    the released formula in float32, as the released code computes it (rows also carry
    ``constant_features``).

    Args:
        acts: [layers, statements, hidden] activations (``acts[0]`` is block 0).
        labels: [statements] 0/1 labels.
        splits: ``DimensionData.splits``.
        protocol: ``paper`` or ``reference``.
        split: which split's statements to use (the released code: the probe-train 80 %).
        x_layer: index into ``acts`` of X.
        layers: layer numbers to write in the rows (default ``range(layers)``).
        sigma, eps, subsample, seed: as in :func:`estimate_mi`.

    Returns:
        one dict per layer: ``layer``, ``sigma``, ``m``, ``i_xt``, ``i_yt``.
    """
    if protocol == "reference":  # the released float32 computation (probes/reference.py)
        return reference_mi_layers(
            acts,
            labels,
            splits,
            split=split,
            x_layer=x_layer,
            layers=layers,
            sigma=sigma,
            eps=eps,
            subsample=subsample,
            seed=seed,
        )
    t, y, idx = prepare_inputs(acts, labels, splits, protocol, needed=(split,))
    check_finite(t)
    if not 0 <= x_layer < t.shape[0]:
        raise TracingBenchError(f"x_layer={x_layer} is out of range: acts has {t.shape[0]} layers (0-{t.shape[0] - 1})")
    names = layer_names(layers, t.shape[0])
    sel = idx[split]
    rows = torch.as_tensor(sel, device=t.device)
    scaled = standardise(t[:, rows], None, ddof=0)  # the paper protocol: the split's own statistics
    i_xt, i_yt = estimate_mi(scaled[x_layer], y[sel], scaled, sigma=sigma, eps=eps, subsample=subsample, seed=seed)
    m = len(sel) if subsample is None else min(len(sel), int(subsample))
    return [
        {"layer": name, "sigma": float(sigma), "m": m, "i_xt": float(a), "i_yt": float(b)}
        for name, a, b in zip(names, np.atleast_1d(i_xt), np.atleast_1d(i_yt), strict=True)
    ]
