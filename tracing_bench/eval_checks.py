"""What ``tracing-bench eval`` checks before lm-eval starts, and how it runs lm-eval's own parser.

:func:`parse_lm_eval_args` parses ``lm_eval run`` arguments with lm-eval's parser (errors become
one line); :func:`check_model` fails early, without network, on a model folder that cannot be
loaded or an uncached model when the hub is offline; :func:`check_steering` reads a steering file
with ``weights_only=True`` and checks it against the model before lm-eval (which would unpickle
it) sees it; :func:`check_fewshot` refuses ``--num_fewshot`` for tasks that would silently run
0-shot; :func:`task_index` keeps lm-eval from indexing its built-in tasks when only the trust
tasks are asked for (:func:`all_known`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

from huggingface_hub import try_to_load_from_cache

from tracing_bench.errors import TracingBenchError
from tracing_bench.files import looks_like_path
from tracing_bench.loading import check_model_folder
from tracing_bench.models.steered import check_steer_file_fits
from tracing_bench.tasks.common import hub_offline


def parse_lm_eval_args(argv: list[str]) -> Any:
    """Parse ``lm_eval run`` arguments with lm-eval's own parser; errors become one line.

    Returns:
        lm-eval's ``argparse`` namespace (``func`` runs it).
    """
    # lazy: lm-eval loads on first use, so importing eval_checks stays light
    from lm_eval._cli import HarnessCLI

    cli = HarnessCLI()
    run = cli._subparsers.choices["run"]

    def error(message: str) -> NoReturn:
        raise TracingBenchError(f"{message} (options are those of `lm_eval run`; see lm_eval run --help)")

    run.error = error
    cli._parser.error = error
    return cli._parser.parse_args(["run", *argv])


def check_model(pretrained: str, revision: str | None, *, tokenizer: bool = True) -> None:
    """Fail early, without network, on a model folder that cannot be loaded or an uncached offline hub model.

    A folder is checked by :func:`tracing_bench.loading.check_model_folder` (config.json,
    complete weight files, tokenizer files unless ``tokenizer=False``).
    """
    path = Path(pretrained).expanduser()
    if path.is_dir():
        check_model_folder(path, tokenizer=tokenizer, flag="--model_args pretrained=")
        return
    if path.exists():
        raise TracingBenchError(
            f"--model_args pretrained={pretrained} is a file; give a Hugging Face model id or the folder of a saved "
            "model"
        )
    if looks_like_path(pretrained):
        raise TracingBenchError(
            f"--model_args pretrained={pretrained}: no such folder; give a Hugging Face model id "
            "or the folder of a saved model"
        )
    if hub_offline():
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


def check_steering(model_type: str, model_args: Mapping[str, Any], pretrained: str, revision: str | None) -> None:
    """Validate ``steer_path`` with the ``weights_only=True`` loader before lm-eval sees it.

    lm-eval's stock ``steered`` model would unpickle the file (``weights_only=False``), running any
    code in it; here the file is read safely and checked against the model's architecture
    (hookpoints, hidden size) first, for ``steered`` and ``trust-steered`` alike, and the stock
    model then runs inside :func:`tracing_bench.models.steered.safe_stock_steered`.
    """
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


def leaf_configs(manager: Any, names: list[str], seen: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """Task name -> indexed YAML config (includes resolved) of every task that ``names`` select."""
    # lazy: lm-eval loads on first use, so importing eval_checks stays light
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
            out.update(leaf_configs(manager, members, seen))
        elif entry.kind == Kind.TAG:
            out.update(leaf_configs(manager, sorted(entry.tags), seen))
        else:
            out[name] = dict(entry.cfg or {})
    return out


def check_fewshot(num_fewshot: int | None, specs: list[str], include: list[str], include_defaults: bool) -> None:
    """Refuse ``--num_fewshot N`` for tasks that lm-eval would silently run 0-shot.

    lm-eval ignores ``--num_fewshot`` for a task whose YAML fixes ``num_fewshot: 0`` and only
    says so at INFO level, while the results header shows N; refusing is the honest answer.
    """
    if not num_fewshot:
        return
    # lazy: lm-eval loads on first use, so importing eval_checks stays light
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=include, include_defaults=include_defaults)
    names = [n for s in specs for n in (manager.match_tasks([s]) or [s])]
    fixed = sorted(t for t, cfg in leaf_configs(manager, names).items() if cfg.get("num_fewshot") == 0)
    if fixed:
        shown = ", ".join(fixed[:6]) + (f" and {len(fixed) - 6} more" if len(fixed) > 6 else "")
        raise TracingBenchError(
            f"--num_fewshot {num_fewshot}: {shown} run 0-shot by design (num_fewshot: 0 in the task's YAML), so "
            "lm-eval would ignore the option while the results header says it was used; drop --num_fewshot "
            "or leave these tasks out"
        )


def all_known(specs: list[str], include: list[str]) -> bool:
    """Whether every task spec names or globs tasks found in the include paths alone."""
    # lazy: lm-eval loads on first use, so importing eval_checks stays light
    from lm_eval.tasks import TaskManager

    if any(s.endswith(".yaml") or Path(s).is_dir() for s in specs):
        return True
    own = TaskManager(include_path=include, include_defaults=False)
    return all(own.match_tasks([s]) for s in specs)


@contextlib.contextmanager
def task_index(include_defaults: bool) -> Iterator[None]:
    """Within the block, lm-eval's TaskManager indexes its built-in tasks only if asked to."""
    # lazy: lm-eval loads on first use, so importing eval_checks stays light
    import lm_eval.tasks as tasks_module

    original = tasks_module.TaskManager
    if include_defaults:
        yield
        return

    class _OwnTasksOnly(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["include_defaults"] = False
            super().__init__(*args, **kwargs)

    tasks_module.TaskManager = _OwnTasksOnly
    try:
        yield
    finally:
        tasks_module.TaskManager = original
