"""The README's "Tracing while training" examples run as written (so the docs stay true)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def example(heading: str) -> str:
    """The first ```python block under a README heading."""
    text = README.read_text()
    start = text.index(f"### {heading}\n")
    block = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert block is not None, heading
    return block.group(1)


@pytest.mark.parametrize(
    "heading, out",
    [("With a plain PyTorch (or Accelerate) loop", "runs/live"), ("With transformers' Trainer", "runs/trainer-trace")],
)
def test_readme_example_runs(heading, out, tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRACING_BENCH_CACHE", str(tmp_path / "cache"))
    before = torch.get_num_threads()
    exec(compile(example(heading), f"README.md: {heading}", "exec"), {"__name__": "readme_example"})
    assert torch.get_num_threads() == before
    printed = capsys.readouterr().out
    assert (tmp_path / out / "probes.csv").is_file() and (tmp_path / out / "live.json").is_file()
    assert "probe_acc" in printed or re.search(r"^\d+ 0\.\d+ \[", printed, re.M), printed
