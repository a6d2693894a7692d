"""steer sweep and steer correlate end to end on tiny models (CliRunner, lm-eval --limit)."""

from __future__ import annotations

import csv
import json
import math
from statistics import NormalDist

import numpy as np
import pytest
from click.testing import CliRunner

from tracing_bench.cli import main
from tracing_bench.steering.correlate import pearson_bootstrap
from tracing_bench.steering.sweep import SWEEP_COLUMNS


def test_sweep_table_choice_and_plots(tiny_models, extracted, tmp_path):
    vector, cache = extracted
    out = tmp_path / "sweep"
    res = CliRunner().invoke(
        main,
        [
            "steer",
            "sweep",
            "--model",
            str(tiny_models["llama"]),
            "--vector",
            str(vector),
            "--layers",
            "1,2",
            "--alphas=-40,3",
            "--limit",
            "2",
            "--batch-size",
            "4",
            "--max-ppl-increase",
            "0.05",
            "--device",
            "cpu",
            "--cache-dir",
            str(cache),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    with open(out / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == SWEEP_COLUMNS
    tasks = {r["task"] for r in rows}
    assert {f"trust_{d}" for d in ("reliability", "privacy", "toxicity", "fairness", "robustness")} <= tasks
    settings = {(r["vector"], r["layer"], r["alpha"]) for r in rows}
    assert len(settings) == 1 + 2 * 2  # baseline + layers x alphas
    # one row per setting, task and metric: the headline metric, p_trust and the trustworthy log-odds
    metrics = {r["metric"] for r in rows if r["task"] == "trust_privacy"}
    assert len(metrics) == 3 and {"p_trust", "logodds"} <= metrics
    assert len(rows) == len(settings) * len(tasks) * 3
    base = {(r["task"], r["metric"]): float(r["score"]) for r in rows if r["vector"] == "none"}
    for r in rows:
        assert float(r["delta"]) == pytest.approx(float(r["score"]) - base[(r["task"], r["metric"])])
        assert (r["admissible"] == "True") == (float(r["ppl_increase"]) <= 0.05 + 1e-12)
    assert (out / "vectors" / "fairness_layer2.pt").exists()  # re-extracted from the sidecar's source
    best = json.loads((out / "best.json").read_text())
    assert set(best["best"]) == tasks
    for task, b in best["best"].items():
        if b is not None:
            # chosen on the paired per-document change in the trustworthy log-odds, among admissible settings
            ok = [
                r
                for r in rows
                if r["task"] == task
                and r["metric"] == "logodds"
                and r["vector"] != "none"
                and r["admissible"] == "True"
            ]
            top = max(ok, key=lambda r: (float(r["delta"]), -abs(float(r["alpha"])), -int(r["layer"])))
            assert b["chosen_on"] == "logodds" and (str(b["layer"]), str(b["alpha"])) == (top["layer"], top["alpha"])
            assert b["logodds"]["change"]["mean"] == pytest.approx(float(top["delta"]))
            assert b["logodds"]["change"]["ci"] == pytest.approx([float(top["delta_lo"]), float(top["delta_hi"])])
            assert len(b["side_effects"]) == 3 * len(tasks) - 1  # every other (task, metric), p_trust included
            # the change carries its interval: normal, from the baseline's and the setting's stderrs
            se = {
                (r["vector"], r["layer"], r["alpha"]): float(r["stderr"])
                for r in rows
                if r["task"] == task and r["metric"] == b["metric"]
            }
            chosen = se[(b["vector"], str(b["layer"]), str(b["alpha"]))]
            half = NormalDist().inv_cdf(0.975) * math.hypot(se[("none", "", "0.0")], chosen)
            assert b["ci"] == pytest.approx([b["delta"] - half, b["delta"] + half], abs=1e-9)
            assert b["within_noise"] == (b["ci"][0] <= 0 <= b["ci"][1])
            line = next(ln for ln in res.output.splitlines() if ln.startswith(f"{task}: layer"))
            assert line.endswith(b["claim"]) and "[" in b["claim"]
            assert ("within noise" in line) == b["within_noise"]
    assert (out / "sweep_scores.png").stat().st_size > 0 and (out / "sweep_ppl.png").stat().st_size > 0


def test_correlate_over_checkpoint_series(hf_cache_series, tiny_models, small_csv, tmp_path):
    model_id, revisions, _ = hf_cache_series
    out = tmp_path / "corr"
    res = CliRunner().invoke(
        main,
        [
            "steer",
            "correlate",
            "--model",
            model_id,
            "--revisions",
            ",".join(revisions),
            "--target",
            str(tiny_models["llama"]),
            "--dimension",
            "fairness",
            "--layer",
            "1",
            "--alpha",
            "5",
            "--data",
            str(small_csv),
            "--limit",
            "4",
            "--device",
            "cpu",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    with open(out / "correlate.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == ("model", "revision", "step", "dimension", "layer", "probe_acc", "benefit")
    assert [r["revision"] for r in rows] == revisions and [r["step"] for r in rows] == ["1", "2"]
    assert all(0.0 <= float(r["probe_acc"]) <= 1.0 for r in rows)
    summary = json.loads((out / "correlate.json").read_text())
    assert summary["n"] == 2 and summary["dimension"] == "fairness"
    assert (out / "correlate.png").exists()


def test_pearson_bootstrap():
    x = np.array([0.6, 0.7, 0.75, 0.8, 0.9])
    y = 2 * x + np.array([0.01, -0.02, 0.0, 0.02, -0.01])
    r, (lo, hi) = pearson_bootstrap(x, y, n_boot=500, seed=0)
    assert r == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert lo <= r <= hi <= 1.0
    r2, ci2 = pearson_bootstrap(x[:2], y[:2])
    assert np.isnan(ci2[0])


def test_p_trust_is_reported_beside_the_headline_and_never_chosen_on():
    from tracing_bench.steering.sweep import choose_best, task_scores

    results = {
        "results": {
            "trust_fairness": {
                "alias": "trust_fairness",
                "acc,none": 0.5,
                "acc_stderr,none": 0.1,
                "score,none": 0.5,
                "score_stderr,none": 0.1,
                "p_trust,none": 0.61,
                "p_trust_stderr,none": 0.01,
            }
        },
        "higher_is_better": {"trust_fairness": {"acc": True, "score": True, "p_trust": True}},
    }
    scores = task_scores(results)
    assert [(s.metric, s.score, s.stderr) for s in scores] == [("score", 0.5, 0.1), ("p_trust", 0.61, 0.01)]
    rows = [
        {
            "vector": "none",
            "layer": "",
            "alpha": 0.0,
            "task": "trust_fairness",
            "metric": m,
            "score": v,
            "stderr": 0.1,
            "delta": 0.0,
            "admissible": True,
            "vector_sha256": "",
            "ppl": 1.0,
            "ppl_increase": 0.0,
        }
        for m, v in (("score", 0.5), ("p_trust", 0.6))
    ]
    for alpha, score, p in ((1.0, 0.55, 0.60), (2.0, 0.50, 0.70)):  # p_trust best at 2, the headline at 1
        rows += [
            {
                "vector": "v.pt",
                "layer": 1,
                "alpha": alpha,
                "task": "trust_fairness",
                "metric": m,
                "score": v,
                "stderr": 0.1,
                "delta": v - base,
                "admissible": True,
                "vector_sha256": "ab",
                "ppl": 1.0,
                "ppl_increase": 0.0,
            }
            for m, v, base in (("score", score, 0.5), ("p_trust", p, 0.6))
        ]
    best = choose_best(rows)["best"]
    assert list(best) == ["trust_fairness"] and best["trust_fairness"]["metric"] == "score"
    assert best["trust_fairness"]["alpha"] == 1.0


def test_sweep_absolute_perplexity_bound(tiny_models, extracted, tmp_path):
    vector, cache = extracted
    common = [
        "steer",
        "sweep",
        "--model",
        str(tiny_models["llama"]),
        "--vector",
        str(vector),
        "--alphas=-40,3",
        "--tasks",
        "trust_fairness",
        "--limit",
        "2",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--cache-dir",
        str(cache),
    ]
    res = CliRunner().invoke(main, [*common, "--out", str(tmp_path / "rel")])
    assert res.exit_code == 0, res.output
    ppl = {r["alpha"]: float(r["ppl"]) for r in _sweep_rows(tmp_path / "rel")}
    bound = (ppl["0.0"] + max(ppl.values())) / 2  # between the baseline and the worst setting
    assert max(ppl.values()) > ppl["0.0"]  # alpha -40 hurts fluency: the bound separates something
    res = CliRunner().invoke(main, [*common, "--max-ppl", str(bound), "--out", str(tmp_path / "abs")])
    assert res.exit_code == 0, res.output
    assert "applied to the bundled text" in res.output  # LAMBADA is not cached in the tests
    rows = _sweep_rows(tmp_path / "abs")
    for r in rows:  # absolute bound only: no relative bound when --max-ppl alone is given
        assert float(r["ppl"]) == pytest.approx(ppl[r["alpha"]])
        assert (r["admissible"] == "True") == (float(r["ppl"]) < bound)
    settings = json.loads((tmp_path / "abs" / "best.json").read_text())["settings"]
    assert settings["max_ppl"] == pytest.approx(bound) and settings["max_ppl_increase"] is None
    assert settings["max_ppl_on"] == "heldout_fluency.txt"
    res = CliRunner().invoke(main, [*common, "--max-ppl", "0", "--out", str(tmp_path / "bad")])
    assert res.exit_code == 2 and "--max-ppl 0" in res.output


def _sweep_rows(folder):
    with open(folder / "sweep.csv", newline="") as f:
        return list(csv.DictReader(f))
