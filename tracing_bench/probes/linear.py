"""Linear probes: logistic regression and mass-mean, one estimator per layer or all layers at once.

* :class:`LinearProbe` is scikit-learn's ``LogisticRegression()`` objective (L2, ``C``,
  unpenalised intercept) as an estimator: ``LinearProbe(C=1.0).fit(X, y).score(X_val, y_val)``.
* :class:`MassMeanProbe`: direction = mean(label 1) - mean(label 0) (the steering direction),
  threshold at the midpoint of the projected class means (or a fitted 1-D logistic).
* :func:`probe_layers` probes every layer of a checkpoint in one batched solve and returns the
  probes.csv columns this module owns.

The solver (:func:`fit_logistic`) minimises, for every layer at once,

    C * sum_i log(1 + exp(-s_i (x_i . w + b))) + ||w||^2 / 2          (s_i = +-1)

i.e. scikit-learn's objective, so the solutions agree to the tolerance. It is batched L-BFGS on
[layers, n, d] tensors (device and dtype follow the input: float32 or float64, CPU or CUDA) whose
cost is the two passes over the activations each iteration needs, X p and X^T r:

* the L-BFGS matrix in its compact form (Byrd, Nocedal and Schnabel 1994) with memory 40, about
  the iterations a probe needs, so it acts as BFGS: 27 iterations per layer on the benchmark's
  activations where scikit-learn's memory of 10 takes about 50;
* the line search works on the 1-D restriction: with q = X p known, the objective along p and
  its derivatives cost O(n) per trial (z + a q), so a nearly exact search (strong Wolfe,
  c2 = 0.1) is free and no trial touches X;
* scores, per-statement terms, gradients and the L-BFGS state are float64; only the products
  with X use the data's dtype (float32 activations stay float32);
* on the CPU the products loop over layers through numpy's BLAS on zero-copy views (faster
  than torch's MKL ``mv`` on the AMD EPYC measured, and 3x faster than ``bmm``) and skip layers
  that have converged; other devices use one batched product per pass.

No preconditioner and no reduction for d > n: a Gram preconditioner (n d^2 flops per layer) or
a QR of X^T (about 4 n^2 d) costs more than the iterations it saves at these shapes (measured:
the QR alone took longer than 40 iterations at hidden 4096, n 720). ``init`` warm-starts from
another fit (scaled by a 1-D search, so a poor start costs one pass). bench/BENCH.md has the
timings, the profile and the FLOP floor.

>>> rows = probe_layers(acts, data.labels, data.splits)           # acts: [layers, statements, hidden]
>>> LinearProbe().fit(X_train, y_train).predict_proba(X_test)[:, 1]
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted
from torch import Tensor

from tracing_bench.errors import TracingBenchError

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn

    def _validate_data(est: Any, *args: Any, **kwargs: Any) -> Any:
        return est._validate_data(*args, **kwargs)


__all__ = [
    "LinearProbe",
    "LogisticFit",
    "MassMeanProbe",
    "PROBES",
    "fit_logistic",
    "probe_layers",
    "standardise",
]

Protocol = Literal["paper", "reference"]
ProbeName = Literal["logistic", "mass_mean"]
PROBES: tuple[str, ...] = ("logistic", "mass_mean")
PROTOCOLS: tuple[str, ...] = ("paper", "reference")
# keep about this many bytes of activations per batched chunk of layers
_CHUNK_BYTES = 1 << 30
# on the CPU, products with the activations loop over layers through numpy's BLAS (False: the
# batched torch products used on other devices; the tests use it to check that path on a CPU)
_CPU_LOOP = True


# --------------------------------------------------------------------------------------------
# the batched solver


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
            need, it is BFGS with a limit; 10 (scikit-learn's) costs about 1.5x the iterations.
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
    theta, n_iter, converged = _lbfgs(prob, theta, tol=tol, max_iter=int(max_iter), history=int(history))
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


def _cpu_loop(x: Tensor) -> bool:
    return x.device.type == "cpu" and _CPU_LOOP


def _matvec(x: Tensor, w: Tensor, live: list[int] | None, rows: list[np.ndarray] | None = None) -> Tensor:
    """x [L, n, d] times w [L, d] -> [L, n] in x's dtype (rows of layers not in ``live``: 0).

    On the CPU a loop of 2-D products through numpy's BLAS on zero-copy views (1.5-2x faster
    than torch's ``mv`` on the AMD EPYC measured, and 3x faster than ``bmm``), skipping
    finished layers; on other devices one batched product (no per-layer launches).
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
        self.live: list[int] | None = list(range(x.shape[0])) if _cpu_loop(x) else None
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


def _dev(a: np.ndarray, dev: torch.device) -> Tensor:
    """A numpy array as a tensor on ``dev`` (zero-copy on the CPU)."""
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t if dev.type == "cpu" else t.to(dev)


# Wolfe constants of the line search (sufficient decrease, strong curvature) and its most
# trials. A fairly exact search (c2 = 0.1) costs O(n) per trial here and saves iterations:
# on the benchmark's activations 27 iterations on average against 42 with c2 = 0.9.
_C1, _C2, _MAX_LS = 1e-4, 0.1, 20


@torch.no_grad()
def _lbfgs(
    prob: _Problem, theta: Tensor, *, tol: float, max_iter: int, history: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Batched L-BFGS, two passes over x per iteration (see :class:`_Problem`).

    The direction is H g with the L-BFGS matrix in its compact form (Byrd, Nocedal and
    Schnabel 1994), H = gamma I + [S Y] M [S Y]^T. The pairs live in a ring buffer
    [L, 2 m, d + 1] in x's dtype; its inner products with g and with the newest y come from
    one batched product per iteration, and H g from one more, so the cost of the memory is two
    products with the buffer, not 4 m small operations. The line search runs on the 1-D
    restriction (:func:`_line_search`), so its trials never touch x. Per-layer scalars
    (objective, step, flags) are [L] numpy arrays: one small transfer per step on a GPU.
    A layer whose step finds no decrease (rounding) stops; it stores a zero pair, which leaves
    its H unchanged.
    """
    n_layers, dim = theta.shape
    dev, f64, dt = theta.device, torch.float64, prob.x.dtype
    m = int(history)
    if bool(theta.any()):
        z = prob.scores(theta)
    else:
        z = torch.zeros(n_layers, prob.n, dtype=f64, device=dev)
    sig = torch.sigmoid(z)
    g = prob.grad(theta, sig)
    head_vals = torch.stack([
        prob.objective(theta, z), torch.linalg.vecdot(prob.y, z) / prob.n,
        torch.linalg.vecdot(theta[:, :-1], theta[:, :-1]), g.abs().amax(-1),
    ]).cpu().numpy()
    f, yz, ww, gmax = (v.copy() for v in head_vals)
    if not np.isfinite(gmax).all():
        bad = np.flatnonzero(~np.isfinite(gmax)).tolist()
        raise TracingBenchError(
            f"x has NaN or infinite values in layers {bad[:8]}; drop or repair them before fitting"
        )
    # the pairs in x's dtype: the direction needs no more, and float32 halves the traffic of
    # the two products with the buffer (float64 data keeps float64 pairs)
    # slot j holds (s_j, y_j) at rows 2j, 2j + 1 of the flat view; slots fill 0, 1, ... before
    # the ring wraps, so the products read only the filled rows
    buf = torch.zeros(n_layers, 2 * m, dim, dtype=dt, device=dev)
    sty = torch.zeros(n_layers, m, m, dtype=f64, device=dev)  # s_slot_i . y_slot_j
    yty = torch.zeros(n_layers, m, m, dtype=f64, device=dev)
    gamma = np.ones(n_layers)
    n_iter = np.zeros(n_layers, dtype=np.int64)
    active = gmax > tol
    slack = 16 * torch.finfo(f64).eps  # the 1-D function is exact in float64
    count, head = 0, 0  # stored pairs, next slot
    for it in range(max_iter):
        live = np.flatnonzero(active)
        if live.size == 0:
            break
        if prob.live is not None:
            prob.live = live.tolist()
        gam_t = _dev(gamma, dev)
        if count == 0:
            direction = -gam_t.unsqueeze(-1) * g
        else:
            newest = (head - 1) % m
            used = buf[:, : 2 * count]  # count == m once the ring wraps
            rows = torch.stack([g.to(dt), buf[:, 2 * newest + 1]], dim=1)
            prods = (rows @ used.mT).to(f64)  # [L, 2, 2 count]: g and the newest y against s_j, y_j
            sty[:, :count, newest] = prods[:, 1, 0::2]
            yty[:, :count, newest] = prods[:, 1, 1::2]
            yty[:, newest, :count] = prods[:, 1, 1::2]
            direction = _direction(g, prods[:, 0], used, sty, yty, gam_t, count, head, m)
        w, pw = theta[:, :-1], direction[:, :-1]
        gd_t = torch.linalg.vecdot(g, direction)
        if bool(((gd_t >= 0) | gd_t.isnan()).any()):  # no descent (rounding): use the gradient
            bad_t = ((gd_t >= 0) | gd_t.isnan()).unsqueeze(-1)
            direction = torch.where(bad_t, -g, direction)
            pw = direction[:, :-1]
            gd_t = torch.linalg.vecdot(g, direction)
        q = prob.scores(direction)  # pass 1
        # the 1-D function's own slope at 0 (consistent with q, unlike g . p when x is float32)
        wd, dd, yq, sq = torch.stack([
            torch.linalg.vecdot(w, pw), torch.linalg.vecdot(pw, pw),
            torch.linalg.vecdot(prob.y, q) / prob.n, torch.linalg.vecdot(sig, q) / prob.n,
        ]).cpu().numpy()
        gd = sq - yq + prob.reg * wd
        a, z, sig, f_new, found = _line_search(
            prob, z, q, sig, f=f, gd=gd, yz=yz, yq=yq, ww=ww, wd=wd, dd=dd, active=active,
            first=count == 0, slack=slack,
        )
        a = np.where(found, a, 0.0)
        a_t = _dev(a, dev).unsqueeze(-1)
        s = a_t * direction
        theta = theta + s
        g_new = prob.grad(theta, sig)  # pass 2
        if prob.live is not None and live.size < n_layers:  # finished layers got no gradient
            done = _dev(np.flatnonzero(~active), dev)
            g_new.index_copy_(0, done, g.index_select(0, done))
        yv = g_new - g
        sy, yy, s2, gmax = torch.stack([
            torch.linalg.vecdot(s, yv), torch.linalg.vecdot(yv, yv), torch.linalg.vecdot(s, s),
            g_new.abs().amax(-1),
        ]).cpu().numpy()
        f = np.where(found, f_new, f)
        yz = yz + a * yq
        ww = ww + a * (2 * wd + a * dd)
        good = active & found & (sy > 1e-10 * np.sqrt(s2 * yy))
        keep = _dev(good.astype(np.float64), dev).unsqueeze(-1)  # (a product: faster than where)
        buf[:, 2 * head] = s * keep
        buf[:, 2 * head + 1] = yv * keep
        with np.errstate(divide="ignore", invalid="ignore"):
            gamma = np.where(good, sy / yy, gamma)
        head, count = (head + 1) % m, min(count + 1, m)
        g = g_new
        n_iter += active
        active = active & found & (gmax > tol)
    return theta, _dev(n_iter, dev), _dev(gmax <= tol, dev)


def _direction(
    g: Tensor, prods: Tensor, buf: Tensor, sty: Tensor, yty: Tensor, gamma: Tensor, count: int, head: int, m: int
) -> Tensor:
    """-H g for the compact L-BFGS matrix with H0 = gamma I (gamma [L]).

    ``buf`` [L, 2 count, dim] holds the pairs (rows 2j, 2j + 1: s and y of slot j), ``prods``
    [L, 2 count] their products with g, ``sty``/``yty`` [L, m, m] the products among them.

    H g = gamma g + S p - gamma Y c with c = R^-1 S^T g and
    p = R^-T ((D + gamma Y^T Y) c - gamma Y^T g), R the upper triangle of S^T Y in time order
    and D its diagonal. Zero pairs get a unit pivot in R and then contribute nothing.
    """
    order = _dev((np.arange(count) + (head - count)) % m, g.device)  # slots, oldest first
    both = torch.cat([2 * order, 2 * order + 1])  # their s rows, then their y rows
    r = sty.index_select(1, order).index_select(2, order)
    dvec = r.diagonal(dim1=-2, dim2=-1).clone()
    r = torch.triu(r)
    r.diagonal(dim1=-2, dim2=-1).add_((dvec == 0).to(r.dtype))
    ab = prods.index_select(1, both).unsqueeze(-1)  # S^T g, Y^T g in time order
    gam = gamma.view(-1, 1, 1)
    c = torch.linalg.solve_triangular(r, ab[:, :count], upper=True)
    inner = yty.index_select(1, order).index_select(2, order).mul_(gam)
    inner.diagonal(dim1=-2, dim2=-1).add_(dvec)
    p = torch.linalg.solve_triangular(r.mT, inner @ c - gam * ab[:, count:], upper=False)
    coef = torch.zeros(g.shape[0], buf.shape[1], dtype=buf.dtype, device=g.device)
    coef.index_copy_(1, both, torch.cat([p, -gam * c], dim=1).squeeze(-1).to(buf.dtype))
    hg = torch.addcmul((coef.unsqueeze(1) @ buf).squeeze(1).to(g.dtype), gamma.unsqueeze(-1), g)
    return hg.neg_()


def _line_search(
    prob: _Problem,
    z: Tensor,
    q: Tensor,
    sig: Tensor,
    *,
    f: np.ndarray,
    gd: np.ndarray,
    yz: np.ndarray,
    yq: np.ndarray,
    ww: np.ndarray,
    wd: np.ndarray,
    dd: np.ndarray,
    active: np.ndarray,
    first: bool,
    slack: float,
) -> tuple[np.ndarray, Tensor, Tensor, np.ndarray, np.ndarray]:
    """A strong-Wolfe step along a direction p from the 1-D restriction (no pass over x).

    With q = X p (+ the intercept's step), phi(a) = mean(softplus(z + a q)) - (yz + a yq)
    + reg ||w + a p_w||^2 / 2 and its derivatives cost O(n) per trial (yz = mean(y z),
    yq = mean(y q); ww, wd, dd the products of w and p_w). phi is convex, so safeguarded
    Newton steps on phi' inside a bracket reach a Wolfe point in one or two trials. The first
    trial is a = 1 (the L-BFGS step), or the Newton step from 0 when there is no curvature
    pair yet. Per-layer arguments and results are [L] numpy arrays.

    Returns:
        (step, z, sigmoid(z), objective) at the step and ``found`` per layer; where no
        decrease was found (rounding level), ``found`` is False and z is unchanged.
    """
    reg, dev, dt = prob.reg, q.device, q.dtype
    todo = active & (gd < 0)  # no descent along p at the precision of q: nothing to gain
    if first:
        curv0 = torch.linalg.vecdot(sig * (1 - sig) * q, q).cpu().numpy() / prob.n
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.clip(-gd / (curv0 + reg * dd), 1e-10, 1e10)
    else:
        a = np.ones_like(f)
    a = np.where(todo & np.isfinite(a), a, np.where(todo, 1.0, 0.0))
    lo, hi = np.zeros_like(a), np.full_like(a, np.inf)
    tol_f = slack * np.maximum(np.abs(f), 1.0)
    found = np.zeros_like(todo)
    a_out, f_out = np.zeros_like(a), f.copy()
    best_a, best_f = np.zeros_like(a), f.copy()
    z_out = sig_out = None
    for _ in range(_MAX_LS):
        zz = torch.addcmul(z, _dev(a, dev).unsqueeze(-1), q)
        ss = torch.sigmoid(zz)
        red = torch.stack([torch.nn.functional.softplus(zz).sum(-1),
                           torch.linalg.vecdot(ss, q)]).cpu().numpy() / prob.n
        phi = red[0] - (yz + a * yq) + 0.5 * reg * (ww + a * (2 * wd + a * dd))
        dphi = red[1] - yq + reg * (wd + a * dd)
        armijo = phi <= f + _C1 * a * gd + tol_f
        ok = todo & armijo & (np.abs(dphi) <= -_C2 * gd)
        if ok.any():
            if z_out is None and (ok == todo).all():  # the usual case: every layer at once
                z_out, sig_out = zz, ss  # (a = 0 for the others: zz = z there)
            else:
                okt = _dev(ok, dev).unsqueeze(-1)
                z_out = torch.where(okt, zz, z if z_out is None else z_out)
                sig_out = torch.where(okt, ss, sig if sig_out is None else sig_out)
            a_out, f_out = np.where(ok, a, a_out), np.where(ok, phi, f_out)
            found |= ok
            todo &= ~ok
            if not todo.any():
                break
        better = todo & armijo & (phi < best_f)
        best_a, best_f = np.where(better, a, best_a), np.where(better, phi, best_f)
        # bracket the minimiser of phi, then a safeguarded Newton step on phi'
        past = ~armijo | (dphi > 0)
        hi = np.where(todo & past, a, hi)
        lo = np.where(todo & ~past, a, lo)
        curv = torch.linalg.vecdot(ss * (1 - ss) * q, q).cpu().numpy() / prob.n
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = a - dphi / (curv + reg * dd)
        inside = (newton > lo) & (newton < hi) & np.isfinite(newton)
        step = np.where(inside, newton, np.where(np.isinf(hi), 4 * a, 0.5 * (lo + hi)))
        a = np.where(todo, step, 0.0)
    else:  # no strong-Wolfe point within the trials: take the best decrease seen, if any
        late = todo & (best_a > 0)
        if late.any():
            zz = torch.addcmul(z, _dev(np.where(late, best_a, 0.0), dev).unsqueeze(-1), q)
            lt = _dev(late, dev).unsqueeze(-1)
            z_out = torch.where(lt, zz, z if z_out is None else z_out)
            sig_out = torch.where(lt, torch.sigmoid(zz), sig if sig_out is None else sig_out)
            a_out, f_out = np.where(late, best_a, a_out), np.where(late, best_f, f_out)
            found |= late
    if z_out is None:
        z_out, sig_out = z, sig
    return a_out, z_out, sig_out, f_out, found


# --------------------------------------------------------------------------------------------
# inputs, scaling, metrics


def _to_tensor(acts: Any) -> Tensor:
    if isinstance(acts, Tensor):
        t = acts.detach()
    else:
        try:
            arr = np.asarray(acts)
        except Exception as e:
            raise TracingBenchError(
                f"acts could not be read as an array ({e}); pass a [layers, statements, hidden] "
                "numpy array or tensor"
            ) from None
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise TracingBenchError(
                f"acts has dtype {arr.dtype}; pass float activations [layers, statements, hidden]"
            )
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex() or t.dtype == torch.bool:
        raise TracingBenchError(f"acts has dtype {t.dtype}; pass real float activations")
    if t.dtype != torch.float64:
        t = t.to(torch.float32)
    return t


def _prepare(
    acts: Any,
    labels: Any,
    splits: dict[str, Any],
    protocol: str,
    needed: tuple[str, ...],
) -> tuple[Tensor, np.ndarray, dict[str, np.ndarray]]:
    """Validate activations, labels and splits; returns (acts tensor, labels, index arrays)."""
    if protocol not in PROTOCOLS:
        raise TracingBenchError(
            f"protocol={protocol!r} is not known: valid protocols are {', '.join(PROTOCOLS)}"
        )
    t = _to_tensor(acts)
    if t.ndim != 3:
        raise TracingBenchError(
            f"acts has shape {tuple(t.shape)}; expected [layers, statements, hidden] "
            "(a single layer is acts[None])"
        )
    n_layers, n, h = t.shape
    if n_layers == 0 or n == 0 or h == 0:
        raise TracingBenchError(f"acts has shape {tuple(t.shape)}; no layer, statement or feature")
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise TracingBenchError(
            f"labels has shape {y.shape} but acts has {n} statements; give one 0/1 label per "
            "statement, aligned with acts[:, i]"
        )
    if y.dtype == object or not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)
                                  or np.issubdtype(y.dtype, np.floating)):
        raise TracingBenchError(f"labels has dtype {y.dtype}; labels must be 0 or 1")
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        raise TracingBenchError(
            f"labels has {int(bad.sum())} values other than 0 and 1 (e.g. {y[bad][0]!r}); "
            "the probes are binary"
        )
    y = y.astype(np.int64)
    if not isinstance(splits, dict):
        raise TracingBenchError(
            f"splits is a {type(splits).__name__}; pass DimensionData.splits (a dict of index arrays)"
        )
    idx: dict[str, np.ndarray] = {}
    for name in needed:
        if name not in splits:
            raise TracingBenchError(
                f"splits has no {name!r} entry (it has {', '.join(map(str, splits)) or 'none'}); "
                "pass DimensionData.splits"
            )
        arr = np.asarray(splits[name])
        if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
            raise TracingBenchError(
                f"splits[{name!r}] has shape {arr.shape} and dtype {arr.dtype}; expected a 1-D "
                "array of statement indices"
            )
        if arr.size == 0:
            raise TracingBenchError(f"splits[{name!r}] is empty; every split needs statements")
        if arr.min() < 0 or arr.max() >= n:
            raise TracingBenchError(
                f"splits[{name!r}] has indices {int(arr.min())}..{int(arr.max())} but acts has "
                f"{n} statements (0-{n - 1}); were the activations harvested from the same file?"
            )
        idx[name] = arr.astype(np.int64)
    return t, y, idx


def _check_finite(t: Tensor, lo: int = 0) -> None:
    """Raise if t [layers, ...] holds NaN or inf (callers pass cheap reductions that propagate them)."""
    if not bool(torch.isfinite(t).all()):
        bad_layers = [lo + i for i in (~torch.isfinite(t)).flatten(1).any(1).nonzero().flatten().tolist()]
        raise TracingBenchError(
            f"acts has NaN or infinite values in layers {bad_layers[:8]}; re-harvest in float32 "
            "(bfloat16/float16 can overflow) or drop those layers"
        )


def standardise(acts: Tensor, fit_idx: np.ndarray | None = None, *, ddof: int = 0) -> Tensor:
    """Centre and scale every feature of every layer (returns a new tensor).

    Args:
        acts: [layers, statements, hidden].
        fit_idx: statements whose mean and standard deviation are used (``None``: all).
        ddof: degrees of freedom of the standard deviation (0: scikit-learn's StandardScaler,
            1: ``torch.std`` as in the released code). Constant features are only centred.

    Returns:
        the standardised [layers, statements, hidden] tensor.
    """
    ref = acts if fit_idx is None else acts[:, torch.as_tensor(fit_idx, device=acts.device)]
    mean = ref.mean(1, keepdim=True)
    std = ref.std(1, keepdim=True, correction=ddof) if ref.shape[1] > ddof else torch.ones_like(mean)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return (acts - mean) / std


def _standardise_(x: Tensor) -> tuple[Tensor, Tensor]:
    """Centre and scale every feature of x [L, n, d] in place (population std, ddof 0).

    Returns:
        (mean, std) as [L, 1, d]; a constant feature keeps std 1 (only centred). Two passes
        and no [L, n, d] temporary; on the CPU the sums of squares go through numpy's einsum,
        ten times faster than ``torch.std`` on the middle axis.
    """
    mean = x.mean(1, keepdim=True)
    x.sub_(mean)
    if _cpu_loop(x):
        ssq = torch.from_numpy(np.stack([np.einsum("ij,ij->j", a, a) for a in x.numpy()]))
    else:
        ssq = torch.stack([(a * a).sum(0) for a in x.unbind(0)])
    std = (ssq.unsqueeze(1) / x.shape[1]).sqrt_().to(x.dtype)
    std = torch.where(std > 0, std, torch.ones_like(std))
    x.div_(std)
    return mean, std


def _batched_mv(x: Tensor, w: Tensor) -> Tensor:
    """x [L, n, d] times w [L, d] -> [L, n] in x's dtype (a loop of mv on the CPU)."""
    return _matvec(x, w, list(range(x.shape[0])) if _cpu_loop(x) else None)


def _auroc(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """AUROC per row of scores [k, n] (ties count one half); NaN when y has one class."""
    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        return np.full(scores.shape[0], np.nan)
    ranks = rankdata(scores, axis=1)
    return (ranks[:, y == 1].sum(1) - n1 * (n1 + 1) / 2) / (n1 * n0)


def _metrics(scores: Tensor, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = scores.detach().to(torch.float64).cpu().numpy()
    acc = ((s > 0).astype(np.int64) == y[None]).mean(1)
    return acc, _auroc(s, y)


# --------------------------------------------------------------------------------------------
# all layers at once


def probe_layers(
    acts: Any,
    labels: Any,
    splits: dict[str, Any],
    *,
    protocol: Protocol = "paper",
    probes: tuple[str, ...] = ("logistic", "mass_mean"),
    C: float = 1.0,
    layers: list[int] | None = None,
    tol: float = 1e-4,
    max_iter: int = 1000,
    details: bool = False,
) -> list[dict[str, Any]]:
    """Probe every layer of one checkpoint at once.

    ``paper`` protocol: standardise each feature with the probe-train statistics only (ddof 0),
    train on ``probe_train``, report ``probe_val`` (val_*) and ``test`` (test_*).
    ``reference`` protocol (the released code's numbers): handed to
    :func:`tracing_bench.probes.reference.reference_probe_layers`, a separate path: whole-file
    float32 scaling (mean, then ``torch.std`` of the centred values), scikit-learn's
    ``LogisticRegression()`` with its defaults on ``splits["probe_train"]`` (the first 80 %),
    ``splits["probe_val"]`` (the last 20 %) reported as both val and test; ``C``, ``tol`` and
    ``max_iter`` do not apply there.

    Args:
        acts: [layers, statements, hidden] activations (numpy or torch; CUDA tensors stay on the
            GPU; float64 stays float64, other dtypes are computed in float32).
        labels: [statements] 0/1 labels aligned with ``acts[:, i]``.
        splits: ``DimensionData.splits`` (index arrays).
        protocol: ``paper`` or ``reference``.
        probes: any of ``logistic``, ``mass_mean``.
        C: inverse L2 strength of the logistic probe (scikit-learn's ``C``).
        layers: layer numbers to write in the rows (default ``0 .. layers - 1``).
        tol, max_iter: stopping rule of the batched solver (see :func:`fit_logistic`).
        details: also return, per row, ``n_test``, the 95 % intervals ``test_acc_lo``,
            ``test_acc_hi`` (Wilson) and ``test_auroc_lo``, ``test_auroc_hi`` (DeLong), and
            ``test_correct``: a [n_test] boolean array, statement ``splits[test][i]`` classified
            right (:mod:`tracing_bench.stats`).

    Returns:
        one dict per (layer, probe), layer-major: ``layer``, ``probe``, ``n_train``,
        ``val_acc``, ``val_auroc``, ``test_acc``, ``test_auroc`` (AUROC is NaN for a one-class
        split), plus the ``details`` keys when asked.

    Raises:
        TracingBenchError: mismatched shapes, labels other than 0/1, a one-class training split,
            NaN activations, an unknown protocol or probe.
    """
    probes = tuple(probes) if not isinstance(probes, str) else (probes,)
    unknown = [p for p in probes if p not in PROBES]
    if unknown or not probes:
        raise TracingBenchError(
            f"probes={list(probes)!r}: valid probes are {', '.join(PROBES)}"
        )
    if protocol == "reference":  # the released recipe, operation for operation (probes/reference.py)
        from tracing_bench.probes.reference import reference_probe_layers

        return reference_probe_layers(acts, labels, splits, probes=probes, layers=layers, details=details)
    eval_names = ("probe_val", "test") if protocol == "paper" else ("probe_val",)
    t, y, idx = _prepare(acts, labels, splits, protocol, ("probe_train", *eval_names))
    tr = idx["probe_train"]
    if len(np.unique(y[tr])) < 2:
        raise TracingBenchError(
            f"the probe_train split ({len(tr)} statements) has only label {int(y[tr][0])}; "
            "a probe needs both classes (check the labels and the splits)"
        )
    n_layers, _, hidden = t.shape
    names = _layer_names(layers, n_layers)
    dev = t.device
    per_layer = t.shape[1] * hidden * t.element_size() * 2
    chunk = max(1, min(n_layers, _CHUNK_BYTES // max(1, per_layer)))
    results: dict[str, dict[str, np.ndarray]] = {p: {} for p in probes}
    test_name = "test" if protocol == "paper" else "probe_val"
    extra: dict[tuple[str, int], dict[str, Any]] = {}
    y_tr = torch.as_tensor(y[tr], device=dev)
    not_converged: list[int] = []
    tr_t = torch.as_tensor(tr, device=dev)
    # the statements scored: the union of the evaluated splits, gathered once unless it is most
    # of the file (then every statement is scored and the splits are read off the scores)
    eval_rows = np.unique(np.concatenate([idx[name] for name in eval_names]))
    gather = 2 * len(eval_rows) <= t.shape[1]
    eval_pos = {name: torch.as_tensor(np.searchsorted(eval_rows, idx[name]) if gather else idx[name], device=dev)
                for name in eval_names}
    eval_t = torch.as_tensor(eval_rows, device=dev)
    for lo in range(0, n_layers, chunk):
        part = t[lo : lo + chunk]
        x_tr = part.index_select(1, tr_t)  # a copy, standardised in place
        if protocol == "paper":  # probe-train statistics, ddof 0 (StandardScaler)
            mean, std = _standardise_(x_tr)
            _check_finite(torch.cat([mean, std], 1), lo)  # NaN/inf in the fitted rows propagate here
        else:  # whole-file statistics, torch.std (ddof 1) like the released code
            mean, std = part.mean(1, keepdim=True), part.std(1, keepdim=True, correction=1)
            _check_finite(torch.cat([mean, std], 1), lo)  # NaN/inf in the fitted rows propagate here
            std = torch.where(std > 0, std, torch.ones_like(std))
            x_tr.sub_(mean).div_(std)
        scored = part.index_select(1, eval_t) if gather else part  # raw activations
        for probe in probes:
            if probe == "logistic":
                fit = fit_logistic(x_tr, y_tr, C=C, tol=tol, max_iter=max_iter)
                w, b = fit.coef, fit.intercept
                not_converged += [names[lo + i] for i in (~fit.converged).nonzero().flatten().tolist()]
            else:
                w, b = _mass_mean(x_tr, y_tr)
            # the standardisation folded into the weights: ((x - mean) / std) . w + b
            w_raw = w / std.squeeze(1).to(torch.float64)
            b_raw = b - (mean.squeeze(1).to(torch.float64) * w_raw).sum(-1)
            all_scores = _batched_mv(scored, w_raw).to(torch.float64) + b_raw.unsqueeze(-1)
            for name in eval_names:
                scores = all_scores.index_select(1, eval_pos[name])
                _check_finite(scores, lo)  # NaN/inf in evaluated rows propagate here
                acc, auc = _metrics(scores, y[idx[name]])
                store = results[probe].setdefault(name, np.empty((2, n_layers)))
                store[0, lo : lo + len(acc)] = acc
                store[1, lo : lo + len(acc)] = auc
                if details and name == test_name:
                    for i, row in enumerate(_details(scores, y[idx[name]])):
                        extra[(probe, lo + i)] = row
    if not_converged:
        warnings.warn(
            f"the logistic probe did not reach tol={tol} in {max_iter} iterations for layers "
            f"{not_converged[:8]}; raise max_iter",
            ConvergenceWarning,
            stacklevel=2,
        )
    rows: list[dict[str, Any]] = []
    for i, name in enumerate(names):
        for probe in probes:
            val, test = results[probe]["probe_val"], results[probe][test_name]
            rows.append(
                {
                    "layer": name,
                    "probe": probe,
                    "n_train": int(len(tr)),
                    "val_acc": float(val[0, i]),
                    "val_auroc": float(val[1, i]),
                    "test_acc": float(test[0, i]),
                    "test_auroc": float(test[1, i]),
                    **extra.get((probe, i), {}),
                }
            )
    return rows


def _details(scores: Tensor, y: np.ndarray) -> list[dict[str, Any]]:
    """Per layer: n_test, Wilson interval of accuracy, DeLong interval of AUROC, correctness."""
    from tracing_bench.stats import auroc_interval, wilson_interval

    s = scores.detach().to(torch.float64).cpu().numpy()
    out = []
    for row in s:
        correct = (row > 0).astype(np.int64) == y
        acc_lo, acc_hi = wilson_interval(int(correct.sum()), int(correct.size))
        _, auc_lo, auc_hi = auroc_interval(row, y)
        out.append({"n_test": int(correct.size), "test_acc_lo": acc_lo, "test_acc_hi": acc_hi,
                    "test_auroc_lo": auc_lo, "test_auroc_hi": auc_hi, "test_correct": correct})
    return out


def _layer_names(layers: list[int] | None, n: int) -> list[int]:
    if layers is None:
        return list(range(n))
    if len(layers) != n:
        raise TracingBenchError(
            f"layers names {len(layers)} layers but acts has {n}; give one number per layer"
        )
    return [int(v) for v in layers]


def _mass_mean(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Direction mean(1) - mean(0) and the midpoint threshold, batched: (w [L, d], b [L]).

    Both means come from products X^T v with v = 1/n1 on one class and -1/n0 (or +1/n0) on
    the other: two passes over x in its own dtype, no float64 copy of the activations.
    """
    pos = y.to(device=x.device, dtype=torch.bool)
    n1, n0 = int(pos.sum()), int((~pos).sum())
    one = torch.ones(pos.shape, dtype=torch.float64, device=x.device)
    a = torch.where(pos, one / max(n1, 1), 0.0)
    c = torch.where(pos, 0.0, one / max(n0, 1))
    live = list(range(x.shape[0])) if _cpu_loop(x) else None
    v = torch.stack([a - c, a + c]).to(x.dtype)  # mu1 - mu0, mu1 + mu0
    diff = _rmatvec(x, v[0].expand(x.shape[0], -1), live)
    total = _rmatvec(x, v[1].expand(x.shape[0], -1), live)
    w = diff
    b = -(w * total).sum(-1) / 2
    return w, b


# --------------------------------------------------------------------------------------------
# scikit-learn estimators


class _BinaryProbe(ClassifierMixin, BaseEstimator):
    """Shared parts of the binary linear estimators: labels, scores, probabilities."""

    def _check_xy(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        X, y = _validate_data(self, X, y, dtype=[np.float64, np.float32], y_numeric=False)
        check_classification_targets(y)
        classes, y_idx = np.unique(y, return_inverse=True)
        if len(classes) > 2:  # wording that scikit-learn's checks expect
            raise TracingBenchError(
                f"Only binary classification is supported: {type(self).__name__} got y with "
                f"{len(classes)} classes ({classes[:5].tolist()}); give labels of exactly two classes"
            )
        if len(classes) < 2:
            raise TracingBenchError(
                f"{type(self).__name__} got y with one class ({classes.tolist()}); "
                "a probe needs labels of exactly two classes"
            )
        self.classes_ = classes
        return X, y_idx.astype(np.float64)

    def decision_function(self, X: Any) -> np.ndarray:
        """Signed distance-like score; positive means ``classes_[1]``."""
        check_is_fitted(self)
        X = _validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return (X @ self.coef_.T.astype(X.dtype)).ravel().astype(np.float64) + self.intercept_[0]

    def predict(self, X: Any) -> np.ndarray:
        """Class labels (``classes_[1]`` where the decision function is positive)."""
        check_is_fitted(self)
        return self.classes_[(self.decision_function(X) > 0).astype(np.int64)]

    def predict_proba(self, X: Any) -> np.ndarray:
        """[n, 2] probabilities of ``classes_[0]`` and ``classes_[1]``."""
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.stack([1.0 - p, p], axis=1)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log of :meth:`predict_proba`."""
        z = self.decision_function(X)
        return np.stack([-np.logaddexp(0.0, z), -np.logaddexp(0.0, -z)], axis=1)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {"binary_only": True}


class LinearProbe(_BinaryProbe):
    """Binary logistic-regression probe with scikit-learn's objective (L2, C, lbfgs-equivalent).

    Same minimiser as ``sklearn.linear_model.LogisticRegression(C=C)``; fitted by the batched
    preconditioned L-BFGS of :func:`fit_logistic` in float64 on the CPU. Put a
    ``StandardScaler`` in front for the paper's standardisation:
    ``make_pipeline(StandardScaler(), LinearProbe())``.

    Args:
        C: inverse L2 regularisation strength.
        fit_intercept: learn an unpenalised intercept.
        tol: stop when the largest absolute gradient entry of the mean-scaled objective is at
            most ``tol`` (the meaning of scikit-learn's ``tol`` for lbfgs; same default).
        max_iter: L-BFGS iterations at most.

    Attributes:
        classes_: the two labels. coef_: [1, n_features]. intercept_: [1]. n_iter_: [1].
        n_features_in_: number of features seen in ``fit``.

    >>> LinearProbe(C=1.0).fit(X, y).score(X_val, y_val)  # doctest: +SKIP
    """

    def __init__(
        self, C: float = 1.0, *, fit_intercept: bool = True, tol: float = 1e-4, max_iter: int = 1000
    ) -> None:
        self.C = C
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, X: Any, y: Any) -> LinearProbe:
        """Fit on X [n, d] and binary labels y [n]; returns self."""
        X, y01 = self._check_xy(X, y)
        x = torch.tensor(np.asarray(X, dtype=np.float64)).unsqueeze(0)
        fit = fit_logistic(
            x,
            torch.from_numpy(y01),
            C=self.C,
            fit_intercept=self.fit_intercept,
            tol=self.tol,
            max_iter=self.max_iter,
        )
        self.coef_ = fit.coef.numpy().reshape(1, -1)
        self.intercept_ = fit.intercept.numpy().reshape(1)
        self.n_iter_ = fit.n_iter.numpy().astype(np.int32)
        if not bool(fit.converged.all()):
            warnings.warn(
                f"LinearProbe did not reach tol={self.tol} in max_iter={self.max_iter} iterations; "
                "raise max_iter or standardise the features",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self


class MassMeanProbe(_BinaryProbe):
    """Mass-mean probe: direction = mean(class 1) - mean(class 0), the steering direction.

    ``threshold="midpoint"`` (default): the boundary is the hyperplane through the midpoint of
    the two class means, orthogonal to the direction; ``decision_function`` is the projection
    onto the (unnormalised) direction minus that midpoint, and ``predict_proba`` is its sigmoid:
    monotone in the score, but not calibrated. ``threshold="logistic"``: the scale and offset of
    the projection are fitted by a 1-D logistic regression (C = 1e4), so probabilities are
    calibrated and the boundary sits where the classes balance on the training data.

    Attributes:
        classes_, coef_ [1, n_features], intercept_ [1], direction_ [n_features] (the raw mean
        difference), n_features_in_.
    """

    def __init__(self, *, threshold: Literal["midpoint", "logistic"] = "midpoint") -> None:
        self.threshold = threshold

    def fit(self, X: Any, y: Any) -> MassMeanProbe:
        """Fit on X [n, d] and binary labels y [n]; returns self."""
        if self.threshold not in ("midpoint", "logistic"):
            raise TracingBenchError(
                f"threshold={self.threshold!r}: valid thresholds are 'midpoint' and 'logistic'"
            )
        X, y01 = self._check_xy(X, y)
        x = torch.tensor(np.asarray(X, dtype=np.float64)).unsqueeze(0)
        w, b = _mass_mean(x, torch.from_numpy(y01))
        self.direction_ = w[0].numpy().copy()
        if self.threshold == "midpoint":
            self.coef_ = w.numpy().reshape(1, -1)
            self.intercept_ = b.numpy().reshape(1)
        else:
            proj = (x[0] @ w[0]).reshape(1, -1, 1)
            scale = float(proj.std()) or 1.0
            fit = fit_logistic(proj / scale, torch.from_numpy(y01), C=1e4, tol=1e-8)
            a = float(fit.coef[0, 0]) / scale
            self.coef_ = (a * w).numpy().reshape(1, -1)
            self.intercept_ = fit.intercept.numpy().reshape(1)
        return self
