"""Trace a checkpoint series: harvest (cached) -> linear probes -> mutual information, per layer.

:func:`trace` takes a series and its :class:`~tracing_bench.settings.TraceSettings` (with an
:class:`~tracing_bench.executors.ExecutorSettings` saying where each checkpoint runs). For every
checkpoint x dimension, :func:`trace_checkpoint` reads all blocks' activations
(:func:`tracing_bench.cache.cached_activations`), probes the requested layers
(:func:`tracing_bench.probes.layers.probe_layers`) and, with ``mi=True``, estimates I(X;T) and
I(Y;T) (:func:`tracing_bench.probes.mi.mi_layers`). Each (checkpoint, dimension) result is
written atomically to its part file (:mod:`tracing_bench.parts`) as soon as it is done, so an
interrupted run (Ctrl-C, crash, a killed worker) loses at most the pair in flight and the same
command resumes where it stopped. :func:`trace` then merges the parts of the series into the tidy
tables ``OUT/probes.csv`` and ``OUT/mi.csv`` (columns as in docs/CONVENTIONS.md; rows sorted by
series order, dimension order, layer, probe), and writes ``OUT/findings.json`` (tested claims:
:mod:`tracing_bench.compare.findings`) and ``OUT/trace.json`` (provenance). It returns data and
draws nothing: the command line draws ``OUT/figures`` with
:func:`tracing_bench.report.plots.trace_figures` and notes them in trace.json
(:func:`record_figures`).

Mutual information follows the released code (docs/METHOD.md): X = layer-0 activations,
i.e. the output of decoder block 0 (Hugging Face ``hidden_states[1]``, as the released code
hooks the blocks; the embedding output ``hidden_states[0]`` is not used), T = the output of
block l, Y = the labels; all on the probe-train split. Scaling is that of
:func:`tracing_bench.probes.mi.mi_layers`: with ``paper`` every feature is standardised with the
probe-train split's own statistics (no information from other splits) and nHSIC is computed in
float64.

``protocol="reference"`` reproduces the released code's numbers (:mod:`tracing_bench.probes.reference`):
the released files in file order, the model in float32 (unless ``dtype`` says otherwise), one
statement per forward pass (batch 1, no padding), whole-file float32 scaling, scikit-learn's
``LogisticRegression()`` with its defaults on the first 80 % and accuracy on the last 20 %, and
nHSIC in float32 with the released formula's operations. Its convergence warnings are counted
per layer and recorded in ``trace.json`` (``reference_protocol``), not printed.

>>> trace("EleutherAI/pythia-70m", "step1000:step3000:1000", dimensions="fairness", out="runs/p70")
>>> trace("EleutherAI/pythia-70m", "step1000", out="runs/p70", settings=TraceSettings(mi=True))
"""

from __future__ import annotations

import datetime as _dt
import functools
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from tracing_bench import __version__
from tracing_bench.baseline import finish_controls, needs_baseline, trace_baseline
from tracing_bench.cache import (
    ActivationCache,
    activation_spec,
    cached_activations,
    default_cache_dir,
    lookup_activations,
)
from tracing_bench.checkpoints import Checkpoint, delete_from_hf_cache, resolve_series
from tracing_bench.compare.findings import build_findings, write_findings
from tracing_bench.dimensions import DimensionData, display_names, load_dimension
from tracing_bench.downloads import check_free_space
from tracing_bench.errors import TracingBenchError
from tracing_bench.executors import ExecutorSettings, import_ray, run_tasks
from tracing_bench.files import atomic_write_csv, atomic_write_json, check_outputs
from tracing_bench.loading import find_blocks, load_checkpoint
from tracing_bench.parts import MI_COLUMNS, PROBE_COLUMNS, build_part, collect_parts, part_path, read_part, write_part
from tracing_bench.prefetch import run_series
from tracing_bench.probes.layers import probe_layers
from tracing_bench.progress import SeriesProgress
from tracing_bench.settings import TraceSettings, parse_layers
from tracing_bench.threads import threads_for_work, use_threads
from tracing_bench.timings import Timings, stage
from tracing_bench.trace_files import TRACE_JSON_FORMAT, TraceResult, read_trace_json

__all__ = [
    "MI_COLUMNS",
    "PROBE_COLUMNS",
    "TraceResult",
    "TraceSettings",
    "TraceSteps",
    "merge",
    "record_figures",
    "run_checkpoints",
    "trace",
    "trace_activations",
    "trace_checkpoint",
]


# --------------------------------------------------------------------------------- one checkpoint
@dataclass(frozen=True)
class TraceSteps:
    """The steps a trace runs for each checkpoint and dimension; a test passes replacements.

    Attributes:
        lookup: the activations in the cache, or ``None`` (:func:`tracing_bench.cache.lookup_activations`).
        harvest: the activations of a loaded model, cached (:func:`tracing_bench.cache.cached_activations`).
        probe: the probes of every layer (:func:`tracing_bench.probes.layers.probe_layers`).
    """

    lookup: Callable[..., Any] = lookup_activations
    harvest: Callable[..., Any] = cached_activations
    probe: Callable[..., Any] = probe_layers


DEFAULT_STEPS = TraceSteps()


def trace_checkpoint(
    checkpoint: Checkpoint,
    datas: list[DimensionData],
    settings: TraceSettings,
    out: str | Path,
    *,
    bar: Any = None,
    steps: TraceSteps = DEFAULT_STEPS,
) -> list[Path]:
    """Probe (and MI-probe) every dimension of one checkpoint; write one part file per dimension.

    Pairs whose part file exists (same settings, same dataset md5) are skipped; the model is
    loaded only if some dimension is not in the activation cache. Safe to run in its own
    process (one task per checkpoint).

    Args:
        checkpoint: the checkpoint.
        datas: loaded dimensions (:func:`tracing_bench.dimensions.load_dimension`).
        settings: the trace settings.
        out: the output folder.
        bar: optional tqdm bar, advanced once per dimension.
        steps: the steps run (:class:`TraceSteps`).

    Returns:
        The part files of this checkpoint (one per dimension).
    """
    out = Path(out)
    harvest = settings.run_harvest
    paths = [part_path(out, settings, checkpoint, d.key_name) for d in datas]
    todo = [(d, p) for d, p in zip(datas, paths, strict=True) if read_part(p, d.md5) is None]
    if bar is not None:
        bar.update(len(datas) - len(todo))
    if not todo:
        return paths
    model = tokenizer = None
    commit: str | None = None
    # threads chosen per checkpoint: the load may have changed since the last
    with ExitStack() as threads_scope:
        with stage("threads"):  # the default thread count measures the idle cores (0.1 s)
            threads_scope.enter_context(use_threads(settings.threads))
        try:
            for data, path in todo:
                if bar is not None:
                    bar.set_postfix_str(f"{checkpoint.label} {data.name}", refresh=False)
                with stage("harvest"):
                    hit = steps.lookup(checkpoint, data, harvest)
                if hit is None:
                    if model is None:
                        with stage("load"):  # from_pretrained: with a hub id, the download too
                            check_free_space(checkpoint)
                            model, tokenizer = load_checkpoint(checkpoint, dtype=harvest.dtype, device=harvest.device)
                        parse_layers(settings.layers, len(find_blocks(model, harvest.blocks_attr)[0]))
                    with stage("harvest"):
                        hit = steps.harvest(checkpoint, data, harvest, model=model, tokenizer=tokenizer)
                acts_t, prov = hit
                commit = prov.get("resolved_commit") or commit
                trace_activations(checkpoint, data, acts_t.numpy(), prov, settings, path, steps=steps)
                if bar is not None:
                    bar.update(1)
        finally:
            del model, tokenizer
    if settings.delete_checkpoints and not checkpoint.is_local:
        delete_from_hf_cache(checkpoint, commit)
    return paths


def trace_activations(
    checkpoint: Checkpoint,
    data: DimensionData,
    acts: Any,
    prov: dict[str, Any],
    settings: TraceSettings,
    path: Path,
    *,
    steps: TraceSteps = DEFAULT_STEPS,
) -> dict[str, Any]:
    """Probe (and MI-probe) one dimension's activations of one checkpoint and write its part file.

    What :func:`trace_checkpoint` does with each activation tensor, and what
    :class:`tracing_bench.live.LiveTracer` does with a live model's, so both write the same parts.

    Args:
        checkpoint: the checkpoint (names the rows).
        data: the loaded dimension.
        acts: [blocks, statements, hidden] float32 activations (numpy).
        prov: the activations' provenance (:func:`tracing_bench.parts.build_part`).
        settings: the trace settings.
        path: the part file (:func:`tracing_bench.parts.part_path`).
        steps: the steps run (:class:`TraceSteps`; only ``probe`` is used here).

    Returns:
        The part written.
    """
    # probes and nHSIC are many small products: one thread unless the Gram matrix is large
    m = (
        len(data.splits["probe_train"])
        if settings.mi_subsample is None
        else min(settings.mi_subsample, len(data.splits["probe_train"]))
    )
    with use_threads(threads_for_work(settings.threads, float(m) * m * acts.shape[-1])):
        part = build_part(checkpoint, data, acts, prov, settings, probe=steps.probe)
    with stage("write"):
        write_part(path, part)
    return part


def _checkpoint_task(
    ckpt: Checkpoint, datas: list[DimensionData], settings: TraceSettings, out: str, work: Callable[..., list[Path]]
) -> list[str]:
    """One Ray task: ``work`` (:func:`trace_checkpoint` or what replaces it) on one checkpoint."""
    return [str(p) for p in work(ckpt, datas, settings, out)]


def run_checkpoints(
    ckpts: Sequence[Checkpoint],
    datas: list[DimensionData],
    settings: TraceSettings,
    out: str | Path,
    run_on: ExecutorSettings,
    *,
    bar: Any = None,
    work: Callable[..., list[Path]] | None = None,
) -> dict[str, str]:
    """Run ``work`` for every checkpoint, here or as Ray tasks (:mod:`tracing_bench.executors`).

    ``work`` is the per-checkpoint step, :func:`trace_checkpoint` when ``None`` (this module's
    name, read at call time, so a replaced one runs too). Ray workers get it through cloudpickle:
    by reference when it is this module's own function, by value otherwise. Here, hub checkpoints
    are downloaded before their step, the next one in the background with ``settings.prefetch``,
    and deleted after it with ``settings.delete_checkpoints`` (:func:`tracing_bench.prefetch.run_series`).

    Returns:
        ``{label: one line}`` for the revisions that could not be downloaded (``local`` only).
    """
    work = work or trace_checkpoint
    if run_on.executor == "local":  # hub checkpoints downloaded (ahead with prefetch) and deleted there
        keep = replace(settings, delete_checkpoints=False)
        return run_series(
            ckpts,
            lambda c: work(c, datas, keep, out, bar=bar),
            prefetch=settings.prefetch,
            delete=settings.delete_checkpoints,
            needs_download=lambda c: needs_model(c, datas, settings, out),
            resumed=lambda c: all(read_part(part_path(out, settings, c, d.key_name), d.md5) for d in datas),
            progress=bar if isinstance(bar, SeriesProgress) else None,
        )
    n = len(datas)
    run_tasks(
        _checkpoint_task,
        list(ckpts),
        [c.label for c in ckpts],
        datas,
        settings,
        str(out),
        work,
        settings=run_on,
        what="checkpoint",
        on_done=(lambda i, r: bar.update(n)) if bar is not None else None,
    )
    return {}


def needs_model(checkpoint: Checkpoint, datas: list[DimensionData], settings: TraceSettings, out: str | Path) -> bool:
    """Whether :func:`trace_checkpoint` will load the model: a part is missing and not cached."""
    harvest = settings.run_harvest
    cache, commit = ActivationCache(harvest.cache_dir), checkpoint.resolved_commit()
    return any(
        read_part(part_path(out, settings, checkpoint, d.key_name), d.md5) is None
        and not cache.has(activation_spec(checkpoint, d, harvest), commit=commit)
        for d in datas
    )


# --------------------------------------------------------------------------------- the series
def trace(
    model: str,
    revisions: str | list[str] | None = None,
    *,
    out: str | Path,
    settings: TraceSettings | None = None,
    run_on: ExecutorSettings | None = None,
    progress: bool = True,
    steps: TraceSteps | None = None,
    **options: Any,
) -> TraceResult:
    """Trace a checkpoint series; resumable (see the module docstring).

    Args:
        model: hub model id, model folder, or folder of checkpoint sub-folders.
        revisions: revisions of a hub model, with range shorthands
            (:func:`tracing_bench.checkpoints.parse_revisions`).
        out: output folder.
        settings: what to trace (:class:`~tracing_bench.settings.TraceSettings`).
        run_on: where each checkpoint runs: ``local`` (this process) or ``ray`` (one Ray task per
            checkpoint; :class:`~tracing_bench.executors.ExecutorSettings`).
        progress: the progress line on stderr (checkpoint, stage, time left: :mod:`tracing_bench.progress`).
        steps: replacements of the per-checkpoint steps (:class:`TraceSteps`), for tests.
        **options: trace and executor settings given by keyword, as the command line gives
            them (:meth:`TraceSettings.from_options`: ``dimensions="fairness,privacy"``,
            ``layers="0:32:4"``, ``mi=True``, ``cache_dir=...``; ``executor="ray"``,
            ``max_retries=1``); they override ``settings`` and ``run_on``.

    Returns:
        a :class:`TraceResult`: the files written, the findings (as in findings.json), the number of
        checkpoints traced and ``{revision: one line}`` for those that could not be downloaded (the
        series went on without them; trace.json ``failed_revisions``).

    Raises:
        TracingBenchError: bad input (one line).
    """
    timings = Timings()  # trace.json's `timings`: where the wall time went
    with timings, stage("setup"):
        run_names = {f.name for f in fields(ExecutorSettings)}
        run_options = {k: options.pop(k) for k in list(options) if k in run_names}
        if settings is None or options:
            settings = TraceSettings.from_options(settings, **options)
        if not settings.series_name:
            settings = replace(settings, series_name=model)
        run_on = replace(run_on, **run_options) if run_on is not None else ExecutorSettings(**run_options)
        if run_on.executor == "ray":
            import_ray()  # fail before any work when Ray is missing
        ckpts = resolve_series(model, revisions)
        if settings.delete_checkpoints and any(c.is_local for c in ckpts):
            raise TracingBenchError(
                f"--delete-checkpoints only removes Hugging Face cache downloads, and {model} is a local folder: "
                "refusing to delete it; drop --delete-checkpoints"
            )
        check_outputs(
            [(out, "--out", "folder"), (settings.harvest.cache_dir or default_cache_dir(), "--cache-dir", "folder")]
        )
        datas = load_datas(settings)
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
    with timings:
        with SeriesProgress(len(ckpts), enabled=progress, units=len(datas)) as bar:
            timings.on_stage = bar.stage
            baseline = needs_baseline(ckpts, settings)  # before, when --delete-checkpoints removes its config
            if baseline and settings.delete_checkpoints:
                trace_baseline(ckpts[-1], datas, settings, out)
            work = functools.partial(trace_checkpoint, steps=steps) if steps is not None else None
            failed = run_checkpoints(ckpts, datas, settings, out, run_on, bar=bar, work=work)
            done = [c for c in ckpts if c.label not in failed]
            if not done:
                first = next(iter(failed.values()))
                raise TracingBenchError(f"no checkpoint of the series could be downloaded: {first}")
            if baseline and not settings.delete_checkpoints:
                trace_baseline(done[-1], datas, settings, out)
            return merge(out, done, datas, settings, timings=timings, failed=failed)


def load_datas(settings: TraceSettings) -> list[DimensionData]:
    """The dimensions of a trace, loaded, named for this run and subsampled as the settings say."""
    dims = list(settings.dimensions)
    datas = [
        replace(load_dimension(d, protocol=settings.protocol, seed=settings.seed), name=n)
        for d, n in zip(dims, display_names(dims), strict=True)
    ]
    if settings.max_statements is not None:
        datas = [d.subsample(settings.max_statements, seed=settings.seed) for d in datas]
    return datas


_PROBE_DESCRIPTION = {
    "paper": "logistic: L2 logistic regression (C=1) solved to convergence on probe_train, features standardised with "
    "probe_train statistics (ddof 0); val_* = probe_val, test_* = test; mass_mean: class-mean direction, midpoint "
    "threshold, same scaling",
    "reference": "the released code: whole-file float32 centring and torch.std (ddof 1) scaling, "
    "sklearn LogisticRegression() defaults fitted on the first 80% of the file, val_* = test_* = the last 20%; "
    "mass_mean on the same scaled activations",
}
_MI_DESCRIPTION = {
    "paper": "X = block 0 output, Y = labels, T = block l output, on probe_train, every feature standardised with "
    "probe_train statistics (ddof 0); nHSIC of the released formula computed in float64 (Cholesky)",
    "reference": "X = block 0 output, Y = labels, T = block l output, on the first 80% of the file, whole-file "
    "float32 centring and torch.std scaling; nHSIC in float32 with the released formula's operations (explicit "
    "inverses, eps 1e-5)",
}


def merge(
    out: str | Path,
    ckpts: list[Checkpoint],
    datas: list[DimensionData],
    settings: TraceSettings,
    timings: Timings | None = None,
    failed: dict[str, str] | None = None,
) -> TraceResult:
    """Merge the part files of a finished series into probes.csv, mi.csv, findings.json and trace.json.

    Returns:
        as :func:`trace`.

    Raises:
        TracingBenchError: a part is missing (the series is not finished).
    """
    out = Path(out)
    with stage("merge"):
        return _merge(out, ckpts, datas, settings, timings, failed or {})


def _merge(
    out: Path,
    ckpts: list[Checkpoint],
    datas: list[DimensionData],
    settings: TraceSettings,
    timings: Timings | None,
    failed: dict[str, str],
) -> TraceResult:
    series = collect_parts(out, ckpts, datas, settings)
    probes_csv, mi_csv = out / "probes.csv", out / "mi.csv"
    atomic_write_csv(probes_csv, PROBE_COLUMNS, series.probe_rows)
    atomic_write_csv(mi_csv, MI_COLUMNS, series.mi_rows)
    findings = build_findings(series.checkpoints, datas, series.parts, settings=settings.public())
    baseline_csv = finish_controls(out, ckpts, datas, settings, findings, series.parts)  # baseline.csv, controls
    findings_json = write_findings(findings, out / "findings.json")
    provenance: dict[str, Any] = {
        "format": TRACE_JSON_FORMAT,
        "tool": "tracing-bench trace",
        "package_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": settings.public(),
        "settings_key": settings.key(),
        "layer_definition": "layer l = output of decoder block l (HF hidden_states[l+1], before the final norm "
        "at the last block)",
        "probe_description": _PROBE_DESCRIPTION[settings.protocol],
        "mi_description": _MI_DESCRIPTION[settings.protocol],
        "checkpoints": series.checkpoints,
        "datasets": [d.provenance() for d in datas],
        "tables": {
            "probes": probes_csv.name,
            "mi": mi_csv.name,
            **({"baseline": baseline_csv.name} if baseline_csv else {}),
        },
        "findings": {"file": findings_json.name, **findings["settings"]},
        "figures": [],
    }
    if settings.protocol == "reference":
        fits = series.reference_fits
        provenance["reference_protocol"] = {
            "logistic_regression": "sklearn.linear_model.LogisticRegression() defaults: C=1, l2, lbfgs, max_iter=100, "
            "tol=1e-4; a ConvergenceWarning is counted, not printed (the released code silenced them)",
            "logistic_fits": sum(f["logistic_fits"] for f in fits),
            "convergence_warnings": sum(f["convergence_warnings"] for f in fits),
            "constant_features": "features constant over the whole file are set to 0 (the released code divides "
            "by zero there, NaN or inf, and scikit-learn refuses to fit); counted per layer below",
            "per_checkpoint_dimension": fits,
        }
    if failed:
        provenance["failed_revisions"] = [{"revision": k, "error": v} for k, v in failed.items()]
    if timings is not None:
        provenance["timings"] = timings.summary()
    trace_json = atomic_write_json(out / "trace.json", provenance, default=str)
    return TraceResult(probes_csv, mi_csv, trace_json, findings_json, findings, len(ckpts), failed)


def record_figures(trace_json: str | Path, figures: Sequence[str | Path]) -> Path:
    """Note the figures drawn from a trace's tables in its trace.json (``figures``), atomically
    (a trace.json of format 1 is rewritten in the current format)."""
    provenance = read_trace_json(trace_json)
    provenance["figures"] = [str(p) for p in figures]
    return atomic_write_json(trace_json, provenance, default=str)
