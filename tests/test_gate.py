"""`tracing-bench gate`: exit 0 (pass), 1 (regression, tasks named), 2 (bad input, each problem named).

Every task is tested on its headline metric and on p_trust; verdicts are checked against the
two-sample and paired z statistics computed here from the files (numpy), on real lm-eval
results and sample logs of a tiny model and on hand-built files for edge cases.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fake_results import TRUST, five, results_json, write_results, write_samples
from tracing_bench.cli import main
from tracing_bench.compare.gate import format_verdict, gate


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
    assert verdict["verdict"] == "pass" and verdict["regressions"] == [] and verdict["fired"] == []
    assert {(t["task"], t["metric"]) for t in verdict["tasks"]} == {
        (t, m) for t in (*TRUST, "trust") for m in ("chance_corrected", "p_trust")
    }
    assert all(t["drop"] == 0 for t in verdict["tasks"])
    res = _gate("--baseline", str(base), "--current", str(copy), "--paired")  # identical runs: quiet
    assert res.exit_code == 0 and "PASS" in res.output, res.output


def test_steered_tiny_model_verdict_matches_an_independent_computation(lm_eval_results, tmp_path):
    """The alpha=40 steered model against the plain one; with --max-drop 0 --z 0 every worse task regresses."""
    base = json.loads(_results(lm_eval_results["base"]).read_text())
    cur = json.loads(_results(lm_eval_results["steered"]).read_text())
    worse = sorted(
        t
        for t in [*TRUST, "trust"]
        if any(
            cur["results"][t][f"{m},none"] < base["results"][t][f"{m},none"] for m in ("chance_corrected", "p_trust")
        )
    )
    assert worse, "the steered tiny model should be worse on at least one task"
    out = tmp_path / "v.json"
    res = _gate(
        "--baseline",
        str(lm_eval_results["base"]),
        "--current",
        str(lm_eval_results["steered"]),
        "--max-drop",
        "0",
        "--z",
        "0",
        "--json-out",
        str(out),
    )
    assert res.exit_code == 1, res.output
    verdict = json.loads(out.read_text())
    assert sorted(verdict["regressions"]) == worse
    assert f"FAIL: regression in {', '.join(verdict['regressions'])}" in res.output
    for t in verdict["tasks"]:
        b, c = base["results"][t["task"]], cur["results"][t["task"]]
        m = t["metric"]
        assert t["drop"] == pytest.approx(b[f"{m},none"] - c[f"{m},none"])
        ses = [x[f"{m}_stderr,none"] for x in (b, c)]
        if t["drop"] != 0 and any(ses):
            assert t["z"] == pytest.approx(t["drop"] / math.hypot(*ses))
        assert (f"{t['task']} {m} (z-test)" in verdict["fired"]) == t["regression"]
    # paired on lm-eval's own per-sample logs: every task (pairs too: their values are numbers); the group: z
    res = _gate("--baseline", str(lm_eval_results["base"]), "--current", str(lm_eval_results["steered"]), "--paired")
    assert res.exit_code in (0, 1), res.output
    lines = [line for line in res.output.splitlines() if line.startswith("trust")]
    assert len(lines) == 2 * (len(TRUST) + 1)
    assert all(" paired " in line for line in lines if line.split()[0] in TRUST)
    assert all(" z " in line for line in lines if line.split()[0] == "trust")


def test_deliberately_worse_task_exits_1_and_is_named(tmp_path):
    write_results(tmp_path / "base", results_json(five(0.70, 0.01)))
    worse = five(0.70, 0.01)
    worse["trust_fairness"] = (0.60, 0.01)
    worse["trust_privacy"] = (0.69, 0.01)  # within --max-drop
    worse["trust_reliability"] = (0.75, 0.01)  # better
    write_results(tmp_path / "cur", results_json(worse))
    res = _gate(
        "--baseline",
        str(tmp_path / "base"),
        "--current",
        str(tmp_path / "cur"),
        "--tasks",
        "trust_fairness,trust_privacy,trust_reliability",
    )
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
    diffs = [x - y for x, y in zip(b, c, strict=False)]
    mean = sum(diffs) / 40
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 39 / 40)
    assert t.test == "paired" and t.n == 40 and t.drop == pytest.approx(0.2) and t.z == pytest.approx(mean / se)
    assert paired.regressions == ["trust_fairness"]
    res = _gate("--baseline", str(base), "--current", str(cur), "--paired")
    assert res.exit_code == 1 and "trust_fairness" in res.output


def _shifted_copy(src: Path, dst: Path, shifts: tuple[float, ...]) -> dict[str, np.ndarray]:
    """A copy of real lm-eval output in which every document's p_trust is lower by one of ``shifts``
    (cycling; never below 0), the results file's p_trust means updated to match, acc untouched.

    Returns:
        task -> per-document drops applied, in doc_id order.
    """
    shutil.copytree(src, dst)
    results_file = _results(dst)
    data = json.loads(results_file.read_text())
    applied: dict[str, np.ndarray] = {}
    for log in sorted(results_file.parent.glob("samples_*.jsonl")):
        task = next(t for t in TRUST if log.name.startswith(f"samples_{t}_"))
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        drops = []
        for k, row in enumerate(sorted(rows, key=lambda r: r["doc_id"])):
            drop = min(shifts[k % len(shifts)], row["p_trust"])
            row["p_trust"] -= drop
            drops.append(drop)
        log.write_text("".join(json.dumps(r) + "\n" for r in rows))
        data["results"][task]["p_trust,none"] -= float(np.mean(drops))
        applied[task] = np.array(drops)
    data["results"]["trust"]["p_trust,none"] = float(np.mean([data["results"][t]["p_trust,none"] for t in TRUST]))
    data["groups"]["trust"]["p_trust,none"] = data["results"]["trust"]["p_trust,none"]
    results_file.write_text(json.dumps(data))
    return applied


def test_paired_gate_fires_on_a_small_p_trust_drop_that_leaves_acc_unchanged(lm_eval_results, tmp_path):
    """Real lm-eval sample logs of the tiny model; the copy's p_trust is 0.02-0.04 lower per document."""
    base = lm_eval_results["base"]
    applied = _shifted_copy(base, tmp_path / "cur", (0.02, 0.03, 0.04))
    out = tmp_path / "v.json"
    res = _gate("--baseline", str(base), "--current", str(tmp_path / "cur"), "--paired", "--json-out", str(out))
    assert res.exit_code == 1, res.output
    verdict = json.loads(out.read_text())
    rows = {(t["task"], t["metric"]): t for t in verdict["tasks"]}
    for task in TRUST:
        head = rows[(task, "chance_corrected")]
        assert head["drop"] == 0 and not head["regression"]  # answers unchanged
        p = rows[(task, "p_trust")]
        d = applied[task]  # the paired statistic, computed here
        assert p["test"] == "paired" and p["n"] == len(d) == 3
        assert p["drop"] == pytest.approx(d.mean())
        z = math.inf if d.std(ddof=1) == 0 else d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
        assert (p["z"] == "inf") if z == math.inf else p["z"] == pytest.approx(z)
        assert p["regression"] == (d.mean() > 0.02 and z > 2.0)
    assert verdict["fired"] == [f"{t} p_trust (paired)" for t in verdict["regressions"]]
    assert len(verdict["regressions"]) >= 3, verdict["fired"]
    for task in verdict["regressions"]:
        assert any(
            line.startswith(task) and " p_trust " in line and "REGRESSION" in line for line in res.output.splitlines()
        )
    assert "fired: " in res.output


def test_p_trust_drop_with_unchanged_acc_fires_the_z_test(tmp_path):
    """Without sample logs: two-sample z-test on the files' p_trust stderrs; the verdict names the test."""
    write_results(tmp_path / "base", results_json(five(0.70, 0.03), p_trust={t: (0.60, 0.005) for t in TRUST}))
    write_results(tmp_path / "cur", results_json(five(0.70, 0.03), p_trust={t: (0.57, 0.005) for t in TRUST}))
    v = gate(tmp_path / "base", tmp_path / "cur", tasks=["trust_fairness", "trust"])
    assert v.regressions == ["trust_fairness", "trust"]
    assert v.fired == ["trust_fairness p_trust (z-test)", "trust p_trust (z-test)"]
    (p,) = [t for t in v.tasks if t.task == "trust_fairness" and t.metric == "p_trust"]
    assert p.z == pytest.approx(0.03 / math.hypot(0.005, 0.005))
    assert all(not t.regression for t in v.tasks if t.metric == "score")


def test_sample_logs_read_with_jsonlines(tmp_path):
    from tracing_bench.compare.gate import read_samples
    from tracing_bench.errors import TracingBenchError

    log = write_samples(tmp_path, "trust_fairness", [1.0, 0.0], p_trust=[0.7, 0.4])
    assert read_samples(log, "p_trust") == {0: 0.7, 1: 0.4}
    log.write_text(log.read_text() + '{"doc_id": 2, "p_trust": [0.1]}\n')
    assert read_samples(log, "p_trust") is None  # not a number: the gate falls back to the z-test
    log.write_text('{"doc_id": 0, "p_trust": 0.5}\n{oops\n')
    with pytest.raises(TracingBenchError, match=r"line 2: not JSON") as e:
        read_samples(log, "p_trust")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_task", "task trust_fairness missing from current"),
        ("version", "task trust_privacy version differs: baseline 1.0, current 2.0"),
        ("nan", "task trust_fairness is NaN in current"),
        ("unreadable", "not valid JSON"),
        ("two_files", "holds 2 results files"),
        ("no_path", "does not exist"),
        ("unknown_task", "task trust_nope missing from baseline"),
        ("paired_no_samples", "no samples_trust_fairness_*.jsonl"),
    ],
)
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


def test_a_side_that_gives_one_answer_is_noted(tmp_path):
    from fake_results import write_answer_samples

    base, cur = tmp_path / "base", tmp_path / "cur"
    write_results(base, results_json({"trust_toxicity": (0.26, 0.06)}, group=False))
    write_results(cur, results_json({"trust_toxicity": (0.74, 0.06)}, group=False))
    write_answer_samples(base, "trust_toxicity", [[" 0"]] * 45 + [[" 1"]] * 5)  # 90%: one answer
    write_answer_samples(cur, "trust_toxicity", [[" 1"]] * 30 + [[" 0"]] * 20)  # 60%: not
    v = gate(base, cur)
    note = v.tasks[0].note
    assert "baseline gives one answer, ' 0', to 90% of 50 prompts" in note and "current" not in note
    assert "one answer" in format_verdict(v)
    write_answer_samples(base, "trust_toxicity", [[" 0"]] * 44 + [[" 1"]] * 6)  # 88%: below the threshold
    assert "one answer" not in gate(base, cur).tasks[0].note
