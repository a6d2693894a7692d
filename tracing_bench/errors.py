"""The one exception type that reaches users as a single line (CLI: exit status 2)."""

from __future__ import annotations


class TracingBenchError(ValueError):
    """Bad input or an unusable artefact.

    The message says what arrived, what is valid and how to fix it, on one line. The CLI prints
    it to stderr as ``error: <message>`` and exits with status 2, without a traceback.
    """


class DataError(TracingBenchError):
    """A dataset file that cannot be used (names the file and, where it applies, the row)."""


def first_line(e: BaseException, *, with_type: bool = False, limit: int | None = None) -> str:
    """The first non-empty line of an exception's message (its type name when it has none).

    Args:
        e: the exception; a wrapper's ``cause`` (Ray's task errors) is unwrapped.
        with_type: prefix ``TypeName: ``.
        limit: cut the line to this many characters.

    >>> first_line(ValueError("bad shape\\n  details"), with_type=True)
    'ValueError: bad shape'
    """
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        e = cause
    line = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
    if limit is not None:
        line = line[:limit]
    if not line:
        return type(e).__name__
    return f"{type(e).__name__}: {line}" if with_type else line
