"""Malformed statement,label CSV files: the text of each, and words its one-line error must hold."""

from __future__ import annotations

MALFORMED = {
    "missing_column": ("text,label\nhello,1\nbye,0\n", "no 'statement'"),
    "non_binary_label": ("statement,label\nhello,1\nbye,2\n", "line 3 has label '2'"),
    "missing_label": ("statement,label\nhello,1\nbye,\n", "line 3 has no label"),
    "empty_file": ("", "empty"),
    "header_only": ("statement,label\n", "no data rows"),
    "one_class": ("statement,label\nhello,1\nbye,1\n", "needs both labels"),
    "ragged_row": ("statement,label\nhello,1\nbye, you,0\n", "line 3 has 3 fields"),
    "empty_statement": ("statement,label\nhello,1\n  ,0\n", "line 3 has an empty statement"),
}
