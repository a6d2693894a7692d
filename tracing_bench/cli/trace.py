"""``tracing-bench trace``: probes and MI per layer across a checkpoint series, then its figures."""

from __future__ import annotations

from pathlib import Path

import click

from tracing_bench.cli.group import executor_options, main, threads_option


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
@click.option("--dimensions", default="all", show_default=True, help="'all' or a comma list of dimensions / CSV paths.")
@click.option("--layers", default="all", show_default=True, help="'all', 0,4,8, 4-12 or 0:32:4 (block indices).")
@click.option("--pooling", type=click.Choice(["last", "mean"]), default="last", show_default=True)
@click.option("--mi", is_flag=True, help="Also estimate I(X;T) and I(Y;T) per layer (nHSIC).")
@click.option("--sigma", type=float, default=50.0, show_default=True, help="nHSIC kernel width.")
@click.option(
    "--protocol",
    type=click.Choice(["paper", "reference"]),
    default="paper",
    show_default=True,
    help="paper: seeded group-aware splits, probe-train scaling, converged probe, float64 nHSIC. "
    "reference: the released code's numbers: released files in file order, float32 model (unless "
    "--dtype), one statement per forward, whole-file scaling, sklearn LogisticRegression() on the "
    "first 80% / last 20%, float32 nHSIC.",
)
@click.option("--probes", default="logistic,mass_mean", show_default=True, help="Probe kinds (comma list).")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option(
    "--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), default="auto", show_default=True
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Activation cache (default $TRACING_BENCH_CACHE or ~/.cache/tracing-bench).",
)
@click.option(
    "--blocks-attr",
    default=None,
    help="Dotted path of the decoder blocks' ModuleList for architectures not recognised (e.g. model.layers).",
)
@click.option("--max-length", type=int, default=None, help="Truncate statements to this many tokens.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the paper splits.")
@click.option(
    "--delete-checkpoints",
    is_flag=True,
    help="Delete each hub checkpoint from the Hugging Face cache after use (never a local folder).",
)
@click.option(
    "--max-statements",
    type=int,
    default=None,
    help="Trace a seeded, split-preserving subsample of about N statements per dimension (quick looks).",
)
@click.option(
    "--mi-subsample",
    type=int,
    default=None,
    help="Estimate MI on N probe-train statements (seeded); nHSIC costs grow as N^3.",
)
@click.option(
    "--mi-noise",
    type=int,
    default=8,
    show_default=True,
    help="MI noise: nHSIC on K seeded half-samples (same at every checkpoint; about K/8 of the MI cost); "
    "a turn is reported only beyond it. 0 = off.",
)
@click.option(
    "--controls/--no-controls",
    default=True,
    show_default=True,
    help="Also train each probe on a control labelling (selectivity) and on held-out groups (transfer, "
    "where the data have them: CrowS-Pairs bias types, a CSV's topic column).",
)
@click.option(
    "--baseline",
    type=click.Choice(["auto", "random-init", "none"]),
    default="auto",
    show_default=True,
    help="random-init: also probe a randomly initialised model of the last checkpoint's config and "
    "tokenizer (seeded with --seed; weights never saved); auto: when the series is one checkpoint "
    "or has no step-0 checkpoint.",
)
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
    max_statements: int | None,
    mi_subsample: int | None,
    mi_noise: int,
    controls: bool,
    baseline: str,
    out: Path,
    executor: str,
    ray_address: str | None,
    gpus_per_task: float,
    cpus_per_task: float,
    max_retries: int,
) -> None:
    """Probe every layer of every checkpoint (and MI with --mi); resumable.

    Writes probes.csv, mi.csv, findings.json and figures.
    """
    from tracing_bench.executors import ExecutorSettings
    from tracing_bench.report.control_plots import control_figures
    from tracing_bench.report.plots import trace_figures
    from tracing_bench.settings import TraceSettings
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
        max_statements=max_statements,
        mi_subsample=mi_subsample,
        mi_noise=mi_noise,
        controls=controls,
        baseline=baseline,
    )
    run_on = ExecutorSettings(executor, ray_address, gpus_per_task, cpus_per_task, max_retries)  # type: ignore[arg-type]
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
