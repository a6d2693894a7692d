"""Where independent tasks run: in this process (``local``) or as Ray tasks (``ray``).

:func:`run_tasks` is a generic runner: one task per item (a checkpoint of a trace, a revision of
an evaluation series), each writing its own files, results back in item order. A trace runs one
task per checkpoint (:func:`tracing_bench.trace.run_checkpoints`: load -> harvest -> probe ->
optionally delete, writing atomic part files into the shared output folder, then a merge on the
driver); an evaluation over several revisions one ``lm_eval run`` per revision
(:func:`tracing_bench.evaluate.eval_series`), each into its own ``OUT/<model>@<revision>/``
folder. Both fan out the same way:

* ``local``: one after the other in this process;
* ``ray``: one Ray task per checkpoint / revision, ``num_cpus=cpus_per_task``,
  ``num_gpus=gpus_per_task``, retried ``max_retries`` times when its worker dies (OOM killer,
  pre-empted node). The driver waits for every task, so whatever finished is on disk, and then
  names the checkpoints that failed in one line; the same command resumes (finished parts and
  cached activations are reused, never recomputed).

Every worker must see the output folder (and the activation cache) at the same path: a shared
file system on a cluster, or one machine.

>>> run_tasks(work, items, labels, shared, settings=ExecutorSettings("ray", ray_address="auto"))
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tracing_bench.errors import TracingBenchError, first_line

log = logging.getLogger(__name__)

Executor = Literal["local", "ray"]
EXECUTORS: tuple[str, ...] = ("local", "ray")
INSTALL_RAY = "pip install 'tracing-bench[ray]'"


@dataclass(frozen=True)
class ExecutorSettings:
    """How to run the per-checkpoint tasks.

    Attributes:
        executor: ``local`` (this process) or ``ray`` (one Ray task per checkpoint).
        ray_address: ``None`` starts a private local Ray cluster; ``auto`` joins the cluster of
            this node (``ray start --head``); ``ray://host:10001`` connects a Ray client.
        gpus_per_task: GPUs Ray reserves for each task (may be fractional).
        cpus_per_task: CPUs Ray reserves for each task (also its torch thread count).
        max_retries: times Ray re-runs a task whose worker died.
    """

    executor: Executor = field(
        default="local",
        metadata={
            "help": "local: one checkpoint after the other here; ray: one Ray task per checkpoint "
            "(pip install 'tracing-bench[ray]')."
        },
    )
    ray_address: str | None = field(
        default=None,
        metadata={
            "help": "Ray cluster: auto (this node's cluster) or ray://<head>:10001 [default: a private local one]."
        },
    )
    gpus_per_task: float = field(default=0, metadata={"help": "GPUs Ray reserves per task."})
    cpus_per_task: float = field(default=1, metadata={"help": "CPUs Ray reserves per task (its torch threads)."})
    max_retries: int = field(default=3, metadata={"help": "Ray re-runs a task this many times when its worker dies."})

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise TracingBenchError(f"--executor {self.executor!r} is not valid: use local or ray")
        if self.gpus_per_task < 0 or self.cpus_per_task < 0:
            raise TracingBenchError(
                f"--gpus-per-task {self.gpus_per_task} / --cpus-per-task {self.cpus_per_task}: "
                "give numbers >= 0 (e.g. --gpus-per-task 1 --cpus-per-task 4)"
            )
        if self.max_retries < 0:
            raise TracingBenchError(f"--max-retries {self.max_retries} is not valid: give 0 or more")
        if self.executor == "local" and (self.ray_address or self.gpus_per_task):
            raise TracingBenchError(
                "--ray-address and --gpus-per-task only apply to --executor ray: add --executor ray or drop them"
            )


def import_ray() -> Any:
    """``import ray``, or a one-line :class:`TracingBenchError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise TracingBenchError(f"--executor ray needs Ray, which is not installed: {INSTALL_RAY}") from None
    return ray


def _init_ray(ray: Any, address: str | None) -> bool:
    """Connect to (or start) a Ray cluster unless one is connected; True if we started it."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"address": address}
    if address is None:
        kwargs["include_dashboard"] = False
    try:
        ray.init(**kwargs)
    except (ConnectionError, ValueError, RuntimeError) as e:
        text = first_line(e)
        raise TracingBenchError(
            f"--ray-address {address or '(local)'}: cannot connect to Ray ({text}); start the cluster "
            "(ray start --head) or give its address: auto on a cluster node, ray://<head>:10001 from outside"
        ) from None
    return True


def run_tasks(
    fn: Callable[..., Any],
    items: Sequence[Any],
    labels: Sequence[str],
    *args: Any,
    settings: ExecutorSettings,
    what: str = "checkpoint",
    on_done: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """``[fn(item, *args) for item in items]`` here or as Ray tasks; results in ``items`` order.

    Args:
        fn: the task (a module-level function, or anything cloudpickle can ship).
        items: one task per item.
        labels: a name per item, for messages.
        *args: shared arguments (sent to the Ray object store once).
        settings: executor settings.
        what: what an item is, for messages (``checkpoint``, ``revision``).
        on_done: called with (index, result) as each task finishes.

    Returns:
        The results.

    Raises:
        TracingBenchError: Ray is missing or unreachable, or a task failed (one line naming the
            items; the others have finished and their work is saved).
    """
    if settings.executor == "local":
        done = []
        for i, item in enumerate(items):
            done.append(fn(item, *args))
            if on_done is not None:
                on_done(i, done[-1])
        return done

    ray = import_ray()
    started = _init_ray(ray, settings.ray_address)
    try:
        remote = ray.remote(fn).options(
            num_cpus=settings.cpus_per_task,
            num_gpus=settings.gpus_per_task,
            max_retries=settings.max_retries,
            retry_exceptions=False,
            name=f"tracing-bench:{what}",
        )
        shared = [ray.put(a) for a in args]
        refs = [remote.remote(item, *shared) for item in items]
        index = {ref.hex(): i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(items)
        failed: list[tuple[int, str]] = []
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                i = index[ref.hex()]
                try:
                    results[i] = ray.get(ref)
                except TracingBenchError as e:  # a bad-input error raised inside the task
                    failed.append((i, str(e)))
                except Exception as e:
                    failed.append((i, first_line(e, with_type=True)))
                else:
                    if on_done is not None:
                        on_done(i, results[i])
        if failed:
            failed.sort()
            names = ", ".join(labels[i] for i, _ in failed)
            retries = f" after {settings.max_retries} retries" if settings.max_retries else ""
            raise TracingBenchError(
                f"{len(failed)} of {len(items)} Ray tasks failed{retries}: {what} {names}: {failed[0][1]}; "
                "finished work is saved: run the same command again to resume"
            )
        return results
    finally:
        if started:
            ray.shutdown()
