"""Gaussian kernels and their normalised factors: the linear algebra behind nHSIC (:mod:`.mi`).

The released code's nHSIC (docs/METHOD.md, "Mutual information"): for A of shape [m, d],
K_ij = exp(-||a_i - a_j||^2 / (2 sigma^2 d)), Kc = K H with H = I - 11^T / m,
R = Kc (Kc + eps m I)^-1 and nHSIC(A, B) = trace(R_A R_B). The released code inverts four m x m
matrices per layer in float32; here the same number is computed in float64 from Cholesky factors.
On the CPU the dense linear algebra runs through numpy and OpenBLAS (syrk for the Gram matrix;
potrf, potri and trsm through :mod:`.lapack`, which lets other threads run), one layer per call
(:mod:`.mi` runs layers in parallel threads);
on other devices through torch, layers batched as memory allows.

Algebra (checked numerically in tests/test_probes_mi.py). Write lam = eps m and u = 1/sqrt(m).
Kc = K H kills u (Kc u = 0), so in an orthonormal basis [Q, u] (H = Q Q^T)

    Kc ~ [[S, 0], [b^T, 0]],  S = Q^T K Q,   R ~ [[S (S + lam)^-1, 0], [c^T, 0]],

and the cross terms in b, c drop out of the trace: trace(R_A R_B) = trace(P_A P_B) with the
symmetric P = Kt (Kt + lam I)^-1 = I - lam (Kt + lam I)^-1, Kt = H K H (double centring; the
u direction has eigenvalue 0 in Kt and in P). Once per call, the X side is factored: the
Cholesky factor of A = Kt_X + lam I gives P_X = I - lam A^-1 (one Cholesky inverse, 2 m^3 / 3
flops), and V = chol(P_X + u u^T). P_X is singular in the u direction only (unless X repeats
statements), and u u^T lifts that eigenvalue to 1, so the factorisation succeeds at once; since
P_T u = 0 too, the term it adds, u^T P_T u, is rounding, and it is subtracted exactly below. (Where
X repeats statements, P_X has more zero eigenvalues: a jitter delta I is added as well, the
smallest of 1e-12, 1e-10, ... that factors, which adds delta * trace(P_T) <= delta * m.) Each
layer then costs one Gram matrix, one Cholesky factor of B = Kt_T + lam I = L L^T and one
triangular solve (B is well conditioned: eigenvalues in [lam, lam + ||Kt||]):

    I(X;T) = trace(V^T P_T V) - u^T P_T u = ||V||_F^2 - lam ||L^-1 V||_F^2 - u^T P_T u,

the solve using that V is lower triangular (column block j only needs L[j:, j:]), and u^T P_T u
computed as the label side's terms are (below).
The label kernel has at most k distinct rows
(k = 2 for binary labels), so Kt_Y = W G W^T with W = H E (E the one-hot [m, k] indicator, G the
k x k kernel of the distinct values) has rank <= k - 1: P_Y = sum_j f_j z_j z_j^T with
orthonormal z_j and f_j = g_j / (g_j + lam), and

    I(Y;T) = sum_j f_j (Kt_T z_j) . (B^-1 z_j)        (one Cholesky solve, no cancellation).

For binary labels this is f v^T P_T v / ||v||^2 with v = H e_1 and
g = 2 (1 - exp(-1 / (2 sigma^2))) n_1 n_0 / m.

"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from tracing_bench.errors import TracingBenchError
from tracing_bench.probes import lapack

# at most this many distinct rows -> the low-rank path (labels, one-hot codes)
_LOW_RANK_MAX = 64
# jitters tried, in order, to factor P + u u^T of the layer-0 activations (0 first: P + u u^T
# is positive definite unless the activations repeat statements)
_JITTERS = (0.0, 1e-12, 1e-10, 1e-8)
# column block of the triangular solves with a triangular right-hand side
_BLOCK = 256
# row block of the CPU's kernel matrix (lower triangle only)
_ROWS = 256
# on the CPU, dense linear algebra through numpy / scipy (OpenBLAS), one layer per call (False:
# the batched torch path used on other devices; the tests use it to check that path on a CPU)
_CPU_LAPACK = True


def lapack_on(device: torch.device) -> bool:
    """Whether the dense linear algebra on ``device`` runs through numpy / scipy (the CPU)."""
    return device.type == "cpu" and _CPU_LAPACK


def _np_la(t: Tensor) -> bool:
    return lapack_on(t.device)


# ---------------------------------------------------------------------------------------------
# dense linear algebra: numpy / scipy (OpenBLAS) on the CPU, torch elsewhere. On the AMD EPYC
# measured, OpenBLAS ran the m = 1500 float64 Gram 2.1x (numpy uses syrk for a @ a.T, half the
# flops), the Cholesky factor 1.6x and the Cholesky inverse 1.6x faster than torch's MKL at
# one thread. CPU tensors share memory with the numpy arrays, so nothing is copied.


def _stack(parts: list[Tensor]) -> Tensor:
    """torch.stack, without the copy for a single part (the CPU path runs one layer at a time)."""
    return parts[0].unsqueeze(0) if len(parts) == 1 else torch.stack(parts)


def _gram(a: Tensor) -> Tensor:
    """a a^T for [..., m, d] -> [..., m, m]."""
    if not _np_la(a):
        return a @ a.mT
    if a.ndim == 2:
        an = a.numpy()
        return torch.from_numpy(an @ an.T)
    flat = a.reshape(-1, *a.shape[-2:])
    return _stack([_gram(x) for x in flat]).reshape(*a.shape[:-1], a.shape[-2])


def _rows(a: np.ndarray) -> np.ndarray:
    """a itself when its rows are contiguous (a sub-block of a C-ordered matrix), else a C-ordered copy."""
    return (
        a
        if a.dtype == np.float64 and a.strides[1] == 8 and a.strides[0] % 8 == 0
        else np.ascontiguousarray(a, np.float64)
    )


def _chol_ex(b: Tensor) -> tuple[Tensor, bool]:
    """Lower Cholesky factor of b [..., m, m] and whether every factorisation succeeded."""
    if not _np_la(b):
        chol, info = torch.linalg.cholesky_ex(b)
        return chol, not bool((info != 0).any())
    if b.ndim > 2:
        parts = [_chol_ex(x) for x in b.reshape(-1, *b.shape[-2:])]
        return _stack([c for c, _ in parts]).reshape(b.shape), all(ok for _, ok in parts)
    chol, ok = lapack.cholesky_lower(_rows(b.numpy()))  # lets other threads run (.lapack)
    return (torch.from_numpy(chol), True) if ok else (b, False)


def _chol_inverse(chol: Tensor, lower_only: bool = False) -> Tensor:
    """A^-1 from the lower Cholesky factor of A [m, m]; with ``lower_only`` the strict upper
    triangle may be left unfilled (LAPACK's potri writes one triangle)."""
    if not _np_la(chol):
        return torch.cholesky_inverse(chol)
    inv, info = lapack.cholesky_inverse_lower(_rows(chol.numpy()))
    if info != 0:  # pragma: no cover - chol came from a successful factorisation
        raise TracingBenchError("the Cholesky inverse failed; use a larger eps")
    if lower_only:
        return torch.from_numpy(inv)
    return torch.from_numpy(np.tril(inv) + np.tril(inv, -1).T)


def _solve_lower(chol: Tensor, rhs: Tensor) -> Tensor:
    """L^-1 rhs for a lower-triangular L [m, m] and rhs [m, k]."""
    if not _np_la(chol):
        return torch.linalg.solve_triangular(chol, rhs, upper=False)
    return torch.from_numpy(lapack.solve_lower(_rows(chol.numpy()), rhs.numpy()))


def _cho_solve(chol: Tensor, rhs: Tensor) -> Tensor:
    """A^-1 rhs from the lower Cholesky factor of A, batched over leading dimensions."""
    if not _np_la(chol):
        return torch.cholesky_solve(rhs, chol)
    if chol.ndim > 2:
        return _stack([_cho_solve(c, r) for c, r in zip(chol, rhs, strict=True)])
    out = scipy.linalg.cho_solve((chol.numpy(), True), rhs.numpy(), check_finite=False)
    return torch.from_numpy(np.ascontiguousarray(out))


def gaussian_kernel(a: Tensor, sigma: float = 50.0) -> Tensor:
    """The released code's Gaussian kernel matrix, batched over leading dimensions.

    Args:
        a: [..., m, d] tensor (float64 recommended).
        sigma: kernel width; the squared distance is divided by ``2 sigma^2 d``.

    Returns:
        [..., m, m] tensor ``exp(-||a_i - a_j||^2 / (2 sigma^2 d))``.
    """
    d = a.shape[-1]
    a = a - a.mean(dim=-2, keepdim=True)  # distances are shift-invariant; less cancellation
    sq = (a * a).sum(-1)
    k = _gram(a).mul_(-2.0)  # squared distances ||a_i||^2 + ||a_j||^2 - 2 a_i . a_j, in place
    k.add_(sq.unsqueeze(-1)).add_(sq.unsqueeze(-2))
    k.abs_().mul_(-1.0 / (2.0 * sigma * sigma * d))
    if _np_la(k):  # numpy's float64 exp is faster than torch's on the CPUs measured
        kn = k.numpy()
        np.exp(kn, out=kn)
        return k
    return k.exp_()


def regularised_centred_kernel(a: Tensor, sigma: float, lam: float) -> Tensor:
    """B = H K H + lam I (batched), built in place.

    On the CPU only the lower triangle is filled (by row blocks, so half the exponentials):
    the Cholesky factor reads nothing else, and the products with B are symmetric ones
    (:func:`_sym_product`). Other devices get the whole matrix.
    """
    if _np_la(a):
        flat = a.reshape(-1, *a.shape[-2:])
        parts = [torch.from_numpy(_centred_kernel_lower(x.numpy(), sigma, lam)) for x in flat]
        return _stack(parts).reshape(*a.shape[:-1], a.shape[-2])
    k = gaussian_kernel(a, sigma)
    col = k.mean(dim=-2)  # K is symmetric: row means = column means
    k.sub_(col.unsqueeze(-1)).sub_((col - col.mean(dim=-1, keepdim=True)).unsqueeze(-2))
    k.diagonal(dim1=-2, dim2=-1).add_(lam)
    return k


def _centred_kernel_lower(a: np.ndarray, sigma: float, lam: float) -> np.ndarray:
    """The lower triangle of H K H + lam I for a [m, d] (float64); the strict upper is not filled.

    Row block [r0, r1) works on columns [0, r1): the triangle and the block's own diagonal
    square, which is whole, so K's row sums (= column sums) come from the filled part.
    """
    m, d = a.shape
    a = a - a.mean(axis=0)  # distances are shift-invariant; less cancellation
    sq = np.einsum("ij,ij->i", a, a)
    k = a @ a.T  # syrk
    scale = -1.0 / (2.0 * sigma * sigma * d)
    sums = np.zeros(m)
    blocks = [(r0, min(m, r0 + _ROWS)) for r0 in range(0, m, _ROWS)]
    for r0, r1 in blocks:
        rect = k[r0:r1, :r1]
        rect *= -2.0  # squared distances ||a_i||^2 + ||a_j||^2 - 2 a_i . a_j, in place
        rect += sq[r0:r1, None]
        rect += sq[None, :r1]
        np.abs(rect, out=rect)
        rect *= scale
        np.exp(rect, out=rect)
        sums[r0:r1] += rect.sum(axis=1)
        sums[:r0] += rect[:, :r0].sum(axis=0)
    col = sums / m
    half = col - col.mean() / 2  # H K H = K - col 1^T - 1 col^T + mean(col)
    for r0, r1 in blocks:
        rect = k[r0:r1, :r1]
        rect -= half[r0:r1, None]
        rect -= half[None, :r1]
    k.flat[:: m + 1] += lam
    return k


def _sym_product(b: Tensor, z: Tensor) -> Tensor:
    """B z for B [L, m, m] built by :func:`regularised_centred_kernel` and z [L, m, r]."""
    if not _np_la(b):
        return b @ z
    # C-ordered B with its lower triangle filled is F-ordered B^T with its upper triangle filled
    outs = [scipy.linalg.blas.dsymm(1.0, bi.numpy().T, zi.numpy(), lower=0) for bi, zi in zip(b, z, strict=True)]
    return _stack([torch.from_numpy(np.ascontiguousarray(o)) for o in outs])


def cholesky(b: Tensor, what: str, eps: float) -> Tensor:
    """Lower Cholesky factor of B [..., m, m]; one line naming ``what`` when B is not positive definite."""
    chol, ok = _chol_ex(b)
    if not ok:
        raise TracingBenchError(
            f"the regularised kernel of {what} is not numerically positive definite with "
            f"eps={eps!r}; use a larger eps (the released code uses 1e-5)"
        )
    return chol


@dataclass
class LowRank:
    """P = Z diag(f) Z^T with orthonormal Z [m, r]."""

    z: Tensor
    f: Tensor


@dataclass
class Dense:
    """A dense side: B = Kt + lam I, its Cholesky factor, V with V V^T = P + u u^T (+ delta I)."""

    b: Tensor
    chol: Tensor
    v: Tensor
    sq_norm_v: Tensor


def _distinct_rows(a: Tensor) -> tuple[Tensor, Tensor] | None:
    """(distinct rows [k, d], inverse index [m]) if there are few distinct rows, else None."""
    m = a.shape[0]
    if m > 4 * _LOW_RANK_MAX and a.shape[1] == 1:
        # quick rejection for continuous 1-D inputs before the sort
        if torch.unique(a[: 4 * _LOW_RANK_MAX, 0]).numel() > _LOW_RANK_MAX:
            return None
    uniq, inv = torch.unique(a, dim=0, return_inverse=True)
    if uniq.shape[0] > _LOW_RANK_MAX or 2 * uniq.shape[0] > m:
        return None
    return uniq, inv


def _low_rank_factor(uniq: Tensor, inv: Tensor, d: int, sigma: float, lam: float) -> LowRank:
    """P of a kernel with k distinct rows: Kt = W G W^T, W = H E (one-hot E)."""
    m, k = inv.shape[0], uniq.shape[0]
    g = _gaussian_kernel_unique(uniq, d, sigma)
    e = torch.zeros(m, k, dtype=torch.float64, device=uniq.device)
    e[torch.arange(m, device=uniq.device), inv] = 1.0
    w = e - e.mean(dim=0, keepdim=True)
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    keep = s > s.max().clamp_min(1e-300) * max(m, k) * torch.finfo(torch.float64).eps
    if not bool(keep.any()):
        empty = torch.zeros(m, 0, dtype=torch.float64, device=uniq.device)
        return LowRank(empty, torch.zeros(0, dtype=torch.float64, device=uniq.device))
    u, s, vh = u[:, keep], s[keep], vh[keep]
    sv = s.unsqueeze(1) * vh  # Sigma V^T  [r, k]
    mid = sv @ g @ sv.mT
    evals, evecs = torch.linalg.eigh((mid + mid.mT) / 2)
    evals = evals.clamp_min(0.0)
    return LowRank(u @ evecs, evals / (evals + lam))


def _gaussian_kernel_unique(uniq: Tensor, d: int, sigma: float) -> Tensor:
    """Kernel among distinct rows, with the bandwidth of the full input's width ``d``."""
    diff = uniq.unsqueeze(1) - uniq.unsqueeze(0)
    return torch.exp((diff * diff).sum(-1) / (-2.0 * sigma * sigma * d))


def _dense_factor(b: Tensor, lam: float, eps: float, what: str) -> Dense:
    """Cholesky of B = Kt + lam I and a square root V of P + u u^T, P = I - lam B^-1.

    P is positive semi-definite with eigenvalues in [0, 1) and always singular (the constant
    vector u = 1 / sqrt(m), which P_T kills too), so V is the Cholesky factor of P + u u^T
    (:func:`cross` subtracts the term u^T P_T u this adds). Where that is still singular
    (repeated statements), a jitter delta I is added as well, the smallest delta in 1e-12,
    1e-10, ... that succeeds; it adds delta * trace(P_T) <= delta * m to trace(P P_T).
    """
    chol = cholesky(b, what, eps)
    # P = I - lam A^-1 from one Cholesky inverse (2 m^3 / 3 flops); the CPU path fills only the
    # lower triangle, which is all the next factorisation reads
    m = b.shape[-1]
    p = _chol_inverse(chol, lower_only=True).mul_(-lam).add_(1.0 / m)
    p.diagonal().add_(1.0)
    if not _np_la(p):
        p = (p + p.mT) / 2
    for delta in _JITTERS:
        jittered = p.clone() if delta else p
        if delta:
            jittered.diagonal().add_(delta)
        v, ok = _chol_ex(jittered)
        if ok:
            break
    else:  # pragma: no cover - P has eigenvalues >= -1e-15 in exact arithmetic
        raise TracingBenchError(
            f"the normalised kernel of {what} could not be factored; check {what} for huge values or use a larger eps"
        )
    return Dense(b=b, chol=chol, v=v, sq_norm_v=(v * v).sum())


def factor(a: Tensor, sigma: float, lam: float, eps: float, what: str) -> LowRank | Dense:
    """The normalised kernel of one side, factored once: low rank for few distinct rows (labels), else dense."""
    found = _distinct_rows(a)
    if found is not None:
        return _low_rank_factor(found[0], found[1], a.shape[1], sigma, lam)
    return _dense_factor(regularised_centred_kernel(a, sigma, lam), lam, eps, what)


def _cross_low_rank(side: LowRank, b: Tensor, chol_b: Tensor, lam: float) -> Tensor:
    """sum_j f_j z_j^T P_B z_j for a batch of B ([L, m, m]); returns [L].

    z^T P_B z = (Kt_B z) . (B^-1 z) with Kt_B z = B z - lam z: no cancellation.
    """
    if side.z.shape[1] == 0:
        return torch.zeros(b.shape[0], dtype=b.dtype, device=b.device)
    z = side.z.expand(b.shape[0], -1, -1)
    solved = _cho_solve(chol_b, z)
    return ((_sym_product(b, z) - lam * z) * solved).sum(-2) @ side.f


def _sq_norm_solve_lower(chol: Tensor, v: Tensor, block: int = _BLOCK) -> Tensor:
    """||L^-1 V||_F^2 for lower-triangular L [..., m, m] and lower-triangular V [m, m].

    Column block [c0, c1) of V is zero above row c0, and so is the same block of L^-1 V, so it
    only needs the trailing factor L[c0:, c0:]: about m^3 / 3 flops instead of m^3.
    """
    m = chol.shape[-1]
    total = torch.zeros(chol.shape[:-2], dtype=chol.dtype, device=chol.device)
    if _np_la(chol) and chol.ndim > 2:
        return _stack([_sq_norm_solve_lower(c, v, block) for c in chol.reshape(-1, m, m)]).reshape(total.shape)
    for c0 in range(0, m, block):
        c1 = min(m, c0 + block)
        if _np_la(chol):
            w = _solve_lower(chol[c0:, c0:], v[c0:, c0:c1])
        else:
            rhs = v[c0:, c0:c1].expand(*chol.shape[:-2], -1, -1)
            w = torch.linalg.solve_triangular(chol[..., c0:, c0:], rhs, upper=False)
        total += (w * w).sum((-2, -1))
    return total


def _cross_dense(side: Dense, b: Tensor, chol_b: Tensor, lam: float) -> Tensor:
    """trace(P_A P_B) for a batch of B given by their Cholesky factors; returns [L].

    trace(V^T P_B V) - u^T P_B u = ||V||^2 - lam ||L_B^-1 V||^2 - u^T P_B u with
    V V^T = P_A + u u^T (+ jitter); the last term (rounding: P_B u = 0) as the low-rank side's.
    """
    m = b.shape[-1]
    u = LowRank(
        torch.full((m, 1), m**-0.5, dtype=b.dtype, device=b.device), torch.ones(1, dtype=b.dtype, device=b.device)
    )
    return side.sq_norm_v - lam * _sq_norm_solve_lower(chol_b, side.v) - _cross_low_rank(u, b, chol_b, lam)


def cross(side: LowRank | Dense, b: Tensor, chol_b: Tensor, lam: float) -> Tensor:
    """trace(P_side P_B) for a batch of B = Kt + lam I [L, m, m] and their Cholesky factors; returns [L]."""
    if isinstance(side, LowRank):
        return _cross_low_rank(side, b, chol_b, lam)
    return _cross_dense(side, b, chol_b, lam)


def low_low(a: LowRank, b: LowRank) -> Tensor:
    """trace(P_a P_b) of two low-rank sides."""
    c = a.z.mT @ b.z
    return (a.f.unsqueeze(1) * b.f.unsqueeze(0) * c * c).sum()
