"""The part files of a trace: one JSON per (checkpoint, dimension), what it holds, where it lives.

A trace writes each (checkpoint, dimension) result to
``OUT/parts/<settings key>/<checkpoint>/<dimension>.json`` as soon as it is done
(:func:`part_path`, :func:`write_part`), so an interrupted run loses at most the pair in flight and
the same command resumes; the settings key (:meth:`tracing_bench.settings.TraceSettings.key`)
changes with every setting that changes the numbers, so changed settings never reuse stale parts.

A part (:func:`build_part`) holds the rows of ``probes.csv`` and ``mi.csv`` for its pair (the
columns :data:`PROBE_COLUMNS` and :data:`MI_COLUMNS`), and what the paired tests of findings.json
need (:mod:`tracing_bench.compare.findings`): per layer and probe one bit per test statement
(right or wrong), the hash of the test statements in order with their labels
(:func:`statements_sha256`), and with MI the nHSIC values on ``mi_noise`` seeded half-samples of
the probe-train statements (:func:`noise_seeds`). :func:`collect_parts` reads a finished series
back in series order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tracing_bench import __version__
from tracing_bench.checkpoints import Checkpoint
from tracing_bench.dimensions import DimensionData
from tracing_bench.errors import TracingBenchError
from tracing_bench.files import atomic_write_text, dumps_json, pack_bits, safe_name, text_hash
from tracing_bench.probes.controls import add_controls
from tracing_bench.probes.layers import probe_layers
from tracing_bench.probes.mi import mi_layers
from tracing_bench.settings import PROBES, TraceSettings, parse_layers
from tracing_bench.timings import stage

PROBE_COLUMNS: tuple[str, ...] = (
    "model",
    "revision",
    "step",
    "dimension",
    "layer",
    "protocol",
    "pooling",
    "probe",
    "n_train",
    "val_acc",
    "val_auroc",
    "test_acc",
    "test_auroc",
    "dataset_md5",
    "package_version",
    "n_test",
    "test_acc_lo",
    "test_acc_hi",
    "test_auroc_lo",
    "test_auroc_hi",
    "control_acc",
    "selectivity",
    "selectivity_lo",
    "selectivity_hi",
    "transfer_acc",
    "transfer_acc_lo",
    "transfer_acc_hi",  # the controls (tracing_bench.probes.controls.CONTROL_COLUMNS)
)
MI_COLUMNS: tuple[str, ...] = (
    "model",
    "revision",
    "step",
    "dimension",
    "layer",
    "sigma",
    "m",
    "i_xt",
    "i_yt",
    "dataset_md5",
    "package_version",
    "noise_k",
    "noise_m",
    "i_xt_sd",
    "i_yt_sd",
)


# ------------------------------------------------------------------------------ where and how
def checkpoint_slug(ckpt: Checkpoint) -> str:
    """A file-system-safe, unique folder name for a checkpoint."""
    readable = safe_name(ckpt.label)[:60]
    digest = text_hash(f"{ckpt.model}@{ckpt.revision}", "sha1")[:10]
    return f"{readable}-{digest}"


def part_path(out: str | Path, settings: TraceSettings, ckpt: Checkpoint, dimension: str) -> Path:
    """Where the result of one (checkpoint, dimension) pair is stored.

    ``dimension`` is :attr:`tracing_bench.dimensions.DimensionData.key_name`: a bundled name, or
    ``csv-<stem>-<md5>`` for a CSV, so that files named alike never share a part.
    """
    name = safe_name(dimension)
    return Path(out) / "parts" / settings.key() / checkpoint_slug(ckpt) / f"{name}.json"


def read_part(path: Path, md5: str) -> dict[str, Any] | None:
    """A part of this package version made from data with this md5, or ``None`` (missing, unreadable, stale)."""
    try:
        part = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if part.get("dataset_md5") != md5 or part.get("package_version") != __version__:
        return None
    return part


def write_part(path: Path, part: dict[str, Any]) -> Path:
    """Write a part atomically (a reader sees the whole file or none)."""
    return atomic_write_text(path, dumps_json(part, indent=1, sort_keys=True))


def statements_sha256(data: DimensionData, idx: np.ndarray) -> str:
    """sha256 of the statements at ``idx`` (in order) with their labels: equal hashes = the same test set."""
    return text_hash("".join(f"{int(data.labels[i])}\t{data.statements[i]}\n" for i in np.asarray(idx).tolist()))


def noise_seeds(seed: int, k: int) -> list[int]:
    """Seeds of the ``k`` half-samples of the MI noise estimate (the same at every checkpoint)."""
    return [1_000_003 * (int(seed) + 1) + j for j in range(int(k))]


# ------------------------------------------------------------------------------ what a part holds
def build_part(
    ckpt: Checkpoint,
    data: DimensionData,
    acts: np.ndarray,
    prov: dict[str, Any],
    settings: TraceSettings,
    *,
    probe: Callable[..., list[dict[str, Any]]] = probe_layers,
) -> dict[str, Any]:
    """Probe (and with ``settings.mi`` MI-probe) one dimension's activations of one checkpoint.

    Args:
        ckpt: the checkpoint.
        data: the loaded dimension (its ``name`` is the run's display name).
        acts: [blocks, statements, hidden] activations of all its statements.
        prov: the activation cache entry's provenance.
        settings: the trace settings (layers, probes, protocol, MI options).
        probe: the probes of every layer (:func:`tracing_bench.probes.layers.probe_layers`, or a
            replacement a test passes through :class:`tracing_bench.trace.TraceSteps`).

    Returns:
        The part: its probe and MI rows, the test statements' hash and labels, the MI noise
        half-samples, and under ``reference`` the released probe's convergence counts.
    """
    layers = parse_layers(settings.layers, acts.shape[0])
    common = {
        "model": settings.series_name or ckpt.model,
        "revision": _revision_column(ckpt, settings),
        "step": ckpt.step,
        "dimension": data.name,
    }
    test_split = "test" if settings.protocol == "paper" else "probe_val"
    with stage("probe"):
        probe_rows, reference = (
            _probe_rows(acts, data, settings, layers, common, probe) if settings.probes else ([], {})
        )
        controls = None
        if settings.controls and settings.protocol == "paper" and probe_rows:
            controls = add_controls(
                probe_rows, acts[layers], data, probes=tuple(settings.probes), layers=layers, seed=settings.seed
            )
    mi_rows: list[dict[str, Any]] = []
    mi_noise: dict[str, Any] | None = None
    if settings.mi:
        with stage("mi"):
            mi_rows, mi_noise = _mi_rows(acts, data, settings, layers, common)
    test_idx = np.asarray(data.splits[test_split])
    return {
        "checkpoint": {"model": ckpt.model, "revision": ckpt.revision, "step": ckpt.step, "label": ckpt.label},
        "dimension": data.name,
        "dataset_md5": data.md5,
        "package_version": __version__,
        "settings_key": settings.key(),
        "activations": {
            k: prov.get(k)
            for k in ("key", "resolved_commit", "n_layers", "hidden", "torch_dtype", "pooling", "dtype", "n_statements")
        },
        "probes": probe_rows,
        "mi": mi_rows,
        "mi_noise": mi_noise,
        "test_statements": {
            "split": test_split,
            "n": int(test_idx.size),
            "sha256": statements_sha256(data, test_idx),
            "labels": pack_bits(np.asarray(data.labels)[test_idx] == 1),
        },
        **({"reference": reference} if reference else {}),
        **({"controls": controls} if controls else {}),
    }


def _revision_column(ckpt: Checkpoint, settings: TraceSettings) -> str:
    if ckpt.revision:
        return ckpt.revision
    if ckpt.is_local and Path(ckpt.model).resolve() != Path(settings.series_name or ckpt.model).expanduser().resolve():
        return Path(ckpt.model).name  # a sub-folder of a folder series
    return ""


def _num(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return float(v)
    return v


def _probe_rows(
    acts: np.ndarray,
    data: DimensionData,
    settings: TraceSettings,
    layers: list[int],
    common: dict[str, Any],
    probe: Callable[..., list[dict[str, Any]]],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The probes.csv rows (with ``test_correct`` bits) and, under ``reference``, the fits' counts."""
    results = probe(
        acts[layers],
        data.labels,
        data.splits,
        protocol=settings.protocol,
        probes=tuple(settings.probes),
        layers=layers,
        details=True,
    )
    rows = [
        {
            **common,
            "layer": int(r["layer"]),
            "protocol": settings.protocol,
            "pooling": settings.harvest.pooling,
            "probe": r["probe"],
            "n_train": _num(r.get("n_train")),
            **{k: _num(r.get(k)) for k in ("val_acc", "val_auroc", "test_acc", "test_auroc")},
            "dataset_md5": data.md5,
            "package_version": __version__,
            **{k: _num(r.get(k)) for k in ("n_test", "test_acc_lo", "test_acc_hi", "test_auroc_lo", "test_auroc_hi")},
            "test_correct": pack_bits(r["test_correct"]),
        }
        for r in results
    ]
    if settings.protocol != "reference":
        return rows, {}
    fits = [r for r in results if r.get("probe") == "logistic" and "converged" in r]
    return rows, {
        "logistic_fits": len(fits),
        "convergence_warnings": sum(1 for r in fits if not r["converged"]),
        "not_converged_layers": [int(r["layer"]) for r in fits if not r["converged"]],
        "n_iter": {str(int(r["layer"])): int(r["n_iter"]) for r in fits},
        "constant_features": {
            str(int(r["layer"])): int(r["constant_features"]) for r in fits if r.get("constant_features")
        },
    }


def _mi_rows(
    acts: np.ndarray, data: DimensionData, settings: TraceSettings, layers: list[int], common: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The mi.csv rows (X = block 0, T = each traced layer, on probe_train) and the noise half-samples."""
    sel = [0] + [layer for layer in layers if layer != 0]  # X = block 0 always comes first
    picked = acts[sel]  # a copy (fancy indexing): made once for the estimate and its noise
    rows = mi_layers(
        picked,
        data.labels,
        data.splits,
        protocol=settings.protocol,
        split="probe_train",
        x_layer=0,
        layers=sel,
        sigma=settings.sigma,
        subsample=settings.mi_subsample,
        seed=settings.seed,
    )
    noise = _mi_noise(picked, data, settings, sel, int(rows[0]["m"])) if rows else None
    out = [
        {
            **common,
            "layer": int(r["layer"]),
            "sigma": float(r["sigma"]),
            "m": int(r["m"]),
            "i_xt": float(r["i_xt"]),
            "i_yt": float(r["i_yt"]),
            "dataset_md5": data.md5,
            "package_version": __version__,
            **_noise_columns(noise, int(r["layer"])),
        }
        for r in rows
        if int(r["layer"]) in layers
    ]
    return sorted(out, key=lambda r: r["layer"]), noise


def _mi_noise(
    acts: np.ndarray, data: DimensionData, settings: TraceSettings, names: list[int], m: int
) -> dict[str, Any] | None:
    """nHSIC on ``settings.mi_noise`` seeded half-samples (m // 2 probe-train statements each).

    The half-samples are drawn from the probe-train split with fixed seeds, so they are the same
    statements at every checkpoint and differences between checkpoints are paired. For a
    mean-like statistic, the spread of half-sample estimates drawn from the m statements used is
    the spread of the m-statement estimate itself (half-sampling); when the main estimate uses
    a subsample of a larger split the spread over-states the noise (conservative).
    """
    k = int(settings.mi_noise)
    half = m // 2
    if k < 2 or half < 5:
        return None
    seeds = noise_seeds(settings.seed, k)
    i_xt: dict[str, list[float]] = {str(n): [] for n in names}
    i_yt: dict[str, list[float]] = {str(n): [] for n in names}
    for sd in seeds:
        rows = mi_layers(
            acts,
            data.labels,
            data.splits,
            protocol=settings.protocol,
            split="probe_train",
            x_layer=0,
            layers=names,
            sigma=settings.sigma,
            subsample=half,
            seed=sd,
        )
        for r in rows:
            i_xt[str(int(r["layer"]))].append(float(r["i_xt"]))
            i_yt[str(int(r["layer"]))].append(float(r["i_yt"]))
    return {
        "k": k,
        "m": half,
        "seeds": seeds,
        "i_xt": i_xt,
        "i_yt": i_yt,
        "method": "nHSIC on k seeded half-samples of the probe-train statements (the same at every checkpoint)",
    }


def _noise_columns(noise: dict[str, Any] | None, layer: int) -> dict[str, Any]:
    if not noise:
        return {"noise_k": None, "noise_m": None, "i_xt_sd": None, "i_yt_sd": None}
    xs, ys = noise["i_xt"][str(layer)], noise["i_yt"][str(layer)]
    return {
        "noise_k": noise["k"],
        "noise_m": noise["m"],
        "i_xt_sd": float(np.std(xs, ddof=1)),
        "i_yt_sd": float(np.std(ys, ddof=1)),
    }


# ------------------------------------------------------------------------------ a finished series
@dataclass
class SeriesParts:
    """The parts of a finished series, read back in series order.

    Attributes:
        probe_rows: every probes.csv row, sorted by checkpoint, dimension, layer, probe.
        mi_rows: every mi.csv row, sorted by checkpoint, dimension, layer.
        checkpoints: per checkpoint: model, revision, step, label, resolved commit.
        parts: dimension name -> its parts, one per checkpoint (what findings.json tests).
        reference_fits: under ``reference``, the released probe's convergence counts per pair.
    """

    probe_rows: list[dict[str, Any]] = field(default_factory=list)
    mi_rows: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    parts: dict[str, list[Mapping[str, Any]]] = field(default_factory=dict)
    reference_fits: list[dict[str, Any]] = field(default_factory=list)


def collect_parts(
    out: str | Path, ckpts: list[Checkpoint], datas: list[DimensionData], settings: TraceSettings
) -> SeriesParts:
    """Read every part of a series.

    Raises:
        TracingBenchError: a part is missing (the series is not finished).
    """
    got = SeriesParts(parts={d.name: [] for d in datas})
    for ci, ckpt in enumerate(ckpts):
        commits = set()
        for di, data in enumerate(datas):
            path = part_path(out, settings, ckpt, data.key_name)
            part = read_part(path, data.md5)
            if part is None:
                raise TracingBenchError(
                    f"result of {ckpt.label} / {data.name} is missing ({path}): run the same trace command again"
                )
            got.parts[data.name].append(part)
            commits.add(part["activations"].get("resolved_commit"))
            # the dimension column is this run's name (a CSV's name depends on what it is traced with)
            got.probe_rows += [{**r, "dimension": data.name, "_order": (ci, di)} for r in part["probes"]]
            if "reference" in part:
                got.reference_fits.append({"checkpoint": ckpt.label, "dimension": data.name, **part["reference"]})
            got.mi_rows += [{**r, "dimension": data.name, "_order": (ci, di)} for r in part["mi"]]
        got.checkpoints.append(
            {
                "model": ckpt.model,
                "revision": ckpt.revision,
                "step": ckpt.step,
                "label": ckpt.label,
                "resolved_commit": next((c for c in sorted(commits, key=str) if c), None),
            }
        )
    probe_order = {p: i for i, p in enumerate(PROBES)}
    got.probe_rows.sort(key=lambda r: (r["_order"], r["layer"], probe_order.get(r["probe"], 99), r["probe"]))
    got.mi_rows.sort(key=lambda r: (r["_order"], r["layer"]))
    return got
