"""``trust-hf``: lm-eval's HFLM with data parallelism under ``accelerate launch`` on any device.

lm-eval's HFLM creates an ``Accelerator`` and keeps it when ``accelerate launch`` started more
than one process, but it sets ``rank`` / ``world_size`` from it only when it counts more than
one GPU: on CPU processes (``accelerate launch --cpu --num_processes N``) every process keeps
``world_size = 1`` and scores *every* request, N times the work for the same result.
:class:`DataParallelMixin` fixes that after ``HFLM.__init__``: with an accelerator of more than one
process and ``world_size`` still 1, ``rank`` / ``world_size`` come from the accelerator, so the
evaluator gives each process its share of the requests and gathers the results on rank 0
(over gloo on CPU). On GPUs, where HFLM already does this, it changes nothing.

``trust-hf`` = HFLM + the mixin; ``trust-steered`` (:mod:`tracing_bench.models.steered`) has it too.

    accelerate launch --cpu --num_processes 2 -m tracing_bench eval --model trust-hf \\
        --model_args pretrained=EleutherAI/pythia-70m --tasks trust --limit 100
"""

from __future__ import annotations

import sys
from typing import Any

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM


def _say(message: str) -> None:
    """One line on stderr (lm-eval configures its logging only after the evaluation)."""
    print(f"tracing-bench: {message}", file=sys.stderr, flush=True)


class DataParallelMixin:
    """Take rank and world size from ``self.accelerator`` when HFLM left them at 0 / 1.

    Call :meth:`_init_data_parallel` right after ``HFLM.__init__``. Counts the requests this
    process scores (``requests_scored``); with more than one process, says on stderr how many
    each process scores, per request type.
    """

    requests_scored: dict[str, int]

    def _init_data_parallel(self) -> None:
        self.requests_scored = {}
        accelerator = getattr(self, "accelerator", None)
        if accelerator is None or accelerator.num_processes <= 1:
            return
        if getattr(self, "_world_size", 1) == 1:
            self._rank = accelerator.process_index
            self._world_size = accelerator.num_processes
        _say(f"data parallel: process {self._rank} of {self._world_size} on {accelerator.device}")

    def _count(self, kind: str, requests: list[Any]) -> None:
        self.requests_scored[kind] = self.requests_scored.get(kind, 0) + len(requests)
        if getattr(self, "_world_size", 1) > 1:
            _say(f"process {self._rank} of {self._world_size} scores {len(requests)} {kind} requests")

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[Any]:
        self._count("loglikelihood", requests)
        return super().loglikelihood(requests, disable_tqdm=disable_tqdm)  # type: ignore[misc]

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[Any]:
        self._count("loglikelihood_rolling", requests)
        return super().loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)  # type: ignore[misc]

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[Any]:
        self._count("generate_until", requests)
        return super().generate_until(requests, disable_tqdm=disable_tqdm)  # type: ignore[misc]


@register_model("trust-hf")
class TrustHFLM(DataParallelMixin, HFLM):
    """lm-eval's ``hf`` model, data-parallel under ``accelerate launch`` on CPU as on GPU."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_data_parallel()
