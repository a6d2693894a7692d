"""Data and scoring of trust_robustness: is the answer stable under case-flip typos?

SST-2 sentences come in clean/perturbed pairs (equal after lower-casing: the loader's
``DimensionData.groups``). The model is asked for the sentiment of every sentence; the task
reports ``consistency``, the share of pairs whose two sentences get the same answer. The file has
no sentiment labels, so there is no accuracy; ``positive_rate`` (share answered "positive") is a
diagnostic: a model that always gives the same answer is trivially consistent (rate 0 or 1).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from tracing_bench.tasks.common import _dataset, argmax, test_rows

DIMENSION = "robustness"


def load(**metadata: Any):
    """Test split ordered pair by pair (clean sentence first), so ``--limit 2k`` keeps k pairs."""
    rows = sorted(test_rows(DIMENSION, metadata), key=lambda r: (r["group"], r["label"], r["id"]))
    return _dataset([{**row, "pair": row["group"], "perturbed": row["label"]} for row in rows])


def process_results(doc: dict[str, Any], results: Iterable[tuple[float, bool]]) -> dict[str, Any]:
    """(pair id, predicted choice) for the consistency aggregation; 1.0 when "positive" wins."""
    pred = argmax([float(r[0]) for r in results])
    item = (int(doc["pair"]), pred)
    return {"consistency": item, "score": item, "positive_rate": float(pred)}


def consistency(items: Iterable[tuple[int, int]]) -> float:
    """Share of pairs (ids seen at least twice) whose members all got the same prediction.

    >>> consistency([(0, 1), (0, 1), (1, 0), (1, 1), (2, 0)])
    0.5
    """
    preds: dict[int, list[int]] = defaultdict(list)
    for pair, pred in items:
        preds[int(pair)].append(int(pred))
    complete = [p for p in preds.values() if len(p) >= 2]
    if not complete:
        return float("nan")
    return sum(len(set(p)) == 1 for p in complete) / len(complete)
