"""Trace a checkpoint series: harvest (cached) -> linear probes -> mutual information, per layer.

For every checkpoint x dimension, :func:`trace_checkpoint` reads all blocks' activations
(:func:`tracing_bench.cache.cached_activations`), probes the requested layers
(:func:`tracing_bench.probes.layers.probe_layers`) and, with ``mi=True``, estimates I(X;T) and
I(Y;T) (:func:`tracing_bench.probes.mi.estimate_mi`). Each (checkpoint, dimension) result is
written atomically to ``OUT/parts/<settings>/<checkpoint>/<dimension>.json`` as soon as it is
done, so an interrupted run (Ctrl-C, crash, a killed worker) loses at most the pair in flight
and the same command resumes where it stopped; ``<settings>`` is a hash of every setting that
changes the numbers, so changed settings never reuse stale parts. :func:`trace` then merges the
parts of the series into the tidy tables ``OUT/probes.csv`` and ``OUT/mi.csv`` (columns as in
docs/CONVENTIONS.md; rows sorted by series order, dimension order, layer, probe), writes
``OUT/findings.json`` (tested claims: :mod:`tracing_bench.compare.findings`), ``OUT/trace.json``
(provenance) and draws ``OUT/figures`` when ``tracing_bench.report.plots.trace_figures`` is
available. A part keeps, besides its rows, one bit per test statement per layer and probe (right
or wrong) with the hash of the test statements, and with MI the nHSIC values on ``mi_noise``
seeded half-samples of the probe-train statements: what the paired tests of findings.json need.

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
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import logging
import re
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tracing_bench import __version__
from tracing_bench.files import atomic_write_text as _atomic_write_text
from tracing_bench.files import check_outputs, pack_bits, spec_hash, text_hash
from tracing_bench.checkpoints import Checkpoint, delete_from_hf_cache, resolve_series
from tracing_bench.errors import TracingBenchError
from tracing_bench.loading import find_blocks, load_checkpoint
from tracing_bench.threads import check_threads, threads_for_work, use_threads

log = logging.getLogger(__name__)

PROBE_COLUMNS: tuple[str, ...] = (
    "model", "revision", "step", "dimension", "layer", "protocol", "pooling", "probe", "n_train",
    "val_acc", "val_auroc", "test_acc", "test_auroc", "dataset_md5", "package_version",
    "n_test", "test_acc_lo", "test_acc_hi", "test_auroc_lo", "test_auroc_hi",
)
MI_COLUMNS: tuple[str, ...] = (
    "model", "revision", "step", "dimension", "layer", "sigma", "m", "i_xt", "i_yt", "dataset_md5",
    "package_version", "noise_k", "noise_m", "i_xt_sd", "i_yt_sd",
)
PROBES: tuple[str, ...] = ("logistic", "mass_mean")
_NUMBER_FIELDS = ("layers", "pooling", "mi", "protocol", "probes", "sigma", "dtype", "blocks_attr", "max_length", "seed",
                  "max_statements", "mi_subsample", "mi_noise")
#: half-samples of the MI noise estimate by default (each costs about 1/8 of the full estimate)
MI_NOISE_DEFAULT = 8


@dataclass(frozen=True)
class TraceSettings:
    """Everything but the checkpoints that a trace needs.

    Attributes:
        dimensions: dimension names or CSV paths (validated by the loader).
        layers: ``all`` or a spec like ``0,4,8``, ``4-12`` or ``0:32:4`` (end exclusive).
        pooling: ``last`` or ``mean``.
        mi: estimate I(X;T), I(Y;T) per layer.
        protocol: ``paper`` or ``reference`` (splits and probe protocol).
        probes: probe kinds passed to ``probe_layers``.
        sigma: kernel width of the nHSIC estimator.
        dtype: model dtype (``auto|float32|bfloat16|float16``).
        device: ``auto|cpu|cuda``.
        batch_size: statements per forward pass.
        cache_dir: activation cache folder (default ``$TRACING_BENCH_CACHE`` or
            ``~/.cache/tracing-bench``).
        blocks_attr: override of the decoder blocks' path.
        max_length: truncate statements to this many tokens.
        seed: seed of the paper splits.
        delete_checkpoints: remove each hub checkpoint from the Hugging Face cache after use.
        max_statements: trace a seeded, split-preserving subsample of about this many statements
            per dimension (:meth:`tracing_bench.dimensions.DimensionData.subsample`); ``None``: all.
        mi_subsample: estimate MI on a seeded subsample of this many probe-train statements
            (the nHSIC cost grows as m^3); ``None``: all of them.
        mi_noise: the noise of the MI estimate: nHSIC is also computed on this many seeded
            half-samples (m // 2 statements) of the probe-train statements, the same ones at every
            checkpoint; their spread is the noise a turn must exceed. 0 = off (no turn is tested).
        series_name: the ``model`` column (the ``--model`` argument as given).
        threads: CPU threads (torch and BLAS) for each checkpoint's work; ``None``: the cores
            idle when the checkpoint starts (:func:`tracing_bench.threads.default_threads`).
            Does not change the numbers, so it is not part of :meth:`key`.
    """

    dimensions: tuple[str, ...] = ("reliability", "toxicity", "privacy", "fairness", "robustness")
    layers: str = "all"
    pooling: str = "last"
    mi: bool = False
    protocol: str = "paper"
    probes: tuple[str, ...] = PROBES
    sigma: float = 50.0
    dtype: str = "auto"
    device: str = "auto"
    batch_size: int = 32
    cache_dir: str | None = None
    blocks_attr: str | None = None
    max_length: int | None = None
    seed: int = 0
    delete_checkpoints: bool = False
    max_statements: int | None = None
    mi_subsample: int | None = None
    mi_noise: int = MI_NOISE_DEFAULT
    series_name: str = ""
    threads: int | None = None

    def key(self) -> str:
        """Hash of the settings that change the numbers (not batch size, device, cache)."""
        spec = {k: getattr(self, k) for k in _NUMBER_FIELDS} | {"package_version": __version__}
        return spec_hash(spec, 16)

    def public(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------- helpers
def parse_layers(spec: str | list[int] | None, n_blocks: int) -> list[int]:
    """Layer indices from ``all`` / ``0,4,8`` / ``4-12`` (inclusive) / ``0:32:4`` (end exclusive).

    Raises:
        TracingBenchError: malformed spec or a layer out of ``0..n_blocks-1``.
    """
    if spec is None or spec == "all":
        return list(range(n_blocks))
    if isinstance(spec, (list, tuple)):
        out = [int(x) for x in spec]
    else:
        out = []
        for item in (s.strip() for s in str(spec).split(",")):
            if not item:
                continue
            try:
                if ":" in item:
                    a, b, *k = item.split(":")
                    out.extend(range(int(a or 0), int(b) if b else n_blocks, int(k[0]) if k else 1))
                elif re.fullmatch(r"\d+-\d+", item):
                    a, b = item.split("-")
                    out.extend(range(int(a), int(b) + 1))
                else:
                    out.append(int(item))
            except ValueError:
                raise TracingBenchError(
                    f"--layers {spec!r} is malformed at {item!r}: use all, a comma list (0,4,8), a range 4-12 "
                    "or a slice 0:32:4"
                ) from None
    bad = sorted({x for x in out if not 0 <= x < n_blocks})
    if bad:
        raise TracingBenchError(
            f"--layers {','.join(map(str, bad))} is out of range: the model has {n_blocks} blocks (0-{n_blocks - 1})"
        )
    if not out:
        raise TracingBenchError(f"--layers {spec!r} selects no layer: the model has {n_blocks} blocks (0-{n_blocks - 1})")
    return sorted(set(out))


def checkpoint_slug(ckpt: Checkpoint) -> str:
    """A file-system-safe, unique folder name for a checkpoint."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", ckpt.label)[:60]
    digest = text_hash(f"{ckpt.model}@{ckpt.revision}", "sha1")[:10]
    return f"{readable}-{digest}"


def _revision_column(ckpt: Checkpoint, settings: TraceSettings) -> str:
    if ckpt.revision:
        return ckpt.revision
    if ckpt.is_local and Path(ckpt.model).resolve() != Path(settings.series_name or ckpt.model).expanduser().resolve():
        return Path(ckpt.model).name  # a sub-folder of a folder series
    return ""


def _standardise(a: np.ndarray) -> np.ndarray:
    """Centre and scale every feature over axis -2 (population std; constant features -> 1)."""
    a = a.astype(np.float64)
    mean = a.mean(axis=-2, keepdims=True)
    std = a.std(axis=-2, keepdims=True)
    std[std == 0] = 1.0
    return (a - mean) / std


def part_path(out: Path, settings: TraceSettings, ckpt: Checkpoint, dimension: str) -> Path:
    """Where the result of one (checkpoint, dimension) pair is stored.

    ``dimension`` is :attr:`tracing_bench.dimensions.DimensionData.key_name`: a bundled name, or
    ``csv-<stem>-<md5>`` for a CSV, so that files named alike never share a part.
    """
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", dimension)
    return Path(out) / "parts" / settings.key() / checkpoint_slug(ckpt) / f"{name}.json"


def _read_part(path: Path, md5: str) -> dict[str, Any] | None:
    try:
        part = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if part.get("dataset_md5") != md5 or part.get("package_version") != __version__:
        return None
    return part


# --------------------------------------------------------------------------------- the work
def trace_checkpoint(
    checkpoint: Checkpoint,
    datas: list[Any],
    settings: TraceSettings,
    out: str | Path,
    *,
    bar: Any = None,
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

    Returns:
        The part files of this checkpoint (one per dimension).
    """
    from tracing_bench.cache import cached_activations, lookup_activations

    out = Path(out)
    paths = [part_path(out, settings, checkpoint, d.key_name) for d in datas]
    todo = [(d, p) for d, p in zip(datas, paths) if _read_part(p, d.md5) is None]
    if bar is not None:
        bar.update(len(datas) - len(todo))
    if not todo:
        return paths
    probe_layers = _probe_layers() if settings.probes else None
    estimate_mi = _estimate_mi() if settings.mi else None
    model = tokenizer = None
    commit: str | None = None
    threads = ExitStack()  # threads chosen per checkpoint: the load may have changed since the last
    threads.enter_context(use_threads(settings.threads))
    try:
        for data, path in todo:
            if bar is not None:
                bar.set_postfix_str(f"{checkpoint.label} {data.name}", refresh=False)
            kw = dict(pooling=settings.pooling, dtype=settings.dtype, cache_dir=settings.cache_dir,
                      max_length=settings.max_length, blocks_attr=settings.blocks_attr)
            hit = lookup_activations(checkpoint, data, **kw)
            if hit is None:
                if model is None:
                    model, tokenizer = load_checkpoint(checkpoint, dtype=settings.dtype, device=settings.device)
                    parse_layers(settings.layers, len(find_blocks(model, settings.blocks_attr)[0]))
                hit = cached_activations(
                    checkpoint, data, device=settings.device, batch_size=settings.batch_size,
                    model=model, tokenizer=tokenizer, **kw,
                )
            acts_t, prov = hit
            commit = prov.get("resolved_commit") or commit
            # probes and nHSIC are many small products: one thread unless the Gram matrix is large
            m = len(data.splits["probe_train"]) if settings.mi_subsample is None else min(
                settings.mi_subsample, len(data.splits["probe_train"]))
            with use_threads(threads_for_work(settings.threads, float(m) * m * acts_t.shape[-1])):
                part = _probe_part(checkpoint, data, acts_t.numpy(), prov, settings, probe_layers, estimate_mi)
            _atomic_write_text(path, json.dumps(part, indent=1, sort_keys=True))
            if bar is not None:
                bar.update(1)
    finally:
        threads.close()
        del model, tokenizer
    if settings.delete_checkpoints and not checkpoint.is_local:
        delete_from_hf_cache(checkpoint, commit)
    return paths


def _probe_layers() -> Any:
    try:
        from tracing_bench.probes.layers import probe_layers
    except ImportError as e:
        raise TracingBenchError(
            f"tracing_bench.probes.layers.probe_layers is not available ({e}): update tracing-bench"
        ) from e
    return probe_layers


def _estimate_mi() -> Any:
    try:
        from tracing_bench.probes import mi
    except ImportError as e:
        raise TracingBenchError(f"tracing_bench.probes.mi is not available ({e}): update tracing-bench") from e
    return mi


def _mi_rows(mi: Any, acts: np.ndarray, data: Any, settings: TraceSettings, names: list[int]) -> list[dict[str, Any]]:
    """MI rows for ``acts`` (X = ``acts[0]``), through ``mi.mi_layers`` (which owns the scaling)
    or, if that is absent, ``mi.estimate_mi`` after whole-file standardisation."""
    if hasattr(mi, "mi_layers"):
        return mi.mi_layers(acts, data.labels, data.splits, protocol=settings.protocol, split="probe_train",
                            x_layer=0, layers=names, sigma=settings.sigma, subsample=settings.mi_subsample,
                            seed=settings.seed)
    train = np.asarray(data.splits["probe_train"])
    scaled = _standardise(acts)[:, train]
    i_xt, i_yt = mi.estimate_mi(scaled[0], np.asarray(data.labels)[train], scaled, sigma=settings.sigma)
    return [{"layer": n, "sigma": settings.sigma, "m": len(train), "i_xt": a, "i_yt": b}
            for n, a, b in zip(names, np.atleast_1d(i_xt), np.atleast_1d(i_yt))]


def _num(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return float(v)
    return v


def _probe_part(
    ckpt: Checkpoint,
    data: Any,
    acts: np.ndarray,
    prov: dict[str, Any],
    settings: TraceSettings,
    probe_layers: Any,
    estimate_mi: Any,
) -> dict[str, Any]:
    layers = parse_layers(settings.layers, acts.shape[0])
    common = {
        "model": settings.series_name or ckpt.model,
        "revision": _revision_column(ckpt, settings),
        "step": ckpt.step,
        "dimension": data.name,
    }
    probe_rows: list[dict[str, Any]] = []
    test_split = "test" if settings.protocol == "paper" else "probe_val"
    if probe_layers is not None:
        results = probe_layers(acts[layers], data.labels, data.splits, protocol=settings.protocol,
                               probes=tuple(settings.probes), layers=layers, details=True)
        for r in results:
            probe_rows.append({
                **common, "layer": int(r["layer"]), "protocol": settings.protocol, "pooling": settings.pooling,
                "probe": r["probe"], "n_train": _num(r.get("n_train")),
                **{k: _num(r.get(k)) for k in ("val_acc", "val_auroc", "test_acc", "test_auroc")},
                "dataset_md5": data.md5, "package_version": __version__,
                **{k: _num(r.get(k)) for k in ("n_test", "test_acc_lo", "test_acc_hi", "test_auroc_lo",
                                               "test_auroc_hi")},
                "test_correct": pack_bits(r["test_correct"]),
            })
    reference: dict[str, Any] = {}
    if settings.protocol == "reference" and probe_layers is not None:
        fits = [r for r in results if r.get("probe") == "logistic" and "converged" in r]
        reference = {
            "logistic_fits": len(fits),
            "convergence_warnings": sum(1 for r in fits if not r["converged"]),
            "not_converged_layers": [int(r["layer"]) for r in fits if not r["converged"]],
            "n_iter": {str(int(r["layer"])): int(r["n_iter"]) for r in fits},
            "constant_features": {str(int(r["layer"])): int(r["constant_features"]) for r in fits
                                  if r.get("constant_features")},
        }
    mi_rows: list[dict[str, Any]] = []
    mi_noise: dict[str, Any] | None = None
    if estimate_mi is not None:
        sel = [0] + [layer for layer in layers if layer != 0]  # X = block 0 always comes first
        rows = _mi_rows(estimate_mi, acts[sel], data, settings, names=sel)
        mi_noise = _mi_noise(estimate_mi, acts[sel], data, settings, sel, int(rows[0]["m"])) if rows else None
        for r in rows:
            if int(r["layer"]) in layers:
                lay = int(r["layer"])
                noise = _noise_columns(mi_noise, lay)
                mi_rows.append({
                    **common, "layer": lay, "sigma": float(r["sigma"]), "m": int(r["m"]),
                    "i_xt": float(r["i_xt"]), "i_yt": float(r["i_yt"]), "dataset_md5": data.md5,
                    "package_version": __version__, **noise,
                })
        mi_rows.sort(key=lambda r: r["layer"])
    test_idx = np.asarray(data.splits[test_split])
    return {
        "checkpoint": {"model": ckpt.model, "revision": ckpt.revision, "step": ckpt.step, "label": ckpt.label},
        "dimension": data.name,
        "dataset_md5": data.md5,
        "package_version": __version__,
        "settings_key": settings.key(),
        "activations": {k: prov.get(k) for k in ("key", "resolved_commit", "n_layers", "hidden", "torch_dtype",
                                                   "pooling", "dtype", "n_statements")},
        "probes": probe_rows,
        "mi": mi_rows,
        "mi_noise": mi_noise,
        "test_statements": {
            "split": test_split, "n": int(test_idx.size), "sha256": statements_sha256(data, test_idx),
            "labels": pack_bits(np.asarray(data.labels)[test_idx] == 1),
        },
        **({"reference": reference} if reference else {}),
    }


def statements_sha256(data: Any, idx: np.ndarray) -> str:
    """sha256 of the statements at ``idx`` (in order) with their labels: equal hashes = the same test set."""
    return text_hash("".join(f"{int(data.labels[i])}\t{data.statements[i]}\n" for i in np.asarray(idx).tolist()))


def noise_seeds(seed: int, k: int) -> list[int]:
    """Seeds of the ``k`` half-samples of the MI noise estimate (the same at every checkpoint)."""
    return [1_000_003 * (int(seed) + 1) + j for j in range(int(k))]


def _mi_noise(mi: Any, acts: np.ndarray, data: Any, settings: TraceSettings, names: list[int],
              m: int) -> dict[str, Any] | None:
    """nHSIC on ``settings.mi_noise`` seeded half-samples (m // 2 probe-train statements each).

    The half-samples are drawn from the probe-train split with fixed seeds, so they are the same
    statements at every checkpoint and differences between checkpoints are paired. For a
    mean-like statistic, the spread of half-sample estimates drawn from the m statements used is
    the spread of the m-statement estimate itself (half-sampling); when the main estimate uses
    a subsample of a larger split the spread over-states the noise (conservative).
    """
    k = int(settings.mi_noise)
    half = m // 2
    if k < 2 or half < 5 or not hasattr(mi, "mi_layers"):
        return None
    seeds = noise_seeds(settings.seed, k)
    i_xt: dict[str, list[float]] = {str(n): [] for n in names}
    i_yt: dict[str, list[float]] = {str(n): [] for n in names}
    for sd in seeds:
        rows = mi.mi_layers(acts, data.labels, data.splits, protocol=settings.protocol, split="probe_train",
                            x_layer=0, layers=names, sigma=settings.sigma, subsample=half, seed=sd)
        for r in rows:
            i_xt[str(int(r["layer"]))].append(float(r["i_xt"]))
            i_yt[str(int(r["layer"]))].append(float(r["i_yt"]))
    return {"k": k, "m": half, "seeds": seeds, "i_xt": i_xt, "i_yt": i_yt,
            "method": "nHSIC on k seeded half-samples of the probe-train statements (the same at every checkpoint)"}


def _noise_columns(noise: dict[str, Any] | None, layer: int) -> dict[str, Any]:
    if not noise:
        return {"noise_k": None, "noise_m": None, "i_xt_sd": None, "i_yt_sd": None}
    xs, ys = noise["i_xt"][str(layer)], noise["i_yt"][str(layer)]
    return {"noise_k": noise["k"], "noise_m": noise["m"], "i_xt_sd": float(np.std(xs, ddof=1)),
            "i_yt_sd": float(np.std(ys, ddof=1))}


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    _atomic_write_text(path, buf.getvalue())


def trace(
    model: str,
    revisions: str | list[str] | None = None,
    *,
    out: str | Path,
    dimensions: str | list[str] = "all",
    layers: str | list[int] = "all",
    pooling: str = "last",
    mi: bool = False,
    protocol: str = "paper",
    probes: str | list[str] = PROBES,  # type: ignore[assignment]
    sigma: float = 50.0,
    batch_size: int = 32,
    dtype: str = "auto",
    device: str = "auto",
    cache_dir: str | Path | None = None,
    blocks_attr: str | None = None,
    max_length: int | None = None,
    seed: int = 0,
    delete_checkpoints: bool = False,
    max_statements: int | None = None,
    mi_subsample: int | None = None,
    mi_noise: int = MI_NOISE_DEFAULT,
    progress: bool = True,
    figures: bool = True,
    executor: str = "local",
    ray_address: str | None = None,
    gpus_per_task: float = 0,
    cpus_per_task: float = 1,
    max_retries: int = 3,
    threads: int | None = None,
) -> dict[str, Any]:
    """Trace a checkpoint series; resumable (see the module docstring).

    Args:
        model: hub model id, model folder, or folder of checkpoint sub-folders.
        revisions: revisions of a hub model, with range shorthands
            (:func:`tracing_bench.checkpoints.parse_revisions`).
        out: output folder.
        dimensions: ``all`` or a comma list / list of dimension names or CSV paths.
        layers: ``all`` or a layer spec (:func:`parse_layers`).
        pooling: ``last`` or ``mean``.
        mi: also estimate I(X;T) and I(Y;T).
        protocol: ``paper`` or ``reference``.
        probes: probe kinds (``logistic``, ``mass_mean``).
        sigma: nHSIC kernel width.
        batch_size, dtype, device, cache_dir, blocks_attr, max_length: harvesting options.
        seed: seed of the paper splits.
        delete_checkpoints: delete each hub checkpoint from the HF cache after use.
        max_statements: trace a seeded subsample of about this many statements per dimension.
        mi_subsample: estimate MI on this many probe-train statements (seeded).
        mi_noise: half-samples of the MI noise estimate (0 = off; see :class:`TraceSettings`).
        progress: tqdm bar on stderr (hidden when not a TTY).
        figures: draw figures with ``tracing_bench.report.plots.trace_figures`` when available.
        executor, ray_address, gpus_per_task, cpus_per_task, max_retries: where each checkpoint
            runs: ``local`` (this process) or ``ray`` (one Ray task per checkpoint; see
            :mod:`tracing_bench.executors`).
        threads: CPU threads (torch and BLAS) per checkpoint; ``None``: the idle cores, measured
            when each checkpoint starts (a Ray worker is capped by its ``cpus_per_task``).

    Returns:
        ``{"probes_csv", "mi_csv", "trace_json", "findings_json", "figures", "notes", "checkpoints"}``.

    Raises:
        TracingBenchError: bad input (one line).
    """
    from dataclasses import replace

    from tracing_bench.dimensions import display_names, load_dimension, resolve_dimensions

    from tracing_bench.executors import ExecutorSettings, import_ray, run_checkpoints
    n_threads = check_threads(threads)  # before any work: a bad --threads is one line

    run_on = ExecutorSettings(executor, ray_address, float(gpus_per_task), float(cpus_per_task), int(max_retries))  # type: ignore[arg-type]
    if run_on.executor == "ray":
        import_ray()  # fail before any work when Ray is missing
    dims = resolve_dimensions(dimensions)
    probe_list = tuple(p.strip() for p in probes.split(",")) if isinstance(probes, str) else tuple(probes)
    unknown = [p for p in probe_list if p not in PROBES]
    if unknown:
        raise TracingBenchError(f"--probes {','.join(unknown)} unknown: valid probes are {', '.join(PROBES)}")
    if pooling not in ("last", "mean"):
        raise TracingBenchError(f"--pooling {pooling!r} is not valid: use last or mean")
    if int(batch_size) < 1:
        raise TracingBenchError(f"--batch-size {batch_size} is not valid: use a positive integer")
    if isinstance(layers, str) and layers != "all":
        parse_layers(layers, 10**9)  # syntax only; the range is checked against the model
    from tracing_bench.loading import resolve_device, torch_dtype
    from tracing_bench.cache import default_cache_dir

    torch_dtype(dtype)
    resolve_device(device)
    ckpts = resolve_series(model, revisions)
    if delete_checkpoints and any(c.is_local for c in ckpts):
        raise TracingBenchError(
            f"--delete-checkpoints only removes Hugging Face cache downloads, and {model} is a local folder: "
            "refusing to delete it; drop --delete-checkpoints"
        )
    if mi_subsample is not None and int(mi_subsample) < 10:
        raise TracingBenchError(f"--mi-subsample {mi_subsample} is too small: use at least 10 statements")
    if isinstance(mi_noise, bool) or not isinstance(mi_noise, (int, np.integer)) or mi_noise < 0 or mi_noise == 1:
        raise TracingBenchError(
            f"--mi-noise {mi_noise} is not valid: give 0 (no noise estimate, no turn test) or at least 2 half-samples"
        )
    if protocol == "reference":  # the released code: one statement per forward, a float32 model
        batch_size = 1
        dtype = "float32" if dtype == "auto" else dtype
    check_outputs([(out, "--out", "folder"), (cache_dir or default_cache_dir(), "--cache-dir", "folder")])
    datas = [replace(load_dimension(d, protocol=protocol, seed=seed), name=n) for d, n in zip(dims, display_names(dims))]
    if max_statements is not None:
        datas = [d.subsample(int(max_statements), seed=seed) for d in datas]
    settings = TraceSettings(
        threads=n_threads, dimensions=tuple(dims), layers=layers if isinstance(layers, str) else ",".join(map(str, layers)),
        pooling=pooling, mi=mi, protocol=protocol, probes=probe_list, sigma=float(sigma), dtype=dtype,
        device=device, batch_size=int(batch_size), cache_dir=str(cache_dir) if cache_dir else None,
        blocks_attr=blocks_attr, max_length=max_length, seed=seed, delete_checkpoints=delete_checkpoints,
        max_statements=int(max_statements) if max_statements is not None else None,
        mi_subsample=int(mi_subsample) if mi_subsample is not None else None, mi_noise=int(mi_noise),
        series_name=model,
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    from tqdm.auto import tqdm

    with tqdm(total=len(ckpts) * len(datas), desc="trace", unit="dim", disable=None if progress else True) as bar:
        run_checkpoints(ckpts, datas, settings, out, run_on, bar=bar)
    return merge(out, ckpts, datas, settings, figures=figures)


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
    out: str | Path, ckpts: list[Checkpoint], datas: list[Any], settings: TraceSettings, *, figures: bool = True
) -> dict[str, Any]:
    """Merge the part files of a finished series into probes.csv, mi.csv, findings.json, trace.json (+ figures).

    Raises:
        TracingBenchError: a part is missing (the series is not finished).
    """
    out = Path(out)
    probe_rows: list[dict[str, Any]] = []
    mi_rows: list[dict[str, Any]] = []
    ckpt_info = []
    parts: dict[str, list[dict[str, Any]]] = {d.name: [] for d in datas}
    reference_fits: list[dict[str, Any]] = []
    for ci, ckpt in enumerate(ckpts):
        commits = set()
        for di, data in enumerate(datas):
            path = part_path(out, settings, ckpt, data.key_name)
            part = _read_part(path, data.md5)
            if part is None:
                raise TracingBenchError(
                    f"result of {ckpt.label} / {data.name} is missing ({path}): run the same trace command again"
                )
            parts[data.name].append(part)
            commits.add(part["activations"].get("resolved_commit"))
            # the dimension column is this run's name (a CSV's name depends on what it is traced with)
            probe_rows += [{**r, "dimension": data.name, "_order": (ci, di)} for r in part["probes"]]
            if "reference" in part:
                reference_fits.append({"checkpoint": ckpt.label, "dimension": data.name, **part["reference"]})
            mi_rows += [{**r, "dimension": data.name, "_order": (ci, di)} for r in part["mi"]]
        ckpt_info.append({
            "model": ckpt.model, "revision": ckpt.revision, "step": ckpt.step, "label": ckpt.label,
            "resolved_commit": next((c for c in sorted(commits, key=str) if c), None),
        })
    probe_order = {p: i for i, p in enumerate(PROBES)}
    probe_rows.sort(key=lambda r: (r["_order"], r["layer"], probe_order.get(r["probe"], 99), r["probe"]))
    mi_rows.sort(key=lambda r: (r["_order"], r["layer"]))
    probes_csv, mi_csv = out / "probes.csv", out / "mi.csv"
    _write_csv(probes_csv, PROBE_COLUMNS, probe_rows)
    _write_csv(mi_csv, MI_COLUMNS, mi_rows)
    from tracing_bench.compare.findings import build_findings, write_findings

    findings = build_findings(ckpt_info, datas, parts, settings=settings.public())
    findings_json = write_findings(findings, out / "findings.json")
    notes: list[str] = []
    figure_paths: list[str] = []
    if figures:
        try:
            from tracing_bench.report.plots import trace_figures
        except ImportError:
            trace_figures = None
        if trace_figures is None:
            notes.append("figures skipped: tracing_bench.report.plots.trace_figures is not available in this install")
        else:
            figure_paths = [str(p) for p in trace_figures(probes_csv, mi_csv, out / "figures", findings=findings)]
    provenance = {
        "tool": "tracing-bench trace",
        "package_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": settings.public(),
        "settings_key": settings.key(),
        "layer_definition": "layer l = output of decoder block l (HF hidden_states[l+1], before the final norm "
        "at the last block)",
        "probe_description": _PROBE_DESCRIPTION[settings.protocol],
        "mi_description": _MI_DESCRIPTION[settings.protocol],
        "checkpoints": ckpt_info,
        "datasets": [d.provenance() for d in datas],
        "tables": {"probes": probes_csv.name, "mi": mi_csv.name},
        "findings": {"file": findings_json.name, **findings["settings"]},
        "figures": figure_paths,
    }
    if settings.protocol == "reference":
        provenance["reference_protocol"] = {
            "logistic_regression": "sklearn.linear_model.LogisticRegression() defaults: C=1, l2, lbfgs, max_iter=100, "
            "tol=1e-4; a ConvergenceWarning is counted, not printed (the released code silenced them)",
            "logistic_fits": sum(f["logistic_fits"] for f in reference_fits),
            "convergence_warnings": sum(f["convergence_warnings"] for f in reference_fits),
            "constant_features": "features constant over the whole file are set to 0 (the released code divides "
            "by zero there, NaN or inf, and scikit-learn refuses to fit); counted per layer below",
            "per_checkpoint_dimension": reference_fits,
        }
    trace_json = out / "trace.json"
    _atomic_write_text(trace_json, json.dumps(provenance, indent=2, default=str))
    for n in notes:
        log.warning(n)
    return {
        "probes_csv": probes_csv, "mi_csv": mi_csv, "trace_json": trace_json, "findings_json": findings_json,
        "figures": figure_paths,
        "notes": notes, "checkpoints": len(ckpts),
    }
