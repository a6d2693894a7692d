"""Steering measured where it moves: per-document trustworthy log-odds, paired changes, steerability.

The log-odds are checked against the tasks' own ``p_trust`` and a numpy reading of lm-eval's
sample logs; the paired statistics against scipy and numpy; the sweep against a vector with a
known effect on the tiny Llama (the unembedding direction of the answer " 1" over " 0" at the
last block) and against a zero vector.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy import stats as sps

from tracing_bench.cli import main
from tracing_bench.dimensions import load_dimension
from tracing_bench.doc_logodds import read_logodds
from tracing_bench.steering.effects import doc_slopes, paired_change, steerability
from tracing_bench.steering.vector import SteeringVector


# ------------------------------------------------------------------ statistics
def test_paired_change_is_the_t_interval_of_the_per_document_differences():
    rng = np.random.default_rng(0)
    base = {i: float(x) for i, x in enumerate(rng.normal(size=40))}
    steered = {i: base[i] + float(d) for i, d in enumerate(rng.normal(0.3, 1.0, size=40)) if i != 7}  # doc 7 unpaired
    diffs = np.array([steered[i] - base[i] for i in sorted(steered)])
    ci = sps.ttest_1samp(diffs, 0.0).confidence_interval(0.95)
    e = paired_change(base, steered)
    assert e.n == 39 and e.mean == pytest.approx(diffs.mean())
    assert (e.lo, e.hi) == pytest.approx((ci.low, ci.high))
    assert e.wrong_way == pytest.approx(np.mean(diffs < 0))
    assert e.within_noise == (ci.low <= 0 <= ci.high)
    same = paired_change(base, base)  # nothing moved: a zero interval at 0, within noise
    assert same.mean == 0 and same.within_noise and "within noise" in same.claim
    one = paired_change(base, {1: 0.0})  # a single paired document: no interval
    assert one.n == 1 and not one.tested and one.within_noise and "not tested" in one.claim


def test_steerability_is_the_mean_least_squares_slope_per_document():
    rng = np.random.default_rng(1)
    alphas = [-4.0, -1.0, 0.0, 1.0, 4.0]
    slopes = rng.normal(0.5, 0.3, size=30)
    values = slopes[:, None] * np.array(alphas)[None, :] + rng.normal(0, 0.1, size=(30, 5))
    by_alpha = {a: {d: float(values[d, k]) for d in range(30)} for k, a in enumerate(alphas)}
    fitted = np.array([np.polyfit(alphas, values[d], 1)[0] for d in range(30)])
    assert doc_slopes(alphas, values) == pytest.approx(fitted)
    s = steerability(by_alpha)
    ci = sps.ttest_1samp(fitted, 0.0).confidence_interval(0.95)
    assert s.mean == pytest.approx(fitted.mean()) and (s.lo, s.hi) == pytest.approx((ci.low, ci.high))
    assert s.wrong_way == pytest.approx(np.mean(fitted < 0))
    assert s.unit == "nats per alpha" and not s.within_noise


# ------------------------------------------------------------------ log-odds from lm-eval's sample logs
def _numpy_logodds(task: str, sample: dict) -> float:
    """The definition in float64 numpy, straight from one JSON line of a sample log."""
    lls = np.array([float(r[0]) for r in sample["filtered_resps"]], dtype=np.float64)
    doc = sample["doc"]
    if "members" not in doc:
        g = int(doc["label"])
        return float(lls[g] - lls[1 - g])
    per = lls[: 2 * len(doc["members"])].reshape(-1, 2)
    if task == "trust_robustness":
        return float(-abs((per[0, 1] - per[0, 0]) - (per[1, 1] - per[1, 0])))
    gold = [int(m["label"]) for m in doc["members"]]
    return float(np.mean([p[g] - p[1 - g] for p, g in zip(per, gold, strict=True)]))


def test_logodds_from_sample_logs_match_numpy_and_the_tasks_p_trust(lm_eval_results):
    logs = sorted(Path(lm_eval_results["base"]).rglob("samples_trust_*.jsonl"))
    seen = set()
    for path in logs:
        task = path.name[len("samples_") :].rsplit("_", 1)[0]
        values = read_logodds(path, task)
        samples = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        assert sorted(values) == sorted(int(s["doc_id"]) for s in samples)
        for s in samples:
            assert values[int(s["doc_id"])] == pytest.approx(_numpy_logodds(task, s), abs=1e-9)
            if "members" not in s["doc"]:  # a statement: the logit of the task's own p_trust
                p = float(s["p_trust"])
                assert values[int(s["doc_id"])] == pytest.approx(math.log(p / (1 - p)), rel=1e-6, abs=1e-6)
            elif task == "trust_robustness":  # 0 exactly when the pair's answer odds agree (p_trust 1)
                assert (abs(values[int(s["doc_id"])]) < 1e-12) == (float(s["p_trust"]) == 1.0)
        seen.add(task)
    assert {"trust_reliability", "trust_fairness", "trust_robustness"} <= seen


# ------------------------------------------------------------------ the sweep: known effect and zero vector
def _answer_direction(model_dir: Path) -> torch.Tensor:
    """W_U[" 1"] - W_U[" 0"] (last token of each answer) of the tiny model: raises the answer 1 over 0."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    one, zero = tok(" 1")["input_ids"][-1], tok(" 0")["input_ids"][-1]
    w = model.get_output_embeddings().weight.detach().double()
    return (w[one] - w[zero]).float()


def _sweep(model_dir, vector, out, tasks, alphas, limit):
    res = CliRunner().invoke(
        main,
        [
            "steer",
            "sweep",
            "--model",
            str(model_dir),
            "--vector",
            str(vector),
            f"--alphas={alphas}",
            "--tasks",
            tasks,
            "--limit",
            str(limit),
            "--batch-size",
            "8",
            "--max-ppl-increase",
            "1000",
            "--lambada",
            "off",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    with open(out / "sweep.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["metric"] == "logodds"]
    docs: dict[tuple[str, str, str], dict[int, float]] = {}
    with open(out / "doc_logodds.csv", newline="") as f:
        for r in csv.DictReader(f):
            docs.setdefault((r["task"], r["layer"], r["alpha"]), {})[int(r["doc_id"])] = float(r["logodds"])
    return res.output, rows, docs, json.loads((out / "best.json").read_text())


def test_sweep_detects_a_known_steering_effect_per_document(tiny_models, tmp_path):
    llama = tiny_models["llama"]
    last = 2  # tests/tiny.py: 3 blocks
    vec = SteeringVector(_answer_direction(llama), layer=last, hookpoint=f"layers.{last}").save(tmp_path / "v.pt")
    output, rows, docs, best = _sweep(
        llama, vec, tmp_path / "sweep", "trust_reliability,trust_robustness", "-100,100", 8
    )
    data = load_dimension("reliability")
    labels = data.labels[data.indices("test")][:8]
    base = docs[("trust_reliability", "", "0.0")]
    for alpha, sign in (("-100.0", -1), ("100.0", 1)):
        change = {d: docs[("trust_reliability", str(last), alpha)][d] - base[d] for d in base}
        # known effect: the answer 1 rises (alpha > 0), so documents whose correct answer is 1 gain
        assert all(np.sign(change[d]) == sign * (2 * labels[d] - 1) for d in change)
        row = next(r for r in rows if r["task"] == "trust_reliability" and r["alpha"] == alpha)
        x = np.array([change[d] for d in sorted(change)])
        ci = sps.ttest_1samp(x, 0.0).confidence_interval(0.95)
        assert float(row["delta"]) == pytest.approx(x.mean())
        assert (float(row["delta_lo"]), float(row["delta_hi"])) == pytest.approx((ci.low, ci.high))
        assert float(row["wrong_way"]) == pytest.approx(np.mean(labels != (1 if sign > 0 else 0)))
        assert int(row["n_docs"]) == 8
    # steerability: each document's slope over -100, 0, 100 has the sign of its correct answer
    grid = np.array(
        [
            [docs[("trust_reliability", lay, a)][d] for lay, a in (("2", "-100.0"), ("", "0.0"), ("2", "100.0"))]
            for d in range(8)
        ]
    )
    slopes = np.array([np.polyfit([-100, 0, 100], grid[d], 1)[0] for d in range(8)])
    assert np.all(np.sign(slopes) == 2 * labels - 1)
    row = next(r for r in rows if r["task"] == "trust_reliability" and r["alpha"] == "100.0")
    assert float(row["slope"]) == pytest.approx(slopes.mean())
    assert float(row["anti_steerable"]) == pytest.approx(np.mean(labels == 0))
    # robustness: the vector swamps the sentence, so twins get the same answer odds: every pair gains
    for alpha in ("-100.0", "100.0"):
        row = next(r for r in rows if r["task"] == "trust_robustness" and r["alpha"] == alpha)
        assert float(row["delta_lo"]) > 0 and float(row["wrong_way"]) == 0.0
    chosen = best["best"]["trust_robustness"]
    assert chosen["chosen_on"] == "logodds"
    change = chosen["logodds"]["change"]
    assert change["within_noise"] is False and change["ci"][0] > 0 and "the wrong way" in change["claim"]
    assert f"trustworthy log-odds, paired per document: {change['claim']}" in output


def test_a_zero_vector_is_within_noise(tiny_models, tmp_path):
    llama = tiny_models["llama"]
    vec = SteeringVector(torch.zeros(32), layer=1, hookpoint="layers.1").save(tmp_path / "zero.pt")
    output, rows, docs, best = _sweep(llama, vec, tmp_path / "sweep", "trust_reliability", "-4,4", 6)
    steered = [r for r in rows if r["vector"] != "none"]
    assert len(steered) == 2
    for r in steered:
        assert abs(float(r["delta"])) < 1e-6
        assert float(r["delta_lo"]) <= 0 <= float(r["delta_hi"])
    change = best["best"]["trust_reliability"]["logodds"]["change"]
    assert change["within_noise"] is True and change["claim"].endswith("within noise")
