"""The dimension loader: byte-identical data, cleaning, de-duplication and the paper's splits."""

from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from fake_data import MALFORMED
from tracing_bench.dimensions import DIMENSIONS, RELEASED, load_dimension, load_questions, resolve_dimensions
from tracing_bench.errors import DataError, TracingBenchError
from tracing_bench.readers import clean_statement

# md5 of the released files (tracing_bench/data/README.md); the bundled copies must not change.
RELEASED_MD5 = {
    "confaide.csv": "cc19207e184cecac1bd67eb056fdcc78",
    "sst2.csv": "db46fc5d337da780e6b22358411f24ae",
    "stereoset.csv": "d041f19396217d2575e6d69b2ba3c266",
    "toxigen.csv": "156b752814255d02d9561da58dd3395a",
    "truthfulqa_test.csv": "5db459a5532355531ded919994ead007",
    "truthfulqa_train.csv": "30861eb80a9a3ce7e8ca592a4cdaa5d4",
    "crows_pairs_anonymized.csv": "0a8e02da55202437ff81c12fd0974ba0",
}
# label 1 / label 0 counts of the released files (docs/METHOD.md table); the reference protocol
# reads the released code's files, so fairness is stereoset.csv there.
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


def _raw_rows(path: Path) -> list[tuple[str, str]]:
    """(statement, label) rows of a bundled file, read plainly (CrowS-Pairs: sent_more 1, sent_less 0)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if "sent_more" in rows[0]:
        return [(r[c], y) for r in rows for c, y in (("sent_more", "1"), ("sent_less", "0"))]
    return [(r["statement"], r["label"]) for r in rows]


def _independent_clean_counts(path: Path) -> tuple[int, int]:
    """Unique cleaned statements and how many of them carry both labels, computed plainly."""
    labels: dict[str, set[str]] = {}
    for statement, label in _raw_rows(path):
        s = " ".join(piece.strip() for piece in statement.split("_x000D_")).strip()
        labels.setdefault(s, set()).add(label)
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
    for p in PARTS:  # stratified as far as the groups allow (TruthfulQA questions hold ~5.5 statements)
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
        "statement,label\na cat,1\n a cat ,1\nthe dog,0\nthe dog,1\nbirds fly,0\nfish swim,1\nants,0\nbees,1\n",
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


# ------------------------------------------------------------------ fairness = CrowS-Pairs
def _crows_rows() -> list[dict[str, str]]:
    with open(DIMENSIONS["fairness"].path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_fairness_is_crows_pairs_with_sent_more_as_label_1():
    data = load_dimension("fairness")
    rows = _crows_rows()
    more = {r["sent_more"].strip() for r in rows}
    less = {r["sent_less"].strip() for r in rows}
    assert not more & less
    ones = [s for s, y in zip(data.statements, data.labels, strict=True) if y == 1]
    zeros = [s for s, y in zip(data.statements, data.labels, strict=True) if y == 0]
    assert sum(s in more for s in ones) >= 0.95 * len(ones)
    assert sum(s in less for s in zeros) >= 0.95 * len(zeros)
    # every pair contributes both of its sentences (one pair of the file repeats another)
    assert len(data.statements) == len(more) + len(less)
    assert data.dimension is not None and data.dimension.trustworthy_label == 0
    assert data.title == "fairness (CrowS-Pairs)"
    # the pair's bias type and direction travel with each statement
    by_sentence = {r["sent_more"].strip(): r for r in rows}
    i = next(k for k, y in enumerate(data.labels) if y == 1)
    assert data.extra["bias_type"][i] == by_sentence[data.statements[i]]["bias_type"]
    assert data.extra["stereo_antistereo"][i] == by_sentence[data.statements[i]]["stereo_antistereo"]


def test_reference_fairness_is_the_released_stereoset_file_in_file_order():
    data = load_dimension("fairness", protocol="reference")
    with open(RELEASED["stereoset-released"].path, newline="", encoding="utf-8") as f:
        raw = list(csv.DictReader(f))
    assert data.path.name == "stereoset.csv"
    assert data.statements == [r["statement"] for r in raw]
    assert data.labels.tolist() == [int(r["label"]) for r in raw]
    assert "related vs unrelated" in data.title
    # selectable by name, never as the default protocol's fairness
    assert load_dimension("stereoset-released").path.name == "stereoset.csv"
    assert "stereoset-released" not in resolve_dimensions("all")


def _stereoset_contexts_independently(rows: list[dict[str, str]]) -> list[str]:
    """The context of each StereoSet row: its first sentence, or (rows without a sentence break) the
    longest word prefix it shares with a row of the opposite label (its partner candidate)."""
    ctx: list[str | None] = []
    for r in rows:
        m = re.match(r"^(.*?[.!?])\s+\S", r["statement"])
        ctx.append(m.group(1).lower() if m else None)
    loose = [i for i, c in enumerate(ctx) if c is None]
    for i in loose:
        words = rows[i]["statement"].split()
        best = 0
        for j in loose:
            if j != i and rows[j]["label"] != rows[i]["label"]:
                other = rows[j]["statement"].split()
                n = next(
                    (k for k, (a, b) in enumerate(zip(words, other, strict=False)) if a != b),
                    min(len(words), len(other)),
                )
                best = max(best, n)
        ctx[i] = " ".join(words[: best if best >= 3 else len(words)]).lower()
    return [c or "" for c in ctx]


def _independent_groups(name: str) -> dict[str, list[str]]:
    """Group keys per cleaned statement, computed without the loader's grouping code."""
    keys: dict[str, list[str]] = {}

    def add(statement: str, key: str) -> None:
        s = " ".join(piece.strip() for piece in statement.split("_x000D_")).strip()
        keys.setdefault(s, []).append(key)

    if name == "fairness":
        for r in _crows_rows():
            add(r["sent_more"], f"pair {r['']}")
            add(r["sent_less"], f"pair {r['']}")
    elif name == "stereoset-released":
        with open(RELEASED[name].path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        for r, c in zip(rows, _stereoset_contexts_independently(rows), strict=False):
            add(r["statement"], f"context {c}")
    else:
        for statement, _ in _raw_rows(DIMENSIONS[name].path):
            if name == "reliability":
                add(statement, "question " + statement.split("\t")[0].strip().lower())
            add(statement, "twin " + " ".join(statement.lower().split()))
    return keys


@pytest.mark.parametrize("name", [*DIMENSIONS, "stereoset-released"])
def test_groups_never_straddle_splits(name):
    """No TruthfulQA question, StereoSet context, CrowS-Pairs pair, SST-2 twin or duplicate in two splits."""
    data = load_dimension(name)
    keys = _independent_groups(name)
    where: dict[str, str] = {}
    n_checked = 0
    for p in PARTS:
        for i in data.splits[p]:
            for key in keys[data.statements[i]]:
                assert where.setdefault(key, p) == p, f"{key!r} in {where[key]} and {p}"
                n_checked += 1
    assert n_checked >= len(data.statements)


def test_no_reliability_test_question_is_in_probe_train():
    data = load_dimension("reliability")
    q = [s.split("\t")[0] for s in data.statements]
    train_q = {q[i] for i in data.splits["probe_train"]}
    assert not [i for i in data.splits["test"] if q[i] in train_q]
    # a statement-level split would leak: most test questions also have probe-train statements
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(q))
    naive_test, naive_train = perm[: len(q) // 2], perm[len(q) // 2 : len(q) // 2 + int(0.4 * len(q))]
    leaked = np.mean([q[i] in {q[j] for j in naive_train} for i in naive_test])
    assert leaked > 0.8


def test_user_csv_group_column_is_honoured(tmp_path):
    f = tmp_path / "grouped.csv"
    lines = ["statement,label,group"]
    for g in range(40):
        lines += [f"item {g} yes,1,g{g}", f"item {g} no,0,g{g}", f"item {g} maybe,1,g{g}"]
    lines += [f"loose {k},{k % 2}," for k in range(20)]
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = load_dimension(f)
    assert data.extra["group"][0] == "g0"
    for g in range(40):
        members = [i for i, s in enumerate(data.statements) if s.startswith(f"item {g} ")]
        homes = {p for p in PARTS for i in members if i in set(data.splits[p].tolist())}
        assert len(homes) == 1, (g, homes)
    assert data.summary()["groups"] == 60


def test_split_sizes_and_balance_with_large_groups():
    """Whole groups of very different sizes still give ~1:1 and ~4:1 splits with balanced labels."""
    labels, groups = [], []
    rng = np.random.default_rng(5)
    for g in range(300):
        size = int(rng.integers(1, 9))
        for _ in range(size):
            labels.append(int(rng.random() < 0.4))
            groups.append(g)
    from tracing_bench.splits import paper_splits as _paper_splits

    splits = _paper_splits(np.array(groups), np.array(labels), seed=0)
    n = len(labels)
    y = np.array(labels)
    assert abs(len(splits["test"]) - n / 2) <= 8
    assert abs(len(splits["probe_val"]) - len(splits["dev"]) / 5) <= 8
    for p in PARTS:
        assert abs(y[splits[p]].mean() - y.mean()) < 0.03


def test_data_show_names_the_fairness_data_and_counts_groups():
    from click.testing import CliRunner

    from tracing_bench.cli import main

    res = CliRunner().invoke(main, ["data", "show", "fairness"])
    assert res.exit_code == 0, res.output
    assert "fairness (CrowS-Pairs)" in res.output and "sent_more" in res.output
    assert "groups" in res.output
    res = CliRunner().invoke(main, ["data", "show", "fairness", "--json"])
    import json

    summary = json.loads(res.output)[0]
    assert summary["test"]["groups"] == summary["test"]["n"] // 2  # one group per pair
    res = CliRunner().invoke(main, ["data", "show", "stereoset-released"])
    assert res.exit_code == 0 and "unrelated continuation" in res.output
