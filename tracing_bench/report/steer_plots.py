"""Plots of the steering instruments: tidy tables in, PNGs out, no computation beyond grouping.

* :func:`plot_sweep`: ``sweep.csv`` -> ``sweep_scores.png`` (one panel per task and metric: score
  against alpha with its lm-eval standard error as bars, one line per layer, the unsteered
  baseline dashed with its +-1 standard error shaded, inadmissible settings hollow) and
  ``sweep_ppl.png`` (held-out perplexity against alpha, per layer, baseline dashed).
* :func:`plot_correlate`: ``correlate.csv`` (+ the r and interval) -> a scatter of steering
  benefit against probe accuracy, points labelled by revision (the paper's Figure 5).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from tracing_bench.compare.phases import cell_float
from tracing_bench.files import save_figure
from tracing_bench.report.plots import pyplot, read_rows

DPI = 110  # resolution of every figure this module saves (save_figure closes it)


def plot_sweep(table: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """Score and perplexity against alpha from a ``sweep.csv``.

    Args:
        table: ``sweep.csv`` written by ``tracing-bench steer sweep``.
        out_dir: folder for ``sweep_scores.png`` and ``sweep_ppl.png``.

    Returns:
        the two paths.
    """
    plt = pyplot()
    rows = read_rows(table)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = {(r["task"], r["metric"]): float(r["score"]) for r in rows if r["vector"] == "none"}
    base_se = {(r["task"], r["metric"]): cell_float(r.get("stderr")) for r in rows if r["vector"] == "none"}
    steered = [r for r in rows if r["vector"] != "none"]
    keys = sorted({(r["task"], r["metric"]) for r in rows})
    ncol = min(3, max(1, len(keys)))
    nrow = (len(keys) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        by_layer: dict[str, list[tuple[float, float, bool, float]]] = defaultdict(list)
        for r in steered:
            if (r["task"], r["metric"]) == key:
                by_layer[r["layer"]].append(
                    (float(r["alpha"]), float(r["score"]), r["admissible"] == "True", cell_float(r.get("stderr")))
                )
        for layer, pts in sorted(by_layer.items(), key=lambda kv: int(kv[0])):
            pts.sort()
            (line,) = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"layer {layer}")
            if any(p[3] == p[3] for p in pts):  # stderr bars where lm-eval reports one
                ax.errorbar(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    yerr=[0.0 if p[3] != p[3] else p[3] for p in pts],
                    fmt="none",
                    ecolor=line.get_color(),
                    elinewidth=1,
                    capsize=3,
                    alpha=0.7,
                )
            hollow = [p for p in pts if not p[2]]
            if hollow:
                ax.scatter(
                    [p[0] for p in hollow],
                    [p[1] for p in hollow],
                    s=60,
                    facecolors="white",
                    edgecolors=line.get_color(),
                    zorder=3,
                )
        if key in base:
            ax.axhline(base[key], color="grey", ls="--", lw=1, label="unsteered")
            se = base_se.get(key, float("nan"))
            if se == se:
                ax.axhspan(base[key] - se, base[key] + se, color="grey", alpha=0.12, lw=0)
        ax.set_title(f"{key[0]} ({key[1]})", fontsize=9)
        ax.set_xlabel("alpha (+ = toward trustworthy)")
        ax.set_ylabel(key[1])
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper right", fontsize=8)
    fig.suptitle(
        "steering sweep: score vs alpha, bars = +-1 stderr (hollow = inadmissible: perplexity over the limit)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 0.9, 0.95))
    scores = save_figure(fig, out / "sweep_scores.png", dpi=DPI)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ppl_by_layer: dict[str, dict[float, float]] = defaultdict(dict)
    for r in steered:
        ppl_by_layer[r["layer"]][float(r["alpha"])] = float(r["ppl"])
    for layer, by_alpha in sorted(ppl_by_layer.items(), key=lambda kv: int(kv[0])):
        xs = sorted(by_alpha)
        ax.plot(xs, [by_alpha[x] for x in xs], marker="o", label=f"layer {layer}")
    base_ppl = [float(r["ppl"]) for r in rows if r["vector"] == "none"]
    if base_ppl:
        ax.axhline(base_ppl[0], color="grey", ls="--", lw=1, label="unsteered")
    ax.set_xlabel("alpha (+ = toward trustworthy)")
    ax.set_ylabel("perplexity (held-out text)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title("fluency guard", fontsize=10)
    ppl = save_figure(fig, out / "sweep_ppl.png", dpi=DPI)
    return [scores, ppl]


def plot_correlate(
    table: str | os.PathLike,
    out_png: str | os.PathLike,
    *,
    r: float | None = None,
    ci: tuple[float, float] | None = None,
) -> Path:
    """Steering benefit against probe accuracy, one point per checkpoint.

    Args:
        table: ``correlate.csv``.
        out_png: the PNG to write.
        r: Pearson r to print in the title.
        ci: its bootstrap interval.

    Returns:
        the path written.
    """
    plt = pyplot()
    rows = read_rows(table)
    fig, ax = plt.subplots(figsize=(5, 4))
    xs = [float(row["probe_acc"]) for row in rows]
    ys = [float(row["benefit"]) for row in rows]
    ax.scatter(xs, ys)
    for row, x, y in zip(rows, xs, ys, strict=True):
        ax.annotate(row["revision"] or row["model"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("probe accuracy at the layer")
    ax.set_ylabel("steering benefit (score delta on the target)")
    title = rows[0]["dimension"] + f", layer {rows[0]['layer']}" if rows else ""
    if r is not None and r == r:
        title += f": Pearson r = {r:.2f}"
        if ci is not None and ci[0] == ci[0]:
            title += f" [{ci[0]:.2f}, {ci[1]:.2f}]"
    ax.set_title(title, fontsize=10)
    path = Path(out_png)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, path, dpi=DPI)
