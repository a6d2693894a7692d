"""Hub downloads of a checkpoint: will it fit on disk, and fetching it with retries.

:func:`check_free_space` asks the hub for the sizes of a revision's files
(``model_info(..., files_metadata=True)``), subtracts what the Hugging Face cache already holds of
that revision, and compares the rest with the free space of the cache's disk
(:func:`shutil.disk_usage`). A checkpoint that cannot fit is one line naming the revision, the
sizes, the cache folder and ``--delete-checkpoints``, before any byte is downloaded. Offline
(``HF_HUB_OFFLINE=1``) and for local folders there is nothing to check.

:func:`download_checkpoint` fetches what ``from_pretrained`` reads of a revision (the top-level
files, with one weights format: safetensors when the revision has them, else
``pytorch_model*.bin``) into the normal Hugging Face cache with ``snapshot_download``, so the
later ``from_pretrained(model, revision=...)`` finds it there. A failed or cut transfer is tried
again (:data:`ATTEMPTS` attempts, :data:`BACKOFF_S` doubling between them); ``huggingface_hub``
resumes a cut file within one attempt with a range request, and a new attempt keeps the files
already complete and fetches the rest. A revision that still fails, or that the hub says does
not exist, is :class:`DownloadError`: one line naming the revision and the fix. A checkpoint that
cannot fit, or a full disk, is a plain :class:`~tracing_bench.errors.TracingBenchError`: the
next revision would not fit either.
"""

from __future__ import annotations

import errno
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tracing_bench.checkpoints import Checkpoint
from tracing_bench.errors import TracingBenchError, first_line

log = logging.getLogger(__name__)

#: Attempts at one revision's download before it is reported as failed.
ATTEMPTS = 3
#: Seconds before the second attempt; doubled before each later one.
BACKOFF_S = 5.0
#: File endings of model weights: only one format of them is fetched.
WEIGHT_ENDINGS = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".gguf", ".tflite")


class DownloadError(TracingBenchError):
    """A revision that could not be downloaded (one line naming it); a series goes on without it."""


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def check_free_space(ckpt: Checkpoint, info: Any = None) -> int | None:
    """Fail with one line when a hub checkpoint's missing files do not fit in the cache's free space.

    Args:
        ckpt: the checkpoint (a local folder, or offline mode: nothing to check).
        info: the revision's ``model_info(..., files_metadata=True)`` when already asked.

    Returns:
        The bytes still to download, or ``None`` when nothing was checked (local, offline, or
        the hub could not be asked: the download itself then reports the problem).

    Raises:
        TracingBenchError: the revision does not fit (names ``--delete-checkpoints`` and the cache).
    """
    # lazy: huggingface_hub loads on first use, so importing downloads stays light
    import huggingface_hub.constants as c

    if ckpt.is_local or c.HF_HUB_OFFLINE:
        return None
    from huggingface_hub import HfApi

    if info is None:
        try:
            info = HfApi(endpoint=c.ENDPOINT).model_info(ckpt.model, revision=ckpt.revision, files_metadata=True)
        except Exception:
            return None
    cache = Path(c.HF_HUB_CACHE)
    snapshot = cache / ("models--" + ckpt.model.replace("/", "--")) / "snapshots" / str(info.sha)
    need = sum(int(s.size or 0) for s in info.siblings or [] if not (snapshot / s.rfilename).exists())
    probe = cache
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need > free:
        raise TracingBenchError(
            f"revision {ckpt.revision or 'main'} of {ckpt.model} needs {_gb(need)} and the Hugging Face cache "
            f"{cache} has {_gb(free)} free: free space there, point HF_HUB_CACHE at a larger disk, or trace with "
            "--delete-checkpoints (each checkpoint is removed after use; add --no-prefetch to keep one on disk, "
            "not two)"
        )
    return need


def files_to_fetch(names: list[str]) -> list[str]:
    """The files of a revision that ``from_pretrained`` reads: top-level ones, one weights format.

    Safetensors weights when the revision has them, else ``pytorch_model*.bin``; other weight
    files (a second format, ``original/*.pth``, ONNX, GGUF) and sub-folders are left out.
    """
    top = [n for n in names if "/" not in n]
    safetensors = [n for n in top if n.endswith(".safetensors")]
    weights = safetensors or [n for n in top if n.startswith("pytorch_model") and n.endswith(".bin")]
    return [n for n in top if not n.endswith(WEIGHT_ENDINGS)] + weights


def _permanent(e: BaseException) -> bool:
    """Whether the hub said the repository, revision or file does not exist (trying again cannot help)."""
    from huggingface_hub.errors import (
        DisabledRepoError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    return isinstance(e, (RepositoryNotFoundError, RevisionNotFoundError, RemoteEntryNotFoundError, DisabledRepoError))


def download_checkpoint(
    ckpt: Checkpoint,
    *,
    attempts: int | None = None,
    backoff: float | None = None,
    quiet: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> Path | None:
    """Fetch a hub revision into the Hugging Face cache, retried (see the module docstring).

    Args:
        ckpt: the checkpoint; a local folder or offline mode: nothing to do.
        attempts: tries before giving up (default :data:`ATTEMPTS`).
        backoff: seconds before the second try, doubled before each later one (default :data:`BACKOFF_S`).
        quiet: no download bars (a download in the background).
        sleep: how to wait between attempts.

    Returns:
        The revision's snapshot folder in the cache, or ``None`` when nothing was fetched.

    Raises:
        DownloadError: the revision does not exist, or every attempt failed (one line naming it).
        TracingBenchError: it cannot fit on disk, or the disk filled up
            (:func:`check_free_space`).
    """
    import huggingface_hub.constants as c

    if ckpt.is_local or c.HF_HUB_OFFLINE:
        return None
    from huggingface_hub import HfApi, snapshot_download
    from tqdm.auto import tqdm

    class Silent(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "disable": True})

    attempts = ATTEMPTS if attempts is None else max(1, attempts)
    wait = BACKOFF_S if backoff is None else backoff
    what = f"revision {ckpt.revision or 'main'} of {ckpt.model}"
    error: BaseException | None = None
    for attempt in range(1, attempts + 1):
        try:
            info = HfApi(endpoint=c.ENDPOINT).model_info(ckpt.model, revision=ckpt.revision, files_metadata=True)
            check_free_space(ckpt, info)
            names = files_to_fetch([s.rfilename for s in info.siblings or []])
            folder = snapshot_download(
                ckpt.model, revision=ckpt.revision, allow_patterns=names, tqdm_class=Silent if quiet else None
            )
            return Path(folder)
        except TracingBenchError:
            raise
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise TracingBenchError(
                    f"the disk of the Hugging Face cache {c.HF_HUB_CACHE} filled up while downloading {what}: "
                    "free space there, point HF_HUB_CACHE at a larger disk, or trace with --delete-checkpoints"
                ) from e
            error = e
        except Exception as e:
            error = e
        if _permanent(error):
            raise DownloadError(
                f"{what} could not be downloaded: the hub answered {type(error).__name__} "
                f"({first_line(error, limit=120)}); check the revision's name (huggingface_hub.list_repo_refs)"
            ) from error
        if attempt < attempts:
            log.info("download of %s failed (%s); attempt %d of %d in %.0f s", what, error, attempt + 1, attempts, wait)
            sleep(wait)
            wait *= 2
    assert error is not None
    raise DownloadError(
        f"{what} could not be downloaded after {attempts} attempts ({type(error).__name__}: "
        f"{first_line(error, limit=120)}): check the connection to {c.ENDPOINT} and run the same command again "
        "(checkpoints already traced are kept)"
    ) from error
