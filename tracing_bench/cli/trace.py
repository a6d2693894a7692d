"""``tracing-bench trace``: probes and MI per layer across a checkpoint series, then its figures."""

from __future__ import annotations

from pathlib import Path

import click

from tracing_bench.cli.group import executor_options, main, threads_option
from tracing_bench.cli.options import settings_option
from tracing_bench.executors import Executor, ExecutorSettings
from tracing_bench.settings import HarvestSettings, TraceSettings


@main.command("trace")
@click.option(
    "--model",
    required=True,
    help="Hugging Face model id, a model folder, or a folder of checkpoint sub-folders (step0, step10, ...).",
)
@click.option(
    "--revisions",
    default=None,
    help="Comma list of hub revisions with ranges: ckpt_000:ckpt_359:10, step1000:step143000:1000, "
    "pythia-log, step1000-tokens4B:step9000-tokens38B:1000 (OLMo, resolved against the repo).",
)
@settings_option(TraceSettings, "dimensions", default="all")
@settings_option(TraceSettings, "layers")
@settings_option(HarvestSettings, "pooling")
@settings_option(TraceSettings, "mi")
@settings_option(TraceSettings, "sigma")
@settings_option(TraceSettings, "protocol")
@settings_option(TraceSettings, "probes")
@settings_option(HarvestSettings, "batch_size")
@settings_option(HarvestSettings, "dtype")
@settings_option(HarvestSettings, "device")
@settings_option(HarvestSettings, "cache_dir", type=click.Path(file_okay=False, path_type=Path))
@settings_option(HarvestSettings, "blocks_attr")
@settings_option(HarvestSettings, "max_length")
@settings_option(TraceSettings, "seed")
@settings_option(TraceSettings, "delete_checkpoints")
@settings_option(TraceSettings, "prefetch", "--prefetch/--no-prefetch")
@settings_option(TraceSettings, "max_statements")
@settings_option(TraceSettings, "mi_subsample")
@settings_option(TraceSettings, "mi_noise")
@settings_option(TraceSettings, "controls", "--controls/--no-controls")
@settings_option(TraceSettings, "baseline")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@executor_options
@threads_option(wrap=False)
def trace_cmd(
    threads: str | None,
    model: str,
    revisions: str | None,
    dimensions: str,
    layers: str,
    pooling: str,
    mi: bool,
    sigma: float,
    protocol: str,
    probes: str,
    batch_size: int,
    dtype: str,
    device: str,
    cache_dir: Path | None,
    blocks_attr: str | None,
    max_length: int | None,
    seed: int,
    delete_checkpoints: bool,
    prefetch: bool,
    max_statements: int | None,
    mi_subsample: int | None,
    mi_noise: int,
    controls: bool,
    baseline: str,
    out: Path,
    executor: Executor,
    ray_address: str | None,
    gpus_per_task: float,
    cpus_per_task: float,
    max_retries: int,
) -> None:
    """Probe every layer of every checkpoint (and MI with --mi); resumable.

    Writes probes.csv, mi.csv, findings.json and figures. Exit status 1 when some hub revisions
    could not be downloaded (each named in one line; the others are traced).
    """
    from tracing_bench.report.control_plots import control_figures
    from tracing_bench.report.plots import trace_figures
    from tracing_bench.trace import record_figures, trace

    settings = TraceSettings.from_options(
        threads=threads,
        dimensions=dimensions,
        layers=layers,
        pooling=pooling,
        mi=mi,
        sigma=sigma,
        protocol=protocol,
        probes=probes,
        batch_size=batch_size,
        dtype=dtype,
        device=device,
        cache_dir=cache_dir,
        blocks_attr=blocks_attr,
        max_length=max_length,
        seed=seed,
        delete_checkpoints=delete_checkpoints,
        prefetch=prefetch,
        max_statements=max_statements,
        mi_subsample=mi_subsample,
        mi_noise=mi_noise,
        controls=controls,
        baseline=baseline,
    )
    run_on = ExecutorSettings(executor, ray_address, gpus_per_task, cpus_per_task, max_retries)
    result = trace(model, revisions, out=out, settings=settings, run_on=run_on)
    figures = trace_figures(result.probes_csv, result.mi_csv, out / "figures", findings=result.findings)
    figures += control_figures(result.probes_csv, out / "figures")
    record_figures(result.trace_json, figures)
    click.echo(
        f"probes: {result.probes_csv}\nmi: {result.mi_csv}\nfindings: {result.findings_json}\n"
        f"provenance: {result.trace_json}"
    )
    if figures:
        click.echo(f"figures: {len(figures)} in {Path(figures[0]).parent}")
    if result.failed:
        click.echo(
            f"error: {len(result.failed)} of {result.checkpoints + len(result.failed)} revisions could not "
            f"be downloaded ({', '.join(result.failed)}); the others are traced: run the same command again "
            "to add them",
            err=True,
        )
        raise SystemExit(1)
