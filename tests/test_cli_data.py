"""`tracing-bench data show|check` through the real click entry point."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fake_data import MALFORMED
from tracing_bench.cli import main
from tracing_bench.dimensions import DIMENSIONS, load_dimension


def test_data_show_all_prints_every_dimension():
    res = CliRunner().invoke(main, ["data", "show"])
    assert res.exit_code == 0, res.output
    for name in DIMENSIONS:
        assert name in res.output


def test_data_show_json_matches_loader():
    res = CliRunner().invoke(main, ["data", "show", "privacy", "--json"])
    assert res.exit_code == 0
    (summary,) = json.loads(res.output)
    data = load_dimension("privacy")
    assert summary["statements"] == len(data.statements)
    assert summary["test"]["n"] == len(data.splits["test"])
    assert summary["dropped"] == data.dropped


def test_data_check_accepts_a_good_file(tmp_path):
    f = tmp_path / "good.csv"
    f.write_text("statement,label\n" + "".join(f"s{i},{i % 2}\n" for i in range(20)), encoding="utf-8")
    res = CliRunner().invoke(main, ["data", "check", str(f)])
    assert res.exit_code == 0
    assert res.output.startswith("ok:")


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_data_check_rejects_malformed_with_one_line_exit_2(tmp_path, kind):
    text, expected = MALFORMED[kind]
    f = tmp_path / f"{kind}.csv"
    f.write_text(text, encoding="utf-8")
    res = CliRunner().invoke(main, ["data", "check", str(f)])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    assert "Traceback" not in res.output


def test_data_check_binary_and_missing(tmp_path):
    f = tmp_path / "model.bin"
    f.write_bytes(b"\x00\x01\x02")
    for target in (f, tmp_path / "nope.csv", tmp_path):
        res = CliRunner().invoke(main, ["data", "check", str(target)])
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output


def test_data_show_says_what_stereoset_holds_and_the_crows_pairs_limit():
    import csv

    from tracing_bench.dimensions import DATA_DIR

    res = CliRunner().invoke(main, ["data", "show"])
    assert res.exit_code == 0, res.output
    released = [line for line in res.output.splitlines() if "stereoset-released" in line]
    assert len(released) == 1 and "related (label 1) vs unrelated (label 0)" in released[0]
    with open(DATA_DIR / "crows_pairs_anonymized.csv", newline="", encoding="utf-8") as f:
        kinds = [r["stereo_antistereo"] for r in csv.DictReader(f)]
    limit = [line for line in res.output.splitlines() if "Blodgett" in line]
    assert len(limit) == 1
    assert f"{kinds.count('stereo'):,} of {len(kinds):,} pairs" in limit[0]
    assert f"{kinds.count('antistereo')} antistereo" in limit[0]
    res = CliRunner().invoke(main, ["data", "show", "fairness", "--protocol", "reference"])
    assert "related continuation" in res.output and "Blodgett" not in res.output
