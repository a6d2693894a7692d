"""What every probe checks and shares: activations, labels and splits in; scaling and metrics out.

:func:`prepare_inputs` validates ``[layers, statements, hidden]`` activations, 0/1 labels and the
split index arrays (one line naming what is wrong); :func:`standardise` centres and scales every
feature of every layer; :func:`test_details` gives, per layer, the 95 % intervals and the
per-statement correctness that findings.json's paired tests need. Used by the all-layer runner
(:mod:`tracing_bench.probes.layers`), the nHSIC estimator (:mod:`tracing_bench.probes.mi`) and
the released code's protocol (:mod:`tracing_bench.probes.reference`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata
from threadpoolctl import ThreadpoolController
from torch import Tensor

from tracing_bench.dimensions import PROTOCOLS
from tracing_bench.errors import TracingBenchError
from tracing_bench.settings import PROBES
from tracing_bench.stats import auroc_interval, wilson_interval

__all__ = [
    "PROBES",
    "auroc",
    "check_finite",
    "check_probes",
    "layer_names",
    "metrics",
    "one_thread_per_call",
    "prepare_inputs",
    "score_details",
    "standardise",
    "subsample_rows",
    "to_tensor",
]


def to_tensor(acts: Any) -> Tensor:
    """Activations as a tensor: float64 stays float64, any other real dtype becomes float32.

    Raises:
        TracingBenchError: not an array of real numbers.
    """
    if isinstance(acts, Tensor):
        t = acts.detach()
    else:
        try:
            arr = np.asarray(acts)
        except Exception as e:
            raise TracingBenchError(
                f"acts could not be read as an array ({e}); pass a [layers, statements, hidden] numpy array or tensor"
            ) from None
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise TracingBenchError(f"acts has dtype {arr.dtype}; pass float activations [layers, statements, hidden]")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex() or t.dtype == torch.bool:
        raise TracingBenchError(f"acts has dtype {t.dtype}; pass real float activations")
    if t.dtype != torch.float64:
        t = t.to(torch.float32)
    return t


def prepare_inputs(
    acts: Any,
    labels: Any,
    splits: dict[str, Any],
    protocol: str,
    needed: tuple[str, ...],
) -> tuple[Tensor, np.ndarray, dict[str, np.ndarray]]:
    """Validate activations, labels and the splits a probe needs.

    Args:
        acts: [layers, statements, hidden] activations (numpy or torch).
        labels: [statements] 0/1 labels aligned with ``acts[:, i]``.
        splits: ``DimensionData.splits`` (index arrays).
        protocol: ``paper`` or ``reference``.
        needed: the splits that must be present and non-empty.

    Returns:
        ``(acts as a tensor, labels as int64, {split: int64 index array})``.

    Raises:
        TracingBenchError: one line naming what is wrong and what is valid.
    """
    if protocol not in PROTOCOLS:
        raise TracingBenchError(f"protocol={protocol!r} is not known: valid protocols are {', '.join(PROTOCOLS)}")
    t = to_tensor(acts)
    if t.ndim != 3:
        raise TracingBenchError(
            f"acts has shape {tuple(t.shape)}; expected [layers, statements, hidden] (a single layer is acts[None])"
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
    if y.dtype == object or not (
        np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_) or np.issubdtype(y.dtype, np.floating)
    ):
        raise TracingBenchError(f"labels has dtype {y.dtype}; labels must be 0 or 1")
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        raise TracingBenchError(
            f"labels has {int(bad.sum())} values other than 0 and 1 (e.g. {y[bad][0]!r}); the probes are binary"
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


def check_finite(t: Tensor, lo: int = 0) -> None:
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


def auroc(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """AUROC per row of scores [k, n] (ties count one half); NaN when y has one class."""
    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        return np.full(scores.shape[0], np.nan)
    ranks = rankdata(scores, axis=1)
    return (ranks[:, y == 1].sum(1) - n1 * (n1 + 1) / 2) / (n1 * n0)


def metrics(scores: Tensor, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy (a positive score predicts label 1) and AUROC per row of scores [k, n]."""
    s = scores.detach().to(torch.float64).cpu().numpy()
    acc = ((s > 0).astype(np.int64) == y[None]).mean(1)
    return acc, auroc(s, y)


def score_details(scores: Tensor, y: np.ndarray) -> list[dict[str, Any]]:
    """Per row of scores [layers, n_test]: the intervals and correctness of the test split.

    Args:
        scores: decision values (positive = label 1) of the test statements, per layer.
        y: their 0/1 labels.

    Returns:
        one dict per layer: ``n_test``, ``test_acc_lo``/``test_acc_hi`` (95 % Wilson),
        ``test_auroc_lo``/``test_auroc_hi`` (95 % DeLong) and ``test_correct`` (a boolean array:
        statement i classified right), the keys ``probe_layers(..., details=True)`` adds.
    """
    s = scores.detach().to(torch.float64).cpu().numpy()
    out = []
    for row in s:
        correct = (row > 0).astype(np.int64) == y
        acc_lo, acc_hi = wilson_interval(int(correct.sum()), int(correct.size))
        _, auc_lo, auc_hi = auroc_interval(row, y)
        out.append(
            {
                "n_test": int(correct.size),
                "test_acc_lo": acc_lo,
                "test_acc_hi": acc_hi,
                "test_auroc_lo": auc_lo,
                "test_auroc_hi": auc_hi,
                "test_correct": correct,
            }
        )
    return out


def check_probes(probes: str | Sequence[str]) -> tuple[str, ...]:
    """``probes`` as a tuple of known probe names (a single name allowed)."""
    out = (probes,) if isinstance(probes, str) else tuple(probes)
    unknown = [p for p in out if p not in PROBES]
    if unknown or not out:
        raise TracingBenchError(f"probes={list(out)!r}: valid probes are {', '.join(PROBES)}")
    return out


def subsample_rows(n: int, subsample: int | None, seed: int) -> np.ndarray | None:
    """Sorted positions of ``subsample`` of ``n`` rows drawn without replacement with ``seed``;
    ``None`` when every row is used (no subsample, or one at least as large as ``n``)."""
    if subsample is None:
        return None
    if isinstance(subsample, bool) or not isinstance(subsample, (int, np.integer)) or subsample < 2:
        raise TracingBenchError(f"subsample={subsample!r}: give an integer of at least 2 (or None for all statements)")
    if subsample >= n:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=int(subsample), replace=False))


def layer_names(layers: list[int] | None, n: int) -> list[int]:
    """The layer numbers written in the rows: ``layers`` (one per layer of acts) or ``0 .. n - 1``."""
    if layers is None:
        return list(range(n))
    if len(layers) != n:
        raise TracingBenchError(f"layers names {len(layers)} layers but acts has {n}; give one number per layer")
    return [int(v) for v in layers]


_CONTROLLER: list[ThreadpoolController] = []  # made on first use (it lists the loaded BLAS libraries)


@contextmanager
def one_thread_per_call() -> Iterator[None]:
    """A block whose torch and BLAS calls each run on one thread; the settings come back after.

    For the probes' and nHSIC's CPU work: their products are too small for the libraries' own
    threads, which wait for each other at every call (far longer when other jobs hold a core);
    where it pays, the work is split over Python threads instead (:mod:`tracing_bench.probes.mi`).
    """
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    before = torch.get_num_threads()
    with _CONTROLLER[0].limit(limits=1):
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)
