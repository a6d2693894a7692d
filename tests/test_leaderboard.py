"""`tracing-bench leaderboard`: real lm-eval results of tiny models plus hand-built edge cases."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest
from click.testing import CliRunner

from fake_results import TRUST, five, results_json, write_results
from tracing_bench.cli import main
from tracing_bench.compare.leaderboard import build_leaderboard, format_leaderboard, records
from tracing_bench.errors import TracingBenchError
from tracing_bench.results import load_results


def _json(res) -> dict:
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_real_lm_eval_results_one_row_per_model_and_steering(lm_eval_results, tiny_models):
    res = CliRunner().invoke(
        main, ["leaderboard", str(lm_eval_results["base"]), str(lm_eval_results["steered"]), "--format", "json"]
    )
    board = _json(res)
    rows = {r["steering"]: r for r in board["rows"]}
    assert len(board["rows"]) == 2
    assert rows["none"]["model"] == str(tiny_models["llama"])
    steered = next(r for k, r in rows.items() if k != "none")
    assert steered["steering"].startswith("worse.pt#") and "alpha=40" in steered["steering"]
    assert list(board["columns"]) == [*TRUST, "trust"]
    for r in board["rows"]:
        raw = json.loads(open(r["source"]).read())
        for task in TRUST:  # values and stderrs straight from lm-eval's file
            assert r[task] == raw["results"][task]["chance_corrected,none"]
            se = raw["results"][task]["chance_corrected_stderr,none"]
            assert r[f"{task}_stderr"] == (None if se == "N/A" else se)
        assert r["trust"] == pytest.approx(raw["groups"]["trust"]["chance_corrected,none"])
        assert r["trust"] == pytest.approx(sum(r[t] for t in TRUST) / 5)  # the group is the unweighted mean
        for col in (*TRUST, "trust"):  # p_trust beside the headline metric, with its stderr
            cells = raw["groups"]["trust"] if col == "trust" else raw["results"][col]
            assert r[f"{col}_p_trust"] == pytest.approx(cells["p_trust,none"])
            assert r[f"{col}_p_trust_stderr"] == pytest.approx(cells["p_trust_stderr,none"])
    assert all(board["columns"][c]["higher_is_better"] and board["columns"][c]["p_trust"] for c in board["columns"])


def test_markdown_csv_html_formats(lm_eval_results, tmp_path):
    base = str(lm_eval_results["base"])
    md = CliRunner().invoke(main, ["leaderboard", base])
    assert md.exit_code == 0, md.output
    assert "| trust_fairness ↑ | trust_fairness p_trust ↑ |" in md.output and "±" in md.output
    out = tmp_path / "board.csv"
    res = CliRunner().invoke(main, ["leaderboard", base, "--format", "csv", "--out", str(out)])
    assert res.exit_code == 0, res.output
    (row,) = list(csv.DictReader(io.StringIO(out.read_text())))
    assert {
        "model",
        "revision",
        "step",
        "steering",
        "trust",
        "trust_stderr",
        "trust_fairness_stderr",
        "trust_fairness_p_trust",
        "trust_fairness_p_trust_stderr",
        "trust_p_trust",
        "trust_p_trust_stderr",
    } <= set(row)
    assert row["revision"] == "main" and row["step"] == ""
    html = CliRunner().invoke(main, ["leaderboard", base, "--format", "html"]).output
    assert html.startswith('<table class="leaderboard">') and "<th>trust ↑</th>" in html


def test_step_revision_and_sort_respect_direction(tmp_path):
    files = [
        results_json(five(val), revision=rev) for rev, val in [("step1000", 0.5), ("step2000", 0.7), ("step3000", 0.6)]
    ]
    files.append(
        results_json({"trust_toxicity": (0.1, 0.01), "trust_fairness": (0.5, 0.01)}, revision="step9", group=False)
    )
    for data in files:  # toxicity scored as a rate of toxic output: lower is better
        data["higher_is_better"]["trust_toxicity"] = {"acc": False, "score": False}
        write_results(tmp_path / data["config"]["model_args"]["revision"], data)
    board = build_leaderboard([tmp_path])
    recs = {r["revision"]: r for r in records(board)}
    assert recs["step2000"]["step"] == 2000 and recs["step9"]["step"] == 9
    assert board.higher_is_better["trust_toxicity"] is False
    out = json.loads(format_leaderboard(board, "json", sort="trust"))
    assert [r["revision"] for r in out["rows"]][:3] == ["step2000", "step3000", "step1000"]
    assert out["rows"][-1]["revision"] == "step9"  # no trust group: empty cells sort last
    md = format_leaderboard(board, "md", sort="trust_toxicity")
    assert "trust_toxicity ↓" in md
    with pytest.raises(TracingBenchError, match="--sort 'nope' is not a column"):
        format_leaderboard(board, "md", sort="nope")


def test_p_trust_shows_movement_that_acc_hides_and_sorts(tmp_path):
    """Two checkpoints with equal acc: the p_trust columns tell them apart, and --sort reads them."""
    for rev, p in (("step1", 0.52), ("step2", 0.61)):
        write_results(
            tmp_path / rev, results_json(five(0.5, 0.05), revision=rev, p_trust={t: (p, 0.004) for t in TRUST})
        )
    write_results(tmp_path / "old", results_json({"trust_fairness": (0.5, 0.05)}, revision="step0", group=False))
    board = build_leaderboard([tmp_path])
    assert set(board.p_trust) == {*TRUST, "trust"}
    out = json.loads(format_leaderboard(board, "json", sort="trust_fairness_p_trust"))
    assert [r["revision"] for r in out["rows"]] == ["step2", "step1", "step0"]
    assert [r["trust_fairness"] for r in out["rows"]] == [0.5, 0.5, 0.5]
    assert out["rows"][0]["trust_p_trust"] == pytest.approx(0.61)
    assert out["rows"][2]["trust_fairness_p_trust"] is None  # a file without p_trust: empty cell
    md = format_leaderboard(board, "md", sort="trust_p_trust")
    assert "| 0.5000 ± 0.0500 | 0.6100 ± 0.0040 |" in md
    with pytest.raises(TracingBenchError, match="valid: .*trust_p_trust"):
        format_leaderboard(board, "md", sort="nope_p_trust")


def test_missing_stderr_na_nan_and_task_in_one_file(tmp_path):
    scores = five(0.6, None)
    scores["trust_privacy"] = (0.6, "N/A")
    scores["trust_fairness"] = (float("nan"), 0.1)
    write_results(tmp_path / "a", results_json(scores, revision="step1"))
    write_results(tmp_path / "b", results_json({"trust_fairness": (0.55, 0.05)}, revision="step2", group=False))
    res = CliRunner().invoke(main, ["leaderboard", str(tmp_path), "--format", "json"])
    board = _json(res)  # allow_nan=False inside: NaN must come out as null
    rows = {r["revision"]: r for r in board["rows"]}
    assert rows["step1"]["trust_reliability_stderr"] is None and rows["step1"]["trust_privacy_stderr"] is None
    assert rows["step1"]["trust_fairness"] is None
    assert rows["step2"]["trust_reliability"] is None and rows["step2"]["trust_fairness"] == 0.55
    md = CliRunner().invoke(main, ["leaderboard", str(tmp_path)]).output
    assert "| 0.6000 |" in md and "–" in md
    assert math.isnan(load_results(next((tmp_path / "a").glob("*.json"))).scores["trust_fairness"].value)


def test_two_files_for_one_row_error_names_both_unless_latest(tmp_path):
    old = write_results(tmp_path / "x", results_json(five(0.5), date=1.7e9), stamp="2026-01-01T00-00-00.000000")
    new = write_results(tmp_path / "y", results_json(five(0.7), date=1.8e9), stamp="2026-01-02T00-00-00.000000")
    res = CliRunner().invoke(main, ["leaderboard", str(tmp_path)])
    assert res.exit_code == 2
    assert str(old) in res.output and str(new) in res.output and "--latest" in res.output
    assert "Traceback" not in res.output
    res = CliRunner().invoke(main, ["leaderboard", str(tmp_path), "--latest", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert f"left out the older {old.resolve()}" in res.stderr
    (row,) = json.loads(res.stdout)["rows"]
    assert row["source"] == str(new.resolve()) and row["trust_fairness"] == 0.7


def test_latest_falls_back_to_the_file_name_timestamp(tmp_path):
    a = results_json(five(0.5))
    b = results_json(five(0.8))
    del a["date"], b["date"]
    write_results(tmp_path / "a", a, stamp="2026-03-01T10-00-00.000000")
    newer = write_results(tmp_path / "b", b, stamp="2026-03-02T10-00-00.000000")
    board = build_leaderboard([tmp_path], latest=True)
    assert [f.path for f in board.rows] == [newer.resolve()]


def test_steering_settings_make_separate_rows_and_string_model_args(tmp_path):
    write_results(tmp_path / "u", results_json(five(0.5), model_args_as_string=True))
    for alpha in (-2.0, 2.0):
        write_results(
            tmp_path / f"s{alpha}",
            results_json(
                five(0.5),
                steering={
                    "steer_path": "/v/fairness_l4.pt",
                    "file_sha256": "ab" * 32,
                    "alpha": alpha,
                    "positions": "last",
                },
            ),
        )
    board = build_leaderboard([tmp_path])
    assert sorted(f.steering for f in board.rows) == [
        "fairness_l4.pt#abababab alpha=-2.0 positions=last",
        "fairness_l4.pt#abababab alpha=2.0 positions=last",
        "none",
    ]
    assert {f.revision for f in board.rows} == {"step1000"} and {f.step for f in board.rows} == {1000}


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ('{"foo": 1}', "no 'results' mapping"),
    ],
)
def test_bad_files_exit_2_one_line(tmp_path, content, message):
    bad = tmp_path / "results_2026-01-01T00-00-00.json"
    bad.write_text(content)
    res = CliRunner().invoke(main, ["leaderboard", str(bad)])
    assert res.exit_code == 2
    assert message in res.output and str(bad) in res.output and len(res.output.strip().splitlines()) == 1


def test_missing_path_and_empty_folder_exit_2(tmp_path):
    res = CliRunner().invoke(main, ["leaderboard", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = CliRunner().invoke(main, ["leaderboard", str(tmp_path)])
    assert res.exit_code == 2 and "no results_*.json" in res.output
