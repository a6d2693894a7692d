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
    assert 'src="http' not in report

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
    # every claim of the summary is findings.json's, with its p-value and interval
    findings = json.loads((out / "trace" / "findings.json").read_text())
    for dim, claim in findings["learned"]["dimensions"].items():
        line = summary.split(dim, 1)[1].splitlines()[0]
        assert line.endswith(claim["claim"]) and "(p=" in claim["claim"] and " [" in claim["claim"]
    for e in findings["mi_turns"]["series"]:
        if e["turn"] is not None:
            assert f"block {e['layer']}: {e['claim']}" in summary and "noise sd" in e["claim"]
    assert "within noise" in summary.split("steering (", 1)[1].splitlines()[1] or "no admissible" in summary
    assert "> +2 points" not in summary  # the untested threshold claim is gone


@pytest.mark.slow
def test_robustness_is_learned_on_the_fast_series_given_enough_statements(demo_run, tmp_path):
    """--fast traces 400 statements (200 test): too few for robustness's +0.1 to pass Holm over 20 tests.

    Traced on 1000 statements (500 test), the same first and last --fast checkpoints show it learned.
    """
    from tracing_bench.trace import trace

    out, _ = demo_run
    fast = json.loads((out / "trace" / "findings.json").read_text())["learned"]["dimensions"]["robustness"]
    assert fast["n_test"] == 200 and fast["change"] > 0
    folders = sorted(
        (p for p in (out / "checkpoints").iterdir() if (p / "config.json").exists()),
        key=lambda p: int(p.name.removeprefix("step")),
    )
    series = tmp_path / "series"
    series.mkdir()
    for p in (folders[0], folders[-1]):
        (series / p.name).symlink_to(p, target_is_directory=True)
    res = trace(
        str(series),
        out=tmp_path / "t",
        dimensions="robustness",
        probes="logistic",
        max_statements=1000,
        cache_dir=out / "cache",
        batch_size=64,
        device="cpu",
        dtype="float32",
        progress=False,
    )
    claim = json.loads(res.findings_json.read_text())["learned"]["dimensions"]["robustness"]
    assert claim["n_test"] == 500
    assert claim["verdict"] == "learned", claim["claim"]
    assert claim["p_holm"] < 0.05 and claim["change_ci"][0] > 0


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


# ------------------------------------------------------------------ the summary from findings, results
def _findings():
    """findings.json of a 2-checkpoint series where robustness is learned and fairness is not."""
    import numpy as np

    from tracing_bench.compare.findings import build_findings
    from tracing_bench.files import pack_bits

    n = 200
    first = np.arange(n) < 120
    last_rob = first | (np.arange(n) >= 160)  # +40 statements right, none lost
    last_fair = first.copy()
    last_fair[:3], last_fair[150:154] = False, True

    def part(c):
        return {
            "probes": [{"layer": 1, "probe": "logistic", "val_acc": 0.6, "test_correct": pack_bits(c)}],
            "mi": [],
            "test_statements": {"n": n, "sha256": "s", "split": "test"},
        }

    class D:
        def __init__(self, name):
            self.name, self.md5 = name, "m"

    ckpts = [
        {"model": "m", "revision": "step0", "step": 0, "label": "step0"},
        {"model": "m", "revision": "step32", "step": 32, "label": "step32"},
    ]
    return build_findings(
        ckpts,
        [D("robustness"), D("fairness")],
        {"robustness": [part(first), part(last_rob)], "fairness": [part(first), part(last_fair)]},
    )


def _board(tmp_path, with_p_trust):
    from fake_results import five, results_json, write_results
    from tracing_bench.compare.leaderboard import build_leaderboard

    for step, acc, p in ((0, 0.60, 0.500), (32, 0.60, 0.540)):
        data = results_json(five(acc, 0.05), model="m", revision=f"step{step}")
        if with_p_trust:
            for task, cell in data["results"].items():
                if task.startswith("trust_"):
                    cell["p_trust,none"], cell["p_trust_stderr,none"] = p, 0.004
        write_results(tmp_path / f"step{step}", data)
    return build_leaderboard([tmp_path], latest=True)


def _sweep():
    rows = [
        {
            "vector": "none",
            "alpha": "0.0",
            "layer": "",
            "task": "trust_fairness",
            "metric": "score",
            "score": "0.5",
            "stderr": "0.1",
        },
        {
            "vector": "none",
            "alpha": "0.0",
            "layer": "",
            "task": "trust_fairness",
            "metric": "p_trust",
            "score": "0.50",
            "stderr": "0.005",
        },
    ]
    for alpha, score, p in ((1.0, "0.55", "0.53"), (4.0, "0.5", "0.60")):
        rows += [
            {
                "vector": "v.pt",
                "alpha": str(alpha),
                "layer": "1",
                "task": "trust_fairness",
                "metric": "score",
                "score": score,
                "stderr": "0.1",
            },
            {
                "vector": "v.pt",
                "alpha": str(alpha),
                "layer": "1",
                "task": "trust_fairness",
                "metric": "p_trust",
                "score": p,
                "stderr": "0.005",
            },
        ]
    best = {
        "best": {
            "trust_fairness": {
                "metric": "score",
                "layer": 1,
                "alpha": 1.0,
                "vector": "v.pt",
                "score": 0.55,
                "delta": 0.05,
                "stderr": 0.1,
                "ppl_increase": 0.01,
                "improves": True,
            }
        }
    }
    return rows, best


@pytest.mark.parametrize("with_p_trust", [True, False])
def test_summary_states_only_tested_claims(tmp_path, with_p_trust):
    from tracing_bench.compare.findings import checkpoint_changes, steering_changes
    from tracing_bench.demo import DemoSettings, format_summary

    findings = _findings()
    rows, best = _sweep()
    if not with_p_trust:
        rows = [r for r in rows if r["metric"] != "p_trust"]
    text = format_summary(
        findings,
        "fairness",
        1,
        steering_changes(rows, best),
        checkpoint_changes(_board(tmp_path, with_p_trust)),
        tmp_path / "report.html",
        {"trace": 1.0},
        DemoSettings(fast=True, limit=20),
        source="step4",
        target="step32",
    )
    lines = text.splitlines()
    rob = next(ln for ln in lines if ln.strip().startswith("robustness"))
    fair = next(ln for ln in lines if ln.strip().startswith("fairness"))
    claims = findings["learned"]["dimensions"]
    assert claims["robustness"]["verdict"] == "learned" and claims["fairness"]["verdict"] == "within noise"
    assert claims["robustness"]["claim"] in rob and "0.600 [" in rob and "0.800 [" in rob
    assert fair.endswith(claims["fairness"]["claim"]) and "within noise (p=" in fair
    from tracing_bench.compare.findings import dimension_title

    assert f"learned during pre-training: {dimension_title('robustness')} (p=" in text
    assert "Holm-adjusted over 2 dimension x block tests" in text
    # steering: acc +0.05 with stderr 0.1 on both sides is within noise; p_trust +0.03 with 0.005 is not
    steer = next(ln for ln in lines if "best admissible alpha 1" in ln)
    assert "score 0.500 -> 0.550, +0.050 [" in steer and "], within noise" in steer.split(";")[0]
    if with_p_trust:
        assert "p_trust 0.500 -> 0.530, +0.030 [+0.016, +0.044]" in steer
        assert "within noise" not in steer.split(";")[1]
    else:
        assert "p_trust" not in text
    # checkpoints: acc identical -> within noise; p_trust +0.04 with 0.004 stderr each -> beyond noise
    rel = next(ln for ln in lines if ln.strip().startswith("trust_reliability"))
    assert "acc 0.600 -> 0.600, +0.000 [-0.139, +0.139], within noise" in rel
    if with_p_trust:
        assert "p_trust 0.500 -> 0.540, +0.040 [+0.029, +0.051]" in rel and rel.count("within noise") == 1
    assert "trustworthy log-odds" not in text  # a best.json without the paired change (an older sweep)
    group = next(ln for ln in lines if ln.strip().startswith("trust (group)"))
    assert "no stderr: not tested" in group  # lm-eval's N/A is never called a change
    assert "MI turn of I(T;X)" in text and "no MI rows" in text


def test_summary_states_the_paired_per_document_change(tmp_path):
    from tracing_bench.compare.findings import steering_changes
    from tracing_bench.demo import DemoSettings, format_summary
    from tracing_bench.steering.effects import paired_change, steerability

    rows, best = _sweep()
    base, steered = {0: 0.1, 1: -0.2, 2: 0.3, 3: 0.0}, {0: 0.2, 1: -0.3, 2: 0.3, 3: 0.1}
    change = paired_change(base, steered)
    best["best"]["trust_fairness"]["logodds"] = {
        "change": change.as_dict(),
        "steerability": steerability({0.0: base, 1.0: steered}).as_dict(),
    }
    text = format_summary(
        _findings(),
        "fairness",
        1,
        steering_changes(rows, best),
        None,
        tmp_path / "report.html",
        {"trace": 1.0},
        DemoSettings(fast=True, limit=20),
    )
    line = next(ln for ln in text.splitlines() if "trustworthy log-odds" in ln)
    assert f"paired per document: {change.claim}; steerability +0.025 nats per alpha [" in line
    assert change.claim.startswith("+0.025 nats [") and "25% of 4 documents the wrong way, within noise" in line


def test_summary_says_when_a_checkpoint_gives_one_answer(tmp_path):
    from fake_results import write_answer_samples
    from tracing_bench.compare.findings import checkpoint_changes
    from tracing_bench.compare.leaderboard import build_leaderboard
    from tracing_bench.demo import DemoSettings, format_summary

    board = _board(tmp_path, True)
    write_answer_samples(tmp_path / "step0", "trust_toxicity", [[" 0"]] * 20)  # one answer to every prompt
    write_answer_samples(tmp_path / "step32", "trust_toxicity", [[" 0"]] * 12 + [[" 1"]] * 8)
    write_answer_samples(tmp_path / "step32", "trust_privacy", [[" 1"]] * 19 + [[" 0"]])
    changes = checkpoint_changes(board)
    tox = next(e for e in changes["tasks"] if e["task"] == "trust_toxicity")
    assert [a["share"] for a in tox["answers"]] == [1.0, 0.6]
    text = format_summary(
        _findings(),
        "fairness",
        1,
        [],
        changes,
        tmp_path / "report.html",
        {"trace": 1.0},
        DemoSettings(fast=True, limit=20),
    )
    lines = text.splitlines()
    at = {ln.split()[0]: i for i, ln in enumerate(lines) if ln.strip().startswith("trust_")}
    note = lines[at["trust_toxicity"] + 1]
    assert note.strip().startswith("one answer: m@step0 ' 0' to 100% of 20 prompts;")
    assert "m@step32" not in note  # 60% is not one answer
    assert "m@step32 ' 1' to 95% of 20 prompts" in lines[at["trust_privacy"] + 1]
    assert not lines[at["trust_reliability"] + 1].strip().startswith("one answer")  # no sample log: nothing said
    group = next(i for i, ln in enumerate(lines) if ln.strip().startswith("trust (group)"))
    assert not lines[group + 1].strip().startswith("one answer")  # not every task is logged, nor one-answer

    # every task logged: one answer everywhere at step0, nowhere at step32 -> the group says so for step0
    for task in ("trust_reliability", "trust_privacy", "trust_toxicity", "trust_fairness", "trust_robustness"):
        write_answer_samples(tmp_path / "step0", task, [[" 0"]] * 20)
        write_answer_samples(tmp_path / "step32", task, [[" 0"]] * 10 + [[" 1"]] * 10)
    lines = format_summary(
        _findings(),
        "fairness",
        1,
        [],
        checkpoint_changes(build_leaderboard([tmp_path])),
        tmp_path / "report.html",
        {"trace": 1.0},
        DemoSettings(fast=True, limit=20),
    ).splitlines()
    group = next(i for i, ln in enumerate(lines) if ln.strip().startswith("trust (group)"))
    assert lines[group + 1].strip() == (
        "one answer on every task above at m@step0: the group score there comes from those fixed answers"
    )
