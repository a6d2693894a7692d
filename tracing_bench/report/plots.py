"""Figures of a trace and of a leaderboard: tidy tables in, PNG files out, no computation.

* :func:`trace_figures`: ``probes.csv`` (+ ``mi.csv``) -> per dimension
  ``probes_<dim>.png`` (probe test accuracy against layer, one line per checkpoint, and against
  step, one line per layer: the paper's Figure 2; shaded: the 95 % Wilson interval of each
  accuracy), ``probes_<dim>_heatmap.png`` (layer x checkpoint) and, when ``mi.csv`` has rows,
  ``mi_<dim>.png`` (I(T;X) and I(T;Y) against checkpoint, one line per layer, shaded: +-1
  standard deviation over the half-sample noise estimate; the paper's Figure 7). A turn of
  I(T;X) is marked only where ``findings.json`` (:mod:`tracing_bench.compare.findings`) found
  one beyond the estimator's noise.
* :func:`radar_chart`: the five dimensions per leaderboard row.
* Alpha curves with the fluency guard are drawn by :mod:`tracing_bench.report.steer_plots`
  (``plot_sweep``), the one implementation.

Steps that span two decades or more go on a log axis (symlog when step 0 is in the series);
checkpoints without a step are placed in series order and labelled by revision.

>>> trace_figures("runs/p70/probes.csv", "runs/p70/mi.csv", "runs/p70/figures")
[PosixPath('runs/p70/figures/probes_fairness.png'), ...]
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tracing_bench.compare.findings import read_findings, turn_keys
from tracing_bench.compare.findings_schema import Findings
from tracing_bench.compare.phases import cell_float, checkpoint_key
from tracing_bench.files import save_figure

#: Dimension order of the paper.
DIMENSION_ORDER = ("reliability", "toxicity", "privacy", "fairness", "robustness")


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only, no display needed)."""
    # lazy: the Agg backend is chosen before pyplot loads
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_rows(path: str | os.PathLike[str] | None) -> list[dict[str, str]]:
    """Rows of a tidy CSV as dicts; an empty list when the path is None, missing or holds only a header."""
    if path is None or not Path(path).is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


DPI = 100  # resolution of every figure this module saves (save_figure closes it)


def _dims(rows: list[dict[str, str]]) -> list[str]:
    present = {r["dimension"] for r in rows}
    return [d for d in DIMENSION_ORDER if d in present] + sorted(present - set(DIMENSION_ORDER))


def _checkpoints(rows: list[dict[str, str]]) -> list[tuple[Any, str]]:
    """Checkpoints in series order as (key, label); sorted by step when every row has one."""
    seen: dict[Any, str] = {}
    for r in rows:
        key = (r.get("model", ""), checkpoint_key(r))
        if key not in seen:
            seen[key] = r.get("revision") or r.get("model") or str(key[1])
    keys = list(seen)
    if all(isinstance(k[1], int) for k in keys):
        keys.sort(key=lambda k: (k[1], k[0]))
    return [(k, seen[k]) for k in keys]


def _x_axis(ax: Any, ckpts: list[tuple[Any, str]]) -> dict[Any, float]:
    """x position per checkpoint key; sets a log / symlog axis when steps span two decades."""
    steps = [k[1] for k, _ in ckpts]
    if steps and all(isinstance(s, int) for s in steps) and len(set(k[0] for k, _ in ckpts)) == 1:
        positive = [s for s in steps if s > 0]
        if positive and max(positive) / min(positive) >= 100:
            if min(steps) <= 0:
                ax.set_xscale("symlog", linthresh=max(1, min(positive)))
            else:
                ax.set_xscale("log")
        ax.set_xlabel("step")
        return {k: float(k[1]) for k, _ in ckpts}
    ax.set_xticks(range(len(ckpts)))
    ax.set_xticklabels([label for _, label in ckpts], rotation=45, ha="right", fontsize=7)
    ax.set_xlabel("checkpoint")
    return {k: float(i) for i, (k, _) in enumerate(ckpts)}


def _probe_rows(rows: list[dict[str, str]]) -> tuple[list[dict[str, str]], str, list[tuple[Any, str]], list[int]]:
    """Rows of the logistic probe (or of the first probe present), its name, the checkpoints, the layers."""
    probes = sorted({r.get("probe", "") for r in rows})
    probe = "logistic" if "logistic" in probes else probes[0]
    rows = [r for r in rows if r.get("probe", "") == probe]
    return rows, probe, _checkpoints(rows), sorted({int(r["layer"]) for r in rows})


def _probe_figure(rows: list[dict[str, str]], dim: str, out: Path) -> Path:
    plt = pyplot()
    rows, probe, ckpts, layers = _probe_rows(rows)
    acc = {((r.get("model", ""), checkpoint_key(r)), int(r["layer"])): cell_float(r["test_acc"]) for r in rows}
    band = {
        ((r.get("model", ""), checkpoint_key(r)), int(r["layer"])): (
            cell_float(r.get("test_acc_lo")),
            cell_float(r.get("test_acc_hi")),
        )
        for r in rows
    }
    nan2 = (math.nan, math.nan)
    # lazy: matplotlib loads on first use, so importing report.plots stays light
    from matplotlib.ticker import MaxNLocator

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    cmap = plt.get_cmap("viridis")
    for i, (key, label) in enumerate(ckpts):
        color = cmap(i / max(1, len(ckpts) - 1))
        ax1.plot(layers, [acc.get((key, lay), math.nan) for lay in layers], marker=".", color=color, label=label)
        lo = [band.get((key, lay), nan2)[0] for lay in layers]
        hi = [band.get((key, lay), nan2)[1] for lay in layers]
        if not all(math.isnan(v) for v in lo):
            ax1.fill_between(layers, lo, hi, color=color, alpha=0.08, linewidth=0)
    ax1.set_xlabel("layer")
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.set_ylabel(f"test accuracy ({probe} probe)")
    ax1.set_title(f"{dim}: per layer, one line per checkpoint; band: 95% Wilson", fontsize=9)
    if len(ckpts) <= 12:
        ax1.legend(fontsize=7, ncol=2)
    else:
        sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, len(ckpts) - 1))
        bar = fig.colorbar(sm, ax=ax1)
        bar.set_label("checkpoint (series order)")
    xpos = _x_axis(ax2, ckpts)
    lcmap = plt.get_cmap("plasma")
    for j, lay in enumerate(layers):
        xs = [xpos[k] for k, _ in ckpts]
        ax2.plot(
            xs,
            [acc.get((k, lay), math.nan) for k, _ in ckpts],
            marker=".",
            color=lcmap(j / max(1, len(layers))),
            label=f"layer {lay}",
        )
        lo = [band.get((k, lay), nan2)[0] for k, _ in ckpts]
        hi = [band.get((k, lay), nan2)[1] for k, _ in ckpts]
        if not all(math.isnan(v) for v in lo):
            ax2.fill_between(xs, lo, hi, color=lcmap(j / max(1, len(layers))), alpha=0.12, linewidth=0)
    ax2.set_ylabel(f"test accuracy ({probe} probe)")
    ax2.set_title(f"{dim}: across checkpoints, one line per layer; band: 95% Wilson", fontsize=9)
    if len(layers) <= 12:
        ax2.legend(fontsize=7, ncol=2)
    return save_figure(fig, out / f"probes_{dim}.png", dpi=DPI)


def _heatmap(rows: list[dict[str, str]], dim: str, out: Path) -> Path:
    plt = pyplot()
    rows, probe, ckpts, layers = _probe_rows(rows)
    col = {k: i for i, (k, _) in enumerate(ckpts)}
    row_of = {lay: i for i, lay in enumerate(layers)}
    grid = np.full((len(layers), len(ckpts)), np.nan)
    for r in rows:
        grid[row_of[int(r["layer"])], col[(r.get("model", ""), checkpoint_key(r))]] = cell_float(r["test_acc"])
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * len(ckpts) + 2), max(3.0, 0.25 * len(layers) + 1.5)))
    im = ax.imshow(grid, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest")
    ax.set_xticks(range(len(ckpts)))
    ax.set_xticklabels([label for _, label in ckpts], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(layers)))
    ax.set_yticklabels([str(lay) for lay in layers], fontsize=7)
    ax.set_xlabel("checkpoint")
    ax.set_ylabel("layer")
    ax.set_title(f"{dim}: test accuracy ({probe} probe), layer x checkpoint", fontsize=10)
    fig.colorbar(im, ax=ax).set_label("test accuracy")
    return save_figure(fig, out / f"probes_{dim}_heatmap.png", dpi=DPI)


def _mi_figure(rows: list[dict[str, str]], dim: str, turns: Mapping[tuple[str, int], Any], out: Path) -> Path:
    plt = pyplot()
    ckpts = _checkpoints(rows)
    layers = sorted({int(r["layer"]) for r in rows})
    vals = {
        ((r.get("model", ""), checkpoint_key(r)), int(r["layer"])): (cell_float(r["i_xt"]), cell_float(r["i_yt"]))
        for r in rows
    }
    sds = {
        ((r.get("model", ""), checkpoint_key(r)), int(r["layer"])): (
            cell_float(r.get("i_xt_sd")),
            cell_float(r.get("i_yt_sd")),
        )
        for r in rows
    }
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    xpos = _x_axis(ax1, ckpts)
    _x_axis(ax2, ckpts)
    cmap = plt.get_cmap("plasma")
    model = ckpts[0][0][0] if ckpts else ""
    marked = False
    for j, lay in enumerate(layers):
        color = cmap(j / max(1, len(layers)))
        xs = [xpos[k] for k, _ in ckpts]
        ixt = [vals.get((k, lay), (math.nan, math.nan))[0] for k, _ in ckpts]
        iyt = [vals.get((k, lay), (math.nan, math.nan))[1] for k, _ in ckpts]
        ax1.plot(xs, ixt, marker=".", color=color, label=f"layer {lay}")
        ax2.plot(xs, iyt, marker=".", color=color, label=f"layer {lay}")
        sx = [sds.get((k, lay), (math.nan, math.nan))[0] for k, _ in ckpts]
        sy = [sds.get((k, lay), (math.nan, math.nan))[1] for k, _ in ckpts]
        if not all(math.isnan(v) for v in sx):
            for ax, mid, sd in ((ax1, ixt, sx), (ax2, iyt, sy)):
                lo, hi = zip(*((v - e, v + e) for v, e in zip(mid, sd, strict=True)), strict=True)
                ax.fill_between(xs, lo, hi, color=color, alpha=0.15, linewidth=0)
        turn = turns.get((dim, lay))
        if turn is not None and (model, turn) in xpos:
            x = xpos[(model, turn)]
            y = vals[((model, turn), lay)][0]
            ax1.scatter(
                [x],
                [y],
                marker="*",
                s=140,
                color=color,
                edgecolors="black",
                zorder=4,
                label="turn beyond noise" if not marked else None,
            )
            ax2.axvline(x, color=color, ls=":", lw=0.8)
            marked = True
    ax1.set_ylabel("I(T;X)  (nHSIC)")
    ax1.set_title(f"{dim}: I(T;X) per layer; star = turn beyond noise; shaded: +-1 sd", fontsize=10)
    ax2.set_ylabel("I(T;Y)  (nHSIC)")
    ax2.set_title(f"{dim}: I(T;Y) per layer; dotted = turn of I(T;X)", fontsize=10)
    if len(layers) <= 12:
        ax1.legend(fontsize=7, ncol=2)
    return save_figure(fig, out / f"mi_{dim}.png", dpi=DPI)


def trace_figures(
    probes_csv: str | os.PathLike | None,
    mi_csv: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    *,
    findings: Findings | str | os.PathLike | None = None,
) -> list[Path]:
    """Draw the figures of a trace from its tidy tables.

    Args:
        probes_csv: ``probes.csv`` written by ``tracing-bench trace``; missing or empty = no probe figures.
        mi_csv: ``mi.csv``; ``None``, missing or header-only (a trace without ``--mi``) = no MI figures.
        out_dir: folder for the PNGs (created).
        findings: the trace's findings (a dict, or the path of ``findings.json``); default: the
            ``findings.json`` next to ``mi_csv``. Turns are marked only where it reports one.

    Returns:
        the PNG paths written, per dimension: ``probes_<dim>.png``, ``probes_<dim>_heatmap.png``
        and, with MI rows, ``mi_<dim>.png``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    probe_rows = read_rows(probes_csv)
    mi_rows = read_rows(mi_csv)
    paths: list[Path] = []
    for dim in _dims(probe_rows):
        rows = [r for r in probe_rows if r["dimension"] == dim]
        paths.append(_probe_figure(rows, dim, out))
        paths.append(_heatmap(rows, dim, out))
    if mi_rows:
        if findings is None and mi_csv is not None:
            findings = read_findings(Path(mi_csv).parent)
        elif isinstance(findings, (str, os.PathLike)):
            findings = read_findings(findings)
        turns = turn_keys(findings)
        for dim in _dims(mi_rows):
            paths.append(_mi_figure([r for r in mi_rows if r["dimension"] == dim], dim, turns, out))
    return paths


def radar_chart(
    rows: Sequence[Mapping[str, Any]],
    out_png: str | os.PathLike,
    *,
    columns: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Path | None:
    """One polygon per leaderboard row over the five trust dimensions.

    Args:
        rows: leaderboard rows (dicts) with a ``label`` and one score per column.
        out_png: the PNG to write.
        columns: dimension -> column name (default ``trust_<dimension>``); dimensions whose
            column no row has are left out.
        labels: dimension -> axis label (e.g. with the direction arrow from ``higher_is_better``).

    Returns:
        the path, or ``None`` when fewer than three dimensions have scores.
    """
    columns = dict(columns or {d: f"trust_{d}" for d in DIMENSION_ORDER})
    # an axis stays when some row has the column, even as NaN: a NaN score is shown (a gap in the
    # polygon, "NaN" on the axis label), never dropped silently
    dims = [d for d, c in columns.items() if any(r.get(c) is not None for r in rows)]
    if len(dims) < 3:
        return None
    nan_dims = {
        d
        for d in dims
        if any(r.get(columns[d]) is not None and math.isnan(cell_float(r.get(columns[d]))) for r in rows)
    }
    plt = pyplot()
    angles = np.linspace(0, 2 * np.pi, len(dims), endpoint=False).tolist()
    fig, ax = plt.subplots(figsize=(5.5, 5.5), subplot_kw={"polar": True})
    for r in rows:
        vals = [cell_float(r.get(columns[d])) for d in dims]
        ax.plot(angles + angles[:1], vals + vals[:1], marker="o", label=str(r.get("label", "")))
        if not any(math.isnan(v) for v in vals):
            ax.fill(angles + angles[:1], vals + vals[:1], alpha=0.08)
    ax.set_xticks(angles)
    ax.set_xticklabels([(labels or {}).get(d, d) + ("\n(NaN ⚠)" if d in nan_dims else "") for d in dims], fontsize=9)
    values = [cell_float(r.get(columns[d])) for r in rows for d in dims]
    finite = [v for v in values if not math.isnan(v)]
    top, bottom = max(finite, default=1.0), min(finite, default=0.0)
    # chance-corrected headlines run from -1 to 1 (0 = chance): the axis starts below 0 when a value does
    ax.set_ylim(0 if bottom >= 0 else (-1 if bottom >= -1 else bottom * 1.05), 1 if top <= 1 else top * 1.05)
    ax.set_title("trust dimensions per model (task headline metric)", fontsize=10, pad=18)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=1)
    path = Path(out_png)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, path, dpi=DPI)
