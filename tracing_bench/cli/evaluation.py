"""``tracing-bench tasks-path``, ``eval`` and ``eval-series``: lm-eval with the trust tasks."""

from __future__ import annotations

import click

from tracing_bench.cli.group import executor_options, main, threads_option


@main.command("tasks-path")
def tasks_path() -> None:
    """Print the lm-eval include path of the trust tasks.

    Use it with plain lm-eval:
    lm_eval --include_path "$(tracing-bench tasks-path)" --tasks trust --model hf --model_args pretrained=...
    """
    from tracing_bench.tasks import TASKS_DIR

    click.echo(str(TASKS_DIR))


@main.command(
    "eval",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": ["-h", "--help"]},
)
@click.pass_context
@threads_option()
def eval_cmd(ctx: click.Context) -> None:
    """Run `lm_eval run` with the trust tasks; results in OUT/<model>@<revision>/.

    Takes the options of `lm_eval run` (--model, --model_args, --tasks, --limit, --batch_size,
    --device, --num_fewshot, --metadata, ...). Adds the trust tasks to --include_path, defaults
    --tasks to `trust` and --output_path to `results`, and writes lm-eval's results_<date>.json
    into a folder named by model AND revision (read from --model_args), so checkpoints of one
    model never overwrite each other. Writes lm-eval's per-document logs (--log_samples, for
    `gate --paired`) unless given --no_log_samples. Before lm-eval starts, the output folder, a
    model folder and (--model steered / trust-steered) the steer_path file are checked; the
    steering file is read with torch.load(weights_only=True), never unpickled. Example:

    \b
    tracing-bench eval --model hf --limit 50 \\
        --model_args pretrained=EleutherAI/pythia-70m,revision=step1000
    """
    from tracing_bench.evaluate import log_samples_by_default, run_lm_eval

    run = run_lm_eval(log_samples_by_default(ctx.args))
    if run is not None:  # None: a process of rank > 0 under `accelerate launch`; rank 0 writes
        click.echo(f"results: {run.results_file}", err=True)


@main.command(
    "eval-series",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": ["-h", "--help"]},
)
@click.option(
    "--revisions",
    default=None,
    help="Hub revisions with ranges (as trace); omit when pretrained= is a folder of checkpoint sub-folders.",
)
@executor_options
@click.pass_context
@threads_option()
def eval_series_cmd(
    ctx: click.Context,
    revisions: str | None,
    executor: str,
    ray_address: str | None,
    gpus_per_task: float,
    cpus_per_task: float,
    max_retries: int,
) -> None:
    """`tracing-bench eval` at every revision: one run (a Ray task with --executor ray) per revision.

    The other options are those of `lm_eval run`, as for `tracing-bench eval` (per-document logs
    by default; --no_log_samples turns them off); each revision's results go to
    OUT/<model>@<revision>/. Example:

    \b
    tracing-bench eval-series --model hf --model_args pretrained=EleutherAI/pythia-70m \\
        --revisions step1000:step3000:1000 --limit 50 --executor ray --gpus-per-task 1
    """
    from tracing_bench.evaluate import eval_series, log_samples_by_default
    from tracing_bench.executors import ExecutorSettings

    run_on = ExecutorSettings(executor, ray_address, gpus_per_task, cpus_per_task, max_retries)  # type: ignore[arg-type]
    runs = eval_series(log_samples_by_default(ctx.args), revisions, run_on=run_on)
    for run in runs:
        click.echo(f"{run.revision if run.revision != 'main' else run.model}: {run.results_file}")
