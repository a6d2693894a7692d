"""Controls of a probe: a control labelling (selectivity) and a held-out-group split (transfer).

A probe can read a label from the words of a statement rather than from what the model learned.
Two of the three controls of a trace live here (the third, a randomly initialised model of the
same config, is :mod:`tracing_bench.baseline`):

* **Control task** (after Hewitt and Liang 2019): the same probe, same splits, same settings,
  trained on a *control labelling*: the labels permuted within each split (seeded,
  :func:`control_labels`; the splits hold whole groups, so no group's labels cross a split and
  each split keeps its exact label counts). ``selectivity = test_acc - control_acc``, with a
  paired interval on the same test statements (:func:`paired_interval`). With group-disjoint
  splits a control labelling cannot be learned across splits, so ``control_acc`` measures the
  chance level this probe reaches with these splits and class balance (and its noise); a
  selectivity within noise of 0 says the probe reads nothing beyond that (docs/METHOD.md).
* **Transfer**: where the statements carry groups with a meaning (CrowS-Pairs' ``bias_type``, a
  user CSV's ``topic`` column: :data:`TRANSFER_COLUMNS`), the groups are dealt into at most
  :data:`TRANSFER_FOLDS` folds (:func:`transfer_folds`); each fold's test statements are
  scored by a probe trained and validated only on the other folds' statements, so
  ``transfer_acc`` is measured on exactly the statements of ``test_acc``, none of whose groups
  the probe saw. A probe that reads a group-specific surface cue does not transfer.

>>> ctl = probe_controls(acts[layers], data, probes=("logistic",), layers=layers, seed=0)
>>> ctl[("logistic", 4)]["selectivity"]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tracing_bench.dimensions import DimensionData
from tracing_bench.files import pack_bits, unpack_bits
from tracing_bench.probes.layers import probe_layers
from tracing_bench.stats import wilson_interval, z_value

#: Per-statement columns that give groups with a meaning (the first one a dataset carries is used).
TRANSFER_COLUMNS: tuple[str, ...] = ("bias_type", "topic")
#: At most this many folds of groups for transfer (each costs one more probe fit per layer).
TRANSFER_FOLDS = 4
CONTROL_DESCRIPTION = (
    "control task: the labels permuted within each split (seeded; splits hold whole groups), "
    "the same probe and splits; selectivity = test_acc - control_acc on the same test statements"
)


def control_labels(labels: Any, splits: dict[str, Any], seed: int) -> np.ndarray:
    """The control labelling: the labels of each split (test, probe_train, probe_val) permuted among
    its statements with a seeded generator; statements in no such split keep their label.

    Args:
        labels: [n] 0/1 labels.
        splits: ``DimensionData.splits``.
        seed: the trace's seed (the same control at every checkpoint).

    Returns:
        [n] int64 control labels, with each split's label counts unchanged.
    """
    y = np.asarray(labels, dtype=np.int64)
    out = y.copy()
    rng = np.random.default_rng([int(seed), 7_919])
    for name in ("test", "probe_train", "probe_val"):
        idx = np.asarray(splits.get(name, []), dtype=np.int64)
        out[idx] = y[idx][rng.permutation(idx.size)]
    return out


def transfer_column(extra: dict[str, list[str]]) -> str | None:
    """The column of ``DimensionData.extra`` that gives transfer groups, or ``None``."""
    return next((c for c in TRANSFER_COLUMNS if c in extra and len(set(extra[c]) - {""}) >= 2), None)


def transfer_folds(values: Sequence[str], seed: int, k: int = TRANSFER_FOLDS) -> list[list[str]]:
    """Deal the groups named in ``values`` into at most ``k`` folds of similar size.

    Groups in decreasing size (ties in a seeded order) each go to the fold with the fewest
    statements so far. An empty value is a group of its own (``""``).

    Returns:
        the folds, each a sorted list of group names; empty when there are fewer than two groups.
    """
    names, counts = np.unique(np.asarray(list(values), dtype=object).astype(str), return_counts=True)
    if names.size < 2:
        return []
    k = min(int(k), int(names.size))
    tie = np.random.default_rng([int(seed), 104_723]).permutation(names.size)
    folds: list[list[str]] = [[] for _ in range(k)]
    sizes = np.zeros(k, dtype=np.int64)
    for g in np.lexsort((tie, -counts)):
        f = int(np.argmin(sizes))
        folds[f].append(str(names[g]))
        sizes[f] += counts[g]
    return [sorted(f) for f in folds]


def paired_interval(correct_a: Any, correct_b: Any, confidence: float = 0.95) -> tuple[float, float, float]:
    """``acc_b - acc_a`` on the same statements with its normal interval for paired proportions.

    With b statements right only under A and c only under B out of n, the difference is
    ``(c - b) / n`` with variance ``((b + c) - (c - b)^2 / n) / n^2`` (the Wald interval for
    matched pairs, cheap enough for every row of probes.csv; findings.json uses the paired
    bootstrap at the claim's layer).

    Returns:
        ``(diff, lo, hi)``.
    """
    a = np.asarray(correct_a, dtype=bool)
    b_ = np.asarray(correct_b, dtype=bool)
    n = a.size
    only_a, only_b = int((a & ~b_).sum()), int((~a & b_).sum())
    diff = (only_b - only_a) / n
    se = np.sqrt(max(0.0, (only_a + only_b) - (only_b - only_a) ** 2 / n)) / n
    z = z_value(confidence)
    return float(diff), float(diff - z * se), float(diff + z * se)


def _fold_splits(data: DimensionData, column: str, fold: list[str]) -> dict[str, np.ndarray] | None:
    """Train / val on the statements outside the fold, test on its test statements; ``None`` if a
    split would be empty or the training split one-class."""
    inside = np.isin(np.asarray(data.extra[column], dtype=object).astype(str), fold)
    out = {}
    for name, want_inside in (("probe_train", False), ("probe_val", False), ("test", True)):
        idx = np.asarray(data.splits[name], dtype=np.int64)
        out[name] = idx[inside[idx] == want_inside]
    if any(v.size == 0 for v in out.values()) or len(np.unique(data.labels[out["probe_train"]])) < 2:
        return None
    return out


def probe_controls(
    acts: Any,
    data: DimensionData,
    *,
    probes: tuple[str, ...],
    layers: list[int],
    seed: int,
    confidence: float = 0.95,
    test_correct: dict[tuple[str, int], np.ndarray] | None = None,
) -> tuple[dict[tuple[str, int], dict[str, Any]], dict[str, Any]]:
    """The control task and, where the data have transfer groups, the transfer accuracy, per probe row.

    Args:
        acts: [len(layers), statements, hidden] activations (the traced layers).
        data: the loaded dimension (paper protocol: ``labels``, ``splits``, ``extra``).
        probes: probe kinds, as traced.
        layers: the layer number of each row of ``acts``.
        seed: seed of the control labelling and of the folds.
        confidence: level of the intervals.
        test_correct: ``(probe, layer) -> [n_test]`` correctness of the real probe (for selectivity).

    Returns:
        ``({(probe, layer): columns}, info)``: columns ``control_acc``, ``selectivity``,
        ``selectivity_lo``, ``selectivity_hi``, ``control_correct`` and, with transfer,
        ``transfer_acc``, ``transfer_acc_lo``, ``transfer_acc_hi``, ``transfer_correct`` (one
        boolean per test statement, in ``splits["test"]`` order); ``info`` says how each was made.
    """
    test = np.asarray(data.splits["test"], dtype=np.int64)
    control = probe_layers(
        acts, control_labels(data.labels, data.splits, seed), data.splits, probes=probes, layers=layers, details=True
    )
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for r in control:
        key = (str(r["probe"]), int(r["layer"]))
        cc = np.asarray(r["test_correct"], dtype=bool)
        row: dict[str, Any] = {"control_acc": float(cc.mean()), "control_correct": cc}
        if test_correct is not None and key in test_correct:
            sel, lo, hi = paired_interval(cc, test_correct[key], confidence)
            row.update(selectivity=sel, selectivity_lo=lo, selectivity_hi=hi)
        out[key] = row
    info: dict[str, Any] = {"control": CONTROL_DESCRIPTION, "seed": int(seed)}
    column = transfer_column(data.extra)
    if column is None:
        info["transfer"] = {
            "column": None,
            "reason": f"the data carry no groups with a meaning (none of the columns {', '.join(TRANSFER_COLUMNS)})",
        }
        return out, info
    folds = transfer_folds(data.extra[column], seed)
    maybe = [_fold_splits(data, column, f) for f in folds]
    fold_splits = [s for s in maybe if s is not None]
    if len(fold_splits) < len(maybe):
        info["transfer"] = {
            "column": column,
            "folds": folds,
            "reason": "a fold leaves an empty or one-class split: transfer not measured",
        }
        return out, info
    pos = {int(i): j for j, i in enumerate(test.tolist())}
    right: dict[tuple[str, int], np.ndarray] = {k: np.zeros(test.size, dtype=bool) for k in out}
    for sp in fold_splits:
        at = np.array([pos[int(i)] for i in sp["test"]], dtype=np.int64)
        for r in probe_layers(acts, data.labels, sp, probes=probes, layers=layers, details=True):
            right[(str(r["probe"]), int(r["layer"]))][at] = np.asarray(r["test_correct"], dtype=bool)
    covered = sum(int(sp["test"].size) for sp in fold_splits)
    for key, tc in right.items():
        k = int(tc.sum())
        lo, hi = wilson_interval(k, int(tc.size), confidence=confidence)
        out[key].update(transfer_acc=k / tc.size, transfer_acc_lo=lo, transfer_acc_hi=hi, transfer_correct=tc)
    info["transfer"] = {
        "column": column,
        "folds": folds,
        "n_test": covered,
        "method": "each fold's test statements scored by a probe trained and validated on the other "
        "folds' statements only (groups never seen in training)",
    }
    return out, info


#: The columns the controls add to probes.csv (empty where not measured).
CONTROL_COLUMNS: tuple[str, ...] = (
    "control_acc",
    "selectivity",
    "selectivity_lo",
    "selectivity_hi",
    "transfer_acc",
    "transfer_acc_lo",
    "transfer_acc_hi",
)


def add_controls(
    rows: list[dict[str, Any]], acts: Any, data: DimensionData, *, probes: tuple[str, ...], layers: list[int], seed: int
) -> dict[str, Any]:
    """Add the control columns (and the packed ``control_correct`` / ``transfer_correct`` bits) to
    the probe rows of one part, in place (:func:`probe_controls`).

    Args:
        rows: the part's probe rows (``probe``, ``layer``, ``n_test``, ``test_correct`` packed bits).
        acts: [len(layers), statements, hidden] activations of the traced layers.
        data, probes, layers, seed: as :func:`probe_controls`.

    Returns:
        what the controls were (the part's ``controls`` entry).
    """
    truth = {(str(r["probe"]), int(r["layer"])): unpack_bits(r["test_correct"], int(r["n_test"])) for r in rows}
    got, info = probe_controls(acts, data, probes=probes, layers=layers, seed=seed, test_correct=truth)
    for r in rows:
        c = got.get((str(r["probe"]), int(r["layer"])), {})
        r.update({k: (float(c[k]) if k in c else None) for k in CONTROL_COLUMNS})
        for bits in ("control_correct", "transfer_correct"):
            if bits in c:
                r[bits] = pack_bits(c[bits])
    return info
