"""One self-contained, offline HTML page of what trace, steer sweep/correlate and lm-eval wrote.

The page opens with **Findings**: the tested claims, each with its interval or p-value --
what was learned and where I(T;X) turns (the traces' ``findings.json``,
:mod:`tracing_bench.compare.findings`), what the best steering setting changed against the
unsteered model, and how the first and last checkpoint of the leaderboard compare (a change is
within noise unless its interval excludes 0). The figures follow.

:func:`build_report` searches the given folders (recursively) for

* ``probes.csv`` / ``mi.csv`` / ``trace.json`` / ``findings.json`` (``tracing-bench trace``):
  probe curves with Wilson bands and heatmaps, MI curves with their noise band and the turns
  that findings.json reports beyond noise;
* ``sweep.csv`` / ``best.json`` (``tracing-bench steer sweep``): score and perplexity against
  alpha (the fluency guard: inadmissible settings hollow), the chosen setting;
* ``correlate.csv`` / ``correlate.json`` (``tracing-bench steer correlate``): the scatter;
* ``results_*.json`` (lm-eval, ``tracing-bench eval``; with ``tracing_bench_*.json`` sidecars):
  the leaderboard (newest file per row) and a radar chart of the five dimensions;

and writes one HTML file: figures are PNGs embedded as base64 ``data:`` URIs, styles inline, no
script, and a Content-Security-Policy that forbids loading anything else. Every section ends
with its provenance (model, revision, resolved commit, dataset md5, package version,
settings) read from the files it shows, folded in a ``<details>`` element, identical values
grouped: one row per distinct setting. Sections without data are left out. Figures come from
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
from tracing_bench.files import atomic_write_text

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.4em}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}.src{font-size:.8em;color:#666;font-family:monospace}
details{margin:.5em 0}.scroll{overflow-x:auto}summary{cursor:pointer;color:#345}.note{color:#8a5a00}
#findings{background:#f7f9fc;border:1px solid #d8e0ea;border-radius:6px;padding:.2em 1em .6em}
#findings h2{margin-top:.4em}#findings h3{margin:.6em 0 .2em;font-size:1em}#findings ul{margin:.2em 0;padding-left:1.3em}
#findings li{margin:.1em 0;font-size:.92em}.yes{color:#1a6b2f;font-weight:600}.no{color:#555}.down{color:#a33;font-weight:600}
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
    return f"<details><summary>Provenance: {_esc(title)}</summary>\n{body}</details>\n"


def _distinct(rows: list[dict[str, str]], cols: Sequence[str]) -> list[list[str]]:
    seen: dict[tuple[str, ...], None] = {}
    for r in rows:
        seen.setdefault(tuple(r.get(c, "") for c in cols), None)
    return [list(k) for k in seen]


# ------------------------------------------------------------------------------------ findings
_VERDICT_CLASS = {"learned": "yes", "declined": "down", "within noise": "no"}


def _li(html_text: str) -> str:
    return f"<li>{html_text}</li>\n"


def _trace_findings(folder: Path, findings: Mapping[str, Any], several: bool) -> str:
    from tracing_bench.compare.findings import dimension_title

    where = f" <span class='src'>({_esc(folder)})</span>" if several else ""
    learned = findings.get("learned") or {}
    out = []
    claims = learned.get("dimensions") or {}
    if claims:
        out.append(f"<h3>What the probes learned, {_esc(learned.get('first'))} → {_esc(learned.get('last'))}{where}</h3>"
                   "\n<ul>\n")
        for d, c in claims.items():
            cls = _VERDICT_CLASS.get(str(c.get("verdict")), "no")
            fa, la = c.get("first_acc_ci") or [None, None], c.get("last_acc_ci") or [None, None]
            out.append(_li(
                f"<b>{_esc(dimension_title(d))}</b>: <span class='{cls}'>{_esc(c.get('claim'))}</span>"
                f" at block {_esc(c.get('layer'))}; test accuracy {c['first_acc']:.3f} [{fa[0]:.3f}, {fa[1]:.3f}]"
                f" → {c['last_acc']:.3f} [{la[0]:.3f}, {la[1]:.3f}]"))
        out.append("</ul>\n")
        out.append(f"<p class='src'>p: exact McNemar on the same {next(iter(claims.values())).get('n_test')} test "
                   f"statements, {_esc(learned.get('family'))}; block chosen on probe-val; change: paired bootstrap "
                   "95% interval.</p>\n")
    elif learned.get("note"):
        out.append(f"<p>Probes: {_esc(learned['note'])}.</p>\n")
    turns = findings.get("mi_turns") or {}
    if turns.get("dimensions"):
        noise = turns.get("noise") or {}
        how = (f"rise and fall beyond {float(turns.get('z', 2)):g} sd of nHSIC over {noise.get('k')} half-samples of "
               f"{noise.get('m')} statements") if noise else "no noise estimate: nothing tested"
        out.append(f"<h3>Where I(T;X) turns ({_esc(how)}){where}</h3>\n<ul>\n")
        series = turns.get("series") or []
        for d, v in turns["dimensions"].items():
            hits = [e for e in series if e["dimension"] == d and e.get("turn") is not None]
            text = "; ".join(f"block {e['layer']}: {e['claim']}" for e in hits) if hits else v.get("claim", "")
            out.append(_li(f"<b>{_esc(dimension_title(d))}</b>: {_esc(text)}"))
        out.append("</ul>\n")
    return "".join(out)


def _pair_text(e: Mapping[str, Any] | None) -> str:
    if not e:
        return ""
    cls = "no" if e.get("within_noise") else ("yes" if e["change"] > 0 else "down")
    return (f"{_esc(e['metric'])} {e['a']:.3f} → {e['b']:.3f}, "
            f"<span class='{cls}'>{_esc(e['claim'])}</span>")


def _findings_section(found: Mapping[str, list[Path]]) -> str:
    """The page's opening: tested claims from findings.json, the sweeps and the leaderboard."""
    from tracing_bench.compare.findings import checkpoint_changes, read_findings, steering_changes
    from tracing_bench.compare.leaderboard import build_leaderboard

    parts: list[str] = []
    traced = [(f, read_findings(f)) for f in found["trace"]]
    for folder, findings in traced:
        if findings:
            parts.append(_trace_findings(folder, findings, len(traced) > 1))
    for folder in found["sweep"]:
        rows = _read_csv(folder / "sweep.csv")
        best = _read_json(folder / "best.json") if (folder / "best.json").is_file() else None
        changes = steering_changes(rows, best if isinstance(best, Mapping) else None)
        if not changes:
            continue
        target = rows[0].get("model", "") if rows else ""
        vectors = sorted({Path(str(e["vector"])).name for e in changes if e.get("vector")})
        parts.append(f"<h3>What steering did ({_esc(', '.join(vectors) or 'no admissible vector')} on "
                     f"{_esc(target)}: best admissible setting per task against the unsteered model)</h3>\n<ul>\n")
        for e in changes:
            if not e.get("admissible"):
                parts.append(_li(f"<b>{_esc(e['task'])}</b>: {_esc(e['claim'])}"))
                continue
            text = f"<b>{_esc(e['task'])}</b>: alpha {e['alpha']:g} at block {_esc(e['layer'])}: {_pair_text(e)}"
            if e.get("p_trust"):
                text += f"; {_pair_text(e['p_trust'])}"
            parts.append(_li(text))
        parts.append("</ul>\n")
    if found["results"]:
        changes = checkpoint_changes(build_leaderboard(found["results"], latest=True))
        if changes and changes["tasks"]:
            parts.append(f"<h3>Checkpoints on the trust tasks: {_esc(changes['first'])} → {_esc(changes['last'])}"
                         "</h3>\n<ul>\n")
            for e in changes["tasks"]:
                name = f"{e['task']} (group)" if e.get("is_group") else e["task"]
                text = f"<b>{_esc(name)}</b>: {_pair_text(e)}"
                if e.get("p_trust"):
                    text += f"; {_pair_text(e['p_trust'])}"
                parts.append(_li(text))
            parts.append("</ul>\n")
    if not parts:
        return ""
    return ("<section id='findings'>\n<h2>Findings</h2>\n"
            "<p class='src'>Every figure with its 95% interval or p-value; a change is within noise unless its "
            "interval excludes 0.</p>\n" + "".join(parts) + "</section>\n")


# ------------------------------------------------------------------------------------ sections
def _trace_section(folder: Path, figdir: Path) -> str:
    from tracing_bench.compare.findings import read_findings
    from tracing_bench.report.plots import trace_figures

    probes_csv, mi_csv = folder / "probes.csv", folder / "mi.csv"
    probes = _read_csv(probes_csv) if probes_csv.is_file() else []
    mi = _read_csv(mi_csv) if mi_csv.is_file() else []
    if not probes and not mi:
        return ""
    findings = read_findings(folder)
    parts = [f"<h2>Trace</h2>\n<p class='src'>{_esc(folder)}</p>\n"]
    paths = trace_figures(probes_csv if probes else None, mi_csv if mi else None, figdir, findings=findings or {})
    captions = {
        "probes_": "probe test accuracy per layer (one line per checkpoint) and across checkpoints (one line per "
                   "layer); shaded: 95% Wilson interval",
        "mi_": "I(T;X) and I(T;Y) across checkpoints per layer, shaded: +-1 sd over the half-sample noise estimate; "
               "star = turn of I(T;X) beyond noise (findings.json)",
    }
    for p in paths:
        dim = p.stem.split("_", 1)[1].replace("_heatmap", "")
        if p.stem.endswith("_heatmap"):
            cap = f"{dim}: probe test accuracy, layer x checkpoint"
        else:
            cap = f"{dim}: " + next(c for k, c in captions.items() if p.stem.startswith(k))
        parts.append(_img(p, cap))
    if mi:
        series = (findings or {}).get("mi_turns", {}).get("series") if findings else None
        parts.append("<h3>Turn of I(T;X) (end of the fitting phase), tested against the estimator's noise</h3>\n")
        if series:
            parts.append(_table(["dimension", "layer", "finding"],
                                [[e["dimension"], e["layer"], e.get("claim", "")] for e in series]))
        else:
            parts.append("<p class='note'>No findings.json next to mi.csv (a trace by an older tracing-bench): "
                         "no turn is claimed; trace again to test the turns against the estimator's noise.</p>\n")
    elif probes:
        parts.append("<p class='note'>No mutual-information rows (trace run without --mi): MI figures left out.</p>\n")
    trace_json = _read_json(folder / "trace.json") if (folder / "trace.json").is_file() else None
    parts.append(_provenance(f"trace in {folder}", _trace_provenance(probes, mi, trace_json, findings)))
    return "".join(parts)


def _join(values: Sequence[Any]) -> str:
    """Every value, comma-separated (provenance stays complete), with the count when long."""
    vals = [str(v) for v in values]
    return ", ".join(vals) + (f" ({len(vals)})" if len(vals) > 3 else "")


def _grouped(rows: Sequence[Mapping[str, Any]], keys: Sequence[str], over: str) -> list[list[str]]:
    """One row per distinct combination of ``keys``; ``over`` lists the items that share it."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for r in rows:
        groups.setdefault(tuple("" if r.get(k) is None else str(r.get(k)) for k in keys), []).append(
            "" if r.get(over) is None else str(r.get(over)))
    return [[*k, _join(list(dict.fromkeys(v)))] for k, v in groups.items()]


def _trace_provenance(probes: list[dict[str, str]], mi: list[dict[str, str]], trace_json: Any,
                      findings: Mapping[str, Any] | None) -> str:
    """Compact provenance of a trace: checkpoints, data, settings; identical values grouped."""
    out = []
    rows = probes or mi
    ckpts = trace_json.get("checkpoints") if isinstance(trace_json, Mapping) else None
    if isinstance(ckpts, list) and ckpts:
        by = [{"name": f"{c.get('model')}@{c['revision']}" if c.get("revision") else str(c.get("model")),
               "commit": c.get("resolved_commit") or "none (local folder or unresolved)"}
              for c in ckpts if isinstance(c, Mapping)]
        out.append(_table(["resolved commit", "checkpoints (model@revision or folder)"],
                          _grouped(by, ["commit"], "name")))
    else:
        out.append(_table(["model", "checkpoints"], _grouped(rows, ["model"], "revision")))
    tagged = [{**r, "_table": "probes.csv"} for r in probes] + [{**r, "_table": "mi.csv"} for r in mi]
    out.append(_table(["dimension", "dataset md5", "package version", "tables"],
                      _grouped(tagged, ["dimension", "dataset_md5", "package_version"], "_table")))
    datasets = trace_json.get("datasets") if isinstance(trace_json, Mapping) else None
    if isinstance(datasets, list) and datasets:
        entries = [d for d in datasets if isinstance(d, Mapping)]
        cols = list(dict.fromkeys(k for d in entries for k in d))
        out.append(_table([c.replace("_", " ") for c in cols], [[d.get(c, "") for c in cols] for d in entries]))
    settings = _grouped(probes, ["protocol", "pooling", "probe", "n_train", "n_test", "package_version"], "dimension")
    if settings:
        out.append(_table(["protocol", "pooling", "probe", "n_train", "n_test", "package version", "dimensions"],
                          settings))
    if mi:
        out.append(_table(["sigma", "m", "noise half-samples", "noise m", "dimensions"],
                          _grouped(mi, ["sigma", "m", "noise_k", "noise_m"], "dimension")))
    if isinstance(trace_json, Mapping):
        flat = {k: v for k, v in trace_json.items() if k not in ("checkpoints", "datasets", "figures")}
        if isinstance(trace_json.get("figures"), list):
            flat["figures"] = f"{len(trace_json['figures'])} PNG files"
        out.append("<p>trace.json (checkpoints and datasets above):</p>\n" + _kv(flat))
    if findings:
        out.append("<p>findings.json settings:</p>\n" + _kv(findings.get("settings", {})))
    return "".join(out)


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
        sections: list[str] = [_findings_section(found)]
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
    return atomic_write_text(out, text)


__all__ = ["build_report", "discover", "render"]
