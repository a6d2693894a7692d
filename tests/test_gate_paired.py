"""The gate on the chance-corrected headline: documents paired by doc_id, a paired bootstrap of the
metric's change, checked against scikit-learn and an independent bootstrap loop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, matthews_corrcoef

from tracing_bench.compare.gate import gate
from tracing_bench.compare.paired import paired_bootstrap


def _write(folder: Path, task: str, metric: str, value: float, se: float, items: list) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cell = {
        "alias": task,
        f"{metric},none": value,
        f"{metric}_stderr,none": se,
        "acc,none": 0.5,
        "acc_stderr,none": 0.05,
    }
    data = {
        "results": {task: cell},
        "groups": {},
        "group_subtasks": {},
        "configs": {task: {}},
        "versions": {task: 3.0},
        "n-samples": {task: {"original": len(items), "effective": len(items)}},
        "higher_is_better": {task: {metric: True, "acc": True}},
        "config": {"model": "hf", "model_args": {"pretrained": "m", "revision": "main"}},
        "date": 1.7e9,
    }
    (folder / "results_2026-01-01T00-00-00.json").write_text(json.dumps(data))
    with open(folder / f"samples_{task}_2026-01-01T00-00-00.jsonl", "w") as f:
        for i, it in enumerate(items):
            f.write(json.dumps({"doc_id": i, "filter": "none", "metrics": [metric], metric: it}) + "\n")


def test_paired_bootstrap_of_mcc_fires_on_a_real_drop_and_not_on_identical_runs(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    gold = rng.integers(0, 2, n)
    good = np.where(rng.random(n) < 0.8, gold, 1 - gold)  # 80% right
    bad = np.where(rng.random(n) < 0.6, gold, 1 - gold)  # 60% right
    base_items = [[int(g), int(p)] for g, p in zip(gold, good, strict=True)]
    cur_items = [[int(g), int(p)] for g, p in zip(gold, bad, strict=True)]
    mb, mc = matthews_corrcoef(gold, good), matthews_corrcoef(gold, bad)
    _write(tmp_path / "b", "trust_reliability", "chance_corrected", mb, 0.05, base_items)
    _write(tmp_path / "c", "trust_reliability", "chance_corrected", mc, 0.05, cur_items)
    verdict = gate(tmp_path / "b", tmp_path / "c", paired=True, tasks=["trust_reliability"])
    (t,) = [v for v in verdict.tasks if v.metric == "chance_corrected"]
    assert t.test == "paired" and t.n == n and "bootstrap" in t.note
    assert t.drop == pytest.approx(mb - mc)
    # z against an independent bootstrap loop with scikit-learn (another generator)
    loop = np.random.default_rng(99)
    drops = []
    for _ in range(1000):
        idx = loop.integers(0, n, n)
        drops.append(matthews_corrcoef(gold[idx], good[idx]) - matthews_corrcoef(gold[idx], bad[idx]))
    assert t.z == pytest.approx((mb - mc) / np.std(drops, ddof=1), rel=0.15)
    assert verdict.regressions == ["trust_reliability"]
    same = gate(tmp_path / "b", tmp_path / "b", paired=True, tasks=["trust_reliability"])
    assert same.passed


def test_paired_bootstrap_kappa_and_one_answer_runs():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2, 200)
    b = np.where(rng.random(200) < 0.9, a, 1 - a)
    items = [[int(x), int(y)] for x, y in zip(a, b, strict=True)]
    ones = [[1, 1]] * 200  # one answer everywhere: kappa 0
    from tracing_bench.tasks.metrics import kappa

    drop, z = paired_bootstrap(items, ones, kappa)
    assert drop == pytest.approx(cohen_kappa_score(a, b))
    assert z > 5
    drop0, z0 = paired_bootstrap(ones, ones, kappa)
    assert drop0 == 0 and z0 == 0
