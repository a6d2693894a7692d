"""Files: atomic writes (text, bytes, tidy CSV, figures, folders), hashes, a check that outputs can
be written before any work, valid JSON.

An interrupted run never leaves a half-written artefact behind (every write of text, bytes, a
figure or a folder goes through :func:`atomic_write` or :func:`replace_folder`, the only places
that rename over a destination); a command that cannot write its outputs says so in one line
before it loads a model; JSON files never hold bare ``NaN``; every hash of a file or a settings
spec is computed here.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tracing_bench.errors import TracingBenchError


def current_umask() -> int:
    """The process's umask (the permission bits new files and folders do not get)."""
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
        os.chmod(tmp, 0o666 & ~current_umask())
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


def atomic_write_csv(path: str | os.PathLike, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write a tidy CSV with exactly ``columns`` (other keys ignored, ``None`` as empty) atomically.

    Returns:
        ``path``.
    """
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    return atomic_write_text(path, buf.getvalue())


def save_figure(fig: Any, path: str | os.PathLike, *, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG atomically and close it; returns ``path``."""
    # lazy: the CLI imports files at start-up (--help stays fast); matplotlib loads on first use
    import matplotlib.pyplot as plt

    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))
    finally:
        plt.close(fig)


def replace_folder(tmp: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Move the finished folder ``tmp`` to ``final``, replacing a folder already there.

    ``tmp`` must sit in ``final``'s parent folder, so the renames are atomic: a reader sees the
    old folder or the new one, never a mix; the old one is deleted afterwards.

    Returns:
        ``final`` as a :class:`~pathlib.Path`.
    """
    tmp, final = Path(tmp), Path(final)
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".old-{final.name}.", dir=final.parent))
        os.replace(final, old / "x")
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    return final


def private_folder(parent: str | os.PathLike, prefix: str) -> Path:
    """A new temporary folder in ``parent`` with the usual permissions (mkdtemp makes 0700)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(tmp, 0o777 & ~current_umask())
    return tmp


# ------------------------------------------------------------------------------------ hashes
def file_hash(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (``md5`` for the datasets' published sums, else ``sha256``)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_md5(path: str | os.PathLike) -> str:
    """md5 of a file's bytes (the dataset hash every artefact records)."""
    return file_hash(path, "md5")


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes."""
    return file_hash(path, "sha256")


def spec_hash(spec: Any, length: int | None = None) -> str:
    """sha256 of a JSON-able settings spec (keys sorted), optionally cut to ``length`` hex digits.

    The key of every cache and resumable part: equal specs give equal keys on every machine.
    """
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()
    return digest if length is None else digest[:length]


def text_hash(text: str, algorithm: str = "sha256") -> str:
    """Hex digest of a string's UTF-8 bytes."""
    return hashlib.new(algorithm, text.encode("utf-8")).hexdigest()


def pack_bits(bits: object) -> str:
    """Booleans as base64 text, 8 per byte (``numpy.packbits`` order); see :func:`unpack_bits`."""
    # lazy: the CLI imports files at start-up (--help stays fast); numpy loads on first use
    import numpy as np

    arr = np.asarray(bits, dtype=bool).ravel()
    return base64.b64encode(np.packbits(arr).tobytes()).decode("ascii")


def unpack_bits(text: str, n: int) -> Any:
    """The ``n`` booleans packed by :func:`pack_bits`.

    Raises:
        ValueError: ``text`` holds fewer than ``n`` bits or is not base64.
    """
    # lazy: the CLI imports files at start-up (--help stays fast); numpy loads on first use
    import numpy as np

    raw = np.frombuffer(base64.b64decode(text.encode("ascii"), validate=True), dtype=np.uint8)
    if raw.size * 8 < n:
        raise ValueError(f"packed bits hold {raw.size * 8} values, expected {n}")
    return np.unpackbits(raw)[:n].astype(bool)


# ------------------------------------------------------------------- can outputs be written?
def _first_existing(path: Path) -> Path:
    """The deepest existing ancestor of ``path`` (or ``path`` itself)."""
    p = path
    while not os.path.lexists(p) and p.parent != p:
        p = p.parent
    return p


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
    path = Path(path).expanduser()
    target = path if kind == "folder" else path.parent
    if kind == "file" and path.is_dir():
        raise TracingBenchError(f"{flag} {path} is a folder; give a file name (e.g. {path / 'out'})")
    existing = _first_existing(target)
    if not existing.is_dir():
        where = "is a file" if existing == path else f"is under {existing}, which is a file"
        raise TracingBenchError(f"{flag} {path} {where}, not a folder; choose another path or move that file")
    why = _probe_folder(existing)
    if why is not None:
        raise TracingBenchError(f"{flag} {path}: cannot write in {existing} ({why}); choose a writable location")
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


def atomic_write_json(path: str | os.PathLike, obj: object, *, indent: int = 2, **kwargs: Any) -> Path:
    """Write ``obj`` as valid JSON (:func:`dumps_json`: NaN and inf as ``null``) plus a newline,
    atomically; returns ``path``."""
    return atomic_write_text(path, dumps_json(obj, indent=indent, **kwargs) + "\n")


def safe_name(text: str) -> str:
    """``text`` usable in a file name: every run of characters other than ASCII letters, digits,
    ``.``, ``_`` and ``-`` becomes one ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def model_slug(text: str) -> str:
    """A model id, folder or revision as one folder-name part, spelled as lm-eval spells model ids
    (``/`` becomes ``__``): every run of characters other than ASCII letters, digits and ``._+=-``
    becomes ``__``, surrounding ``_`` and blanks are dropped, and an empty result is ``model``.

    >>> model_slug("EleutherAI/pythia-70m")
    'EleutherAI__pythia-70m'
    """
    out = re.sub(r"[^A-Za-z0-9._+=-]+", "__", text.strip()).strip("_")
    return out or "model"


def looks_like_path(name: str) -> bool:
    """Whether a model or judge name is meant as a local path rather than a hub id (``org/name``).

    >>> looks_like_path("./runs/tiny"), looks_like_path("EleutherAI/pythia-70m")
    (True, False)
    """
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name
