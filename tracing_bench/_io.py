"""Atomic file writes: an interrupted run never leaves a half-written artefact behind."""

from __future__ import annotations

import contextlib
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
