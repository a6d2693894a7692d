"""Leaderboard of lm-eval results: one row per (model, revision, steering setting).

Reads lm-eval's own ``results_<date>.json`` files (written by ``tracing-bench eval``, plain
``lm_eval --output_path`` or a steering sweep) through :mod:`tracing_bench.results`; folders
are searched recursively. Each row holds, per task and per group (``trust`` = the mean of the
five dimensions), the headline metric with its stderr, the direction from the file's
``higher_is_better``, the step parsed from the revision, the steering setting, and the file it
came from. Beside the headline, ``p_trust`` (the mean probability of the trustworthy answer,
which moves when the headline metric does not) for every task and group that reports it:
CSV/JSON columns ``<task>_p_trust`` and ``<task>_p_trust_stderr``, a Markdown/HTML column
``<task> p_trust``.

Two files for one row are an error naming both, unless ``latest=True`` keeps the newer (by the
file's ``date`` field, then the timestamp in its name).

>>> board = build_leaderboard(["results/"], latest=True)
>>> print(format_leaderboard(board, "md", sort="trust"))
"""

from __future__ import annotations

import csv
import html
import io
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tracing_bench.errors import TracingBenchError
from tracing_bench.files import dumps_json
from tracing_bench.results import P_TRUST, ResultsFile, find_results, load_results

Format = Literal["md", "csv", "html", "json"]
FORMATS: tuple[str, ...] = ("md", "csv", "html", "json")


@dataclass
class Leaderboard:
    """Rows (one :class:`ResultsFile` each) and the task/group columns they cover.

    Attributes:
        rows: one per (model, revision, steering).
        columns: tasks then groups, in first-seen order (a group's subtasks in the group's order).
        higher_is_better: column -> direction.
        dropped: files left out by ``latest=True`` (older duplicates).
        p_trust: the columns for which some row reports ``p_trust`` (shown beside them).
    """

    rows: list[ResultsFile]
    columns: list[str]
    higher_is_better: dict[str, bool]
    dropped: list[Path] = field(default_factory=list)
    p_trust: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------ reading
def _columns(files: Sequence[ResultsFile]) -> list[str]:
    tasks: list[str] = []
    groups: list[str] = []
    for f in files:
        for group, subtasks in (f.data.get("group_subtasks") or {}).items():
            for t in subtasks or []:
                if t in f.scores and t not in tasks:
                    tasks.append(t)
            if group in f.scores and group not in groups:
                groups.append(group)
        for name, s in f.scores.items():
            target = groups if s.is_group else tasks
            if name not in target:
                target.append(name)
    return tasks + groups


def _row_order(f: ResultsFile) -> tuple[Any, ...]:
    """Model, then step as a number (``step4`` before ``step32``; no step last), revision, steering."""
    return (f.model, f.step is None, f.step if f.step is not None else 0, f.revision, f.steering != "none", f.steering)


def build_leaderboard(paths: Iterable[str | os.PathLike], *, latest: bool = False) -> Leaderboard:
    """Read results files (folders searched recursively) into one row per (model, revision, steering).

    Args:
        paths: results files and/or folders.
        latest: when two files give the same row, keep the newer instead of failing.

    Returns:
        the :class:`Leaderboard`, rows ordered by model, then step number (``step4`` before
        ``step32``), then revision and steering (unsteered first).

    Raises:
        TracingBenchError: a path is missing or unreadable, or two files give one row without ``latest``.
    """
    files = [load_results(p) for p in find_results(paths)]
    rows: dict[tuple[str, str, str], ResultsFile] = {}
    dropped: list[Path] = []
    for f in files:
        other = rows.get(f.key)
        if other is None:
            rows[f.key] = f
            continue
        if not latest:
            raise TracingBenchError(
                f"two results for {f.label}: {other.path} and {f.path}; keep one, or pass --latest to use the newer"
            )
        newer, older = (f, other) if (f.date, f.path.name) >= (other.date, other.path.name) else (other, f)
        rows[f.key] = newer
        dropped.append(older.path)
    kept = sorted(rows.values(), key=_row_order)
    columns = _columns(kept)
    hib: dict[str, bool] = {}
    for f in kept:
        for name, s in f.scores.items():
            hib.setdefault(name, s.higher_is_better)
    p_trust = [c for c in columns if any(f.metric(c, P_TRUST) is not None for f in kept)]
    return Leaderboard(rows=kept, columns=columns, higher_is_better=hib, dropped=dropped, p_trust=p_trust)


# ----------------------------------------------------------------------------------- writing
def records(board: Leaderboard) -> list[dict[str, Any]]:
    """Flat dicts, one per row: model, revision, step, steering, label, <col>, <col>_stderr,
    <col>_p_trust, <col>_p_trust_stderr (for the columns in ``board.p_trust``), nan, source.

    A task the file does not have is ``None``; a score the file holds as NaN (lm-eval could not
    compute it) stays ``nan`` and is named in the row's ``nan`` list, so that it is shown as NaN
    and flagged, never mistaken for a missing task.
    """
    out = []
    for f in board.rows:
        rec: dict[str, Any] = {
            "model": f.model,
            "revision": f.revision,
            "step": f.step,
            "steering": f.steering,
            "label": f.label,
        }
        nan: list[str] = []
        for col in board.columns:
            s = f.scores.get(col)
            rec[col] = None if s is None else s.value
            if s is not None and math.isnan(s.value):
                nan.append(col)
            rec[f"{col}_stderr"] = None if s is None else s.stderr
            if col in board.p_trust:
                p = f.metric(col, P_TRUST)
                rec[f"{col}_{P_TRUST}"] = None if p is None else p.value
                if p is not None and math.isnan(p.value):
                    nan.append(f"{col}_{P_TRUST}")
                rec[f"{col}_{P_TRUST}_stderr"] = None if p is None else p.stderr
        rec["nan"] = nan
        rec["source"] = str(f.path)
        out.append(rec)
    return out


def nan_flags(board: Leaderboard) -> list[str]:
    """One line per row with NaN scores: which columns, which file."""
    return [
        f"NaN score in {', '.join(r['nan'])} for {r['label']} ({r['source']}): lm-eval could not compute it; "
        "check that run's log and samples"
        for r in records(board)
        if r["nan"]
    ]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def sort_records(recs: list[dict[str, Any]], board: Leaderboard, column: str | None) -> list[dict[str, Any]]:
    """Rows sorted best first by ``column`` (direction from ``higher_is_better``), empty cells last.

    Raises:
        TracingBenchError: unknown column.
    """
    if column is None:
        return recs
    plain = ("model", "revision", "step", "steering", "label", "source")
    p_trust = {f"{c}_{P_TRUST}": c for c in board.p_trust}
    if column not in board.columns and column not in plain and column not in p_trust:
        raise TracingBenchError(
            f"--sort {column!r} is not a column; valid: {', '.join([*plain, *board.columns, *p_trust])}"
        )
    if column in plain:
        return sorted(recs, key=lambda r: (r[column] is None, r[column] if r[column] is not None else 0))
    sign = -1.0 if column in p_trust or board.higher_is_better.get(column, True) else 1.0
    return sorted(recs, key=lambda r: (_missing(r[column]), sign * (0.0 if _missing(r[column]) else r[column])))


def _cell(value: float | None, stderr: float | None) -> str:
    if value is None:
        return "–"
    if math.isnan(value):
        return "NaN ⚠"
    return f"{value:.4f} ± {stderr:.4f}" if stderr is not None else f"{value:.4f}"


def _header(board: Leaderboard, col: str) -> str:
    return f"{col} {'↑' if board.higher_is_better.get(col, True) else '↓'}"


def _shown(board: Leaderboard) -> list[tuple[str, str]]:
    """(column, record key) in display order: each task, then its p_trust when reported."""
    out = []
    for c in board.columns:
        out.append((_header(board, c), c))
        if c in board.p_trust:
            out.append((f"{c} {P_TRUST} ↑", f"{c}_{P_TRUST}"))
    return out


@dataclass
class DisplayTable:
    """The leaderboard as people read it (Markdown, HTML, the report).

    Attributes:
        headers: model, revision, step, steering, then ``<task> ↑`` (and ``<task> p_trust ↑``).
        rows: display cells: ``value ± stderr``, ``NaN ⚠`` for a NaN score, ``–`` for a missing task.
        flags: one line per row with NaN scores (:func:`nan_flags`).
    """

    headers: list[str]
    rows: list[list[str]]
    flags: list[str]


def display_table(board: Leaderboard, *, sort: str | None = None) -> DisplayTable:
    """Headers, display cells and NaN flags of the leaderboard, sorted best first by ``sort``."""
    shown = _shown(board)
    body = [
        [str(r["model"]), r["revision"] or "", "" if r["step"] is None else str(r["step"]), r["steering"]]
        + [_cell(r[k], r[f"{k}_stderr"]) for _, k in shown]
        for r in sort_records(records(board), board, sort)
    ]
    return DisplayTable(["model", "revision", "step", "steering"] + [h for h, _ in shown], body, nan_flags(board))


def format_leaderboard(board: Leaderboard, fmt: Format = "md", *, sort: str | None = None) -> str:
    """The leaderboard as Markdown, CSV, an HTML table, or JSON.

    Args:
        board: from :func:`build_leaderboard`.
        fmt: ``md`` | ``csv`` | ``html`` | ``json``.
        sort: a column to sort by, best first.

    Returns:
        the text. Markdown and HTML show ``value ± stderr`` and the direction (↑/↓) per column,
        with a ``<task> p_trust`` column beside each task that reports it; CSV has ``<task>``,
        ``<task>_stderr``, ``<task>_p_trust``, ``<task>_p_trust_stderr`` columns; JSON holds rows
        plus column metadata.
    """
    if fmt not in FORMATS:
        raise TracingBenchError(f"--format {fmt!r} is not valid; choose one of {', '.join(FORMATS)}")
    recs = sort_records(records(board), board, sort)
    flags = nan_flags(board)
    if fmt == "json":
        meta = {
            c: {
                "higher_is_better": board.higher_is_better.get(c, True),
                "metric": next((f.scores[c].metric for f in board.rows if c in f.scores), None),
                P_TRUST: c in board.p_trust,
            }
            for c in board.columns
        }
        # NaN scores are null here and named in each row's "nan" list (valid JSON, never a bare NaN)
        return dumps_json(
            {"columns": meta, "rows": recs, "dropped": [str(p) for p in board.dropped], "flags": flags}, indent=2
        )
    if fmt == "csv":
        buf = io.StringIO()
        names = (
            ["model", "revision", "step", "steering"]
            + [
                x
                for c in board.columns
                for x in (
                    (c, f"{c}_stderr", f"{c}_{P_TRUST}", f"{c}_{P_TRUST}_stderr")
                    if c in board.p_trust
                    else (c, f"{c}_stderr")
                )
            ]
            + ["source"]
        )
        w = csv.DictWriter(buf, names, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(
            {k: ("" if v is None else "NaN" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in recs
        )
        return buf.getvalue()
    table = display_table(board, sort=sort)
    if fmt == "md":
        lines = ["| " + " | ".join(table.headers) + " |", "|" + "|".join("---" for _ in table.headers) + "|"]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table.rows]
        lines += ["", *(f"⚠ {flag}" for flag in flags)] if flags else []
        return "\n".join(lines) + "\n"
    rows_html = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>\n" for row in table.rows)
    notes = "".join(f'<p class="note">⚠ {html.escape(flag)}</p>\n' for flag in flags)
    return (
        '<table class="leaderboard">\n<thead><tr>'
        + "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
        + "</tr></thead>\n<tbody>\n"
        + rows_html
        + "</tbody>\n</table>\n"
        + notes
    )
