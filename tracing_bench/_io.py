"""File output: atomic writes, a check that outputs can be written before any work, valid JSON.

An interrupted run never leaves a half-written artefact behind; a command that cannot write its
outputs says so in one line before it loads a model; JSON files never hold bare ``NaN``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from typing import Any
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it over ``path``.

    The parent folder is created; the temporary file is removed if ``write`` fails; the file gets
    the usual permissions (``0666 & ~umask``), not the private ones of ``mkstemp``.

    Args:
        path: the destination.
        write: writes the content to the path it is given.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically; returns ``path``."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)

    return atomic_write(path, write)


def pack_bits(bits: object) -> str:
    """Booleans as base64 text, 8 per byte (``numpy.packbits`` order); see :func:`unpack_bits`."""
    import base64

    import numpy as np

    arr = np.asarray(bits, dtype=bool).ravel()
    return base64.b64encode(np.packbits(arr).tobytes()).decode("ascii")


def unpack_bits(text: str, n: int) -> Any:
    """The ``n`` booleans packed by :func:`pack_bits`.

    Raises:
        ValueError: ``text`` holds fewer than ``n`` bits or is not base64.
    """
    import base64

    import numpy as np

    raw = np.frombuffer(base64.b64decode(text.encode("ascii"), validate=True), dtype=np.uint8)
    if raw.size * 8 < n:
        raise ValueError(f"packed bits hold {raw.size * 8} values, expected {n}")
    return np.unpackbits(raw)[:n].astype(bool)


# ------------------------------------------------------------------- can outputs be written?
def _first_existing(path: Path) -> tuple[Path, list[Path]]:
    """The deepest existing ancestor of ``path`` (or ``path`` itself) and the parts below it."""
    missing: list[Path] = []
    p = path
    while not os.path.lexists(p):
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    return p, missing


def _probe_folder(folder: Path) -> str | None:
    """Why a file cannot be created in the existing folder ``folder`` (``None`` when it can)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tracing-bench-write-check.", suffix=".tmp")
    except OSError as e:
        return e.strerror or type(e).__name__
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)
    return None


def check_writable(path: str | os.PathLike, *, flag: str, kind: str = "folder") -> Path:
    """Fail now, with one line, if ``path`` cannot be written; nothing is created.

    Commands call this on every output before loading a model, so that a read-only folder or
    a path under an existing file is reported before any work, not after it.

    Args:
        path: the output (a folder to create or fill, or a file to create or replace).
        flag: the option that named it (``--out``), quoted in the message.
        kind: ``folder`` or ``file``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        TracingBenchError: the path (or a part of it) is an existing file where a folder is
            needed, a folder where a file is needed, or its nearest existing folder does not
            accept new files (read-only file system, permissions).

    >>> check_writable("runs/out", flag="--out")
    PosixPath('runs/out')
    """
    from tracing_bench.errors import TracingBenchError

    path = Path(path).expanduser()
    target = path if kind == "folder" else path.parent
    if kind == "file" and path.is_dir():
        raise TracingBenchError(f"{flag} {path} is a folder; give a file name (e.g. {path / 'out'})")
    existing, _ = _first_existing(target)
    if not existing.is_dir():
        where = "is a file" if existing == path else f"is under {existing}, which is a file"
        raise TracingBenchError(f"{flag} {path} {where}, not a folder; choose another path or move that file")
    why = _probe_folder(existing)
    if why is not None:
        raise TracingBenchError(
            f"{flag} {path}: cannot write in {existing} ({why}); choose a writable location"
        )
    return path


def check_outputs(outputs: list[tuple[str | os.PathLike | None, str, str]]) -> None:
    """:func:`check_writable` on each ``(path, flag, kind)``; ``None`` paths are skipped."""
    for path, flag, kind in outputs:
        if path is not None:
            check_writable(path, flag=flag, kind=kind)


# --------------------------------------------------------------------------------- valid JSON
def finite_json(obj: object) -> object:
    """``obj`` with every NaN or infinite float replaced by ``None`` (JSON ``null``), recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:  # numpy / torch scalars
        return finite_json(obj.item())
    return obj


def dumps_json(obj: object, **kwargs: object) -> str:
    """``json.dumps`` that writes valid JSON: NaN and inf become ``null`` (``allow_nan=False`` guards it).

    >>> dumps_json({"r": float("nan")})
    '{"r": null}'
    """
    return json.dumps(finite_json(obj), allow_nan=False, **kwargs)  # type: ignore[arg-type]
