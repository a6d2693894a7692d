"""The five trustworthiness dimensions: bundled data, label meanings, cleaning and splits.

A dimension is a labelled set of statements. :func:`load_dimension` reads one of the five
bundled datasets (or a user's own ``statement,label`` CSV), cleans it, removes duplicates and
assigns the paper's splits:

* ``protocol="paper"`` (default): test / development 1:1, development -> probe-train /
  probe-val 4:1; seeded, stratified by label as far as the groups allow, deterministic.
  Statements that share a *group* never sit in two splits. A group joins statements that are
  equal after lower-casing and folding white space (SST-2's clean/perturbed twins,
  near-duplicates), plus what the dataset says belongs together: a TruthfulQA question (the
  ``Q: ...`` before the tab), a StereoSet context (the text before the continuation), a
  CrowS-Pairs pair, or the optional ``group`` column of a user's CSV.
* ``protocol="reference"``: the released code's file-order splits on the raw rows of the
  released files (no cleaning, duplicates kept): probe-train = first 80 %, probe-val = last
  20 %, dev = first 50 % (the whole file for reliability), test = last 50 %. For fairness the
  released code read ``stereoset.csv``, so that is what this protocol reads.

Fairness is CrowS-Pairs (``crows_pairs_anonymized.csv``): every minimal pair gives two
statements, ``sent_more`` (label 1, the more stereotypical sentence: the untrustworthy side)
and ``sent_less`` (label 0), and the pair is one group. The released ``stereoset.csv`` holds,
per StereoSet context, one *related* continuation (label 1; the rows read by hand are
anti-stereotypes) and one *unrelated* continuation (label 0): it measures relatedness, not
stereotyping. It stays bundled, byte-identical, as the dataset ``stereoset-released`` (outside
the five) and as the fairness data of the ``reference`` protocol.

>>> data = load_dimension("fairness")
>>> statements, labels = data.subset("probe_train")
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from tracing_bench.errors import DataError, TracingBenchError
from tracing_bench.files import file_md5

DATA_DIR = Path(__file__).resolve().parent / "data"

Split = Literal["test", "dev", "probe_train", "probe_val", "all"]
Protocol = Literal["paper", "reference"]
#: How a bundled file is read: ``statement,label`` rows, or CrowS-Pairs' ``sent_more,sent_less`` pairs.
Reader = Literal["statement_label", "crows_pairs"]
#: What joins statements into one group besides near-duplicates (see the module docstring).
Grouping = Literal["duplicates", "question", "context", "pair"]
SPLITS: tuple[str, ...] = ("test", "dev", "probe_train", "probe_val", "all")
PROTOCOLS: tuple[str, ...] = ("paper", "reference")


@dataclass(frozen=True)
class Dimension:
    """One bundled dataset: a trustworthiness dimension (or a released file kept for reference).

    Attributes:
        name: short name (``reliability``, ``privacy``, ``toxicity``, ``fairness``, ``robustness``,
            or ``stereoset-released``).
        filename: the bundled file in ``tracing_bench/data``.
        label1: what label 1 means.
        label0: what label 0 means.
        trustworthy_label: the label on the trustworthy side (1 for reliability, 0 otherwise).
        source: where the statements come from (and their licence).
        title: how reports name it, e.g. ``fairness (CrowS-Pairs)``.
        reader: how the file is read (:data:`Reader`).
        grouping: which statements must share a split (:data:`Grouping`).
        reference: the dataset the released code used for this dimension, when it differs
            (``--protocol reference`` reads that one instead).
        pretrain: whether ``tracing-bench pretrain`` may train on its development half
            (``False`` for evaluation-only data such as CrowS-Pairs).
    """

    name: str
    filename: str
    label1: str
    label0: str
    trustworthy_label: int
    source: str
    title: str = ""
    reader: Reader = "statement_label"
    grouping: Grouping = "duplicates"
    reference: str | None = None
    pretrain: bool = True

    @property
    def path(self) -> Path:
        return DATA_DIR / self.filename

    @property
    def steering_sign(self) -> int:
        """Sign of the helpful coefficient for the raw class-mean difference (label 1 - label 0).

        +1 where label 1 is trustworthy (reliability), -1 where it is untrustworthy.
        """
        return 1 if self.trustworthy_label == 1 else -1


DIMENSIONS: dict[str, Dimension] = {
    d.name: d
    for d in (
        Dimension(
            "reliability",
            "truthfulqa_train.csv",
            "the statement (question + answer) is true",
            "the statement is false",
            1,
            "TruthfulQA (410 questions), from the released code; Apache-2.0",
            title="reliability (TruthfulQA)",
            grouping="question",
        ),
        Dimension(
            "privacy",
            "confaide.csv",
            "the statement describes a privacy violation",
            "the statement describes no privacy violation",
            0,
            "ConfAIde tier 2 + generated items, from the released code; MIT",
            title="privacy (ConfAIde)",
        ),
        Dimension(
            "toxicity",
            "toxigen.csv",
            "the statement is toxic",
            "the statement is not toxic",
            0,
            "ToxiGen, annotated subset, from the released code; MIT",
            title="toxicity (ToxiGen)",
        ),
        Dimension(
            "fairness",
            "crows_pairs_anonymized.csv",
            "sent_more: the more stereotypical sentence of a CrowS-Pairs minimal pair (untrustworthy side)",
            "sent_less: the same sentence about the contrasting group",
            0,
            "CrowS-Pairs (Nangia et al. 2020), 1,508 minimal pairs, nyu-mll/crows-pairs at 8aaac11; "
            "CC BY-SA 4.0, an evaluation set (never pre-trained on)",
            title="fairness (CrowS-Pairs)",
            reader="crows_pairs",
            grouping="pair",
            reference="stereoset-released",
            pretrain=False,
        ),
        Dimension(
            "robustness",
            "sst2.csv",
            "the sentence carries case-flip typos (about 5% of letters)",
            "the sentence is clean",
            0,
            "SST-2 sentences, clean and perturbed, from the released code; GLUE terms",
            title="robustness (SST-2 typos)",
        ),
    )
}

#: Bundled datasets outside the five, selectable by name wherever a dimension is taken.
RELEASED: dict[str, Dimension] = {
    "stereoset-released": Dimension(
        "stereoset-released",
        "stereoset.csv",
        "a related continuation of a StereoSet context (the rows read by hand are anti-stereotypes; "
        "the released code assumed 'stereotypical')",
        "an unrelated continuation of the same context",
        0,
        "StereoSet inter-sentence (context + candidate), the released code's fairness file; CC BY-SA 4.0. "
        "It measures whether a continuation is related to its context, not stereotyping",
        title="StereoSet as released: related vs unrelated continuations",
        grouping="context",
    ),
}


@dataclass
class DimensionData:
    """A loaded, cleaned and split dimension.

    Attributes:
        name: dimension name, or a name for a custom CSV (its file stem).
        path: the file read.
        md5: md5 of the file's bytes (the dataset hash recorded in every artefact).
        protocol: ``paper`` or ``reference``.
        seed: seed of the paper splits.
        statements: cleaned statements, unique, in file order of first occurrence.
        labels: int64 array of 0/1, aligned with ``statements``.
        groups: int64 group id per statement; equal ids never straddle two splits.
        splits: index arrays for ``test``, ``dev``, ``probe_train``, ``probe_val``, ``all``.
        dropped: counts of rows removed by cleaning (``duplicates``, ``conflicting``).
        dimension: the bundled :class:`Dimension`, or ``None`` for a custom CSV.
        rows_read: data rows in the file (CrowS-Pairs: pairs).
        subsampled_from: size of the full data when this is a subsample.
        extra: per-statement columns aligned with ``statements`` that a dataset carries beyond
            the label. CrowS-Pairs: ``pair`` (the pair's row id; both sentences of a pair share
            it), ``bias_type``, ``stereo_antistereo`` (``stereo``: ``sent_more`` demonstrates a
            stereotype; ``antistereo``: it violates one). A CSV with a ``group`` column: ``group``.
    """

    name: str
    path: Path
    md5: str
    protocol: str
    seed: int
    statements: list[str]
    labels: np.ndarray
    groups: np.ndarray
    splits: dict[str, np.ndarray]
    dropped: dict[str, int] = field(default_factory=dict)
    dimension: Dimension | None = None
    rows_read: int = 0
    subsampled_from: int | None = None
    extra: dict[str, list[str]] = field(default_factory=dict)

    @property
    def title(self) -> str:
        """How reports name the data (``fairness (CrowS-Pairs)``; the name for a custom CSV)."""
        if self.dimension is None:
            return self.name
        if self.dimension.name != self.name:  # the reference protocol's released file
            return f"{self.name} ({self.dimension.title})"
        return self.dimension.title or self.name

    def indices(self, split: str) -> np.ndarray:
        """Indices (into ``statements``) of a split."""
        if split not in self.splits:
            raise TracingBenchError(
                f"unknown split {split!r}: valid splits are {', '.join(SPLITS)}"
            )
        return self.splits[split]

    def subset(self, split: str) -> tuple[list[str], np.ndarray]:
        """Statements and labels of a split."""
        idx = self.indices(split)
        return [self.statements[i] for i in idx], self.labels[idx]

    def provenance(self) -> dict[str, object]:
        """What identifies this data in an artefact."""
        return {
            "dimension": self.name,
            "dataset_file": self.path.name,
            "dataset_md5": self.md5,
            "protocol": self.protocol,
            "split_seed": self.seed,
            "n_statements": len(self.statements),
            "subsampled_from": self.subsampled_from,
        }

    @property
    def key_name(self) -> str:
        """The name part files and cache keys use: a bundled dimension's name, or for a CSV
        ``csv-<file stem>-<md5 prefix>`` (from the content, so two files named alike never share
        results, and no CSV can take a bundled dimension's place, whatever it is called)."""
        if self.dimension is not None:
            return self.name
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", self.path.stem)[:40] or "data"
        return f"csv-{stem}-{self.md5[:12]}"

    def subsample(self, n: int, seed: int = 0) -> DimensionData:
        """A seeded subsample of about ``n`` statements that keeps the splits and their groups.

        Each of ``test``, ``probe_train`` and ``probe_val`` keeps the same fraction of its groups,
        stratified by label, so the split proportions and label balance stay those of the full
        data and a group (near-duplicates, SST-2 twins, a TruthfulQA question, a CrowS-Pairs
        pair) is kept or dropped whole. Meant for quick looks (``trace --max-statements``); the
        statements' hash changes, so caches never mix a subsample with the full data.

        Args:
            n: target number of statements (the whole data when ``n`` is at least its size).
            seed: seed of the choice.

        Returns:
            A new :class:`DimensionData` (``subsampled_from`` records the full size).

        Raises:
            TracingBenchError: ``n`` < 10, or the ``reference`` protocol (its file-order splits
                overlap and cannot be subsampled consistently).
        """
        if n < 10:
            raise TracingBenchError(f"--max-statements {n} is too small: use at least 10 statements per dimension")
        if n >= len(self.statements):
            return self
        if self.protocol != "paper":
            raise TracingBenchError(
                "--max-statements works with --protocol paper only: the reference protocol's file-order splits "
                "overlap; drop --max-statements or use --protocol paper"
            )
        rng = np.random.default_rng([seed, 104729])
        frac = n / len(self.statements)
        keep_parts = []
        for split in ("test", "probe_train", "probe_val"):
            idx = self.splits[split]
            take, _ = _split_groups(self.groups[idx], self.labels[idx], frac, rng)
            keep_parts.append(idx[np.isin(self.groups[idx], take)])
        keep = np.sort(np.concatenate(keep_parts))
        pos = {int(i): k for k, i in enumerate(keep)}

        def remap(idx: np.ndarray) -> np.ndarray:
            return np.array(sorted(pos[int(i)] for i in idx if int(i) in pos), dtype=np.int64)

        splits = {k: remap(v) for k, v in self.splits.items()}
        return DimensionData(
            name=self.name, path=self.path, md5=self.md5, protocol=self.protocol, seed=self.seed,
            statements=[self.statements[i] for i in keep], labels=self.labels[keep], groups=self.groups[keep],
            splits=splits, dropped=dict(self.dropped), dimension=self.dimension, rows_read=self.rows_read,
            subsampled_from=len(self.statements),
            extra={k: [v[i] for i in keep] for k, v in self.extra.items()},
        )

    def summary(self) -> dict[str, object]:
        """Counts per split and label, groups per split, and what cleaning dropped."""
        out: dict[str, object] = {
            "name": self.name,
            "title": self.title,
            "file": str(self.path),
            "md5": self.md5,
            "protocol": self.protocol,
            "seed": self.seed,
            "rows_read": self.rows_read,
            "statements": len(self.statements),
            "groups": int(len(np.unique(self.groups))),
            "dropped": dict(self.dropped),
        }
        if self.dimension is not None:
            out["label 1"] = self.dimension.label1
            out["label 0"] = self.dimension.label0
            out["trustworthy label"] = self.dimension.trustworthy_label
            out["source"] = self.dimension.source
            out["grouping"] = self.dimension.grouping
        for split in SPLITS:
            idx = self.splits[split]
            n1 = int(self.labels[idx].sum())
            out[split] = {"n": int(len(idx)), "label_1": n1, "label_0": int(len(idx) - n1),
                          "groups": int(len(np.unique(self.groups[idx])))}
        return out


_CR_ARTEFACT = re.compile(r"\s*_x000D_\s*")
_WS = re.compile(r"\s+")


def clean_statement(text: str) -> str:
    """Remove the spreadsheet artefact ``_x000D_`` and surrounding white space.

    Inner white space (the tab between ``Q:`` and ``A:`` in TruthfulQA) is kept.
    """
    return _CR_ARTEFACT.sub(" ", text).strip()


def group_key(text: str) -> str:
    """Key under which near-duplicates are grouped: lower-cased, white space folded."""
    return _WS.sub(" ", text.lower()).strip()


def _read_text(path: Path) -> str:
    if not path.exists():
        raise DataError(
            f"{path}: no such file; give the path of a statement,label CSV "
            f"or one of the dimensions {', '.join(DIMENSIONS)}"
        )
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a CSV file; give the path of a statement,label CSV")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror}); check its permissions") from None
    if b"\x00" in raw[:65536]:
        raise DataError(
            f"{path}: looks binary (NUL bytes), not a CSV; save it as UTF-8 text with a "
            "header line 'statement,label'"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line} is not valid UTF-8; re-save the file as UTF-8 text"
        ) from None
    if not text.strip():
        raise DataError(
            f"{path}: the file is empty; it needs a header line 'statement,label' and one row per "
            "labelled statement"
        )
    return text


@dataclass
class _Rows:
    """What a reader returns: raw rows in file order, before cleaning."""

    statements: list[str]
    labels: list[int]
    lines: list[int]
    extra: dict[str, list[str]] = field(default_factory=dict)
    keys: list[list[str]] = field(default_factory=list)  # group keys per row, beyond near-duplicates
    rows_read: int = 0


def read_labelled_csv(path: str | Path) -> tuple[list[str], list[int], list[int]]:
    """Read and validate a ``statement,label`` CSV (an optional ``group`` column is allowed).

    Args:
        path: the file.

    Returns:
        (statements as written, labels 0/1, line numbers) for every data row.

    Raises:
        DataError: naming the file, the line where it applies, and the fix.
    """
    rows = _read_statement_label(Path(path))
    return rows.statements, rows.labels, rows.lines


def _read_statement_label(path: Path) -> _Rows:
    text = _read_text(path)
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
    out = _Rows([], [], [])
    groups: list[str] = []
    try:
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise DataError(
                    f"{path}: line {line} has {len(row)} fields but the header has {len(header)}; "
                    "quote statements that contain commas (\"...\")"
                )
            label = row[i_l].strip()
            if label == "":
                raise DataError(
                    f"{path}: line {line} has no label; every row needs label 0 or 1"
                )
            if label not in ("0", "1"):
                raise DataError(
                    f"{path}: line {line} has label {label!r}; labels must be 0 or 1 (binary)"
                )
            if not clean_statement(row[i_s]):
                raise DataError(
                    f"{path}: line {line} has an empty statement; remove the row or fill it in"
                )
            out.statements.append(row[i_s])
            out.labels.append(int(label))
            out.lines.append(line)
            if i_g is not None:
                groups.append(row[i_g].strip())
    except csv.Error as e:
        raise DataError(
            f"{path}: line {reader.line_num} is not valid CSV ({e}); fix the quoting"
        ) from None
    if not out.statements:
        raise DataError(
            f"{path}: has a header but no data rows; add one 'statement,label' row per statement"
        )
    out.rows_read = len(out.statements)
    if i_g is not None:
        # an empty group cell means "no group of its own beyond near-duplicates"
        out.extra["group"] = groups
        out.keys = [[f"group:{g}"] if g else [] for g in groups]
    return out


_CROWS_COLUMNS = ("sent_more", "sent_less", "stereo_antistereo", "bias_type")


def _read_crows_pairs(path: Path) -> _Rows:
    """CrowS-Pairs: each row gives ``sent_more`` (label 1) and ``sent_less`` (label 0), one pair."""
    text = _read_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in _CROWS_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(
            f"{path}: line 1 (header) lacks the CrowS-Pairs columns {', '.join(missing)}; "
            "use the file crows_pairs_anonymized.csv as released"
        )
    id_col = (reader.fieldnames or [""])[0]
    out = _Rows([], [], [])
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


def question_key(statement: str) -> str:
    """TruthfulQA: the question, ``Q: ...`` before the tab (the whole statement if there is none)."""
    return group_key(statement.split("\t", 1)[0])


def _common_words(a: str, b: str) -> list[str]:
    wa, wb = a.split(), b.split()
    n = 0
    for x, y in zip(wa, wb):
        if x != y:
            break
        n += 1
    return wa[:n]


def stereoset_contexts(statements: Sequence[str]) -> list[str]:
    """StereoSet as released: the context of every row (the text before its continuation).

    The released file lists each context's two candidates on adjacent rows (one label 1, one
    label 0), so a row's context is the longest word prefix it shares with its partner. A
    context that is a word prefix of another one is the same context (two candidates that also
    share their first words, e.g. "... Vietnam. The"); both map to the shorter.

    Args:
        statements: the rows in file order.

    Returns:
        one context per row (lower-cased, white space folded).
    """
    keys: list[str] = []
    for i in range(0, len(statements), 2):
        if i + 1 < len(statements):
            words = _common_words(statements[i], statements[i + 1])
        else:
            words = []
        key = group_key(" ".join(words)) if len(words) >= 2 else ""
        keys += [key or group_key(statements[i])] + ([key or group_key(statements[i + 1])] if i + 1 < len(statements) else [])
    known = set(keys)
    canon: dict[str, str] = {}
    for k in sorted(known, key=len):
        words = k.split()
        prefix = next((" ".join(words[:j]) for j in range(2, len(words)) if " ".join(words[:j]) in known), None)
        canon[k] = canon[prefix] if prefix is not None else k
    return [canon[k] for k in keys]


def _dataset_keys(grouping: Grouping, statements: list[str]) -> list[list[str]]:
    if grouping == "question":
        return [[f"question:{question_key(s)}"] for s in statements]
    if grouping == "context":
        return [[f"context:{c}"] for c in stereoset_contexts(statements)]
    return [[] for _ in statements]


def _dedupe(
    rows: _Rows,
) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, list[str]], dict[str, int]]:
    """Clean, keep a repeated statement once, drop one that carries both labels, and group.

    Returns:
        (statements, labels, group ids, extra columns of each statement's first row, dropped).
    """
    cleaned = [clean_statement(s) for s in rows.statements]
    first: dict[str, int] = {}
    seen: dict[str, set[int]] = {}
    keys: dict[str, set[str]] = {}
    for r, (s, y) in enumerate(zip(cleaned, rows.labels)):
        if s not in first:
            first[s] = r
            seen[s] = set()
            keys[s] = set()
        seen[s].add(y)
        keys[s].update(rows.keys[r] if rows.keys else ())
    kept = [s for s in first if len(seen[s]) == 1]
    conflicting_statements = len(first) - len(kept)
    n_conf_rows = sum(1 for s in cleaned if len(seen[s]) > 1)
    dropped = {
        "duplicates": len(cleaned) - len(first) - (n_conf_rows - conflicting_statements),
        "conflicting": n_conf_rows,
    }
    labels = np.array([next(iter(seen[s])) for s in kept], dtype=np.int64)
    extra = {k: [v[first[s]] for s in kept] for k, v in rows.extra.items()}
    groups = _union_groups([[f"dup:{group_key(s)}", *sorted(keys[s])] for s in kept])
    return kept, labels, groups, extra, dropped


def _union_groups(keys: list[list[str]]) -> np.ndarray:
    """Group ids (0, 1, ... in order of first appearance) joining items that share any key."""
    parent = list(range(len(keys)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, ks in enumerate(keys):
        for k in ks:
            j = owner.setdefault(k, i)
            ri, rj = find(i), find(j)
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    ids: dict[int, int] = {}
    return np.array([ids.setdefault(find(i), len(ids)) for i in range(len(keys))], dtype=np.int64)


def _split_groups(
    group_ids: np.ndarray, labels: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split whole groups so that about ``fraction`` of the statements (and of each label) go first.

    Groups are ordered by their share of label 1 (then size), in random order within equal
    values, and assigned in that order to ``first`` whenever that keeps the running count of
    ``first`` closest to ``fraction`` of the running total: systematic sampling along the label
    share, so both the split sizes and the label balance follow ``fraction`` as closely as the
    groups allow, for any mix of group sizes.

    Returns:
        (first, rest) group ids, each sorted.
    """
    uniq, inv = np.unique(group_ids, return_inverse=True)
    size = np.bincount(inv, minlength=len(uniq))
    ones = np.bincount(inv, weights=labels.astype(np.float64), minlength=len(uniq))
    share = ones / size
    order = np.lexsort((rng.permutation(len(uniq)), size, np.round(share, 6)))
    first: list[int] = []
    rest: list[int] = []
    taken = total = 0.0
    for g in order:
        total += size[g]
        if taken + size[g] / 2 <= fraction * total:
            first.append(int(uniq[g]))
            taken += size[g]
        else:
            rest.append(int(uniq[g]))
    return np.array(sorted(first), dtype=np.int64), np.array(sorted(rest), dtype=np.int64)


def _paper_splits(groups: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    test_g, dev_g = _split_groups(groups, labels, 0.5, rng)
    dev_mask = np.isin(groups, dev_g)
    dev_idx = np.flatnonzero(dev_mask)
    val_g, train_g = _split_groups(groups[dev_idx], labels[dev_idx], 0.2, rng)
    return {
        "test": np.flatnonzero(np.isin(groups, test_g)),
        "dev": dev_idx,
        "probe_train": np.flatnonzero(np.isin(groups, train_g)),
        "probe_val": np.flatnonzero(np.isin(groups, val_g)),
        "all": np.arange(len(labels)),
    }


def _reference_splits(n: int, whole_dev: bool) -> dict[str, np.ndarray]:
    cut80, cut50 = int(n * 0.8), int(n * 0.5)
    idx = np.arange(n)
    return {
        "test": idx[cut50:],
        "dev": idx if whole_dev else idx[:cut50],
        "probe_train": idx[:cut80],
        "probe_val": idx[cut80:],
        "all": idx,
    }


def resolve(name_or_path: str | Path) -> tuple[str, Path, Dimension | None]:
    """Resolve a dimension name or a CSV path into (name, path, bundled dimension or None)."""
    key = str(name_or_path)
    if key in DIMENSIONS or key in RELEASED:
        d = DIMENSIONS.get(key) or RELEASED[key]
        return d.name, d.path, d
    p = Path(key).expanduser()
    if p.suffix.lower() != ".csv" and not p.exists():
        raise TracingBenchError(
            f"unknown dimension {key!r}: valid dimensions are {', '.join(DIMENSIONS)} "
            f"(also {', '.join(RELEASED)}), or give the path of your own statement,label CSV"
        )
    return p.stem, p, None


_READERS: dict[str, Callable[[Path], _Rows]] = {
    "statement_label": _read_statement_label,
    "crows_pairs": _read_crows_pairs,
}


def load_dimension(
    name_or_path: str | Path, *, protocol: str = "paper", seed: int = 0
) -> DimensionData:
    """Load, clean and split a dimension.

    Args:
        name_or_path: one of :data:`DIMENSIONS`, ``stereoset-released``, or the path of a
            ``statement,label`` CSV (an optional ``group`` column joins rows into groups).
        protocol: ``paper`` (cleaned, de-duplicated, seeded stratified group splits) or
            ``reference`` (the released code's file, raw rows, file-order splits).
        seed: seed of the paper splits.

    Returns:
        A :class:`DimensionData`.

    Raises:
        DataError: malformed file (names the file, the line and the fix).
        TracingBenchError: unknown dimension or protocol.
    """
    if protocol not in PROTOCOLS:
        raise TracingBenchError(
            f"unknown protocol {protocol!r}: valid protocols are {', '.join(PROTOCOLS)}"
        )
    name, path, dim = resolve(name_or_path)
    if protocol == "reference" and dim is not None and dim.reference is not None:
        dim = RELEASED[dim.reference]  # what the released code read for this dimension
        path = dim.path
    rows = _READERS[dim.reader if dim is not None else "statement_label"](path)
    if dim is not None:
        rows.keys = _dataset_keys(dim.grouping, rows.statements) if dim.grouping in ("question", "context") \
            else (rows.keys or [[] for _ in rows.statements])
    md5 = file_md5(path)
    if protocol == "reference":
        statements = list(rows.statements)
        labels = np.array(rows.labels, dtype=np.int64)
        dropped = {"duplicates": 0, "conflicting": 0}
        extra = rows.extra
        groups = _union_groups(rows.keys or [[] for _ in statements])
    else:
        statements, labels, groups, extra, dropped = _dedupe(rows)
    classes = set(labels.tolist())
    if len(classes) < 2:
        only = classes.pop() if classes else None
        raise DataError(
            f"{path}: every usable row has label {only} (after removing duplicates and "
            f"conflicts); a probe needs both labels 0 and 1"
        )
    if protocol == "paper":
        splits = _paper_splits(groups, labels, seed)
    else:
        splits = _reference_splits(len(labels), whole_dev=name == "reliability")
    return DimensionData(
        name=name,
        path=path,
        md5=md5,
        protocol=protocol,
        seed=seed,
        statements=statements,
        labels=labels,
        groups=groups,
        splits=splits,
        dropped=dropped,
        dimension=dim,
        rows_read=rows.rows_read,
        extra=extra,
    )


def resolve_dimensions(spec: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Parse ``all`` / a comma list / a list of names or CSV paths into a validated list.

    Raises:
        TracingBenchError: unknown name, nothing given, or the same dimension or file twice.
    """
    if spec is None or spec == "all" or spec == ["all"]:
        return list(DIMENSIONS)
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    seen: dict[str, str] = {}
    for item in (i.strip() for i in items):
        if not item:
            continue
        _, path, _ = resolve(item)
        key = str(path.expanduser().resolve())
        if key in seen:
            raise TracingBenchError(
                f"--dimensions names {item} twice" + (f" (as {seen[key]} and {item})" if seen[key] != item else "")
                + "; give each dimension or file once"
            )
        seen[key] = item
        out.append(item)
    if not out:
        raise TracingBenchError(
            f"no dimension given: use 'all' or a comma list of {', '.join(DIMENSIONS)}"
        )
    return out


def display_names(items: list[str]) -> list[str]:
    """Readable, distinct, file-name-safe names for the ``dimension`` column of one command.

    A bundled dimension keeps its name. A CSV is named by its file stem (``data`` for
    ``e1/data.csv``) unless that stem is a bundled dimension's name or another item's name; then
    by the shortest end of its path, joined with ``-``, that is unique and not a bundled name
    (``e1-data`` and ``e2-data``; ``e3-privacy`` for ``e3/privacy.csv`` traced with ``privacy``).
    Characters other than letters, digits, ``.``, ``_`` and ``-`` become ``_``.

    Args:
        items: dimension names and CSV paths, as :func:`resolve_dimensions` returns them.

    Returns:
        one name per item, all distinct.

    >>> display_names(["privacy", "e1/data.csv", "e2/data.csv", "e3/privacy.csv"])
    ['privacy', 'e1-data', 'e2-data', 'e3-privacy']
    """
    resolved = [resolve(i) for i in items]
    parts = {i: [re.sub(r"[^A-Za-z0-9._-]+", "_", x) or "_" for x in Path(p).expanduser().resolve().with_suffix("").parts]
             for i, (_, p, d) in enumerate(resolved) if d is None}
    depth = {i: 1 for i in parts}

    def name(i: int) -> str:
        return "-".join(parts[i][-depth[i]:]) if i in parts else resolved[i][0]

    while True:
        names = [name(i) for i in range(len(items))]
        clash = [i for i in parts if names[i] in DIMENSIONS or names.count(names[i]) > 1]
        grow = [i for i in clash if depth[i] < len(parts[i])]
        if not grow:
            return names
        for i in grow:
            depth[i] += 1


QUESTIONS_FILE = DATA_DIR / "truthfulqa_test.csv"


def load_questions(path: str | Path = QUESTIONS_FILE) -> list[str]:
    """The 407 TruthfulQA test questions (column ``Question``), used by ``trustgen_reliability``."""
    path = Path(path)
    text = _read_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or "Question" not in reader.fieldnames:
        raise DataError(f"{path}: line 1 (header) has no 'Question' column")
    return [row["Question"].strip() for row in reader if row["Question"].strip()]
