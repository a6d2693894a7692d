"""The five trustworthiness dimensions: bundled data, label meanings, cleaning and splits.

A dimension is a labelled set of statements (``statement,label`` CSV). :func:`load_dimension`
reads one of the five bundled files (or a user's own CSV), cleans it, removes duplicates and
assigns the paper's splits:

* ``protocol="paper"`` (default): test / development 1:1, development -> probe-train /
  probe-val 4:1; seeded, stratified by label, deterministic. Statements that are equal after
  lower-casing and folding white space form a group that never straddles two splits (so the
  clean/perturbed twins of SST-2 stay together, and so do near-duplicates).
* ``protocol="reference"``: the released code's file-order splits on the raw rows (no
  cleaning): probe-train = first 80 %, probe-val = last 20 %, dev = first 50 % (the whole file
  for reliability), test = last 50 %.

>>> data = load_dimension("fairness")
>>> statements, labels = data.subset("probe_train")
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from tracing_bench.errors import DataError, TracingBenchError

DATA_DIR = Path(__file__).resolve().parent / "data"

Split = Literal["test", "dev", "probe_train", "probe_val", "all"]
Protocol = Literal["paper", "reference"]
SPLITS: tuple[str, ...] = ("test", "dev", "probe_train", "probe_val", "all")
PROTOCOLS: tuple[str, ...] = ("paper", "reference")


@dataclass(frozen=True)
class Dimension:
    """One trustworthiness dimension.

    Attributes:
        name: short name (``reliability``, ``privacy``, ``toxicity``, ``fairness``, ``robustness``).
        filename: the bundled CSV in ``tracing_bench/data``.
        label1: what label 1 means.
        label0: what label 0 means.
        trustworthy_label: the label on the trustworthy side (1 for reliability, 0 otherwise).
        source: where the statements come from.
    """

    name: str
    filename: str
    label1: str
    label0: str
    trustworthy_label: int
    source: str

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
            "TruthfulQA (410 questions)",
        ),
        Dimension(
            "privacy",
            "confaide.csv",
            "the statement describes a privacy violation",
            "the statement describes no privacy violation",
            0,
            "ConfAIde tier 2 + generated items",
        ),
        Dimension(
            "toxicity",
            "toxigen.csv",
            "the statement is toxic",
            "the statement is not toxic",
            0,
            "ToxiGen, annotated subset",
        ),
        Dimension(
            "fairness",
            "stereoset.csv",
            "the sentence is stereotypical",
            "the sentence is not stereotypical (anti-stereotypical or unrelated)",
            0,
            "StereoSet inter-sentence (context + candidate)",
        ),
        Dimension(
            "robustness",
            "sst2.csv",
            "the sentence carries case-flip typos (about 5% of letters)",
            "the sentence is clean",
            0,
            "SST-2 sentences, clean and perturbed",
        ),
    )
}

QUESTIONS_FILE = DATA_DIR / "truthfulqa_test.csv"


@dataclass
class DimensionData:
    """A loaded, cleaned and split dimension.

    Attributes:
        name: dimension name, or the file stem for a custom CSV.
        path: the CSV read.
        md5: md5 of the file's bytes (the dataset hash recorded in every artefact).
        protocol: ``paper`` or ``reference``.
        seed: seed of the paper splits.
        statements: cleaned statements, unique, in file order of first occurrence.
        labels: int64 array of 0/1, aligned with ``statements``.
        groups: int64 group id per statement; equal ids never straddle two splits.
        splits: index arrays for ``test``, ``dev``, ``probe_train``, ``probe_val``, ``all``.
        dropped: counts of rows removed by cleaning (``duplicates``, ``conflicting``).
        dimension: the bundled :class:`Dimension`, or ``None`` for a custom CSV.
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
        data and a group (near-duplicates, SST-2 twins) is kept or dropped whole. Meant for quick
        looks (``trace --max-statements``); the statements' hash changes, so caches never mix
        a subsample with the full data.

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
        )

    def summary(self) -> dict[str, object]:
        """Counts per split and label, and what cleaning dropped."""
        out: dict[str, object] = {
            "name": self.name,
            "file": str(self.path),
            "md5": self.md5,
            "protocol": self.protocol,
            "seed": self.seed,
            "rows_read": self.rows_read,
            "statements": len(self.statements),
            "dropped": dict(self.dropped),
        }
        if self.dimension is not None:
            out["label 1"] = self.dimension.label1
            out["label 0"] = self.dimension.label0
            out["trustworthy label"] = self.dimension.trustworthy_label
        for split in SPLITS:
            idx = self.splits[split]
            n1 = int(self.labels[idx].sum())
            out[split] = {"n": int(len(idx)), "label_1": n1, "label_0": int(len(idx) - n1)}
        return out


def file_md5(path: str | Path) -> str:
    """md5 of a file's bytes."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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


def read_labelled_csv(path: str | Path) -> tuple[list[str], list[int], list[int]]:
    """Read and validate a ``statement,label`` CSV.

    Args:
        path: the file.

    Returns:
        (statements as written, labels 0/1, line numbers) for every data row.

    Raises:
        DataError: naming the file, the line where it applies, and the fix.
    """
    path = Path(path)
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
            "column; the first line must name the columns, e.g. 'statement,label'"
        )
    i_s, i_l = cols.index("statement"), cols.index("label")
    statements: list[str] = []
    labels: list[int] = []
    lines: list[int] = []
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
            statements.append(row[i_s])
            labels.append(int(label))
            lines.append(line)
    except csv.Error as e:
        raise DataError(
            f"{path}: line {reader.line_num} is not valid CSV ({e}); fix the quoting"
        ) from None
    if not statements:
        raise DataError(
            f"{path}: has a header but no data rows; add one 'statement,label' row per statement"
        )
    return statements, labels, lines


def _dedupe(
    path: Path, statements: list[str], labels: list[int]
) -> tuple[list[str], np.ndarray, dict[str, int]]:
    cleaned = [clean_statement(s) for s in statements]
    seen: dict[str, set[int]] = {}
    order: list[str] = []
    for s, y in zip(cleaned, labels):
        if s not in seen:
            seen[s] = set()
            order.append(s)
        seen[s].add(y)
    kept = [s for s in order if len(seen[s]) == 1]
    conflicting = len(order) - len(kept)
    out_labels = np.array([next(iter(seen[s])) for s in kept], dtype=np.int64)
    n_conf_rows = sum(1 for s in cleaned if len(seen[s]) > 1)
    dropped = {
        "duplicates": len(cleaned) - len(order) - (n_conf_rows - conflicting),
        "conflicting": n_conf_rows,
    }
    return kept, out_labels, dropped


def _groups(statements: list[str]) -> np.ndarray:
    ids: dict[str, int] = {}
    return np.array([ids.setdefault(group_key(s), len(ids)) for s in statements], dtype=np.int64)


def _split_groups(
    group_ids: np.ndarray, labels: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split groups (stratified by their label signature); returns (first, rest) group ids."""
    sig: dict[int, tuple[int, ...]] = {}
    for g in np.unique(group_ids):
        sig[int(g)] = tuple(sorted(labels[group_ids == g].tolist()))
    strata: dict[tuple[int, ...], list[int]] = {}
    for g in sorted(sig):
        strata.setdefault(sig[g], []).append(g)
    first: list[int] = []
    rest: list[int] = []
    for key in sorted(strata):
        gs = np.array(strata[key])
        gs = gs[rng.permutation(len(gs))]
        k = int(round(len(gs) * fraction))
        first.extend(gs[:k].tolist())
        rest.extend(gs[k:].tolist())
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
    if key in DIMENSIONS:
        d = DIMENSIONS[key]
        return d.name, d.path, d
    p = Path(key).expanduser()
    if p.suffix.lower() != ".csv" and not p.exists():
        raise TracingBenchError(
            f"unknown dimension {key!r}: valid dimensions are {', '.join(DIMENSIONS)}, "
            "or give the path of your own statement,label CSV"
        )
    return p.stem, p, None


def load_dimension(
    name_or_path: str | Path, *, protocol: str = "paper", seed: int = 0
) -> DimensionData:
    """Load, clean and split a dimension.

    Args:
        name_or_path: one of :data:`DIMENSIONS` or the path of a ``statement,label`` CSV.
        protocol: ``paper`` (cleaned, de-duplicated, seeded stratified group splits) or
            ``reference`` (raw rows, file-order splits as in the released code).
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
    raw_statements, raw_labels, _ = read_labelled_csv(path)
    md5 = file_md5(path)
    if protocol == "reference":
        statements = list(raw_statements)
        labels = np.array(raw_labels, dtype=np.int64)
        dropped = {"duplicates": 0, "conflicting": 0}
        splits = _reference_splits(len(labels), whole_dev=name == "reliability")
    else:
        statements, labels, dropped = _dedupe(path, raw_statements, raw_labels)
    classes = set(labels.tolist())
    if len(classes) < 2:
        only = classes.pop() if classes else None
        raise DataError(
            f"{path}: every usable row has label {only} (after removing duplicates and "
            f"conflicts); a probe needs both labels 0 and 1"
        )
    groups = _groups(statements)
    if protocol == "paper":
        splits = _paper_splits(groups, labels, seed)
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
        rows_read=len(raw_statements),
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


def load_questions(path: str | Path = QUESTIONS_FILE) -> list[str]:
    """The 407 TruthfulQA test questions (column ``Question``), used by ``trustgen_reliability``."""
    path = Path(path)
    text = _read_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or "Question" not in reader.fieldnames:
        raise DataError(f"{path}: line 1 (header) has no 'Question' column")
    return [row["Question"].strip() for row in reader if row["Question"].strip()]
