"""Trace while a transformers ``Trainer`` trains: a ``TrainerCallback`` around :class:`~tracing_bench.live.LiveTracer`.

:class:`TraceCallback` calls :meth:`LiveTracer.on_checkpoint` on the live model

* at every save (``at_save=True``, the default when no schedule is given): after the Trainer
  wrote ``<output_dir>/checkpoint-<N>``, so the checkpoint is named as ``tracing-bench trace``
  names that folder and a trace of the saved checkpoints afterwards finds the parts done;
* and/or on a schedule: ``every=N`` steps, or explicit ``steps`` (log-spaced like Pythia's:
  ``steps=default_save_steps(max_steps)``; step 0, the initial model, is traced when training
  begins).

Headline figures (``trace/<dimension>/probe_acc`` and its interval, block, MI) go to the
Trainer's loggers (TensorBoard, W&B, MLflow, ... whatever ``report_to`` set up): added with
:meth:`TraceCallback.attach`, the callback calls ``trainer.log`` at the traced step, so every
logging callback and ``state.log_history`` get them. Passed through ``Trainer(callbacks=[...])``
instead, it adds them to the next ``logs`` the Trainer emits (forcing a log at a scheduled
step): ``state.log_history`` and the callbacks after it see them, but loggers that run before it
(the ``report_to`` ones are placed first) do not, so prefer :meth:`attach`.

When the tracer finds an early warning and was made with ``stop_on_drop=True``, the callback sets
``control.should_training_stop``.

>>> trainer = Trainer(model=model, args=args, train_dataset=ds, processing_class=tok)
>>> TraceCallback.attach(trainer, LiveTracer("runs/live", dimensions="fairness", name=args.output_dir))
>>> trainer.train()
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from tracing_bench.errors import TracingBenchError
from tracing_bench.live import LiveResult, LiveTracer

__all__ = ["TraceCallback"]


class TraceCallback(TrainerCallback):
    """A ``TrainerCallback`` that traces the live model (see the module docstring).

    Args:
        tracer: the :class:`~tracing_bench.live.LiveTracer`.
        at_save: trace at every checkpoint the Trainer saves; default: when neither ``every``
            nor ``steps`` is given.
        every: also trace every this many optimiser steps.
        steps: also trace at these steps (0 = before the first update).
        tokenizer: the tokenizer, when the Trainer was given none (``processing_class``).
        trainer: the Trainer, to log through it (set by :meth:`attach`).
    """

    def __init__(
        self,
        tracer: LiveTracer,
        *,
        at_save: bool | None = None,
        every: int | None = None,
        steps: Iterable[int] | None = None,
        tokenizer: Any = None,
        trainer: Any = None,
    ) -> None:
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise TracingBenchError(f"every={every!r} is not valid: give a number of steps >= 1")
        self.tracer = tracer
        self.every = every
        self.steps = frozenset(int(s) for s in steps) if steps is not None else frozenset()
        self.at_save = at_save if at_save is not None else (every is None and not self.steps)
        self.tokenizer = tokenizer
        self.trainer = trainer
        self.results: list[LiveResult] = []
        self._pending: dict[str, float] = {}
        self._done: set[int] = set()

    @classmethod
    def attach(cls, trainer: Any, tracer: LiveTracer, **options: Any) -> TraceCallback:
        """Make a callback that logs through ``trainer`` and add it to the trainer; returns the callback."""
        callback = cls(tracer, trainer=trainer, **options)
        trainer.add_callback(callback)
        return callback

    def scheduled(self, step: int) -> bool:
        """Whether the schedule (``every`` / ``steps``) asks for ``step``."""
        return step in self.steps or (self.every is not None and step % self.every == 0)

    # -------------------------------------------------------------------------- Trainer events
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.scheduled(state.global_step) and state.global_step == 0:
            self._run(args, state, control, kwargs, folder=None)
        return control

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        step = state.global_step
        if self.scheduled(step) and not (self.at_save and control.should_save):
            self._run(args, state, control, kwargs, folder=None)
        return control

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        step = state.global_step
        if self.at_save or self.scheduled(step):
            self._run(args, state, control, kwargs, folder=Path(args.output_dir) / f"checkpoint-{step}")
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> Any:
        if self._pending and logs is not None:
            logs.update(self._pending)
            if state.log_history and state.log_history[-1].get("step") == state.global_step:
                state.log_history[-1].update(self._pending)
            self._pending = {}
        return control

    # -------------------------------------------------------------------------- the work
    def _run(self, args: Any, state: Any, control: Any, kwargs: dict[str, Any], *, folder: Path | None) -> None:
        step = int(state.global_step)
        if step in self._done:
            return
        model = kwargs.get("model")
        tokenizer = self.tokenizer or kwargs.get("processing_class") or kwargs.get("tokenizer")
        if model is None or tokenizer is None:
            raise TracingBenchError(
                "TraceCallback got no model or no tokenizer from the Trainer: give the Trainer "
                "processing_class=tokenizer or the callback tokenizer=tokenizer"
            )
        self._done.add(step)
        result = self.tracer.on_checkpoint(model, tokenizer, step, folder=folder)
        self.results.append(result)
        if result.should_stop:
            control.should_training_stop = True
        if not result.traced:
            return
        if self.trainer is not None:
            self.trainer.log(dict(result.figures))
        else:
            self._pending.update(result.figures)
            control.should_log = True
