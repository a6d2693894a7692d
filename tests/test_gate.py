"""`tracing-bench gate`: exit 0 (pass), 1 (regression, tasks named), 2 (bad input, each problem named)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from click.testing import CliRunner

from fake_results import TRUST, five, results_json, write_results, write_samples
from tracing_bench.cli import main
from tracing_bench.compare.gate import gate


def _gate(*args: str):
    return CliRunner().invoke(main, ["gate", *args])


def _results(folder):
    (path,) = folder.rglob("results_*.json")
    return path


def test_equal_scores_pass_with_exit_0(lm_eval_results, tmp_path):
    base = lm_eval_results["base"]
    copy = tmp_path / "copy"
    shutil.copytree(base, copy)
    res = _gate("--baseline", str(base), "--current", str(copy), "--json-out", str(tmp_path / "v.json"))
    assert res.exit_code == 0, res.output
    assert "PASS" in res.output
    verdict = json.loads((tmp_path / "v.json").read_text())
    assert verdict["verdict"] == "pass" and verdict["regressions"] == []
    assert {t["task"] for t in verdict["tasks"]} == {*TRUST, "trust"}
    assert all(t["drop"] == 0 for t in verdict["tasks"])


def test_steered_tiny_model_verdict_matches_an_independent_computation(lm_eval_results, tmp_path):
    """The alpha=40 steered model against the plain one; with --max-drop 0 --z 0 every worse task regresses."""
    base = json.loads(_results(lm_eval_results["base"]).read_text())
    cur = json.loads(_results(lm_eval_results["steered"]).read_text())
    worse = sorted(t for t in [*TRUST, "trust"]
                   if cur["results"][t]["score,none"] < base["results"][t]["score,none"])
    assert worse, "the steered tiny model should be worse on at least one task"
    out = tmp_path / "v.json"
    res = _gate("--baseline", str(lm_eval_results["base"]), "--current", str(lm_eval_results["steered"]),
                "--max-drop", "0", "--z", "0", "--json-out", str(out))
    assert res.exit_code == 1, res.output
    verdict = json.loads(out.read_text())
    assert sorted(verdict["regressions"]) == worse
    assert f"FAIL: regression in {', '.join(verdict['regressions'])}" in res.output
    for t in verdict["tasks"]:
        b, c = base["results"][t["task"]], cur["results"][t["task"]]
        assert t["drop"] == pytest.approx(b["score,none"] - c["score,none"])
        ses = [x["score_stderr,none"] for x in (b, c)]
        if "N/A" not in ses and t["drop"] != 0:
            assert t["z"] == pytest.approx(t["drop"] / math.hypot(*ses))
    # paired on lm-eval's own per-sample logs: runs; robustness (pairs) and the group fall back to the z-test
    res = _gate("--baseline", str(lm_eval_results["base"]), "--current", str(lm_eval_results["steered"]), "--paired")
    assert res.exit_code in (0, 1), res.output
    lines = {line.split()[0]: line for line in res.output.splitlines() if line.startswith("trust")}
    assert " paired " in lines["trust_fairness"] and " z " in lines["trust_robustness"]


def test_deliberately_worse_task_exits_1_and_is_named(tmp_path):
    write_results(tmp_path / "base", results_json(five(0.70, 0.01)))
    worse = five(0.70, 0.01)
    worse["trust_fairness"] = (0.60, 0.01)
    worse["trust_privacy"] = (0.69, 0.01)  # within --max-drop
    worse["trust_reliability"] = (0.75, 0.01)  # better
    write_results(tmp_path / "cur", results_json(worse))
    res = _gate("--baseline", str(tmp_path / "base"), "--current", str(tmp_path / "cur"), "--tasks",
                "trust_fairness,trust_privacy,trust_reliability")
    assert res.exit_code == 1, res.output
    assert "FAIL: regression in trust_fairness " in res.output
    line = {ln.split()[0]: ln for ln in res.output.splitlines() if ln.startswith("trust_")}
    assert "REGRESSION" in line["trust_fairness"] and "within --max-drop" in line["trust_privacy"]
    assert line["trust_reliability"].rstrip().endswith("ok")


def test_drop_beyond_max_but_not_significant_passes(tmp_path):
    write_results(tmp_path / "base", results_json(five(0.70, 0.05)))
    write_results(tmp_path / "cur", results_json(five(0.65, 0.05)))  # z = 0.05 / 0.0707 = 0.71
    v = gate(tmp_path / "base", tmp_path / "cur", tasks=["trust_fairness"])
    assert v.passed and v.tasks[0].verdict == "worse (not significant)"
    assert v.tasks[0].z == pytest.approx(0.05 / math.hypot(0.05, 0.05))


def test_lower_is_better_direction(tmp_path):
    for name, val in (("base", 0.10), ("cur", 0.20)):
        data = results_json({"trust_toxicity": (val, 0.01)}, group=False)
        data["higher_is_better"]["trust_toxicity"] = {"acc": False, "score": False}
        write_results(tmp_path / name, data)
    v = gate(tmp_path / "base", tmp_path / "cur")
    assert v.regressions == ["trust_toxicity"] and v.tasks[0].drop == pytest.approx(0.10)
    v = gate(tmp_path / "cur", tmp_path / "base")  # toxicity went down: an improvement
    assert v.passed and v.tasks[0].drop == pytest.approx(-0.10)


def test_paired_test_on_per_sample_logs(tmp_path):
    base, cur = tmp_path / "base", tmp_path / "cur"
    write_results(base, results_json({"trust_fairness": (0.8, 0.2)}, group=False))
    write_results(cur, results_json({"trust_fairness": (0.6, 0.2)}, group=False))
    # same documents: 8 of 40 flip from right to wrong, none the other way
    b = [1.0] * 32 + [0.0] * 8
    c = [0.0] * 8 + [1.0] * 24 + [0.0] * 8
    write_samples(base, "trust_fairness", b)
    write_samples(cur, "trust_fairness", c)
    unpaired = gate(base, cur)
    assert unpaired.passed  # z = 0.2 / 0.283 < 2
    paired = gate(base, cur, paired=True)
    t = paired.tasks[0]
    diffs = [x - y for x, y in zip(b, c)]
    mean = sum(diffs) / 40
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 39 / 40)
    assert t.test == "paired" and t.n == 40 and t.drop == pytest.approx(0.2) and t.z == pytest.approx(mean / se)
    assert paired.regressions == ["trust_fairness"]
    res = _gate("--baseline", str(base), "--current", str(cur), "--paired")
    assert res.exit_code == 1 and "trust_fairness" in res.output


@pytest.mark.parametrize("case, message", [
    ("missing_task", "task trust_fairness missing from current"),
    ("version", "task trust_privacy version differs: baseline 1.0, current 2.0"),
    ("nan", "task trust_fairness is NaN in current"),
    ("unreadable", "not valid JSON"),
    ("two_files", "holds 2 results files"),
    ("no_path", "does not exist"),
    ("unknown_task", "task trust_nope missing from baseline"),
    ("paired_no_samples", "no samples_trust_fairness_*.jsonl"),
])
def test_bad_input_exits_2_naming_the_problem(tmp_path, case, message):
    base, cur = tmp_path / "base", tmp_path / "cur"
    write_results(base, results_json(five(0.6)))
    scores = five(0.6)
    extra: list[str] = []
    if case == "missing_task":
        del scores["trust_fairness"]
    data = results_json(scores, versions={"trust_privacy": 2.0} if case == "version" else None)
    if case == "nan":
        data["results"]["trust_fairness"]["score,none"] = float("nan")
    write_results(cur, data)
    if case == "unreadable":
        next(cur.glob("results_*.json")).write_text("{oops")
    if case == "two_files":
        write_results(cur, data, stamp="2026-02-02T00-00-00.000000")
    if case == "no_path":
        shutil.rmtree(cur)
    if case == "unknown_task":
        extra = ["--tasks", "trust_nope"]
    if case == "paired_no_samples":
        extra = ["--paired", "--tasks", "trust_fairness"]
    res = _gate("--baseline", str(base), "--current", str(cur), *extra)
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and message in res.output, res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


def test_several_problems_are_all_named(tmp_path):
    write_results(tmp_path / "base", results_json(five(0.6)))
    scores = five(0.6)
    del scores["trust_fairness"]
    write_results(tmp_path / "cur", results_json(scores, versions={"trust_privacy": 2.0}))
    res = _gate("--baseline", str(tmp_path / "base"), "--current", str(tmp_path / "cur"))
    assert res.exit_code == 2
    assert "trust_fairness missing from current" in res.output and "trust_privacy version differs" in res.output


def test_bad_thresholds_exit_2(tmp_path):
    write_results(tmp_path / "b", results_json(five(0.6)))
    res = _gate("--baseline", str(tmp_path / "b"), "--current", str(tmp_path / "b"), "--max-drop", "-1")
    assert res.exit_code == 2 and "--max-drop -1.0 must be >= 0" in res.output
