"""Three LAPACK / BLAS calls that let other Python threads run: Cholesky, its inverse, a triangular solve.

scipy's own wrappers (``scipy.linalg.cholesky``, ``solve_triangular``, ``lapack.dpotri``) hold
the GIL for the whole call, so layers computed in parallel threads (:mod:`tracing_bench.probes.mi`)
would queue for it. These call the same OpenBLAS routines through the function pointers scipy
exports for Cython (``scipy.linalg.cython_lapack`` / ``cython_blas``) with ctypes, which releases
the GIL during a foreign call. No copy is made of a C-ordered operand: a C-ordered matrix is the
Fortran-ordered transpose, so a lower triangle in C order is an upper one for LAPACK, and a
sub-block keeps the parent's row stride as its leading dimension.

Every function takes float64 numpy arrays whose rows are contiguous (``strides[1] == 8``).
"""

from __future__ import annotations

import ctypes
from functools import cache
from typing import Any

import numpy as np
import scipy.linalg.cython_blas
import scipy.linalg.cython_lapack

__all__ = ["cholesky_lower", "cholesky_inverse_lower", "solve_lower"]

_INT = ctypes.POINTER(ctypes.c_int)
_DBL = ctypes.POINTER(ctypes.c_double)
_CHAR = ctypes.c_char_p
_SIGNATURES: dict[str, tuple[Any, ...]] = {
    "dpotrf": (_CHAR, _INT, ctypes.c_void_p, _INT, _INT),
    "dpotri": (_CHAR, _INT, ctypes.c_void_p, _INT, _INT),
    "dtrsm": (_CHAR, _CHAR, _CHAR, _CHAR, _INT, _INT, _DBL, ctypes.c_void_p, _INT, ctypes.c_void_p, _INT),
}


@cache
def _routine(name: str) -> Any:
    """The routine ``name`` as a ctypes function (ctypes releases the GIL while it runs)."""
    module = scipy.linalg.cython_blas if name == "dtrsm" else scipy.linalg.cython_lapack
    capsule = module.__pyx_capi__[name]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    address = get_pointer(capsule, get_name(capsule))
    return ctypes.CFUNCTYPE(None, *_SIGNATURES[name])(address)


def _ld(a: np.ndarray) -> int:
    """Leading dimension (in elements) of a C-ordered, row-contiguous 2-D array."""
    if a.dtype != np.float64 or a.ndim != 2 or a.strides[1] != 8 or a.strides[0] % 8:
        raise ValueError("expected a float64 matrix with contiguous rows")  # internal misuse only
    return max(1, a.strides[0] // 8, a.shape[1])


def _int(v: int) -> Any:
    return ctypes.byref(ctypes.c_int(int(v)))


def _zero_strict_upper(a: np.ndarray, block: int = 256) -> None:
    m = a.shape[0]
    for r0 in range(0, m, block):
        r1 = min(m, r0 + block)
        a[r0:r1, r1:] = 0.0
        sub = a[r0:r1, r0:r1]
        sub[np.triu_indices(r1 - r0, 1)] = 0.0


def cholesky_lower(a: np.ndarray) -> tuple[np.ndarray, bool]:
    """(L, ok): the lower Cholesky factor of the symmetric a [m, m] (its lower triangle is read),
    a new array with a zero strict upper triangle; ok is False when a is not positive definite."""
    out = np.array(a, dtype=np.float64, order="C")
    m = out.shape[0]
    info = ctypes.c_int(0)
    _routine("dpotrf")(b"U", _int(m), out.ctypes.data, _int(_ld(out)), ctypes.byref(info))
    if info.value != 0:
        return out, False
    _zero_strict_upper(out)
    return out, True


def cholesky_inverse_lower(chol: np.ndarray) -> tuple[np.ndarray, int]:
    """(lower triangle of A^-1, info) from the lower Cholesky factor of A; the strict upper
    triangle of the result is not filled."""
    out = np.array(chol, dtype=np.float64, order="C")
    info = ctypes.c_int(0)
    _routine("dpotri")(b"U", _int(out.shape[0]), out.ctypes.data, _int(_ld(out)), ctypes.byref(info))
    return out, info.value


def solve_lower(chol: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """L^-1 rhs for the lower-triangular chol [n, n] (a view with contiguous rows is read in
    place) and rhs [n, k] (copied); returns a new C-ordered [n, k] array."""
    out = np.array(rhs, dtype=np.float64, order="C")
    n, k = out.shape
    one = ctypes.c_double(1.0)
    # C order: L X = R is X^T U = R^T in Fortran order, with U = L^T the upper-triangular view
    _routine("dtrsm")(
        b"R", b"U", b"N", b"N", _int(k), _int(n), ctypes.byref(one), chol.ctypes.data, _int(_ld(chol)),
        out.ctypes.data, _int(max(1, k)),
    )  # fmt: skip
    return out
