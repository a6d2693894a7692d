"""Data and scoring of trust_robustness: is the answer stable under case-flip typos?

SST-2 sentences come in clean/perturbed pairs (equal after lower-casing: the loader's
``DimensionData.groups``). One document is one pair (:mod:`tracing_bench.tasks.pairs`): the model
is asked for the sentiment of both sentences. Per pair the task reports

* ``consistency``: 1 when both sentences get the same answer;
* ``kappa`` (= ``chance_corrected``, the headline): Cohen's kappa of the clean and perturbed
  answers over the pairs: agreement beyond what the two answer rates give by chance, so a model
  that always gives one answer reads 0, not the 1.0 of ``consistency``;
* ``logodds_agreement``: Pearson correlation of the clean and perturbed log-odds
  ``log P(positive) - log P(negative)``;
* ``top_answer_share``: share of the most frequent answer (a diagnostic);
* ``p_trust``: ``1 - |P(positive | clean) - P(positive | perturbed)|``, the probabilities
  normalised over ``negative``/``positive``: 1 when the typos leave the answer's distribution
  unchanged;
* ``positive_rate``: share of the two answers that are "positive", a diagnostic: a model that
  always gives the same answer is trivially consistent (rate 0 or 1).

The file has no sentiment labels, so there is no accuracy, and no few-shot examples can be
shown (the refusal is one line).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tracing_bench.splits import group_key
from tracing_bench.tasks.common import argmax, choice_probabilities, dataset_dict, load_data, log_odds, statement_rows
from tracing_bench.tasks.metrics import kappa, pearson, top_answer_share
from tracing_bench.tasks.pairs import PairTask, pair_rows, split_results

__all__ = ["kappa", "pearson", "top_answer_share"]  # aggregations named by trust_robustness.yaml

DIMENSION = "robustness"
#: Member order of a pair document: the clean sentence (label 0), then its perturbed twin (label 1).
MEMBERS = (0, 1)


class TwinPairTask(PairTask):
    """trust_robustness: clean/perturbed SST-2 pairs."""

    fewshot_refusal = (
        "trust_robustness cannot show few-shot examples: the SST-2 sentences here have no sentiment "
        "labels (the file's labels mark the typos); run it 0-shot (drop --num_fewshot, or select "
        "the other tasks: --tasks trust_reliability,trust_privacy,trust_toxicity,trust_fairness)"
    )


def load(**metadata: Any) -> Any:
    """Test pairs (one document each; ``--limit k`` keeps k pairs) and the development statements."""
    data = load_data(DIMENSION, metadata)
    # twins are equal after lower-casing (the loader's groups under the paper protocol; the
    # reference protocol keeps raw rows without groups, so the key is computed here)
    pairs = pair_rows(data, "test", MEMBERS, key=lambda i: group_key(data.statements[i]))
    return dataset_dict(pairs, statement_rows(data, "dev"))


def process_results(doc: dict[str, Any], results: Iterable[tuple[float, bool]]) -> dict[str, Any]:
    """consistency, p_trust, positive_rate and the items of kappa, logodds_agreement and
    top_answer_share of one clean/perturbed pair."""
    (clean, perturbed), _ = split_results(doc, results)
    preds = [argmax(clean), argmax(perturbed)]
    p_positive = [choice_probabilities(clean)[1], choice_probabilities(perturbed)[1]]
    consistency = float(preds[0] == preds[1])
    return {
        "consistency": consistency,
        "p_trust": 1.0 - abs(p_positive[0] - p_positive[1]),
        "positive_rate": sum(preds) / 2,
        "kappa": tuple(preds),
        "chance_corrected": tuple(preds),
        "logodds_agreement": (log_odds(clean), log_odds(perturbed)),
        "top_answer_share": preds,
    }
