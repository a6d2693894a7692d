"""Early warning while a model trains: has a probe's accuracy fallen beyond noise since its best checkpoint?

:func:`probe_drops` compares the newest checkpoint of a series with, per (dimension, layer), the
best checkpoint so far: the earlier checkpoint with the highest probe-val accuracy at that layer
(ties: the earliest), so the test split never chooses what is tested. Both are scored on the
same test statements (their hashes must match): the change in test accuracy gets an exact
two-sided McNemar test and a paired bootstrap interval (:func:`tracing_bench.stats.paired_bootstrap_diff`),
as the ``learned`` claims of findings.json do (:mod:`tracing_bench.compare.findings`). The family
is every (dimension, layer) pair tested at this checkpoint, Holm-adjusted; a *drop* is a pair
whose adjusted p-value is below ``alpha`` and whose accuracy fell.

Under the ``reference`` protocol the validation and the test split are the same statements, so
the best checkpoint is chosen on the tested statements themselves (the test is then optimistic
about drops; said in each result's ``note``).

>>> warn = probe_drops({"fairness": parts}, ["step0", "step8", "step16"])
>>> warn["drops"][0]["claim"]
'fairness block 2: probe accuracy 0.812 at step8 -> 0.650 at step16, -0.162 [-0.225, -0.100] (p=1.2e-05, Holm over
6 tests): fell'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from tracing_bench.files import unpack_bits
from tracing_bench.stats import holm, paired_bootstrap_diff

__all__ = ["probe_drops"]


def _probe_kind(parts: Sequence[Mapping[str, Any]]) -> str | None:
    kinds = [r["probe"] for p in parts for r in p.get("probes", [])]
    return ("logistic" if "logistic" in kinds else kinds[0]) if kinds else None


def _val(row: Mapping[str, Any]) -> float:
    v = row.get("val_acc")
    return -math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _format_p(p: float) -> str:
    if p >= 0.9995:
        return "p=1"
    return f"p={p:.2f}" if p >= 0.01 else f"p={p:.1e}"


def probe_drops(
    parts: Mapping[str, Sequence[Mapping[str, Any]]],
    labels: Sequence[str],
    *,
    alpha: float = 0.05,
    n_boot: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Test the newest checkpoint's probes against the best checkpoint so far (see the module docstring).

    Args:
        parts: dimension name -> its part dicts (:mod:`tracing_bench.parts`), one per checkpoint
            in series order; the last one is the checkpoint under test.
        labels: the checkpoints' names, in the same order (used in the claims).
        alpha: family-wise error rate (Holm over every (dimension, layer) tested).
        n_boot, seed, confidence: the paired bootstrap interval of each change.

    Returns:
        ``{"checkpoint", "alpha", "n_tests", "family", "tests": [...], "drops": [...]}``; each test:
        dimension, layer, probe, best (its checkpoint), best_acc, acc, change, change_ci, p_value,
        p_holm, drop (bool), claim.
    """
    current = labels[-1] if labels else None
    tests: list[dict[str, Any]] = []
    for dim, dparts in parts.items():
        if len(dparts) < 2:
            continue
        probe = _probe_kind(dparts)
        if probe is None:
            continue
        now = dparts[-1]
        ts_now = now.get("test_statements") or {}
        n = int(ts_now.get("n") or 0)
        if not n:
            continue
        rows_now = {int(r["layer"]): r for r in now.get("probes", []) if r["probe"] == probe}
        for layer, row in sorted(rows_now.items()):
            best_i, best_row = None, None
            for i, p in enumerate(dparts[:-1]):
                if (p.get("test_statements") or {}).get("sha256") != ts_now.get("sha256"):
                    continue  # other test statements: not paired
                r = next((x for x in p.get("probes", []) if x["probe"] == probe and int(x["layer"]) == layer), None)
                if r is not None and (best_row is None or _val(r) > _val(best_row)):
                    best_i, best_row = i, r
            if best_row is None or best_i is None:
                continue
            res = paired_bootstrap_diff(
                unpack_bits(best_row["test_correct"], n),
                unpack_bits(row["test_correct"], n),
                n_boot=n_boot,
                seed=seed,
                confidence=confidence,
            )
            tests.append(
                {
                    "dimension": dim,
                    "layer": layer,
                    "probe": probe,
                    "best": labels[best_i],
                    "n_test": n,
                    "best_acc": res.acc_a,
                    "acc": res.acc_b,
                    "change": res.diff,
                    "change_ci": [res.lo, res.hi],
                    "p_value": res.p_value,
                }
            )
    for t, p_adj in zip(tests, holm([t["p_value"] for t in tests]) if tests else [], strict=True):
        t["p_holm"] = float(p_adj)
        t["drop"] = bool(p_adj < alpha and t["change"] < 0)
        lo, hi = t["change_ci"]
        verdict = "fell" if t["drop"] else "within noise" if t["change"] < 0 else "no drop"
        t["claim"] = (
            f"{t['dimension']} block {t['layer']}: probe accuracy {t['best_acc']:.3f} at {t['best']} -> "
            f"{t['acc']:.3f} at {current}, {t['change']:+.3f} [{lo:+.3f}, {hi:+.3f}] "
            f"({_format_p(t['p_holm'])}, Holm over {len(tests)} tests): {verdict}"
        )
    return {
        "checkpoint": current,
        "alpha": alpha,
        "n_tests": len(tests),
        "family": "every (dimension, layer) pair at this checkpoint against its best earlier checkpoint (highest "
        "probe-val accuracy); exact McNemar on the same test statements, Holm-adjusted",
        "tests": tests,
        "drops": [t for t in tests if t["drop"]],
    }
