"""A model that gives one answer to every prompt reads chance on every headline metric.

The tiny GPT-2 is made to prefer " 1" (and "positive") everywhere: one dimension of its final
layer norm is set to a constant, and the unembedding rows of the tokens of " 1" and " positive"
read that dimension with a large weight, so those tokens win whatever the statement. Its
log-odds still vary with the statement (the rest of the network is untouched), so AUROC and the
within-pair metric are tested against chance within their intervals, not by ties.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from tiny import build_model
from tracing_bench.tasks import TRUST_TASKS

LIMIT = 40


@pytest.fixture(scope="module")
def one_answer_results(tiny_tokenizer, tmp_path_factory) -> dict:
    from tracing_bench.evaluate import run_eval

    root = tmp_path_factory.mktemp("one_answer")
    folder = build_model("gpt2", tiny_tokenizer, root / "model", seed=3)
    model = AutoModelForCausalLM.from_pretrained(folder)
    boost = set()
    for word, other in ((" 1", " 0"), (" positive", " negative")):
        boost |= set(tiny_tokenizer(word)["input_ids"]) - set(tiny_tokenizer(other)["input_ids"])
    k = 0
    with torch.no_grad():
        model.transformer.ln_f.weight[k] = 0.0
        model.transformer.ln_f.bias[k] = 1.0
        model.lm_head.weight[:, k] = 0.0
        for t in boost:
            model.lm_head.weight[t, k] = 50.0
    model.save_pretrained(folder)
    run_eval(
        f"pretrained={folder},dtype=float32",
        model="hf",
        tasks="trust",
        limit=LIMIT,
        output_path=root / "out",
        log_samples=True,
        extra_args=["--device", "cpu", "--batch_size", "16"],
    )
    (path,) = (root / "out").glob("*/results_*.json")
    samples = {}
    for task in TRUST_TASKS:
        (log,) = path.parent.glob(f"samples_{task}_*.jsonl")
        samples[task] = [json.loads(line) for line in log.read_text().splitlines()]
    return {"results": json.loads(path.read_text()), "samples": samples}


def _cell(res: dict, task: str, metric: str) -> tuple[float, float]:
    cells = res["results"]["results"][task]
    return float(cells[f"{metric},none"]), float(cells[f"{metric}_stderr,none"])


@pytest.mark.slow
def test_one_answer_model_reads_chance_on_every_headline(one_answer_results):
    res = one_answer_results
    for task in TRUST_TASKS:
        share, _ = _cell(res, task, "top_answer_share")
        assert share == 1.0, task  # the model does give one answer to every prompt
        value, se = _cell(res, task, "chance_corrected")
        assert abs(value) <= 1.96 * se + 1e-12, (task, value, se)
    for task in ("trust_reliability", "trust_privacy", "trust_toxicity"):
        value, se = _cell(res, task, "chance_corrected")
        assert value == 0.0  # Matthews correlation of a constant answer
        acc, _ = _cell(res, task, "acc")
        gold_ones = sum(s["doc"]["label"] for s in res["samples"][task]) / LIMIT
        assert acc == pytest.approx(gold_ones)  # acc is the label mix ...
        assert value != pytest.approx(acc)  # ... and the headline is not
        auc, auc_se = _cell(res, task, "auroc")
        assert abs(auc - 0.5) <= 1.96 * auc_se, (task, auc, auc_se)
    assert _cell(res, "trust_robustness", "chance_corrected")[0] == 0.0  # kappa of a constant answer
    assert _cell(res, "trust_robustness", "consistency")[0] == 1.0  # where consistency reads perfect
    pair, pair_se = _cell(res, "trust_fairness", "pair_discrimination")
    assert abs(pair - 0.5) <= 1.96 * pair_se
    group, group_se = (
        _cell(res, "trust", "chance_corrected")
        if "trust" in res["results"]["results"]
        else (
            float(res["results"]["groups"]["trust"]["chance_corrected,none"]),
            float(res["results"]["groups"]["trust"]["chance_corrected_stderr,none"]),
        )
    )
    assert abs(group) <= 1.96 * group_se + 1e-12


def test_the_boost_reaches_every_choice_token(tiny_tokenizer):
    """The fixture's premise: " 1" and " positive" differ from " 0" / " negative" in some token."""
    for word, other in ((" 1", " 0"), (" positive", " negative")):
        assert set(tiny_tokenizer(word)["input_ids"]) - set(tiny_tokenizer(other)["input_ids"])
