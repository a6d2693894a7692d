"""Trace while Lightning trains: a Lightning ``Callback`` around :class:`~tracing_bench.live.LiveTracer`.

An optional extra (``pip install tracing-bench[lightning]``): Lightning is imported only when
:func:`trace_callback` is called (``lightning.pytorch``, else ``pytorch_lightning``).

The callback traces the Hugging Face model held by the ``LightningModule`` (its attribute
``model_attr``, ``model`` by default) every ``every`` optimiser steps and/or at ``steps`` (0 =
when training starts), after the optimiser step (``on_train_batch_end``). Lightning saves
``.ckpt`` files, not Hugging Face folders, so checkpoints are named ``<name>@step<N>``. The
headline figures go to every logger of the Lightning ``Trainer`` (``logger.log_metrics`` at
the step); an early warning with ``stop_on_drop`` sets ``trainer.should_stop``.

>>> trainer = lightning.Trainer(max_steps=1000, callbacks=[trace_callback(tracer, tokenizer, every=100)])
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from tracing_bench.errors import TracingBenchError
from tracing_bench.live import LiveResult, LiveTracer

__all__ = ["trace_callback"]


def _lightning() -> Any:
    """``lightning.pytorch``, else ``pytorch_lightning`` (imported by name: both are optional)."""
    for name in ("lightning.pytorch", "pytorch_lightning"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise TracingBenchError(
        "the Lightning callback needs Lightning, which is not installed: pip install 'tracing-bench[lightning]'"
    )


def trace_callback(
    tracer: LiveTracer,
    tokenizer: Any,
    *,
    every: int | None = None,
    steps: Iterable[int] | None = None,
    model_attr: str = "model",
) -> Any:
    """A Lightning ``Callback`` that traces the live model (see the module docstring).

    Args:
        tracer: the :class:`~tracing_bench.live.LiveTracer`.
        tokenizer: the model's tokenizer.
        every: trace every this many optimiser steps.
        steps: trace at these steps (0 = before the first update).
        model_attr: attribute of the ``LightningModule`` that holds the Hugging Face model.

    Returns:
        the callback; its ``results`` list holds each :class:`~tracing_bench.live.LiveResult`.

    Raises:
        TracingBenchError: Lightning is not installed; neither ``every`` nor ``steps`` given.
    """
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise TracingBenchError(f"every={every!r} is not valid: give a number of steps >= 1")
    wanted = frozenset(int(s) for s in steps) if steps is not None else frozenset()
    if every is None and not wanted:
        raise TracingBenchError("the Lightning callback needs a schedule: give every=N or steps=[...]")
    base: Any = _lightning().Callback

    class TraceCallback(base):
        """Traces ``pl_module.<model_attr>`` at the scheduled steps."""

        def __init__(self) -> None:
            self.results: list[LiveResult] = []
            self._done: set[int] = set()

        def _maybe(self, trainer: Any, pl_module: Any) -> None:
            step = int(trainer.global_step)
            if step in self._done or not (step in wanted or (every is not None and step % every == 0)):
                return
            self._done.add(step)
            model = getattr(pl_module, model_attr, None)
            if model is None:
                raise TracingBenchError(
                    f"the LightningModule has no attribute {model_attr!r}: give model_attr= the "
                    "attribute that holds the Hugging Face model"
                )
            result = tracer.on_checkpoint(model, tokenizer, step)
            self.results.append(result)
            if result.traced:
                for logger in trainer.loggers:
                    logger.log_metrics(dict(result.figures), step=step)
            if result.should_stop:
                trainer.should_stop = True

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            if trainer.global_step == 0:
                self._maybe(trainer, pl_module)

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            self._maybe(trainer, pl_module)

    return TraceCallback()
