"""Score the trust tasks on a live model with lm-eval, for :class:`tracing_bench.live.LiveTracer` (optional).

:class:`LiveScorer` loads the trust tasks once (``trust`` or ``trust_<dimension>``, from
:data:`tracing_bench.tasks.TASKS_DIR`) and scores a model object through lm-eval's
``HFLM(pretrained=<model object>)`` with ``limit`` documents per task, zero-shot, lm-eval's
``evaluate`` seeded with ``seed`` (Python, NumPy and torch), as ``steer sweep`` scores. The
tracer calls it inside its restored-state block, so the seeding and lm-eval's eval mode do not
reach training; lm-eval gets a copy of the tokenizer (it may set its padding). The figures are
``score/<task>/<metric>`` with ``.../stderr``; a demo-sized ``limit`` is a look, not a benchmark.

>>> tracer = LiveTracer("runs/live", dimensions="privacy", scorer=LiveScorer("trust_privacy", limit=50))
"""

from __future__ import annotations

import copy
import random
from typing import Any

from tracing_bench.errors import TracingBenchError
from tracing_bench.logs import quiet_lm_eval
from tracing_bench.results import TaskScore, task_scores
from tracing_bench.tasks import TASKS_DIR

__all__ = ["LiveScorer"]


class LiveScorer:
    """The trust tasks, loaded once, scored on a live model (see the module docstring).

    Args:
        tasks: comma list or sequence of trust tasks (``trust``, ``trust_privacy``, ...).
        limit: documents per task (pairs for fairness and robustness).
        batch_size: lm-eval batch size.
        seed: the seed of every lm-eval draw.

    Raises:
        TracingBenchError: a task that is not a trust task, a limit below 1.
    """

    def __init__(
        self,
        tasks: str | list[str] | tuple[str, ...] = "trust",
        *,
        limit: int = 20,
        batch_size: int = 8,
        seed: int = 1234,
    ) -> None:
        # lazy: lm-eval loads on first use, so importing live_scoring stays light
        from lm_eval.tasks import TaskManager

        names = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise TracingBenchError(f"limit {limit!r} is not valid: give a number of documents per task >= 1")
        with quiet_lm_eval():
            manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
            unknown = [t for t in names if not t.startswith("trust") or not manager.match_tasks([t])]
            if unknown or not names:
                raise TracingBenchError(
                    f"live scoring tasks {', '.join(unknown) or '(none)'} are not trust tasks: give trust or "
                    "trust_<dimension> (reliability, toxicity, privacy, fairness, robustness)"
                )
            self.loaded = manager.load(names)
        for task in self.loaded["tasks"].values():
            if task.get_config("num_fewshot") is None:
                task.set_config(key="num_fewshot", value=0)
            task.set_fewshot_seed(seed=seed)
        self.tasks, self.limit, self.batch_size, self.seed = names, limit, batch_size, seed

    def score(self, model: Any, tokenizer: Any) -> list[TaskScore]:
        """Score ``model`` (a Hugging Face causal LM object) on the tasks; seeds every draw first."""
        # lazy: numpy and torch and lm-eval load on first use, so importing live_scoring stays light
        import numpy as np
        import torch
        from lm_eval.evaluator import evaluate
        from lm_eval.models.huggingface import HFLM

        with quiet_lm_eval():
            lm = HFLM(pretrained=model, tokenizer=copy.deepcopy(tokenizer), batch_size=self.batch_size)
            random.seed(self.seed)
            np.random.seed(self.seed)
            torch.manual_seed(self.seed)
            results = evaluate(lm=lm, task_dict=self.loaded, limit=self.limit, log_samples=False, verbosity="WARNING")
        return task_scores(dict(results or {}))

    def figures(self, scores: list[TaskScore]) -> dict[str, float]:
        """``score/<task>/<metric>`` and ``score/<task>/<metric>_stderr`` for the loggers."""
        out: dict[str, float] = {}
        for s in scores:
            out[f"score/{s.task}/{s.metric}"] = float(s.value)
            if s.stderr is not None:
                out[f"score/{s.task}/{s.metric}_stderr"] = float(s.stderr)
        return out

    def describe(self) -> dict[str, Any]:
        """What was scored, for live.json."""
        return {
            "tasks": self.tasks,
            "limit": self.limit,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "how": "lm-eval HFLM(pretrained=<live model>), zero-shot, evaluate() seeded; limit documents per task",
        }
