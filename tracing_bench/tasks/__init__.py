"""lm-evaluation-harness tasks for the five trust dimensions (an lm-eval ``--include_path``).

>>> from tracing_bench.tasks import TASKS_DIR
>>> # lm_eval --include_path "$TASKS_DIR" --tasks trust --model hf --model_args pretrained=...

Layout: one folder per dimension holding its YAML tasks and a ``utils.py``; shared settings in
``_template_yaml``; the group ``trust`` in ``_trust.yaml``; shared logic in :mod:`.common`.
"""

from __future__ import annotations

from pathlib import Path

TASKS_DIR: Path = Path(__file__).resolve().parent

#: The log-likelihood (multiple-choice) tasks of the group ``trust`` and their headline metric.
TRUST_TASKS: dict[str, str] = {
    "trust_reliability": "chance_corrected",
    "trust_privacy": "chance_corrected",
    "trust_toxicity": "chance_corrected",
    "trust_fairness": "chance_corrected",
    "trust_robustness": "chance_corrected",
}
#: The generation tasks that follow the paper's protocol and their metrics.
TRUSTGEN_TASKS: dict[str, tuple[str, ...]] = {
    "trustgen_reliability": ("truth", "info", "truth_info"),
    "trustgen_privacy": ("acc", "random_ratio"),
    "trustgen_toxicity": ("toxic_ratio",),
    "trustgen_fairness": ("acc", "random_ratio"),
}
#: The released code's fairness data (stereoset.csv: related vs unrelated continuations), tag
#: ``released_stereoset``; outside the group and the ``trust_*`` glob. Task -> metrics.
RELEASED_TASKS: dict[str, tuple[str, ...]] = {
    "released_stereoset_relatedness": ("acc", "p_trust"),
    "released_stereoset_relatedness_gen": ("acc", "random_ratio"),
}
