"""Claims that survive their controls: findings.json's ``controls`` section and the final verdicts.

A dimension is **learned** only when, at the claim's layer (the highest probe-val accuracy at the
last checkpoint, as in ``learned``; never the test split), its probe

1. beats the random-feature baseline: the same probe on a randomly initialised model of the same
   config (:mod:`tracing_bench.baseline`), or, without one, the first checkpoint of the series
   (``learned``'s test). Paired on the same test statements: exact McNemar test, Holm over every
   (dimension, layer) pair compared, change with a paired bootstrap interval;
2. is selective: its accuracy minus the accuracy of the same probe trained on the control
   labelling (:mod:`tracing_bench.probes.controls`) is above noise (exact McNemar test on the
   same test statements, Holm over the dimensions, paired bootstrap interval);
3. transfers, where the data carry groups with a meaning: the accuracy of probes that never saw
   a statement's group is above the majority-class share of the test statements (one-sided exact
   binomial test, Holm over the dimensions that have transfer).

Otherwise the verdict names the first control it failed: ``surface features only`` (the baseline
reads it as well, and it is readable at all), ``within noise`` (not readable beyond chance),
``not selective`` (within noise of its control), ``no transfer``; ``not tested`` when no
baseline exists (``--baseline none`` on a single checkpoint). :func:`add_claims` adds the
section, updates ``learned``'s verdict of a dimension that fails a control (the first-to-last
test's own verdict stays as ``test_verdict``) and the summary lines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tracing_bench.compare.findings import FindingsSettings, dimension_title, format_p
from tracing_bench.compare.findings_schema import (
    BaselineCheck,
    ControlEntry,
    Findings,
    PairedChange,
    Selectivity,
    Transfer,
)
from tracing_bench.errors import TracingBenchError
from tracing_bench.files import unpack_bits
from tracing_bench.stats import holm, paired_bootstrap_diff, wilson_interval

RULES = (
    "learned = beats the random-feature baseline (or the first checkpoint) AND selectivity above noise AND "
    "transfer above chance where the data have meaningful groups; otherwise the first control failed"
)


def _probe(part: Mapping[str, Any]) -> str | None:
    kinds = [r["probe"] for r in part.get("probes", [])]
    return ("logistic" if "logistic" in kinds else kinds[0]) if kinds else None


def _by_layer(part: Mapping[str, Any], probe: str) -> dict[int, Mapping[str, Any]]:
    return {int(r["layer"]): r for r in part.get("probes", []) if r["probe"] == probe}


def _bits(row: Mapping[str, Any], key: str, n: int) -> np.ndarray | None:
    return unpack_bits(row[key], n).astype(bool) if row.get(key) else None


def _chance(part: Mapping[str, Any]) -> float:
    """The majority-class share of the test statements."""
    ts = part["test_statements"]
    ones = unpack_bits(ts["labels"], int(ts["n"])).astype(bool)
    share = float(ones.mean()) if ones.size else 0.5
    return max(share, 1.0 - share)


def _ci(x: Sequence[float]) -> str:
    return f"[{x[0]:+.3f}, {x[1]:+.3f}]"


def _paired(a: np.ndarray, b: np.ndarray, opts: FindingsSettings) -> PairedChange:
    r = paired_bootstrap_diff(a, b, n_boot=opts.n_boot, seed=opts.boot_seed, confidence=opts.confidence)
    return {"a": r.acc_a, "b": r.acc_b, "change": r.diff, "change_ci": [r.lo, r.hi], "p_value": r.p_value}


class _BaselineTest(PairedChange):
    """Random-init against the last checkpoint at one (dimension, layer): a = random-init, b = the checkpoint."""

    dimension: str
    layer: int
    probe: str
    p_holm: float
    passed: bool


def _holm_into(entries: Sequence[Selectivity | Transfer | _BaselineTest], alpha: float) -> None:
    for e, p in zip(entries, holm([e["p_value"] for e in entries]), strict=True):
        e["p_holm"] = float(p)
        e["passed"] = bool(float(p) < alpha and e["change"] > 0)


def _baseline_tests(
    parts: Mapping[str, list[Mapping[str, Any]]], base: Mapping[str, Mapping[str, Any]], opts: FindingsSettings
) -> list[_BaselineTest]:
    """Random-init against the last checkpoint, per (dimension, layer), Holm over all of them."""
    tests: list[_BaselineTest] = []
    for dim, dparts in parts.items():
        if dim not in base or not dparts:
            continue
        last, b = dparts[-1], base[dim]
        probe = _probe(last)
        if probe is None:
            continue
        if (b.get("test_statements") or {}).get("sha256") != last["test_statements"]["sha256"]:
            raise TracingBenchError(
                f"{dim}: the random-init baseline was scored on other test statements than the "
                "last checkpoint; trace again into a new --out"
            )
        n = int(last["test_statements"]["n"])
        rb, rl = _by_layer(b, probe), _by_layer(last, probe)
        for lay in sorted(set(rb) & set(rl)):
            t = _paired(unpack_bits(rb[lay]["test_correct"], n), unpack_bits(rl[lay]["test_correct"], n), opts)
            tests.append({"dimension": dim, "layer": lay, "probe": probe, **t, "p_holm": math.nan, "passed": False})
    _holm_into(tests, opts.alpha)
    return tests


def _claim_layer(findings: Findings, dim: str, last: Mapping[str, Any], probe: str) -> int | None:
    chosen = findings["learned"]["dimensions"].get(dim)
    if chosen is not None:
        return int(chosen["layer"])
    rows = _by_layer(last, probe)

    def val(lay: int) -> float:
        v = rows[lay].get("val_acc")
        return -math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    return max(rows, key=lambda lay: (val(lay), -lay)) if rows else None


def _entry(
    findings: Findings,
    dim: str,
    dparts: list[Mapping[str, Any]],
    base_tests: list[_BaselineTest],
    base_kind: str | None,
    opts: FindingsSettings,
) -> ControlEntry | None:
    last = dparts[-1]
    probe = _probe(last)
    lay = _claim_layer(findings, dim, last, probe) if probe else None
    if probe is None or lay is None:
        return None
    row = _by_layer(last, probe)[lay]
    n = int(last["test_statements"]["n"])
    correct = unpack_bits(row["test_correct"], n).astype(bool)
    k = int(correct.sum())
    chance = _chance(last)
    control = _bits(row, "control_correct", n)
    selectivity: Selectivity | None = (
        None
        if control is None
        else {
            "control_acc": float(control.mean()),
            **_paired(control, correct, opts),
            "p_holm": math.nan,
            "passed": False,
        }
    )
    baseline: BaselineCheck | None = None
    if base_kind == "random-init":
        t = next((x for x in base_tests if x["dimension"] == dim and x["layer"] == lay), None)
        if t is not None:
            baseline = {
                "kind": base_kind,
                "acc": t["a"],
                "change": t["change"],
                "change_ci": t["change_ci"],
                "p_value": t["p_value"],
                "p_holm": t["p_holm"],
                "passed": t["passed"],
            }
    elif base_kind is not None:
        ld = findings["learned"]["dimensions"].get(dim)
        if ld is not None:
            baseline = {
                "kind": base_kind,
                "acc": ld["first_acc"],
                "change": ld["change"],
                "change_ci": ld["change_ci"],
                "p_value": ld["p_value"],
                "p_holm": ld["p_holm"],
                "passed": ld["verdict"] == "learned",
            }
    transfer_bits = _bits(row, "transfer_correct", n)
    transfer: Transfer | None = None
    if transfer_bits is not None:
        # lazy: scipy loads on first use, so importing compare.claims stays light
        from scipy.stats import binomtest

        kt = int(transfer_bits.sum())
        transfer = {
            "column": ((last.get("controls") or {}).get("transfer") or {}).get("column"),
            "acc": kt / n,
            "acc_ci": list(wilson_interval(kt, n, confidence=opts.confidence)),
            "change": kt / n - chance,
            "p_value": float(binomtest(kt, n, chance, alternative="greater").pvalue),
            "p_holm": math.nan,  # over every dimension's transfer test (add_claims)
            "passed": False,
            "drop": _paired(correct, transfer_bits, opts),
        }
    return {
        "title": dimension_title(dim),
        "layer": lay,
        "probe": probe,
        "n_test": n,
        "acc": k / n,
        "acc_ci": list(wilson_interval(k, n, confidence=opts.confidence)),
        "chance": chance,
        "selectivity": selectivity,
        "baseline": baseline,
        "transfer": transfer,
        "verdict": "not tested",  # after the Holm adjustments (add_claims)
        "failed": [],
        "claim": "",
    }


def _verdict(e: ControlEntry) -> tuple[str, list[str]]:
    checks = {"baseline": e["baseline"], "selectivity": e["selectivity"], "transfer": e["transfer"]}
    failed = [name for name, c in checks.items() if c is not None and not c["passed"]]
    if not failed and e["baseline"] is None:
        return "not tested", failed
    if not failed:
        return "learned", failed
    readable = e["acc_ci"][0] > e["chance"]
    first = failed[0]
    if first == "baseline":
        return ("surface features only" if readable else "within noise"), failed
    return ("not selective" if first == "selectivity" else "no transfer"), failed


def _claim(e: ControlEntry) -> str:
    bits = [f"test accuracy {e['acc']:.3f} [{e['acc_ci'][0]:.3f}, {e['acc_ci'][1]:.3f}]"]
    b = e["baseline"]
    if b is not None:
        bits.append(
            f"vs {b['kind']} {b['acc']:.3f}: {b['change']:+.3f} {_ci(b['change_ci'])} ({format_p(b['p_holm'])})"
        )
    else:
        bits.append("no baseline (trace a step-0 checkpoint or --baseline random-init)")
    s = e["selectivity"]
    if s is not None:
        bits.append(
            f"selectivity {s['change']:+.3f} {_ci(s['change_ci'])} (control {s['control_acc']:.3f}, "
            f"{format_p(s['p_holm'])})"
        )
    t = e["transfer"]
    if t is not None:
        bits.append(
            f"transfer across {t['column']} {t['acc']:.3f} [{t['acc_ci'][0]:.3f}, {t['acc_ci'][1]:.3f}] "
            f"vs chance {e['chance']:.3f} ({format_p(t['p_holm'])})"
        )
    return f"{e['verdict']} (block {e['layer']}: " + "; ".join(bits) + ")"


def add_claims(
    findings: Findings,
    parts: Mapping[str, list[Mapping[str, Any]]],
    baseline: Mapping[str, Mapping[str, Any]] | None,
    options: FindingsSettings | None = None,
) -> None:
    """Add the ``controls`` section to ``findings`` (in place) and apply its verdicts.

    Args:
        findings: from :func:`tracing_bench.compare.findings.build_findings`.
        parts: dimension -> its parts, one per checkpoint in series order.
        baseline: dimension -> the random-init baseline's part, or ``None`` (not traced).
        options: :class:`~tracing_bench.compare.findings.FindingsSettings`.
    """
    opts = options or FindingsSettings()
    n_ckpts = len(findings["checkpoints"])
    if baseline:
        kind: str | None = "random-init"
    elif n_ckpts >= 2:
        kind = f"first checkpoint ({findings['learned'].get('first')})"
    else:
        kind = None
    base_tests = _baseline_tests(parts, baseline, opts) if baseline else []
    entries = {d: e for d, p in parts.items() if p for e in [_entry(findings, d, p, base_tests, kind, opts)] if e}
    _holm_into([s for e in entries.values() if (s := e["selectivity"]) is not None], opts.alpha)
    _holm_into([t for e in entries.values() if (t := e["transfer"]) is not None], opts.alpha)
    for e in entries.values():
        e["verdict"], e["failed"] = _verdict(e)
        e["claim"] = _claim(e)
    findings["controls"] = {
        "question": "does the probe read the concept beyond what random features, chance labels and the "
        "statements' groups give?",
        "rules": RULES,
        "baseline": kind,
        "alpha": opts.alpha,
        "confidence": opts.confidence,
        "baseline_family": f"{len(base_tests)} (dimension, layer) pairs, Holm" if baseline else "the learned family",
        "dimensions": entries,
    }
    learned = findings["learned"]["dimensions"]
    for d, e in entries.items():
        ld = learned.get(d)
        if ld is not None and ld["verdict"] == "learned" and e["verdict"] != "learned":
            ld["test_verdict"], ld["verdict"] = ld["verdict"], e["verdict"]
            ld["claim"] = f"{e['verdict']} (first -> last: {ld['claim']})"
    summary = findings["summary"]
    for d, e in entries.items():
        line = f"controls: {e['claim']}"
        at = next((i for i, s in enumerate(summary) if s.startswith(f"{dimension_title(d)}: ")), None)
        if at is None:
            summary.append(f"{dimension_title(d)}: {line}")
        else:
            summary[at] += f"; {line}"


def control_lines(findings: Findings) -> list[str]:
    """The demo's table of the controls at each dimension's claim block (empty without them): accuracy,
    control accuracy, selectivity, baseline accuracy and transfer accuracy, each with its interval or
    Holm-adjusted p-value, and the verdict."""
    c = findings.get("controls")
    entries = c["dimensions"] if c else {}
    if not c or not entries:
        return []
    width = max(12, *(len(e["title"]) for e in entries.values()))
    lines = [
        f"controls at the claim's block (baseline: {c['baseline'] or 'none'}; 95% intervals, p Holm-adjusted):",
        f"  {'dimension':<{width}} {'block':>5}  {'acc [95% CI]':<21} {'control':>7}  "
        f"{'selectivity [95% CI]':<27} {'baseline (p)':<18} {'transfer [95% CI]':<21} verdict",
    ]
    for e in entries.values():
        s, b, t = e["selectivity"], e["baseline"], e["transfer"]
        acc = f"{e['acc']:.3f} [{e['acc_ci'][0]:.3f}, {e['acc_ci'][1]:.3f}]"
        ctl = "-" if s is None else f"{s['control_acc']:.3f}"
        sel = "-" if s is None else f"{s['change']:+.3f} {_ci(s['change_ci'])}"
        base = "-" if b is None else f"{b['acc']:.3f} ({format_p(b['p_holm'])})"
        tra = "-" if t is None else f"{t['acc']:.3f} [{t['acc_ci'][0]:.3f}, {t['acc_ci'][1]:.3f}]"
        lines.append(
            f"  {e['title']:<{width}} {e['layer']:>5}  {acc:<21} {ctl:>7}  {sel:<27} {base:<18} {tra:<21} "
            f"{e['verdict']}"
        )
    lines.append(f"  {c['rules']}")
    return lines


__all__ = ["RULES", "add_claims", "control_lines"]
