"""Token sequences into padded batches: the one padding of pre-training and of the harvest.

* :func:`pad_id` -- the id that fills a batch: the tokenizer's pad token, else its end-of-text
  token, else 0 (the attention mask hides it, so its value never changes a result);
* :func:`pad_rows` -- token id lists into ``input_ids`` and a boolean attention ``mask``, padded
  on the right or the left to the longest;
* :func:`length_batches` -- statements grouped longest first, at most ``batch_size`` a batch and
  at most ``max_tokens`` padded tokens, so a batch pads little.

>>> ids, mask = pad_rows([[5, 6, 7], [8]], pad=0)
>>> ids.tolist(), mask.tolist()
([[5, 6, 7], [8, 0, 0]], [[True, True, True], [True, False, False]])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["length_batches", "pad_id", "pad_rows"]


def pad_id(tokenizer: Any) -> int:
    """The id that fills a batch: ``pad_token_id``, else ``eos_token_id``, else 0."""
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    return int(tokenizer.eos_token_id) if tokenizer.eos_token_id is not None else 0


def pad_rows(rows: Sequence[Sequence[int]], pad: int, *, left: bool = False) -> tuple[Tensor, Tensor]:
    """Token id lists as one padded batch.

    Args:
        rows: the sequences (each at least one token).
        pad: the id that fills the rest of a row (:func:`pad_id`).
        left: pad on the left (the tokenizer's ``padding_side == "left"``) instead of the right.

    Returns:
        ``(input_ids, mask)``: int64 ``[len(rows), longest]`` and bool of the same shape, True on
        the real tokens.
    """
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for j, r in enumerate(rows):
        real = slice(width - len(r), width) if left else slice(0, len(r))
        input_ids[j, real] = torch.tensor(r, dtype=torch.long)
        mask[j, real] = True
    return input_ids, mask


def length_batches(lengths: Sequence[int], batch_size: int, max_tokens: int | None = None) -> list[list[int]]:
    """Indices of the sequences, longest first, cut into batches.

    A batch holds at most ``batch_size`` sequences and, when ``max_tokens`` is given, at most
    ``max_tokens`` padded tokens (sequences x its first, longest, sequence); a single sequence
    longer than that still gets a batch of its own.

    >>> length_batches([2, 5, 3, 5], batch_size=2)
    [[1, 3], [2, 0]]
    """
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        b = batches[-1] if batches else None
        if b is None or len(b) >= batch_size or (max_tokens is not None and (len(b) + 1) * lengths[b[0]] > max_tokens):
            batches.append([i])
        else:
            b.append(i)
    return batches
