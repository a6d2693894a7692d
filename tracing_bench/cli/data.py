"""``tracing-bench data show|check``: the bundled datasets and your own CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tracing_bench.cli.group import Group, main
from tracing_bench.cli.options import choice
from tracing_bench.dimensions import Protocol
from tracing_bench.files import dumps_json


@main.group(cls=Group)
def data() -> None:
    """Inspect the bundled datasets or validate your own statement,label CSV."""


@data.command("show")
@click.argument("dimension", required=False)
@click.option(
    "--protocol",
    type=choice(Protocol),
    default="paper",
    show_default=True,
    help="Which splits to show: the paper's seeded 1:1 / 4:1 splits or the released code's file-order splits.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the paper splits.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def data_show(dimension: str | None, protocol: str, seed: int, as_json: bool) -> None:
    """Counts, splits and dropped rows of DIMENSION (a name or a CSV path); all five if omitted."""
    from tracing_bench.dimensions import DIMENSIONS, load_dimension

    names = [dimension] if dimension else list(DIMENSIONS)
    summaries = [load_dimension(n, protocol=protocol, seed=seed).summary() for n in names]
    if as_json:
        click.echo(dumps_json(summaries, indent=2))
        return
    click.echo(_format_summaries(summaries))


def _format_summaries(summaries: list[dict[str, Any]]) -> str:
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
    lines.append(
        "rows: data rows of the file (CrowS-Pairs: pairs, two statements each); dup: repeated statements "
        "removed (kept once); confl: rows dropped because one statement carries both labels; groups: "
        "statements that must share a split (near-duplicates, SST-2 twins, a TruthfulQA question, a "
        "StereoSet context, a CrowS-Pairs pair), never in two splits."
    )
    for s in summaries:
        if "label 1" in s:
            lines.append(
                f"{s['title']}: label 1 = {s['label 1']}; label 0 = {s['label 0']}; trustworthy label = "
                f"{s['trustworthy label']}; data: {s['source']}; file {Path(s['file']).name}, md5 {s['md5']}"
            )
        if s["name"] == "fairness" and Path(s["file"]).name == "crows_pairs_anonymized.csv":
            lines.append(
                "  limit (Blodgett et al. 2021): the sentences of a pair differ only in the group words, and "
                "in "
                "1,290 of 1,508 pairs sent_more names the disadvantaged group (stereo; 218 antistereo), so a "
                "probe can partly learn which group is named; compare the stereo and antistereo subsets "
                "(DimensionData.extra['stereo_antistereo'])."
            )
    if {s["name"] for s in summaries} >= {"fairness"} and len(summaries) > 1:
        lines.append(
            "also bundled: stereoset-released (stereoset.csv, the released code's fairness file and the "
            "fairness data of --protocol reference): related (label 1) vs unrelated (label 0) continuations "
            "of StereoSet contexts, i.e. relatedness, not stereotyping; `data show stereoset-released`."
        )
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
