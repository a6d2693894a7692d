"""A series of hub checkpoints at the pace of its slowest resource: download k+1 while k is traced.

:func:`run_series` runs a per-checkpoint step (``work``: load, harvest, probe, write the parts)
over a series in this process. With ``prefetch`` the next hub checkpoint downloads in a background
thread (:func:`tracing_bench.downloads.download_checkpoint`, into the normal Hugging Face cache)
while the current one is traced, so the series takes about the larger of its total download and
total compute time instead of their sum; without it each download runs in the foreground just
before its checkpoint. Only the download runs in the background: loading and compute stay in the
calling thread, where ``from_pretrained(model, revision=...)`` finds the files in the cache.

At most one checkpoint is fetched ahead. With ``delete`` each hub checkpoint is removed from the
cache once its parts are written and no download is in flight (with prefetch: as soon as the next
one has arrived, so a file the two revisions share is never deleted under a download), so at most
two checkpoints are on disk at any moment with prefetch (the one traced and the next) and one
without. A checkpoint whose parts all exist, or whose activations are all cached, is not
downloaded (``needs_download``): a resumed series fetches only what it still needs.

A revision that cannot be downloaded after its retries is one line (``report``) and the series goes
on; :func:`run_series` returns the failed revisions so that the caller names them in its summary
and exit status. Timings: ``download`` (a foreground stage) without prefetch; with it, ``wait``
(the foreground stage spent waiting for a download that is behind) plus ``download`` seconds done
in the background (:meth:`tracing_bench.timings.Timings.background`, not a stage: they overlap
the stages, which alone add up to the wall time); ``delete`` and ``plan`` (the resume check)
are stages too.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracing_bench.checkpoints import Checkpoint, delete_from_hf_cache
from tracing_bench.downloads import DownloadError, download_checkpoint
from tracing_bench.timings import active, stage
from tracing_bench.timings import checkpoint as timed_checkpoint


@dataclass
class Fetch:
    """One download in a background thread: its checkpoint, its seconds and its outcome."""

    ckpt: Checkpoint
    done: threading.Event = field(default_factory=threading.Event)
    seconds: float = 0.0
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def start(self, fetch: Callable[..., Any]) -> Fetch:
        """Start ``fetch(ckpt, quiet=True)`` in a daemon thread."""

        def run() -> None:
            began = time.perf_counter()
            try:
                fetch(self.ckpt, quiet=True)
            except BaseException as e:  # handed to the main thread, which decides
                self.error = e
            finally:
                self.seconds = time.perf_counter() - began
                self.done.set()

        self.thread = threading.Thread(target=run, name=f"prefetch-{self.ckpt.label}", daemon=True)
        self.thread.start()
        return self

    def result(self) -> None:
        """Wait for the download; raise what it raised."""
        self.done.wait()
        if self.error is not None:
            raise self.error


def _report(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def run_series(
    ckpts: Sequence[Checkpoint],
    work: Callable[[Checkpoint], Any],
    *,
    prefetch: bool = True,
    delete: bool = False,
    needs_download: Callable[[Checkpoint], bool] = lambda c: True,
    resumed: Callable[[Checkpoint], bool] = lambda c: False,
    progress: Any = None,
    report: Callable[[str], None] | None = None,
    fetch: Callable[..., Any] = download_checkpoint,
) -> dict[str, str]:
    """Run ``work`` on every checkpoint in order, downloading hub checkpoints first (see the module docstring).

    Args:
        ckpts: the series.
        work: the per-checkpoint step (writes its parts); it must not delete the checkpoint.
        prefetch: download the next hub checkpoint in the background while this one is traced.
        delete: remove each hub checkpoint from the Hugging Face cache after its ``work``.
        needs_download: whether a checkpoint's ``work`` will load its model (else it is not fetched).
        resumed: whether a checkpoint's parts are all written already (its ``work`` only reads them:
            the progress line's estimate leaves it out of the mean).
        progress: a :class:`tracing_bench.progress.SeriesProgress` (``begin`` / ``end`` / ``note``), or ``None``.
        report: where a failed revision's line goes (default: the progress line's ``note``, else stderr).
        fetch: the download (:func:`tracing_bench.downloads.download_checkpoint`; tests replace it).

    Returns:
        ``{label: one line}`` for each revision that could not be downloaded; the others are done.

    Raises:
        TracingBenchError: what ``work`` raises, or a download that no later revision can avoid
            (the disk is full); the checkpoints before it are done.
    """
    say = report or (progress.note if progress is not None else _report)
    failed: dict[str, str] = {}
    ahead: Fetch | None = None
    to_delete: Checkpoint | None = None  # traced, deleted once no download is in flight

    def wanted(ckpt: Checkpoint) -> bool:
        import huggingface_hub.constants as hub

        if ckpt.is_local or hub.HF_HUB_OFFLINE:  # offline: from_pretrained reads the cache as it is
            return False
        with stage("plan"):
            return needs_download(ckpt)

    def drop(ckpt: Checkpoint | None) -> None:
        if delete and ckpt is not None:
            with stage("delete"):
                delete_from_hf_cache(ckpt)

    for i, ckpt in enumerate(ckpts):
        began = time.perf_counter()
        if progress is not None:
            progress.begin(i, ckpt.label)
        ok, was_done = True, progress is not None and resumed(ckpt)
        with timed_checkpoint(ckpt.label):
            try:
                current = None
                if ahead is not None and ahead.ckpt == ckpt:
                    current, ahead = ahead, None
                elif wanted(ckpt):
                    if prefetch:
                        current = Fetch(ckpt).start(fetch)
                    else:
                        with stage("download"):
                            fetch(ckpt, quiet=False)
                if current is not None:
                    with stage("wait"):
                        current.done.wait()
                    timings = active()
                    if timings is not None:
                        timings.background(ckpt.label, "download", current.seconds)
                    current.result()
            except DownloadError as e:
                ok = False
                failed[ckpt.label] = str(e)
                say(f"skipped: {e}")
            drop(to_delete)  # no download is in flight now
            to_delete = None
            if prefetch and i + 1 < len(ckpts) and wanted(ckpts[i + 1]):
                ahead = Fetch(ckpts[i + 1]).start(fetch)
            if ok:
                work(ckpt)
            if not ckpt.is_local:
                if ahead is not None:
                    to_delete = ckpt  # once the next one has arrived
                else:
                    drop(ckpt)
        if progress is not None:
            progress.end(time.perf_counter() - began, completed=ok, resumed=was_done)
    drop(to_delete)
    return failed
