"""The one lm-eval results reader (tracing_bench.results) behind leaderboard, gate and steer sweep."""

from __future__ import annotations

import json
import math

import pytest

from fake_results import TRUST, five, results_json, write_results
from tracing_bench.errors import TracingBenchError
from tracing_bench.results import (
    TaskScore,
    find_results,
    headline_metric,
    load_results,
    read_metric,
    task_scores,
)


def _by_hand(cells: dict, metric: str) -> tuple[float, float | None]:
    """The value and stderr of ``metric`` under the filter ``none``, read straight from the cells."""
    se = cells.get(f"{metric}_stderr,none")
    return float(cells[f"{metric},none"]), (None if se in (None, "N/A") else float(se))


def test_one_task_score_class_for_every_consumer():
    import tracing_bench.compare.gate as gate
    import tracing_bench.steering.sweep as sweep

    assert sweep.TaskScore is TaskScore and gate.TaskScore is TaskScore


def test_real_lm_eval_file_read_as_lm_eval_wrote_it(lm_eval_results):
    path = next(lm_eval_results["base"].rglob("results_*.json"))
    raw = json.loads(path.read_text())
    f = load_results(path)
    assert set(f.scores) == {*TRUST, "trust"} and f.steering == "none" and f.revision == "main"
    for task in (*TRUST, "trust"):
        cells = raw["groups"][task] if task == "trust" else raw["results"][task]
        head = f.scores[task]
        assert head.metric == "chance_corrected"
        assert (head.value, head.stderr) == pytest.approx(_by_hand(cells, "chance_corrected"))
        p = f.metric(task, "p_trust")
        assert p is not None and (p.value, p.stderr) == pytest.approx(_by_hand(cells, "p_trust"))
        assert head.is_group == (task == "trust")
        assert head.higher_is_better == raw["higher_is_better"][task]["chance_corrected"]
        assert head.version == str(raw["versions"][task])
    for task in TRUST:
        assert f.scores[task].n == raw["n-samples"][task]["effective"]
    assert f.scores["trust"].n == raw["groups"]["trust"]["sample_len"]
    side = f.sidecar()
    assert side is not None and set(side["datasets"]) >= set(TRUST)
    assert f.samples_file("trust_fairness") == path.parent / f"samples_trust_fairness_{f.stamp}.jsonl"
    # the sweep's reading of the same dict: one headline and p_trust per task, groups left out
    rows = task_scores(raw)
    expected = [(t, m) for t in sorted(TRUST) for m in ("chance_corrected", "p_trust")]
    assert [(s.task, s.metric) for s in rows] == expected
    assert all(s.score == s.value for s in rows)


def test_headline_order_filter_and_direction():
    data = {
        "results": {
            "mc": {"acc_norm,none": 0.4, "acc,none": 0.3, "acc_stderr,none": "N/A"},
            "gen": {"bleu,strict": 0.1, "rouge,strict": 0.2, "rouge,none": 0.25, "rouge_stderr,none": float("nan")},
            "ppl": {"word_perplexity,none": 12.5, "acc,none": 0.5},
            "lambada_openai": {
                "perplexity,none": 9.0,
                "perplexity_stderr,none": 0.5,
                "acc,none": 0.4,
                "acc_stderr,none": 0.02,
            },
            "broken": {"score,none": "N/A"},
        },
        "higher_is_better": {"gen": {"rouge": True, "bleu": True}, "ppl": {"acc": True}},
    }
    assert headline_metric(data, "mc") == "acc"  # acc before acc_norm, whatever the file order
    assert headline_metric(data, "gen") == "rouge"  # no preferred metric: the first higher_is_better names
    rouge = read_metric(data, "gen", "rouge")
    assert rouge is not None and rouge.value == 0.25 and rouge.stderr is None  # filter none; NaN stderr = none
    assert read_metric(data, "gen", "bleu").value == 0.1  # the only filter
    assert read_metric(data, "mc", "acc").stderr is None  # "N/A"
    assert read_metric(data, "ppl", "word_perplexity").higher_is_better is False  # not in the file: lower is better
    assert read_metric(data, "ppl", "acc").higher_is_better is True
    assert math.isnan(read_metric(data, "broken", "score").value)
    assert read_metric(data, "mc", "p_trust") is None
    rows = task_scores(data, metrics={"lambada_openai": ("perplexity", "acc")})
    assert [(s.task, s.metric) for s in rows] == [
        ("broken", "score"),
        ("gen", "rouge"),
        ("lambada_openai", "perplexity"),
        ("lambada_openai", "acc"),
        ("mc", "acc"),
        ("ppl", "acc"),
    ]
    lam = rows[2]
    assert (lam.value, lam.stderr, lam.higher_is_better) == (9.0, 0.5, False)


def test_model_revision_step_steering_and_date(tmp_path):
    steering = {"steer_path": "/v/rel_l16.pt", "file_sha256": "abcdef0123456789", "alpha": 2.0, "positions": "last"}
    path = write_results(
        tmp_path / "a",
        results_json(five(), model="EleutherAI/pythia-70m", revision="step4", steering=steering, date=1.7e9),
    )
    f = load_results(path)
    assert (f.model, f.revision, f.step, f.date) == ("EleutherAI/pythia-70m", "step4", 4, 1.7e9)
    assert f.steering == "rel_l16.pt#abcdef01 alpha=2.0 positions=last"
    assert f.label == "EleutherAI/pythia-70m@step4 [rel_l16.pt#abcdef01 alpha=2.0 positions=last]"
    data = results_json(five(), model="/runs/tiny/checkpoint-250", revision=None, model_args_as_string=True)
    data.pop("date")
    data["config"].pop("model_revision")
    path = write_results(tmp_path / "b", data, stamp="2026-02-03T04-05-06.000000")
    f = load_results(path)
    assert (f.model, f.revision, f.step, f.label) == ("/runs/tiny/checkpoint-250", "", 250, "checkpoint-250")
    assert f.date == 1770091506.0  # the file name's timestamp, UTC
    assert f.sidecar() is None and f.stamp == "2026-02-03T04-05-06.000000"


def test_bad_files_and_folders_are_one_line_errors(tmp_path):
    (tmp_path / "results_x.json").write_text("{not json")
    (tmp_path / "results_y.json").write_text(json.dumps({"model": "m"}))
    for name, words in (("results_x.json", "not valid JSON"), ("results_y.json", "no 'results' mapping")):
        with pytest.raises(TracingBenchError, match=words) as e:
            load_results(tmp_path / name)
        assert "\n" not in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TracingBenchError, match="no results_"):
        find_results([tmp_path / "empty"])
    with pytest.raises(TracingBenchError, match="does not exist"):
        find_results([tmp_path / "nope"])
    assert find_results([tmp_path, tmp_path / "results_x.json"]) == [
        (tmp_path / "results_x.json").resolve(),
        (tmp_path / "results_y.json").resolve(),
    ]  # each file once


# ------------------------------------------------------------------------------- answer shares
@pytest.mark.parametrize("members,sentences", [(1, False), (2, True), (2, False)])
def test_answer_shares_counts_the_answer_of_every_question(tmp_path, members, sentences):
    import random
    from collections import Counter

    from fake_results import write_answer_samples
    from tracing_bench.results import ONE_ANSWER, answer_shares

    rng = random.Random(members)
    choices = (" no", " yes", " maybe")
    answers = [[rng.choice(choices[:2] if k % 3 else choices) for _ in range(members)] for k in range(40)]
    path = write_answer_samples(tmp_path, "trust_x", answers, choices=choices, sentences=sentences)
    got = answer_shares(path)
    expected = Counter(a for doc in answers for a in doc)
    top, n_top = expected.most_common(1)[0]
    assert got["counts"] == dict(expected) and got["n"] == 40 * members
    assert got["top"] == top and got["share"] == pytest.approx(n_top / (40 * members))
    assert got["one_answer"] is (n_top / (40 * members) >= ONE_ANSWER)


def test_answer_shares_sees_one_answer_and_no_question(tmp_path):
    from fake_results import write_answer_samples, write_samples
    from tracing_bench.results import answer_shares

    # 19 of 20 questions answered " 1": one answer, also when both members of a pair have the same text
    answers = [[" 1", " 1"] for _ in range(9)] + [[" 1", " 0"]]
    got = answer_shares(write_answer_samples(tmp_path / "a", "trust_y", answers, same_context=True))
    assert (got["n"], got["top"], got["share"], got["one_answer"]) == (20, " 1", 0.95, True)
    assert answer_shares(None) is None
    assert answer_shares(tmp_path / "missing.jsonl") is None
    # a log without multiple-choice requests (here: no arguments at all) has no question to count
    assert answer_shares(write_samples(tmp_path, "trust_z", [1.0, 0.0])) is None
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    assert answer_shares(bad) is None


def test_a_group_has_no_sample_log_of_its_own(tmp_path):
    from fake_results import five, results_json, write_results, write_samples
    from tracing_bench.results import load_results

    f = load_results(write_results(tmp_path, results_json(five(0.6))))
    write_samples(tmp_path, "trust_toxicity", [1.0, 0.0], stamp="2026-02-02T00-00-00.000000")
    assert f.samples_file("trust_toxicity").name.startswith("samples_trust_toxicity_")  # another stamp: found
    assert f.samples_file("trust") is None  # the group's name is a prefix of its tasks' logs
