"""`tracing-bench demo --fast` end to end: every artefact exists and the tables agree with each other."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tracing_bench.cli import main
from tracing_bench.dimensions import DIMENSIONS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    res = CliRunner().invoke(main, ["demo", "--fast", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out, res.output


@pytest.mark.slow
def test_demo_writes_every_artefact(demo_run):
    out, output = demo_run
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir() if (p / "config.json").exists())
    meta = json.loads((out / "checkpoints" / "pretrain.json").read_text())
    n_layers = meta["config"]["layers"] if "layers" in meta["config"] else meta["model_config"]["num_hidden_layers"]
    assert len(ckpts) >= 3

    probes = _csv(out / "trace" / "probes.csv")
    mi = _csv(out / "trace" / "mi.csv")
    # one row per checkpoint x dimension x layer (x probe kind)
    assert len(probes) == len(ckpts) * len(DIMENSIONS) * n_layers * 2
    assert len(mi) == len(ckpts) * len(DIMENSIONS) * n_layers
    assert {r["dimension"] for r in probes} == set(DIMENSIONS) == {r["dimension"] for r in mi}
    assert {r["revision"] for r in probes} == set(ckpts) == {r["revision"] for r in mi}
    for r in probes:
        assert 0.0 <= float(r["test_acc"]) <= 1.0 and 0.0 <= float(r["val_acc"]) <= 1.0
    for r in mi:
        assert float(r["i_xt"]) > 0 and float(r["i_yt"]) >= 0

    figures = list((out / "trace" / "figures").glob("*.png"))
    assert len(figures) >= 3 * len(DIMENSIONS)  # curves, heatmap and MI per dimension
    for f in figures:
        assert f.read_bytes()[:8] == PNG_MAGIC and f.stat().st_size > 1000

    sweep = _csv(out / "sweep" / "sweep.csv")
    best = json.loads((out / "sweep" / "best.json").read_text())
    settings = {(r["vector"], r["alpha"]) for r in sweep}
    assert len(settings) == 1 + 4  # the unsteered baseline and four alphas
    assert {f"trust_{d}" for d in DIMENSIONS} <= {r["task"] for r in sweep}
    assert list((out / "steering").glob("*.pt")) and list((out / "steering").glob("*.pt.json"))

    board = _csv(out / "leaderboard.csv")
    assert len(board) == 3  # first, middle and last checkpoint
    for f in (out / "results").rglob("results_*.json"):
        assert json.loads(f.read_text())["results"]

    report = (out / "report.html").read_text()
    assert report.count("data:image/png;base64,") >= len(figures)
    assert "src=\"http" not in report

    summary = (out / "summary.txt").read_text()
    assert f"report: {out / 'report.html'}" in output
    # the summary's figures are the tables' own: first/last accuracy of every dimension
    steps = sorted({int(r["step"]) for r in probes})
    for dim in DIMENSIONS:
        rows = [r for r in probes if r["dimension"] == dim and r["probe"] == "logistic"]
        last = [r for r in rows if int(r["step"]) == steps[-1]]
        chosen = max(last, key=lambda r: (float(r["val_acc"]), -int(r["layer"])))
        assert f"{float(chosen['test_acc']):.3f}" in summary.split(dim, 1)[1].splitlines()[0]
    steered = [d for d in DIMENSIONS if f"steering ({d} vector" in summary]
    assert len(steered) == 1 and f"trust_{steered[0]}" in best["best"]


@pytest.mark.slow
def test_demo_second_run_reuses_everything(demo_run):
    out, _ = demo_run
    before = {p: p.stat().st_mtime for p in (out / "results").rglob("results_*.json")}
    sweep_before = (out / "sweep" / "sweep.csv").stat().st_mtime
    res = CliRunner().invoke(main, ["demo", "--fast", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "reusing" in res.output
    assert {p: p.stat().st_mtime for p in (out / "results").rglob("results_*.json")} == before
    assert (out / "sweep" / "sweep.csv").stat().st_mtime == sweep_before


def test_demo_bad_input_one_line(tmp_path):
    res = CliRunner().invoke(main, ["demo", "--fast", "--out", str(tmp_path / "x"), "--limit", "0"])
    assert res.exit_code == 2
    assert res.output.strip().startswith("error: --limit 0") and len(res.output.strip().splitlines()) == 1
