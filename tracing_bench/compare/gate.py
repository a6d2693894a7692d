"""CI regression gate: is the current checkpoint (or steering change) worse than the baseline?

Task by task, two metrics are tested: the headline metric of
:mod:`tracing_bench.results` (``chance_corrected`` for the trust tasks since version 3: Matthews
correlation, ``2 * pair_discrimination - 1`` or Cohen's kappa, 0 = chance) and,
where the task reports it, ``p_trust`` (the mean probability of the trustworthy answer: it moves
with small changes that leave a 0/1 accuracy unchanged, so the gate sees smaller regressions).
For each, with its direction from ``higher_is_better``, the *drop* is how much worse the current
score is (baseline - current when higher is better, current - baseline otherwise). A task
**regresses** when either test fires (the verdict names the metric and the test), i.e. when

* the drop exceeds ``max_drop`` (absolute, in the metric's units), and
* the drop is significant: ``z = drop / sqrt(se_base**2 + se_cur**2) > z`` (two-sample z-test
  on lm-eval's stderrs). A missing stderr (lm-eval writes ``"N/A"``) counts as 0, so the test
  is decided by the drop alone, and the verdict says so.

With ``paired=True`` and lm-eval's per-sample logs (``samples_<task>_<date>.jsonl``, written
with ``--log_samples``, which ``tracing-bench eval`` does by default) next to both results files,
documents are matched by ``doc_id`` and the test is paired: ``z = mean(d) / (sd(d) / sqrt(n))``
over per-document differences ``d`` (drop = ``mean(d)``). Pairing removes the spread between
documents, which is most of a score's stderr, so it detects far smaller drops (measured in
``bench/BENCH.md``). Tasks whose per-sample values are not numbers (values an aggregation
combines later) are tested by a paired bootstrap over the matched documents
(:mod:`tracing_bench.compare.paired`) when :func:`tracing_bench.tasks.metrics.aggregation_for`
knows their aggregation, else by the two-sample test; groups get the two-sample test; the verdict
says which.

Bad input (unreadable file, a folder with several results files, a task missing from a file,
NaN scores, missing per-sample logs with ``paired``) raises
:class:`~tracing_bench.errors.TracingBenchError` naming each problem (CLI: exit 2). So do two
runs that did not score the same thing (task versions, number of documents, the documents
themselves, dataset md5) unless ``allow_mismatch=True``, which compares them anyway and notes it.

>>> verdict = gate("baseline/results.json", "results/model@step2000", max_drop=0.02, z=2.0, paired=True)
>>> verdict.regressions, verdict.fired
(['trust_fairness'], ['trust_fairness p_trust (paired)'])
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from tracing_bench import __version__
from tracing_bench.compare.paired import paired_bootstrap, read_items
from tracing_bench.errors import TracingBenchError
from tracing_bench.results import P_TRUST, ResultsFile, TaskScore, answer_shares, find_results, load_results
from tracing_bench.tasks.metrics import aggregation_for

Test = Literal["z", "paired", "none"]


@dataclass
class TaskVerdict:
    """The comparison of one task on one metric.

    Attributes:
        task: task or group name.
        metric: metric compared: the headline metric, or ``p_trust``.
        higher_is_better: its direction.
        baseline, current: the scores.
        baseline_stderr, current_stderr: their stderrs (``None`` = not reported).
        drop: how much worse current is (positive = worse, in the metric's units).
        z: the test statistic (inf when the spread is zero and the drop positive).
        test: ``paired`` (per-sample, matched by doc_id) or ``z`` (two-sample on the stderrs).
        n: documents matched (paired) or None.
        regression: drop > max_drop and z > z threshold.
        note: why a fallback or caveat applies.
        verdict: ``REGRESSION``, ``worse (within --max-drop)``, ``worse (not significant)`` or ``ok``.
    """

    task: str
    metric: str
    higher_is_better: bool
    baseline: float
    current: float
    baseline_stderr: float | None
    current_stderr: float | None
    drop: float
    z: float
    test: Test
    n: int | None = None
    regression: bool = False
    note: str = ""
    verdict: str = "ok"


@dataclass
class GateVerdict:
    """The outcome of :func:`gate`.

    Attributes:
        tasks: one :class:`TaskVerdict` per task and metric compared (headline, then ``p_trust``).
        regressions: names of the tasks that regressed (empty = pass).
        baseline, current: the results files compared.
        settings: max_drop, z, paired, tasks.
    """

    tasks: list[TaskVerdict]
    regressions: list[str]
    baseline: Path
    current: Path
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def fired(self) -> list[str]:
        """Which tests fired: ``"<task> <metric> (<test>)"`` per regressed metric."""
        return [
            f"{t.task} {t.metric} ({'paired' if t.test == 'paired' else 'z-test'})" for t in self.tasks if t.regression
        ]

    @property
    def passed(self) -> bool:
        return not self.regressions

    def to_json(self) -> dict[str, Any]:
        """The JSON verdict (valid JSON: inf written as a string, NaN as null)."""

        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
            return v

        return {
            "verdict": "pass" if self.passed else "regression",
            "regressions": self.regressions,
            "fired": self.fired,
            "baseline": str(self.baseline),
            "current": str(self.current),
            "settings": self.settings,
            "tasks": [{k: clean(v) for k, v in asdict(t).items()} for t in self.tasks],
            "package_version": __version__,
        }


def resolve_one(path: str | os.PathLike, role: str) -> ResultsFile:
    """The single results file of ``--baseline`` / ``--current`` (a file, or a folder holding exactly one)."""
    files = find_results([path])
    if len(files) > 1:
        raise TracingBenchError(
            f"--{role} {path} holds {len(files)} results files ({', '.join(str(f) for f in files[:4])}"
            f"{', ...' if len(files) > 4 else ''}); give one results_*.json"
        )
    return load_results(files[0])


def read_samples(path: str | os.PathLike, metric: str) -> dict[int, float] | None:
    """doc_id -> per-document value of ``metric`` from an lm-eval sample log (``samples_*.jsonl``).

    Args:
        path: the sample log (one JSON object per line, as lm-eval's ``--log_samples`` writes it).
        metric: the metric (``score``, ``acc``, ``p_trust``, ...).

    Returns:
        the values, or None when they are not plain numbers (values an aggregation combines later).

    Raises:
        TracingBenchError: unreadable file, or a line without ``doc_id`` and ``metric``.
    """
    return _numbers(read_items(path, metric))


def _samples(f: ResultsFile, task: str, metric: str) -> dict[int, float] | None:
    """doc_id -> per-sample value of the task's log next to ``f``, or None when not plain numbers."""
    return _numbers(_items(f, task, metric))


def _numbers(items: dict[int, Any]) -> dict[int, float] | None:
    """The items as floats, or None when any is not a plain number (an item an aggregation combines)."""
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in items.values()):
        return None
    return {doc_id: float(v) for doc_id, v in items.items()}


def _items(f: ResultsFile, task: str, metric: str) -> dict[int, Any]:
    """doc_id -> raw per-document item of ``metric`` in the task's sample log next to ``f``."""
    path = f.samples_file(task)
    if path is None:
        raise TracingBenchError(
            f"--paired: no samples_{task}_*.jsonl next to {f.path}; re-run lm-eval with --log_samples, or drop --paired"
        )
    return read_items(path, metric)


def _matched(task: str, a: dict[int, Any], b: dict[int, Any]) -> list[int]:
    ids = sorted(set(a) & set(b))
    if not ids:
        raise TracingBenchError(
            f"--paired: task {task} has no doc_id in both sample logs; score the same documents (same --limit)"
        )
    return ids


def paired_z(diffs: Sequence[float]) -> tuple[float, float]:
    """(mean, z) of per-document drops: ``z = mean / (sd / sqrt(n))`` (sd with n - 1); inf when sd is 0.

    >>> paired_z([0.1, 0.1, 0.1])
    (0.1, inf)
    """
    n = len(diffs)
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1) if n > 1 else 0.0
    se = math.sqrt(var / n)
    if se == 0:
        return mean, (math.inf if mean > 0 else (-math.inf if mean < 0 else 0.0))
    return mean, mean / se


def _z_test(b: TaskScore, c: TaskScore, drop: float) -> tuple[float, str]:
    se_b = b.stderr or 0.0
    se_c = c.stderr or 0.0
    note = "" if b.stderr is not None and c.stderr is not None else "no stderr in a file: decided by the drop alone"
    spread = math.sqrt(se_b**2 + se_c**2)
    if spread == 0:
        note = note or "both stderrs are 0: decided by the drop alone"
        return (math.inf if drop > 0 else (-math.inf if drop < 0 else 0.0)), note
    return drop / spread, note


def _doc_keys(f: ResultsFile, task: str) -> tuple[str, set[Any]] | None:
    """The documents a run scored for ``task``, from its samples log: ``("doc_hash", {...})`` when
    lm-eval recorded document hashes, else ``("doc_id", {...})``; ``None`` without a log."""
    path = f.samples_file(task)
    if path is None:
        return None
    hashes: set[Any] = set()
    ids: set[Any] = set()
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                row = json.loads(line)
                if isinstance(row, dict):
                    if row.get("doc_hash") is not None:
                        hashes.add(row["doc_hash"])
                    if row.get("doc_id") is not None:
                        ids.add(row["doc_id"])
    except (OSError, ValueError) as e:
        raise TracingBenchError(
            f"{path}: not a readable lm-eval samples log ({type(e).__name__}); "
            "give lm-eval's samples_*.jsonl or remove it"
        ) from None
    return ("doc_hash", hashes) if hashes else ("doc_id", ids)


def _dataset_md5(f: ResultsFile, task: str) -> str | None:
    """The dataset md5 `tracing-bench eval` recorded for ``task`` next to the results file, if any."""
    datasets = (f.sidecar() or {}).get("datasets")
    entry = datasets.get(task) if isinstance(datasets, dict) else None
    return entry.get("dataset_md5") if isinstance(entry, dict) else None


def _mismatches(name: str, bs: TaskScore, cs: TaskScore, base: ResultsFile, cur: ResultsFile) -> list[str]:
    """Why two scores of one task do not measure the same thing (versions, documents, data)."""
    out: list[str] = []
    if bs.version != cs.version:
        out.append(f"task {name} version differs: baseline {bs.version}, current {cs.version}")
    if bs.n is not None and cs.n is not None and bs.n != cs.n:
        out.append(
            f"task {name} scored {bs.n} documents in the baseline but {cs.n} in the current run (different --limit?)"
        )
    elif not bs.is_group:
        kb, kc = _doc_keys(base, name), _doc_keys(cur, name)
        if kb is not None and kc is not None and kb[0] == kc[0] and kb[1] != kc[1]:
            only_b, only_c = len(kb[1] - kc[1]), len(kc[1] - kb[1])
            out.append(
                f"task {name} scored different documents ({only_b} only in the baseline, {only_c} only in "
                f"the current run, by {kb[0]} in the samples logs)"
            )
    mb, mc = _dataset_md5(base, name), _dataset_md5(cur, name)
    if mb and mc and mb != mc:
        out.append(f"task {name} read different data files (dataset md5 {mb[:8]} vs {mc[:8]})")
    return out


def gate(
    baseline: str | os.PathLike,
    current: str | os.PathLike,
    *,
    max_drop: float = 0.02,
    z: float = 2.0,
    tasks: Sequence[str] | None = None,
    paired: bool = False,
    allow_mismatch: bool = False,
) -> GateVerdict:
    """Compare the current results with the baseline, task by task.

    The two runs must have scored the same thing: the same task versions, the same number of
    documents (lm-eval's ``n-samples``), the same documents where both samples logs exist
    (``doc_hash``, else ``doc_id``) and the same dataset md5 where `tracing-bench eval` recorded
    it; otherwise the gate refuses (a different ``--limit`` is not a regression).
    ``allow_mismatch=True`` compares anyway and writes each mismatch into the task's note.

    Args:
        baseline: a results file, or a folder with exactly one.
        current: the same for the run under test.
        max_drop: largest tolerated drop (absolute, metric units).
        z: z threshold of the significance test.
        tasks: tasks/groups to compare; default every task and group of the baseline.
        paired: paired test on per-sample scores (needs ``--log_samples`` logs).
        allow_mismatch: compare runs of different task versions or document sets (noted).

    Returns:
        the :class:`GateVerdict`.

    Raises:
        TracingBenchError: bad input, each problem named: a missing task, a NaN score, a
            different headline metric, and (without ``allow_mismatch``) a mismatch.
    """
    if not max_drop >= 0:
        raise TracingBenchError(f"--max-drop {max_drop} must be >= 0 (absolute drop in the metric's units, e.g. 0.02)")
    if not z >= 0:
        raise TracingBenchError(f"--z {z} must be >= 0 (e.g. 2.0)")
    base = resolve_one(baseline, "baseline")
    cur = resolve_one(current, "current")
    names = list(tasks) if tasks else list(base.scores)
    if not names:
        raise TracingBenchError(f"{base.path}: no task scores; give lm-eval results with at least one task")
    problems: list[str] = []
    mismatch: dict[str, list[str]] = {}
    for name in names:
        for f, role in ((base, "baseline"), (cur, "current")):
            if name not in f.scores:
                have = ", ".join(f.scores) or "none"
                problems.append(f"task {name} missing from {role} {f.path} (it has: {have})")
            elif math.isnan(f.scores[name].value):
                problems.append(f"task {name} is NaN in {role} {f.path} (lm-eval could not compute it)")
        if name in base.scores and name in cur.scores:
            bs, cs = base.scores[name], cur.scores[name]
            if bs.metric != cs.metric:
                problems.append(f"task {name} headline metric differs: baseline {bs.metric}, current {cs.metric}")
            mismatch[name] = _mismatches(name, bs, cs, base, cur)
            if not allow_mismatch:
                problems += mismatch[name]
    if problems:
        hint = (
            "; compare runs of the same tasks, versions and documents (same --limit), or pass --allow-mismatch"
            if any(mismatch.values()) and not allow_mismatch
            else "; compare runs of the same tasks and versions"
        )
        raise TracingBenchError("; ".join(problems) + hint)
    verdicts: list[TaskVerdict] = []
    for name in names:
        notes = [f"--allow-mismatch: {m}" for m in mismatch.get(name, [])]
        verdicts.append(
            _compare(
                base,
                cur,
                base.scores[name],
                cur.scores[name],
                max_drop=max_drop,
                z=z,
                paired=paired,
                notes=notes + _one_answer(base, cur, name),
            )
        )
        bp, cp = base.metric(name, P_TRUST), cur.metric(name, P_TRUST)
        if bp is not None and cp is not None and P_TRUST != base.scores[name].metric:
            verdicts.append(_compare(base, cur, bp, cp, max_drop=max_drop, z=z, paired=paired, notes=notes))
    regressions = list(dict.fromkeys(v.task for v in verdicts if v.regression))
    return GateVerdict(
        tasks=verdicts,
        regressions=regressions,
        baseline=base.path,
        current=cur.path,
        settings={
            "max_drop": max_drop,
            "z": z,
            "paired": paired,
            "allow_mismatch": allow_mismatch,
            "tasks": list(names),
        },
    )


def _one_answer(base: ResultsFile, cur: ResultsFile, task: str) -> list[str]:
    """A note for each side whose sample log shows one answer to >= 90% of the task's prompts: a
    change in its score then says which answer the model prefers, not how well it judges."""
    out = []
    for f, role in ((base, "baseline"), (cur, "current")):
        a = answer_shares(f.samples_file(task)) if not f.scores[task].is_group else None
        if a and a["one_answer"]:
            out.append(f"{role} gives one answer, {a['top']!r}, to {100 * a['share']:.0f}% of {a['n']} prompts")
    return out


def _compare(
    base: ResultsFile,
    cur: ResultsFile,
    b: TaskScore,
    c: TaskScore,
    *,
    max_drop: float,
    z: float,
    paired: bool,
    notes: list[str] | None = None,
) -> TaskVerdict:
    """The verdict on one task and metric: paired on the sample logs when asked and possible, else z.

    ``notes`` (e.g. the mismatches ``--allow-mismatch`` let through) lead the verdict's note.
    """
    name = b.task
    sign = 1.0 if b.higher_is_better else -1.0
    drop = sign * (b.value - c.value)
    test: Test = "z"
    n = None
    note = ""
    stat = math.nan
    if math.isnan(drop):
        note = f"{b.metric} is NaN in a file: not tested"
    elif paired and not b.is_group and aggregation_for(name, b.metric) is not None:
        ib, ic = _items(base, name, b.metric), _items(cur, name, c.metric)
        ids = _matched(name, ib, ic)
        n = len(ids)
        agg = aggregation_for(name, b.metric)
        drop, stat = paired_bootstrap([ib[i] for i in ids], [ic[i] for i in ids], agg, sign=sign)  # type: ignore[arg-type]
        test = "paired"
        note = f"paired bootstrap of {b.metric} over {n} documents"
    elif paired and not b.is_group:
        sb, sc = _samples(base, name, b.metric), _samples(cur, name, c.metric)
        if sb is None or sc is None:
            note = f"per-sample {b.metric} values are not numbers: two-sample z-test instead"
        else:
            ids = _matched(name, sb, sc)
            n = len(ids)
            drop, stat = paired_z([sign * (sb[i] - sc[i]) for i in ids])
            test = "paired"
            if n < max(len(sb), len(sc)):
                note = f"{n} of {len(sb)}/{len(sc)} documents matched by doc_id"
    elif paired:
        note = "group: two-sample z-test"
    if test == "z" and not math.isnan(drop):
        stat, z_note = _z_test(b, c, drop)
        note = "; ".join(x for x in (note, z_note) if x)
    note = "; ".join([*(notes or []), *([note] if note else [])])
    beyond = drop > max_drop + 1e-12
    regression = bool(beyond and stat > z)
    text = (
        "REGRESSION"
        if regression
        else "worse (not significant)"
        if beyond
        else "worse (within --max-drop)"
        if drop > 0
        else "ok"
    )
    return TaskVerdict(
        task=name,
        metric=b.metric,
        higher_is_better=b.higher_is_better,
        baseline=b.value,
        current=c.value,
        baseline_stderr=b.stderr,
        current_stderr=c.stderr,
        drop=drop,
        z=stat,
        test=test,
        n=n,
        regression=regression,
        note=note,
        verdict=text,
    )


def format_verdict(verdict: GateVerdict) -> str:
    """A plain-text table naming each task's verdict, and a last line with the outcome."""
    head = (
        f"{'task':<22} {'metric':<12} {'dir':>3} {'baseline':>9} {'current':>9} {'drop':>8} {'z':>7} "
        f"{'test':>6}  verdict"
    )
    lines = [head, "-" * len(head)]
    for t in verdict.tasks:
        zs = "inf" if t.z == math.inf else ("-inf" if t.z == -math.inf else f"{t.z:.2f}")
        lines.append(
            f"{t.task:<22} {t.metric:<12} {'↑' if t.higher_is_better else '↓':>3} {t.baseline:>9.4f} {t.current:>9.4f} "
            f"{t.drop:>+8.4f} {zs:>7} {t.test:>6}  {t.verdict}" + (f"  ({t.note})" if t.note else "")
        )
    s = verdict.settings
    if verdict.passed:
        lines.append(f"PASS: no task dropped more than {s['max_drop']} with z > {s['z']}")
    else:
        lines.append(
            f"FAIL: regression in {', '.join(verdict.regressions)} (drop > {s['max_drop']}, z > {s['z']}; "
            f"fired: {', '.join(verdict.fired)})"
        )
    return "\n".join(lines)
