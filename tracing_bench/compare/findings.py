"""Tested claims of a trace: which concepts were learned, where I(T;X) turns (``OUT/findings.json``).

``trace`` writes ``findings.json`` next to ``probes.csv`` when it merges a series; the demo
summary and the report read their conclusions from it, never from point estimates.

**Learned.** For every dimension and every probed layer, the probe (``logistic``, else the one
traced) at the first and at the last checkpoint is scored on the same test statements: the
change in test accuracy gets a paired bootstrap interval (statements resampled with both
outcomes) and an exact McNemar test (:mod:`tracing_bench.stats`). The family is every
(dimension, layer) pair tested, and the p-values are Holm-adjusted over it. The claim for a
dimension is made at ONE layer, the one with the highest probe-val accuracy at the last
checkpoint (ties: the lower layer), so the test split never chooses what is tested. A dimension
is *learned* when the adjusted p-value is below ``alpha`` (0.05) and accuracy rose, *declined*
when it fell, otherwise *within noise*.

**MI turn.** Per dimension and layer, the first checkpoint that I(T;X) rose into and fell after,
where the rise (from the lowest checkpoint before) and the fall (to the lowest after) both
exceed ``turn_z`` (2) standard deviations of the estimator's own noise: the spread of the same
differences over seeded half-samples of the probe-train statements, the same half-samples at
every checkpoint (:func:`tracing_bench.compare.phases.noisy_turn`); otherwise "no turn detected".

Every figure is stated with its interval, p-value or noise:
``learned (p=1.0e-13, +0.180 [+0.136, +0.224])``, ``within noise (p=1, +0.036 [-0.022, +0.090])``,
``turn at step 16 (rise +1.83 from step 4, noise sd 0.061; fall 2.57 to step 32, noise sd 0.057)``.
So are the score changes of :func:`checkpoint_changes` (first against last checkpoint of a
leaderboard) and :func:`steering_changes` (a sweep's best setting against the unsteered model).

>>> findings = read_findings("demo-out/trace")      # the folder or the file
>>> findings["learned"]["dimensions"]["robustness"]["claim"]
'learned (p=1.0e-13, +0.180 [+0.136, +0.224])'
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from tracing_bench import __version__
from tracing_bench.compare.findings_schema import (
    REQUIRED_KEYS,
    Findings,
    Learned,
    LearnedTest,
    MiTurns,
    NoiseInfo,
    TurnEntry,
    TurnPoint,
)
from tracing_bench.compare.leaderboard import Leaderboard
from tracing_bench.compare.phases import checkpoint_key, noisy_turn
from tracing_bench.dimensions import DIMENSIONS, DimensionData
from tracing_bench.errors import TracingBenchError
from tracing_bench.files import atomic_write_json, unpack_bits
from tracing_bench.results import P_TRUST, ResultsFile, answer_shares, group_answer_note, one_answer_note
from tracing_bench.stats import diff_interval, holm, paired_bootstrap_diff, wilson_interval

Verdict = Literal["learned", "declined", "within noise", "not tested"]
LAYER_CHOICE = "highest probe-val accuracy at the last checkpoint (ties: the lower layer); never the test split"


@dataclass(frozen=True)
class FindingsSettings:
    """How claims are tested.

    Attributes:
        alpha: family-wise error rate of the learned test (Holm).
        confidence: level of every interval.
        n_boot: paired bootstrap resamples of the accuracy change.
        boot_seed: seed of the bootstrap.
        turn_z: noise standard deviations a rise and a fall must exceed to make a turn.
    """

    alpha: float = 0.05
    confidence: float = 0.95
    n_boot: int = 10000
    boot_seed: int = 0
    turn_z: float = 2.0


def dimension_title(name: str) -> str:
    """The display title of a dimension: ``DIMENSIONS[name].title`` when it has one, else the name."""
    title = getattr(DIMENSIONS.get(name), "title", None)
    return str(title) if title else name


def format_p(p: float) -> str:
    """``p=0.012``, ``p=3.1e-09``; ``p=1`` for 1."""
    if p is None or math.isnan(p):
        return "p=n/a"
    if p >= 0.9995:
        return "p=1"
    if p >= 0.01:
        return f"p={p:.2f}"
    if p >= 0.001:
        return f"p={p:.3f}"
    return f"p={p:.1e}"


def _ckpt_name(info: Mapping[str, Any]) -> str:
    step = info.get("step")
    if step is not None and step != "":
        return f"step {step}"
    return str(info.get("revision") or info.get("label") or info.get("model") or "?")


def _probe_name(parts: Sequence[Mapping[str, Any]]) -> str | None:
    kinds = [r["probe"] for p in parts for r in p.get("probes", [])]
    return ("logistic" if "logistic" in kinds else kinds[0]) if kinds else None


def _rows_by_layer(part: Mapping[str, Any], probe: str) -> dict[int, Mapping[str, Any]]:
    return {int(r["layer"]): r for r in part.get("probes", []) if r["probe"] == probe}


def _val(r: Mapping[str, Any]) -> float:
    v = r.get("val_acc")
    return -math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _learned(
    checkpoints: list[dict[str, Any]], parts: Mapping[str, list[Mapping[str, Any]]], opts: FindingsSettings
) -> Learned:
    out: Learned = {
        "question": "is the concept linearly readable better at the last checkpoint than at the first?",
        "test": "exact McNemar test (two-sided) on the same test statements; change interval: paired bootstrap "
        f"percentile ({opts.n_boot} resamples, seed {opts.boot_seed}); accuracy intervals: Wilson",
        "layer_choice": LAYER_CHOICE,
        "alpha": opts.alpha,
        "confidence": opts.confidence,
        "dimensions": {},
        "layers": [],
        "family": "none",
    }
    if len(checkpoints) < 2:
        out["note"] = "one checkpoint: nothing to compare"
        return out
    first, last = checkpoints[0], checkpoints[-1]
    out["first"], out["last"] = _ckpt_name(first), _ckpt_name(last)
    tests: list[LearnedTest] = []
    chosen: dict[str, tuple[str, int]] = {}
    for dim, dparts in parts.items():
        probe = _probe_name(dparts)
        if probe is None or len(dparts) < 2:
            continue
        a_part, b_part = dparts[0], dparts[-1]
        ta, tb = a_part.get("test_statements") or {}, b_part.get("test_statements") or {}
        if not ta or ta.get("sha256") != tb.get("sha256"):
            raise TracingBenchError(
                f"{dim}: the first and the last checkpoint were scored on different test statements "
                "(or by an older tracing-bench without per-statement results); trace the series again into a new --out"
            )
        n = int(ta["n"])
        rows_a, rows_b = _rows_by_layer(a_part, probe), _rows_by_layer(b_part, probe)
        common = sorted(set(rows_a) & set(rows_b))
        if not common:
            continue
        best = max(common, key=lambda lay: (_val(rows_b[lay]), -lay))
        chosen[dim] = (probe, best)
        for lay in common:
            ca = unpack_bits(rows_a[lay]["test_correct"], n)
            cb = unpack_bits(rows_b[lay]["test_correct"], n)
            res = paired_bootstrap_diff(ca, cb, n_boot=opts.n_boot, seed=opts.boot_seed, confidence=opts.confidence)
            lo_a, hi_a = wilson_interval(int(ca.sum()), n, confidence=opts.confidence)
            lo_b, hi_b = wilson_interval(int(cb.sum()), n, confidence=opts.confidence)
            tests.append(
                {
                    "dimension": dim,
                    "layer": lay,
                    "probe": probe,
                    "n_test": n,
                    "first_acc": res.acc_a,
                    "first_acc_ci": [lo_a, hi_a],
                    "last_acc": res.acc_b,
                    "last_acc_ci": [lo_b, hi_b],
                    "change": res.diff,
                    "change_ci": [res.lo, res.hi],
                    "first_only_right": res.b,
                    "last_only_right": res.c,
                    "p_value": res.p_value,
                    "p_holm": math.nan,  # below, over the whole family
                    "verdict": "not tested",
                    "claim": "",
                }
            )

    adjusted = holm([t["p_value"] for t in tests])
    for t, p_adj in zip(tests, adjusted, strict=True):
        t["p_holm"] = float(p_adj)
        t["verdict"] = _verdict(t["change"], float(p_adj), opts.alpha)
        t["claim"] = _learned_claim(t)
    out["family"] = (
        f"every (dimension, layer) pair compared: {len(tests)} hypotheses, Holm-adjusted "
        f"(family-wise error {opts.alpha:g}); p in a claim is the adjusted p-value"
    )
    out["n_tests"] = len(tests)
    out["layers"] = tests
    for dim, (_probe, lay) in chosen.items():
        t = next(x for x in tests if x["dimension"] == dim and x["layer"] == lay)
        out["dimensions"][dim] = {**t, "title": dimension_title(dim), "layer_choice": LAYER_CHOICE}
    return out


def _verdict(change: float, p_adj: float, alpha: float) -> Verdict:
    if math.isnan(p_adj) or p_adj >= alpha:
        return "within noise"
    return "learned" if change > 0 else "declined"


def _learned_claim(t: LearnedTest) -> str:
    lo, hi = t["change_ci"]
    return f"{t['verdict']} ({format_p(t['p_holm'])}, {t['change']:+.3f} [{lo:+.3f}, {hi:+.3f}])"


def _turns(
    parts: Mapping[str, list[Mapping[str, Any]]], checkpoints: list[dict[str, Any]], opts: FindingsSettings
) -> MiTurns:
    out: MiTurns = {
        "quantity": "I(T;X), nHSIC between block 0 and block l on the probe-train statements",
        "rule": f"first peak whose rise (from the lowest checkpoint before) and fall (to the lowest after) both "
        f"exceed {opts.turn_z:g} noise standard deviations",
        "z": opts.turn_z,
        "series": [],
        "dimensions": {},
        "noise": None,
    }
    noise_info: NoiseInfo | None = None
    for dim, dparts in parts.items():
        if not any(p.get("mi") for p in dparts):
            continue
        layers = sorted({int(r["layer"]) for p in dparts for r in p.get("mi", [])})
        turns_here: list[TurnPoint] = []
        for lay in layers:
            values, reps, keys, names = [], [], [], []
            for p, info in zip(dparts, checkpoints, strict=False):
                row = next((r for r in p.get("mi", []) if int(r["layer"]) == lay), None)
                values.append(math.nan if row is None else float(row["i_xt"]))
                noise = p.get("mi_noise") or {}
                reps.append(list(noise.get("i_xt", {}).get(str(lay), [])))
                keys.append(checkpoint_key(row) if row is not None else _ckpt_name(info))
                names.append(_ckpt_name(info))
                if noise and noise_info is None:
                    noise_info = {
                        "k": noise.get("k"),
                        "m": noise.get("m"),
                        "seeds": noise.get("seeds"),
                        "method": noise.get("method"),
                    }
            entry: TurnEntry = {"dimension": dim, "layer": lay, "turn": None, "tested": False, "claim": ""}
            if len(values) < 3:
                entry["claim"] = "not tested (a turn needs at least three checkpoints)"
            elif any(len(r) < 2 for r in reps):
                entry["claim"] = "not tested (no noise estimate: trace with --mi-noise 2 or more)"
            else:
                entry["tested"] = True
                turn = noisy_turn(values, reps, z=opts.turn_z)
                if turn is None:
                    entry["claim"] = "no turn detected"
                else:
                    entry.update(
                        {
                            "turn": keys[turn.index],
                            "checkpoint": names[turn.index],
                            "from": names[turn.before],
                            "to": names[turn.after],
                            "rise": turn.rise,
                            "rise_sd": turn.rise_sd,
                            "fall": turn.fall,
                            "fall_sd": turn.fall_sd,
                            "claim": (
                                f"turn at {names[turn.index]} (rise {turn.rise:+.3g} from {names[turn.before]}, "
                                f"noise sd {turn.rise_sd:.2g}; fall {turn.fall:.3g} to {names[turn.after]}, "
                                f"noise sd {turn.fall_sd:.2g})"
                            ),
                        }
                    )
                    turns_here.append({"layer": lay, "turn": keys[turn.index], "checkpoint": names[turn.index]})
            out["series"].append(entry)
        tested = any(e["tested"] for e in out["series"] if e["dimension"] == dim)
        if turns_here:
            claim = "; ".join(f"block {t['layer']} at {t['checkpoint']}" for t in turns_here)
        else:
            claim = "no turn detected" if tested else next(e["claim"] for e in out["series"] if e["dimension"] == dim)
        out["dimensions"][dim] = {"title": dimension_title(dim), "turns": turns_here, "claim": claim}
    out["noise"] = noise_info
    return out


def build_findings(
    checkpoints: list[dict[str, Any]],
    datas: Sequence[DimensionData],
    parts: Mapping[str, list[Mapping[str, Any]]],
    *,
    settings: Mapping[str, Any] | None = None,
    options: FindingsSettings | None = None,
) -> Findings:
    """The findings of a traced series from its part files.

    Args:
        checkpoints: the series in order (``model``, ``revision``, ``step``, ``label``).
        datas: the dimensions traced (for provenance).
        parts: dimension name -> its part dicts, one per checkpoint in series order.
        settings: the trace settings (recorded).
        options: :class:`FindingsSettings`.

    Returns:
        the findings (:class:`~tracing_bench.compare.findings_schema.Findings`); JSON-serialisable.
    """
    opts = options or FindingsSettings()
    learned = _learned(checkpoints, parts, opts)
    turns = _turns(parts, checkpoints, opts)
    trace_settings = dict(settings or {})
    summary = []
    for dim in parts:
        bits = []
        d = learned["dimensions"].get(dim)
        if d is not None:
            bits.append(
                f"{d['claim']} at block {d['layer']} ({d['probe']} probe, test accuracy "
                f"{d['first_acc']:.3f} -> {d['last_acc']:.3f})"
            )
        t = turns["dimensions"].get(dim)
        found = [e for e in turns["series"] if e["dimension"] == dim and e.get("turn") is not None]
        if found:  # each turn with its rise, fall and noise (the test it passed)
            bits.append("MI turn: " + "; ".join(f"block {e['layer']} {e['claim']}" for e in found))
        elif t is not None:
            bits.append(f"MI turn: {t['claim']}")
        if bits:
            summary.append(f"{dimension_title(dim)}: " + "; ".join(bits))
    return {
        "tool": "tracing-bench trace",
        "package_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "alpha": opts.alpha,
            "confidence": opts.confidence,
            "n_boot": opts.n_boot,
            "boot_seed": opts.boot_seed,
            "turn_z": opts.turn_z,
            "mi_noise": trace_settings.get("mi_noise"),
            "mi_subsample": trace_settings.get("mi_subsample"),
            "max_statements": trace_settings.get("max_statements"),
            "protocol": trace_settings.get("protocol"),
            "seed": trace_settings.get("seed"),
        },
        "checkpoints": [
            {"model": c["model"], "revision": c.get("revision"), "step": c.get("step"), "label": c["label"]}
            for c in checkpoints
        ],
        "datasets": {d.name: d.md5 for d in datas},
        "learned": learned,
        "mi_turns": turns,
        "summary": summary,
    }


def write_findings(findings: Findings, path: str | os.PathLike[str]) -> Path:
    """Write ``findings.json`` atomically (NaN written as null)."""
    return atomic_write_json(path, findings, indent=1)


def read_findings(path: str | os.PathLike[str]) -> Findings | None:
    """``findings.json`` from a trace folder (or the file itself); ``None`` when absent, unreadable or
    not a findings.json (a key of :class:`~tracing_bench.compare.findings_schema.Findings` missing)."""
    p = Path(path)
    if p.is_dir():
        p = p / "findings.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not REQUIRED_KEYS <= set(data):
        return None
    return cast(Findings, data)  # the keys checked; the values as build_findings wrote them


def turn_keys(findings: Findings | None) -> dict[tuple[str, int], Any]:
    """``{(dimension, layer): checkpoint key of the turn or None}`` from findings (for the plots)."""
    if not findings:
        return {}
    series = findings["mi_turns"]["series"]
    return {(str(e["dimension"]), int(e["layer"])): e.get("turn") for e in series}


# ------------------------------------------------------------------ scores of lm-eval results
def _value(f: ResultsFile, task: str, metric: str) -> tuple[float | None, float | None]:
    """(value, stderr) of a metric of ``task`` in a results file; (None, None) when absent or not a number."""
    s = f.metric(task, metric)
    return (None, None) if s is None or math.isnan(s.value) else (s.value, s.stderr)


def _headline_name(f: ResultsFile, task: str, metric: str) -> str:
    """``score`` of a trust task is a copy of acc (consistency for robustness): name it so."""
    value = _value(f, task, metric)[0]
    for name in ("acc", "consistency") if metric == "score" else ():
        v = _value(f, task, name)[0]
        if v is not None and value is not None and abs(v - value) < 1e-12:
            return name
    return metric


def change_claim(change: Any) -> str:
    """``+0.020 [-0.010, +0.050], within noise`` / ``-0.100 [-0.150, -0.050]`` / no stderr."""
    if change.se != change.se:  # NaN: a side has no stderr
        return f"{change.diff:+.3f} (no stderr: not tested)"
    text = f"{change.diff:+.3f} [{change.lo:+.3f}, {change.hi:+.3f}]"
    return text + (", within noise" if change.within_noise else "")


def _compare(
    task: str,
    metric: str,
    a: tuple[float | None, float | None],
    b: tuple[float | None, float | None],
    confidence: float,
) -> dict[str, Any] | None:
    if a[0] is None or b[0] is None:
        return None
    d = diff_interval(a[0], a[1], b[0], b[1], confidence=confidence)
    return {
        "task": task,
        "metric": metric,
        "a": a[0],
        "a_stderr": a[1],
        "b": b[0],
        "b_stderr": b[1],
        "change": d.diff,
        "ci": [d.lo, d.hi],
        "within_noise": d.within_noise,
        "tested": d.se == d.se,
        "claim": change_claim(d),
    }


def checkpoint_changes(board: Leaderboard, *, confidence: float = 0.95) -> dict[str, Any] | None:
    """First against last unsteered checkpoint of a leaderboard, task by task, headline and p_trust.

    A change is within noise unless its interval (two independent standard errors, normal)
    excludes 0; a side without a stderr (lm-eval's ``N/A``) is not tested.

    Args:
        board: a :class:`~tracing_bench.compare.leaderboard.Leaderboard`.

    Returns:
        ``{"first", "last", "tasks": [{task, metric, a, a_stderr, b, b_stderr, change, ci,
        within_noise, tested, claim, p_trust: {...} | None, answers: [first, last] | None, answers_note}]}``
        (answers: :func:`~tracing_bench.results.answer_shares` of each side's sample log, None for a
        group; answers_note: what one answer means for the scores, ``""`` when nothing to say), or
        ``None`` with fewer than two unsteered rows.
    """
    rows = [f for f in board.rows if f.steering == "none"]
    if len(rows) < 2:
        return None
    if all(f.step is not None for f in rows):
        rows = sorted(rows, key=lambda f: f.step or 0)
    first, last = rows[0], rows[-1]
    tasks = []
    for task, score in first.scores.items():
        if task not in last.scores:
            continue
        metric = score.metric
        head = _compare(
            task,
            _headline_name(first, task, metric),
            _value(first, task, metric),
            _value(last, task, metric),
            confidence,
        )
        if head is None:
            continue
        head["is_group"] = score.is_group
        head["p_trust"] = _compare(task, P_TRUST, _value(first, task, P_TRUST), _value(last, task, P_TRUST), confidence)
        head["answers"] = None if score.is_group else [answer_shares(f.samples_file(task)) for f in (first, last)]
        tasks.append(head)
    for e in tasks:  # what the answers mean for the scores, one line per task (None without sample logs)
        e["answers_note"] = (
            group_answer_note(tasks, first.label, last.label)
            if e["is_group"]
            else one_answer_note(e["answers"], first.label, last.label)
        )
    return {"first": first.label, "last": last.label, "confidence": confidence, "tasks": tasks}


def steering_changes(
    sweep_rows: Sequence[Mapping[str, Any]], best: Mapping[str, Any] | None, *, confidence: float = 0.95
) -> list[dict[str, Any]]:
    """The best admissible setting per task against the unsteered model, with intervals.

    Args:
        sweep_rows: rows of ``sweep.csv`` (strings or typed).
        best: ``best.json`` of the sweep.

    Returns:
        per task: ``{task, metric, layer, alpha, ..., change, ci, within_noise, claim, p_trust, logodds}``
        or ``{task, claim: "no admissible setting ..."}``.
    """

    def f(v: Any) -> float | None:
        try:
            x = float(v)
        except (TypeError, ValueError):
            return None
        return None if math.isnan(x) else x

    base = {(r["task"], r["metric"]): (f(r["score"]), f(r.get("stderr"))) for r in sweep_rows if r["vector"] == "none"}
    out = []
    entries = (best or {}).get("best")
    for task, b in sorted(entries.items() if isinstance(entries, Mapping) else []):
        if b is not None and not (isinstance(b, Mapping) and {"vector", "alpha", "layer"} <= set(b)):
            continue  # not a per-task entry of steer sweep's best.json
        if b is None:
            out.append(
                {
                    "task": task,
                    "admissible": False,
                    "claim": "no admissible setting (every alpha failed the fluency guard)",
                }
            )
            continue
        chosen = (b["vector"], f(b["alpha"]), str(b["layer"]))
        setting = {
            (r["task"], r["metric"]): (f(r["score"]), f(r.get("stderr")))
            for r in sweep_rows
            if (r["vector"], f(r["alpha"]), str(r["layer"])) == chosen
        }
        head = _compare(
            task,
            b.get("metric", "score"),
            base.get((task, b.get("metric", "score")), (None, None)),
            setting.get((task, b.get("metric", "score")), (None, None)),
            confidence,
        )
        if head is None:
            continue
        head.update(
            {
                "admissible": True,
                "layer": b["layer"],
                "alpha": b["alpha"],
                "vector": b["vector"],
                "ppl_increase": f(b.get("ppl_increase")),
            }
        )
        head["p_trust"] = _compare(
            task,
            P_TRUST,
            base.get((task, P_TRUST), (None, None)),
            setting.get((task, P_TRUST), (None, None)),
            confidence,
        )
        head["logodds"] = b.get("logodds")  # the sweep's paired per-document change (steering.effects)
        out.append(head)
    return out


__all__ = [
    "FindingsSettings",
    "build_findings",
    "change_claim",
    "checkpoint_changes",
    "dimension_title",
    "format_p",
    "read_findings",
    "steering_changes",
    "turn_keys",
    "write_findings",
]
