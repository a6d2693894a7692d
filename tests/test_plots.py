"""Trace figures from tidy tables, the MI turn (compare.phases), the radar chart."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from fake_traces import PYTHIA, write_trace_tables
from tracing_bench.compare.phases import first_peak, mi_turns
from tracing_bench.report.plots import radar_chart, trace_figures


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_trace_figures_all_kinds_with_log_steps(tmp_path):
    probes, mis = write_trace_tables(tmp_path / "t", PYTHIA)
    paths = trace_figures(probes, mis, tmp_path / "fig")
    names = [p.name for p in paths]
    assert names == [
        "probes_reliability.png",
        "probes_reliability_heatmap.png",
        "probes_fairness.png",
        "probes_fairness_heatmap.png",
        "mi_reliability.png",
        "mi_fairness.png",
    ]
    for p in paths:
        w, h = _png_size(p)
        assert w > 200 and h > 150


@pytest.mark.parametrize("mi", ["absent", "header_only", "none"])
def test_missing_mi_gives_probe_figures_only(tmp_path, mi):
    probes, mis = write_trace_tables(tmp_path / "t", PYTHIA[:3], dims=("fairness",), mi=False)  # mi.csv: header only
    if mi == "absent":
        mis.unlink()
    paths = trace_figures(probes, None if mi == "none" else mis, tmp_path / "fig")
    assert [p.name for p in paths] == ["probes_fairness.png", "probes_fairness_heatmap.png"]


def test_checkpoints_without_steps_and_a_single_checkpoint(tmp_path):
    probes, mis = write_trace_tables(
        tmp_path / "a", [("final", None), ("sft", None), ("chat", None)], dims=("privacy",)
    )
    paths = trace_figures(probes, mis, tmp_path / "fa")
    assert [p.name for p in paths] == ["probes_privacy.png", "probes_privacy_heatmap.png", "mi_privacy.png"]
    probes, mis = write_trace_tables(tmp_path / "b", [("step5", 5)], dims=("privacy",))
    assert len(trace_figures(probes, mis, tmp_path / "fb")) == 3


def test_no_rows_no_figures(tmp_path):
    assert trace_figures(tmp_path / "missing.csv", None, tmp_path / "fig") == []


# -------------------------------------------------------------------------------- MI turns
def _rows(series: dict[tuple[str, int], list[tuple[int | None, float]]]):
    return [
        {"dimension": d, "layer": str(lay), "step": "" if s is None else str(s), "revision": f"r{i}", "i_xt": str(v)}
        for (d, lay), pts in series.items()
        for i, (s, v) in enumerate(pts)
    ]


def test_mi_turns_first_peak_per_dimension_and_layer():
    rows = _rows(
        {
            ("fairness", 0): [(0, 1.0), (100, 2.0), (200, 3.0), (400, 2.0), (800, 1.0)],  # turn at 200
            ("fairness", 1): [(0, 3.0), (100, 2.0), (200, 1.0)],  # only falls
            ("fairness", 2): [(0, 1.0), (100, 2.0), (200, 3.0)],  # only rises
            ("privacy", 0): [(0, 1.0), (100, 2.0), (200, 2.0), (400, 1.0)],  # plateau: first of it
            ("privacy", 1): [(0, 1.0), (50, 2.0), (100, 1.5), (200, 5.0), (400, 1.0)],  # first peak, not max
        }
    )
    assert mi_turns(rows) == {
        ("fairness", 0): 200,
        ("fairness", 1): None,
        ("fairness", 2): None,
        ("privacy", 0): 100,
        ("privacy", 1): 50,
    }


def test_mi_turns_sorts_by_step_and_uses_revision_without_step():
    shuffled = _rows({("f", 3): [(400, 2.0), (0, 1.0), (200, 3.0), (800, 1.0)]})
    assert mi_turns(shuffled) == {("f", 3): 200}
    no_steps = _rows({("f", 0): [(None, 1.0), (None, 3.0), (None, 2.0)]})
    assert mi_turns(no_steps) == {("f", 0): "r1"}


def test_mi_turns_tolerance_and_nan():
    noisy = _rows({("f", 0): [(0, 1.0), (1, 1.01), (2, 1.0), (3, 2.0), (4, 3.0), (5, 1.0)]})
    assert mi_turns(noisy) == {("f", 0): 1}
    assert mi_turns(noisy, rel_tol=0.05) == {("f", 0): 4}
    assert first_peak([1.0, math.nan, 2.0, 1.0]) == 2
    assert first_peak([1.0, 2.0]) is None


def test_radar_chart(tmp_path):
    rows = [
        {
            "label": "a@step1",
            "trust_reliability": 0.5,
            "trust_privacy": 0.6,
            "trust_toxicity": 0.4,
            "trust_fairness": 0.7,
            "trust_robustness": None,
        },
        {
            "label": "b@step2",
            "trust_reliability": 0.6,
            "trust_privacy": 0.5,
            "trust_toxicity": 0.5,
            "trust_fairness": 0.6,
            "trust_robustness": 0.9,
        },
    ]
    path = radar_chart(rows, tmp_path / "radar.png")
    assert path is not None and _png_size(path)[0] > 200
    assert radar_chart([{"label": "x", "trust_fairness": 0.5}], tmp_path / "none.png") is None
