"""One self-contained, offline HTML page of what trace, steer sweep/correlate and lm-eval wrote.

:func:`build_report` searches the given folders (recursively) for

* ``probes.csv`` / ``mi.csv`` / ``trace.json`` (``tracing-bench trace``): probe curves and
  heatmaps, MI curves with the turn of I(T;X) marked and a table of the turns;
* ``sweep.csv`` / ``best.json`` (``tracing-bench steer sweep``): score and perplexity against
  alpha (the fluency guard: inadmissible settings hollow), the chosen setting;
* ``correlate.csv`` / ``correlate.json`` (``tracing-bench steer correlate``): the scatter;
* ``results_*.json`` (lm-eval, ``tracing-bench eval``; with ``tracing_bench_*.json`` sidecars):
  the leaderboard (newest file per row) and a radar chart of the five dimensions;

and writes one HTML file: figures are PNGs embedded as base64 ``data:`` URIs, styles inline, no
script, and a Content-Security-Policy that forbids loading anything else. Every section ends
with a provenance table (model, revision, resolved commit, dataset md5, package version,
settings) read from the files it shows. Sections without data are left out. Figures come from
:mod:`tracing_bench.report.plots` and :mod:`tracing_bench.report.steer_plots`; nothing is
computed here beyond reshaping for display.

>>> build_report(["runs/p70", "results"], "report.html")
PosixPath('report.html')
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import html
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tracing_bench import __version__
from tracing_bench.errors import TracingBenchError

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.4em}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}.src{font-size:.8em;color:#666;font-family:monospace}
details{margin:.5em 0}.scroll{overflow-x:auto}summary{cursor:pointer;color:#345}.note{color:#8a5a00}
"""


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_esc(caption)}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>\n")


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>\n" for row in rows)
    return (f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody>'
            "</table></div>\n")


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, value) pairs of nested JSON; long lists shortened."""
    if isinstance(obj, Mapping):
        out: list[tuple[str, str]] = []
        for k, v in obj.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(obj, list) and obj and all(isinstance(x, Mapping) for x in obj):
        out = []
        for i, v in enumerate(obj):
            out += _flatten(v, f"{prefix}[{i}]")
        return out
    text = json.dumps(obj, default=str) if isinstance(obj, (list, tuple)) else ("" if obj is None else str(obj))
    return [(prefix, text if len(text) <= 400 else text[:400] + " …")]


def _kv(obj: Any) -> str:
    return _table(["key", "value"], _flatten(obj), "kv")


def _provenance(title: str, body: str) -> str:
    return f"<details open><summary>Provenance: {_esc(title)}</summary>\n{body}</details>\n"


def _distinct(rows: list[dict[str, str]], cols: Sequence[str]) -> list[list[str]]:
    seen: dict[tuple[str, ...], None] = {}
    for r in rows:
        seen.setdefault(tuple(r.get(c, "") for c in cols), None)
    return [list(k) for k in seen]


# ------------------------------------------------------------------------------------ sections
def _trace_section(folder: Path, figdir: Path) -> str:
    from tracing_bench.compare.phases import mi_turns
    from tracing_bench.report.plots import trace_figures

    probes_csv, mi_csv = folder / "probes.csv", folder / "mi.csv"
    probes = _read_csv(probes_csv) if probes_csv.is_file() else []
    mi = _read_csv(mi_csv) if mi_csv.is_file() else []
    if not probes and not mi:
        return ""
    parts = [f"<h2>Trace</h2>\n<p class='src'>{_esc(folder)}</p>\n"]
    paths = trace_figures(probes_csv if probes else None, mi_csv if mi else None, figdir)
    captions = {
        "probes_": "probe test accuracy per layer (one line per checkpoint) and across checkpoints (one line per layer)",
        "mi_": "I(T;X) and I(T;Y) across checkpoints per layer; star = checkpoint where I(T;X) turns from rising to falling",
    }
    for p in paths:
        dim = p.stem.split("_", 1)[1].replace("_heatmap", "")
        if p.stem.endswith("_heatmap"):
            cap = f"{dim}: probe test accuracy, layer x checkpoint"
        else:
            cap = f"{dim}: " + next(c for k, c in captions.items() if p.stem.startswith(k))
        parts.append(_img(p, cap))
    if mi:
        turns = mi_turns(mi)
        parts.append("<h3>Turn of I(T;X) (end of the fitting phase)</h3>\n")
        parts.append(_table(["dimension", "layer", "turn (step or revision)"],
                            [[d, lay, "none (no rise then fall)" if t is None else t]
                             for (d, lay), t in sorted(turns.items(), key=lambda kv: (kv[0][0], kv[0][1]))]))
    elif probes:
        parts.append("<p class='note'>No mutual-information rows (trace run without --mi): MI figures left out.</p>\n")
    prov = _table(["table", "model", "revision", "step", "dimension", "dataset md5", "package version"],
                  [["probes.csv", *r] for r in _distinct(probes, ["model", "revision", "step", "dimension",
                                                                   "dataset_md5", "package_version"])]
                  + [["mi.csv", *r] for r in _distinct(mi, ["model", "revision", "step", "dimension",
                                                            "dataset_md5", "package_version"])])
    settings = _distinct(probes, ["protocol", "pooling", "probe", "n_train"])
    if settings:
        prov += _table(["protocol", "pooling", "probe", "n_train"], settings)
    trace_json = _read_json(folder / "trace.json") if (folder / "trace.json").is_file() else None
    if isinstance(trace_json, Mapping):
        prov += "<p>trace.json:</p>\n" + _kv(trace_json)
    parts.append(_provenance(f"trace in {folder}", prov))
    return "".join(parts)


def _sweep_section(folder: Path, figdir: Path) -> str:
    from tracing_bench.report.steer_plots import plot_sweep

    rows = _read_csv(folder / "sweep.csv")
    if not rows:
        return ""
    parts = [f"<h2>Steering sweep</h2>\n<p class='src'>{_esc(folder)}</p>\n"]
    scores_png, ppl_png = plot_sweep(folder / "sweep.csv", figdir)
    parts.append(_img(scores_png, "score against alpha per task and layer; dashed = unsteered; "
                                  "hollow = inadmissible (perplexity over the fluency limit)"))
    best = _read_json(folder / "best.json") if (folder / "best.json").is_file() else None
    guard = ""
    if isinstance(best, Mapping) and isinstance(best.get("settings"), Mapping):
        s = best["settings"]
        if s.get("max_ppl_increase") is not None:
            guard = f" Fluency guard: a setting is admissible while perplexity rises at most {float(s['max_ppl_increase']):.0%}"
            if s.get("baseline_ppl") not in (None, ""):
                guard += f" over the unsteered {float(s['baseline_ppl']):.3g}"
            guard += "."
    parts.append(_img(ppl_png, "held-out perplexity against alpha per layer (log scale); dashed = unsteered." + guard))
    prov = _table(["model", "revision", "vector", "vector sha256"],
                  _distinct(rows, ["model", "revision", "vector", "vector_sha256"]))
    if isinstance(best, Mapping):
        prov += "<p>best.json:</p>\n" + _kv(best)
    parts.append(_provenance(f"sweep in {folder}", prov))
    return "".join(parts)


def _correlate_section(folder: Path, figdir: Path) -> str:
    from tracing_bench.report.steer_plots import plot_correlate

    rows = _read_csv(folder / "correlate.csv")
    if not rows:
        return ""
    summary = _read_json(folder / "correlate.json") if (folder / "correlate.json").is_file() else None
    r = ci = None
    if isinstance(summary, Mapping):
        r = summary.get("pearson_r")
        ci = summary.get("ci95")
    png = plot_correlate(folder / "correlate.csv", figdir / "correlate.png",
                         r=float(r) if isinstance(r, (int, float)) else None,
                         ci=tuple(ci) if isinstance(ci, list) and len(ci) == 2 and None not in ci else None)
    parts = [f"<h2>Probe accuracy vs steering benefit</h2>\n<p class='src'>{_esc(folder)}</p>\n",
             _img(png, "steering benefit against probe accuracy, one point per checkpoint")]
    parts.append(_table(list(rows[0]), [list(r_.values()) for r_ in rows]))
    prov = _kv(summary) if isinstance(summary, Mapping) else "<p>no correlate.json</p>"
    parts.append(_provenance(f"correlate in {folder}", prov))
    return "".join(parts)


def _dataset_md5s(f: Any, sidecar: Any = None) -> list[str]:
    """Per task, the dataset md5: from the provenance file `tracing-bench eval` writes next to the
    results (``tracing_bench_<date>.json``), else from the first line of lm-eval's samples log
    (the trust tasks put it in every document), else lm-eval's own hash of the task's documents."""
    out = []
    hashes = f.data.get("task_hashes") if isinstance(f.data.get("task_hashes"), Mapping) else {}
    recorded = sidecar.get("datasets") if isinstance(sidecar, Mapping) else None
    recorded = recorded if isinstance(recorded, Mapping) else {}
    for task, score in f.scores.items():
        if score.is_group:
            continue
        entry = recorded.get(task)
        if isinstance(entry, Mapping) and entry.get("dataset_md5"):
            out.append(f"{task}: {entry['dataset_md5']}")
            continue
        md5 = ""
        samples = f.samples_file(task)
        if samples is not None:
            try:
                with open(samples, encoding="utf-8") as fh:
                    doc = json.loads(fh.readline() or "{}").get("doc") or {}
                md5 = str(doc.get("dataset_md5") or "") if isinstance(doc, Mapping) else ""
            except (OSError, json.JSONDecodeError, AttributeError):
                md5 = ""
        if md5:
            out.append(f"{task}: {md5}")
        elif hashes.get(task):
            out.append(f"{task}: lm-eval task hash {str(hashes[task])[:16]}")
    return out


def _leaderboard_section(results: list[Path], figdir: Path) -> str:
    from tracing_bench.compare.leaderboard import build_leaderboard, format_leaderboard, records
    from tracing_bench.report.plots import DIMENSION_ORDER, radar_chart

    board = build_leaderboard(results, latest=True)
    if not board.rows:
        return ""
    parts = ["<h2>Leaderboard</h2>\n", '<div class="scroll">', format_leaderboard(board, "html"), "</div>\n"]
    if board.dropped:
        parts.append("<p class='note'>Older results for the same row left out: "
                     + ", ".join(_esc(p) for p in board.dropped) + "</p>\n")
    labels = {d: f"{d} {'↑' if board.higher_is_better.get(f'trust_{d}', True) else '↓'}" for d in DIMENSION_ORDER}
    radar = radar_chart(records(board), figdir / "radar.png", labels=labels)
    if radar is not None:
        parts.append(_img(radar, "the five trust dimensions per model (headline metric of each trust_* task)"))
    prov_rows = []
    for f in board.rows:
        sidecar: Any = None
        stamp = f.path.stem[len("results_"):]
        side = f.path.parent / f"tracing_bench_{stamp}.json"
        if side.is_file():
            sidecar = _read_json(side)
        cfg = f.data.get("config") if isinstance(f.data.get("config"), Mapping) else {}
        md5s = _dataset_md5s(f, sidecar)
        prov_rows.append([
            f.path, f.model, f.revision, (sidecar or {}).get("commit") or cfg.get("model_sha") or "",
            f.steering, ", ".join(f"{t}={v}" for t, v in (f.data.get("versions") or {}).items()),
            ", ".join(md5s), f.data.get("lm_eval_version", ""), (sidecar or {}).get("package_version", ""),
            f"limit={cfg.get('limit')}, batch_size={cfg.get('batch_size')}, dtype={cfg.get('model_dtype')}",
            _dt.datetime.fromtimestamp(f.date, _dt.timezone.utc).isoformat(timespec="seconds"),
        ])
    parts.append(_provenance("leaderboard", _table(
        ["file", "model", "revision", "resolved commit", "steering", "task versions", "dataset md5",
         "lm-eval", "tracing-bench", "settings", "date"], prov_rows)))
    return "".join(parts)


# -------------------------------------------------------------------------------------- driver
def discover(dirs: Iterable[str | os.PathLike]) -> dict[str, list[Path]]:
    """Folders holding each kind of artefact: ``trace``, ``sweep``, ``correlate``; files: ``results``.

    Raises:
        TracingBenchError: a path does not exist.
    """
    found: dict[str, list[Path]] = {"trace": [], "sweep": [], "correlate": [], "results": []}
    for d in map(Path, dirs):
        if not d.exists():
            raise TracingBenchError(f"{d} does not exist; give folders written by trace, steer sweep/correlate or eval")
        files = [d] if d.is_file() else sorted(p for p in d.rglob("*") if p.is_file())
        for p in files:
            if p.name in ("probes.csv", "mi.csv") and p.parent not in found["trace"]:
                found["trace"].append(p.parent)
            elif p.name == "sweep.csv":
                found["sweep"].append(p.parent)
            elif p.name == "correlate.csv":
                found["correlate"].append(p.parent)
            elif p.name.startswith("results_") and p.suffix == ".json":
                found["results"].append(p)
    return found


def render(dirs: Iterable[str | os.PathLike], *, title: str = "tracing-bench report") -> str:
    """The HTML text of the report (see :func:`build_report`)."""
    dirs = list(dirs)
    found = discover(dirs)
    with tempfile.TemporaryDirectory(prefix="tb-report-") as tmp:
        sections: list[str] = []
        for i, folder in enumerate(found["trace"]):
            sections.append(_trace_section(folder, Path(tmp) / f"trace{i}"))
        for i, folder in enumerate(found["sweep"]):
            sections.append(_sweep_section(folder, Path(tmp) / f"sweep{i}"))
        for i, folder in enumerate(found["correlate"]):
            (Path(tmp) / f"corr{i}").mkdir()
            sections.append(_correlate_section(folder, Path(tmp) / f"corr{i}"))
        if found["results"]:
            (Path(tmp) / "board").mkdir()
            sections.append(_leaderboard_section(found["results"], Path(tmp) / "board"))
    sections = [s for s in sections if s]
    if not sections:
        raise TracingBenchError(
            f"nothing to report in {', '.join(map(str, dirs))}: no probes.csv, mi.csv, sweep.csv, correlate.csv "
            "or results_*.json found; give the --out folders of trace, steer sweep/correlate or eval"
        )
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n<style>{STYLE}</style>\n</head><body>\n"
        f"<h1>{_esc(title)}</h1>\n<p class='src'>tracing-bench {_esc(__version__)}, {now}; sources: "
        + ", ".join(_esc(d) for d in dirs) + "</p>\n" + "\n".join(sections) + "\n</body></html>\n"
    )


def build_report(dirs: Iterable[str | os.PathLike], out: str | os.PathLike, *,
                 title: str = "tracing-bench report") -> Path:
    """Write the self-contained HTML report of everything found in ``dirs``.

    Args:
        dirs: folders (searched recursively) or files written by trace, steer sweep/correlate, eval/lm-eval.
        out: the HTML file (written atomically).
        title: page title.

    Returns:
        the path written.

    Raises:
        TracingBenchError: a path is missing, nothing reportable was found, or a results file is unreadable.
    """
    text = render(dirs, title=title)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


__all__ = ["build_report", "discover", "render"]
