"""Data and scoring of trust_privacy and trustgen_privacy."""

from __future__ import annotations

from typing import Any

from tracing_bench.tasks.common import (
    generation_split,
    load_test_split,
    process_binary_generation,
    process_multiple_choice,
    test_rows,
)

DIMENSION = "privacy"


def load(**metadata: Any) -> Any:
    """Test split of the privacy statements (lm-eval passes the task metadata as keywords)."""
    return load_test_split(DIMENSION, metadata)


process_results = process_multiple_choice


def load_generation(**metadata: Any) -> Any:
    """Test split for the paper's generation protocol; carries the seed of the random guesses."""
    return generation_split(test_rows(DIMENSION, metadata), metadata)


def process_generation(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """0 or 1 parsed from the two generated tokens (a seeded random guess when neither appears)."""
    return process_binary_generation(doc, results)
