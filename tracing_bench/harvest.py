"""Hidden states of every decoder block at the last token of each statement, batched and cached.

The activation of layer ``l`` is the output of decoder block ``l`` (as in the released code,
which hooks the blocks): Hugging Face's ``hidden_states[l + 1]`` for every block but the last.
For the last block Hugging Face applies the model's final norm before returning
``hidden_states[-1]``; :func:`harvest` returns the block's own output there too, without it.
Statements are tokenized with the tokenizer's special tokens (e.g. Llama's BOS) and no template.

Speed: statements are sorted by token length and batched (padding on the tokenizer's
``padding_side``; the last real token is found through the attention mask and position ids are
recomputed from it, so left padding gives the same numbers), the forward runs under
``torch.inference_mode()`` and stops with a private exception right after the last requested
block, so later blocks, the final norm and the LM head are never computed. The result equals
running the statements one at a time (batch 1, no padding) to float32 rounding (< 1e-4).
All blocks of a dimension's statements are cached per checkpoint by :mod:`tracing_bench.cache`.

>>> acts = harvest(model, tokenizer, ["The sky is blue.", "Paris is in Peru."])   # [L, 2, D]
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from tracing_bench.batches import length_batches, pad_id, pad_rows
from tracing_bench.errors import TracingBenchError
from tracing_bench.loading import find_blocks
from tracing_bench.settings import HarvestSettings


class _StopForward(Exception):
    """Raised by the hook on the last requested block to end the forward pass early."""


# ------------------------------------------------------------------------------ recording
@contextlib.contextmanager
def record_blocks(
    model: Any,
    layers: Sequence[int],
    on_output: Callable[[int, Tensor], None],
    *,
    blocks_attr: str | None = None,
    stop_after_last: bool = True,
) -> Iterator[None]:
    """Forward hooks on decoder blocks, removed on exit (also on errors).

    Args:
        model: a Hugging Face model.
        layers: block indices to record.
        on_output: called as ``on_output(layer, hidden)`` with each block's output
            ``[batch, tokens, hidden]``.
        blocks_attr: override of the blocks' path (see :func:`tracing_bench.loading.find_blocks`).
        stop_after_last: raise a private exception after the last requested block so that the
            rest of the forward is skipped; :func:`harvest` catches it.

    >>> with record_blocks(model, [0, 2], lambda l, h: print(l, h.shape)):
    ...     model(**batch)
    """
    blocks, _ = find_blocks(model, blocks_attr)
    last = max(layers)
    handles = []

    def make_hook(layer: int) -> Callable[..., None]:
        def hook(module: Any, args: Any, output: Any) -> None:
            hidden = output[0] if isinstance(output, (tuple, list)) else output
            on_output(layer, hidden)
            if stop_after_last and layer == last:
                raise _StopForward

        return hook

    try:
        for layer in sorted(set(layers)):
            handles.append(blocks[layer].register_forward_hook(make_hook(layer)))
        yield
    finally:
        for h in handles:
            h.remove()


def _check_layers(layers: Sequence[int] | None, n: int) -> list[int]:
    if layers is None:
        return list(range(n))
    out = [int(x) for x in layers]
    bad = [x for x in out if not 0 <= x < n]
    if bad or not out:
        raise TracingBenchError(
            f"layers {bad or '[]'} out of range: the model has {n} blocks (0-{n - 1}); give indices in that range"
        )
    return out


def _token_ids(tokenizer: Any, statements: Sequence[str], max_length: int | None) -> list[list[int]]:
    """Each statement's token ids, with the tokenizer's special tokens (refuses a statement with none)."""
    kw: dict[str, Any] = {"truncation": True, "max_length": max_length} if max_length else {}
    ids: list[list[int]] = tokenizer(list(statements), add_special_tokens=True, **kw)["input_ids"]
    empty = [i for i, x in enumerate(ids) if len(x) == 0]
    if empty:
        first = statements[empty[0]]
        if first.strip():
            raise TracingBenchError(
                f"the tokenizer turned statement {empty[0]} ({first[:60]!r}) into no tokens: its files are missing "
                "or broken; save the model's own tokenizer with tokenizer.save_pretrained into the model folder"
            )
        raise TracingBenchError(f"statement {empty[0]} ({first!r}) has no tokens: remove empty statements")
    return ids


def _batch_inputs(
    rows: list[list[int]], pad: int, left: bool, device: Any, takes_pos: bool, state: dict[str, Tensor]
) -> dict[str, Any]:
    """The forward's keyword arguments for one batch; ``state`` gets what pooling reads.

    The last real token is found through the mask and the position ids are recomputed from it,
    so left padding gives the numbers of right padding.
    """
    input_ids, mask = pad_rows(rows, pad, left=left)
    width = input_ids.shape[1]
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    last = torch.full_like(lengths, width - 1) if left else lengths - 1
    state.update(last=last.to(device), mask=mask.to(device), lengths=lengths.to(device, torch.float32))
    kwargs: dict[str, Any] = {
        "input_ids": input_ids.to(device),
        "attention_mask": mask.to(device, torch.long),
        "use_cache": False,
    }
    if takes_pos:
        kwargs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0).to(device)
    return kwargs


def harvest(
    model: Any,
    tokenizer: Any,
    statements: Sequence[str],
    settings: HarvestSettings | None = None,
    *,
    layers: Sequence[int] | None = None,
    progress: bool = False,
    max_batch_tokens: int | None = None,
    **options: Any,
) -> Tensor:
    """Block outputs at the last real token (or the mean over real tokens) of each statement.

    Args:
        model: a Hugging Face causal LM (any device/dtype).
        tokenizer: its tokenizer; its ``padding_side`` is used, pad id = ``pad_token_id`` or
            ``eos_token_id`` (padding never changes the result).
        statements: the texts.
        settings: the harvest settings; what applies to a loaded model: ``pooling`` (``last``: the
            last real token; ``mean``: the mean over real tokens, incl. BOS), ``batch_size``
            (statements per forward pass, sorted by length first), ``max_length`` (truncate to
            this many tokens) and ``blocks_attr`` (override of the blocks' path).
        layers: block indices (default: all blocks), in the order of the result's first axis.
        progress: show a tqdm bar on stderr.
        max_batch_tokens: also cap a batch at this many padded tokens (statements x longest);
            on a CPU about 512 keeps the working set in cache (see bench/BENCH.md).
        **options: :class:`~tracing_bench.settings.HarvestSettings` fields given by keyword
            (``harvest(model, tok, statements, pooling="mean", batch_size=8)``).

    Returns:
        float32 CPU tensor ``[len(layers), len(statements), hidden]`` in input order.

    Raises:
        TracingBenchError: bad pooling, batch size or layers; a statement with no tokens.
    """
    s = HarvestSettings.given(settings, **options)
    pooling, batch_size, max_length, blocks_attr = s.pooling, s.batch_size, s.max_length, s.blocks_attr
    blocks, _ = find_blocks(model, blocks_attr)
    layers = _check_layers(layers, len(blocks))
    row = {layer: i for i, layer in enumerate(layers)}
    n = len(statements)
    hidden_size = int(getattr(model.config, "hidden_size", 0) or getattr(model.config, "n_embd", 0) or 0)
    if n == 0:
        return torch.empty(len(layers), 0, hidden_size, dtype=torch.float32)

    ids = _token_ids(tokenizer, statements, max_length)
    pad = pad_id(tokenizer)
    left = getattr(tokenizer, "padding_side", "right") == "left"
    device = next(model.parameters()).device
    takes_pos = "position_ids" in inspect.signature(model.forward).parameters

    out: Tensor | None = None
    state: dict[str, Tensor] = {}

    def on_output(layer: int, h: Tensor) -> None:
        nonlocal out
        if pooling == "last":
            pooled = h[torch.arange(h.shape[0], device=h.device), state["last"]].float()
        else:
            m = state["mask"].unsqueeze(-1)
            pooled = torch.where(m, h.float(), 0.0).sum(1) / state["lengths"].unsqueeze(-1)
        if out is None:
            out = torch.empty(len(layers), n, pooled.shape[-1], dtype=torch.float32)
        out[row[layer], state["index"]] = pooled.to("cpu", torch.float32)

    batches = length_batches([len(x) for x in ids], batch_size, max_batch_tokens)
    bar = tqdm(total=n, desc="harvest", unit="stmt", leave=False) if progress else None
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), record_blocks(model, layers, on_output, blocks_attr=blocks_attr):
            for batch in batches:
                kwargs = _batch_inputs([ids[i] for i in batch], pad, left, device, takes_pos, state)
                state["index"] = torch.tensor(batch, dtype=torch.long)
                try:
                    model(**kwargs)
                except _StopForward:
                    pass
                if bar is not None:
                    bar.update(len(batch))
    finally:
        if was_training:
            model.train()
        if bar is not None:
            bar.close()
    assert out is not None  # the hooks ran (internal invariant, not user input)
    return out
