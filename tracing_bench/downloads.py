"""Hub downloads of a checkpoint: will it fit on disk before it is fetched.

:func:`check_free_space` asks the hub for the sizes of a revision's files
(``model_info(..., files_metadata=True)``), subtracts what the Hugging Face cache already holds of
that revision, and compares the rest with the free space of the cache's disk
(:func:`shutil.disk_usage`). A checkpoint that cannot fit is one line naming the revision, the
sizes, the cache folder and ``--delete-checkpoints``, before any byte is downloaded. Offline
(``HF_HUB_OFFLINE=1``) and for local folders there is nothing to check.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tracing_bench.checkpoints import Checkpoint
from tracing_bench.errors import TracingBenchError


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def check_free_space(ckpt: Checkpoint) -> int | None:
    """Fail with one line when a hub checkpoint's missing files do not fit in the cache's free space.

    Args:
        ckpt: the checkpoint (a local folder, or offline mode: nothing to check).

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
            "--delete-checkpoints (each checkpoint is removed after use)"
        )
    return need
