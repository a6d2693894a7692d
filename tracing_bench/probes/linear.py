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
[layers, n, d] tensors (device and dtype follow the input: float32 or float64, CPU or CUDA),
preconditioned by Boehning's bound on the Hessian, M = X~^T X~ / 4 + diag(1/C, ..., 1/C, 0)
(X~ = [X, 1]), Cholesky-factored once per layer: the first step is the bound's
majorise-minimise step and L-BFGS corrects it from there, so a well-conditioned problem needs a
few tens of matrix-vector products instead of hundreds. When d >= n the problem is first reduced
exactly to n features by a thin QR of X^T (the optimal w lies in the row space of X).
Function values, gradients and the L-BFGS state are float64; only the products with X use the
data's dtype.

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
    history: int = 10,
) -> LogisticFit:
    """L2-regularised logistic regression for a batch of problems (all layers at once).

    Minimises ``mean_i logloss + ||w||^2 / (2 C n)`` (scikit-learn's scaling of the same
    objective) for each of the ``layers`` problems.

    Args:
        x: [layers, n, d] float32 or float64 tensor (any device).
        y: [n] or [layers, n] labels in {0, 1}.
        C: inverse regularisation strength (scikit-learn's ``C``).
        fit_intercept: learn an unpenalised intercept.
        tol: stop a layer when the largest absolute gradient entry of the mean-scaled
            objective is at most ``tol`` (scikit-learn's ``tol`` for lbfgs, same default).
        max_iter: L-BFGS iterations at most.
        history: L-BFGS memory.

    Returns:
        :class:`LogisticFit`.
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
    if not (isinstance(max_iter, (int, np.integer)) and max_iter >= 1):
        raise TracingBenchError(f"max_iter={max_iter!r}: give a positive integer")
    if not (isinstance(tol, (int, float)) and tol >= 0):
        raise TracingBenchError(f"tol={tol!r}: give a non-negative number")
    dev, f64 = x.device, torch.float64
    yy = y.to(device=dev, dtype=f64)
    if yy.ndim == 1:
        yy = yy.expand(n_layers, n)
    feats, basis = x, None
    if d >= n:  # exact reduction to the row space of x: x = R^T Q^T, w = Q beta
        q, r = torch.linalg.qr(x.mT.to(f64) if x.dtype == f64 else x.mT)
        feats, basis = r.mT.contiguous(), q
    p = feats.shape[-1]
    prob = _Problem(feats, yy, C, fit_intercept)
    theta = torch.zeros(n_layers, p + 1, dtype=f64, device=dev)
    theta, n_iter, converged = _lbfgs(prob, theta, tol=tol, max_iter=int(max_iter), history=history)
    w = theta[:, :p]
    if basis is not None:
        w = (basis.to(f64) @ w.unsqueeze(-1)).squeeze(-1)
    return LogisticFit(coef=w, intercept=theta[:, p], n_iter=n_iter, converged=converged)


def _matvec(x: Tensor, w: Tensor) -> Tensor:
    """x [L, n, d] times w [L, d] -> [L, n]; on the CPU a loop of mv beats bmm by ~3x."""
    if x.device.type != "cpu":
        return (x @ w.unsqueeze(-1)).squeeze(-1)
    return torch.stack([torch.mv(x[i], w[i]) for i in range(x.shape[0])])


def _rmatvec(x: Tensor, r: Tensor) -> Tensor:
    """x [L, n, d] transposed times r [L, n] -> [L, d]."""
    if x.device.type != "cpu":
        return (r.unsqueeze(1) @ x).squeeze(1)
    return torch.stack([torch.mv(x[i].T, r[i]) for i in range(x.shape[0])])


class _Problem:
    """Objective, gradient and preconditioner of a batch of logistic regressions."""

    def __init__(self, x: Tensor, y: Tensor, C: float, fit_intercept: bool) -> None:
        self.x, self.y = x, y
        self.n = x.shape[1]
        self.reg = 1.0 / (C * self.n)
        self.fit_intercept = fit_intercept
        self.dtype = x.dtype
        # Boehning's bound on the Hessian of the mean loss, X~^T X~ / (4 n) + reg (w only); it is
        # only a preconditioner, so the data's dtype is precise enough (M >= reg I, and the
        # float32 factor is ~1e-3 accurate even at condition numbers of 1e4)
        p = x.shape[-1]
        m = torch.zeros(x.shape[0], p + 1, p + 1, dtype=x.dtype, device=x.device)
        m[:, :p, :p] = (x.mT @ x) / (4 * self.n)
        m[:, :p, :p].diagonal(dim1=-2, dim2=-1).add_(self.reg)
        if fit_intercept:
            colsum = x.sum(1) / (4 * self.n)
            m[:, :p, p] = colsum
            m[:, p, :p] = colsum
            m[:, p, p] = 0.25
        else:
            m[:, p, p] = 1.0
        chol, info = torch.linalg.cholesky_ex(m)
        if bool((info != 0).any()):  # float32 rounding on a nearly singular Gram matrix
            chol = torch.linalg.cholesky(m.to(torch.float64)).to(x.dtype)
        self.chol = chol

    def scores(self, theta: Tensor) -> Tensor:
        z = _matvec(self.x, theta[:, :-1].to(self.dtype)).to(torch.float64)
        if self.fit_intercept:
            z = z + theta[:, -1:]
        return z

    def value(self, theta: Tensor, z: Tensor) -> Tensor:
        w = theta[:, :-1]
        loss = (torch.nn.functional.softplus(z) - self.y * z).mean(-1)
        return loss + 0.5 * self.reg * (w * w).sum(-1)

    def grad(self, theta: Tensor, z: Tensor) -> Tensor:
        r = (torch.sigmoid(z) - self.y) / self.n
        gw = _rmatvec(self.x, r.to(self.dtype)).to(torch.float64)
        gw = gw + self.reg * theta[:, :-1]
        gb = r.sum(-1, keepdim=True) if self.fit_intercept else torch.zeros_like(r[:, :1])
        return torch.cat([gw, gb], dim=-1)

    def precondition(self, v: Tensor) -> Tensor:
        """M^-1 v (float64 in and out)."""
        vv = v.to(self.dtype)
        if v.device.type != "cpu":
            return torch.cholesky_solve(vv.unsqueeze(-1), self.chol).squeeze(-1).to(v.dtype)
        out = torch.empty_like(vv)
        for i in range(v.shape[0]):  # 2-D solves: the batched kernels are slow for one vector
            lo = torch.linalg.solve_triangular(self.chol[i], vv[i, :, None], upper=False)
            out[i] = torch.linalg.solve_triangular(self.chol[i].mT, lo, upper=True)[:, 0]
        return out.to(v.dtype)


def _lbfgs(
    prob: _Problem, theta: Tensor, *, tol: float, max_iter: int, history: int
) -> tuple[Tensor, Tensor, Tensor]:
    n_layers, dim = theta.shape
    dev, f64 = theta.device, torch.float64
    z = prob.scores(theta)
    f = prob.value(theta, z)
    g = prob.grad(theta, z)
    s_hist = torch.zeros(history, n_layers, dim, dtype=f64, device=dev)
    y_hist = torch.zeros_like(s_hist)
    rho = torch.zeros(history, n_layers, dtype=f64, device=dev)
    n_hist = 0
    n_iter = torch.zeros(n_layers, dtype=torch.long, device=dev)
    active = g.abs().amax(-1) > tol
    slack = 16 * torch.finfo(prob.dtype).eps
    for _ in range(max_iter):
        if not bool(active.any()):
            break
        # two-loop recursion with H0 = M^-1 (ring buffer, newest at (n_hist - 1) % history)
        q = g.clone()
        alphas = []
        order = [(n_hist - 1 - k) % history for k in range(min(n_hist, history))]
        for k in order:
            a = rho[k] * (s_hist[k] * q).sum(-1)
            q -= a.unsqueeze(-1) * y_hist[k]
            alphas.append(a)
        r = prob.precondition(q)
        for k, a in zip(reversed(order), reversed(alphas)):
            b = rho[k] * (y_hist[k] * r).sum(-1)
            r += (a - b).unsqueeze(-1) * s_hist[k]
        direction = -r
        gd = (g * direction).sum(-1)
        bad = gd >= 0  # not a descent direction (rounding): restart from the preconditioned gradient
        if bool(bad.any()):
            direction = torch.where(bad.unsqueeze(-1), -prob.precondition(g), direction)
            gd = (g * direction).sum(-1)
        # backtracking (Armijo) line search, per layer
        step = torch.ones(n_layers, dtype=f64, device=dev)
        todo = active.clone()
        new_theta, new_z, new_f = theta.clone(), z.clone(), f.clone()
        for _ls in range(40):
            trial = theta + (step * todo).unsqueeze(-1) * direction
            tz = prob.scores(trial)
            tf = prob.value(trial, tz)
            ok = todo & (tf <= f + 1e-4 * step * gd + slack * f.abs().clamp_min(1.0))
            new_theta = torch.where(ok.unsqueeze(-1), trial, new_theta)
            new_z = torch.where(ok.unsqueeze(-1), tz, new_z)
            new_f = torch.where(ok, tf, new_f)
            todo &= ~ok
            if not bool(todo.any()):
                break
            step = torch.where(todo, step * 0.5, step)
        stalled = todo  # no decrease found: the layer is as good as rounding allows
        new_g = prob.grad(new_theta, new_z)
        moved = active & ~stalled
        s = new_theta - theta
        yv = new_g - g
        sy = (s * yv).sum(-1)
        good = moved & (sy > 1e-12 * (s * s).sum(-1).sqrt() * (yv * yv).sum(-1).sqrt())
        slot = n_hist % history
        s_hist[slot] = torch.where(good.unsqueeze(-1), s, 0.0)
        y_hist[slot] = torch.where(good.unsqueeze(-1), yv, 0.0)
        rho[slot] = torch.where(good, 1.0 / sy.where(good, torch.ones_like(sy)), 0.0)
        n_hist += 1
        theta, z, f, g = new_theta, new_z, new_f, torch.where(active.unsqueeze(-1), new_g, g)
        n_iter += active.long()
        active = active & ~stalled & (g.abs().amax(-1) > tol)
    converged = g.abs().amax(-1) <= tol
    return theta, n_iter, converged


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
    for lo in range(0, n_layers, chunk):
        part = t[lo : lo + chunk]
        x_tr = part[:, torch.as_tensor(tr, device=dev)]
        evals = {name: part[:, torch.as_tensor(idx[name], device=dev)] for name in eval_names}
        if protocol == "paper":  # probe-train statistics, ddof 0 (StandardScaler)
            mean, std = x_tr.mean(1, keepdim=True), x_tr.std(1, keepdim=True, correction=0)
        else:  # whole-file statistics, torch.std (ddof 1) like the released code
            mean, std = part.mean(1, keepdim=True), part.std(1, keepdim=True, correction=1)
        _check_finite(torch.cat([mean, std], 1), lo)  # NaN/inf in the fitted rows propagate here
        std = torch.where(std > 0, std, torch.ones_like(std))
        for xs in (x_tr, *evals.values()):
            xs.sub_(mean).div_(std)
        for probe in probes:
            if probe == "logistic":
                fit = fit_logistic(x_tr, y_tr, C=C, tol=tol, max_iter=max_iter)
                w, b = fit.coef, fit.intercept
                not_converged += [names[lo + i] for i in (~fit.converged).nonzero().flatten().tolist()]
            else:
                w, b = _mass_mean(x_tr, y_tr)
            for name, xe in evals.items():
                scores = (xe @ w.to(xe.dtype).unsqueeze(-1)).squeeze(-1).to(torch.float64) + b.unsqueeze(-1)
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
    """Direction mean(1) - mean(0) and the midpoint threshold, batched: (w [L, d], b [L])."""
    x64 = x.to(torch.float64)
    pos = y.to(torch.bool)
    mu1 = x64[:, pos].mean(1)
    mu0 = x64[:, ~pos].mean(1)
    w = mu1 - mu0
    b = -(w * (mu1 + mu0)).sum(-1) / 2
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
