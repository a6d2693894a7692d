"""Reading the CSVs a dimension comes from: raw rows in file order, validated, before any cleaning.

Two formats: ``statement,label`` rows (an optional ``group`` column joins rows into groups; an
optional ``topic`` column names groups with a meaning, for held-out-group transfer), and
CrowS-Pairs' ``sent_more,sent_less`` pairs (each row gives two statements: ``sent_more`` label 1,
``sent_less`` label 0, one pair). A malformed file is one :class:`~tracing_bench.errors.DataError`
naming the file, the line and the fix. :func:`clean_statement` removes the spreadsheet artefact
``_x000D_`` and surrounding white space; the loader (:mod:`tracing_bench.dimensions`) cleans,
de-duplicates and splits what the readers return.

>>> rows = read_statement_label(Path("my.csv"))  # doctest: +SKIP
>>> rows.statements, rows.labels, rows.lines  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tracing_bench.errors import DataError

#: How a bundled file is read: ``statement,label`` rows, or CrowS-Pairs' ``sent_more,sent_less`` pairs.
Reader = Literal["statement_label", "crows_pairs"]

_CR_ARTEFACT = re.compile(r"\s*_x000D_\s*")


def clean_statement(text: str) -> str:
    """Remove the spreadsheet artefact ``_x000D_`` and surrounding white space.

    Inner white space (the tab between ``Q:`` and ``A:`` in TruthfulQA) is kept.
    """
    return _CR_ARTEFACT.sub(" ", text).strip()


def read_text(path: Path) -> str:
    """The text of a CSV file, or a one-line DataError (missing, a folder, unreadable, binary, not UTF-8, empty)."""
    if not path.exists():
        raise DataError(f"{path}: no such file; give the path of a statement,label CSV")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a CSV file; give the path of a statement,label CSV")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror}); check its permissions") from None
    if b"\x00" in raw[:65536]:
        raise DataError(
            f"{path}: looks binary (NUL bytes), not a CSV; save it as UTF-8 text with a header line 'statement,label'"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line} is not valid UTF-8; re-save the file as UTF-8 text") from None
    if not text.strip():
        raise DataError(
            f"{path}: the file is empty; it needs a header line 'statement,label' and one row per labelled statement"
        )
    return text


@dataclass
class Rows:
    """What a reader returns: raw rows in file order, before cleaning."""

    statements: list[str]
    labels: list[int]
    lines: list[int]
    extra: dict[str, list[str]] = field(default_factory=dict)
    keys: list[list[str]] = field(default_factory=list)  # group keys per row, beyond near-duplicates
    rows_read: int = 0


def read_statement_label(path: Path) -> Rows:
    """The rows of a ``statement,label`` CSV (optional ``group`` and ``topic`` columns), validated.

    Returns:
        :class:`Rows`: the statements as written, labels 0/1, line numbers (and groups when given).

    Raises:
        DataError: naming the file, the line where it applies, and the fix.
    """
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except csv.Error as e:
        raise DataError(f"{path}: line 1 is not valid CSV ({e}); fix the quoting") from None
    cols = [c.strip().lower() for c in header]
    missing = [c for c in ("statement", "label") if c not in cols]
    if missing:
        raise DataError(
            f"{path}: line 1 (header) has columns {header!r} but no {' and no '.join(repr(m) for m in missing)} "
            "column; the first line must name the columns, e.g. 'statement,label' (optionally ',group')"
        )
    i_s, i_l = cols.index("statement"), cols.index("label")
    i_g = cols.index("group") if "group" in cols else None
    i_t = cols.index("topic") if "topic" in cols else None  # groups with a meaning (transfer)
    out = Rows([], [], [])
    groups: list[str] = []
    topics: list[str] = []
    try:
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise DataError(
                    f"{path}: line {line} has {len(row)} fields but the header has {len(header)}; "
                    'quote statements that contain commas ("...")'
                )
            label = row[i_l].strip()
            if label == "":
                raise DataError(f"{path}: line {line} has no label; every row needs label 0 or 1")
            if label not in ("0", "1"):
                raise DataError(f"{path}: line {line} has label {label!r}; labels must be 0 or 1 (binary)")
            if not clean_statement(row[i_s]):
                raise DataError(f"{path}: line {line} has an empty statement; remove the row or fill it in")
            out.statements.append(row[i_s])
            out.labels.append(int(label))
            out.lines.append(line)
            if i_g is not None:
                groups.append(row[i_g].strip())
            if i_t is not None:
                topics.append(row[i_t].strip())
    except csv.Error as e:
        raise DataError(f"{path}: line {reader.line_num} is not valid CSV ({e}); fix the quoting") from None
    if not out.statements:
        raise DataError(f"{path}: has a header but no data rows; add one 'statement,label' row per statement")
    out.rows_read = len(out.statements)
    if i_t is not None:
        out.extra["topic"] = topics
    if i_g is not None:
        # an empty group cell means "no group of its own beyond near-duplicates"
        out.extra["group"] = groups
        out.keys = [[f"group:{g}"] if g else [] for g in groups]
    return out


_CROWS_COLUMNS = ("sent_more", "sent_less", "stereo_antistereo", "bias_type")


def read_crows_pairs(path: Path) -> Rows:
    """CrowS-Pairs: each row gives ``sent_more`` (label 1) and ``sent_less`` (label 0), one pair."""
    text = read_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in _CROWS_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(
            f"{path}: line 1 (header) lacks the CrowS-Pairs columns {', '.join(missing)}; "
            "use the file crows_pairs_anonymized.csv as released"
        )
    id_col = (reader.fieldnames or [""])[0]
    out = Rows([], [], [])
    extra: dict[str, list[str]] = {"pair": [], "bias_type": [], "stereo_antistereo": []}
    n = 0
    for row in reader:
        n += 1
        pair = (row.get(id_col) or "").strip() or str(n - 1)
        for col, label in (("sent_more", 1), ("sent_less", 0)):
            sentence = row[col] or ""
            if not clean_statement(sentence):
                raise DataError(f"{path}: line {reader.line_num} has an empty {col}; the file is damaged")
            out.statements.append(sentence)
            out.labels.append(label)
            out.lines.append(reader.line_num)
            out.keys.append([f"pair:{pair}"])
            extra["pair"].append(pair)
            extra["bias_type"].append(row["bias_type"].strip())
            extra["stereo_antistereo"].append(row["stereo_antistereo"].strip())
    if n == 0:
        raise DataError(f"{path}: has a header but no pairs")
    out.extra = extra
    out.rows_read = n
    return out


def read_questions(path: Path) -> list[str]:
    """The non-empty ``Question`` column of a CSV (TruthfulQA's test questions)."""
    text = read_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or "Question" not in reader.fieldnames:
        raise DataError(f"{path}: line 1 (header) has no 'Question' column")
    return [row["Question"].strip() for row in reader if row["Question"].strip()]


#: The reader of each :data:`Reader`.
READERS: dict[str, Callable[[Path], Rows]] = {
    "statement_label": read_statement_label,
    "crows_pairs": read_crows_pairs,
}
