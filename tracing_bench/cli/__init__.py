"""The ``tracing-bench`` command line: a thin click group, one library call per command.

Errors in the user's input reach the user as one line on stderr (``error: ...``) and exit
status 2, never a traceback (:class:`tracing_bench.cli.group.Group`). Heavy imports (torch,
transformers, lm-eval) happen inside the commands so that ``--help`` stays fast. One module per
command group: :mod:`.data`, :mod:`.demo` (pretrain, demo), :mod:`.evaluation` (tasks-path, eval,
eval-series), :mod:`.trace`, :mod:`.steer`, :mod:`.compare` (leaderboard, gate, report),
:mod:`.real` (real-model).
"""

import os

# OpenMP threads (torch's pool) that spin after each parallel region keep a core busy while the
# BLAS pool of numpy/scipy wants it: on 2 cores, alternating small torch and scipy calls ran 18x
# slower with 2 threads each than with 1 (bench/BENCH.md, "threads"). Passive waiting must be set
# before torch is imported; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from tracing_bench.cli import compare, data, demo, evaluation, real, steer, trace  # noqa: F401  (register the commands)
from tracing_bench.cli.group import main

__all__ = ["main"]
