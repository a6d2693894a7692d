"""Pair documents: one lm-eval document = two statements that belong together.

``trust_robustness`` (an SST-2 sentence and its copy with typos) and ``trust_fairness`` (the two
sentences of a CrowS-Pairs minimal pair) are scored per pair: consistency needs both answers,
and the CrowS-Pairs likelihood score compares the two sentences. Making the pair the document
lets every metric be a per-document value with ``aggregation: mean``, so lm-eval computes its
closed-form stderr (over pairs, the independent unit) and the ``trust`` group gets a numeric
stderr as well; ``--limit N`` keeps N whole pairs.

A pair document holds ``pair`` (its index in the split), ``members`` (the statement documents, each with
``id``, ``statement``, ``label``) and ``dataset_md5``. :class:`PairTask` asks, for every member,
the task's multiple-choice question (the YAML's ``doc_to_text`` and ``doc_to_choice`` applied
to the member, after the task's few-shot examples) and, when ``score_sentences`` is set, the
log-likelihood of each member sentence by itself (context ``""``: lm-eval conditions it on the
model's BOS/EOS token, as its own ``crows_pairs`` tasks do). The task's ``process_results``
receives the log-likelihoods in that order; :func:`split_results` takes them apart.

Used from a task YAML as ``class: !function utils.<subclass>`` (lm-eval builds it with
``cls(config=cfg)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from lm_eval.api.instance import Instance
from lm_eval.api.task import ConfigurableTask

from tracing_bench.errors import TracingBenchError


def pair_rows(
    data: Any,
    split: str,
    member_labels: Sequence[int],
    *,
    key: Callable[[int], Any] | None = None,
    extra: Callable[[int], dict[str, Any]] | None = None,
    order: Callable[[list[int]], Any] | None = None,
) -> list[dict[str, Any]]:
    """Pair documents of one split of a loaded dimension (``DimensionData``).

    A pair is a set of statements with one ``key`` (default: the loader's group, ``data.groups``)
    that holds, within ``split``, exactly one statement of each label in ``member_labels``; its
    members come in that label order. Sets of any other shape in the split (a twin left in
    another split by the ``reference`` protocol's file-order cut, a near-duplicate joining two
    pairs) are not pairs and are left out.

    Args:
        data: the loaded dimension.
        split: ``test`` or ``dev``.
        member_labels: the label of the first, second, ... member (e.g. ``(0, 1)``: clean, perturbed).
        key: what joins a pair, from a statement index (default: its group id).
        extra: fields added to a pair document, from the index of its first member.
        order: sort key of a pair given its member indices (default: first appearance in the split).

    Returns:
        one document per pair: ``pair``, ``members``, ``dataset_md5`` and the ``extra`` fields.
    """
    by_key: dict[Any, list[int]] = {}
    for i in data.indices(split):
        by_key.setdefault(key(int(i)) if key else int(data.groups[i]), []).append(int(i))
    pairs: list[list[int]] = []
    for idx in by_key.values():
        labels = sorted(int(data.labels[i]) for i in idx)
        if labels != sorted(member_labels):
            continue
        pairs.append([next(i for i in idx if int(data.labels[i]) == y) for y in member_labels])
    if order:
        pairs.sort(key=order)
    rows = []
    for n, members in enumerate(pairs):
        rows.append(
            {
                "pair": str(n),
                "members": [{"id": i, "statement": data.statements[i], "label": int(data.labels[i])} for i in members],
                "dataset_md5": data.md5,
                **(extra(members[0]) if extra else {}),
            }
        )
    return rows


def split_results(
    doc: dict[str, Any],
    results: Iterable[tuple[float, bool]],
    n_choices: int = 2,
) -> tuple[list[list[float]], list[float]]:
    """The log-likelihoods of a pair document, taken apart.

    Returns:
        (per member, the log-likelihoods of its choices; the members' sentence log-likelihoods,
        empty unless the task scores sentences).
    """
    lls = [float(r[0]) for r in results]
    n = len(doc["members"]) * n_choices
    return [lls[k : k + n_choices] for k in range(0, n, n_choices)], lls[n:]


def _is_pair(doc: Any) -> bool:
    return isinstance(doc, dict) and "members" in doc


class PairTask(ConfigurableTask):
    """A multiple-choice task whose documents are pairs of statements (see the module docstring).

    Attributes:
        score_sentences: also request each member sentence's own log-likelihood (CrowS-Pairs).
        fewshot_refusal: ``None`` when the members' labels can serve as few-shot answers; else
            why ``--num_fewshot`` is refused (one line, raised before any request is run).
    """

    score_sentences: bool = False
    fewshot_refusal: str | None = None

    def __init__(self, config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        # lm-eval passes the whole YAML, including the `class` key that chose this class
        super().__init__(config={k: v for k, v in (config or {}).items() if k != "class"}, **kwargs)

    # a pair is shown, checked and logged through its first member; its target is every member's label
    def doc_to_text(self, doc, doc_to_text=None):
        return super().doc_to_text(doc["members"][0] if _is_pair(doc) else doc, doc_to_text)

    def doc_to_choice(self, doc, doc_to_choice=None):
        return super().doc_to_choice(doc["members"][0] if _is_pair(doc) else doc, doc_to_choice)

    def doc_to_target(self, doc, doc_to_target=None):
        if _is_pair(doc):
            return [super(PairTask, self).doc_to_target(m, doc_to_target) for m in doc["members"]]
        return super().doc_to_target(doc, doc_to_target)

    def fewshot_context(self, doc, num_fewshot, **kwargs):
        """One prompt per member: the task's few-shot examples (from ``fewshot_split``), then the member."""
        if not _is_pair(doc):
            return super().fewshot_context(doc, num_fewshot=num_fewshot, **kwargs)
        if num_fewshot and self.fewshot_refusal:
            raise TracingBenchError(f"--num_fewshot {num_fewshot}: {self.fewshot_refusal}")
        return [super(PairTask, self).fewshot_context(m, num_fewshot=num_fewshot, **kwargs) for m in doc["members"]]

    def construct_requests(self, doc, ctx, **kwargs):
        """Each member's choices after its prompt, then (``score_sentences``) each member sentence alone."""
        apply_chat_template = kwargs.pop("apply_chat_template", False)
        kwargs.pop("chat_template", None)
        if not (_is_pair(doc) and isinstance(ctx, list) and len(ctx) == len(doc["members"])):
            raise TracingBenchError(
                f"{self.config.task}: a document is not a pair of statements (members); the task's data must come "
                "from its utils.load"
            )
        delimiter = self.config.target_delimiter
        if apply_chat_template and not (self.config.gen_prefix and not self.config.gen_prefix[-1:].isspace()):
            delimiter = ""
        arguments = [
            (context, f"{delimiter}{choice}")
            for context, member in zip(ctx, doc["members"], strict=True)
            for choice in self.doc_to_choice(member)
        ]
        if self.score_sentences:
            arguments += [("", member["statement"]) for member in doc["members"]]
        return [
            Instance(request_type="loglikelihood", doc=doc, arguments=arg, idx=i, **kwargs)
            for i, arg in enumerate(arguments)
        ]
