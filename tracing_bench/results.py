"""lm-eval results files, read once for every consumer: the leaderboard, the gate, the steering sweep.

lm-eval writes one ``results_<date>.json`` per run (``tracing-bench eval``, plain ``lm_eval
--output_path``, a steering sweep's in-process ``evaluate``). This module turns it into
:class:`TaskScore` values, one reading for all:

* a metric cell is ``"<metric>,<filter>"``: the filter ``none`` when present, else the first;
  its stderr is ``"<metric>_stderr,<filter>"``, ``None`` when lm-eval wrote ``"N/A"`` (or NaN);
  a value that is not a number is NaN (lm-eval could not compute it);
* the **headline metric** of a task or group: ``chance_corrected`` when reported (trust tasks
  and group since version 3; 0 = chance), else ``score`` (earlier versions), ``acc``, ``acc_norm``,
  ``exact_match``, ``mc2``, ``f1``, else the first metric ``higher_is_better`` names, else the first;
* the **direction** of a metric comes from the file's ``higher_is_better``; where the file names
  none, higher is better, except for perplexities and bits per byte (:data:`LOWER_IS_BETTER`);
* a group's cells are those of ``results`` overlaid with those of ``groups``; a task's size is
  ``n-samples.effective`` (a group's: ``sample_len``), its version from ``versions``.

A file also gives its model and revision (``config.model_args``: a dict in lm-eval 0.4.9+, a
string before; else ``config.model_revision`` / ``model_name``), the step parsed from the
revision, the steering setting (what ``trust-steered`` records in ``config.steering``, else the
``steer_path`` / ``alpha`` / ``positions`` model args of lm-eval's stock ``steered`` model, else
``none``) and the date of the run.

>>> f = load_results("results/EleutherAI__pythia-160m@step3000/results_2026-01-01T00-00-00.json")
>>> f.scores["trust"].value, f.metric("trust", "p_trust").stderr  # doctest: +SKIP
(0.61, 0.012)
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonlines

from tracing_bench.checkpoints import parse_step
from tracing_bench.errors import TracingBenchError
from tracing_bench.files import looks_like_path

#: Preferred headline metrics, in order.
HEADLINE_METRICS: tuple[str, ...] = ("chance_corrected", "score", "acc", "acc_norm", "exact_match", "mc2", "f1")
#: The probability of the trustworthy answer, reported beside the headline by every trust task.
P_TRUST = "p_trust"
#: Metrics for which lower is better when a file does not say (lm-eval's perplexity metrics).
LOWER_IS_BETTER: tuple[str, ...] = ("perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte")
_NAME_TS_RE = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?)")


@dataclass(frozen=True)
class TaskScore:
    """One metric of one task (or group) in one results file.

    Attributes:
        task: task or group name.
        metric: metric name without the filter (``score``, ``acc``, ``p_trust``).
        value: the score (NaN when the file holds NaN or no number).
        stderr: its standard error; ``None`` when the file has none (lm-eval writes ``"N/A"``).
        higher_is_better: direction from the file's ``higher_is_better`` (see the module docstring).
        version: the task's version from the file's ``versions`` (``None`` when absent).
        n: documents scored (``n-samples.effective`` or the group's ``sample_len``).
        is_group: True for a group (``trust``): the value is the group's aggregate.
    """

    task: str
    metric: str
    value: float
    stderr: float | None
    higher_is_better: bool = True
    version: str | None = None
    n: int | None = None
    is_group: bool = False

    @property
    def score(self) -> float:
        """The value, under the name of ``sweep.csv``'s column."""
        return self.value


@dataclass
class ResultsFile:
    """One lm-eval results file.

    Attributes:
        path: the file.
        model: ``pretrained`` model id or folder.
        revision: the revision (``""`` when the file names none).
        step: integer step parsed from the revision (or from the model folder name).
        steering: the steering setting (``none`` when unsteered).
        date: when the run started (unix seconds; from ``date`` or the file name).
        scores: task or group -> its headline :class:`TaskScore`.
        data: the whole parsed JSON.
    """

    path: Path
    model: str
    revision: str
    step: int | None
    steering: str
    date: float
    scores: dict[str, TaskScore]
    data: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        """The leaderboard row this file belongs to: (model, revision, steering)."""
        return (self.model, self.revision, self.steering)

    @property
    def label(self) -> str:
        """Short human label: ``model@revision`` (+ `` [steering]``)."""
        name = Path(self.model).name if looks_like_path(self.model) else self.model
        text = f"{name}@{self.revision}" if self.revision else name
        return text if self.steering == "none" else f"{text} [{self.steering}]"

    @property
    def stamp(self) -> str:
        """The ``<date>`` of ``results_<date>.json`` (``""`` for another file name)."""
        return self.path.stem[len("results_") :] if self.path.stem.startswith("results_") else ""

    def metric(self, task: str, metric: str) -> TaskScore | None:
        """Another metric of a task or group than its headline (e.g. ``p_trust``); None if not reported."""
        if task not in self.scores:
            return None
        return read_metric(self.data, task, metric)

    def samples_file(self, task: str) -> Path | None:
        """lm-eval's per-sample log ``samples_<task>_<date>.jsonl`` next to this file, if any."""
        exact = self.path.parent / f"samples_{task}_{self.stamp}.jsonl"
        if self.stamp and exact.is_file():
            return exact
        # the date starts with a digit: samples_trust_* must not match samples_trust_toxicity_*
        found = sorted(self.path.parent.glob(f"samples_{task}_[0-9]*.jsonl"))
        return found[-1] if len(found) == 1 else None

    def sidecar(self) -> dict[str, Any] | None:
        """The provenance ``tracing_bench_<date>.json`` that `tracing-bench eval` writes next to
        the results (commit, dataset md5 per task, package version); None when absent or unreadable."""
        path = self.path.parent / f"tracing_bench_{self.stamp}.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None


# ------------------------------------------------------------------------------------- cells
def _mapping(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float | None:
    """A float from a results cell; None for ``"N/A"``, None, or anything not a number."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def task_cells(data: Mapping[str, Any], task: str) -> dict[str, Any]:
    """A task's (or group's) metric cells: lm-eval's ``results`` overlaid with its ``groups``."""
    return {**(_mapping(data, "results").get(task) or {}), **(_mapping(data, "groups").get(task) or {})}


def _filters(cells: Mapping[str, Any]) -> dict[str, list[str]]:
    """metric -> the filters it is reported under (stderr cells left out), in file order."""
    out: dict[str, list[str]] = {}
    for key in cells:
        if "," in key and "_stderr," not in key:
            metric, filt = key.split(",", 1)
            out.setdefault(metric, []).append(filt)
    return out


def headline_metric(data: Mapping[str, Any], task: str) -> str | None:
    """The headline metric of a task or group (see the module docstring); None when it reports none."""
    metrics = _filters(task_cells(data, task))
    hib = _mapping(_mapping(data, "higher_is_better"), task)
    order = [m for m in HEADLINE_METRICS if m in metrics] + [m for m in hib if m in metrics] + list(metrics)
    return order[0] if order else None


def group_names(data: Mapping[str, Any]) -> set[str]:
    """The groups of a results file (``groups`` and ``group_subtasks``)."""
    return set(_mapping(data, "groups")) | set(_mapping(data, "group_subtasks"))


def read_metric(data: Mapping[str, Any], task: str, metric: str) -> TaskScore | None:
    """One metric of a task or group from a results dict; None when the task does not report it.

    Args:
        data: lm-eval's results dict (the parsed ``results_<date>.json``, or what
            ``lm_eval.evaluator.evaluate`` returns).
        task: task or group name.
        metric: metric name without the filter.

    Returns:
        the :class:`TaskScore`.
    """
    cells = task_cells(data, task)
    filters = _filters(cells).get(metric)
    if not filters:
        return None
    filt = "none" if "none" in filters else filters[0]
    value = _number(cells.get(f"{metric},{filt}"))
    stderr = _number(cells.get(f"{metric}_stderr,{filt}"))
    hib = _mapping(_mapping(data, "higher_is_better"), task).get(metric)
    is_group = task in group_names(data)
    ns = _mapping(data, "n-samples").get(task)
    n = ns.get("effective") if isinstance(ns, Mapping) else None
    if n is None and is_group:
        n = cells.get("sample_len")
    version = _mapping(data, "versions").get(task)
    return TaskScore(
        task=task,
        metric=metric,
        value=math.nan if value is None else value,
        stderr=None if stderr is None or math.isnan(stderr) else stderr,
        higher_is_better=metric not in LOWER_IS_BETTER if hib is None else bool(hib),
        version=None if version is None else str(version),
        n=int(n) if isinstance(n, (int, float)) and not isinstance(n, bool) and math.isfinite(n) else None,
        is_group=is_group,
    )


def headline_scores(data: Mapping[str, Any]) -> dict[str, TaskScore]:
    """Task or group -> its headline :class:`TaskScore`, in the file's order (tasks without a metric left out)."""
    out: dict[str, TaskScore] = {}
    for task, cells in _mapping(data, "results").items():
        metric = headline_metric(data, task) if isinstance(cells, Mapping) else None
        score = read_metric(data, task, metric) if metric is not None else None
        if score is not None:
            out[task] = score
    return out


def task_scores(data: Mapping[str, Any], *, metrics: Mapping[str, Sequence[str]] | None = None) -> list[TaskScore]:
    """Per task (groups left out, tasks sorted by name): its headline metric, then ``p_trust`` when reported.

    Args:
        data: lm-eval's results dict.
        metrics: task -> the metrics to read for it instead (e.g. ``{"lambada_openai":
            ("perplexity", "acc")}``); ``p_trust`` follows them when reported.

    Returns:
        the :class:`TaskScore` values, one per (task, metric).
    """
    groups = group_names(data)
    out: list[TaskScore] = []
    for task in sorted(_mapping(data, "results")):
        if task in groups:
            continue
        head = headline_metric(data, task)
        chosen = list((metrics or {}).get(task) or ([head] if head is not None else []))
        if P_TRUST not in chosen:
            chosen.append(P_TRUST)
        out += [s for s in (read_metric(data, task, m) for m in chosen) if s is not None]
    return out


# -------------------------------------------------------------------------------------- files
def find_results(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Results files among ``paths``: files as given, folders searched recursively for ``results_*.json``.

    Raises:
        TracingBenchError: a path does not exist, or a folder holds no results file.
    """
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            found.append(p)
        elif p.is_dir():
            files = sorted(p.rglob("results_*.json"))
            if not files:
                raise TracingBenchError(
                    f"{p}: no results_*.json below this folder; point at lm-eval's --output_path or a results file"
                )
            found.extend(files)
        else:
            raise TracingBenchError(f"{p} does not exist; give lm-eval results files (results_*.json) or folders")
    return list(dict.fromkeys(f.resolve() for f in found))


def _model_args(config: Mapping[str, Any]) -> dict[str, Any]:
    args = config.get("model_args") or {}
    if isinstance(args, Mapping):
        return dict(args)
    pairs = (part.split("=", 1) for part in str(args).split(",") if "=" in part)
    return {k.strip(): v.strip() for k, v in pairs}


def _steering(config: Mapping[str, Any], args: Mapping[str, Any]) -> str:
    info = config.get("steering")
    if isinstance(info, Mapping) and (info.get("steer_path") or info.get("file_sha256")):
        sha = str(info.get("file_sha256") or "")[:8]
        alpha = info.get("alpha")
        name = Path(str(info.get("steer_path") or "vector")).name + (f"#{sha}" if sha else "")
        parts = [name, f"alpha={'file' if alpha is None else alpha}"]
        positions = info.get("positions")
    elif args.get("steer_path"):
        parts = [Path(str(args["steer_path"])).name, f"alpha={args.get('alpha', 'file')}"]
        positions = args.get("positions")
    else:
        return "none"
    return " ".join(parts + ([f"positions={positions}"] if positions else []))


def _date(data: Mapping[str, Any], path: Path) -> float:
    value = _number(data.get("date"))
    if value is not None and not math.isnan(value):
        return value
    m = _NAME_TS_RE.search(path.name)
    if m:
        date, time = m.group(1).split("T")
        try:
            parsed = _dt.datetime.fromisoformat(f"{date}T{time.replace('-', ':')}")
            return parsed.replace(tzinfo=parsed.tzinfo or _dt.timezone.utc).timestamp()
        except ValueError:
            pass
    return path.stat().st_mtime


def load_results(path: str | os.PathLike[str]) -> ResultsFile:
    """Read one lm-eval results file.

    Args:
        path: a ``results_<date>.json``.

    Returns:
        the :class:`ResultsFile`.

    Raises:
        TracingBenchError: unreadable, not JSON, or not lm-eval's results format.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise TracingBenchError(f"{path}: cannot read ({e.strerror}); give a readable lm-eval results file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TracingBenchError(f"{path}: not valid JSON ({e}); give an lm-eval results_*.json file") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise TracingBenchError(
            f"{path}: no 'results' mapping, so not an lm-eval results file; give the results_*.json that lm-eval writes"
        )
    config = _mapping(data, "config")
    args = _model_args(config)
    model = str(args.get("pretrained") or data.get("model_name") or config.get("model") or "unknown")
    revision = str(args.get("revision") or config.get("model_revision") or "")
    step = parse_step(revision) if revision else None
    if step is None:
        step = parse_step(Path(model).name) if model else None
    return ResultsFile(
        path=path,
        model=model,
        revision=revision,
        step=step,
        steering=_steering(config, args),
        date=_date(data, path),
        scores=headline_scores(data),
        data=data,
    )


ONE_ANSWER = 0.9
"""A run gives "one answer" when this share of its multiple-choice answers is the same choice."""


def answer_shares(path: str | os.PathLike[str] | None) -> dict[str, Any] | None:
    """What the model answered in an lm-eval sample log of a multiple-choice task.

    A question is a run of consecutive requests with one context (a pair task asks one per
    member); its answer is the continuation with the highest log-likelihood. Requests with an
    empty context (a sentence scored by itself) are not questions. A model that gives one answer
    to nearly every prompt scores the share of documents whose gold is that answer, whatever it
    learned: ``acc`` then follows the label mix, not judgement.

    Args:
        path: ``samples_<task>_<date>.jsonl``; ``None`` (no log) gives ``None``.

    Returns:
        ``{"n": questions, "counts": {answer: n}, "top": the most frequent answer, "share": its
        fraction, "one_answer": share >= ONE_ANSWER}``; ``None`` without a log or a question in it.
    """
    if path is None:
        return None

    counts: dict[str, int] = {}
    try:
        with jsonlines.open(path) as reader:
            for sample in reader:
                args = [a for a in (sample.get("arguments") or {}).values() if isinstance(a, Mapping)]
                lls = [
                    _number(r[0]) if isinstance(r, Sequence) and r else None for r in sample.get("filtered_resps") or []
                ]
                question: list[tuple[float, str]] = []
                context = None
                for a, ll in zip(args, lls, strict=False):
                    ctx, cont = str(a.get("arg_0", "")), str(a.get("arg_1", ""))
                    if question and (ctx != context or cont in {c for _, c in question}):
                        best = max(question)[1]
                        counts[best] = counts.get(best, 0) + 1
                        question = []
                    context = ctx
                    if ctx and ll is not None:
                        question.append((ll, cont))
                if question:
                    best = max(question)[1]
                    counts[best] = counts.get(best, 0) + 1
    except (OSError, ValueError, jsonlines.InvalidLineError):
        return None
    n = sum(counts.values())
    if not n:
        return None
    top = max(counts, key=lambda k: counts[k])
    return {"n": n, "counts": counts, "top": top, "share": counts[top] / n, "one_answer": counts[top] / n >= ONE_ANSWER}


def one_answer_note(answers: list[dict[str, Any] | None] | None, first: str, last: str) -> str:
    """Where a side gives one answer to nearly every prompt (:func:`answer_shares` of the first and
    the last run): ``one answer: step0 ' 0' to 100% of 50 prompts, ...; acc there comes from
    that fixed answer ...``; else ``""``."""
    sides = [(name, a) for name, a in zip((first, last), answers or [], strict=False) if a and a["one_answer"]]
    if not sides:
        return ""
    said = ", ".join(f"{name} {a['top']!r} to {100 * a['share']:.0f}% of {a['n']} prompts" for name, a in sides)
    return (
        f"one answer: {said}; acc there comes from that fixed answer (the mix of gold answers, or "
        "answers trivially alike) and chance_corrected reads chance, not a judgement of each statement"
    )


def group_answer_note(tasks: list[dict[str, Any]], first: str, last: str) -> str:
    """For a group row: which sides give one answer on every task (all of them with sample logs)."""
    members = [e.get("answers") for e in tasks if not e.get("is_group")]
    logged = [a for a in members if a and all(a)]
    if len(logged) < len(members):
        return ""
    sides = [name for k, name in enumerate((first, last)) if logged and all(a[k]["one_answer"] for a in logged)]
    if not sides:
        return ""
    return (
        f"one answer on every task above at {' and '.join(sides)}: the group score there comes from those fixed answers"
    )


__all__ = [
    "ONE_ANSWER",
    "HEADLINE_METRICS",
    "LOWER_IS_BETTER",
    "P_TRUST",
    "ResultsFile",
    "TaskScore",
    "answer_shares",
    "find_results",
    "group_answer_note",
    "group_names",
    "headline_metric",
    "headline_scores",
    "load_results",
    "one_answer_note",
    "read_metric",
    "task_cells",
    "task_scores",
]
