"""The ``tracing-bench`` command line: a thin click group, one library call per command.

Errors in the user's input reach the user as one line on stderr (``error: ...``) and exit
status 2, never a traceback. Heavy imports (torch, transformers, lm-eval) happen inside the
commands so that ``--help`` stays fast.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

# OpenMP threads (torch's pool) that spin after each parallel region keep a core busy while the
# BLAS pool of numpy/scipy wants it: on 2 cores, alternating small torch and scipy calls ran 18x
# slower with 2 threads each than with 1 (bench/BENCH.md, "threads"). Passive waiting must be set
# before torch is imported; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click

from tracing_bench import __version__
from tracing_bench.errors import TracingBenchError


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _os_error(e: OSError) -> str:
    """One line for a file-system error: the path, the reason, what to do."""
    path = e.filename if e.filename is not None else None
    reason = e.strerror or _one_line(str(e)) or type(e).__name__
    where = f"{path}: " if path is not None else ""
    return (f"{where}{reason} ({type(e).__name__}); check that the path exists and can be written "
            "(free space, permissions), then run the same command again: finished work is kept")


class _Group(click.Group):
    """A click group that turns errors into one line on stderr, never a traceback.

    :class:`TracingBenchError` (bad input) and any :class:`OSError` (a path that cannot be read or
    written, a full disk) exit with status 2; so does any other unexpected exception (a bug: its
    traceback is shown with ``TRACING_BENCH_DEBUG=1``), so that status 1 keeps the one meaning
    commands give it (``gate``: a measured regression). Ctrl-C exits with 130.
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TracingBenchError as e:
            click.echo(f"error: {_one_line(str(e))}", err=True)
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
        except Exception as e:  # noqa: BLE001 - anything else is a bug: one line, exit 2
            if os.environ.get("TRACING_BENCH_DEBUG"):
                raise
            click.echo(
                f"error: unexpected {type(e).__name__}: {_one_line(str(e))[:300]} (a bug in tracing-bench or a "
                "library it calls; run again with TRACING_BENCH_DEBUG=1 for the traceback and report it)",
                err=True,
            )
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tracing-bench")
@click.option("-v", "--verbose", is_flag=True,
              help="Show every library message (lm-eval's git probe, tokenizer warnings, repeats); "
                   "by default known noise is silenced and each warning is shown once.")
def main(verbose: bool) -> None:
    """Trace how a language model's trustworthiness forms during pre-training.

    Five dimensions (reliability, privacy, toxicity, fairness, robustness) scored through
    lm-evaluation-harness tasks (trust_*), probed layer by layer across checkpoints, and
    steered with vectors taken from pre-training checkpoints.
    """
    from tracing_bench.logs import configure

    click.get_current_context().call_on_close(configure(verbose))


def _threads_option(wrap: bool = True):
    """``--threads N``: CPU threads (torch and BLAS) for the work; by default the cores idle now.

    With ``wrap`` the command body runs inside :func:`tracing_bench.threads.use_threads`;
    without, the command receives ``threads`` (validated) and passes it on.
    """
    option = click.option(
        "--threads", default=None, metavar="N",
        help="CPU threads for torch and BLAS [default: the cores idle now, measured; a core that another "
             "job keeps busy is left to it].",
    )

    def deco(f):
        if not wrap:
            return option(f)

        @functools.wraps(f)
        def run(*args, threads: str | None = None, **kwargs):
            from tracing_bench.threads import check_threads, use_threads

            with use_threads(check_threads(threads)):
                return f(*args, **kwargs)

        return option(run)

    return deco


# --------------------------------------------------------------------------------------- data
@main.group(cls=_Group)
def data() -> None:
    """Inspect the bundled datasets or validate your own statement,label CSV."""


@data.command("show")
@click.argument("dimension", required=False)
@click.option("--protocol", type=click.Choice(["paper", "reference"]), default="paper", show_default=True,
              help="Which splits to show: the paper's seeded 1:1 / 4:1 splits or the released code's file-order splits.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the paper splits.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def data_show(dimension: str | None, protocol: str, seed: int, as_json: bool) -> None:
    """Counts, splits and dropped rows of DIMENSION (a name or a CSV path); all five if omitted."""
    from tracing_bench.dimensions import DIMENSIONS, load_dimension

    names = [dimension] if dimension else list(DIMENSIONS)
    summaries = [load_dimension(n, protocol=protocol, seed=seed).summary() for n in names]
    if as_json:
        click.echo(json.dumps(summaries, indent=2))
        return
    click.echo(_format_summaries(summaries))


def _format_summaries(summaries: list[dict]) -> str:
    head = f"{'dimension':<12} {'rows':>6} {'kept':>6} {'dup':>5} {'confl':>5} {'groups':>6}  " + "  ".join(
        f"{s:>24}" for s in ("test n (1/0) groups", "probe_train n (1/0) groups", "probe_val n (1/0) groups")
    )
    lines = [head, "-" * len(head)]
    for s in summaries:
        cells = "  ".join(
            f"{s[k]['n']:>5} ({s[k]['label_1']}/{s[k]['label_0']}) {s[k]['groups']:>5}".rjust(24)
            for k in ("test", "probe_train", "probe_val")
        )
        lines.append(
            f"{s['name']:<12} {s['rows_read']:>6} {s['statements']:>6} "
            f"{s['dropped'].get('duplicates', 0):>5} {s['dropped'].get('conflicting', 0):>5} {s['groups']:>6}  {cells}"
        )
    lines.append("")
    lines.append("rows: data rows of the file (CrowS-Pairs: pairs, two statements each); dup: repeated statements "
                 "removed (kept once); confl: rows dropped because one statement carries both labels; groups: "
                 "statements that must share a split (near-duplicates, SST-2 twins, a TruthfulQA question, a "
                 "StereoSet context, a CrowS-Pairs pair), never in two splits.")
    for s in summaries:
        if "label 1" in s:
            lines.append(f"{s['title']}: label 1 = {s['label 1']}; label 0 = {s['label 0']}; trustworthy label = "
                         f"{s['trustworthy label']}; data: {s['source']}; file {Path(s['file']).name}, md5 {s['md5']}")
        if s["name"] == "fairness" and Path(s["file"]).name == "crows_pairs_anonymized.csv":
            lines.append("  limit (Blodgett et al. 2021): the sentences of a pair differ only in the group words, and in "
                         "1,290 of 1,508 pairs sent_more names the disadvantaged group (stereo; 218 antistereo), so a "
                         "probe can partly learn which group is named; compare the stereo and antistereo subsets "
                         "(DimensionData.extra['stereo_antistereo']).")
    if {s["name"] for s in summaries} >= {"fairness"} and len(summaries) > 1:
        lines.append("also bundled: stereoset-released (stereoset.csv, the released code's fairness file and the "
                     "fairness data of --protocol reference): related (label 1) vs unrelated (label 0) continuations "
                     "of StereoSet contexts, i.e. relatedness, not stereotyping; `data show stereoset-released`.")
    return "\n".join(lines)


@data.command("check")
@click.argument("file", type=click.Path(dir_okay=True, path_type=Path))
def data_check(file: Path) -> None:
    """Validate a statement,label CSV; prints its counts or one line saying what is wrong."""
    from tracing_bench.dimensions import load_dimension

    summary = load_dimension(file).summary()
    click.echo(
        f"ok: {file}: {summary['rows_read']} rows, {summary['statements']} statements kept "
        f"({summary['dropped']['duplicates']} duplicates, {summary['dropped']['conflicting']} conflicting "
        f"rows dropped); test {summary['test']['n']}, probe_train {summary['probe_train']['n']}, "
        f"probe_val {summary['probe_val']['n']}"
    )


# ----------------------------------------------------------------------------------- pretrain
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
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Folder for the checkpoints (step<N>/) and pretrain.json; reused if complete.")
@click.option("--steps", type=int, default=None,
              help="Optimiser steps [default: 200; 32 with --fast].")
@click.option("--save-at", multiple=True,
              help="Checkpoint steps, comma list or repeated [default: 0,1,2,4,...,2^k,final].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of tokenizer, weights and data order.")
@click.option("--fast", is_flag=True, help="Short preset (32 steps) for tests and quick looks.")
@click.option("--threads", type=int, default=None, help="CPU threads [default: 2 on an idle machine, 1 on a busy one].")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def pretrain_cmd(out_dir: Path, steps: int | None, save_at: tuple[str, ...], seed: int, fast: bool,
                 threads: int | None, quiet: bool) -> None:
    """Pre-train the tiny embedded Llama model on the CPU and save log-spaced checkpoints."""
    import time

    from tracing_bench.pretrain import PretrainConfig, cached_run, pretrain

    kwargs: dict[str, object] = {"seed": seed, "save_at": _parse_steps(save_at), "threads": threads}
    if steps is not None:
        kwargs["steps"] = steps
    from tracing_bench.files import check_writable

    config = PretrainConfig.fast(**kwargs) if fast else PretrainConfig(**kwargs)
    check_writable(out_dir, flag="--out")
    reused = cached_run(config, out_dir) is not None
    t0 = time.perf_counter()
    folders = pretrain(config, out_dir, progress=not quiet)
    verb = "reused" if reused else f"trained in {time.perf_counter() - t0:.0f} s"
    click.echo(f"{len(folders)} checkpoints {verb}: {out_dir} ({', '.join(f.name for f in folders)})")


# ------------------------------------------------------------------------------ tasks / eval
def _executor_options(f):
    """--executor, --ray-address, --gpus-per-task, --cpus-per-task, --max-retries (see tracing_bench.executors)."""
    options = [
        click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="local: one checkpoint after the other here; ray: one Ray task per checkpoint "
                          "(pip install 'tracing-bench[ray]').",),
        click.option("--ray-address", default=None,
                     help="Ray cluster: auto (this node's cluster) or ray://<head>:10001 [default: a private local one]."),
        click.option("--gpus-per-task", type=float, default=0, show_default=True, help="GPUs Ray reserves per task."),
        click.option("--cpus-per-task", type=float, default=1, show_default=True,
                     help="CPUs Ray reserves per task (its torch threads)."),
        click.option("--max-retries", type=int, default=3, show_default=True,
                     help="Ray re-runs a task this many times when its worker dies."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


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
@_threads_option()
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
@click.option("--revisions", default=None,
              help="Hub revisions with ranges (as trace); omit when pretrained= is a folder of checkpoint sub-folders.")
@_executor_options
@click.pass_context
@_threads_option()
def eval_series_cmd(ctx: click.Context, revisions: str | None, executor: str, ray_address: str | None,
                    gpus_per_task: float, cpus_per_task: float, max_retries: int) -> None:
    """`tracing-bench eval` at every revision: one run (a Ray task with --executor ray) per revision.

    The other options are those of `lm_eval run`, as for `tracing-bench eval` (per-document logs
    by default; --no_log_samples turns them off); each revision's results go to
    OUT/<model>@<revision>/. Example:

    \b
    tracing-bench eval-series --model hf --model_args pretrained=EleutherAI/pythia-70m \\
        --revisions step1000:step3000:1000 --limit 50 --executor ray --gpus-per-task 1
    """
    from tracing_bench.evaluate import eval_series, log_samples_by_default

    runs = eval_series(log_samples_by_default(ctx.args), revisions, executor=executor, ray_address=ray_address,
                       gpus_per_task=gpus_per_task, cpus_per_task=cpus_per_task, max_retries=max_retries)
    for run in runs:
        click.echo(f"{run.revision if run.revision != 'main' else run.model}: {run.results_file}")


# -------------------------------------------------------------------------------------- trace
@main.command("trace")
@click.option("--model", required=True,
              help="Hugging Face model id, a model folder, or a folder of checkpoint sub-folders (step0, step10, ...).")
@click.option("--revisions", default=None,
              help="Comma list of hub revisions with ranges: ckpt_000:ckpt_359:10, step1000:step143000:1000, "
                   "pythia-log, step1000-tokens4B:step9000-tokens38B:1000 (OLMo, resolved against the repo).")
@click.option("--dimensions", default="all", show_default=True, help="'all' or a comma list of dimensions / CSV paths.")
@click.option("--layers", default="all", show_default=True, help="'all', 0,4,8, 4-12 or 0:32:4 (block indices).")
@click.option("--pooling", type=click.Choice(["last", "mean"]), default="last", show_default=True)
@click.option("--mi", is_flag=True, help="Also estimate I(X;T) and I(Y;T) per layer (nHSIC).")
@click.option("--sigma", type=float, default=50.0, show_default=True, help="nHSIC kernel width.")
@click.option("--protocol", type=click.Choice(["paper", "reference"]), default="paper", show_default=True,
              help="paper: seeded group-aware splits, probe-train scaling, converged probe, float64 nHSIC. "
                   "reference: the released code's numbers: released files in file order, float32 model (unless "
                   "--dtype), one statement per forward, whole-file scaling, sklearn LogisticRegression() on the "
                   "first 80% / last 20%, float32 nHSIC.")
@click.option("--probes", default="logistic,mass_mean", show_default=True, help="Probe kinds (comma list).")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), default="auto", show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Activation cache (default $TRACING_BENCH_CACHE or ~/.cache/tracing-bench).")
@click.option("--blocks-attr", default=None,
              help="Dotted path of the decoder blocks' ModuleList for architectures not recognised (e.g. model.layers).")
@click.option("--max-length", type=int, default=None, help="Truncate statements to this many tokens.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the paper splits.")
@click.option("--delete-checkpoints", is_flag=True,
              help="Delete each hub checkpoint from the Hugging Face cache after use (never a local folder).")
@click.option("--max-statements", type=int, default=None,
              help="Trace a seeded, split-preserving subsample of about N statements per dimension (quick looks).")
@click.option("--mi-subsample", type=int, default=None,
              help="Estimate MI on N probe-train statements (seeded); nHSIC costs grow as N^3.")
@click.option("--mi-noise", type=int, default=8, show_default=True,
              help="MI noise: nHSIC on K seeded half-samples (same at every checkpoint; about K/8 of the MI cost); "
                   "a turn is reported only beyond it. 0 = off.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@_executor_options
@_threads_option(wrap=False)
def trace_cmd(threads: str | None, model: str, revisions: str | None, dimensions: str, layers: str, pooling: str,
              mi: bool, sigma: float,
              protocol: str, probes: str, batch_size: int, dtype: str, device: str, cache_dir: Path | None,
              blocks_attr: str | None, max_length: int | None, seed: int, delete_checkpoints: bool,
              max_statements: int | None, mi_subsample: int | None, mi_noise: int, out: Path, executor: str,
              ray_address: str | None, gpus_per_task: float, cpus_per_task: float, max_retries: int) -> None:
    """Probe every layer of every checkpoint (and MI with --mi); resumable; writes probes.csv, mi.csv, findings.json, figures."""
    from tracing_bench.executors import ExecutorSettings
    from tracing_bench.report.plots import trace_figures
    from tracing_bench.settings import TraceSettings
    from tracing_bench.trace import record_figures, trace

    settings = TraceSettings.from_options(
        threads=threads, dimensions=dimensions, layers=layers, pooling=pooling, mi=mi, sigma=sigma,
        protocol=protocol, probes=probes, batch_size=batch_size, dtype=dtype, device=device, cache_dir=cache_dir,
        blocks_attr=blocks_attr, max_length=max_length, seed=seed, delete_checkpoints=delete_checkpoints,
        max_statements=max_statements, mi_subsample=mi_subsample, mi_noise=mi_noise,
    )
    run_on = ExecutorSettings(executor, ray_address, gpus_per_task, cpus_per_task, max_retries)  # type: ignore[arg-type]
    result = trace(model, revisions, out=out, settings=settings, run_on=run_on)
    figures = trace_figures(result["probes_csv"], result["mi_csv"], out / "figures", findings=result["findings"])
    record_figures(result["trace_json"], figures)
    click.echo(f"probes: {result['probes_csv']}\nmi: {result['mi_csv']}\nfindings: {result['findings_json']}\n"
               f"provenance: {result['trace_json']}")
    if figures:
        click.echo(f"figures: {len(figures)} in {Path(figures[0]).parent}")


# ------------------------------------------------------------------------------------ steer
def _float_list(flag: str, text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise TracingBenchError(f"{flag} {text!r} is not a comma list of numbers; e.g. {flag}=-4,-1,1,4") from None


def _int_list(flag: str, text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise TracingBenchError(f"{flag} {text!r} is not a comma list of block indices; e.g. {flag} 12,14,16") from None


@main.group(cls=_Group)
def steer() -> None:
    """Steering vectors from pre-training checkpoints: extract, sweep (layer x alpha), correlate.

    Orientation: a positive coefficient (alpha) moves toward the trustworthy side, for every dimension.
    Apply a vector in lm-eval with --model trust-steered --model_args pretrained=...,steer_path=v.pt[,alpha=..]
    """


@steer.command("extract")
@_threads_option()
@click.option("--model", required=True, help="Source model id or folder (a pre-training checkpoint).")
@click.option("--revision", default=None, help="Hub revision of the checkpoint (e.g. ckpt_179, step1000).")
@click.option("--dimension", required=True, help="reliability, privacy, toxicity, fairness or robustness.")
@click.option("--layer", required=True, type=int, help="Decoder block whose output the vector is added to.")
@click.option("--scale", type=click.Choice(["paper", "reference", "unit"]), default="paper", show_default=True,
              help="paper: raw class-mean difference; reference: unit x std of projections (released code); unit.")
@click.option("--coefficient", type=float, default=1.0, show_default=True, help="Default steering coefficient stored in the file.")
@click.option("--protocol", type=click.Choice(["paper", "reference"]), default="paper", show_default=True,
              help="Which development split: the paper's seeded half or the released code's first 50%.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the paper splits.")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), default="auto", show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Activation cache.")
@click.option("--data", "data_csv", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Your own statement,label CSV instead of the bundled file (labels must mean what --dimension's mean).")
@click.option("--preset", type=click.Choice(["reference"]), default=None,
              help="reference: the released code's vector (--scale reference --protocol reference, float32 model, "
                   "one statement per forward); apply it with --preset reference / preset=reference.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output .pt (sidecar: OUT.json).")
@click.pass_context
def steer_extract(ctx: click.Context, model: str, revision: str | None, dimension: str, layer: int, scale: str,
                  coefficient: float, protocol: str, seed: int, batch_size: int, dtype: str, device: str,
                  cache_dir: Path | None, data_csv: Path | None, preset: str | None, out: Path) -> None:
    """Class-mean difference at one layer, saved in lm-eval's steered .pt format with a JSON sidecar."""
    from tracing_bench.files import check_outputs
    from tracing_bench.cache import default_cache_dir
    from tracing_bench.steering.vector import extract_from_checkpoint, preset_settings

    _check_preset(ctx, preset_settings(preset), preset, scale=scale, protocol=protocol)
    if out.suffix not in (".pt", ".pth"):
        raise TracingBenchError(f"--out {out} must end in .pt or .pth (lm-eval's steered model reads only those)")
    check_outputs([(out, "--out", "file"), (cache_dir or default_cache_dir(), "--cache-dir", "folder")])
    vec = extract_from_checkpoint(model, revision=revision, dimension=dimension, layer=layer, scale=scale,
                                  coefficient=coefficient, protocol=protocol, seed=seed, dtype=dtype, device=device,
                                  batch_size=batch_size, cache_dir=cache_dir, data=data_csv,
                                  preset=preset)  # type: ignore[arg-type]
    path = vec.save(out)
    click.echo(f"{path}: {vec.hookpoint}, norm {vec.vector.norm():.4g}, sha256 {vec.sha256[:16]}…; provenance {path}.json")


def _check_preset(ctx: click.Context, fixed: dict, preset: str | None, **given: str) -> None:
    """A flag given explicitly on the command line that contradicts --preset is an error (one line)."""
    for name, value in given.items():
        if name in fixed and value != fixed[name] and \
                ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
            raise TracingBenchError(
                f"--{name} {value} contradicts --preset {preset} (which sets --{name} {fixed[name]}); drop one of them"
            )


_EVAL_OPTIONS = [
    click.option("--tasks", default="trust", show_default=True, help="lm-eval tasks (comma list)."),
    click.option("--limit", type=float, default=None, help="lm-eval --limit (documents per task)."),
    click.option("--batch-size", type=int, default=8, show_default=True, help="Same for every setting."),
    click.option("--seed", type=int, default=1234, show_default=True, help="Every lm-eval seed."),
    click.option("--positions", type=click.Choice(["all", "last"]), default=None,
                 help="all: every position (lm-eval steered; the default); last: the released code (last context "
                      "token onward)."),
    click.option("--preset", type=click.Choice(["reference"]), default=None,
                 help="reference: apply as the released code: --positions last and a float32 target (unless --dtype)."),
    click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), default="auto", show_default=True),
    click.option("--device", default="auto", show_default=True),
    click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Activation cache."),
]


def _eval_options(f):
    for opt in reversed(_EVAL_OPTIONS):
        f = opt(f)
    return f


@steer.command("sweep")
@_threads_option()
@click.option("--model", required=True, help="Target model to steer (e.g. the chat/SFT model).")
@click.option("--revision", default=None, help="Target revision.")
@click.option("--vector", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Vector from steer extract.")
@click.option("--layers", default=None,
              help="Layers to sweep (default: the vector's). Other layers are re-extracted from the source in the vector's sidecar.")
@click.option("--alphas", default="-4,-1,1,4", show_default=True, help="Coefficients (positive = toward trustworthy).")
@click.option("--max-ppl-increase", type=float, default=None,
              help="Relative fluency bound: perplexity may rise at most this fraction over the unsteered model "
                   "(0.1 = +10%) [default: 0.1 unless --max-ppl is given].")
@click.option("--max-ppl", type=float, default=None,
              help="Absolute fluency bound, the paper's selection: LAMBADA perplexity must stay below it (the paper: 6 "
                   "for AmberChat, whose own is 4.5); without cached LAMBADA it bounds the bundled text's perplexity.")
@click.option("--lambada", type=click.Choice(["auto", "off"]), default="auto", show_default=True,
              help="auto: also guard with lm-eval lambada_openai when its data are cached locally.")
@_eval_options
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
def steer_sweep(model: str, revision: str | None, vector: Path, layers: str | None, alphas: str,
                max_ppl_increase: float | None, max_ppl: float | None, lambada: str, tasks: str, limit: float | None,
                batch_size: int, seed: int, positions: str | None, preset: str | None, dtype: str, device: str,
                cache_dir: Path | None, out: Path) -> None:
    """Unsteered baseline and every (layer, alpha): sweep.csv, best.json, plots of score and perplexity vs alpha."""
    from tracing_bench.steering.sweep import run_sweep

    res = run_sweep(model, vector, out, revision=revision, layers=_int_list("--layers", layers),
                    alphas=_float_list("--alphas", alphas), tasks=[t for t in tasks.split(",") if t],
                    limit=limit, batch_size=batch_size, seed=seed, max_ppl_increase=max_ppl_increase,
                    max_ppl=max_ppl, positions=positions, preset=preset, dtype=dtype, device=device, lambada=lambada,
                    cache_dir=cache_dir)
    for note in res.best.get("notes", []):
        click.echo(f"note: {note}", err=True)
    for task, b in res.best["best"].items():
        click.echo(f"{task}: " + ("no admissible setting" if b is None else
                                  f"layer {b['layer']} alpha {b['alpha']:g}: {b['score']:.4f} ({b['delta']:+.4f})"))
    click.echo("\n".join(str(p) for p in res.files))


@steer.command("correlate")
@_threads_option()
@click.option("--model", required=True, help="Source checkpoint series (model id or folder of checkpoints).")
@click.option("--revisions", default=None, help="Revisions (comma list or range, as in trace).")
@click.option("--target", required=True, help="Target model steered with each checkpoint's vector.")
@click.option("--target-revision", default=None)
@click.option("--dimension", required=True)
@click.option("--layer", required=True, type=int)
@click.option("--alpha", type=float, default=1.0, show_default=True, help="Coefficient (positive = toward trustworthy).")
@click.option("--scale", type=click.Choice(["paper", "reference", "unit"]), default="paper", show_default=True)
@click.option("--probes", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A trace's probes.csv to read probe accuracy from (else computed).")
@click.option("--n-boot", type=int, default=2000, show_default=True, help="Bootstrap resamples for the interval of r.")
@click.option("--data", "data_csv", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Your own statement,label CSV for vectors and probes (labels must mean what --dimension's mean).")
@_eval_options
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.pass_context
def steer_correlate(ctx: click.Context, model: str, revisions: str | None, target: str, target_revision: str | None,
                    dimension: str, layer: int, alpha: float, scale: str, probes: Path | None, n_boot: int,
                    data_csv: Path | None, tasks: str, limit: float | None, batch_size: int, seed: int,
                    positions: str | None, preset: str | None, dtype: str, device: str, cache_dir: Path | None,
                    out: Path) -> None:
    """Per checkpoint: probe accuracy and steering benefit on the target; Pearson r with a bootstrap interval."""
    from tracing_bench.steering.correlate import run_correlate
    from tracing_bench.steering.vector import preset_settings

    _check_preset(ctx, preset_settings(preset), preset, scale=scale)

    task_list = [t for t in tasks.split(",") if t and t != "trust"] or None
    res = run_correlate(model, revisions, target, dimension, layer, out, target_revision=target_revision, alpha=alpha,
                        scale=scale, probes=probes, tasks=task_list, limit=limit, batch_size=batch_size, seed=seed,
                        positions=positions, dtype=dtype, device=device, cache_dir=cache_dir, n_boot=n_boot,
                        data=data_csv, preset=preset)
    if res.undefined:
        click.echo(f"Pearson r is undefined over {len(res.rows)} checkpoints: {res.undefined}")
    elif res.ci_note:
        click.echo(f"Pearson r = {res.r:.3f} over {len(res.rows)} checkpoints; no bootstrap interval: {res.ci_note}")
    else:
        click.echo(f"Pearson r = {res.r:.3f}, 95% bootstrap interval [{res.ci[0]:.3f}, {res.ci[1]:.3f}] "
                   f"over {len(res.rows)} checkpoints")
    click.echo("\n".join(str(p) for p in res.files))


# ------------------------------------------------------------------- leaderboard, gate, report
@main.command("leaderboard")
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "html", "json"]), default="md", show_default=True)
@click.option("--sort", default=None, help="Column to sort by, best first (a task, a group such as `trust`, or step).")
@click.option("--latest", is_flag=True, help="When two results files give the same row, keep the newer instead of failing.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write here instead of stdout.")
def leaderboard_cmd(results: tuple[Path, ...], fmt: str, sort: str | None, latest: bool, out: Path | None) -> None:
    """One row per (model, revision, steering) from lm-eval results files or folders (searched recursively)."""
    from tracing_bench.files import check_writable
    from tracing_bench.compare.leaderboard import build_leaderboard, format_leaderboard, nan_flags, write_text

    if out is not None:
        check_writable(out, flag="--out", kind="file")
    board = build_leaderboard(results, latest=latest)
    text = format_leaderboard(board, fmt, sort=sort)  # type: ignore[arg-type]
    for p in board.dropped:
        click.echo(f"--latest: left out the older {p}", err=True)
    for flag in nan_flags(board):
        click.echo(f"warning: {flag}", err=True)
    if out is None:
        click.echo(text, nl=False)
    else:
        click.echo(str(write_text(text, out)), err=True)


@main.command("gate")
@click.option("--baseline", required=True, type=click.Path(path_type=Path), help="Baseline results file or folder with one.")
@click.option("--current", required=True, type=click.Path(path_type=Path), help="Current results file or folder with one.")
@click.option("--max-drop", type=float, default=0.02, show_default=True, help="Largest tolerated drop (metric units).")
@click.option("--z", "z", type=float, default=2.0, show_default=True, help="z threshold of the significance test.")
@click.option("--tasks", default=None, help="Comma-separated tasks/groups to compare (default: all of the baseline's).")
@click.option("--paired", is_flag=True, help="Paired test on lm-eval per-sample logs (samples_*.jsonl, --log_samples).")
@click.option("--allow-mismatch", is_flag=True,
              help="Compare runs that scored different documents (e.g. another --limit), task versions or data "
                   "files; each mismatch is noted. Without it they are refused (exit 2).")
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the JSON verdict here.")
@click.pass_context
def gate_cmd(ctx: click.Context, baseline: Path, current: Path, max_drop: float, z: float, tasks: str | None,
             paired: bool, allow_mismatch: bool, json_out: Path | None) -> None:
    """Exit 0: no regression; 1: a task got significantly worse than the baseline; 2: anything else.

    2 covers bad input (unreadable or malformed results, a missing task, NaN scores), runs that
    scored different documents or task versions (unless --allow-mismatch), and an unwritable
    --json-out, so CI can tell a measured regression from a broken job.
    """
    from tracing_bench.files import check_writable, dumps_json
    from tracing_bench.compare.gate import format_verdict, gate
    from tracing_bench.compare.leaderboard import write_text

    if json_out is not None:
        check_writable(json_out, flag="--json-out", kind="file")
    task_list = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    verdict = gate(baseline, current, max_drop=max_drop, z=z, tasks=task_list, paired=paired,
                   allow_mismatch=allow_mismatch)
    if json_out is not None:
        write_text(dumps_json(verdict.to_json(), indent=2) + "\n", json_out)
    click.echo(format_verdict(verdict))
    if not verdict.passed:
        ctx.exit(1)


@main.command("report")
@click.argument("dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The HTML file to write.")
@click.option("--title", default="tracing-bench report", show_default=True)
def report_cmd(dirs: tuple[Path, ...], out: Path, title: str) -> None:
    """One self-contained offline HTML page of what trace, steer sweep/correlate and lm-eval wrote in DIRS."""
    from tracing_bench.files import check_writable
    from tracing_bench.report.html import build_report

    check_writable(out, flag="--out", kind="file")
    click.echo(str(build_report(dirs, out, title=title)))


# -------------------------------------------------------------------------------------- demo
@main.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-out"), show_default=True,
              help="Output folder (checkpoints, activation cache, trace, steering, results, report.html).")
@click.option("--fast", is_flag=True, help="Short pre-training and small scoring limits (a few minutes on a CPU; see bench/BENCH.md).")
@click.option("--limit", type=int, default=None, help="Documents per task for lm-eval scoring [default: 50; 20 with --fast].")
@click.option("--dimension", default="auto", show_default=True,
              help="Dimension to steer; auto = the one the probes say the model learned most.")
@click.option("--seed", type=int, default=0, show_default=True)
@_threads_option(wrap=False)
def demo_cmd(out: Path, fast: bool, limit: int | None, dimension: str, seed: int, threads: str | None) -> None:
    """Pre-train the tiny model, trace it, steer it, score it, and write one HTML report."""
    from tracing_bench.files import check_writable
    from tracing_bench.demo import DemoSettings, run_demo
    from tracing_bench.threads import check_threads

    check_writable(out, flag="--out")
    settings = DemoSettings(fast=fast, seed=seed, limit=limit if limit is not None else (20 if fast else 50), dimension=dimension,
                            max_statements=400 if fast else 1000, mi_subsample=256 if fast else 512,
                            threads=check_threads(threads))
    result = run_demo(out, settings, echo=lambda line: click.echo(line, err=True))
    click.echo(result["summary"])
