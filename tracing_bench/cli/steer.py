"""``tracing-bench steer extract|sweep|correlate``: steering vectors from pre-training checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tracing_bench.cli.group import Group, main, threads_option
from tracing_bench.cli.options import choice, settings_option
from tracing_bench.dimensions import Protocol
from tracing_bench.errors import TracingBenchError
from tracing_bench.settings import CorrelateSettings, HarvestSettings, Lambada, Preset, Scale, ScoringSettings


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


@main.group(cls=Group)
def steer() -> None:
    """Steering vectors from pre-training checkpoints: extract, sweep (layer x alpha), correlate.

    Orientation: a positive coefficient (alpha) moves toward the trustworthy side, for every dimension.
    Apply a vector in lm-eval with --model trust-steered --model_args pretrained=...,steer_path=v.pt[,alpha=..]
    """


@steer.command("extract")
@threads_option()
@click.option("--model", required=True, help="Source model id or folder (a pre-training checkpoint).")
@click.option("--revision", default=None, help="Hub revision of the checkpoint (e.g. ckpt_179, step1000).")
@click.option("--dimension", required=True, help="reliability, privacy, toxicity, fairness or robustness.")
@click.option("--layer", required=True, type=int, help="Decoder block whose output the vector is added to.")
@click.option(
    "--scale",
    type=choice(Scale),
    default="paper",
    show_default=True,
    help="paper: raw class-mean difference; reference: unit x std of projections (released code); unit.",
)
@click.option(
    "--coefficient", type=float, default=1.0, show_default=True, help="Default steering coefficient stored in the file."
)
@click.option(
    "--protocol",
    type=choice(Protocol),
    default="paper",
    show_default=True,
    help="Which development split: the paper's seeded half or the released code's first 50%.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the paper splits.")
@settings_option(HarvestSettings, "batch_size")
@settings_option(HarvestSettings, "dtype")
@settings_option(HarvestSettings, "device")
@settings_option(HarvestSettings, "cache_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--data",
    "data_csv",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Your own statement,label CSV instead of the bundled file (labels must mean what --dimension's mean).",
)
@click.option(
    "--preset",
    type=choice(Preset),
    default=None,
    help="reference: the released code's vector (--scale reference --protocol reference, float32 model, "
    "one statement per forward); apply it with --preset reference / preset=reference.",
)
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output .pt (sidecar: OUT.json)."
)
@click.pass_context
def steer_extract(
    ctx: click.Context,
    model: str,
    revision: str | None,
    dimension: str,
    layer: int,
    scale: Scale,
    coefficient: float,
    protocol: str,
    seed: int,
    batch_size: int,
    dtype: str,
    device: str,
    cache_dir: Path | None,
    data_csv: Path | None,
    preset: Preset | None,
    out: Path,
) -> None:
    """Class-mean difference at one layer, saved in lm-eval's steered .pt format with a JSON sidecar."""
    from tracing_bench.cache import default_cache_dir
    from tracing_bench.files import check_outputs
    from tracing_bench.settings import preset_settings
    from tracing_bench.steering.vector import extract_from_checkpoint

    _check_preset(ctx, preset_settings(preset), preset, scale=scale, protocol=protocol)
    harvest = HarvestSettings.given(dtype=dtype, device=device, batch_size=batch_size, cache_dir=cache_dir)
    if out.suffix not in (".pt", ".pth"):
        raise TracingBenchError(f"--out {out} must end in .pt or .pth (lm-eval's steered model reads only those)")
    check_outputs([(out, "--out", "file"), (harvest.cache_dir or default_cache_dir(), "--cache-dir", "folder")])
    vec = extract_from_checkpoint(
        model,
        revision=revision,
        dimension=dimension,
        layer=layer,
        scale=scale,
        coefficient=coefficient,
        protocol=protocol,
        seed=seed,
        harvest=harvest,
        data=data_csv,
        preset=preset,
    )
    path = vec.save(out)
    click.echo(
        f"{path}: {vec.hookpoint}, norm {vec.vector.norm():.4g}, sha256 {vec.sha256[:16]}…; provenance {path}.json"
    )


def _check_preset(ctx: click.Context, fixed: dict, preset: str | None, **given: str) -> None:
    """A flag given explicitly on the command line that contradicts --preset is an error (one line)."""
    for name, value in given.items():
        if (
            name in fixed
            and value != fixed[name]
            and ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
        ):
            raise TracingBenchError(
                f"--{name} {value} contradicts --preset {preset} (which sets --{name} {fixed[name]}); drop one of them"
            )


#: How the target is scored (:class:`tracing_bench.settings.ScoringSettings`): sweep and correlate alike.
_SCORING_OPTIONS = [
    settings_option(ScoringSettings, "tasks", default="trust"),  # sweep's default; correlate's trust_<dimension>
    *(
        settings_option(ScoringSettings, name)
        for name in ("limit", "batch_size", "seed", "positions", "preset", "dtype", "device")
    ),
    settings_option(ScoringSettings, "cache_dir", type=click.Path(file_okay=False, path_type=Path)),
]


def _scoring_options(f):
    for opt in reversed(_SCORING_OPTIONS):
        f = opt(f)
    return f


def _scoring(tasks: str, drop: tuple[str, ...] = (), **options: Any) -> ScoringSettings:
    """The scoring settings of the ``_SCORING_OPTIONS`` (validated once, one line when wrong);
    ``tasks`` is the comma list, less the names in ``drop``."""
    return ScoringSettings.given(tasks=[t for t in tasks.split(",") if t and t not in drop], **options)


@steer.command("sweep")
@threads_option()
@click.option("--model", required=True, help="Target model to steer (e.g. the chat/SFT model).")
@click.option("--revision", default=None, help="Target revision.")
@click.option(
    "--vector", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Vector from steer extract."
)
@click.option(
    "--layers",
    default=None,
    help="Layers to sweep (default: the vector's). Other layers are re-extracted from the source in the "
    "vector's sidecar.",
)
@click.option("--alphas", default="-4,-1,1,4", show_default=True, help="Coefficients (positive = toward trustworthy).")
@click.option(
    "--max-ppl-increase",
    type=float,
    default=None,
    help="Relative fluency bound: perplexity may rise at most this fraction over the unsteered model "
    "(0.1 = +10%) [default: 0.1 unless --max-ppl is given].",
)
@click.option(
    "--max-ppl",
    type=float,
    default=None,
    help="Absolute fluency bound, the paper's selection: LAMBADA perplexity must stay below it (the paper: 6 "
    "for AmberChat, whose own is 4.5); without cached LAMBADA it bounds the bundled text's perplexity.",
)
@click.option(
    "--lambada",
    type=choice(Lambada),
    default="auto",
    show_default=True,
    help="auto: also guard with lm-eval lambada_openai when its data are cached locally.",
)
@_scoring_options
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
def steer_sweep(
    model: str,
    revision: str | None,
    vector: Path,
    layers: str | None,
    alphas: str,
    max_ppl_increase: float | None,
    max_ppl: float | None,
    lambada: Lambada,
    tasks: str,
    limit: float | None,
    batch_size: int,
    seed: int,
    positions: str | None,
    preset: str | None,
    dtype: str,
    device: str,
    cache_dir: Path | None,
    out: Path,
) -> None:
    """Unsteered baseline and every (layer, alpha): sweep.csv, best.json, plots of score and perplexity vs alpha."""
    from tracing_bench.report.steer_plots import plot_sweep
    from tracing_bench.steering.sweep import run_sweep

    scoring = _scoring(
        tasks,
        limit=limit,
        batch_size=batch_size,
        seed=seed,
        positions=positions,
        preset=preset,
        dtype=dtype,
        device=device,
        cache_dir=cache_dir,
    )
    res = run_sweep(
        model,
        vector,
        out,
        revision=revision,
        layers=_int_list("--layers", layers),
        alphas=_float_list("--alphas", alphas),
        max_ppl_increase=max_ppl_increase,
        max_ppl=max_ppl,
        lambada=lambada,
        scoring=scoring,
    )
    files = list(res.files)
    for table in res.files:
        if Path(table).name == "sweep.csv":
            files += plot_sweep(table, Path(table).parent)
    for note in res.best.get("notes", []):
        click.echo(f"note: {note}", err=True)
    for task, b in res.best["best"].items():
        if b is None:
            click.echo(f"{task}: no admissible setting")
        else:  # the change against the unsteered model with its 95% interval ("within noise" when it holds 0)
            click.echo(
                f"{task}: layer {b['layer']} alpha {b['alpha']:g}: {b['metric']} {b['score']:.4f}, "
                f"change {b.get('claim', 'not tested')}"
            )
            if b.get("logodds"):  # what it was chosen on: the paired per-document change, with its interval
                lo = b["logodds"]
                click.echo(
                    f"  trustworthy log-odds, paired per document: {lo['change']['claim']}; "
                    f"steerability {lo['steerability']['claim']}"
                )
    click.echo("\n".join(str(p) for p in files))


@steer.command("correlate")
@threads_option()
@click.option("--model", required=True, help="Source checkpoint series (model id or folder of checkpoints).")
@click.option("--revisions", default=None, help="Revisions (comma list or range, as in trace).")
@click.option("--target", required=True, help="Target model steered with each checkpoint's vector.")
@settings_option(CorrelateSettings, "target_revision")
@click.option("--dimension", required=True)
@click.option("--layer", required=True, type=int)
@settings_option(CorrelateSettings, "alpha")
@settings_option(CorrelateSettings, "scale")
@settings_option(CorrelateSettings, "probes", type=click.Path(dir_okay=False, path_type=Path))
@settings_option(CorrelateSettings, "n_boot")
@settings_option(CorrelateSettings, "data", type=click.Path(dir_okay=False, path_type=Path))
@_scoring_options
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.pass_context
def steer_correlate(
    ctx: click.Context,
    model: str,
    revisions: str | None,
    target: str,
    target_revision: str | None,
    dimension: str,
    layer: int,
    alpha: float,
    scale: Scale,
    probes: Path | None,
    n_boot: int,
    data: Path | None,
    tasks: str,
    limit: float | None,
    batch_size: int,
    seed: int,
    positions: str | None,
    preset: str | None,
    dtype: str,
    device: str,
    cache_dir: Path | None,
    out: Path,
) -> None:
    """Per checkpoint: probe accuracy and steering benefit on the target; Pearson r with a bootstrap interval."""
    from tracing_bench.report.steer_plots import plot_correlate
    from tracing_bench.settings import preset_settings
    from tracing_bench.steering.correlate import run_correlate

    _check_preset(ctx, preset_settings(preset), preset, scale=scale)
    scoring = _scoring(
        tasks,
        ("trust",),  # trust: each dimension's trust_<dimension>
        limit=limit,
        batch_size=batch_size,
        seed=seed,
        positions=positions,
        preset=preset,
        dtype=dtype,
        device=device,
        cache_dir=cache_dir,
    )
    settings = CorrelateSettings.from_options(
        target_revision=target_revision,
        alpha=alpha,
        scale=scale,
        probes=probes,
        n_boot=n_boot,
        data=data,
        scoring=scoring,
    )
    res = run_correlate(model, revisions, target, dimension, layer, out, settings=settings)
    figure = plot_correlate(out / "correlate.csv", out / "correlate.png", r=res.r, ci=res.ci)
    if res.undefined:
        click.echo(f"Pearson r is undefined over {len(res.rows)} checkpoints: {res.undefined}")
    elif res.ci_note:
        click.echo(f"Pearson r = {res.r:.3f} over {len(res.rows)} checkpoints; no bootstrap interval: {res.ci_note}")
    else:
        click.echo(
            f"Pearson r = {res.r:.3f}, 95% bootstrap interval [{res.ci[0]:.3f}, {res.ci[1]:.3f}] "
            f"over {len(res.rows)} checkpoints"
        )
    click.echo("\n".join(str(p) for p in [*res.files, figure]))
