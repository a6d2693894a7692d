"""The batched logistic-regression solver of the probes, and the products with the activations.

:func:`fit_logistic` minimises, for every layer at once,

    C * sum_i log(1 + exp(-s_i (x_i . w + b))) + ||w||^2 / 2          (s_i = +-1)

i.e. scikit-learn's objective, so the solutions agree to the tolerance. It runs the batched
L-BFGS of :mod:`tracing_bench.probes.lbfgs` on [layers, n, d] tensors (device and dtype follow
the input: float32 or float64, CPU or CUDA) whose cost is the two passes over the activations
each iteration needs, X p and X^T r. On the CPU the products loop over layers through numpy's
BLAS on zero-copy views (faster there than torch's ``mv`` and ``bmm``) and skip layers that
have converged; other devices use one batched product per pass. :func:`mass_mean` is the
mass-mean probe's fit, batched the same way.

No preconditioner and no reduction for d > n: a Gram preconditioner (n d^2 flops per layer) or
a QR of X^T (about 4 n^2 d) costs more than the iterations it saves at these shapes. ``init``
warm-starts from another fit (scaled by a 1-D search, so a poor start costs one pass).
bench/BENCH.md has the timings, the profile and the FLOP floor.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from tracing_bench.errors import TracingBenchError
from tracing_bench.probes.inputs import one_thread_per_call
from tracing_bench.probes.lbfgs import lbfgs

# on the CPU, products with the activations loop over layers through numpy's BLAS (False: the
# batched torch products used on other devices; the tests use it to check that path on a CPU)
_CPU_LOOP = True


@dataclass
class LogisticFit:
    """Result of :func:`fit_logistic` (tensors on the input's device, float64).

    Attributes:
        coef: [layers, d] weights.
        intercept: [layers] intercepts (0 without an intercept).
        n_iter: [layers] L-BFGS iterations.
        converged: [layers] whether the gradient reached ``tol``.
    """

    coef: Tensor
    intercept: Tensor
    n_iter: Tensor
    converged: Tensor


def fit_logistic(
    x: Tensor,
    y: Tensor,
    *,
    C: float = 1.0,
    fit_intercept: bool = True,
    tol: float = 1e-4,
    max_iter: int = 1000,
    history: int = 40,
    init: LogisticFit | None = None,
) -> LogisticFit:
    """L2-regularised logistic regression for a batch of problems (all layers at once).

    Minimises ``mean_i logloss + ||w||^2 / (2 C n)`` (scikit-learn's scaling of the same
    objective) for each of the ``layers`` problems.

    Args:
        x: [layers, n, d] float32 or float64 tensor (any device); the products with ``x`` run
            in its dtype, everything else in float64.
        y: [n] or [layers, n] labels in {0, 1}.
        C: inverse regularisation strength (scikit-learn's ``C``).
        fit_intercept: learn an unpenalised intercept.
        tol: stop a layer when the largest absolute gradient entry of the mean-scaled
            objective is at most ``tol`` (scikit-learn's ``tol`` for lbfgs, same default).
        max_iter: L-BFGS iterations at most.
        history: L-BFGS memory (pairs kept). With 40, more than the iterations most probes
            need, it is BFGS with a limit; 10 (scikit-learn's) needs more iterations.
        init: a starting point (``coef`` [layers or 1, d], ``intercept`` [layers or 1]), e.g.
            the fit of the neighbouring layer or checkpoint; the solver starts from the best
            multiple ``a >= 0`` of it, so a poor start costs one product with ``x``, never the
            result. ``None``: start from zero.

    Returns:
        :class:`LogisticFit`.

    Raises:
        TracingBenchError: a bad shape, ``C``, ``tol`` or ``max_iter``, or NaN/inf in ``x``.
    """
    if x.ndim != 3:
        raise TracingBenchError(f"x has shape {tuple(x.shape)}; expected [layers, n, d]")
    n_layers, n, d = x.shape
    c_given = C
    try:
        C = float(C)
    except (TypeError, ValueError):
        C = float("nan")
    if not (math.isfinite(C) and C > 0):
        raise TracingBenchError(f"C={c_given!r}: the inverse regularisation must be a positive number")
    if isinstance(max_iter, bool) or not (isinstance(max_iter, (int, np.integer)) and max_iter >= 1):
        raise TracingBenchError(f"max_iter={max_iter!r}: give a positive integer")
    if isinstance(tol, bool) or not (isinstance(tol, (int, float)) and tol >= 0):
        raise TracingBenchError(f"tol={tol!r}: give a non-negative number")
    if isinstance(history, bool) or not (isinstance(history, (int, np.integer)) and history >= 1):
        raise TracingBenchError(f"history={history!r}: give a positive integer")
    if n == 0 or d == 0 or n_layers == 0:
        raise TracingBenchError(f"x has shape {tuple(x.shape)}; no layer, statement or feature")
    x = x.detach()
    if not x.is_floating_point() or x.dtype not in (torch.float32, torch.float64):
        x = x.to(torch.float32)
    x = x.contiguous()  # the per-layer products read rows; a strided view would be copied each pass
    dev, f64 = x.device, torch.float64
    yy = y.to(device=dev, dtype=f64)
    if yy.shape not in ((n,), (n_layers, n)):
        raise TracingBenchError(
            f"y has shape {tuple(y.shape)} but x has {n} statements; give [n] or [layers, n] labels"
        )
    yy = yy.expand(n_layers, n).contiguous()
    prob = _Problem(x, yy, C, fit_intercept)
    theta = torch.zeros(n_layers, d + 1, dtype=f64, device=dev)
    if init is not None:
        theta = prob.scaled_start(_init_theta(init, n_layers, d, dev))
    # on the CPU each library call on one thread: the passes are matrix-vector products, too
    # small for the libraries' own threads (bench/BENCH.md, "threads")
    with one_thread_per_call() if cpu_loop(x) else nullcontext():
        theta, n_iter, converged = lbfgs(prob, theta, tol=tol, max_iter=int(max_iter), history=int(history))
    return LogisticFit(coef=theta[:, :d], intercept=theta[:, d], n_iter=n_iter, converged=converged)


def _init_theta(init: LogisticFit, n_layers: int, d: int, dev: torch.device) -> Tensor:
    """[layers, d + 1] float64 start from a LogisticFit (broadcast from one layer if needed)."""
    coef = torch.as_tensor(init.coef).to(device=dev, dtype=torch.float64)
    coef = coef.reshape(-1, coef.shape[-1]) if coef.ndim else coef.reshape(1, 1)
    icpt = torch.as_tensor(init.intercept).to(device=dev, dtype=torch.float64).reshape(-1, 1)
    if coef.shape[-1] != d or coef.shape[0] not in (1, n_layers) or icpt.shape[0] != coef.shape[0]:
        raise TracingBenchError(
            f"init has coef {tuple(coef.shape)} and intercept {tuple(icpt.shape)}; expected "
            f"[1 or {n_layers}, {d}] and [1 or {n_layers}] (a LogisticFit of the same features)"
        )
    theta = torch.cat([coef, icpt], dim=1).expand(n_layers, d + 1).clone()
    return torch.nan_to_num(theta, nan=0.0, posinf=0.0, neginf=0.0)


def cpu_loop(x: Tensor) -> bool:
    """Whether products with ``x`` loop over layers through numpy (a CPU tensor, unless switched off)."""
    return x.device.type == "cpu" and _CPU_LOOP


def _matvec(x: Tensor, w: Tensor, live: list[int] | None, rows: list[np.ndarray] | None = None) -> Tensor:
    """x [L, n, d] times w [L, d] -> [L, n] in x's dtype (rows of layers not in ``live``: 0).

    On the CPU a loop of 2-D products through numpy's BLAS on zero-copy views (faster there than
    torch's ``mv`` and ``bmm``), skipping finished layers; on other devices one batched product (no per-layer launches).
    """
    wx = w.to(x.dtype)
    if live is None:
        return (x @ wx.unsqueeze(-1)).squeeze(-1)
    layers = rows if rows is not None else list(x.numpy())
    out = torch.zeros(x.shape[0], x.shape[1], dtype=x.dtype)
    outs, ws = out.numpy(), wx.numpy()
    for i in live:
        np.dot(layers[i], ws[i], out=outs[i])
    return out


def _rmatvec(x: Tensor, r: Tensor, live: list[int] | None, cols: list[np.ndarray] | None = None) -> Tensor:
    """x [L, n, d] transposed times r [L, n] -> [L, d] float64 (0 outside ``live``)."""
    if live is None:
        return (r.unsqueeze(1) @ x).squeeze(1).to(torch.float64)
    layers = cols if cols is not None else [a.T for a in x.numpy()]
    out = torch.zeros(x.shape[0], x.shape[2], dtype=x.dtype)
    outs, rs = out.numpy(), r.contiguous().numpy()
    for i in live:
        np.dot(layers[i], rs[i], out=outs[i])
    return out.to(torch.float64)


class _Problem:
    """Data of a batch of logistic regressions and the two products with ``x``.

    ``theta`` is [L, d + 1] float64 (weights, then the intercept). Only the products with
    ``x`` run in its dtype; scores ``z`` [L, n], the per-statement work, the gradient and the
    L-BFGS state are float64, so the line search sees an exact 1-D function whatever the
    data's precision. The solver makes two passes over ``x`` per iteration: :meth:`scores` of
    the search direction and :meth:`grad` at the new point.
    """

    def __init__(self, x: Tensor, y: Tensor, C: float, fit_intercept: bool) -> None:
        self.x = x
        self.y = y.to(torch.float64)  # [L, n]
        self.n = x.shape[1]
        self.reg = 1.0 / (C * self.n)
        self.fit_intercept = fit_intercept
        # CPU: the layers still iterating (finished ones cost no pass); else batched products
        self.live: list[int] | None = list(range(x.shape[0])) if cpu_loop(x) else None
        self.rows = list(x.numpy()) if self.live is not None else None  # per-layer views, made once
        self.cols = [a.T for a in self.rows] if self.rows is not None else None

    def scores(self, v: Tensor) -> Tensor:
        """X v_w + v_b, [L, n] float64 (one pass over x)."""
        z = _matvec(self.x, v[:, :-1], self.live, self.rows).to(torch.float64)
        if self.fit_intercept:
            z += v[:, -1:]
        return z

    def grad(self, theta: Tensor, sig: Tensor) -> Tensor:
        """Gradient [L, d + 1] float64 of the mean objective, given sigmoid(z) (one pass over x)."""
        r = (sig - self.y).div_(self.n)
        gw = _rmatvec(self.x, r.to(self.x.dtype), self.live, self.cols).add_(theta[:, :-1], alpha=self.reg)
        gb = r.sum(-1, keepdim=True, dtype=torch.float64) if self.fit_intercept else gw.new_zeros(gw.shape[0], 1)
        return torch.cat([gw, gb], dim=-1)

    def objective(self, theta: Tensor, z: Tensor) -> Tensor:
        """Mean log-loss plus the penalty, [L] float64 (no pass over x)."""
        loss = (torch.nn.functional.softplus(z) - self.y * z).mean(-1)
        return loss + 0.5 * self.reg * (theta[:, :-1] * theta[:, :-1]).sum(-1)

    def scaled_start(self, theta: Tensor) -> Tensor:
        """The best multiple a * theta (a >= 0) of a starting point (one pass over x)."""
        q = self.scores(theta)
        ww = (theta[:, :-1] * theta[:, :-1]).sum(-1)
        a = torch.zeros(theta.shape[0], dtype=q.dtype, device=q.device)
        for _ in range(20):  # Newton on the convex 1-D function a -> f(a theta), from a = 0
            s = torch.sigmoid(a.unsqueeze(-1) * q)
            d1 = ((s - self.y) * q).mean(-1) + self.reg * a * ww
            d2 = (s * (1 - s) * q * q).mean(-1) + self.reg * ww
            a = (a - d1 / d2.clamp_min(1e-30)).clamp_min(0.0)
        a = torch.nan_to_num(a, nan=0.0, posinf=0.0)
        return a.unsqueeze(-1) * theta


def batched_mv(x: Tensor, w: Tensor) -> Tensor:
    """x [L, n, d] times w [L, d] -> [L, n] in x's dtype (a loop of mv on the CPU)."""
    return _matvec(x, w, list(range(x.shape[0])) if cpu_loop(x) else None)


def mass_mean(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Direction mean(1) - mean(0) and the midpoint threshold, batched: (w [L, d], b [L]).

    Both means come from products X^T v with v = 1/n1 on one class and -1/n0 (or +1/n0) on
    the other: two passes over x in its own dtype, no float64 copy of the activations.
    """
    pos = y.to(device=x.device, dtype=torch.bool)
    n1, n0 = int(pos.sum()), int((~pos).sum())
    one = torch.ones(pos.shape, dtype=torch.float64, device=x.device)
    a = torch.where(pos, one / max(n1, 1), 0.0)
    c = torch.where(pos, 0.0, one / max(n0, 1))
    live = list(range(x.shape[0])) if cpu_loop(x) else None
    v = torch.stack([a - c, a + c]).to(x.dtype)  # mu1 - mu0, mu1 + mu0
    diff = _rmatvec(x, v[0].expand(x.shape[0], -1), live)
    total = _rmatvec(x, v[1].expand(x.shape[0], -1), live)
    w = diff
    b = -(w * total).sum(-1) / 2
    return w, b
