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
import re
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracing_bench.files import atomic_write_text, check_writable, dumps_json
from tracing_bench.checkpoints import Checkpoint
from tracing_bench.errors import TracingBenchError, first_line
from tracing_bench.files import looks_like_path
from tracing_bench.loading import check_model_folder, describe_load_error, snapshot_folder

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


def slug(text: str) -> str:
    """A file-name-safe form of a model id, folder or revision (``/`` becomes ``__``).

    >>> slug("EleutherAI/pythia-70m")
    'EleutherAI__pythia-70m'
    """
    out = re.sub(r"[^A-Za-z0-9._+=-]+", "__", text.strip()).strip("_")
    return out or "model"


def run_folder(output_path: str | Path, pretrained: str, revision: str | None) -> Path:
    """``output_path/<model-slug>@<revision>`` (revision ``main`` when none is given)."""
    return Path(output_path) / f"{slug(pretrained)}@{slug(revision or 'main')}"


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
    argv = ["--model", model, "--model_args", model_args, "--tasks", ",".join(task_list),
            "--output_path", str(output_path)]
    if limit is not None:
        argv += ["--limit", str(limit)]
    if log_samples:
        argv.append("--log_samples")
    if metadata:
        argv += ["--metadata", json.dumps(dict(metadata))]
    return run_lm_eval(argv + list(extra_args))


def run_lm_eval(argv: Sequence[str]) -> EvalRun | None:
    """Run ``lm_eval run ARGV`` in-process with the trust tasks added; see :func:`run_eval`.

    Under ``accelerate launch`` (``RANK`` > 0 in the environment) only rank 0 writes results:
    the other processes score their share and return ``None``.

    ``--tasks`` defaults to ``trust``, ``--output_path`` to ``results``; the include path of the
    trust tasks is added to any ``--include_path`` given. lm-eval's built-in tasks are indexed
    only when a requested task is not a trust task (indexing them takes tens of seconds).
    """
    import tracing_bench.parallel  # noqa: F401  (registers the lm-eval model `trust-hf`)
    import tracing_bench.steering.model  # noqa: F401  (registers the lm-eval model `trust-steered`)
    from tracing_bench.tasks import TASKS_DIR

    args = _parse(list(argv))
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
        raise TracingBenchError(
            f"--output_path {output}: give a folder; results go to <folder>/<model>@<revision>/"
        )
    folder = run_folder(output, pretrained, revision)
    check_writable(folder, flag="--output_path")  # before any model is loaded
    if hf_like:
        _check_model(pretrained, revision, tokenizer=not model_args.get("tokenizer"))
    if model_type in STEERED_MODEL_TYPES:
        _check_steering(model_type, model_args, pretrained, revision)
    include = [p for p in (getattr(args, "include_path", None) or "").split(os.pathsep) if p]
    include.append(str(TASKS_DIR))
    specs = [t for spec in args.tasks for t in str(spec).split(",") if t]
    need_defaults = not _all_known(specs, include)
    _check_fewshot(getattr(args, "num_fewshot", None), specs, include, need_defaults)
    folder.mkdir(parents=True, exist_ok=True)
    # A path ending in .json makes lm-eval write <folder>/results_<date>.json (no model sub-folder).
    args.output_path = str(folder / "results.json")
    args.include_path = include

    from tracing_bench.logs import quiet_lm_eval
    from tracing_bench.steering.model import safe_stock_steered

    before = set(folder.glob("results_*.json"))
    safe = safe_stock_steered() if model_type == "steered" else contextlib.nullcontext()
    with _task_index(include_defaults=need_defaults), quiet_lm_eval(), safe:
        try:
            args.func(args)
        except TracingBenchError:
            raise
        except Exception as e:  # noqa: BLE001 - a failed run is one line (the traceback with TRACING_BENCH_DEBUG=1)
            if os.environ.get("TRACING_BENCH_DEBUG"):
                raise
            known = describe_load_error(e, pretrained + (f"@{revision}" if revision else ""),
                                        dtype=str(model_args.get("dtype", "auto")),
                                        device=str(getattr(args, "device", None) or "auto"),
                                        folder=snapshot_folder(pretrained, revision))
            if known is not None:
                raise known from e
            if isinstance(e, (OSError, ValueError, KeyError, ImportError, RuntimeError, TypeError,
                              pickle.UnpicklingError)):
                raise TracingBenchError(f"lm-eval failed: {first_line(e, with_type=True)} (set TRACING_BENCH_DEBUG=1 "
                                        "for the traceback)") from e
            raise
    if _process_rank() > 0:
        return None  # lm-eval gathered this process's scores on rank 0, which writes the results
    new = sorted(set(folder.glob("results_*.json")) - before, key=lambda p: p.stat().st_mtime)
    if not new:
        raise TracingBenchError(
            f"lm-eval wrote no results file into {folder}; check that the folder is writable"
        )
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
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return int(dist.get_rank())
    except ImportError:
        pass
    for rank, size in (("RANK", "WORLD_SIZE"), ("PMI_RANK", "PMI_SIZE"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE")):
        try:
            if int(os.environ.get(size, "1")) > 1:
                return int(os.environ.get(rank, "0"))
        except ValueError:
            continue
    return 0


def _parse(argv: list[str]):
    """Parse ``lm_eval run`` arguments with lm-eval's own parser; errors become one line."""
    from lm_eval._cli import HarnessCLI

    cli = HarnessCLI()
    run = cli._subparsers.choices["run"]

    def error(message: str):
        raise TracingBenchError(f"{message} (options are those of `lm_eval run`; see lm_eval run --help)")

    run.error = error  # type: ignore[method-assign]
    cli._parser.error = error  # type: ignore[method-assign]
    return cli._parser.parse_args(["run", *argv])


def _check_model(pretrained: str, revision: str | None, *, tokenizer: bool = True) -> None:
    """Fail early, without network, on a model folder that cannot be loaded or an uncached offline hub model.

    A folder is checked by :func:`tracing_bench.loading.check_model_folder` (config.json,
    complete weight files, tokenizer files unless ``tokenizer=False``).
    """
    from tracing_bench.tasks.common import _offline

    path = Path(pretrained).expanduser()
    if path.is_dir():
        check_model_folder(path, tokenizer=tokenizer, flag="--model_args pretrained=")
        return
    if path.exists():
        raise TracingBenchError(
            f"--model_args pretrained={pretrained} is a file; give a Hugging Face model id or the folder of a saved model"
        )
    if looks_like_path(pretrained):
        raise TracingBenchError(
            f"--model_args pretrained={pretrained}: no such folder; give a Hugging Face model id "
            "or the folder of a saved model"
        )
    if _offline():
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(pretrained, "config.json", revision=revision)
        except ValueError:
            cached = None
        if not isinstance(cached, str):
            raise TracingBenchError(
                f"--model_args pretrained={pretrained}"
                + (f",revision={revision}" if revision else "")
                + " is not in the local Hugging Face cache and the hub is offline (HF_HUB_OFFLINE=1); "
                "download it first or unset HF_HUB_OFFLINE"
            )


def _check_steering(model_type: str, model_args: Mapping[str, Any], pretrained: str, revision: str | None) -> None:
    """Validate ``steer_path`` with the ``weights_only=True`` loader before lm-eval sees it.

    lm-eval's stock ``steered`` model would unpickle the file (``weights_only=False``), running any
    code in it; here the file is read safely and checked against the model's architecture
    (hookpoints, hidden size) first, for ``steered`` and ``trust-steered`` alike, and the stock
    model then runs inside :func:`tracing_bench.steering.model.safe_stock_steered`.
    """
    from tracing_bench.steering.model import check_steer_file_fits

    steer_path = model_args.get("steer_path")
    if not steer_path:
        raise TracingBenchError(
            f"--model {model_type} needs a steering file: --model_args pretrained={pretrained or 'MODEL'},"
            "steer_path=vector.pt (from `tracing-bench steer extract`)"
        )
    steer_path = str(steer_path)
    if model_type == "steered" and steer_path.endswith(".csv"):
        return  # lm-eval's sparse-coder CSV: read with pandas, no pickle
    if model_type == "steered" and not steer_path.endswith((".pt", ".pth")):
        raise TracingBenchError(
            f"steer_path={steer_path}: lm-eval's steered model reads .pt / .pth files (or a sparse-coder .csv)"
        )
    check_steer_file_fits(steer_path, pretrained, revision, stock=model_type == "steered")


def _leaf_configs(manager: Any, names: list[str], seen: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """Task name -> indexed YAML config (includes resolved) of every task that ``names`` select."""
    from lm_eval.tasks._index import Kind

    seen = set() if seen is None else seen
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        if name in seen:
            continue
        seen.add(name)
        entry = manager.task_index.get(name)
        if entry is None:
            continue
        if entry.kind == Kind.GROUP:
            members: list[str] = []
            for item in (entry.cfg or {}).get("task") or []:
                if isinstance(item, str):
                    members.append(item)
                elif isinstance(item, dict) and isinstance(item.get("task"), str):
                    if "num_fewshot" in item:
                        out[item["task"]] = item
                    else:
                        members.append(item["task"])
            out.update(_leaf_configs(manager, members, seen))
        elif entry.kind == Kind.TAG:
            out.update(_leaf_configs(manager, sorted(entry.tags), seen))
        else:
            out[name] = dict(entry.cfg or {})
    return out


def _check_fewshot(num_fewshot: int | None, specs: list[str], include: list[str], include_defaults: bool) -> None:
    """Refuse ``--num_fewshot N`` for tasks that lm-eval would silently run 0-shot.

    lm-eval ignores ``--num_fewshot`` for a task whose YAML fixes ``num_fewshot: 0`` and only
    says so at INFO level, while the results header shows N; refusing is the honest answer.
    """
    if not num_fewshot:
        return
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=include, include_defaults=include_defaults)
    names = [n for s in specs for n in (manager.match_tasks([s]) or [s])]
    fixed = sorted(t for t, cfg in _leaf_configs(manager, names).items() if cfg.get("num_fewshot") == 0)
    if fixed:
        shown = ", ".join(fixed[:6]) + (f" and {len(fixed) - 6} more" if len(fixed) > 6 else "")
        raise TracingBenchError(
            f"--num_fewshot {num_fewshot}: {shown} run 0-shot by design (num_fewshot: 0 in the task's YAML), so "
            "lm-eval would ignore the option while the results header says it was used; drop --num_fewshot "
            "or leave these tasks out"
        )


def _all_known(specs: list[str], include: list[str]) -> bool:
    """Whether every task spec names or globs tasks found in the include paths alone."""
    from lm_eval.tasks import TaskManager

    if any(s.endswith(".yaml") or Path(s).is_dir() for s in specs):
        return True
    own = TaskManager(include_path=include, include_defaults=False)
    return all(own.match_tasks([s]) for s in specs)


@contextlib.contextmanager
def _task_index(include_defaults: bool) -> Iterator[None]:
    """Within the block, lm-eval's TaskManager indexes its built-in tasks only if asked to."""
    import lm_eval.tasks as tasks_module

    original = tasks_module.TaskManager
    if include_defaults:
        yield
        return

    class _OwnTasksOnly(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["include_defaults"] = False
            super().__init__(*args, **kwargs)

    tasks_module.TaskManager = _OwnTasksOnly  # type: ignore[misc]
    try:
        yield
    finally:
        tasks_module.TaskManager = original  # type: ignore[misc]


def _datasets(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per trust task: its dimension, the md5 of the data file, the split protocol and seed."""
    from tracing_bench.dimensions import DIMENSIONS, QUESTIONS_FILE, RELEASED
    from tracing_bench.files import file_md5
    from tracing_bench.tasks.common import setting

    out: dict[str, dict[str, Any]] = {}
    for task, config in (results.get("configs") or {}).items():
        meta = config.get("metadata") or {}
        dim = meta.get("dimension")
        bundled = DIMENSIONS.get(dim) or RELEASED.get(dim)
        if bundled is None:
            continue
        path = QUESTIONS_FILE if task == "trustgen_reliability" else bundled.path
        out[task] = {"dimension": dim, "dataset_file": path.name, "dataset_md5": file_md5(path),
                     "protocol": setting(meta, "protocol"), "split_seed": setting(meta, "split_seed")}
    return out


def _write_provenance(folder: Path, results_file: Path, results: dict[str, Any], pretrained: str,
                      revision: str | None, argv: list[str]) -> None:
    from tracing_bench import __version__

    date = results_file.stem[len("results_"):]
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
    atomic_write_text(target, dumps_json(record, indent=2) + "\n")


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
        value = json.dumps(args)
    else:
        items = [kv for kv in text.split(",") if kv and kv.split("=", 1)[0] not in ("pretrained", "revision")]
        value = ",".join([f"pretrained={pretrained}", *([f"revision={revision}"] if revision else []), *items])
    if found is None:
        return [*argv, "--model_args", value]
    i = found[0]
    argv[i] = value if argv[i] == text else f"{argv[i].split('=', 1)[0]}={value}"
    return argv


def _eval_task(argv: list[str]) -> EvalRun | None:
    return run_lm_eval(argv)


def eval_series(
    argv: Sequence[str],
    revisions: str | list[str] | None = None,
    *,
    executor: str = "local",
    ray_address: str | None = None,
    gpus_per_task: float = 0,
    cpus_per_task: float = 1,
    max_retries: int = 3,
) -> list[EvalRun]:
    """``lm_eval run`` at every revision of a model (:func:`run_lm_eval` per revision).

    Each revision is one task (``local``: one after the other here; ``ray``: one Ray task each,
    see :mod:`tracing_bench.executors`) writing into its own ``OUT/<model>@<revision>/``.

    Args:
        argv: ``lm_eval run`` arguments; ``--model_args`` names ``pretrained=`` (a hub id, or a
            folder of checkpoint sub-folders step0, step10, ... which is a series by itself).
        revisions: hub revisions with range shorthands
            (:func:`tracing_bench.checkpoints.parse_revisions`); ``None`` for a folder series.
        executor, ray_address, gpus_per_task, cpus_per_task, max_retries: see
            :class:`tracing_bench.executors.ExecutorSettings`.

    Returns:
        One :class:`EvalRun` per revision, in series order.

    Raises:
        TracingBenchError: bad arguments, a missing model, or failed tasks (one line).
    """
    from tracing_bench.checkpoints import resolve_series
    from tracing_bench.executors import ExecutorSettings, import_ray, run_tasks

    run_on = ExecutorSettings(executor, ray_address, float(gpus_per_task), float(cpus_per_task), int(max_retries))  # type: ignore[arg-type]
    if run_on.executor == "ray":
        import_ray()
    args = _parse(list(argv))
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
    runs = run_tasks(_eval_task, argvs, [c.label for c in ckpts], settings=run_on, what="revision")
    return [r for r in runs if r is not None]
