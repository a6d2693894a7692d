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
import datetime as _dt
import functools
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from tracing_bench import __version__
from tracing_bench.compare.findings import checkpoint_changes, dimension_title, read_findings, steering_changes
from tracing_bench.compare.leaderboard import Leaderboard, build_leaderboard, display_table, records
from tracing_bench.compare.signal import snr_table
from tracing_bench.errors import TracingBenchError
from tracing_bench.files import atomic_write_text, dumps_json
from tracing_bench.report.control_plots import control_figures
from tracing_bench.report.plots import DIMENSION_ORDER, radar_chart, read_rows, trace_figures
from tracing_bench.report.steer_plots import plot_correlate, plot_sweep
from tracing_bench.results import ResultsFile

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
TEMPLATES = Path(__file__).resolve().parent / "templates"
_VERDICT_CLASS = {"learned": "yes", "declined": "down", "within noise": "no"}


@dataclass
class Table:
    """A table of the page (rendered by ``templates/macros.html``; every cell escaped).

    Attributes:
        headers: column names (none: only ``intro`` is shown).
        rows: cells; ``None`` is an empty cell.
        cls: the table's CSS class.
        intro: a paragraph before the table.
    """

    headers: Sequence[str] = ()
    rows: Sequence[Sequence[Any]] = field(default_factory=list)
    cls: str = ""
    intro: str = ""


@functools.cache
def _environment() -> Any:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["text"] = lambda v: "" if v is None else str(v)
    env.filters["change_class"] = lambda e: "no" if e["within_noise"] else ("yes" if e["change"] > 0 else "down")
    return env


def _render(template: str, **context: Any) -> str:
    """A template of ``report/templates`` filled in (autoescaped)."""
    return str(_environment().get_template(template).render(**context))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def _figure(path: Path, caption: str) -> dict[str, str]:
    """A PNG as a ``data:`` URI with its caption."""
    return {"src": "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii"), "caption": caption}


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, value) pairs of nested JSON; long lists shortened."""
    if isinstance(obj, Mapping):
        return [kv for k, v in obj.items() for kv in _flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(obj, list) and obj and all(isinstance(x, Mapping) for x in obj):
        return [kv for i, v in enumerate(obj) for kv in _flatten(v, f"{prefix}[{i}]")]
    text = dumps_json(obj, default=str) if isinstance(obj, (list, tuple)) else ("" if obj is None else str(obj))
    return [(prefix, text if len(text) <= 400 else text[:400] + " …")]


def _kv(obj: Any, intro: str = "") -> Table:
    return Table(["key", "value"], _flatten(obj), "kv", intro)


def _join(values: Sequence[Any]) -> str:
    """Every value, comma-separated (provenance stays complete), with the count when long."""
    vals = [str(v) for v in values]
    return ", ".join(vals) + (f" ({len(vals)})" if len(vals) > 3 else "")


def _grouped(rows: Sequence[Mapping[str, Any]], keys: Sequence[str], over: str | None = None) -> list[list[str]]:
    """One row per distinct combination of ``keys``; ``over`` lists the items that share it."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for r in rows:
        key = tuple("" if r.get(k) is None else str(r.get(k)) for k in keys)
        groups.setdefault(key, []).append("" if over is None or r.get(over) is None else str(r.get(over)))
    return [[*k, _join(list(dict.fromkeys(v)))] if over else list(k) for k, v in groups.items()]


# ------------------------------------------------------------------------------------ findings
def _trace_claims(folder: Path, findings: Mapping[str, Any], several: bool) -> dict[str, Any]:
    """What the template shows of one trace's findings.json: the learned claims and the MI turns."""
    learned = findings.get("learned") or {}
    claims = []
    for d, c in (learned.get("dimensions") or {}).items():
        fa, la = c.get("first_acc_ci") or [None, None], c.get("last_acc_ci") or [None, None]
        claims.append(
            {
                "title": dimension_title(d),
                "cls": _VERDICT_CLASS.get(str(c.get("verdict")), "no"),
                "claim": c.get("claim"),
                "layer": c.get("layer"),
                "acc": f"{c['first_acc']:.3f} [{fa[0]:.3f}, {fa[1]:.3f}] → "
                f"{c['last_acc']:.3f} [{la[0]:.3f}, {la[1]:.3f}]",
            }
        )
    view: dict[str, Any] = {
        "where": str(folder) if several else "",
        "claims": claims,
        "note": learned.get("note"),
        "first": learned.get("first"),
        "last": learned.get("last"),
        "family": learned.get("family"),
        "turns": [],
    }
    if claims:
        view["n_test"] = next(iter(learned["dimensions"].values())).get("n_test")
    controls = findings.get("controls") or {}  # tracing_bench.compare.claims
    view["controls"] = [
        {"title": dimension_title(d), "cls": _VERDICT_CLASS.get(str(e.get("verdict")), "no"), "claim": e.get("claim")}
        for d, e in (controls.get("dimensions") or {}).items()
    ]
    view["controls_rules"] = controls.get("rules")
    turns = findings.get("mi_turns") or {}
    noise = turns.get("noise") or {}
    view["how"] = (
        (
            f"rise and fall beyond {float(turns.get('z', 2)):g} sd of nHSIC over {noise.get('k')} "
            f"half-samples of {noise.get('m')} statements"
        )
        if noise
        else "no noise estimate: nothing tested"
    )
    series = turns.get("series") or []
    for d, v in (turns.get("dimensions") or {}).items():
        hits = [e for e in series if e["dimension"] == d and e.get("turn") is not None]
        text = "; ".join(f"block {e['layer']}: {e['claim']}" for e in hits) if hits else v.get("claim", "")
        view["turns"].append({"title": dimension_title(d), "text": text})
    return view


def _findings_section(found: Mapping[str, list[Path]], board: Leaderboard | None) -> dict[str, Any] | None:
    """The page's opening: tested claims from findings.json, the sweeps and the leaderboard."""
    traced = [(f, read_findings(f)) for f in found["trace"]]
    traces = [_trace_claims(folder, findings, len(traced) > 1) for folder, findings in traced if findings]
    sweeps = []
    for folder in found["sweep"]:
        rows = read_rows(folder / "sweep.csv")
        best = _read_json(folder / "best.json")
        changes = steering_changes(rows, best if isinstance(best, Mapping) else None)
        if changes:
            sweeps.append(
                {
                    "changes": changes,
                    "target": rows[0].get("model", "") if rows else "",
                    "vectors": ", ".join(sorted({Path(str(e["vector"])).name for e in changes if e.get("vector")})),
                }
            )
    checkpoints = checkpoint_changes(board) if board is not None else None
    if checkpoints is not None and not checkpoints["tasks"]:
        checkpoints = None
    return {"traces": traces, "sweeps": sweeps, "checkpoints": checkpoints} if traces or sweeps or checkpoints else None


# ------------------------------------------------------------------------------------ sections
_CAPTIONS = {
    "probes_": "probe test accuracy per layer (one line per checkpoint) and across checkpoints (one line per "
    "layer); shaded: 95% Wilson interval",
    "mi_": "I(T;X) and I(T;Y) across checkpoints per layer, shaded: +-1 sd over the half-sample noise estimate; "
    "star = turn of I(T;X) beyond noise (findings.json)",
}


def _trace_section(folder: Path, figdir: Path) -> dict[str, Any] | None:
    probes_csv, mi_csv = folder / "probes.csv", folder / "mi.csv"
    probes, mi = read_rows(probes_csv), read_rows(mi_csv)
    if not probes and not mi:
        return None
    findings = read_findings(folder)
    figures = []
    for p in trace_figures(probes_csv if probes else None, mi_csv if mi else None, figdir, findings=findings):
        dim = p.stem.split("_", 1)[1].replace("_heatmap", "")
        if p.stem.endswith("_heatmap"):
            figures.append(_figure(p, f"{dim}: probe test accuracy, layer x checkpoint"))
        else:
            figures.append(_figure(p, f"{dim}: " + next(c for k, c in _CAPTIONS.items() if p.stem.startswith(k))))

    figures += [
        _figure(
            p,
            f"{p.stem.split('_', 1)[1]}: probe beside its control task, transfer and baseline at the "
            "last checkpoint; selectivity with its 95% paired interval",
        )
        for p in control_figures(probes_csv if probes else None, figdir)
    ]
    series = findings["mi_turns"]["series"] if findings else None
    turns = (
        Table(["dimension", "layer", "finding"], [[e["dimension"], e["layer"], e.get("claim", "")] for e in series])
        if series
        else None
    )
    trace_json = _read_json(folder / "trace.json")
    return {
        "folder": str(folder),
        "figures": figures,
        "mi": bool(mi),
        "probes": bool(probes),
        "turns": turns,
        "tables": _trace_provenance(probes, mi, trace_json, findings),
    }


def _trace_provenance(
    probes: list[dict[str, str]], mi: list[dict[str, str]], trace_json: Any, findings: Mapping[str, Any] | None
) -> list[Table]:
    """Compact provenance of a trace: checkpoints, data, settings; identical values grouped."""
    out = []
    ckpts = trace_json.get("checkpoints") if isinstance(trace_json, Mapping) else None
    if isinstance(ckpts, list) and ckpts:
        by = [
            {
                "name": f"{c.get('model')}@{c['revision']}" if c.get("revision") else str(c.get("model")),
                "commit": c.get("resolved_commit") or "none (local folder or unresolved)",
            }
            for c in ckpts
            if isinstance(c, Mapping)
        ]
        out.append(
            Table(["resolved commit", "checkpoints (model@revision or folder)"], _grouped(by, ["commit"], "name"))
        )
    else:
        out.append(Table(["model", "checkpoints"], _grouped(probes or mi, ["model"], "revision")))
    tagged = [{**r, "_table": "probes.csv"} for r in probes] + [{**r, "_table": "mi.csv"} for r in mi]
    out.append(
        Table(
            ["dimension", "dataset md5", "package version", "tables"],
            _grouped(tagged, ["dimension", "dataset_md5", "package_version"], "_table"),
        )
    )
    datasets = trace_json.get("datasets") if isinstance(trace_json, Mapping) else None
    if isinstance(datasets, list) and datasets:
        entries = [d for d in datasets if isinstance(d, Mapping)]
        cols = list(dict.fromkeys(k for d in entries for k in d))
        out.append(Table([c.replace("_", " ") for c in cols], [[d.get(c, "") for c in cols] for d in entries]))
    settings = _grouped(probes, ["protocol", "pooling", "probe", "n_train", "n_test", "package_version"], "dimension")
    if settings:
        out.append(
            Table(["protocol", "pooling", "probe", "n_train", "n_test", "package version", "dimensions"], settings)
        )
    if mi:
        out.append(
            Table(
                ["sigma", "m", "noise half-samples", "noise m", "dimensions"],
                _grouped(mi, ["sigma", "m", "noise_k", "noise_m"], "dimension"),
            )
        )
    if isinstance(trace_json, Mapping):
        flat = {k: v for k, v in trace_json.items() if k not in ("checkpoints", "datasets", "figures")}
        if isinstance(trace_json.get("figures"), list):
            flat["figures"] = f"{len(trace_json['figures'])} PNG files"
        out.append(_kv(flat, "trace.json (checkpoints and datasets above):"))
    if findings:
        out.append(_kv(findings.get("settings", {}), "findings.json settings:"))
    return out


def _sweep_section(folder: Path, figdir: Path) -> dict[str, Any] | None:
    rows = read_rows(folder / "sweep.csv")
    if not rows:
        return None
    scores_png, ppl_png = plot_sweep(folder / "sweep.csv", figdir)
    best = _read_json(folder / "best.json")
    guard = ""
    s = best.get("settings") if isinstance(best, Mapping) else None
    if isinstance(s, Mapping) and s.get("max_ppl_increase") is not None:
        guard = (
            f" Fluency guard: a setting is admissible while perplexity rises at most {float(s['max_ppl_increase']):.0%}"
        )
        if s.get("baseline_ppl") not in (None, ""):
            guard += f" over the unsteered {float(s['baseline_ppl']):.3g}"
        guard += "."
    tables = [
        Table(
            ["model", "revision", "vector", "vector sha256"],
            _grouped(rows, ["model", "revision", "vector", "vector_sha256"]),
        )
    ]
    if isinstance(best, Mapping):
        tables.append(_kv(best, "best.json:"))
    return {
        "folder": str(folder),
        "tables": tables,
        "scores": _figure(
            scores_png,
            "score against alpha per task and layer; dashed = unsteered; "
            "hollow = inadmissible (perplexity over the fluency limit)",
        ),
        "ppl": _figure(ppl_png, "held-out perplexity against alpha per layer (log scale); dashed = unsteered." + guard),
    }


def _correlate_section(folder: Path, figdir: Path) -> dict[str, Any] | None:
    rows = read_rows(folder / "correlate.csv")
    if not rows:
        return None
    summary = _read_json(folder / "correlate.json")
    r = summary.get("pearson_r") if isinstance(summary, Mapping) else None
    ci = summary.get("ci95") if isinstance(summary, Mapping) else None
    png = plot_correlate(
        folder / "correlate.csv",
        figdir / "correlate.png",
        r=float(r) if isinstance(r, (int, float)) else None,
        ci=tuple(ci) if isinstance(ci, list) and len(ci) == 2 and None not in ci else None,
    )
    return {
        "folder": str(folder),
        "scatter": _figure(png, "steering benefit against probe accuracy, one point per checkpoint"),
        "points": Table(list(rows[0]), [list(r_.values()) for r_ in rows]),
        "tables": [_kv(summary) if isinstance(summary, Mapping) else Table(intro="no correlate.json")],
    }


def _dataset_md5s(f: ResultsFile, sidecar: Mapping[str, Any] | None) -> list[str]:
    """Per task, the dataset md5: from the provenance file `tracing-bench eval` writes next to the
    results (``tracing_bench_<date>.json``), else from the first line of lm-eval's samples log
    (the trust tasks put it in every document), else lm-eval's own hash of the task's documents."""
    out = []
    hashes = f.data.get("task_hashes")
    hashes = hashes if isinstance(hashes, Mapping) else {}
    recorded = (sidecar or {}).get("datasets")
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


def _leaderboard_provenance(board: Leaderboard) -> Table:
    rows = []
    for f in board.rows:
        sidecar = f.sidecar() or {}
        cfg = f.data.get("config")
        cfg = cfg if isinstance(cfg, Mapping) else {}
        rows.append(
            [
                f.path,
                f.model,
                f.revision,
                sidecar.get("commit") or cfg.get("model_sha") or "",
                f.steering,
                ", ".join(f"{t}={v}" for t, v in (f.data.get("versions") or {}).items()),
                ", ".join(_dataset_md5s(f, sidecar)),
                f.data.get("lm_eval_version", ""),
                sidecar.get("package_version", ""),
                f"limit={cfg.get('limit')}, batch_size={cfg.get('batch_size')}, dtype={cfg.get('model_dtype')}",
                _dt.datetime.fromtimestamp(f.date, _dt.timezone.utc).isoformat(timespec="seconds"),
            ]
        )
    return Table(
        [
            "file",
            "model",
            "revision",
            "resolved commit",
            "steering",
            "task versions",
            "dataset md5",
            "lm-eval",
            "tracing-bench",
            "settings",
            "date",
        ],
        rows,
    )


def _leaderboard_section(board: Leaderboard, figdir: Path) -> dict[str, Any] | None:
    if not board.rows:
        return None
    shown = display_table(board)
    labels = {d: f"{d} {'↑' if board.higher_is_better.get(f'trust_{d}', True) else '↓'}" for d in DIMENSION_ORDER}
    radar = radar_chart(records(board), figdir / "radar.png", labels=labels)
    signals = snr_table(board) if len(board.rows) > 1 else []
    snr = (
        Table(
            ["task", "metric", "checkpoints", "signal (sd)", "noise (rms stderr)", "signal-to-noise"],
            [[r.task, r.metric, str(r.n_checkpoints), f"{r.signal:.4f}", f"{r.noise:.4f}", r.claim] for r in signals],
            "snr",
            intro="Which metric ranks these checkpoints: its spread across the rows "
            "over its own sampling noise (below 1: within noise).",
        )
        if signals
        else None
    )
    return {
        "table": Table(shown.headers, shown.rows, "leaderboard"),
        "flags": shown.flags,
        "snr": snr,
        "dropped": [str(p) for p in board.dropped],
        "tables": [_leaderboard_provenance(board)],
        "radar": _figure(radar, "the five trust dimensions per model (headline metric of each trust_* task)")
        if radar is not None
        else None,
    }


# -------------------------------------------------------------------------------------- driver
def discover(dirs: Iterable[str | os.PathLike[str]]) -> dict[str, list[Path]]:
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


def render(dirs: Iterable[str | os.PathLike[str]], *, title: str = "tracing-bench report") -> str:
    """The HTML text of the report (see :func:`build_report`)."""
    dirs = list(dirs)
    found = discover(dirs)
    board = build_leaderboard(found["results"], latest=True) if found["results"] else None  # read once
    with tempfile.TemporaryDirectory(prefix="tb-report-") as tmp:
        figdir = Path(tmp)
        page: dict[str, Any] = {
            "findings": _findings_section(found, board),
            "traces": [_trace_section(d, figdir / f"trace{i}") for i, d in enumerate(found["trace"])],
            "sweeps": [_sweep_section(d, figdir / f"sweep{i}") for i, d in enumerate(found["sweep"])],
            "correlates": [_correlate_section(d, figdir / f"corr{i}") for i, d in enumerate(found["correlate"])],
            "board": _leaderboard_section(board, figdir / "board") if board is not None else None,
        }
    page = {k: [x for x in v if x] if isinstance(v, list) else v for k, v in page.items()}
    if not any(page.values()):
        raise TracingBenchError(
            f"nothing to report in {', '.join(map(str, dirs))}: no probes.csv, mi.csv, sweep.csv, correlate.csv "
            "or results_*.json found; give the --out folders of trace, steer sweep/correlate or eval"
        )
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return _render(
        "page.html", csp=CSP, title=title, version=__version__, now=now, sources=[str(d) for d in dirs], **page
    )


def build_report(
    dirs: Iterable[str | os.PathLike[str]], out: str | os.PathLike[str], *, title: str = "tracing-bench report"
) -> Path:
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
    return atomic_write_text(out, render(dirs, title=title))


__all__ = ["CSP", "Table", "build_report", "discover", "render"]
