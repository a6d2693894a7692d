"""Controls of a probe claim: control labelling (selectivity), random-init baseline, held-out-group transfer."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from tracing_bench.cli import main
from tracing_bench.dimensions import load_dimension
from tracing_bench.probes.controls import control_labels, probe_controls, transfer_folds
from tracing_bench.splits import paper_splits
from tracing_bench.trace import trace

TOPICS = ("north", "south", "east", "west")
# a word pair per topic: the first word co-occurs with label 1, the second with label 0
MARKERS = (("zebra", "lemon"), ("violin", "carpet"), ("copper", "window"), ("meadow", "pencil"))


def _sk_acc(x, y, tr, te):
    """Accuracy of scikit-learn's L2 logistic regression (C=1) on standardised features."""
    sc = StandardScaler().fit(x[tr])
    clf = LogisticRegression(C=1.0, max_iter=5000, tol=1e-10).fit(sc.transform(x[tr]), y[tr])
    return float((clf.predict(sc.transform(x[te])) == y[te]).mean())


def _synthetic(n=400, planted="none", seed=0):
    """Noise features, random or planted labels, four topics (two statements per group)."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n // 2), 2)
    topic = np.array(TOPICS)[rng.integers(0, 4, n // 2)].repeat(2)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 12))
    if planted == "per-topic":  # a marker that co-occurs with label 1, a different one in each topic
        for t, name in enumerate(TOPICS):
            x[:, t] += 4.0 * ((topic == name) & (y == 1))
    splits = paper_splits(groups, y, seed)
    data = SimpleNamespace(labels=y, splits=splits, extra={"topic": topic.tolist()}, groups=groups)
    return x, data


def test_control_labels_permute_within_each_split():
    y = np.random.default_rng(1).integers(0, 2, 300)
    splits = paper_splits(np.arange(300) // 3, y, 0)
    c = control_labels(y, splits, seed=0)
    for name in ("test", "probe_train", "probe_val"):
        idx = splits[name]
        assert c[idx].sum() == y[idx].sum()  # same label counts in every split
    assert (c != y).any() and np.array_equal(c, control_labels(y, splits, seed=0))
    assert not np.array_equal(c, control_labels(y, splits, seed=1))


def test_transfer_folds_partition_the_groups():
    values = ["a"] * 50 + ["b"] * 30 + ["c"] * 20 + ["d"] * 20 + ["e"] * 5
    folds = transfer_folds(values, seed=0, k=4)
    assert sorted(g for f in folds for g in f) == ["a", "b", "c", "d", "e"] and len(folds) == 4
    assert transfer_folds(["a"] * 9, seed=0) == []


def test_control_and_transfer_match_sklearn():
    x, data = _synthetic(planted="per-topic")
    y, sp = data.labels, data.splits
    got, info = probe_controls(x[None], data, probes=("logistic",), layers=[0], seed=0)
    row = got[("logistic", 0)]
    te = sp["test"]
    want_control = _sk_acc(x, control_labels(y, sp, 0), sp["probe_train"], te)
    assert abs(row["control_acc"] - want_control) <= 2 / te.size
    # transfer by hand: each fold's test statements scored by a probe fitted on the other folds' statements
    topic = np.asarray(data.extra["topic"])
    right = 0
    for fold in info["transfer"]["folds"]:
        inside = np.isin(topic, fold)
        tr, t_in = sp["probe_train"][~inside[sp["probe_train"]]], te[inside[te]]
        right += _sk_acc(x, y, tr, t_in) * t_in.size
    assert abs(row["transfer_acc"] - right / te.size) <= 2 / te.size
    assert row["transfer_acc_hi"] < 0.65  # a per-topic marker does not carry over to unseen topics


def _write_csv(path, planted: str, n=200, seed=0):
    """privacy statements with labels drawn at random, a topic column and optionally a planted word: the same
    word pair in every topic (``shared``) or a different pair per topic (``per-topic``)."""
    data = load_dimension("privacy")
    rng = np.random.default_rng(seed)
    rows = []
    for i, s in enumerate(data.statements[:n]):
        y, topic = int(rng.integers(0, 2)), i % 4
        if planted in ("shared", "per-topic"):  # both labels end in a word: only its identity tells the label
            word = MARKERS[0 if planted == "shared" else topic][1 - y]
            s = f"{s.rstrip('.')} {word}"
        rows.append((s, y, TOPICS[topic]))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["statement", "label", "topic"])
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def planted_traces(tiny_llama, tmp_path_factory):
    """One tiny model traced on random labels, a shared marker and per-topic markers (one run, three dimensions)."""
    root = tmp_path_factory.mktemp("planted")
    paths = [_write_csv(root / f"{name}.csv", name) for name in ("random", "shared", "per-topic")]
    out = root / "out"
    res = trace(
        str(tiny_llama),
        out=out,
        dimensions=",".join(map(str, paths)),
        cache_dir=root / "cache",
        batch_size=32,
        progress=False,
        mi=False,
    )
    return out, res


def test_single_model_reports_random_init_baseline(planted_traces):
    out, res = planted_traces
    findings = json.loads((out / "findings.json").read_text())
    controls = findings["controls"]
    assert controls["baseline"] == "random-init"
    assert (out / "baseline.csv").exists()
    for e in controls["dimensions"].values():
        assert e["baseline"]["kind"] == "random-init" and e["baseline"]["p_holm"] is not None
        assert "vs random-init" in e["claim"]
    base = list(csv.DictReader(open(out / "baseline.csv")))
    assert {r["revision"] for r in base} == {"random-init"}
    trace_json = json.loads((out / "trace.json").read_text())
    assert trace_json["tables"]["baseline"] == "baseline.csv"
    assert any("controls:" in line for line in findings["summary"])


def test_random_labels_selectivity_within_noise(planted_traces):
    out, _ = planted_traces
    e = json.loads((out / "findings.json").read_text())["controls"]["dimensions"]["random"]
    s = e["selectivity"]
    assert s["change_ci"][0] <= 0 <= s["change_ci"][1] and s["p_holm"] >= 0.05
    assert e["verdict"] != "learned"
    rows = [r for r in csv.DictReader(open(out / "probes.csv")) if r["dimension"] == "random"]
    for r in rows:  # every row has its control and selectivity interval
        assert float(r["selectivity_lo"]) <= float(r["selectivity"]) <= float(r["selectivity_hi"])
        assert abs(float(r["test_acc"]) - float(r["control_acc"]) - float(r["selectivity"])) < 1e-9


def test_planted_shared_marker_is_surface_only(planted_traces):
    out, _ = planted_traces
    e = json.loads((out / "findings.json").read_text())["controls"]["dimensions"]["shared"]
    assert e["acc_ci"][0] > 0.8  # the marker is read ...
    assert "baseline" in e["failed"] and e["verdict"] == "surface features only"  # ... by random features too


def test_planted_per_topic_marker_does_not_transfer(planted_traces):
    out, _ = planted_traces
    e = json.loads((out / "findings.json").read_text())["controls"]["dimensions"]["per-topic"]
    assert e["acc"] > e["transfer"]["acc"] and "transfer" in e["failed"]
    assert e["verdict"] in ("surface features only", "no transfer")
    rows = [r for r in csv.DictReader(open(out / "probes.csv")) if r["dimension"] == "per-topic"]
    assert all(r["transfer_acc"] != "" for r in rows)


def test_cli_baseline_none_and_bad_value(tiny_llama, tmp_path):
    path = _write_csv(tmp_path / "d.csv", "none", n=60)
    out = tmp_path / "out"
    args = [
        "trace",
        "--model",
        str(tiny_llama),
        "--dimensions",
        str(path),
        "--cache-dir",
        str(tmp_path / "c"),
        "--out",
        str(out),
        "--layers",
        "0",
        "--no-controls",
    ]
    res = CliRunner().invoke(main, [*args, "--baseline", "none"])
    assert res.exit_code == 0, res.output
    e = json.loads((out / "findings.json").read_text())["controls"]["dimensions"]["d"]
    assert e["verdict"] == "not tested" and e["selectivity"] is None and not (out / "baseline.csv").exists()
    bad = CliRunner().invoke(main, [*args, "--baseline", "zero"])
    assert bad.exit_code == 2 and "zero" in bad.output


def _part(correct, *, sha="s", control=None, transfer=None, labels=None, layer=0, val=0.9):
    """A hand-built part: one logistic row at ``layer`` with its per-statement bits."""
    from tracing_bench.files import pack_bits

    n = len(correct)
    row = {"probe": "logistic", "layer": layer, "val_acc": val, "n_test": n, "test_correct": pack_bits(correct)}
    if control is not None:
        row["control_correct"] = pack_bits(control)
    if transfer is not None:
        row["transfer_correct"] = pack_bits(transfer)
    labels = np.arange(n) % 2 == 0 if labels is None else labels
    return {
        "probes": [row],
        "test_statements": {"n": n, "sha256": sha, "labels": pack_bits(labels)},
        "controls": {"transfer": {"column": "topic"}} if transfer is not None else {},
    }


def _bits(rate, n=200, seed=0):
    return np.random.default_rng(seed).random(n) < rate


def test_claim_needs_every_control_and_names_the_failed_one():
    from scipy.stats import binomtest

    from tracing_bench.compare.claims import add_claims, control_lines

    last, control = _bits(0.9, seed=1), _bits(0.5, seed=2)
    base = {"d": _part(_bits(0.5, seed=3))}

    def run(transfer):
        findings = {"checkpoints": [{"step": None}], "learned": {"dimensions": {}}, "summary": []}
        add_claims(findings, {"d": [_part(last, control=control, transfer=transfer)]}, base)
        return findings

    good = run(_bits(0.85, seed=4))
    e = good["controls"]["dimensions"]["d"]
    assert e["verdict"] == "learned" and e["failed"] == []
    b, c = int((control & ~last).sum()), int((~control & last).sum())  # McNemar by hand, one test in the family
    assert e["selectivity"]["p_holm"] == pytest.approx(min(1.0, binomtest(min(b, c), b + c, 0.5).pvalue))
    assert e["transfer"]["p_value"] == pytest.approx(
        binomtest(int(_bits(0.85, seed=4).sum()), 200, 0.5, alternative="greater").pvalue
    )
    assert good["summary"] == [f"d: controls: {e['claim']}"]
    assert any("learned" in line for line in control_lines(good))
    bad = run(_bits(0.5, seed=5))["controls"]["dimensions"]["d"]
    assert bad["verdict"] == "no transfer" and bad["failed"] == ["transfer"]


def test_learned_verdict_is_withdrawn_when_a_control_fails():
    from tracing_bench.compare.claims import add_claims

    first, last = _bits(0.5, seed=1), _bits(0.95, seed=2)
    findings = {
        "checkpoints": [{"step": 0}, {"step": 9}],
        "learned": {
            "first": "step 0",
            "dimensions": {
                "d": {
                    "layer": 0,
                    "verdict": "learned",
                    "claim": "learned (p=1e-20)",
                    "first_acc": 0.5,
                    "change": 0.45,
                    "change_ci": [0.4, 0.5],
                    "p_value": 1e-20,
                    "p_holm": 1e-20,
                }
            },
        },
        "summary": ["d: learned (p=1e-20)"],
    }
    parts = {"d": [_part(first), _part(last, control=_bits(0.93, seed=3))]}
    add_claims(findings, parts, None)
    e = findings["controls"]["dimensions"]["d"]
    assert findings["controls"]["baseline"] == "first checkpoint (step 0)"
    assert e["baseline"]["passed"] and e["verdict"] == "not selective"
    ld = findings["learned"]["dimensions"]["d"]
    assert ld["verdict"] == "not selective" and ld["test_verdict"] == "learned"
    assert findings["summary"][0].startswith("d: learned (p=1e-20); controls: not selective")


def test_series_with_step0_uses_first_checkpoint_and_report_shows_controls(series_folder, planted_traces, tmp_path):
    from tracing_bench.report.html import build_report

    out = tmp_path / "series"
    path = _write_csv(tmp_path / "shared.csv", "shared", n=80)
    trace(str(series_folder), out=out, dimensions=str(path), cache_dir=tmp_path / "cache", layers="0", progress=False)
    controls = json.loads((out / "findings.json").read_text())["controls"]
    assert controls["baseline"] == "first checkpoint (step 0)" and not (out / "baseline.csv").exists()
    page = build_report([planted_traces[0]], tmp_path / "r.html").read_text()
    assert "Do the probe claims survive their controls?" in page and "surface features only" in page


def test_control_figures(planted_traces, tmp_path):
    from fake_traces import PYTHIA, write_trace_tables
    from tracing_bench.report.control_plots import control_figures

    out, _ = planted_traces
    paths = control_figures(out / "probes.csv", tmp_path / "fig")
    assert sorted(p.name for p in paths) == ["controls_per-topic.png", "controls_random.png", "controls_shared.png"]
    assert all(p.stat().st_size > 1000 for p in paths)
    probes, _ = write_trace_tables(tmp_path / "old", PYTHIA)  # a trace without the control columns
    assert control_figures(probes, tmp_path / "fig2") == []


def test_merge_without_the_baseline_parts_says_so(tiny_llama, tmp_path):
    import shutil

    from tracing_bench.checkpoints import resolve_series
    from tracing_bench.settings import TraceSettings
    from tracing_bench.trace import load_datas, merge

    path = _write_csv(tmp_path / "d.csv", "none", n=60)
    settings = TraceSettings.from_options(
        dimensions=str(path), layers="0", cache_dir=str(tmp_path / "c"), series_name=str(tiny_llama)
    )
    out = tmp_path / "out"
    trace(str(tiny_llama), out=out, settings=settings, progress=False)
    for folder in (out / "parts").glob("*/random-init-*"):
        shutil.rmtree(folder)
    res = merge(out, resolve_series(str(tiny_llama)), load_datas(settings), settings)
    controls = res.findings["controls"]
    assert controls["baseline"] is None and "not traced" in controls["baseline_note"]
    e = controls["dimensions"]["d"]
    assert e["baseline"] is None and e["verdict"] != "learned"  # nothing to beat: never learned
