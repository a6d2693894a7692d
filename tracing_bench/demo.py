"""The whole method on the embedded tiny model, on a laptop, with no download.

:func:`run_demo` chains the library as a user would chain the CLI:

1. ``tracing-bench pretrain --trace-out``: a tiny Llama pre-trained on the CPU, log-spaced
   checkpoints (cached: a second run reuses them), each probed (probes and MI for all five
   dimensions) in the training process as it is saved (:class:`tracing_bench.live.LiveTracer`);
2. ``tracing-bench trace --mi`` on the saved checkpoints: every part is already there, so it only
   merges the tables (it traces whatever is missing, e.g. after a cached or interrupted
   pre-training run, with resumable parts and an activation cache under ``OUT``);
3. ``tracing-bench steer extract``: a vector from the middle checkpoint, for the dimension that
   the probes say the model learned most, at that dimension's best layer;
4. ``tracing-bench steer sweep``: that vector on the last checkpoint over a few coefficients,
   with the fluency guard;
5. ``tracing-bench eval`` on the first, middle and last checkpoints, and the leaderboard;
6. ``tracing-bench report``: one HTML page.

Every stage that costs time is skipped when its output exists with the same settings, so a
second run takes seconds. Scoring uses ``limit`` documents per task (a demo, not a benchmark:
the printed figures say so).

The printed summary states only tested claims: what was learned and where I(T;X) turns come
from the trace's ``findings.json`` (:mod:`tracing_bench.compare.findings`); a checkpoint
comparison or a steering setting is "within noise" unless the interval of its change excludes
0; ``p_trust`` is printed beside the headline metric when the results carry it.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tracing_bench import __version__
from tracing_bench.checkpoints import resolve_series
from tracing_bench.compare.claims import control_lines
from tracing_bench.compare.findings import checkpoint_changes, dimension_title, read_findings, steering_changes
from tracing_bench.compare.findings_schema import Findings
from tracing_bench.compare.leaderboard import Leaderboard, build_leaderboard, format_leaderboard
from tracing_bench.errors import TracingBenchError
from tracing_bench.evaluate import run_eval, run_folder
from tracing_bench.files import atomic_write_json, atomic_write_text, spec_hash
from tracing_bench.live import LiveTracer
from tracing_bench.pretrain import PretrainConfig, cached_run, pretrain
from tracing_bench.report.control_plots import control_figures
from tracing_bench.report.html import build_report
from tracing_bench.report.plots import trace_figures
from tracing_bench.report.steer_plots import plot_sweep
from tracing_bench.settings import HarvestSettings, ScoringSettings, TraceSettings
from tracing_bench.steering.sweep import run_sweep
from tracing_bench.steering.vector import SteeringVector, extract_from_checkpoint
from tracing_bench.threads import use_threads
from tracing_bench.trace import record_figures, trace


@dataclass(frozen=True)
class DemoSettings:
    """What the demo runs.

    Attributes:
        fast: the short pre-training preset and smaller scoring limits (tests, quick looks).
        seed: seed of pre-training and splits.
        limit: documents per task for every lm-eval scoring (sweep and leaderboard).
        alphas: steering coefficients swept (positive = toward the trustworthy side).
        max_ppl_increase: fluency guard of the sweep (relative perplexity increase).
        dimension: dimension to steer, or ``auto`` (largest probe gain from first to last checkpoint).
        max_statements: statements traced per dimension (a seeded, split-preserving subsample).
        mi_subsample: probe-train statements used for the nHSIC estimate.
        threads: CPU threads (torch and BLAS) for every stage; ``None``: each stage takes the
            cores idle when it starts (:mod:`tracing_bench.threads`). Not part of the cache keys.
    """

    fast: bool = False
    seed: int = 0
    limit: int = 50
    alphas: tuple[float, ...] = (-4.0, -1.0, 1.0, 4.0)
    max_ppl_increase: float = 0.1
    dimension: str = "auto"
    max_statements: int = 1000
    mi_subsample: int = 512
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise TracingBenchError(f"--limit {self.limit} is not valid: use a positive number of documents per task")
        if not self.alphas:
            raise TracingBenchError("--alphas is empty: give a comma list such as -4,-1,1,4")

    def key(self, stage: str, **extra: Any) -> str:
        settings = {k: v for k, v in asdict(self).items() if k != "threads"}  # threads change no number
        spec = {"stage": stage, **settings, **extra, "package_version": __version__}
        return spec_hash(spec, 16)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _stage_done(marker: Path, key: str) -> bool:
    try:
        return json.loads(marker.read_text()).get("key") == key
    except (OSError, ValueError):
        return False


def _mark(marker: Path, key: str, **info: Any) -> None:
    atomic_write_json(marker, {"key": key, **info}, indent=1, default=str)


def _f(x: str) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def probe_summary(probe_rows: list[dict[str, str]]) -> dict[str, dict[str, Any]]:
    """Per dimension: best layer at the last checkpoint and probe test accuracy at the first and last.

    Uses the logistic probe; the best layer is chosen on probe-val accuracy (never on test).
    """
    rows = [r for r in probe_rows if r["probe"] == "logistic"]
    steps = sorted({int(r["step"]) for r in rows if r["step"] != ""})
    out: dict[str, dict[str, Any]] = {}
    for dim in dict.fromkeys(r["dimension"] for r in rows):
        d = [r for r in rows if r["dimension"] == dim]

        def best(step: int, d: list[dict[str, str]] = d) -> dict[str, str]:
            at = [r for r in d if r["step"] != "" and int(r["step"]) == step]
            return max(at, key=lambda r: (_f(r["val_acc"]), -int(r["layer"])))

        first, last = best(steps[0]), best(steps[-1])
        mid_step = steps[len(steps) // 2]
        out[dim] = {
            "first_step": steps[0],
            "last_step": steps[-1],
            "mid_step": mid_step,
            "first_acc": _f(first["test_acc"]),
            "first_layer": int(first["layer"]),
            "last_acc": _f(last["test_acc"]),
            "best_layer": int(last["layer"]),
            "mid_layer": int(best(mid_step)["layer"]),
            "gain": _f(last["test_acc"]) - _f(first["test_acc"]),
        }
    return out


def run_demo(
    out: str | Path = "demo-out",
    settings: DemoSettings | None = None,
    *,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the demo pipeline (see the module docstring) and return its summary.

    Args:
        out: output folder (checkpoints, cache, trace, steering, results, report.html).
        settings: :class:`DemoSettings` (default: the full demo).
        echo: where progress lines go.

    Returns:
        ``{"report": Path, "summary": str, "probes": {...}, "mi_turns": {...}, "steering": {...}, "timings": {...}}``.
    """
    s = settings or DemoSettings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lap = _Laps()
    ckpt_root, trace_dir, sweep_dir, results_dir = out / "checkpoints", out / "trace", out / "sweep", out / "results"
    trace_settings = _trace_settings(s, out / "cache", ckpt_root)

    echo("[1/6] pre-training the tiny model, probing each checkpoint as it is saved (cached after the first run)")
    folders = _pretrain(s, ckpt_root, trace_dir, trace_settings)
    lap("pretrain")

    echo(f"[2/6] tracing {len(folders)} checkpoints x 5 dimensions (probes + MI, {s.max_statements} statements each)")
    probes, findings = _trace(ckpt_root, trace_dir, trace_settings)
    lap("trace")

    dim = _steered_dimension(s, probes, findings)
    ckpts = resolve_series(str(ckpt_root), None)
    mid, last = ckpts[len(ckpts) // 2], ckpts[-1]
    layer = probes[dim]["mid_layer"]
    echo(f"[3/6] steering vector: {dim}, block {layer}, from {Path(mid.model).name}")
    vec, vec_path = _extract(s, mid.model, dim, layer, out / "steering", out / "cache")
    lap("extract")

    echo(f"[4/6] sweeping it on {Path(last.model).name}: alphas {', '.join(f'{a:g}' for a in s.alphas)}")
    best = _sweep(s, last.model, vec.sha256, vec_path, sweep_dir, out / "cache", echo)
    lap("sweep")

    chosen = list(dict.fromkeys([ckpts[0], mid, last]))
    echo(f"[5/6] scoring {len(chosen)} checkpoints with the trust tasks (limit {s.limit}) for the leaderboard")
    board = _leaderboard(s, [c.model for c in chosen], results_dir, out)
    lap("eval")

    echo("[6/6] writing the report")
    report = build_report(
        [trace_dir, sweep_dir, results_dir], out / "report.html", title="tracing-bench demo: the embedded tiny model"
    )
    lap("report")

    steering = steering_changes(_read_csv(sweep_dir / "sweep.csv"), best)
    changes = checkpoint_changes(board)
    summary = format_summary(
        findings,
        dim,
        layer,
        steering,
        changes,
        report,
        lap.timings,
        s,
        _read_csv(out / "leaderboard.csv"),
        source=Path(mid.model).name,
        target=Path(last.model).name,
    )
    atomic_write_text(out / "summary.txt", summary + "\n")
    return {
        "report": report,
        "summary": summary,
        "probes": probes,
        "findings": findings,
        "mi_turns": findings["mi_turns"]["dimensions"],
        "checkpoints": changes,
        "steering": {"dimension": dim, "layer": layer, "vector": str(vec_path), **best, "changes": steering},
        "timings": lap.timings,
    }


class _Laps:
    """Seconds per stage: ``lap(name)`` closes the stage that began at the previous lap."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._t = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._t, 1)
        self._t = now


def _trace_settings(s: DemoSettings, cache: Path, ckpt_root: Path) -> TraceSettings:
    """Probes and MI for all five dimensions, on the CPU in float32, cached under ``OUT/cache``."""
    return TraceSettings.from_options(
        dimensions="all",
        mi=True,
        cache_dir=cache,
        batch_size=64,
        device="cpu",
        dtype="float32",
        seed=s.seed,
        max_statements=s.max_statements,
        mi_subsample=s.mi_subsample,
        threads=s.threads,
        series_name=str(ckpt_root),
    )


def _pretrain(s: DemoSettings, ckpt_root: Path, trace_dir: Path, trace_settings: TraceSettings) -> list[Path]:
    """Stage 1: pre-train (or reuse) the tiny model, tracing each checkpoint as it is saved."""
    make = PretrainConfig.fast if s.fast else PretrainConfig
    config = make(seed=s.seed, threads=s.threads)
    tracer = None if cached_run(config, ckpt_root) is not None else LiveTracer(trace_dir, trace_settings)
    return pretrain(config, ckpt_root, progress=True, on_checkpoint=tracer.on_checkpoint if tracer else None)


def _trace(
    ckpt_root: Path, trace_dir: Path, trace_settings: TraceSettings
) -> tuple[dict[str, dict[str, Any]], Findings]:
    """Stage 2: the trace's tables and figures (reusing the parts written while training); probes and findings."""
    res = trace(str(ckpt_root), None, out=trace_dir, settings=trace_settings, progress=True)
    record_figures(
        res.trace_json,
        trace_figures(res.probes_csv, res.mi_csv, trace_dir / "figures", findings=res.findings)
        + control_figures(res.probes_csv, trace_dir / "figures"),
    )
    probes = probe_summary(_read_csv(res.probes_csv))
    findings = read_findings(res.findings_json)
    if findings is None:
        raise TracingBenchError(
            f"{res.findings_json} is missing or unreadable: delete {trace_dir} and run the demo again"
        )
    return probes, findings


def _steered_dimension(s: DemoSettings, probes: dict[str, dict[str, Any]], findings: Findings) -> str:
    """The dimension to steer: the one asked for, or with ``auto`` the one learned most (not robustness)."""
    if s.dimension == "auto":
        # robustness's probe direction separates clean from typo'd sentences, which its task (the
        # agreement of the two answers) cannot reward; steer one of the other dimensions: the one
        # learned beyond noise with the largest change, else the largest change.
        claims = findings["learned"]["dimensions"]
        return max(
            (d for d in probes if d != "robustness"),
            key=lambda d: (
                d in claims and claims[d]["verdict"] == "learned",
                claims[d]["change"] if d in claims else 0.0,
            ),
        )
    if s.dimension in probes:
        return s.dimension
    raise TracingBenchError(f"--dimension {s.dimension!r} is not valid: use auto or one of {', '.join(probes)}")


def _extract(
    s: DemoSettings, model: str, dim: str, layer: int, steer_dir: Path, cache: Path
) -> tuple[SteeringVector, Path]:
    """Stage 3: the steering vector of ``dim`` at ``layer`` from the middle checkpoint, saved."""
    steer_dir.mkdir(exist_ok=True)
    with use_threads(s.threads):
        vec = extract_from_checkpoint(
            model,
            dimension=dim,
            layer=layer,
            scale="reference",
            seed=s.seed,
            harvest=HarvestSettings(dtype="float32", device="cpu", cache_dir=str(cache)),
        )
    return vec, vec.save(steer_dir / f"{dim}_block{layer}_{Path(model).name}.pt")


def _sweep(
    s: DemoSettings,
    target: str,
    vector_sha256: str,
    vec_path: Path,
    sweep_dir: Path,
    cache: Path,
    echo: Callable[[str], None],
) -> dict[str, Any]:
    """Stage 4: the vector swept on the last checkpoint with the fluency guard (reused when done); best.json."""
    sweep_key = s.key("sweep", vector=vector_sha256, target=target)
    marker = sweep_dir / ".demo-stage.json"
    if _stage_done(marker, sweep_key) and (sweep_dir / "best.json").exists():
        echo("      reusing the finished sweep")
        return json.loads((sweep_dir / "best.json").read_text())
    with use_threads(s.threads):
        scoring = ScoringSettings(limit=s.limit, batch_size=32, dtype="float32", device="cpu", cache_dir=str(cache))
        sweep = run_sweep(
            target,
            vec_path,
            sweep_dir,
            alphas=list(s.alphas),
            max_ppl_increase=s.max_ppl_increase,
            lambada="off",
            scoring=scoring,
        )
    plot_sweep(sweep_dir / "sweep.csv", sweep_dir)
    _mark(marker, sweep_key)
    return sweep.best


def _leaderboard(s: DemoSettings, models: list[str], results_dir: Path, out: Path) -> Leaderboard:
    """Stage 5: each model scored with the trust tasks (reused when done); leaderboard.md and .csv."""
    for model in models:
        folder = run_folder(results_dir, model, None)
        key = s.key("eval", model=model)
        if _stage_done(folder / ".demo-stage.json", key) and any(folder.glob("results_*.json")):
            continue
        for old in folder.glob("results_*.json"):
            old.unlink()
        with use_threads(s.threads):
            run = run_eval(
                {"pretrained": model, "dtype": "float32"},
                tasks="trust",
                output_path=results_dir,
                limit=s.limit,
                log_samples=True,
                extra_args=["--batch_size", "32", "--device", "cpu"],
            )
        if run is None:  # only under `accelerate launch`, which the demo is not run with
            raise TracingBenchError("the demo's scoring ran as a secondary process: run the demo without accelerate")
        _mark(run.folder / ".demo-stage.json", key)
    board = build_leaderboard([results_dir], latest=True)
    atomic_write_text(out / "leaderboard.md", format_leaderboard(board, "md"))
    atomic_write_text(out / "leaderboard.csv", format_leaderboard(board, "csv"))
    return board


def _pair(entry: dict[str, Any] | None) -> str:
    """``acc 0.550 -> 0.600, +0.050 [-0.010, +0.110], within noise``."""
    if not entry:
        return ""
    return f"{entry['metric']} {entry['a']:.3f} -> {entry['b']:.3f}, {entry['claim']}"


def format_summary(
    findings: Findings,
    dim: str,
    layer: int,
    steering: list[dict[str, Any]],
    changes: dict[str, Any] | None,
    report: Path,
    timings: dict[str, float],
    s: DemoSettings,
    board_rows: list[dict[str, str]] | None = None,
    *,
    source: str = "",
    target: str = "",
) -> str:
    """The lines printed at the end of the demo (also written to ``summary.txt``).

    Every claim comes from ``findings`` (the trace's ``findings.json``), ``steering``
    (:func:`tracing_bench.compare.findings.steering_changes`) or ``changes``
    (:func:`tracing_bench.compare.findings.checkpoint_changes`), each with its interval or p-value.
    """
    learned = findings["learned"]
    lines = [f"report: {report}", ""]
    claims = learned.get("dimensions") or {}
    if claims:
        lines.append(
            f"probes (logistic, test split; block chosen on probe-val at the last checkpoint), "
            f"{learned['first']} -> {learned['last']}:"
        )
        width = max(12, *(len(dimension_title(d)) for d in claims))
        lines.append(
            f"  {'dimension':<{width}} {'block':>5}  {'first [95% CI]':<22} {'last [95% CI]':<22} verdict "
            "(p Holm-adjusted, change [95% CI])"
        )
        for d, c in claims.items():
            fa, la = c["first_acc_ci"], c["last_acc_ci"]
            lines.append(
                f"  {dimension_title(d):<{width}} {c['layer']:>5}  "
                f"{c['first_acc']:.3f} [{fa[0]:.3f}, {fa[1]:.3f}]   {c['last_acc']:.3f} [{la[0]:.3f}, "
                f"{la[1]:.3f}]   "
                f"{c['claim']}"
            )
        n_test = next(iter(claims.values()))["n_test"]
        lines.append(
            f"  p: exact McNemar test on the same {n_test} test statements, Holm-adjusted over "
            f"{learned['n_tests']} dimension x block tests; change interval: paired bootstrap"
        )
        won = [d for d, c in claims.items() if c["verdict"] == "learned"]
        if won:
            lines.append(
                "  learned during pre-training: "
                + ", ".join(f"{dimension_title(d)} {claims[d]['claim'][len('learned ') :]}" for d in won)
            )
        else:
            lines.append(
                f"  no dimension is learned beyond noise between {learned['first']} and {learned['last']}: "
                "every change is within the test's noise"
            )
    else:
        lines.append(f"probes: {learned.get('note', 'no probe results')}")

    lines += control_lines(findings)  # selectivity, baseline, transfer at the claim's block
    turns = findings["mi_turns"]
    noise = turns["noise"]
    found = [e for e in turns["series"] if e.get("turn") is not None]
    head = f"MI turn of I(T;X) (rise and fall both beyond {turns['z']:g} noise sd"
    head += f"; noise: nHSIC on {noise['k']} half-samples of {noise['m']} statements):" if noise else "):"
    lines.append(head)
    if found:
        for d in dict.fromkeys(e["dimension"] for e in found):
            for e in (x for x in found if x["dimension"] == d):
                lines.append(f"  {dimension_title(d)} block {e['layer']}: {e['claim']}")
        quiet = [d for d, v in turns.get("dimensions", {}).items() if not v.get("turns")]
        if quiet:
            lines.append(f"  no turn detected: {', '.join(dimension_title(d) for d in quiet)}")
    elif turns.get("series"):
        tested = any(e.get("tested") for e in turns["series"])
        lines.append("  no turn detected in any dimension or block" if tested else f"  {turns['series'][0]['claim']}")
    else:
        lines.append("  no MI rows")
    where = f", from {source} on {target}" if source and target else ""
    lines.append(f"steering ({dim} vector, block {layer}{where}; limit {s.limit} documents per task):")
    task = f"trust_{dim}"
    hit = next((e for e in steering if e["task"] == task), None)
    if hit is None or not hit.get("admissible"):
        lines.append(f"  no admissible setting for {task} (every alpha failed the fluency guard)")
    else:
        text = f"  best admissible alpha {hit['alpha']:g}: {task} {_pair(hit)}"
        if hit.get("p_trust"):
            text += f"; {_pair(hit['p_trust'])}"
        lines.append(text + f"; perplexity {100 * float(hit.get('ppl_increase') or 0):+.1f}%")
        if hit.get("logodds"):  # what it was chosen on: the paired per-document change, with its interval
            lo = hit["logodds"]
            lines.append(
                f"  trustworthy log-odds, paired per document: {lo['change']['claim']}; "
                f"steerability {lo['steerability']['claim']}"
            )
    if changes:
        lines.append(
            f"checkpoints {changes['first']} -> {changes['last']} (trust tasks, limit {s.limit} documents "
            "each; change [95% CI], within noise unless the interval excludes 0):"
        )
        for e in changes["tasks"]:
            name = f"{e['task']} (group)" if e.get("is_group") else e["task"]
            text = f"  {name:<20} {_pair(e)}"
            if e.get("p_trust"):
                text += f"; {_pair(e['p_trust'])}"
            lines.append(text)
            if e.get("answers_note"):
                lines.append(f"  {'':<20} {e['answers_note']}")
    if board_rows:
        task_cols = [k for k in board_rows[0] if k.startswith("trust_") and not k.endswith(("_stderr", "_p_trust"))]
        if len(board_rows) > 1 and len({tuple(r[k] for k in task_cols) for r in board_rows}) == 1:
            lines.append("  every checkpoint scores the same on every task (identical leaderboard cells)")
    lines.append("timings (s): " + ", ".join(f"{k} {v:g}" for k, v in timings.items()))
    return "\n".join(lines)
