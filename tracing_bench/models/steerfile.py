"""Steering files: lm-eval's ``steered`` .pt format, written and read without running any pickled code.

A steering file is lm-eval's own ``steered`` format, a ``.pt`` file loadable with
``torch.load(path, weights_only=True)``::

    {hookpoint: {"steering_vector": Tensor[hidden], "steering_coefficient": float,
                 "action": "add", "bias": None, "head_index": None}}

plus a JSON sidecar ``<file>.json`` (:func:`sidecar_path`) with the provenance (source model,
revision, dimension, layer, scale, dataset md5, package version, sha256 of the vector).
:func:`save_steer_file` is the writer (entries from :func:`steer_entry`), :func:`read_sidecar`
reads the sidecar, and :func:`load_steer_file` is the only reader of the .pt file:
``weights_only=True`` rebuilds tensors, numbers, strings and containers and refuses anything
else, and every entry is validated (a tensor vector of one dimension, finite values, an action
the model supports).

>>> config = load_steer_file("vec/rel_l16.pt")      # {hookpoint: {"steering_vector": ..., ...}}
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tracing_bench.errors import TracingBenchError, first_line
from tracing_bench.files import atomic_write, atomic_write_json


def vector_sha256(vector: Tensor) -> str:
    """sha256 of the vector's float32 little-endian bytes (independent of the file it sits in).

    Args:
        vector: a 1-D tensor.

    Returns:
        64 hex digits.
    """
    arr = vector.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4", copy=False)
    return hashlib.sha256(arr.tobytes()).hexdigest()


def sidecar_path(path: Path) -> Path:
    """``v.pt`` -> ``v.pt.json``."""
    return path.with_name(path.name + ".json")


def steer_entry(vector: Tensor, coefficient: float) -> dict[str, Any]:
    """One hookpoint's entry of a steering file: add ``coefficient * vector`` to the whole residual."""
    return {
        "steering_vector": vector.clone(),
        "steering_coefficient": coefficient,
        "action": "add",
        "bias": None,
        "head_index": None,
    }


def save_steer_file(path: str | os.PathLike, config: dict[str, dict[str, Any]], metadata: dict[str, Any]) -> Path:
    """Write ``path`` (lm-eval ``steered`` .pt, ``{hookpoint: entry}``) and its JSON sidecar, atomically.

    Args:
        path: file name ending in ``.pt`` or ``.pth`` (lm-eval dispatches on the suffix).
        config: ``{hookpoint: steer_entry(...)}``.
        metadata: the sidecar's content (provenance).

    Returns:
        the path written.
    """
    path = Path(path)
    if path.suffix not in (".pt", ".pth"):
        raise TracingBenchError(f"--out {path} must end in .pt or .pth (lm-eval's steered model reads only those)")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save(config, tmp))
    atomic_write_json(sidecar_path(path), metadata, sort_keys=True)
    return path


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON sidecar of a steering file (``{}`` when there is none)."""
    side = sidecar_path(Path(path))
    return dict(json.loads(side.read_text())) if side.exists() else {}


def unpickling_refused(path: Path, err: BaseException) -> TracingBenchError:
    """The one-line error for a file that ``torch.load(weights_only=True)`` refuses."""
    first = first_line(err)
    return TracingBenchError(
        f"{path} cannot be loaded with torch.load(weights_only=True) ({first[:120]}); it holds "
        "pickled objects besides tensors and numbers, which tracing-bench refuses to run; re-save it "
        "as {hookpoint: {'steering_vector': Tensor, 'steering_coefficient': float, 'action': 'add'}} "
        "(e.g. with `tracing-bench steer extract`)"
    )


def load_steer_file(path: str | os.PathLike, *, stock: bool = False) -> dict[str, dict[str, Any]]:
    """Load and validate an lm-eval ``steered`` .pt file with ``weights_only=True``.

    Nothing pickled in the file is ever run: ``torch.load(weights_only=True)`` only rebuilds
    tensors, numbers, strings and containers, and refuses anything else.

    Args:
        path: the file.
        stock: validate for lm-eval's stock ``steered`` model, which also supports the ``clamp``
            action, ``bias`` and ``head_index``; by default only what ``trust-steered`` supports
            (``add`` of a whole-residual vector).

    Returns:
        ``{hookpoint: {"steering_vector": Tensor, "steering_coefficient": float, "action": "add",
        "bias": None, "head_index": None}}``.

    Raises:
        TracingBenchError: missing file, a file that needs ``weights_only=False``, a malformed
            entry, an unsupported action, NaN/inf in a vector.
    """
    path = Path(path)
    if not path.is_file():
        raise TracingBenchError(f"steering file {path} does not exist; create one with `tracing-bench steer extract`")
    try:
        config = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        raise unpickling_refused(path, e) from None
    except Exception as e:
        raise TracingBenchError(
            f"{path} is not a readable torch file ({type(e).__name__}); expected lm-eval's steered .pt format"
        ) from None
    if not isinstance(config, dict) or not config:
        raise TracingBenchError(
            f"{path} holds a {type(config).__name__}, not a non-empty dict {{hookpoint: {{'steering_vector': ...}}}}"
            " (lm-eval's steered format)"
        )
    actions = ("add", "clamp") if stock else ("add",)
    for hookpoint, entry in config.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("steering_vector"), Tensor):
            raise TracingBenchError(
                f"{path}: entry {hookpoint!r} has no tensor 'steering_vector'; "
                "expected {hookpoint: {'steering_vector': Tensor, 'steering_coefficient': float, 'action': 'add'}}"
            )
        action = entry.get("action", "add") if not stock else entry.get("action")
        if action not in actions:
            raise TracingBenchError(
                f"{path}: entry {hookpoint!r} has action {action!r}; "
                + (
                    "lm-eval's steered model supports 'add' and 'clamp'"
                    if stock
                    else "trust-steered supports only 'add' (use lm-eval's stock `steered` model for 'clamp')"
                )
            )
        if not stock and (entry.get("head_index") is not None or entry.get("bias") is not None):
            raise TracingBenchError(
                f"{path}: entry {hookpoint!r} sets head_index or bias; trust-steered adds whole-residual "
                "vectors only (set both to None)"
            )
        vec = entry["steering_vector"]
        if vec.ndim != 1:
            raise TracingBenchError(
                f"{path}: steering_vector of {hookpoint!r} has shape {tuple(vec.shape)}; expected [hidden]"
            )
        if not torch.isfinite(vec).all():
            raise TracingBenchError(
                f"{path}: steering_vector of {hookpoint!r} contains NaN or inf; re-extract the vector"
            )
        coef = entry.get("steering_coefficient", 1.0)
        try:
            coef_f = float(coef)
        except (TypeError, ValueError):
            coef_f = float("nan")
        if not math.isfinite(coef_f):
            raise TracingBenchError(
                f"{path}: steering_coefficient of {hookpoint!r} is {coef!r}; a finite number is required"
            )
    return config
