"""The one exception type that reaches users as a single line (CLI: exit status 2)."""

from __future__ import annotations


class TracingBenchError(ValueError):
    """Bad input or an unusable artefact.

    The message says what arrived, what is valid and how to fix it, on one line. The CLI prints
    it to stderr as ``error: <message>`` and exits with status 2, without a traceback.
    """


class DataError(TracingBenchError):
    """A dataset file that cannot be used (names the file and, where it applies, the row)."""
