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

The activation cache keeps one entry per (checkpoint, dimension, pooling, dtype): ALL blocks for
ALL statements of the dimension, so every split and layer is read from one file. An entry is
``<key>.safetensors`` (tensor ``activations`` [blocks, statements, hidden], float32) plus
``<key>.json`` (provenance). ``key`` = sha256 of the spec: model (absolute path for a folder,
with a fingerprint of its weight files), revision, dimension, dataset md5, protocol, sha256 of
the statements, pooling, dtype, max length, blocks path and package version. The resolved hub
commit, block count and hidden size are known only after loading, so they live in the sidecar
and are checked on every hit (a branch that moved to another commit invalidates the entry).
Writes are atomic; a truncated, unreadable, resized or mismatched entry triggers a
:class:`CacheWarning` and is recomputed, never used. Location: ``cache_dir``, else
``$TRACING_BENCH_CACHE``, else ``~/.cache/tracing-bench``; entries under ``activations/``.
Size: blocks x statements x hidden x 4 bytes (Amber-7B, toxicity: 32 x 6514 x 4096 x 4 = 3.4 GB).

>>> acts = harvest(model, tokenizer, ["The sky is blue.", "Paris is in Peru."])   # [L, 2, D]
>>> acts, prov = cached_activations(Checkpoint("EleutherAI/pythia-160m", "step1000"),
...                                 load_dimension("fairness"))
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import inspect
import json
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from tracing_bench import __version__
from tracing_bench.files import atomic_write as _atomic_write_bytes
from tracing_bench.files import file_sha256, spec_hash, text_hash
from tracing_bench.checkpoints import Checkpoint
from tracing_bench.errors import TracingBenchError
from tracing_bench.loading import find_blocks, load_checkpoint

if TYPE_CHECKING:  # pragma: no cover
    from tracing_bench.dimensions import DimensionData

Pooling = Literal["last", "mean"]
POOLINGS: tuple[str, ...] = ("last", "mean")
CACHE_FORMAT = 1


class CacheWarning(UserWarning):
    """A cache entry was unusable (corrupted or mismatched) and is being recomputed."""


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


def harvest(
    model: Any,
    tokenizer: Any,
    statements: Sequence[str],
    *,
    layers: Sequence[int] | None = None,
    pooling: Pooling = "last",
    batch_size: int = 32,
    progress: bool = False,
    max_length: int | None = None,
    blocks_attr: str | None = None,
    max_batch_tokens: int | None = None,
) -> Tensor:
    """Block outputs at the last real token (or the mean over real tokens) of each statement.

    Args:
        model: a Hugging Face causal LM (any device/dtype).
        tokenizer: its tokenizer; its ``padding_side`` is used, pad id = ``pad_token_id`` or
            ``eos_token_id`` (padding never changes the result).
        statements: the texts.
        layers: block indices (default: all blocks), in the order of the result's first axis.
        pooling: ``last`` (last real token) or ``mean`` (mean over real tokens, incl. BOS).
        batch_size: statements per forward pass (statements are sorted by length first).
        progress: show a tqdm bar on stderr.
        max_length: truncate statements to this many tokens (default: no truncation).
        blocks_attr: override of the blocks' path.
        max_batch_tokens: also cap a batch at this many padded tokens (statements x longest);
            on a CPU about 512 keeps the working set in cache (see bench/BENCH.md).

    Returns:
        float32 CPU tensor ``[len(layers), len(statements), hidden]`` in input order.

    Raises:
        TracingBenchError: bad pooling, batch size or layers; a statement with no tokens.
    """
    if pooling not in POOLINGS:
        raise TracingBenchError(f"--pooling {pooling!r} is not valid: use one of {', '.join(POOLINGS)}")
    if int(batch_size) < 1:
        raise TracingBenchError(f"--batch-size {batch_size} is not valid: use a positive integer")
    blocks, _ = find_blocks(model, blocks_attr)
    layers = _check_layers(layers, len(blocks))
    row = {layer: i for i, layer in enumerate(layers)}
    n = len(statements)
    hidden_size = int(getattr(model.config, "hidden_size", 0) or getattr(model.config, "n_embd", 0) or 0)
    if n == 0:
        return torch.empty(len(layers), 0, hidden_size, dtype=torch.float32)

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
    order = sorted(range(n), key=lambda i: -len(ids[i]))
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
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

    batches: list[list[int]] = []
    for i in order:  # longest first: the first statement of a batch sets its width
        b = batches[-1] if batches else None
        if b is None or len(b) >= batch_size or (
            max_batch_tokens is not None and (len(b) + 1) * len(ids[b[0]]) > max_batch_tokens
        ):
            batches.append([i])
        else:
            b.append(i)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="harvest", unit="stmt", leave=False)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), record_blocks(model, layers, on_output, blocks_attr=blocks_attr):
            for batch in batches:
                lens = [len(ids[i]) for i in batch]
                width = max(lens)
                input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.bool)
                for r, (i, k) in enumerate(zip(batch, lens)):
                    sl = slice(width - k, width) if left else slice(0, k)
                    input_ids[r, sl] = torch.tensor(ids[i], dtype=torch.long)
                    mask[r, sl] = True
                lengths = torch.tensor(lens, dtype=torch.long)
                last = torch.full_like(lengths, width - 1) if left else lengths - 1
                state.update(
                    index=torch.tensor(batch, dtype=torch.long),
                    last=last.to(device),
                    mask=mask.to(device),
                    lengths=lengths.to(device, torch.float32),
                )
                kwargs: dict[str, Any] = {
                    "input_ids": input_ids.to(device),
                    "attention_mask": mask.to(device, torch.long),
                    "use_cache": False,
                }
                if takes_pos:
                    kwargs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0).to(device)
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


# ---------------------------------------------------------------------------------- cache
def default_cache_dir() -> Path:
    """``$TRACING_BENCH_CACHE`` or ``~/.cache/tracing-bench``."""
    return Path(os.environ.get("TRACING_BENCH_CACHE") or Path.home() / ".cache" / "tracing-bench").expanduser()


def _folder_fingerprint(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if p.is_file() and (p.suffix in (".safetensors", ".bin", ".pt") or p.name == "config.json"):
            st = p.stat()
            h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


def _statements_sha256(statements: Sequence[str]) -> str:
    return text_hash("".join(f"{s}\x00" for s in statements))


def activation_spec(
    checkpoint: Checkpoint,
    data: DimensionData,
    *,
    pooling: str = "last",
    dtype: str = "auto",
    max_length: int | None = None,
    blocks_attr: str | None = None,
) -> dict[str, Any]:
    """What identifies a cache entry (its sha256 is the key)."""
    if checkpoint.is_local:
        folder = Path(checkpoint.model).expanduser().resolve()
        if not folder.is_dir():
            raise TracingBenchError(f"checkpoint folder {checkpoint.model} does not exist: check the path")
        model, fingerprint = str(folder), _folder_fingerprint(folder)
    else:
        model, fingerprint = checkpoint.model, None
    return {
        "format": CACHE_FORMAT,
        "model": model,
        "revision": checkpoint.revision,
        "folder_fingerprint": fingerprint,
        "dimension": data.key_name,
        "dataset_md5": data.md5,
        "protocol": data.protocol,
        "statements_sha256": _statements_sha256(data.statements),
        "n_statements": len(data.statements),
        "pooling": pooling,
        "dtype": dtype,
        "max_length": max_length,
        "blocks_attr": blocks_attr,
        "package_version": __version__,
    }


def spec_key(spec: dict[str, Any]) -> str:
    """sha256 of a spec (canonical JSON)."""
    return spec_hash(spec)


class ActivationCache:
    """A folder of activation entries (see the module docstring).

    Args:
        root: cache folder (default :func:`default_cache_dir`); entries go to ``root/activations``.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    def paths(self, key: str) -> tuple[Path, Path]:
        """``(tensor file, sidecar)`` of an entry."""
        base = self.root / "activations"
        return base / f"{key}.safetensors", base / f"{key}.json"

    def load(self, spec: dict[str, Any], *, commit: str | None = None) -> tuple[Tensor, dict[str, Any]] | None:
        """The entry for ``spec``, or ``None`` when absent or unusable (then a CacheWarning is issued).

        Args:
            spec: from :func:`activation_spec`.
            commit: the currently resolved hub commit, if known; an entry made from another
                commit is stale.
        """
        from safetensors.torch import load_file

        key = spec_key(spec)
        tensor_path, meta_path = self.paths(key)
        if not meta_path.exists():
            return None

        def bad(why: str) -> None:
            warnings.warn(
                f"activation cache entry {tensor_path} is unusable ({why}); recomputing it", CacheWarning, stacklevel=3
            )

        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            bad(f"unreadable sidecar: {type(e).__name__}")
            return None
        diff = [k for k, v in spec.items() if meta.get(k) != v]
        if diff:
            bad(f"provenance mismatch in {', '.join(diff)}")
            return None
        if commit and meta.get("resolved_commit") and meta["resolved_commit"] != commit:
            bad(f"made from commit {meta['resolved_commit'][:12]}, the revision now resolves to {commit[:12]}")
            return None
        if not tensor_path.exists():
            bad("tensor file missing")
            return None
        size = tensor_path.stat().st_size
        if size != meta.get("file_bytes"):
            bad(f"file has {size} bytes, expected {meta.get('file_bytes')} (truncated?)")
            return None
        if file_sha256(tensor_path) != meta.get("file_sha256"):
            bad("sha256 of the tensor file does not match the sidecar")
            return None
        try:
            acts = load_file(str(tensor_path))["activations"]
        except Exception as e:  # noqa: BLE001 - any read failure means "recompute"
            bad(f"unreadable safetensors: {type(e).__name__}")
            return None
        want = (meta.get("n_layers"), spec["n_statements"], meta.get("hidden"))
        if tuple(acts.shape) != want or acts.dtype != torch.float32:
            bad(f"tensor has shape {tuple(acts.shape)} {acts.dtype}, expected {want} float32")
            return None
        return acts, meta

    def save(self, spec: dict[str, Any], acts: Tensor, extra: dict[str, Any]) -> dict[str, Any]:
        """Write an entry atomically (tensor first, then the sidecar); returns the sidecar dict."""
        from safetensors.torch import save_file

        key = spec_key(spec)
        tensor_path, meta_path = self.paths(key)
        acts = acts.detach().to("cpu", torch.float32).contiguous()
        _atomic_write_bytes(tensor_path, lambda tmp: save_file({"activations": acts}, tmp, metadata={"key": key}))
        meta = {
            **spec,
            **extra,
            "key": key,
            "n_layers": int(acts.shape[0]),
            "hidden": int(acts.shape[2]),
            "file_bytes": tensor_path.stat().st_size,
            "file_sha256": file_sha256(tensor_path),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }

        def write_meta(tmp: str) -> None:
            Path(tmp).write_text(json.dumps(meta, indent=2, sort_keys=True))

        _atomic_write_bytes(meta_path, write_meta)
        return meta


def lookup_activations(
    checkpoint: Checkpoint,
    data: DimensionData,
    *,
    pooling: Pooling = "last",
    dtype: str = "auto",
    cache_dir: str | Path | None = None,
    max_length: int | None = None,
    blocks_attr: str | None = None,
) -> tuple[Tensor, dict[str, Any]] | None:
    """A usable cache entry without loading the model, or ``None`` (see :func:`cached_activations`)."""
    spec = activation_spec(checkpoint, data, pooling=pooling, dtype=dtype, max_length=max_length, blocks_attr=blocks_attr)
    return ActivationCache(cache_dir).load(spec, commit=checkpoint.resolved_commit())


def cached_activations(
    checkpoint: Checkpoint,
    data: DimensionData,
    *,
    pooling: Pooling = "last",
    dtype: str = "auto",
    device: str = "auto",
    batch_size: int = 32,
    cache_dir: str | Path | None = None,
    model: Any = None,
    tokenizer: Any = None,
    max_length: int | None = None,
    blocks_attr: str | None = None,
    progress: bool = False,
) -> tuple[Tensor, dict[str, Any]]:
    """All blocks' activations for all statements of a dimension, from the cache or computed.

    Args:
        checkpoint: the checkpoint (identifies the entry; loaded only on a miss unless ``model``
            is given).
        data: a loaded dimension (:func:`tracing_bench.dimensions.load_dimension`).
        pooling: ``last`` or ``mean``.
        dtype: dtype to load the model in (``auto|float32|bfloat16|float16``); part of the key.
        device: ``auto|cpu|cuda``.
        batch_size: statements per forward pass.
        cache_dir: cache folder (default ``$TRACING_BENCH_CACHE`` or ``~/.cache/tracing-bench``).
        model, tokenizer: an already loaded model of this checkpoint (loaded in ``dtype``),
            to avoid loading it again.
        max_length: truncate statements to this many tokens.
        blocks_attr: override of the blocks' path.
        progress: tqdm bar while harvesting.

    Returns:
        ``(acts, provenance)``: float32 CPU tensor ``[n_blocks, n_statements, hidden]`` and the
        entry's provenance (model, revision, resolved_commit, step, dataset md5, protocol,
        pooling, dtype, torch_dtype, max_length, package_version, n_statements, n_layers,
        hidden, key, ...).
    """
    if pooling not in POOLINGS:
        raise TracingBenchError(f"--pooling {pooling!r} is not valid: use one of {', '.join(POOLINGS)}")
    spec = activation_spec(checkpoint, data, pooling=pooling, dtype=dtype, max_length=max_length, blocks_attr=blocks_attr)
    cache = ActivationCache(cache_dir)
    hit = cache.load(spec, commit=checkpoint.resolved_commit())
    if hit is not None:
        return hit
    if model is None or tokenizer is None:
        model, tokenizer = load_checkpoint(checkpoint, dtype=dtype, device=device)
    acts = harvest(
        model, tokenizer, data.statements, layers=None, pooling=pooling, batch_size=batch_size,
        progress=progress, max_length=max_length, blocks_attr=blocks_attr,
    )
    _, path = find_blocks(model, blocks_attr)
    extra = {
        "resolved_commit": checkpoint.resolved_commit(),
        "step": checkpoint.step,
        "label": checkpoint.label,
        "dataset_file": data.path.name,
        "torch_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "device": str(next(model.parameters()).device),
        "blocks_path": path,
        "batch_size": batch_size,
        "layer_definition": "output of decoder block l (HF hidden_states[l+1]; before the final norm at the last block)",
    }
    meta = cache.save(spec, acts, extra)
    return acts, meta
