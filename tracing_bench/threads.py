"""CPU threads that suit the load: how many to use, and using them for a block of work.

torch's intra-op pool and the BLAS libraries that numpy and scipy load (OpenBLAS, MKL) each
start one thread per core. When other jobs already keep cores busy, threads that share a core
wait for each other at every barrier (``bench/BENCH.md``, "threads", measures the cost). So the
work takes the cores that are idle *now*, read from ``/proc/stat`` over a tenth of a second (the
1-minute load average lags a job that has just started by most of a minute), and sets torch and
the BLAS libraries together.

* :func:`default_threads` -- the idle cores (at least 1, at most ``cap``);
* :func:`use_threads` -- a ``with`` block that runs with that many threads and restores the
  previous settings;
* :func:`check_threads` -- validates a ``--threads`` value (one line, exit 2 in the CLI).

>>> with use_threads(default_threads()):          # or use_threads(4) for --threads 4
...     rows = probe_layers(acts, labels, splits)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tracing_bench.errors import TracingBenchError

__all__ = [
    "SMALL_WORK",
    "available_cores",
    "busy_cores",
    "check_threads",
    "default_threads",
    "threads_for_work",
    "use_threads",
]

# a core counts as idle when less than this share of it is busy
_IDLE_SLACK = 0.2


def available_cores() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup (container) quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    try:  # cgroup v2: "max 100000" or "<quota> <period>"
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def _proc_stat() -> tuple[float, float, int] | None:
    """(busy jiffies, total jiffies, number of CPUs) from /proc/stat, or None."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    head = lines[0].split()
    if not head or head[0] != "cpu":
        return None
    values = [float(v) for v in head[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    n_cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    return total - idle, total, max(1, n_cpus)


def busy_cores(interval: float = 0.1) -> float | None:
    """Cores kept busy by other processes right now, measured over ``interval`` seconds.

    Reads ``/proc/stat`` before and after a short sleep and subtracts this process's own CPU
    time, so it sees a job that started a second ago (the load average would not).

    Args:
        interval: seconds between the two readings.

    Returns:
        busy cores (0 on an idle machine, about 1.0 with one CPU-bound job), or ``None`` where
        ``/proc/stat`` does not exist (then use the load average).
    """
    first = _proc_stat()
    if first is None:
        return None
    own0 = sum(os.times()[:2])
    time.sleep(interval)
    second = _proc_stat()
    own1 = sum(os.times()[:2])
    if second is None or second[1] <= first[1]:
        return None
    busy, total, n_cpus = second[0] - first[0], second[1] - first[1], second[2]
    elapsed = total / n_cpus / (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)
    own = (own1 - own0) / max(elapsed, 1e-9)
    return max(0.0, busy / total * n_cpus - own)


def default_threads(cap: int | None = None, *, interval: float = 0.1) -> int:
    """Threads for CPU work when ``--threads`` is not given: the cores idle now.

    ``floor(cores - busy + 0.2)``, at least 1, at most ``cap`` and at most ``OMP_NUM_THREADS``
    when that is set (e.g. by a Ray worker or a test session). On 2 cores: 2 when idle, 1 with
    one competing CPU-bound job.

    Args:
        cap: the most threads the work can use well (e.g. 2 for the tiny pre-training model).
        interval: seconds of the busy-core measurement (:func:`busy_cores`).

    Returns:
        a thread count >= 1.
    """
    cores = available_cores()
    busy = busy_cores(interval)
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except OSError:  # pragma: no cover - no load average either
            busy = 0.0
    n = math.floor(cores - busy + _IDLE_SLACK)
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        n = min(n, int(env))
    if cap is not None:
        n = min(n, int(cap))
    return max(1, n)


def check_threads(value: Any, flag: str = "--threads") -> int | None:
    """A validated thread count (``None`` stays ``None``: choose by the load).

    Raises:
        TracingBenchError: not a whole number >= 1 (one line naming the flag).
    """
    if value is None or value == "":
        return None
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise TracingBenchError(
            f"{flag} {value!r} is invalid: give a whole number of threads >= 1, or leave {flag} out "
            "to use the cores that are idle"
        )
    return int(text)


#: Below this many multiply-adds per call (m^2 d for an nHSIC Gram matrix), more than one thread
#: does not pay: waking a second thread costs more than it saves, even on an idle machine
#: (bench/BENCH.md, "threads").
SMALL_WORK = 4e9


def threads_for_work(n: int | None, work: float) -> int | None:
    """The thread count for one block of probes / nHSIC work of ``work`` multiply-adds per call.

    Work below :data:`SMALL_WORK` runs on one thread whatever ``n`` says: a second thread only
    slows it. Larger work gets ``n`` when given, else several threads only where OpenMP threads
    wait passively (``OMP_WAIT_POLICY=PASSIVE``, which the ``tracing-bench`` command sets before
    torch loads): spinning torch threads and the BLAS pool of numpy/scipy otherwise fight for the
    cores. ``bench/BENCH.md`` ("threads") has the measurements.

    Args:
        n: the count given by the user (``--threads``: the most threads), or ``None`` (choose).
        work: multiply-adds of the largest single operation (e.g. ``m * m * hidden``).

    Returns:
        1 for work below :data:`SMALL_WORK`; else ``n`` when given; else ``None`` (the idle
        cores, :func:`default_threads`) with passive waiting and 1 without.
    """
    if work < SMALL_WORK:
        return 1
    if n is not None:
        return n
    passive = os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"
    return None if passive else 1


@contextmanager
def use_threads(n: int | None, *, cap: int | None = None) -> Iterator[int]:
    """Run a block with ``n`` torch threads and ``n`` BLAS/OpenMP threads; restore afterwards.

    Args:
        n: threads, or ``None`` for :func:`default_threads` (with ``cap``).
        cap: the most threads when ``n`` is ``None``.

    Yields:
        the thread count in use.
    """
    # lazy: torch and threadpoolctl load on first use, so importing threads stays light
    import torch
    from threadpoolctl import threadpool_limits

    threads = check_threads(n)
    if threads is None:
        threads = default_threads(cap)
    before = torch.get_num_threads()
    with threadpool_limits(limits=threads):
        torch.set_num_threads(threads)
        try:
            yield threads
        finally:
            torch.set_num_threads(before)
