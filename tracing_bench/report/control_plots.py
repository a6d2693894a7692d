"""The controls of a trace's probes as figures: ``controls_<dim>.png`` per dimension.

Left: at the last checkpoint, per layer, the probe's test accuracy (band: 95 % Wilson), the
control task's accuracy (:mod:`tracing_bench.probes.controls`), the transfer accuracy where the
data have groups with a meaning (band: 95 % Wilson), and the baseline's test accuracy: the
random-init model (``baseline.csv`` beside ``probes.csv``, :mod:`tracing_bench.baseline`), else
the first checkpoint. Right: selectivity (test minus control accuracy) per layer with its 95 %
paired interval; a selective probe clears 0. Tables in, PNG out, no computation.

>>> control_figures("runs/p70/probes.csv", "runs/p70/figures")
[PosixPath('runs/p70/figures/controls_fairness.png'), ...]
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from tracing_bench.compare.phases import cell_float, checkpoint_key
from tracing_bench.files import save_figure
from tracing_bench.report.plots import pyplot, read_rows


def _line(rows: list[dict[str, str]], layers: list[int], col: str) -> list[float]:
    by = {int(r["layer"]): cell_float(r.get(col)) for r in rows}
    return [by.get(lay, math.nan) for lay in layers]


def _probe_kind(rows: list[dict[str, str]]) -> str:
    kinds = {r.get("probe", "") for r in rows}
    return "logistic" if "logistic" in kinds else sorted(kinds)[0]


def _at(rows: list[dict[str, str]], which: int) -> tuple[list[dict[str, str]], str]:
    """The rows of the first (``which=0``) or last (``-1``) checkpoint in series order, and its label."""
    keys = list(dict.fromkeys((r.get("model", ""), checkpoint_key(r)) for r in rows))
    key = keys[which]
    at = [r for r in rows if (r.get("model", ""), checkpoint_key(r)) == key]
    return at, at[0].get("revision") or at[0].get("model") or str(key[1])


def _figure(rows: list[dict[str, str]], base_rows: list[dict[str, str]], dim: str, out: Path) -> Path:
    plt = pyplot()
    probe = _probe_kind(rows)
    rows = [r for r in rows if r.get("probe") == probe]
    last, last_label = _at(rows, -1)
    layers = sorted({int(r["layer"]) for r in last})
    base = [r for r in base_rows if r.get("probe") == probe]
    base_label = ""
    if base:
        base_label = "random-init baseline"
    elif len({checkpoint_key(r) for r in rows}) > 1:
        base, first_label = _at(rows, 0)
        base_label = f"first checkpoint ({first_label})"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(layers, _line(last, layers, "test_acc"), marker="o", color="C0", label=f"test ({last_label})")
    ax1.fill_between(
        layers,
        _line(last, layers, "test_acc_lo"),
        _line(last, layers, "test_acc_hi"),
        color="C0",
        alpha=0.12,
        linewidth=0,
    )
    ax1.plot(layers, _line(last, layers, "control_acc"), ls="--", marker=".", color="C3", label="control task")
    transfer = _line(last, layers, "transfer_acc")
    if not all(math.isnan(v) for v in transfer):
        ax1.plot(layers, transfer, marker="s", color="C2", label="transfer (held-out groups)")
        ax1.fill_between(
            layers,
            _line(last, layers, "transfer_acc_lo"),
            _line(last, layers, "transfer_acc_hi"),
            color="C2",
            alpha=0.1,
            linewidth=0,
        )
    if base:
        ax1.plot(layers, _line(base, layers, "test_acc"), ls=":", marker="x", color="C7", label=base_label)
    ax1.set_xlabel("layer")
    ax1.set_ylabel(f"test accuracy ({probe} probe)")
    ax1.set_title(f"{dim}: probe and its controls at {last_label}; bands: 95% Wilson", fontsize=9)
    ax1.legend(fontsize=7)
    sel = _line(last, layers, "selectivity")
    ax2.axhline(0.0, color="0.5", lw=0.8)
    ax2.plot(layers, sel, marker="o", color="C4")
    ax2.fill_between(
        layers,
        _line(last, layers, "selectivity_lo"),
        _line(last, layers, "selectivity_hi"),
        color="C4",
        alpha=0.15,
        linewidth=0,
    )
    ax2.set_xlabel("layer")
    ax2.set_ylabel("selectivity (test - control accuracy)")
    ax2.set_title(f"{dim}: selectivity at {last_label}; band: 95% paired interval", fontsize=9)
    return save_figure(fig, out / f"controls_{dim}.png", dpi=100)


def control_figures(
    probes_csv: str | os.PathLike[str] | None,
    out_dir: str | os.PathLike[str],
    baseline_csv: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Draw ``controls_<dim>.png`` for each dimension whose rows carry the control columns.

    Args:
        probes_csv: the trace's probes.csv.
        out_dir: folder for the PNGs.
        baseline_csv: the random-init baseline's rows (default: ``baseline.csv`` beside probes.csv).

    Returns:
        the PNG paths written (none for a trace without controls).
    """
    rows = read_rows(probes_csv)
    if baseline_csv is None and probes_csv is not None:
        baseline_csv = Path(probes_csv).parent / "baseline.csv"
    base = read_rows(baseline_csv)
    out = Path(out_dir)
    paths = []
    for dim in dict.fromkeys(r["dimension"] for r in rows):
        dim_rows: list[Any] = [r for r in rows if r["dimension"] == dim]
        if all(not r.get("control_acc") for r in dim_rows):
            continue
        paths.append(_figure(dim_rows, [r for r in base if r["dimension"] == dim], dim, out))
    return paths
