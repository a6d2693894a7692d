"""Score a model (at a revision) on the trust tasks with lm-evaluation-harness.

:func:`run_eval` runs ``lm_eval run`` in-process with the trust tasks on the include path and
writes lm-eval's own ``results_<date>.json`` (and, with ``--log_samples``, its
``samples_<task>_<date>.jsonl``) into a folder named by model *and* revision::

    OUT/<model-slug>@<revision>/results_2026-01-01T00-00-00.000000.json

(plain lm-eval names the folder by model only, so the checkpoints of one model would share it).
Next to it, ``tracing_bench_<date>.json`` records the provenance (model, revision, resolved
commit, package version, arguments).

>>> run = run_eval("pretrained=EleutherAI/pythia-70m,revision=step1000", tasks="trust", limit=20)
>>> run.results["groups"]["trust"]["score,none"]
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.distributed as dist

import tracing_bench.models.hf  # noqa: F401  (registers the lm-eval model `trust-hf`)
from tracing_bench import __version__
from tracing_bench.checkpoints import Checkpoint, resolve_series
from tracing_bench.dimensions import DIMENSIONS, QUESTIONS_FILE, RELEASED
from tracing_bench.errors import TracingBenchError, first_line
from tracing_bench.eval_checks import (
    all_known,
    check_fewshot,
    check_model,
    check_steering,
    parse_lm_eval_args,
    task_index,
)
from tracing_bench.executors import ExecutorSettings, import_ray, run_tasks
from tracing_bench.files import atomic_write_json, check_writable, dumps_json, file_md5, model_slug
from tracing_bench.loading import describe_load_error, snapshot_folder
from tracing_bench.logs import quiet_lm_eval
from tracing_bench.models.steered import safe_stock_steered  # registers the lm-eval model `trust-steered`
from tracing_bench.tasks import TASKS_DIR
from tracing_bench.tasks.common import setting

DEFAULT_TASKS = "trust"
DEFAULT_OUTPUT = "results"
#: lm-eval model types that load ``pretrained`` with transformers (checked before the run).
HF_MODEL_TYPES = frozenset({"hf", "hf-auto", "huggingface", "steered", "trust-steered", "trust-hf"})
#: lm-eval model types that read a steering file (validated with ``weights_only=True`` first).
STEERED_MODEL_TYPES = frozenset({"steered", "trust-steered"})


@dataclass
class EvalRun:
    """One finished lm-eval run.

    Attributes:
        model: the model id or folder (``pretrained``).
        revision: the revision evaluated (``main`` when none was given).
        folder: ``OUT/<model-slug>@<revision>``.
        results_file: lm-eval's ``results_<date>.json`` written by this run.
        results: its content (lm-eval's results format).
        argv: the ``lm_eval run`` arguments used.
    """

    model: str
    revision: str
    folder: Path
    results_file: Path
    results: dict[str, Any] = field(repr=False)
    argv: list[str] = field(default_factory=list)


def run_folder(output_path: str | Path, pretrained: str, revision: str | None) -> Path:
    """``output_path/<model-slug>@<revision>`` (revision ``main`` when none is given)."""
    return Path(output_path) / f"{model_slug(pretrained)}@{model_slug(revision or 'main')}"


def run_eval(
    model_args: str | Mapping[str, Any],
    *,
    model: str = "hf",
    tasks: str | Sequence[str] = DEFAULT_TASKS,
    output_path: str | Path = DEFAULT_OUTPUT,
    limit: float | None = None,
    log_samples: bool = False,
    metadata: Mapping[str, Any] | None = None,
    extra_args: Sequence[str] = (),
) -> EvalRun | None:
    """Run lm-eval on the trust tasks (or any lm-eval task) and keep checkpoints apart.

    Args:
        model_args: lm-eval ``--model_args``, as ``"pretrained=...,revision=..."`` or a dict.
        model: lm-eval model type (``hf``, ``steered``, ...).
        tasks: task names or globs (``trust``, ``trust_*``, ``trustgen_privacy``, ``arc_easy``).
        output_path: base folder; results go to ``output_path/<model-slug>@<revision>/``.
        limit: lm-eval ``--limit`` (documents per task; for tests and smoke runs).
        log_samples: also write lm-eval's per-sample ``samples_<task>_<date>.jsonl``.
        metadata: lm-eval ``--metadata`` (e.g. ``{"truth_judge": "/models/judge"}``).
        extra_args: further ``lm_eval run`` options, e.g. ``["--batch_size", "8"]``.

    Returns:
        An :class:`EvalRun` with the results file and its content (``None`` in the processes of
        rank > 0 under ``accelerate launch``: rank 0 writes the results).

    Raises:
        TracingBenchError: bad arguments, unknown task, a model or judge that cannot be loaded.
    """
    if isinstance(model_args, Mapping):
        model_args = ",".join(f"{k}={v}" for k, v in model_args.items())
    task_list = [tasks] if isinstance(tasks, str) else list(tasks)
    argv = [
        "--model",
        model,
        "--model_args",
        model_args,
        "--tasks",
        ",".join(task_list),
        "--output_path",
        str(output_path),
    ]
    if limit is not None:
        argv += ["--limit", str(limit)]
    if log_samples:
        argv.append("--log_samples")
    if metadata:
        argv += ["--metadata", dumps_json(dict(metadata))]
    return run_lm_eval(argv + list(extra_args))


def run_lm_eval(argv: Sequence[str]) -> EvalRun | None:
    """Run ``lm_eval run ARGV`` in-process with the trust tasks added; see :func:`run_eval`.

    Under ``accelerate launch`` (``RANK`` > 0 in the environment) only rank 0 writes results:
    the other processes score their share and return ``None``.

    ``--tasks`` defaults to ``trust``, ``--output_path`` to ``results``; the include path of the
    trust tasks is added to any ``--include_path`` given. lm-eval's built-in tasks are indexed
    only when a requested task is not a trust task (indexing them takes tens of seconds).
    """
    args = parse_lm_eval_args(list(argv))
    if not args.tasks:
        args.tasks = [DEFAULT_TASKS]
    model_args = dict(args.model_args or {})
    model_type = str(getattr(args, "model", None) or "hf")
    hf_like = model_type in HF_MODEL_TYPES
    pretrained = str(model_args.get("pretrained") or model_args.get("model") or "")
    if not pretrained:
        if hf_like:
            raise TracingBenchError(
                "no model given: pass --model_args pretrained=<Hugging Face id or folder>[,revision=<rev>]"
            )
        pretrained = model_type
    revision = str(model_args["revision"]) if model_args.get("revision") else None
    output = getattr(args, "output_path", None) or DEFAULT_OUTPUT
    if str(output).endswith(".json"):
        raise TracingBenchError(f"--output_path {output}: give a folder; results go to <folder>/<model>@<revision>/")
    folder = run_folder(output, pretrained, revision)
    check_writable(folder, flag="--output_path")  # before any model is loaded
    if hf_like:
        check_model(pretrained, revision, tokenizer=not model_args.get("tokenizer"))
    if model_type in STEERED_MODEL_TYPES:
        check_steering(model_type, model_args, pretrained, revision)
    include = [p for p in (getattr(args, "include_path", None) or "").split(os.pathsep) if p]
    include.append(str(TASKS_DIR))
    specs = [t for spec in args.tasks for t in str(spec).split(",") if t]
    need_defaults = not all_known(specs, include)
    check_fewshot(getattr(args, "num_fewshot", None), specs, include, need_defaults)
    folder.mkdir(parents=True, exist_ok=True)
    # A path ending in .json makes lm-eval write <folder>/results_<date>.json (no model sub-folder).
    args.output_path = str(folder / "results.json")
    args.include_path = include

    before = set(folder.glob("results_*.json"))
    safe = safe_stock_steered() if model_type == "steered" else contextlib.nullcontext()
    with task_index(include_defaults=need_defaults), quiet_lm_eval(), safe:
        try:
            args.func(args)
        except TracingBenchError:
            raise
        except Exception as e:
            if os.environ.get("TRACING_BENCH_DEBUG"):
                raise
            known = describe_load_error(
                e,
                pretrained + (f"@{revision}" if revision else ""),
                dtype=str(model_args.get("dtype", "auto")),
                device=str(getattr(args, "device", None) or "auto"),
                folder=snapshot_folder(pretrained, revision),
            )
            if known is not None:
                raise known from e
            if isinstance(
                e, (OSError, ValueError, KeyError, ImportError, RuntimeError, TypeError, pickle.UnpicklingError)
            ):
                raise TracingBenchError(
                    f"lm-eval failed: {first_line(e, with_type=True)} (set TRACING_BENCH_DEBUG=1 for the traceback)"
                ) from e
            raise
    if _process_rank() > 0:
        return None  # lm-eval gathered this process's scores on rank 0, which writes the results
    new = sorted(set(folder.glob("results_*.json")) - before, key=lambda p: p.stat().st_mtime)
    if not new:
        raise TracingBenchError(f"lm-eval wrote no results file into {folder}; check that the folder is writable")
    results_file = new[-1]
    results = json.loads(results_file.read_text(encoding="utf-8"))
    _write_provenance(folder, results_file, results, pretrained, revision, list(argv))
    return EvalRun(pretrained, revision or "main", folder, results_file, results, list(argv))


#: Options of ``tracing-bench eval`` / ``eval-series`` that turn off the per-sample logs they write by default.
NO_LOG_SAMPLES: tuple[str, ...] = ("--no_log_samples", "--no-log-samples")


def log_samples_by_default(argv: Sequence[str]) -> list[str]:
    """``argv`` with lm-eval's ``--log_samples`` added, unless it holds ``--no_log_samples`` (removed).

    ``tracing-bench eval`` writes lm-eval's per-document logs (``samples_<task>_<date>.jsonl``) by
    default: ``gate --paired`` compares checkpoints document by document on them.

    >>> log_samples_by_default(["--limit", "5"])
    ['--limit', '5', '--log_samples']
    >>> log_samples_by_default(["--no_log_samples", "--limit", "5"])
    ['--limit', '5']
    """
    argv = list(argv)
    if any(a in NO_LOG_SAMPLES for a in argv):
        return [a for a in argv if a not in NO_LOG_SAMPLES]
    if any(a in ("--log_samples", "-s") for a in argv):
        return argv
    return [*argv, "--log_samples"]


# ------------------------------------------------------------------------------- helpers
def _process_rank() -> int:
    """This process's rank under ``accelerate launch`` / torchrun / mpirun (0 when not distributed)."""
    try:
        if dist.is_available() and dist.is_initialized():
            return int(dist.get_rank())
    except ImportError:
        pass
    launchers = (("RANK", "WORLD_SIZE"), ("PMI_RANK", "PMI_SIZE"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"))
    for rank, size in launchers:
        try:
            if int(os.environ.get(size, "1")) > 1:
                return int(os.environ.get(rank, "0"))
        except ValueError:
            continue
    return 0


def _datasets(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per trust task: its dimension, the md5 of the data file, the split protocol and seed."""
    out: dict[str, dict[str, Any]] = {}
    for task, config in (results.get("configs") or {}).items():
        meta = config.get("metadata") or {}
        dim = meta.get("dimension")
        if not isinstance(dim, str):
            continue
        bundled = DIMENSIONS.get(dim) or RELEASED.get(dim)
        if bundled is None:
            continue
        path = QUESTIONS_FILE if task == "trustgen_reliability" else bundled.path
        out[task] = {
            "dimension": dim,
            "dataset_file": path.name,
            "dataset_md5": file_md5(path),
            "protocol": setting(meta, "protocol"),
            "split_seed": setting(meta, "split_seed"),
        }
    return out


def _write_provenance(
    folder: Path, results_file: Path, results: dict[str, Any], pretrained: str, revision: str | None, argv: list[str]
) -> None:
    date = results_file.stem[len("results_") :]
    record = {
        "model": pretrained,
        "revision": revision or "main",
        "commit": Checkpoint(pretrained, revision).resolved_commit(),
        "results_file": results_file.name,
        "lm_eval_args": shlex.join(argv),
        "datasets": _datasets(results),
        "package_version": __version__,
    }
    target = folder / f"tracing_bench_{date}.json"
    atomic_write_json(target, record)


# ------------------------------------------------------------------- several revisions
def _model_args_index(argv: list[str]) -> tuple[int, str] | None:
    """(index, value) of ``--model_args`` in ``argv`` (``--model_args X`` or ``--model_args=X``)."""
    for i, a in enumerate(argv):
        if a in ("--model_args", "--model-args") and i + 1 < len(argv):
            return i + 1, argv[i + 1]
        if a.startswith(("--model_args=", "--model-args=")):
            return i, a.split("=", 1)[1]
    return None


def with_checkpoint(argv: Sequence[str], pretrained: str, revision: str | None) -> list[str]:
    """``argv`` with ``pretrained`` (and ``revision``, or none) set in its ``--model_args``."""
    argv = list(argv)
    found = _model_args_index(argv)
    text = found[1] if found else ""
    if text.strip().startswith("{"):
        args = json.loads(text)
        args["pretrained"] = pretrained
        args.pop("revision", None)
        if revision:
            args["revision"] = revision
        value = dumps_json(args)
    else:
        items = [kv for kv in text.split(",") if kv and kv.split("=", 1)[0] not in ("pretrained", "revision")]
        value = ",".join([f"pretrained={pretrained}", *([f"revision={revision}"] if revision else []), *items])
    if found is None:
        return [*argv, "--model_args", value]
    i = found[0]
    argv[i] = value if argv[i] == text else f"{argv[i].split('=', 1)[0]}={value}"
    return argv


def eval_series(
    argv: Sequence[str],
    revisions: str | list[str] | None = None,
    *,
    run_on: ExecutorSettings | None = None,
) -> list[EvalRun]:
    """``lm_eval run`` at every revision of a model (:func:`run_lm_eval` per revision).

    Each revision is one task (``local``: one after the other here; ``ray``: one Ray task each,
    see :mod:`tracing_bench.executors`) writing into its own ``OUT/<model>@<revision>/``.

    Args:
        argv: ``lm_eval run`` arguments; ``--model_args`` names ``pretrained=`` (a hub id, or a
            folder of checkpoint sub-folders step0, step10, ... which is a series by itself).
        revisions: hub revisions with range shorthands
            (:func:`tracing_bench.checkpoints.parse_revisions`); ``None`` for a folder series.
        run_on: where each revision runs (:class:`tracing_bench.executors.ExecutorSettings`:
            ``local`` by default).

    Returns:
        One :class:`EvalRun` per revision, in series order.

    Raises:
        TracingBenchError: bad arguments, a missing model, or failed tasks (one line).
    """
    run_on = run_on or ExecutorSettings()
    if run_on.executor == "ray":
        import_ray()
    args = parse_lm_eval_args(list(argv))
    pretrained = str(dict(args.model_args or {}).get("pretrained") or "")
    if not pretrained:
        raise TracingBenchError(
            "no model given: pass --model_args pretrained=<Hugging Face id or folder of checkpoints> "
            "and --revisions r1,r2,..."
        )
    ckpts = resolve_series(pretrained, revisions)
    check_writable(getattr(args, "output_path", None) or DEFAULT_OUTPUT, flag="--output_path")
    if len(ckpts) == 1 and not revisions:
        raise TracingBenchError(
            f"eval-series needs several revisions: add --revisions (e.g. --revisions step1000,step2000) or give "
            f"pretrained= a folder of checkpoint sub-folders; {pretrained} is one model (use tracing-bench eval)"
        )
    argvs = [with_checkpoint(argv, c.model, c.revision) for c in ckpts]
    runs = run_tasks(run_lm_eval, argvs, [c.label for c in ckpts], settings=run_on, what="revision")
    return [r for r in runs if r is not None]
