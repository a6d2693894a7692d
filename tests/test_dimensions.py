"""The dimension loader: byte-identical data, cleaning, de-duplication and the paper's splits."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest

from tracing_bench.dimensions import (
    DIMENSIONS,
    clean_statement,
    load_dimension,
    load_questions,
    resolve_dimensions,
)
from tracing_bench.errors import DataError, TracingBenchError

# md5 of the released files (shared/datasets/README.md); the bundled copies must not change.
RELEASED_MD5 = {
    "confaide.csv": "cc19207e184cecac1bd67eb056fdcc78",
    "sst2.csv": "db46fc5d337da780e6b22358411f24ae",
    "stereoset.csv": "d041f19396217d2575e6d69b2ba3c266",
    "toxigen.csv": "156b752814255d02d9561da58dd3395a",
    "truthfulqa_test.csv": "5db459a5532355531ded919994ead007",
    "truthfulqa_train.csv": "30861eb80a9a3ce7e8ca592a4cdaa5d4",
}
# label 1 / label 0 counts of the released files (REFERENCE.md table).
RELEASED_COUNTS = {
    "reliability": (1118, 1145),
    "toxicity": (3633, 2881),
    "privacy": (1173, 1173),
    "fairness": (976, 976),
    "robustness": (1821, 1821),
}
PARTS = ("test", "probe_train", "probe_val")


@pytest.mark.parametrize("name", sorted(RELEASED_MD5))
def test_bundled_files_are_byte_identical(name):
    path = Path(DIMENSIONS["reliability"].path).parent / name
    assert hashlib.md5(path.read_bytes()).hexdigest() == RELEASED_MD5[name]


@pytest.mark.parametrize("name", list(DIMENSIONS))
def test_reference_protocol_keeps_raw_rows(name):
    data = load_dimension(name, protocol="reference")
    n1, n0 = RELEASED_COUNTS[name]
    assert int(data.labels.sum()) == n1
    assert int((data.labels == 0).sum()) == n0
    n = n1 + n0
    assert data.splits["probe_train"].tolist() == list(range(int(0.8 * n)))
    assert data.splits["probe_val"].tolist() == list(range(int(0.8 * n), n))
    assert data.splits["test"].tolist() == list(range(int(0.5 * n), n))


def _independent_clean_counts(path: Path) -> tuple[int, int]:
    """Unique cleaned statements and how many of them carry both labels, computed plainly."""
    labels: dict[str, set[str]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            s = " ".join(piece.strip() for piece in row["statement"].split("_x000D_")).strip()
            labels.setdefault(s, set()).add(row["label"])
    return len(labels), sum(1 for v in labels.values() if len(v) > 1)


@pytest.mark.parametrize("name", list(DIMENSIONS))
def test_paper_splits_are_disjoint_stratified_and_cover_everything(name):
    data = load_dimension(name)
    parts = [set(data.splits[p].tolist()) for p in PARTS]
    assert sum(len(p) for p in parts) == len(data.statements)
    assert set().union(*parts) == set(range(len(data.statements)))
    assert set(data.splits["dev"].tolist()) == parts[1] | parts[2]
    n = len(data.statements)
    # test / dev 1:1 and probe-train / probe-val 4:1, up to rounding per stratum
    assert abs(len(parts[0]) - n / 2) <= 0.01 * n + 2
    dev = len(parts[1]) + len(parts[2])
    assert abs(len(parts[2]) - dev / 5) <= 0.01 * dev + 2
    overall = data.labels.mean()
    for p in PARTS:
        assert abs(data.labels[data.splits[p]].mean() - overall) < 0.02, p
    # statements unique after cleaning; each cleaned statement appears once
    assert len(set(data.statements)) == len(data.statements)
    n_unique, n_conflicting = _independent_clean_counts(data.path)
    assert len(data.statements) == n_unique - n_conflicting


@pytest.mark.parametrize("name", list(DIMENSIONS))
def test_near_duplicates_never_straddle(name):
    data = load_dimension(name)
    where: dict[str, str] = {}
    for p in PARTS:
        for i in data.splits[p]:
            key = " ".join(data.statements[i].lower().split())
            assert where.setdefault(key, p) == p, f"{data.statements[i]!r} in {where[key]} and {p}"


def test_sst2_twins_stay_together_in_test():
    data = load_dimension("robustness")
    test = data.splits["test"]
    keys: dict[str, list[int]] = {}
    for i in test:
        keys.setdefault(data.statements[i].lower(), []).append(int(data.labels[i]))
    pairs = [v for v in keys.values() if len(v) == 2]
    assert len(pairs) > 800
    assert all(sorted(v) == [0, 1] for v in pairs)


def test_splits_deterministic_and_seeded():
    a, b = load_dimension("fairness", seed=0), load_dimension("fairness", seed=0)
    c = load_dimension("fairness", seed=1)
    for p in PARTS:
        assert np.array_equal(a.splits[p], b.splits[p])
    assert not np.array_equal(a.splits["test"], c.splits["test"])


def test_cleaning_removes_artefacts_and_spaces():
    assert clean_statement("  they are bad_x000D_ people ") == "they are bad people"
    assert clean_statement("Q: a?\tA: b.") == "Q: a?\tA: b."
    data = load_dimension("toxicity")
    assert not any("_x000D_" in s for s in data.statements)
    assert all(s == s.strip() for s in data.statements)


def test_duplicates_and_conflicts_counted(tmp_path):
    f = tmp_path / "mine.csv"
    f.write_text(
        "statement,label\n"
        "a cat,1\n a cat ,1\nthe dog,0\nthe dog,1\nbirds fly,0\nfish swim,1\nants,0\nbees,1\n",
        encoding="utf-8",
    )
    data = load_dimension(f)
    assert data.name == "mine"
    assert data.dropped == {"duplicates": 1, "conflicting": 2}
    assert data.statements == ["a cat", "birds fly", "fish swim", "ants", "bees"]
    assert data.labels.tolist() == [1, 0, 1, 0, 1]


def test_questions():
    qs = load_questions()
    assert len(qs) == 407
    assert qs[0].startswith("What did Mark Twain say")


def test_unknown_dimension_and_protocol():
    with pytest.raises(TracingBenchError, match="valid dimensions are reliability"):
        load_dimension("honesty")
    with pytest.raises(TracingBenchError, match="valid protocols"):
        load_dimension("fairness", protocol="nope")
    assert resolve_dimensions("all") == list(DIMENSIONS)
    assert resolve_dimensions("privacy, fairness") == ["privacy", "fairness"]


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


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_csv_raises_naming_file_and_line(tmp_path, kind):
    text, expected = MALFORMED[kind]
    f = tmp_path / f"{kind}.csv"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_dimension(f)
    msg = str(e.value)
    assert str(f) in msg and expected in msg and "\n" not in msg


def test_binary_and_non_utf8_files(tmp_path):
    f = tmp_path / "weights.csv"
    f.write_bytes(b"PK\x03\x04\x00\x00binary")
    with pytest.raises(DataError, match="binary"):
        load_dimension(f)
    g = tmp_path / "latin.csv"
    g.write_bytes("statement,label\ncaf\xe9,1\n".encode("latin-1"))
    with pytest.raises(DataError, match="line 2 is not valid UTF-8"):
        load_dimension(g)


@pytest.mark.parametrize("name", ["robustness", "toxicity"])
def test_subsample_keeps_splits_groups_and_balance(name):
    full = load_dimension(name)
    sub = full.subsample(500, seed=3)
    assert abs(len(sub.statements) - 500) <= 10 and sub.subsampled_from == len(full.statements)
    index = {s: i for i, s in enumerate(full.statements)}
    for p in PARTS:
        originals = {index[sub.statements[i]] for i in sub.splits[p]}
        assert originals <= set(full.splits[p].tolist())  # a statement never changes split
        assert abs(sub.labels[sub.splits[p]].mean() - full.labels[full.splits[p]].mean()) < 0.05
    # a group is kept or dropped whole
    kept = {index[s] for s in sub.statements}
    for g in set(full.groups[list(kept)].tolist()):
        assert set(np.flatnonzero(full.groups == g).tolist()) <= kept
    assert sub.subsample(500, seed=3) is sub  # already small enough
    again = full.subsample(500, seed=3)
    assert again.statements == sub.statements
    with pytest.raises(TracingBenchError, match="--max-statements"):
        load_dimension(name, protocol="reference").subsample(100)
