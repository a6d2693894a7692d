"""The activation cache: all blocks' activations of a dimension, per checkpoint, stored once.

The cache keeps one entry per (checkpoint, dimension, pooling, dtype): ALL blocks for ALL
statements of the dimension, so every split and layer is read from one file. An entry is
``<key>.safetensors`` (tensor ``activations`` [blocks, statements, hidden], float32) plus
``<key>.json`` (provenance). ``key`` = sha256 of the spec (:func:`activation_spec`): model
(absolute path for a folder, with a fingerprint of its weight files), revision, dimension,
dataset md5, protocol, sha256 of the statements, pooling, dtype, max length, blocks path and
package version. The resolved hub commit, block count and hidden size are known only after
loading, so they live in the sidecar and are checked on every hit (a branch that moved to
another commit invalidates the entry). Writes are atomic; a truncated, unreadable, resized or
mismatched entry triggers a :class:`CacheWarning` and is recomputed, never used. Location:
``cache_dir``, else ``$TRACING_BENCH_CACHE``, else ``~/.cache/tracing-bench``; entries under
``activations/``. Size: blocks x statements x hidden x 4 bytes (Amber-7B, toxicity:
32 x 6514 x 4096 x 4 = 3.4 GB).

>>> acts, prov = cached_activations(Checkpoint("EleutherAI/pythia-160m", "step1000"),
...                                 load_dimension("fairness"))
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tracing_bench import __version__
from tracing_bench.checkpoints import Checkpoint
from tracing_bench.dimensions import DimensionData
from tracing_bench.errors import TracingBenchError
from tracing_bench.files import atomic_write, atomic_write_json, file_sha256, spec_hash, text_hash
from tracing_bench.harvest import harvest
from tracing_bench.loading import find_blocks, load_checkpoint
from tracing_bench.settings import HarvestSettings

CACHE_FORMAT = 1


class CacheWarning(UserWarning):
    """A cache entry was unusable (corrupted or mismatched) and is being recomputed."""


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


def activation_spec(checkpoint: Checkpoint, data: DimensionData, settings: HarvestSettings) -> dict[str, Any]:
    """What identifies a cache entry (its sha256 is the key): the checkpoint, the statements and
    the harvest settings that change the numbers (pooling, dtype, max length, blocks path)."""
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
        "pooling": settings.pooling,
        "dtype": settings.dtype,
        "max_length": settings.max_length,
        "blocks_attr": settings.blocks_attr,
        "package_version": __version__,
    }


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
        # lazy: safetensors loads on first use, so importing cache stays light
        from safetensors.torch import load_file

        key = spec_hash(spec)
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
        except Exception as e:
            bad(f"unreadable safetensors: {type(e).__name__}")
            return None
        want = (meta.get("n_layers"), spec["n_statements"], meta.get("hidden"))
        if tuple(acts.shape) != want or acts.dtype != torch.float32:
            bad(f"tensor has shape {tuple(acts.shape)} {acts.dtype}, expected {want} float32")
            return None
        return acts, meta

    def has(self, spec: dict[str, Any], *, commit: str | None = None) -> bool:
        """Whether :meth:`load` would likely find the entry: a matching sidecar and a tensor file of its size.

        Neither hashes nor reads the tensor (a trace asks this of every checkpoint before deciding
        to download it); :meth:`load` still checks everything.
        """
        tensor_path, meta_path = self.paths(spec_hash(spec))
        try:
            meta = json.loads(meta_path.read_text())
            size = tensor_path.stat().st_size
        except (OSError, ValueError):
            return False
        stale = bool(commit and meta.get("resolved_commit") and meta["resolved_commit"] != commit)
        return all(meta.get(k) == v for k, v in spec.items()) and not stale and size == meta.get("file_bytes")

    def save(self, spec: dict[str, Any], acts: Tensor, extra: dict[str, Any]) -> dict[str, Any]:
        """Write an entry atomically (tensor first, then the sidecar); returns the sidecar dict."""
        # lazy: safetensors loads on first use, so importing cache stays light
        from safetensors.torch import save_file

        key = spec_hash(spec)
        tensor_path, meta_path = self.paths(key)
        acts = acts.detach().to("cpu", torch.float32).contiguous()
        atomic_write(tensor_path, lambda tmp: save_file({"activations": acts}, tmp, metadata={"key": key}))
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

        atomic_write_json(meta_path, meta, sort_keys=True)
        return meta


def lookup_activations(
    checkpoint: Checkpoint, data: DimensionData, settings: HarvestSettings | None = None, **options: Any
) -> tuple[Tensor, dict[str, Any]] | None:
    """A usable cache entry without loading the model, or ``None`` (see :func:`cached_activations`)."""
    settings = HarvestSettings.given(settings, **options)
    spec = activation_spec(checkpoint, data, settings)
    return ActivationCache(settings.cache_dir).load(spec, commit=checkpoint.resolved_commit())


def cached_activations(
    checkpoint: Checkpoint,
    data: DimensionData,
    settings: HarvestSettings | None = None,
    *,
    model: Any = None,
    tokenizer: Any = None,
    progress: bool = False,
    **options: Any,
) -> tuple[Tensor, dict[str, Any]]:
    """All blocks' activations for all statements of a dimension, from the cache or computed.

    Args:
        checkpoint: the checkpoint (identifies the entry; loaded only on a miss unless ``model``
            is given).
        data: a loaded dimension (:func:`tracing_bench.dimensions.load_dimension`).
        settings: pooling, dtype (the model is loaded in it), device, batch size, max length,
            blocks path and cache folder (:class:`~tracing_bench.settings.HarvestSettings`);
            pooling, dtype, max length and blocks path are part of the key.
        model, tokenizer: an already loaded model of this checkpoint (loaded in ``dtype``),
            to avoid loading it again.
        progress: tqdm bar while harvesting.
        **options: harvest settings given by keyword (``dtype="float32", cache_dir=...``).

    Returns:
        ``(acts, provenance)``: float32 CPU tensor ``[n_blocks, n_statements, hidden]`` and the
        entry's provenance (model, revision, resolved_commit, step, dataset md5, protocol,
        pooling, dtype, torch_dtype, max_length, package_version, n_statements, n_layers,
        hidden, key, ...).
    """
    settings = HarvestSettings.given(settings, **options)
    spec = activation_spec(checkpoint, data, settings)
    cache = ActivationCache(settings.cache_dir)
    hit = cache.load(spec, commit=checkpoint.resolved_commit())
    if hit is not None:
        return hit
    if model is None or tokenizer is None:
        model, tokenizer = load_checkpoint(checkpoint, dtype=settings.dtype, device=settings.device)
    acts = harvest(model, tokenizer, data.statements, settings, progress=progress)
    _, path = find_blocks(model, settings.blocks_attr)
    extra = {
        "resolved_commit": checkpoint.resolved_commit(),
        "step": checkpoint.step,
        "label": checkpoint.label,
        "dataset_file": data.path.name,
        "torch_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "device": str(next(model.parameters()).device),
        "blocks_path": path,
        "batch_size": settings.batch_size,
        "layer_definition": (
            "output of decoder block l (HF hidden_states[l+1]; before the final norm at the last block)"
        ),
    }
    meta = cache.save(spec, acts, extra)
    return acts, meta
