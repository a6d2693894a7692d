"""The five trustworthiness dimensions: bundled data, label meanings, cleaning and splits.

A dimension is a labelled set of statements. :func:`load_dimension` reads one of the five
bundled datasets (or a user's own ``statement,label`` CSV; :mod:`tracing_bench.readers`), cleans
it, removes duplicates and assigns the paper's splits (:mod:`tracing_bench.splits`):

* ``protocol="paper"`` (default): test / development 1:1, development -> probe-train /
  probe-val 4:1; seeded, stratified by label as far as the groups allow, deterministic.
  Statements that share a *group* (near-duplicates, SST-2's twins, a TruthfulQA question, a
  StereoSet context, a CrowS-Pairs pair, a user's ``group`` column) never sit in two splits.
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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tracing_bench.errors import DataError, TracingBenchError
from tracing_bench.files import file_md5, safe_name
from tracing_bench.readers import READERS, Reader, read_questions
from tracing_bench.splits import (
    Grouping,
    dataset_keys,
    dedupe,
    paper_splits,
    reference_splits,
    subsample_splits,
    union_groups,
)

DATA_DIR = Path(__file__).resolve().parent / "data"

Split = Literal["test", "dev", "probe_train", "probe_val", "all"]
Protocol = Literal["paper", "reference"]
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
            stereotype of a disadvantaged group; ``antistereo``: ``sent_less`` violates one, and
            ``sent_more`` is its counterpart about the advantaged group, still the more
            stereotypical sentence). A CSV with a ``group`` column: ``group``; with a ``topic``
            column (groups with a meaning, for transfer): ``topic``.
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

    def indices(self, split: Split) -> np.ndarray:
        """Indices (into ``statements``) of a split."""
        if split not in self.splits:
            raise TracingBenchError(f"unknown split {split!r}: valid splits are {', '.join(SPLITS)}")
        return self.splits[split]

    def subset(self, split: Split) -> tuple[list[str], np.ndarray]:
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
        stem = safe_name(self.path.stem)[:40] or "data"
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
        keep, splits = subsample_splits(self.groups, self.labels, self.splits, n / len(self.statements), seed)
        return DimensionData(
            name=self.name,
            path=self.path,
            md5=self.md5,
            protocol=self.protocol,
            seed=self.seed,
            statements=[self.statements[i] for i in keep],
            labels=self.labels[keep],
            groups=self.groups[keep],
            splits=splits,
            dropped=dict(self.dropped),
            dimension=self.dimension,
            rows_read=self.rows_read,
            subsampled_from=len(self.statements),
            extra={k: [v[i] for i in keep] for k, v in self.extra.items()},
        )

    def summary(self) -> dict[str, Any]:
        """Counts per split and label, groups per split, and what cleaning dropped."""
        out: dict[str, Any] = {
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
            out[split] = {
                "n": int(len(idx)),
                "label_1": n1,
                "label_0": int(len(idx) - n1),
                "groups": int(len(np.unique(self.groups[idx]))),
            }
        return out


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


def load_dimension(name_or_path: str | Path, *, protocol: str = "paper", seed: int = 0) -> DimensionData:
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
        raise TracingBenchError(f"unknown protocol {protocol!r}: valid protocols are {', '.join(PROTOCOLS)}")
    name, path, dim = resolve(name_or_path)
    if protocol == "reference" and dim is not None and dim.reference is not None:
        dim = RELEASED[dim.reference]  # what the released code read for this dimension
        path = dim.path
    if dim is None and not path.exists():
        raise DataError(
            f"{path}: no such file; give the path of a statement,label CSV "
            f"or one of the dimensions {', '.join(DIMENSIONS)}"
        )
    rows = READERS[dim.reader if dim is not None else "statement_label"](path)
    if dim is not None:
        rows.keys = (
            dataset_keys(dim.grouping, rows.statements)
            if dim.grouping in ("question", "context")
            else (rows.keys or [[] for _ in rows.statements])
        )
    md5 = file_md5(path)
    if protocol == "reference":
        statements = list(rows.statements)
        labels = np.array(rows.labels, dtype=np.int64)
        dropped = {"duplicates": 0, "conflicting": 0}
        extra = rows.extra
        groups = union_groups(rows.keys or [[] for _ in statements])
    else:
        statements, labels, groups, extra, dropped = dedupe(rows)
    classes = set(labels.tolist())
    if len(classes) < 2:
        only = classes.pop() if classes else None
        raise DataError(
            f"{path}: every usable row has label {only} (after removing duplicates and "
            f"conflicts); a probe needs both labels 0 and 1"
        )
    if protocol == "paper":
        splits = paper_splits(groups, labels, seed)
    else:
        splits = reference_splits(len(labels), whole_dev=name == "reliability")
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
                f"--dimensions names {item} twice"
                + (f" (as {seen[key]} and {item})" if seen[key] != item else "")
                + "; give each dimension or file once"
            )
        seen[key] = item
        out.append(item)
    if not out:
        raise TracingBenchError(f"no dimension given: use 'all' or a comma list of {', '.join(DIMENSIONS)}")
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
    parts = {
        i: [safe_name(x) or "_" for x in Path(p).expanduser().resolve().with_suffix("").parts]
        for i, (_, p, d) in enumerate(resolved)
        if d is None
    }
    depth = {i: 1 for i in parts}

    def name(i: int) -> str:
        return "-".join(parts[i][-depth[i] :]) if i in parts else resolved[i][0]

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
    return read_questions(Path(path))
