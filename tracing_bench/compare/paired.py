"""Paired tests of a trust task's metric between two runs on the same documents.

The gate pairs documents by ``doc_id``. A metric that is a mean of per-document values (``acc``,
``p_trust``) gets the paired z-test of :mod:`tracing_bench.compare.gate`; a metric whose
aggregation combines the documents (Matthews correlation, Cohen's kappa, AUROC,
``2 * mean - 1``: :func:`tracing_bench.tasks.metrics.aggregation_for`) has no closed form for
the change, so :func:`paired_bootstrap` resamples the matched documents together (the same
draw for both runs) and recomputes the metric on each side: the drop is the metric's change,
and its z is the drop over the bootstrap spread of the change.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import jsonlines
import numpy as np

from tracing_bench.errors import TracingBenchError

#: Resamples of the paired bootstrap.
N_BOOT = 2000


def read_items(path: str | os.PathLike[str], metric: str) -> dict[int, Any]:
    """doc_id -> the raw per-document item of ``metric`` in an lm-eval sample log (``samples_*.jsonl``).

    The one reader of sample logs for the gate: :func:`tracing_bench.compare.gate.read_samples`
    keeps the items that are plain numbers.

    Raises:
        TracingBenchError: unreadable file, a line that is not JSON, or a line that is not a sample
            with ``doc_id`` and ``metric``.
    """
    out: dict[int, Any] = {}
    i = 0
    row: Any  # a JSON value: a sample is an object, anything else is refused below
    try:
        with jsonlines.open(path) as reader:
            for i, row in enumerate(reader.iter(skip_empty=True), start=1):
                try:
                    out[int(row["doc_id"])] = row[metric]
                except (KeyError, TypeError, ValueError):
                    raise TracingBenchError(
                        f"{path}, line {i}: not an lm-eval sample with doc_id and {metric!r}; give lm-eval's "
                        "samples_*.jsonl"
                    ) from None
    except OSError as e:
        raise TracingBenchError(f"{path}: cannot read ({e.strerror}); give readable lm-eval sample logs") from None
    except jsonlines.InvalidLineError:
        raise TracingBenchError(
            f"{path}, line {i + 1}: not JSON, so not an lm-eval sample log; give lm-eval's samples_*.jsonl"
        ) from None
    return out


def paired_bootstrap(
    base: Sequence[Any],
    cur: Sequence[Any],
    aggregate: Callable[[Sequence[Any]], float],
    *,
    sign: float = 1.0,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> tuple[float, float]:
    """The drop ``sign * (aggregate(base) - aggregate(cur))`` and its z over a paired bootstrap.

    Args:
        base, cur: per-document items of the two runs, in the same document order.
        aggregate: the metric's aggregation (items -> value).
        sign: +1 when higher is better, -1 when lower is.
        n_boot, seed: resamples and their seed.

    Returns:
        ``(drop, z)``: z is ``drop / sd`` of the resampled drops; +-inf when that sd is 0 and the
        drop is not, 0 when both are 0.
    """
    if len(base) != len(cur) or not base:
        raise TracingBenchError(f"paired bootstrap needs the same documents on both sides ({len(base)} vs {len(cur)})")
    drop = sign * (aggregate(base) - aggregate(cur))
    rng = np.random.default_rng(seed)
    n = len(base)
    drops = np.empty(n_boot)
    for k in range(n_boot):
        idx = rng.integers(0, n, n)
        drops[k] = sign * (aggregate([base[i] for i in idx]) - aggregate([cur[i] for i in idx]))
    drops = drops[np.isfinite(drops)]
    sd = float(drops.std(ddof=1)) if drops.size > 1 else 0.0
    if math.isnan(drop):
        return drop, math.nan
    if sd == 0:
        return drop, (math.inf if drop > 0 else (-math.inf if drop < 0 else 0.0))
    return drop, drop / sd
