"""Which statements belong together, and the splits that keep them together.

A *group* joins statements that must never sit in two splits: statements equal after
lower-casing and folding white space (:func:`group_key`: SST-2's clean/perturbed twins,
near-duplicates), plus what a dataset says belongs together (:data:`Grouping`): a TruthfulQA
question (:func:`question_key`), a StereoSet context (:func:`stereoset_contexts`), a CrowS-Pairs
pair, or the ``group`` column of a user's CSV. :func:`dedupe` cleans the rows, keeps a repeated
statement once, drops one that carries both labels and assigns the group ids
(:func:`union_groups`).

Splits: :func:`paper_splits` (test / development 1:1, development -> probe-train / probe-val 4:1;
whole groups, seeded, stratified by label as far as the groups allow, :func:`split_groups`) and
:func:`reference_splits` (the released code's file-order splits).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import numpy as np

from tracing_bench.readers import Rows, clean_statement

#: What joins statements into one group besides near-duplicates (see the module docstring).
Grouping = Literal["duplicates", "question", "context", "pair"]

_WS = re.compile(r"\s+")


def group_key(text: str) -> str:
    """Key under which near-duplicates are grouped: lower-cased, white space folded."""
    return _WS.sub(" ", text.lower()).strip()


def question_key(statement: str) -> str:
    """TruthfulQA: the question, ``Q: ...`` before the tab (the whole statement if there is none)."""
    return group_key(statement.split("\t", 1)[0])


def _common_words(a: str, b: str) -> list[str]:
    wa, wb = a.split(), b.split()
    n = 0
    for x, y in zip(wa, wb, strict=False):  # stops at the shorter
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
        keys += [key or group_key(statements[i])]
        keys += [key or group_key(statements[i + 1])] if i + 1 < len(statements) else []
    known = set(keys)
    canon: dict[str, str] = {}
    for k in sorted(known, key=len):
        words = k.split()
        prefix = next((" ".join(words[:j]) for j in range(2, len(words)) if " ".join(words[:j]) in known), None)
        canon[k] = canon[prefix] if prefix is not None else k
    return [canon[k] for k in keys]


def dataset_keys(grouping: Grouping, statements: list[str]) -> list[list[str]]:
    """Group keys per statement that a bundled dataset implies (``question``, ``context``); none otherwise."""
    if grouping == "question":
        return [[f"question:{question_key(s)}"] for s in statements]
    if grouping == "context":
        return [[f"context:{c}"] for c in stereoset_contexts(statements)]
    return [[] for _ in statements]


def dedupe(
    rows: Rows,
) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, list[str]], dict[str, int]]:
    """Clean, keep a repeated statement once, drop one that carries both labels, and group.

    Returns:
        (statements, labels, group ids, extra columns of each statement's first row, dropped).
    """
    cleaned = [clean_statement(s) for s in rows.statements]
    first: dict[str, int] = {}
    seen: dict[str, set[int]] = {}
    keys: dict[str, set[str]] = {}
    for r, (s, y) in enumerate(zip(cleaned, rows.labels, strict=True)):
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
    groups = union_groups([[f"dup:{group_key(s)}", *sorted(keys[s])] for s in kept])
    return kept, labels, groups, extra, dropped


def union_groups(keys: list[list[str]]) -> np.ndarray:
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


def split_groups(
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


def paper_splits(groups: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """The paper's splits of whole groups: test / dev 1:1, dev -> probe_val / probe_train 1:4 (seeded).

    Returns:
        index arrays for ``test``, ``dev``, ``probe_train``, ``probe_val`` and ``all``.
    """
    rng = np.random.default_rng(seed)
    test_g, dev_g = split_groups(groups, labels, 0.5, rng)
    dev_mask = np.isin(groups, dev_g)
    dev_idx = np.flatnonzero(dev_mask)
    val_g, train_g = split_groups(groups[dev_idx], labels[dev_idx], 0.2, rng)
    return {
        "test": np.flatnonzero(np.isin(groups, test_g)),
        "dev": dev_idx,
        "probe_train": np.flatnonzero(np.isin(groups, train_g)),
        "probe_val": np.flatnonzero(np.isin(groups, val_g)),
        "all": np.arange(len(labels)),
    }


def reference_splits(n: int, whole_dev: bool) -> dict[str, np.ndarray]:
    """The released code's file-order splits of ``n`` rows: probe_train = first 80 %, probe_val = last
    20 %, dev = first 50 % (all rows with ``whole_dev``, as for TruthfulQA), test = last 50 %."""
    cut80, cut50 = int(n * 0.8), int(n * 0.5)
    idx = np.arange(n)
    return {
        "test": idx[cut50:],
        "dev": idx if whole_dev else idx[:cut50],
        "probe_train": idx[:cut80],
        "probe_val": idx[cut80:],
        "all": idx,
    }


def subsample_splits(
    groups: np.ndarray, labels: np.ndarray, splits: dict[str, np.ndarray], fraction: float, seed: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Keep about ``fraction`` of the groups of ``test``, ``probe_train`` and ``probe_val`` each.

    Whole groups, stratified by label (:func:`split_groups`), seeded: the split proportions and
    label balance stay those of the full data.

    Returns:
        (the kept statement indices, sorted; every split re-indexed into the kept statements).
    """
    rng = np.random.default_rng([seed, 104729])
    keep_parts = []
    for split in ("test", "probe_train", "probe_val"):
        idx = splits[split]
        take, _ = split_groups(groups[idx], labels[idx], fraction, rng)
        keep_parts.append(idx[np.isin(groups[idx], take)])
    keep = np.sort(np.concatenate(keep_parts))
    pos = {int(i): k for k, i in enumerate(keep)}

    def remap(idx: np.ndarray) -> np.ndarray:
        return np.array(sorted(pos[int(i)] for i in idx if int(i) in pos), dtype=np.int64)

    return keep, {k: remap(v) for k, v in splits.items()}
