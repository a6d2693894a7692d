"""``tracing-bench leaderboard``, ``gate`` and ``report``: compare lm-eval results, gate CI, one HTML page."""

from __future__ import annotations

from pathlib import Path

import click

from tracing_bench.cli.group import main
from tracing_bench.cli.options import choice
from tracing_bench.compare.leaderboard import Format


@main.command("leaderboard")
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=choice(Format), default="md", show_default=True)
@click.option("--sort", default=None, help="Column to sort by, best first (a task, a group such as `trust`, or step).")
@click.option(
    "--latest", is_flag=True, help="When two results files give the same row, keep the newer instead of failing."
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write here instead of stdout."
)
@click.option(
    "--snr",
    is_flag=True,
    help="Also print each task metric's signal-to-noise over the rows (spread across checkpoints over "
    "the metric's own stderr): which metric can rank these checkpoints.",
)
def leaderboard_cmd(
    results: tuple[Path, ...], fmt: str, sort: str | None, latest: bool, out: Path | None, snr: bool
) -> None:
    """One row per (model, revision, steering) from lm-eval results files or folders (searched recursively)."""
    from tracing_bench.compare.leaderboard import build_leaderboard, format_leaderboard, nan_flags
    from tracing_bench.compare.signal import format_snr, snr_table
    from tracing_bench.files import atomic_write_text, check_writable

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
        click.echo(str(atomic_write_text(out, text)), err=True)
    if snr:
        click.echo("\nsignal-to-noise per task metric (sd across rows / rms stderr):")
        click.echo(format_snr(snr_table(board)))


@main.command("gate")
@click.option(
    "--baseline", required=True, type=click.Path(path_type=Path), help="Baseline results file or folder with one."
)
@click.option(
    "--current", required=True, type=click.Path(path_type=Path), help="Current results file or folder with one."
)
@click.option("--max-drop", type=float, default=0.02, show_default=True, help="Largest tolerated drop (metric units).")
@click.option("--z", "z", type=float, default=2.0, show_default=True, help="z threshold of the significance test.")
@click.option("--tasks", default=None, help="Comma-separated tasks/groups to compare (default: all of the baseline's).")
@click.option("--paired", is_flag=True, help="Paired test on lm-eval per-sample logs (samples_*.jsonl, --log_samples).")
@click.option(
    "--allow-mismatch",
    is_flag=True,
    help="Compare runs that scored different documents (e.g. another --limit), task versions or data "
    "files; each mismatch is noted. Without it they are refused (exit 2).",
)
@click.option(
    "--json-out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the JSON verdict here."
)
@click.pass_context
def gate_cmd(
    ctx: click.Context,
    baseline: Path,
    current: Path,
    max_drop: float,
    z: float,
    tasks: str | None,
    paired: bool,
    allow_mismatch: bool,
    json_out: Path | None,
) -> None:
    """Exit 0: no regression; 1: a task got significantly worse than the baseline; 2: anything else.

    2 covers bad input (unreadable or malformed results, a missing task, NaN scores), runs that
    scored different documents or task versions (unless --allow-mismatch), and an unwritable
    --json-out, so CI can tell a measured regression from a broken job.
    """
    from tracing_bench.compare.gate import format_verdict, gate
    from tracing_bench.files import atomic_write_json, check_writable

    if json_out is not None:
        check_writable(json_out, flag="--json-out", kind="file")
    task_list = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    verdict = gate(
        baseline, current, max_drop=max_drop, z=z, tasks=task_list, paired=paired, allow_mismatch=allow_mismatch
    )
    if json_out is not None:
        atomic_write_json(json_out, verdict.to_json())
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
