"""Trace while training: probe each checkpoint in the process that trains it, without reloading it.

:class:`LiveTracer` holds a trace's settings (:class:`~tracing_bench.settings.TraceSettings`) and
its output folder. Call :meth:`LiveTracer.on_checkpoint` with the live model, its tokenizer and
the step (from a plain PyTorch or Accelerate loop, or through the adapters
:class:`tracing_bench.live_trainer.TraceCallback` for transformers' ``Trainer`` and
:func:`tracing_bench.live_lightning.trace_callback` for Lightning). Each call:

1. harvests the live model's hidden states for every dimension (:func:`tracing_bench.harvest.harvest`:
   eval mode, ``torch.inference_mode``, the same batches and pooling as ``trace``), in the dtype
   the settings name (a cast copy when it differs from the training dtype);
2. probes them and estimates MI through the code ``trace`` runs
   (:func:`tracing_bench.trace.trace_activations`), writing the same part files;
3. merges every checkpoint traced so far into ``probes.csv``, ``mi.csv``, ``findings.json`` and
   ``trace.json`` (:func:`tracing_bench.trace.merge`), and records the call in ``live.json``;
4. tests for an early warning (:func:`tracing_bench.compare.drops.probe_drops`): a probe whose
   accuracy fell beyond noise against the best checkpoint so far; logged as a warning, and with
   ``stop_on_drop=True`` the result asks the loop to stop (``should_stop``).

Training is left as it was: every module's train/eval flag, the Python, NumPy, torch and CUDA
random states and the thread settings are restored, and gradients are never touched (no
backward pass runs, ``.grad`` is not zeroed), so a run with the tracer gives bit-identical
weights and losses to one without it (tested).

Naming: given the folder the checkpoint was just saved to (``folder=``), the checkpoint is that
folder, exactly as ``trace`` names a folder series, so ``trace`` run afterwards on the saved
checkpoints into the same ``out`` finds every part done and only merges (and traces whatever is
missing, e.g. after an interrupted run). Without a folder the checkpoint is ``<name>@step<N>``.

Several processes (DDP, ``accelerate launch``): when ``torch.distributed`` is initialised, rank 0
traces while the other ranks wait at a barrier, and rank 0's stop decision is broadcast to every
rank. Sharded parameters (FSDP, DeepSpeed ZeRO-3) are not supported yet: the call raises
:class:`~tracing_bench.errors.TracingBenchError` rather than probe a shard.

>>> tracer = LiveTracer("runs/live", dimensions="fairness,privacy", layers="0:4", mi=True, name="my-run")
>>> result = tracer.on_checkpoint(model, tokenizer, step=100)   # inside the training loop
>>> result.figures["trace/fairness/probe_acc"], result.should_stop
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from tracing_bench import __version__
from tracing_bench.checkpoints import Checkpoint
from tracing_bench.compare.drops import probe_drops
from tracing_bench.dimensions import DimensionData
from tracing_bench.errors import TracingBenchError
from tracing_bench.files import atomic_write_json, check_outputs
from tracing_bench.harvest import harvest
from tracing_bench.loading import find_blocks, torch_dtype
from tracing_bench.parts import part_path
from tracing_bench.settings import TraceSettings, parse_layers
from tracing_bench.threads import use_threads
from tracing_bench.trace import load_datas, merge, trace_activations
from tracing_bench.trace_files import TraceResult

__all__ = ["LiveResult", "LiveTracer", "no_autocast", "preserved_training_state"]

log = logging.getLogger("tracing_bench.live")
LIVE_FILE = "live.json"


@dataclass
class LiveResult:
    """What one :meth:`LiveTracer.on_checkpoint` call found.

    Attributes:
        step: the training step.
        checkpoint: the checkpoint's name in the tables (``step<N>`` or the folder's name).
        traced: False on ranks other than 0 (they waited).
        figures: headline figures for the training loggers (``trace/<dimension>/probe_acc``, its
            interval, block and, with MI, ``i_xt`` / ``i_yt`` at that block; ``trace/drops``).
        warnings: the early-warning claims (a probe's accuracy fell beyond noise).
        should_stop: stop training (a drop was found and ``stop_on_drop`` is set).
        seconds: wall time of the call.
    """

    step: int
    checkpoint: str
    traced: bool = True
    figures: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    should_stop: bool = False
    seconds: float = 0.0


# ------------------------------------------------------------------------------ training state
@contextlib.contextmanager
def preserved_training_state(model: Any) -> Iterator[None]:
    """Restore, on exit, every module's train/eval flag and the Python, NumPy, torch and CUDA RNG states.

    Gradients are not touched here: the work inside must not run a backward pass.
    """
    flags = [(m, m.training) for m in model.modules()]
    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        for module, was in flags:
            module.training = was
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


@contextlib.contextmanager
def no_autocast(model: Any) -> Iterator[None]:
    """Autocast off on the model's device (a loop may call the tracer inside ``torch.autocast``): the
    activations are those of the settings' dtype, as ``trace`` computes them."""
    kind = next(model.parameters()).device.type
    if kind not in ("cpu", "cuda"):
        yield
        return
    with torch.autocast(device_type=kind, enabled=False):
        yield


def _rank() -> int | None:
    """This process's rank when torch.distributed is initialised, else ``None``."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else None


def _check_not_sharded(model: Any) -> None:
    """Refuse sharded parameters (FSDP, FSDP2's DTensor, DeepSpeed ZeRO-3): a shard is not the model."""
    kinds = {type(m).__name__ for m in model.modules()}
    sharded = (
        "FullyShardedDataParallel" in kinds
        or "FSDPModule" in kinds
        or any(
            hasattr(p, "ds_id") or type(p).__name__ == "DTensor" or type(getattr(p, "data", None)).__name__ == "DTensor"
            for p in model.parameters()
        )
    )
    if sharded:
        raise TracingBenchError(
            "the model's parameters are sharded (FSDP or DeepSpeed ZeRO-3), which live tracing does not support yet: "
            "trace under DDP or a single process, or trace the saved checkpoints afterwards with tracing-bench trace"
        )


# ------------------------------------------------------------------------------ the tracer
class LiveTracer:
    """Trace a model at its checkpoints while it trains (see the module docstring).

    Args:
        out: output folder (the same layout as ``trace``'s, plus ``live.json``).
        settings: what to trace (:class:`~tracing_bench.settings.TraceSettings`).
        name: the tables' ``model`` column and the name of checkpoints given without a folder;
            give the folder of the saved checkpoints (as you would give it to ``trace``) to
            make the two agree. Default: ``settings.series_name``, else ``live``.
        stop_on_drop: ask the loop to stop when a probe's accuracy falls beyond noise.
        alpha: family-wise error rate of the early-warning test (Holm).
        scorer: also score the trust tasks on the live model with lm-eval at each checkpoint
            (:class:`tracing_bench.live_scoring.LiveScorer`; off by default): figures
            ``score/<task>/<metric>``, the scores in ``live.json``.
        **options: trace settings by keyword, as :func:`tracing_bench.trace.trace` takes them
            (``dimensions="fairness"``, ``layers="0:4"``, ``mi=True``, ``max_statements=400``).

    Raises:
        TracingBenchError: bad settings or an unwritable ``out`` (before training starts).
    """

    def __init__(
        self,
        out: str | Path,
        settings: TraceSettings | None = None,
        *,
        name: str | None = None,
        stop_on_drop: bool = False,
        alpha: float = 0.05,
        scorer: Any = None,
        **options: Any,
    ) -> None:
        if settings is None or options:
            settings = TraceSettings.from_options(settings, **options)
        if settings.delete_checkpoints:
            raise TracingBenchError("--delete-checkpoints does not apply to live tracing (nothing is downloaded)")
        if not 0 < alpha < 1:
            raise TracingBenchError(f"alpha {alpha} is not valid: give a family-wise error rate between 0 and 1")
        self.name = name or settings.series_name or "live"
        self.settings = replace(settings, series_name=self.name)
        self.out = Path(out)
        check_outputs([(self.out, "--out", "folder")])
        self.stop_on_drop = bool(stop_on_drop)
        self.alpha = float(alpha)
        self.scorer = scorer
        self.datas = load_datas(self.settings)
        self.checkpoints: list[Checkpoint] = []
        self.parts: dict[str, dict[str, dict[str, Any]]] = {d.name: {} for d in self.datas}  # dim -> label -> part
        self.history: list[dict[str, Any]] = []

    # -------------------------------------------------------------------------- one checkpoint
    def checkpoint(self, step: int, folder: str | Path | None = None) -> Checkpoint:
        """How the checkpoint of ``step`` is named: its folder, else ``<name>@step<N>``.

        Raises:
            TracingBenchError: a folder whose name carries another step number.
        """
        if folder is None:
            return Checkpoint(self.name, f"step{step}")
        ckpt = Checkpoint(str(Path(folder).expanduser().resolve()))
        if ckpt.step != step:
            raise TracingBenchError(
                f"checkpoint folder {folder} names step {ckpt.step}, but on_checkpoint was given step {step}: "
                "name the folder after its step (step<N>, checkpoint-<N>) or pass the step it holds"
            )
        return ckpt

    def on_checkpoint(self, model: Any, tokenizer: Any, step: int, *, folder: str | Path | None = None) -> LiveResult:
        """Trace the live ``model`` at ``step`` (see the module docstring); rank 0 only under torch.distributed.

        Args:
            model: the Hugging Face causal LM being trained (unwrapped: not the DDP wrapper).
            tokenizer: its tokenizer.
            step: the training step (optimiser updates so far).
            folder: where this checkpoint was just saved, if it was (names it as ``trace`` would).

        Returns:
            :class:`LiveResult` (on other ranks: ``traced=False`` and rank 0's ``should_stop``).

        Raises:
            TracingBenchError: a negative step, sharded parameters, layers out of range.
        """
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise TracingBenchError(f"step {step!r} is not valid: give the training step as a whole number >= 0")
        rank = _rank()
        if rank is not None and rank != 0:
            result = LiveResult(step=step, checkpoint=f"step{step}", traced=False)
            self._share(result, None)
            return result
        try:
            result = self._trace(model, tokenizer, step, folder)
        except BaseException as e:
            if rank is not None:  # release the waiting ranks with the failure, then fail here
                self._share(LiveResult(step=step, checkpoint=f"step{step}"), f"{type(e).__name__}: {e}")
            raise
        if rank is not None:
            self._share(result, None)
        return result

    @staticmethod
    def _share(result: LiveResult, failure: str | None) -> None:
        """Barrier, then rank 0's stop decision (or its failure) to every rank.

        Raises:
            TracingBenchError: on the other ranks, when rank 0 failed.
        """
        dist.barrier()
        message = [result.should_stop, failure]
        dist.broadcast_object_list(message, src=0)
        result.should_stop = bool(message[0])
        if message[1] is not None and dist.get_rank() != 0:
            raise TracingBenchError(f"live tracing failed on rank 0 ({message[1]}); see rank 0's error")

    def _trace(self, model: Any, tokenizer: Any, step: int, folder: str | Path | None) -> LiveResult:
        t0 = time.perf_counter()
        _check_not_sharded(model)
        ckpt = self.checkpoint(step, folder)
        parse_layers(self.settings.layers, len(find_blocks(model, self.settings.harvest.blocks_attr)[0]))
        harvest_s = 0.0
        with (
            preserved_training_state(model),
            use_threads(self.settings.threads),
            no_autocast(model),
            self._model_in_dtype(model) as m,
        ):
            for data in self.datas:
                t1 = time.perf_counter()
                acts, prov = self._activations(m, tokenizer, ckpt, data)
                harvest_s += time.perf_counter() - t1
                path = self._part_path(ckpt, data)
                self.parts[data.name][ckpt.label] = trace_activations(ckpt, data, acts, prov, self.settings, path)
            t1 = time.perf_counter()
            scores = self.scorer.score(model, tokenizer) if self.scorer is not None else []
            score_s = time.perf_counter() - t1
        self.checkpoints = sorted(
            [c for c in self.checkpoints if c.label != ckpt.label] + [ckpt],
            key=lambda c: (c.step if c.step is not None else -1, c.label),
        )
        t2 = time.perf_counter()
        merged = merge(self.out, self.checkpoints, self.datas, self.settings)
        merge_s = time.perf_counter() - t2
        warnings_found, drops = self._early_warning()
        figures = self._figures(ckpt, drops) | (self.scorer.figures(scores) if self.scorer is not None else {})
        result = LiveResult(
            step=step,
            checkpoint=ckpt.label,
            figures=figures,
            warnings=[d["claim"] for d in drops["drops"]],
            should_stop=self.stop_on_drop and bool(drops["drops"]),
        )
        for claim in result.warnings:
            log.warning("early warning at step %d: %s", step, claim)
        result.seconds = round(time.perf_counter() - t0, 3)
        timings = {"harvest_s": round(harvest_s, 3), "merge_s": round(merge_s, 3), "score_s": round(score_s, 3)}
        self._record(
            result,
            ckpt,
            folder,
            timings,
            drops,
            merged,
            warnings_found,
            [{"task": x.task, "metric": x.metric, "value": x.value, "stderr": x.stderr, "n": x.n} for x in scores],
        )
        return result

    @contextlib.contextmanager
    def _model_in_dtype(self, model: Any) -> Iterator[Any]:
        """The model itself, or a copy cast to the settings' dtype when it differs (``auto``: as it is)."""
        want = self.settings.run_harvest.dtype
        have = next(model.parameters()).dtype
        if want == "auto" or torch_dtype(want) == have:
            yield model
            return
        cast = copy.deepcopy(model).to(torch_dtype(want))
        try:
            yield cast
        finally:
            del cast

    def _activations(
        self, model: Any, tokenizer: Any, ckpt: Checkpoint, data: DimensionData
    ) -> tuple[Any, dict[str, Any]]:
        """All blocks' activations of one dimension (as the activation cache would hold them) and their provenance."""
        acts = harvest(model, tokenizer, data.statements, self.settings.run_harvest)
        prov = {
            "key": None,
            "resolved_commit": None,
            "n_layers": int(acts.shape[0]),
            "hidden": int(acts.shape[2]),
            "torch_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
            "pooling": self.settings.run_harvest.pooling,
            "dtype": self.settings.run_harvest.dtype,
            "n_statements": len(data.statements),
        }
        return acts.numpy(), prov

    def _part_path(self, ckpt: Checkpoint, data: DimensionData) -> Path:
        return part_path(self.out, self.settings, ckpt, data.key_name)

    # -------------------------------------------------------------------------- what it reports
    def _early_warning(self) -> tuple[bool, dict[str, Any]]:
        labels = [c.label for c in self.checkpoints]
        parts = {dim: [by_label[x] for x in labels if x in by_label] for dim, by_label in self.parts.items()}
        drops = probe_drops(parts, labels, alpha=self.alpha)
        return bool(drops["drops"]), drops

    def _figures(self, ckpt: Checkpoint, drops: dict[str, Any]) -> dict[str, float]:
        """Per dimension: the block with the highest probe-val accuracy now (ties: the lower), its test accuracy
        with the Wilson interval and, with MI, I(T;X) and I(T;Y) there."""
        out: dict[str, float] = {}
        for data in self.datas:
            part = self.parts[data.name][ckpt.label]
            rows = [r for r in part["probes"] if r["probe"] == "logistic"] or part["probes"]
            if rows:
                best = max(rows, key=lambda r: (r["val_acc"] if r["val_acc"] is not None else -1.0, -r["layer"]))
                key = f"trace/{data.name}"
                out |= {
                    f"{key}/probe_acc": best["test_acc"],
                    f"{key}/probe_acc_lo": best["test_acc_lo"],
                    f"{key}/probe_acc_hi": best["test_acc_hi"],
                    f"{key}/probe_block": float(best["layer"]),
                }
                mi = next((r for r in part["mi"] if r["layer"] == best["layer"]), None)
                if mi is not None:
                    out |= {f"{key}/i_xt": mi["i_xt"], f"{key}/i_yt": mi["i_yt"]}
        out["trace/drops"] = float(len(drops["drops"]))
        return {k: float(v) for k, v in out.items() if v is not None}

    def _record(
        self,
        result: LiveResult,
        ckpt: Checkpoint,
        folder: str | Path | None,
        timings: dict[str, float],
        drops: dict[str, Any],
        merged: TraceResult,
        warned: bool,
        scores: list[dict[str, Any]],
    ) -> None:
        """Append this call to ``live.json`` (provenance, timings, figures and the early-warning tests)."""
        self.history = [h for h in self.history if h["checkpoint"] != ckpt.label] + [
            {
                "step": result.step,
                "checkpoint": ckpt.label,
                "folder": str(folder) if folder is not None else None,
                "seconds": result.seconds,
                **timings,
                "figures": result.figures,
                "scores": scores,
                "early_warning": drops,
                "warned": warned,
                "should_stop": result.should_stop,
            }
        ]
        atomic_write_json(
            self.out / LIVE_FILE,
            {
                "tool": "tracing-bench live",
                "package_version": __version__,
                "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "name": self.name,
                "settings": self.settings.public(),
                "settings_key": self.settings.key(),
                "stop_on_drop": self.stop_on_drop,
                "alpha": self.alpha,
                "scoring": self.scorer.describe() if self.scorer is not None else None,
                "harvest": "the live model in the training process: eval mode, inference mode, the settings' dtype "
                "(a cast copy when training runs in another); train flags and RNG states restored after",
                "tables": {
                    "probes": merged.probes_csv.name,
                    "mi": merged.mi_csv.name,
                    "findings": merged.findings_json.name,
                    "trace": merged.trace_json.name,
                },
                "checkpoints": self.history,
            },
            indent=1,
        )
