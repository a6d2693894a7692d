"""Does a checkpoint's linear separability predict how much its steering vector helps? (Figure 5.)

For every checkpoint of a source series, at one layer and one dimension:

* ``probe_acc``: test accuracy of the logistic probe, read from a trace's ``probes.csv``
  (``probe == logistic``, matching model, revision, dimension and layer) when one is given,
  else computed here: scikit-learn ``LogisticRegression`` (defaults) on standardised
  activations, fitted on ``probe_train``, accuracy on ``test`` (the paper protocol's splits);
  with ``preset="reference"`` the released probe instead
  (:func:`tracing_bench.probes.reference.reference_probe_layers` on the released files);
* ``benefit``: the change of the dimension's task score (``trust_<dimension>``, metric ``score``)
  on the TARGET model when that checkpoint's vector is added with ``alpha`` (positive = toward
  the trustworthy side), against the unsteered target, same tasks, limit, batch size and seed.

Then the Pearson r across checkpoints and a percentile bootstrap interval
(:func:`scipy.stats.bootstrap`: checkpoints resampled with replacement, in pairs; resamples with
a constant column have no r and are left out of the percentiles). The target is scored with the
same :class:`~tracing_bench.settings.ScoringSettings` as ``steer sweep``. Writes ``correlate.csv``
(CONVENTIONS schema) and ``correlate.json`` (r, interval, settings) and returns them;
``tracing-bench steer correlate`` draws ``correlate.png``
(:func:`tracing_bench.report.steer_plots.plot_correlate`).
"""

from __future__ import annotations

import csv
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

import numpy as np
from scipy.stats import bootstrap

from tracing_bench import __version__
from tracing_bench.cache import cached_activations, default_cache_dir
from tracing_bench.checkpoints import Checkpoint, resolve_series
from tracing_bench.dimensions import DIMENSIONS, DimensionData, load_dimension
from tracing_bench.errors import TracingBenchError
from tracing_bench.files import atomic_write_csv, atomic_write_json, check_outputs, safe_name
from tracing_bench.probes.reference import reference_probe_layers
from tracing_bench.settings import CorrelateSettings, HarvestSettings, Preset, preset_settings
from tracing_bench.steering.sweep import Scorer
from tracing_bench.steering.vector import Scale, extract_from_checkpoint

CORRELATE_COLUMNS = ("model", "revision", "step", "dimension", "layer", "probe_acc", "benefit")


class CorrelateRow(TypedDict):
    """One row of ``correlate.csv`` (:data:`CORRELATE_COLUMNS`, in that order): one checkpoint."""

    model: str
    revision: str  # "" for a folder checkpoint
    step: int | Literal[""]  # "" where the checkpoint has no step
    dimension: str
    layer: int
    probe_acc: float  # the logistic probe's test accuracy
    benefit: float  # steered minus unsteered task score of the target


def pearson_bootstrap(
    x: np.ndarray, y: np.ndarray, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, tuple[float, float]]:
    """Pearson r and a percentile bootstrap interval (pairs resampled by :func:`scipy.stats.bootstrap`).

    Args:
        x, y: paired samples.
        n_boot: bootstrap resamples.
        seed: seed of the resampling.
        level: coverage of the interval.

    Returns:
        ``(r, (low, high))``; NaN where fewer than 3 points or a constant column. A resample with
        a constant column has no r: it is left out of the percentiles.

    >>> r, (lo, hi) = pearson_bootstrap(np.arange(5.0), np.arange(5.0) ** 2)
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    nan = float("nan")
    no_r, no_interval = undefined_reason(x, y)
    if no_r:
        return nan, (nan, nan)
    r = float(np.corrcoef(x, y)[0, 1])
    if no_interval:
        return r, (nan, nan)

    def pearson(xb: np.ndarray, yb: np.ndarray, axis: int = -1) -> np.ndarray:
        xc = xb - xb.mean(axis=axis, keepdims=True)
        yc = yb - yb.mean(axis=axis, keepdims=True)
        den = np.sqrt((xc * xc).sum(axis=axis) * (yc * yc).sum(axis=axis))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 0, np.clip((xc * yc).sum(axis=axis) / den, -1.0, 1.0), np.nan)  # as np.corrcoef

    with warnings.catch_warnings():  # scipy warns when resamples with a constant column make its interval NaN
        warnings.simplefilter("ignore")
        res = bootstrap(
            (x, y),
            pearson,
            paired=True,
            vectorized=True,
            n_resamples=n_boot,
            method="percentile",
            confidence_level=level,
            rng=np.random.default_rng(seed),
        )
    rs = np.asarray(res.bootstrap_distribution)
    rs = rs[np.isfinite(rs)]
    if rs.size == 0:
        return r, (nan, nan)
    a = (1 - level) / 2
    return r, (float(np.quantile(rs, a)), float(np.quantile(rs, 1 - a)))


def probe_accuracy(acts_layer: Any, data: Any) -> float:
    """Logistic probe (standardised, sklearn defaults) fitted on probe_train, accuracy on test."""
    # lazy: scikit-learn loads on first use, so importing steering.correlate stays light
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.asarray(acts_layer, dtype=np.float64)
    tr, te = data.splits["probe_train"], data.splits["test"]
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X[tr], data.labels[tr])
    return float(clf.score(X[te], data.labels[te]))


def _probe_from_csv(path: Path, model: str, revision: str | None, dimension: str, layer: int) -> float | None:
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if (
                row.get("model") == model
                and (row.get("revision") or "") == (revision or "")
                and row.get("dimension") == dimension
                and str(row.get("layer")) == str(layer)
                and row.get("probe", "logistic") == "logistic"
                and row.get("test_acc")
            ):
                return float(row["test_acc"])
    return None


def undefined_reason(x: np.ndarray, y: np.ndarray) -> tuple[str, str]:
    """Why Pearson r, or its bootstrap interval, is undefined: ``(r_reason, interval_reason)``; ``""`` = defined.

    >>> undefined_reason(np.array([0.6, 0.7]), np.array([0.0, 0.0]))[0]
    'the steering benefit is 0 at every checkpoint (a constant has no correlation)'
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2:
        return f"it needs at least 2 checkpoints, got {len(x)}", ""
    if np.std(x) == 0:
        return f"probe accuracy is {x[0]:g} at every checkpoint (a constant has no correlation)", ""
    if np.std(y) == 0:
        return f"the steering benefit is {y[0]:g} at every checkpoint (a constant has no correlation)", ""
    if len(x) < 3:
        return "", f"a bootstrap interval needs at least 3 checkpoints, got {len(x)}"
    return "", ""


@dataclass
class CorrelateResult:
    """Rows of ``correlate.csv``, Pearson r and its interval, files written.

    Attributes:
        undefined: why r is undefined (NaN), or ``""``.
        ci_note: why the interval is undefined while r is defined, or ``""``.
    """

    rows: list[CorrelateRow]
    r: float
    ci: tuple[float, float]
    files: list[Path]
    undefined: str = ""
    ci_note: str = ""


def run_correlate(
    model: str,
    revisions: str | list[str] | None,
    target: str,
    dimension: str,
    layer: int,
    out: str | os.PathLike[str],
    *,
    settings: CorrelateSettings | None = None,
    **options: Any,
) -> CorrelateResult:
    """Probe accuracy vs steering benefit across a checkpoint series.

    Args:
        model: source series (model id or folder of checkpoints).
        revisions: revisions spec (as ``tracing-bench trace``), or ``None`` for a folder series.
        target: the model steered (chat/SFT).
        dimension: one of the five dimensions.
        layer: block index (vector and probe).
        out: output folder.
        settings: target revision, alpha, scale, probes, bootstrap resamples, data and how the
            target is scored (a :class:`~tracing_bench.settings.CorrelateSettings`; its ``scoring``
            as :func:`tracing_bench.steering.sweep.run_sweep`'s, tasks default
            ``trust_<dimension>``, ``preset="reference"``: the released code's vectors, probe and
            application).
        **options: those settings by keyword, flat (``alpha=2, limit=4``); they override
            ``settings`` (:meth:`~tracing_bench.settings.CorrelateSettings.from_options`).

    Returns:
        a :class:`CorrelateResult`.
    """
    settings = CorrelateSettings.from_options(settings, **options)
    scoring = settings.scoring
    plan = _plan(dimension, layer, Path(out), settings, model, revisions)
    plan.out.mkdir(parents=True, exist_ok=True)
    scorer = Scorer(target, scoring, revision=settings.target_revision, default_tasks=(plan.task,), lambada="off")
    base = _task_score(scorer, None, settings.alpha, plan.task)
    rows = [_checkpoint_row(ckpt, plan, scorer, settings.alpha, base) for ckpt in plan.checkpoints]
    xs, ys = np.array([x["probe_acc"] for x in rows]), np.array([x["benefit"] for x in rows])
    r, ci = pearson_bootstrap(xs, ys, n_boot=settings.n_boot, seed=scoring.seed)
    undefined, ci_note = undefined_reason(xs, ys)
    if not undefined and not ci_note and not all(map(np.isfinite, ci)):
        ci_note = "every bootstrap resample had a constant column"
    summary = {
        "pearson_r": r,
        "ci95": list(ci),
        "n": len(rows),
        "n_boot": settings.n_boot,
        "source": model,
        "target": target,
        "target_revision": settings.target_revision,
        "dimension": dimension,
        "layer": layer,
        "alpha": settings.alpha,
        "scale": plan.scale,
        "task": plan.task,
        "baseline_score": base,
        "limit": scoring.limit,
        "batch_size": scoring.batch_size,
        "seed": scoring.seed,
        "positions": scorer.positions,
        "preset": scoring.preset,
        "target_dtype": scoring.target_dtype,
        "probe_source": plan.probe_source,
        "dataset_md5": plan.data.md5,
        "data": settings.data,
        "package_version": __version__,
        "r_undefined_reason": undefined or None,
        "ci_undefined_reason": ci_note or None,
        "note": "pearson_r and ci95 are null where undefined; the reasons say why",
    }
    files = [
        atomic_write_csv(plan.out / "correlate.csv", CORRELATE_COLUMNS, rows),
        atomic_write_json(plan.out / "correlate.json", summary, default=str),
    ]
    return CorrelateResult(rows, r, ci, files, undefined=undefined, ci_note=ci_note)


@dataclass(frozen=True)
class _Plan:
    """What every checkpoint of a correlation shares: the dimension's data, layer, task and settings."""

    dimension: str
    layer: int
    out: Path
    task: str
    scale: Scale
    protocol: str
    source: HarvestSettings  # how the source checkpoints are read
    data: DimensionData
    data_arg: str | None  # the user's CSV as given, else None
    preset: Preset | None
    checkpoints: list[Checkpoint]
    probes_path: Path | None

    @property
    def probe_source(self) -> str:
        if self.probes_path is not None:
            return str(self.probes_path)
        if self.protocol == "reference":
            return "computed: the released probe (whole-file scaling, LogisticRegression(), last 20%)"
        return "computed: logistic on probe_train, test acc"


def _plan(
    dimension: str,
    layer: int,
    out: Path,
    settings: CorrelateSettings,
    model: str,
    revisions: str | list[str] | None,
) -> _Plan:
    """Checks the inputs (one-line errors, before any model is loaded), resolves the series, loads the data."""
    scoring, probes, data = settings.scoring, settings.probes, settings.data
    if dimension not in DIMENSIONS:
        raise TracingBenchError(f"--dimension {dimension!r} is not valid; use one of {', '.join(DIMENSIONS)}")
    check_outputs([(out, "--out", "folder"), (scoring.cache_dir or default_cache_dir(), "--cache-dir", "folder")])
    probes_path = Path(probes) if probes else None
    if probes_path is not None and not probes_path.is_file():
        raise TracingBenchError(f"--probes {probes_path} does not exist; give a trace's probes.csv or leave it out")
    checkpoints = resolve_series(model, revisions)
    fixed = preset_settings(scoring.preset)
    protocol = fixed.get("protocol", "paper")
    return _Plan(
        dimension=dimension,
        layer=layer,
        out=out,
        task=f"trust_{dimension}",
        scale=fixed.get("scale", settings.scale),
        protocol=protocol,
        source=HarvestSettings(dtype=scoring.dtype, device=scoring.device, cache_dir=scoring.cache_dir),
        data=load_dimension(str(data) if data is not None else dimension, protocol=protocol),
        data_arg=data,
        preset=scoring.preset,
        probes_path=probes_path,
        checkpoints=checkpoints,
    )


def _task_score(scorer: Scorer, vector: Path | None, alpha: float, task: str) -> float:
    """The dimension's task score of the target, steered by ``vector`` (``None``: unsteered)."""
    scores, _, _ = scorer.evaluate(None) if vector is None else scorer.evaluate(vector, alpha)
    score = next((s.score for s in scores if s.task == task), None)
    if score is None:
        raise TracingBenchError(f"the tasks scored do not include {task}; keep --tasks {task}")
    return score


def _checkpoint_row(ckpt: Checkpoint, plan: _Plan, scorer: Scorer, alpha: float, base: float) -> CorrelateRow:
    """One row of correlate.csv: the checkpoint's vector applied to the target, and its probe accuracy."""
    vec = extract_from_checkpoint(
        ckpt.model,
        revision=ckpt.revision,
        dimension=plan.dimension,
        layer=plan.layer,
        scale=plan.scale,
        harvest=plan.source,
        data=plan.data_arg,
        preset=plan.preset,
    )
    path = vec.save(plan.out / "vectors" / f"{safe_name(ckpt.label) or 'ckpt'}_{plan.dimension}_layer{plan.layer}.pt")
    acc = _probe_acc(ckpt, plan)
    return CorrelateRow(
        model=ckpt.model,
        revision=ckpt.revision or "",
        step="" if ckpt.step is None else ckpt.step,
        dimension=plan.dimension,
        layer=plan.layer,
        probe_acc=acc,
        benefit=_task_score(scorer, path, alpha, plan.task) - base,
    )


def _probe_acc(ckpt: Checkpoint, plan: _Plan) -> float:
    """The logistic probe's test accuracy: read from ``--probes``, else computed on the cached activations."""
    if plan.probes_path is not None:
        acc = _probe_from_csv(plan.probes_path, ckpt.model, ckpt.revision, plan.dimension, plan.layer)
        if acc is None:
            raise TracingBenchError(
                f"--probes {plan.probes_path} has no logistic row for {ckpt.model}@{ckpt.revision}, {plan.dimension}, "
                f"layer {plan.layer}; run the trace for that layer or leave --probes out to compute it"
            )
        return acc
    acts, _ = cached_activations(ckpt, plan.data, plan.source.for_protocol(plan.protocol))
    if plan.protocol == "reference":
        rows = reference_probe_layers(acts[plan.layer][None], plan.data.labels, plan.data.splits, probes=("logistic",))
        return float(rows[0]["test_acc"])
    return probe_accuracy(acts[plan.layer].numpy(), plan.data)
