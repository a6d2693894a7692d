"""The click group of ``tracing-bench``: errors as one line, shared options.

:class:`Group` turns errors into one line on stderr and exit status 2, never a traceback;
:func:`threads_option` and :func:`executor_options` are the options several commands share.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from tracing_bench import __version__
from tracing_bench.cli.options import settings_option
from tracing_bench.errors import TracingBenchError
from tracing_bench.executors import ExecutorSettings


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def _os_error(e: OSError) -> str:
    """One line for a file-system error: the path, the reason, what to do."""
    path = e.filename if e.filename is not None else None
    reason = e.strerror or one_line(str(e)) or type(e).__name__
    where = f"{path}: " if path is not None else ""
    return (
        f"{where}{reason} ({type(e).__name__}); check that the path exists and can be written "
        "(free space, permissions), then run the same command again: finished work is kept"
    )


class Group(click.Group):
    """A click group that turns errors into one line on stderr, never a traceback.

    :class:`TracingBenchError` (bad input) and any :class:`OSError` (a path that cannot be read or
    written, a full disk) exit with status 2; so does any other unexpected exception (a bug: its
    traceback is shown with ``TRACING_BENCH_DEBUG=1``), so that status 1 keeps the one meaning
    commands give it (``gate``: a measured regression). Ctrl-C exits with 130.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TracingBenchError as e:
            click.echo(f"error: {one_line(str(e))}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo(
                "interrupted: finished work is saved; run the same command again to resume",
                err=True,
            )
            sys.exit(130)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except OSError as e:
            if os.environ.get("TRACING_BENCH_DEBUG"):
                raise
            click.echo(f"error: {_os_error(e)}", err=True)
            sys.exit(2)
        except Exception as e:
            if os.environ.get("TRACING_BENCH_DEBUG"):
                raise
            click.echo(
                f"error: unexpected {type(e).__name__}: {one_line(str(e))[:300]} (a bug in tracing-bench or a "
                "library it calls; run again with TRACING_BENCH_DEBUG=1 for the traceback and report it)",
                err=True,
            )
            sys.exit(2)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tracing-bench")
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Show every library message (lm-eval's git probe, tokenizer warnings, repeats); "
    "by default known noise is silenced and each warning is shown once.",
)
def main(verbose: bool) -> None:
    """Trace how a language model's trustworthiness forms during pre-training.

    Five dimensions (reliability, privacy, toxicity, fairness, robustness) scored through
    lm-evaluation-harness tasks (trust_*), probed layer by layer across checkpoints, and
    steered with vectors taken from pre-training checkpoints.
    """
    from tracing_bench.logs import configure

    click.get_current_context().call_on_close(configure(verbose))


def threads_option(wrap: bool = True) -> Callable[[Any], Any]:
    """``--threads N``: CPU threads (torch and BLAS) for the work; by default the cores idle now.

    With ``wrap`` the command body runs inside :func:`tracing_bench.threads.use_threads`;
    without, the command receives ``threads`` (validated) and passes it on.
    """
    option = click.option(
        "--threads",
        default=None,
        metavar="N",
        help="CPU threads for torch and BLAS [default: the cores idle now, measured; a core that another "
        "job keeps busy is left to it].",
    )

    def deco(f: Any) -> Any:
        if not wrap:
            return option(f)

        @functools.wraps(f)
        def run(*args: Any, threads: str | None = None, **kwargs: Any) -> Any:
            from tracing_bench.threads import check_threads, use_threads

            with use_threads(check_threads(threads)):
                return f(*args, **kwargs)

        return option(run)

    return deco


def executor_options(f: Any) -> Any:
    """--executor, --ray-address, --gpus-per-task, --cpus-per-task, --max-retries (see tracing_bench.executors)."""
    options = [
        settings_option(ExecutorSettings, name)
        for name in ("executor", "ray_address", "gpus_per_task", "cpus_per_task", "max_retries")
    ]
    for option in reversed(options):
        f = option(f)
    return f
