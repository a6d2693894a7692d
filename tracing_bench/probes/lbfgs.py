"""Batched L-BFGS for many logistic regressions at once (one per layer), two passes over X per iteration.

The solver behind :func:`tracing_bench.probes.solver.fit_logistic`, written for its problem
(the problem object of ``fit_logistic``: ``scores``, ``grad``, ``objective`` and the
data's size), on ``[layers, d + 1]`` parameters:

* the L-BFGS matrix in its compact form (Byrd, Nocedal and Schnabel 1994) with memory 40, about
  the iterations a probe needs, so it acts as BFGS: 27 iterations per layer on the benchmark's
  activations where scikit-learn's memory of 10 takes about 50;
* the line search works on the 1-D restriction: with q = X p known, the objective along p and
  its derivatives cost O(n) per trial (z + a q), so a nearly exact search (strong Wolfe,
  c2 = 0.1) is free and no trial touches X;
* scores, per-statement terms, gradients and the L-BFGS state are float64; only the products
  with X use the data's dtype (float32 activations stay float32).

bench/BENCH.md has the timings, the profile and the FLOP floor.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from tracing_bench.errors import TracingBenchError


def as_device(a: np.ndarray, dev: torch.device) -> Tensor:
    """A numpy array as a tensor on ``dev`` (zero-copy on the CPU)."""
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t if dev.type == "cpu" else t.to(dev)


# Wolfe constants of the line search (sufficient decrease, strong curvature) and its most
# trials. A fairly exact search (c2 = 0.1) costs O(n) per trial here and saves iterations:
# on the benchmark's activations 27 iterations on average against 42 with c2 = 0.9.
_C1, _C2, _MAX_LS = 1e-4, 0.1, 20


@torch.no_grad()
def lbfgs(prob: Any, theta: Tensor, *, tol: float, max_iter: int, history: int) -> tuple[Tensor, Tensor, Tensor]:
    """Batched L-BFGS from ``theta``, two passes over x per iteration (see the module docstring).

    Returns ``(theta, n_iter, converged)``: the solution [L, dim] and, per layer, the iterations
    and whether the largest gradient entry reached ``tol``.

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
    head_vals = (
        torch.stack(
            [
                prob.objective(theta, z),
                torch.linalg.vecdot(prob.y, z) / prob.n,
                torch.linalg.vecdot(theta[:, :-1], theta[:, :-1]),
                g.abs().amax(-1),
            ]
        )
        .cpu()
        .numpy()
    )
    f, yz, ww, gmax = (v.copy() for v in head_vals)
    if not np.isfinite(gmax).all():
        bad = np.flatnonzero(~np.isfinite(gmax)).tolist()
        raise TracingBenchError(f"x has NaN or infinite values in layers {bad[:8]}; drop or repair them before fitting")
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
    for _ in range(max_iter):
        live = np.flatnonzero(active)
        if live.size == 0:
            break
        if prob.live is not None:
            prob.live = live.tolist()
        gam_t = as_device(gamma, dev)
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
        wd, dd, yq, sq = (
            torch.stack(
                [
                    torch.linalg.vecdot(w, pw),
                    torch.linalg.vecdot(pw, pw),
                    torch.linalg.vecdot(prob.y, q) / prob.n,
                    torch.linalg.vecdot(sig, q) / prob.n,
                ]
            )
            .cpu()
            .numpy()
        )
        gd = sq - yq + prob.reg * wd
        a, z, sig, f_new, found = _line_search(
            prob,
            z,
            q,
            sig,
            f=f,
            gd=gd,
            yz=yz,
            yq=yq,
            ww=ww,
            wd=wd,
            dd=dd,
            active=active,
            first=count == 0,
            slack=slack,
        )
        a = np.where(found, a, 0.0)
        a_t = as_device(a, dev).unsqueeze(-1)
        s = a_t * direction
        theta = theta + s
        g_new = prob.grad(theta, sig)  # pass 2
        if prob.live is not None and live.size < n_layers:  # finished layers got no gradient
            done = as_device(np.flatnonzero(~active), dev)
            g_new.index_copy_(0, done, g.index_select(0, done))
        yv = g_new - g
        sy, yy, s2, gmax = (
            torch.stack(
                [
                    torch.linalg.vecdot(s, yv),
                    torch.linalg.vecdot(yv, yv),
                    torch.linalg.vecdot(s, s),
                    g_new.abs().amax(-1),
                ]
            )
            .cpu()
            .numpy()
        )
        f = np.where(found, f_new, f)
        yz = yz + a * yq
        ww = ww + a * (2 * wd + a * dd)
        good = active & found & (sy > 1e-10 * np.sqrt(s2 * yy))
        keep = as_device(good.astype(np.float64), dev).unsqueeze(-1)  # (a product: faster than where)
        buf[:, 2 * head] = s * keep
        buf[:, 2 * head + 1] = yv * keep
        with np.errstate(divide="ignore", invalid="ignore"):
            gamma = np.where(good, sy / yy, gamma)
        head, count = (head + 1) % m, min(count + 1, m)
        g = g_new
        n_iter += active
        active = active & found & (gmax > tol)
    return theta, as_device(n_iter, dev), as_device(gmax <= tol, dev)


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
    order = as_device((np.arange(count) + (head - count)) % m, g.device)  # slots, oldest first
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
    prob: Any,
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
    reg, dev = prob.reg, q.device
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
    z_out: Tensor | None = None
    sig_out: Tensor | None = None
    for _ in range(_MAX_LS):
        zz = torch.addcmul(z, as_device(a, dev).unsqueeze(-1), q)
        ss = torch.sigmoid(zz)
        red = torch.stack([torch.nn.functional.softplus(zz).sum(-1), torch.linalg.vecdot(ss, q)]).cpu().numpy() / prob.n
        phi = red[0] - (yz + a * yq) + 0.5 * reg * (ww + a * (2 * wd + a * dd))
        dphi = red[1] - yq + reg * (wd + a * dd)
        armijo = phi <= f + _C1 * a * gd + tol_f
        ok = todo & armijo & (np.abs(dphi) <= -_C2 * gd)
        if ok.any():
            if z_out is None and (ok == todo).all():  # the usual case: every layer at once
                z_out, sig_out = zz, ss  # (a = 0 for the others: zz = z there)
            else:
                okt = as_device(ok, dev).unsqueeze(-1)
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
            zz = torch.addcmul(z, as_device(np.where(late, best_a, 0.0), dev).unsqueeze(-1), q)
            lt = as_device(late, dev).unsqueeze(-1)
            z_out = torch.where(lt, zz, z if z_out is None else z_out)
            sig_out = torch.where(lt, torch.sigmoid(zz), sig if sig_out is None else sig_out)
            a_out, f_out = np.where(late, best_a, a_out), np.where(late, best_f, f_out)
            found |= late
    if z_out is None or sig_out is None:
        z_out, sig_out = z, sig
    return a_out, z_out, sig_out, f_out, found
