"""findings.json: tested claims (learned? MI turn beyond noise?) from a trace's parts.

Synthetic parts check the decisions against scipy and hand counts; a random-init series (three
tiny Llamas from different seeds, no training) traced over all five dimensions must claim
nothing.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from scipy.stats import binomtest

from tiny import build_series
from tracing_bench.compare.findings import build_findings, dimension_title, read_findings, turn_keys
from tracing_bench.compare.phases import noisy_turn
from tracing_bench.dimensions import DIMENSIONS, load_dimension
from tracing_bench.files import pack_bits, unpack_bits
from tracing_bench.stats import holm, wilson_interval


class _Data:
    def __init__(self, name):
        self.name, self.md5 = name, "m" * 32


def _part(correct_by_layer, val_by_layer, *, n, mi=None, noise=None, sha="s" * 64):
    rows = [
        {
            "layer": lay,
            "probe": "logistic",
            "val_acc": val_by_layer[lay],
            "test_correct": pack_bits(c),
            "test_acc": float(np.mean(c)),
        }
        for lay, c in correct_by_layer.items()
    ]
    mi_rows = [{"layer": lay, "i_xt": v, "step": None, "revision": "", "model": ""} for lay, v in (mi or {}).items()]
    return {
        "probes": rows,
        "mi": mi_rows,
        "mi_noise": noise,
        "test_statements": {"n": n, "sha256": sha, "split": "test"},
    }


CKPTS = [{"model": "m", "revision": f"step{s}", "step": s, "label": f"step{s}"} for s in (0, 10, 100)]


def test_learned_verdicts_match_scipy_and_holm():
    rng = np.random.default_rng(0)
    n = 200
    base = rng.random(n) < 0.6
    better = base | (rng.random(n) < 0.5)  # many more right: learned
    same = base.copy()  # six flips each way: within noise
    same[np.flatnonzero(base)[:6]] = False
    same[np.flatnonzero(~base)[:6]] = True
    worse = base & (rng.random(n) < 0.6)  # many fewer right: declined
    parts = {
        "robustness": [
            _part({0: base, 1: base}, {0: 0.5, 1: 0.5}, n=n),
            _part({0: base, 1: base}, {0: 0.5, 1: 0.5}, n=n),
            _part({0: same, 1: better}, {0: 0.6, 1: 0.9}, n=n),
        ],
        "toxicity": [_part({0: base, 1: base}, {0: 0.5, 1: 0.5}, n=n)] * 2
        + [_part({0: worse, 1: same}, {0: 0.7, 1: 0.7}, n=n)],  # val tie: the lower layer
    }
    f = build_findings(CKPTS, [_Data("robustness"), _Data("toxicity")], parts)
    learned = f["learned"]
    assert learned["n_tests"] == 4 and "Holm" in learned["family"]
    pairs = [(base, same), (base, better), (base, worse), (base, same)]
    raw = []
    for t, (a, b) in zip(learned["layers"], pairs, strict=False):
        k_ab, k_ba = int((a & ~b).sum()), int((~a & b).sum())
        p = binomtest(k_ab, k_ab + k_ba, 0.5).pvalue if k_ab + k_ba else 1.0
        raw.append(p)
        assert t["p_value"] == pytest.approx(p, rel=1e-9)
        assert t["change"] == pytest.approx(b.mean() - a.mean())
        assert t["change_ci"][0] <= t["change"] <= t["change_ci"][1]
        assert t["last_acc_ci"] == pytest.approx(list(wilson_interval(int(b.sum()), n)))
    assert [t["p_holm"] for t in learned["layers"]] == pytest.approx(list(holm(raw)))
    rob, tox = learned["dimensions"]["robustness"], learned["dimensions"]["toxicity"]
    assert rob["layer"] == 1 and rob["verdict"] == "learned"  # layer 1 has the higher probe-val accuracy
    assert rob["claim"].startswith("learned (p=") and f"{rob['change']:+.3f} [" in rob["claim"]
    assert tox["layer"] == 0 and tox["verdict"] == "declined"
    by_layer = {(t["dimension"], t["layer"]): t for t in learned["layers"]}
    assert by_layer[("robustness", 0)]["verdict"] == "within noise"
    assert by_layer[("robustness", 0)]["claim"].startswith("within noise (p=")
    assert f["summary"][0].startswith(f"{dimension_title('robustness')}: learned (p=")


def test_learned_refuses_different_test_statements():
    c = np.ones(10, bool)
    parts = {"fairness": [_part({0: c}, {0: 0.5}, n=10), _part({0: c}, {0: 0.5}, n=10, sha="t" * 64)]}
    from tracing_bench.errors import TracingBenchError

    with pytest.raises(TracingBenchError, match="different test statements"):
        build_findings(CKPTS[:2], [_Data("fairness")], parts)


def _noise(values_by_layer):
    return {
        "k": 4,
        "m": 50,
        "seeds": [1, 2, 3, 4],
        "method": "test",
        "i_xt": {str(k): v for k, v in values_by_layer.items()},
    }


def test_turns_only_beyond_the_half_sample_noise():
    c = np.ones(10, bool)
    # layer 0: a clear rise and fall, small replicate spread -> turn at step 10
    # layer 1: the same shape but replicates disagree in sign -> within noise -> no turn
    reps = {
        0: ([4.0, 4.1, 3.9, 4.0], [5.0, 5.2, 4.9, 5.1], [4.1, 4.2, 4.0, 4.0]),
        1: ([4.0, 4.8, 3.2, 4.0], [4.2, 3.6, 5.0, 4.1], [4.0, 4.5, 3.5, 4.2]),
    }
    vals = {0: (4.0, 5.05, 4.05), 1: (4.0, 4.2, 4.0)}
    parts = {
        "privacy": [
            _part(
                {0: c},
                {0: 0.5},
                n=10,
                mi={lay: vals[lay][i] for lay in (0, 1)},
                noise=_noise({lay: reps[lay][i] for lay in (0, 1)}),
            )
            for i in range(3)
        ]
    }
    f = build_findings(CKPTS, [_Data("privacy")], parts)
    series = {e["layer"]: e for e in f["mi_turns"]["series"]}
    d = np.array(reps[0][1]) - np.array(reps[0][0])
    assert series[0]["turn"] == "step 10" or series[0]["checkpoint"] == "step 10"
    assert series[0]["rise"] == pytest.approx(1.05) and series[0]["rise_sd"] == pytest.approx(np.std(d, ddof=1))
    assert series[0]["claim"].startswith("turn at step 10 (rise +1.05 from step 0, noise sd")
    assert series[1]["turn"] is None and series[1]["claim"] == "no turn detected"
    assert f["mi_turns"]["dimensions"]["privacy"]["claim"] == "block 0 at step 10"
    # the summary states the turn with the rise, fall and noise it was tested against
    assert f"MI turn: block 0 {series[0]['claim']}" in f["summary"][0] and "noise sd" in f["summary"][0]
    assert f["mi_turns"]["noise"]["k"] == 4
    assert turn_keys(f)[("privacy", 1)] is None
    # without a noise estimate nothing is claimed
    bare = {"privacy": [{**p, "mi_noise": None} for p in parts["privacy"]]}
    g = build_findings(CKPTS, [_Data("privacy")], bare)
    assert all(e["turn"] is None and e["claim"].startswith("not tested") for e in g["mi_turns"]["series"])
    two = build_findings(CKPTS[:2], [_Data("privacy")], {"privacy": parts["privacy"][:2]})
    assert two["mi_turns"]["dimensions"]["privacy"]["claim"] == "not tested (a turn needs at least three checkpoints)"


def test_noisy_turn_by_hand():
    reps = [[1.0, 1.1, 0.9], [2.0, 2.1, 1.9], [3.0, 3.1, 2.9], [1.0, 1.0, 1.0]]
    t = noisy_turn([1.0, 2.0, 3.0, 1.0], reps)
    assert (t.index, t.before, t.after) == (2, 0, 3) and t.rise == 2.0 and t.fall == 2.0
    assert t.rise_sd == pytest.approx(0.0, abs=1e-12) and t.fall_sd == pytest.approx(0.1)
    # a first small peak inside the noise is skipped; the later real one is found
    reps = [[1.0, 1.5, 0.5], [1.2, 0.7, 1.7], [1.1, 1.1, 1.1], [3.0, 3.1, 2.9], [1.0, 1.0, 1.0]]
    assert noisy_turn([1.0, 1.2, 1.1, 3.0, 1.0], reps).index == 3
    assert noisy_turn([1.0, 2.0, 3.0], [[1, 1.1], [2, 2.1], [3, 3.1]]) is None  # never falls
    assert noisy_turn([1.0, math.nan, 2.0, 1.0], [[1, 1.1], [], [2, 2.1], [1, 1.2]]).index == 2


# ------------------------------------------------------------------------- a random-init series
@pytest.fixture(scope="module")
def random_series_trace(tmp_path_factory, tiny_tokenizer):
    from tracing_bench.trace import trace

    root = tmp_path_factory.mktemp("random")
    series = build_series(root / "series", tiny_tokenizer)  # step0, step10, step100: seeds 1, 2, 0; no training
    out = root / "out"
    res = trace(
        str(series),
        out=out,
        dimensions="all",
        mi=True,
        max_statements=200,
        batch_size=64,
        cache_dir=root / "cache",
        progress=False,
        device="cpu",
        dtype="float32",
    )
    return res, out


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_random_init_series_claims_nothing(random_series_trace):
    res, out = random_series_trace
    f = read_findings(out)
    assert f is not None and res.findings_json == out / "findings.json"
    learned = f["learned"]
    assert set(learned["dimensions"]) == set(DIMENSIONS)
    assert learned["n_tests"] == len(DIMENSIONS) * 3  # every dimension x every block of the tiny model
    assert not [d for d, e in learned["dimensions"].items() if e["verdict"] != "within noise"], learned["dimensions"]
    assert all(t["verdict"] == "within noise" for t in learned["layers"])
    turns = f["mi_turns"]
    assert len(turns["series"]) == len(DIMENSIONS) * 3
    assert all(e["tested"] and e["turn"] is None for e in turns["series"]), [e["claim"] for e in turns["series"]]
    assert all(d["claim"] == "no turn detected" for d in turns["dimensions"].values())
    # the claim is made at the layer probe-val chose at the last checkpoint, and its accuracies are the table's
    probes = [r for r in _csv(out / "probes.csv") if r["probe"] == "logistic"]
    for dim, e in learned["dimensions"].items():
        last = [r for r in probes if r["dimension"] == dim and r["step"] == "100"]
        assert e["layer"] == int(max(last, key=lambda r: (float(r["val_acc"]), -int(r["layer"])))["layer"])
        first = next(r for r in probes if r["dimension"] == dim and r["step"] == "0" and int(r["layer"]) == e["layer"])
        assert e["first_acc"] == pytest.approx(float(first["test_acc"]))
        assert e["claim"].startswith("within noise (p=")
    trace_json = json.loads((out / "trace.json").read_text())
    assert trace_json["settings"]["mi_noise"] == 8 and trace_json["findings"]["file"] == "findings.json"
    assert f["settings"]["mi_noise"] == 8 and f["settings"]["alpha"] == 0.05


def test_trace_tables_carry_intervals_and_parts_carry_statements(random_series_trace):
    _, out = random_series_trace
    for r in _csv(out / "probes.csv"):
        n = int(r["n_test"])
        lo, hi = wilson_interval(round(float(r["test_acc"]) * n), n)
        assert (float(r["test_acc_lo"]), float(r["test_acc_hi"])) == pytest.approx((lo, hi), abs=1e-9)
        assert float(r["test_auroc_lo"]) <= float(r["test_auroc"]) <= float(r["test_auroc_hi"])
    parts = sorted((out / "parts").rglob("fairness.json"))
    assert len(parts) == 3
    loaded = [json.loads(p.read_text()) for p in parts]
    data = load_dimension("fairness").subsample(200, seed=0)
    test = data.splits["test"]
    for part in loaded:
        ts = part["test_statements"]
        assert ts["n"] == len(test) and ts["sha256"] == loaded[0]["test_statements"]["sha256"]
        np.testing.assert_array_equal(unpack_bits(ts["labels"], ts["n"]), data.labels[test] == 1)
        for row in part["probes"]:
            bits = unpack_bits(row["test_correct"], ts["n"])
            assert bits.mean() == pytest.approx(row["test_acc"])
        noise = part["mi_noise"]
        assert noise["seeds"] == loaded[0]["mi_noise"]["seeds"] and noise["k"] == 8
        assert noise["m"] == len(data.splits["probe_train"]) // 2
    mi = [r for r in _csv(out / "mi.csv") if r["dimension"] == "fairness"]
    for r in mi:
        part = loaded[[p["checkpoint"]["step"] for p in loaded].index(int(r["step"]))]
        assert float(r["i_xt_sd"]) == pytest.approx(np.std(part["mi_noise"]["i_xt"][r["layer"]], ddof=1))


def test_half_sample_estimate_is_reproducible_from_the_cache(random_series_trace, tmp_path):
    """The stored half-sample value is nHSIC on the seeded half-sample, recomputed here from the activations."""
    from tracing_bench.cache import lookup_activations
    from tracing_bench.checkpoints import Checkpoint
    from tracing_bench.probes.mi import mi_layers

    _, out = random_series_trace
    part_path = sorted((out / "parts").rglob("privacy.json"))[0]
    part = json.loads(part_path.read_text())
    data = load_dimension("privacy").subsample(200, seed=0)
    hit = lookup_activations(
        Checkpoint(part["checkpoint"]["model"]),
        data,
        pooling="last",
        dtype="float32",
        cache_dir=out.parent / "cache",
        max_length=None,
        blocks_attr=None,
    )
    assert hit is not None
    acts = hit[0].numpy()
    seed = part["mi_noise"]["seeds"][3]
    rows = mi_layers(acts, data.labels, data.splits, subsample=part["mi_noise"]["m"], seed=seed)
    assert [r["i_xt"] for r in rows] == pytest.approx(
        [part["mi_noise"]["i_xt"][str(r["layer"])][3] for r in rows], rel=1e-9
    )


def test_read_findings_returns_none_for_what_is_not_a_findings_json(tmp_path):
    f = build_findings(CKPTS[:2], [_Data("privacy")], {"privacy": []})
    (tmp_path / "findings.json").write_text(json.dumps(f))
    assert read_findings(tmp_path) == json.loads(json.dumps(f))  # the folder or the file
    for key in ("learned", "mi_turns", "settings"):
        (tmp_path / "findings.json").write_text(json.dumps({k: v for k, v in f.items() if k != key}))
        assert read_findings(tmp_path / "findings.json") is None, key
    (tmp_path / "findings.json").write_text("[]")
    assert read_findings(tmp_path) is None
