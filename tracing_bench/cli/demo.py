"""``tracing-bench pretrain`` and ``tracing-bench demo``: the embedded tiny model, end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tracing_bench.cli.group import main, threads_option
from tracing_bench.errors import TracingBenchError


def _parse_steps(values: tuple[str, ...]) -> tuple[int, ...] | None:
    """``--save-at 0,1,2 --save-at 100`` -> (0, 1, 2, 100); None when not given."""
    if not values:
        return None
    out: list[int] = []
    for value in values:
        for item in value.replace(" ", ",").split(","):
            if not item:
                continue
            try:
                out.append(int(item))
            except ValueError:
                raise TracingBenchError(
                    f"--save-at {item!r} is not a step number: give whole numbers, e.g. --save-at 0,1,2,4,100"
                ) from None
    return tuple(out)


@main.command("pretrain")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for the checkpoints (step<N>/) and pretrain.json; reused if complete.",
)
@click.option("--steps", type=int, default=None, help="Optimiser steps [default: 200; 32 with --fast].")
@click.option(
    "--save-at", multiple=True, help="Checkpoint steps, comma list or repeated [default: 0,1,2,4,...,2^k,final]."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of tokenizer, weights and data order.")
@click.option("--fast", is_flag=True, help="Short preset (32 steps) for tests and quick looks.")
@click.option("--threads", type=int, default=None, help="CPU threads [default: 2 on an idle machine, 1 on a busy one].")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--trace-out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also probe each checkpoint in the training process as it is saved, into this folder "
    "(probes.csv, mi.csv, findings.json, live.json; as `tracing-bench trace --model OUT` would write).",
)
@click.option(
    "--dimensions",
    default="all",
    show_default=True,
    help="With --trace-out: dimensions to probe (names or CSV paths, comma list).",
)
@click.option("--mi", is_flag=True, help="With --trace-out: also estimate I(X;T) and I(Y;T) per layer.")
@click.option(
    "--max-statements",
    type=int,
    default=None,
    help="With --trace-out: probe a seeded subsample of about this many statements per dimension.",
)
def pretrain_cmd(
    out_dir: Path,
    steps: int | None,
    save_at: tuple[str, ...],
    seed: int,
    fast: bool,
    threads: int | None,
    quiet: bool,
    trace_out: Path | None,
    dimensions: str,
    mi: bool,
    max_statements: int | None,
) -> None:
    """Pre-train the tiny embedded Llama model on the CPU and save log-spaced checkpoints.

    With --trace-out, each checkpoint is probed while the run is alive (tracing_bench.live), with the
    same tables as `tracing-bench trace` run afterwards on the saved checkpoints.
    """
    import time

    from tracing_bench.pretrain import PretrainConfig, cached_run, pretrain

    kwargs: dict[str, Any] = {"seed": seed, "save_at": _parse_steps(save_at), "threads": threads}
    if steps is not None:
        kwargs["steps"] = steps
    from tracing_bench.files import check_writable

    config = PretrainConfig.fast(**kwargs) if fast else PretrainConfig(**kwargs)
    check_writable(out_dir, flag="--out")
    reused = cached_run(config, out_dir) is not None
    tracer = None
    if trace_out is not None:
        from tracing_bench.live import LiveTracer

        tracer = LiveTracer(
            trace_out,
            dimensions=dimensions,
            mi=mi,
            max_statements=max_statements,
            seed=seed,
            device="cpu",
            dtype="float32",
            threads=threads,
            name=str(out_dir),
        )
    t0 = time.perf_counter()
    folders = pretrain(config, out_dir, progress=not quiet, on_checkpoint=tracer.on_checkpoint if tracer else None)
    verb = "reused" if reused else f"trained in {time.perf_counter() - t0:.0f} s"
    click.echo(f"{len(folders)} checkpoints {verb}: {out_dir} ({', '.join(f.name for f in folders)})")
    if tracer is not None:
        if reused:
            click.echo(
                f"nothing traced live (the run was reused): trace it with tracing-bench trace --model {out_dir} "
                f"--out {trace_out}"
            )
        else:
            click.echo(f"traced {len(tracer.checkpoints)} checkpoints while training: {trace_out}")


@main.command("demo")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-out"),
    show_default=True,
    help="Output folder (checkpoints, activation cache, trace, steering, results, report.html).",
)
@click.option(
    "--fast",
    is_flag=True,
    help="Short pre-training and small scoring limits (a few minutes on a CPU; see bench/BENCH.md).",
)
@click.option(
    "--limit", type=int, default=None, help="Documents per task for lm-eval scoring [default: 50; 20 with --fast]."
)
@click.option(
    "--dimension",
    default="auto",
    show_default=True,
    help="Dimension to steer; auto = the one the probes say the model learned most.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@threads_option(wrap=False)
def demo_cmd(out: Path, fast: bool, limit: int | None, dimension: str, seed: int, threads: str | None) -> None:
    """Pre-train the tiny model, trace it, steer it, score it, and write one HTML report."""
    from tracing_bench.demo import DemoSettings, run_demo
    from tracing_bench.files import check_writable
    from tracing_bench.threads import check_threads

    check_writable(out, flag="--out")
    default_limit = 20 if fast else 50
    settings = DemoSettings(
        fast=fast,
        seed=seed,
        limit=limit if limit is not None else default_limit,
        dimension=dimension,
        max_statements=400 if fast else 1000,
        mi_subsample=256 if fast else 512,
        threads=check_threads(threads),
    )
    result = run_demo(out, settings, echo=lambda line: click.echo(line, err=True))
    click.echo(result["summary"])
