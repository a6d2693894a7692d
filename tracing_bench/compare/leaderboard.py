"""Leaderboard of lm-eval results: one row per (model, revision, steering setting).

Reads lm-eval's own ``results_<date>.json`` files (written by ``tracing-bench eval``, plain
``lm_eval --output_path`` or a steering sweep); folders are searched recursively. Each row
holds, per task and per group (``trust`` = the mean of the five dimensions), the headline
metric with its stderr, the direction from the file's ``higher_is_better``, the step parsed
from the revision, and the file it came from.

* model / revision: ``config.model_args`` ``pretrained=...,revision=...`` (a dict in lm-eval
  0.4.9+, a string before), else ``config.model_revision`` / ``model_name``;
* steering setting: what ``trust-steered`` records in ``config.steering`` (file, sha256,
  alpha, positions), else the ``steer_path`` / ``alpha`` / ``positions`` model args (lm-eval's
  stock ``steered`` model), else ``none``;
* headline metric of a task: ``score`` when the task reports it (every trust task does), else
  ``acc``, ``acc_norm``, ``exact_match``, else the first metric named in ``higher_is_better``;
* beside it, ``p_trust`` (the mean probability of the trustworthy answer, which moves when the
  headline metric does not) for every task and group that reports it: CSV/JSON columns
  ``<task>_p_trust`` and ``<task>_p_trust_stderr``, a Markdown/HTML column ``<task> p_trust``.

Two files for one row are an error naming both, unless ``latest=True`` keeps the newer (by the
file's ``date`` field, then the timestamp in its name).

>>> board = build_leaderboard(["results/"], latest=True)
>>> print(format_leaderboard(board, "md", sort="trust"))
"""

from __future__ import annotations

import csv
import datetime as _dt
import html
import io
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tracing_bench.checkpoints import parse_step
from tracing_bench.errors import TracingBenchError
from tracing_bench.files import looks_like_path

Format = Literal["md", "csv", "html", "json"]
FORMATS: tuple[str, ...] = ("md", "csv", "html", "json")

#: Preferred headline metrics, in order.
HEADLINE_METRICS: tuple[str, ...] = ("score", "acc", "acc_norm", "exact_match", "mc2", "f1")
#: Shown beside the headline metric of every task (and group) that reports it.
P_TRUST = "p_trust"
_NAME_TS_RE = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?)")


@dataclass(frozen=True)
class TaskScore:
    """The headline metric of one task (or group) in one results file.

    Attributes:
        task: task or group name.
        metric: metric name without the filter (``score``, ``acc``).
        value: the score (NaN when the file holds NaN or no number).
        stderr: its standard error; ``None`` when the file has none (lm-eval writes ``"N/A"``).
        higher_is_better: direction from the file's ``higher_is_better`` (True when absent).
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


@dataclass
class ResultsFile:
    """One lm-eval results file, reduced to what leaderboard and gate need.

    Attributes:
        path: the file.
        model: ``pretrained`` model id or folder.
        revision: the revision (``""`` when the file names none).
        step: integer step parsed from the revision (or from the model folder name).
        steering: the steering setting (``none`` when unsteered).
        date: when the run started (unix seconds; from ``date`` or the file name).
        scores: task or group -> :class:`TaskScore`.
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
        local = looks_like_path(self.model)
        name = Path(self.model).name if local else self.model
        text = f"{name}@{self.revision}" if self.revision else name
        return text if self.steering == "none" else f"{text} [{self.steering}]"

    def metric(self, task: str, metric: str) -> TaskScore | None:
        """Another metric of a task or group than its headline (e.g. ``p_trust``); None if not reported.

        Same reading as the headline: filter ``none`` (else the first), ``"N/A"`` stderr = None,
        direction from the file's ``higher_is_better``, version and size from the headline's.
        """
        head = self.scores.get(task)
        results = self.data.get("results") if isinstance(self.data.get("results"), dict) else {}
        groups = self.data.get("groups") if isinstance(self.data.get("groups"), dict) else {}
        cells = {**(results.get(task) or {}), **(groups.get(task) or {})}
        filters = [k.split(",", 1)[1] for k in cells if "," in k and k.split(",", 1)[0] == metric]
        if head is None or not filters:
            return None
        filt = "none" if "none" in filters else filters[0]
        value = _number(cells.get(f"{metric},{filt}"))
        stderr = _number(cells.get(f"{metric}_stderr,{filt}"))
        hib_all = self.data.get("higher_is_better") if isinstance(self.data.get("higher_is_better"), dict) else {}
        hib = (hib_all.get(task) or {}).get(metric, True)
        return TaskScore(task=task, metric=metric, value=math.nan if value is None else value,
                         stderr=None if stderr is None or math.isnan(stderr) else stderr,
                         higher_is_better=bool(hib) if hib is not None else True, version=head.version, n=head.n,
                         is_group=head.is_group)

    def samples_file(self, task: str) -> Path | None:
        """lm-eval's per-sample log ``samples_<task>_<date>.jsonl`` next to this file, if any."""
        stamp = self.path.stem[len("results_"):] if self.path.stem.startswith("results_") else ""
        exact = self.path.parent / f"samples_{task}_{stamp}.jsonl"
        if stamp and exact.is_file():
            return exact
        found = sorted(self.path.parent.glob(f"samples_{task}_*.jsonl"))
        return found[-1] if len(found) == 1 else None


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
def find_results(paths: Iterable[str | os.PathLike]) -> list[Path]:
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
    unique: dict[Path, None] = {}
    for f in found:
        unique.setdefault(f.resolve(), None)
    return list(unique)


def _model_args(config: Mapping[str, Any]) -> dict[str, Any]:
    args = config.get("model_args") or {}
    if isinstance(args, Mapping):
        return dict(args)
    out: dict[str, Any] = {}
    for part in str(args).split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _steering(config: Mapping[str, Any], args: Mapping[str, Any]) -> str:
    info = config.get("steering")
    if isinstance(info, Mapping) and (info.get("steer_path") or info.get("file_sha256")):
        name = Path(str(info.get("steer_path") or "vector")).name
        sha = str(info.get("file_sha256") or "")[:8]
        alpha = info.get("alpha")
        parts = [name + (f"#{sha}" if sha else ""), f"alpha={'file' if alpha is None else alpha}"]
        if info.get("positions"):
            parts.append(f"positions={info['positions']}")
        return " ".join(parts)
    if args.get("steer_path"):
        parts = [Path(str(args["steer_path"])).name, f"alpha={args.get('alpha', 'file')}"]
        if args.get("positions"):
            parts.append(f"positions={args['positions']}")
        return " ".join(parts)
    return "none"


def _number(value: Any) -> float | None:
    """A float from a results cell; None for ``"N/A"``, None, or anything not a number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _date(data: Mapping[str, Any], path: Path) -> float:
    value = _number(data.get("date"))
    if value is not None and not math.isnan(value):
        return value
    m = _NAME_TS_RE.search(path.name)
    if m:
        stamp = m.group(1)
        date, time = stamp.split("T")
        try:
            parsed = _dt.datetime.fromisoformat(f"{date}T{time.replace('-', ':')}")
            return parsed.replace(tzinfo=parsed.tzinfo or _dt.timezone.utc).timestamp()
        except ValueError:
            pass
    return path.stat().st_mtime


def _headline(task: str, cells: Mapping[str, Any], hib: Mapping[str, Any]) -> tuple[str, str] | None:
    """(metric, filter) of the task's headline metric, or None when it reports no metric."""
    metrics: dict[str, list[str]] = {}
    for key in cells:
        if "," not in key or "_stderr," in key:
            continue
        metric, filt = key.split(",", 1)
        metrics.setdefault(metric, []).append(filt)
    if not metrics:
        return None
    order = [m for m in HEADLINE_METRICS if m in metrics] + [m for m in hib if m in metrics] + list(metrics)
    metric = order[0]
    filters = metrics[metric]
    return metric, ("none" if "none" in filters else filters[0])


def load_results(path: str | os.PathLike) -> ResultsFile:
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
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    args = _model_args(config)
    model = str(args.get("pretrained") or data.get("model_name") or config.get("model") or "unknown")
    revision = str(args.get("revision") or config.get("model_revision") or "")
    step = parse_step(revision) if revision else None
    if step is None:
        step = parse_step(Path(model).name) if model else None
    groups = data.get("groups") if isinstance(data.get("groups"), dict) else {}
    group_names = set(groups) | set(data.get("group_subtasks") or {})
    hib_all = data.get("higher_is_better") if isinstance(data.get("higher_is_better"), dict) else {}
    versions = data.get("versions") if isinstance(data.get("versions"), dict) else {}
    n_samples = data.get("n-samples") if isinstance(data.get("n-samples"), dict) else {}
    scores: dict[str, TaskScore] = {}
    for task, cells in data["results"].items():
        if not isinstance(cells, dict):
            continue
        cells = {**cells, **(groups.get(task) or {})}
        head = _headline(task, cells, hib_all.get(task) or {})
        if head is None:
            continue
        metric, filt = head
        value = _number(cells.get(f"{metric},{filt}"))
        stderr = _number(cells.get(f"{metric}_stderr,{filt}"))
        if stderr is not None and math.isnan(stderr):
            stderr = None
        hib = (hib_all.get(task) or {}).get(metric, True)
        ns = n_samples.get(task) or {}
        n = ns.get("effective") if isinstance(ns, dict) else None
        if n is None and task in group_names:
            n = cells.get("sample_len")
        version = versions.get(task)
        scores[task] = TaskScore(
            task=task, metric=metric, value=math.nan if value is None else value, stderr=stderr,
            higher_is_better=bool(hib) if hib is not None else True,
            version=None if version is None else str(version), n=int(n) if isinstance(n, (int, float)) else None,
            is_group=task in group_names,
        )
    return ResultsFile(path=path, model=model, revision=revision, step=step, steering=_steering(config, args),
                       date=_date(data, path), scores=scores, data=data)


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
        rec: dict[str, Any] = {"model": f.model, "revision": f.revision, "step": f.step, "steering": f.steering,
                               "label": f.label}
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
    return [f"NaN score in {', '.join(r['nan'])} for {r['label']} ({r['source']}): lm-eval could not compute it; "
            "check that run's log and samples" for r in records(board) if r["nan"]]


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
    fixed = ["model", "revision", "step", "steering"]
    flags = nan_flags(board)
    if fmt == "json":
        from tracing_bench.files import dumps_json

        meta = {c: {"higher_is_better": board.higher_is_better.get(c, True),
                    "metric": next((f.scores[c].metric for f in board.rows if c in f.scores), None),
                    P_TRUST: c in board.p_trust}
                for c in board.columns}
        # NaN scores are null here and named in each row's "nan" list (valid JSON, never a bare NaN)
        return dumps_json({"columns": meta, "rows": recs, "dropped": [str(p) for p in board.dropped],
                           "flags": flags}, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        names = fixed + [x for c in board.columns for x in (
            (c, f"{c}_stderr", f"{c}_{P_TRUST}", f"{c}_{P_TRUST}_stderr") if c in board.p_trust else (c, f"{c}_stderr")
        )] + ["source"]
        w = csv.DictWriter(buf, names, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows({k: ("" if v is None else "NaN" if isinstance(v, float) and math.isnan(v) else v)
                     for k, v in r.items()} for r in recs)
        return buf.getvalue()
    shown = _shown(board)
    heads = fixed + [h for h, _ in shown]
    body = [[str(r["model"]), r["revision"] or "", "" if r["step"] is None else str(r["step"]), r["steering"]]
            + [_cell(r[k], r[f"{k}_stderr"]) for _, k in shown] for r in recs]
    if fmt == "md":
        lines = ["| " + " | ".join(heads) + " |", "|" + "|".join("---" for _ in heads) + "|"]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body]
        lines += ["", *(f"⚠ {flag}" for flag in flags)] if flags else []
        return "\n".join(lines) + "\n"
    rows_html = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>\n" for row in body)
    notes = "".join(f'<p class="note">⚠ {html.escape(flag)}</p>\n' for flag in flags)
    return ('<table class="leaderboard">\n<thead><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in heads)
            + "</tr></thead>\n<tbody>\n" + rows_html + "</tbody>\n</table>\n" + notes)


def write_text(text: str, out: str | os.PathLike) -> Path:
    """Write atomically (tmp file in the same folder, then os.replace); no temporary file is left on failure."""
    from tracing_bench.files import atomic_write_text

    return atomic_write_text(out, text)
