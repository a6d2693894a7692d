"""The embedded default: a tiny Llama-style causal LM pre-trained from scratch on the CPU.

No public checkpoint series can be fetched offline, so tracing-bench grows its own: a real, small
pre-training run whose checkpoints are traced, steered and compared exactly like Amber's or
Pythia's. :func:`pretrain` trains a byte-level BPE tokenizer and a Llama model on the corpus below
and saves Hugging Face checkpoints at log-spaced steps, Pythia style (``0, 1, 2, 4, ..., final``),
one folder ``step<N>`` per checkpoint, next to ``pretrain.json`` (provenance and losses).

Corpus: the development half of every bundled dimension that may be trained on, without labels
(the test half is never seen; CrowS-Pairs, an evaluation set, never); corpus and tokenizer are
built by :mod:`tracing_bench.pretrain_data`, which says what and why. Each statement is one
training sequence (truncated to ``seq_len`` tokens) that starts at position 0, as at harvest
time (no packing, no preceding context). No end-of-text token is appended by default: training
the last token to predict "the statement is over" made its state the same for every statement
and erased what the probes look for (see ``append_eos``).
Batches are padded to their longest sequence; padding is masked out of the loss.

Defaults: 4 blocks, hidden 128, MLP 256, vocabulary 1024, 200 steps of 32 statements, AdamW lr
2e-3 with a short warm-up and cosine decay; ``--fast`` runs 32 steps. Why these, what they cost
and what the probes find in the checkpoints: ``bench/BENCH.md`` ("pretrain", "make demo").

Determinism: the tokenizer, the initial weights and the data order depend only on the seed; the
same seed on the same machine and thread count gives identical weights (float32, CPU). The run is
cached: if ``out_dir`` already holds a complete run with the same settings it is reused. An
interrupted run resumes from its last checkpoint (``resume.pt``, deleted when the run
completes). Each checkpoint is written into a temporary folder and renamed into place, and
``pretrain.json`` (written last) marks the run complete, so a half-written checkpoint never
looks complete.

>>> folders = pretrain(PretrainConfig.fast(), "runs/tiny")
>>> [f.name for f in folders][:4]
['step0', 'step1', 'step2', 'step4']
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import transformers
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM
from transformers.utils import logging as hf_logging

from tracing_bench import __version__
from tracing_bench.batches import pad_id, pad_rows
from tracing_bench.errors import TracingBenchError
from tracing_bench.files import atomic_write, atomic_write_text, dumps_json, private_folder, replace_folder, spec_hash
from tracing_bench.pretrain_data import (
    CORPORA,
    EOS,
    MODEL_LAYOUT,
    PAD,
    Corpus,
    batch_indices,
    build_corpus,
    model_config,
    train_tokenizer,
)
from tracing_bench.threads import use_threads

META_FILE = "pretrain.json"
RESUME_FILE = "resume.pt"


def default_save_steps(total: int) -> list[int]:
    """Log-spaced checkpoint steps as Pythia saves them: 0, 1, 2, 4, 8, ... and the final step.

    Args:
        total: number of optimiser steps of the run (>= 0).

    Returns:
        Sorted unique steps ``0, 1, 2, 4, ..., 2**k <= total`` plus ``total``.

    >>> default_save_steps(100)
    [0, 1, 2, 4, 8, 16, 32, 64, 100]
    """
    if total < 0:
        raise TracingBenchError(f"--steps {total} is negative; give a number of steps >= 0")
    steps = {0, total}
    p = 1
    while p <= total:
        steps.add(p)
        p *= 2
    return sorted(steps)


@dataclass
class PretrainConfig:
    """Settings of a tiny pre-training run (every field is part of the cache key but ``threads``).

    Attributes:
        steps: optimiser steps (``--steps``); step N is the model after N updates.
        save_at: steps to checkpoint (``--save-at``); ``None`` means :func:`default_save_steps`.
            Step 0 (the random initialisation) and the final step are always included.
        seed: seed of the tokenizer corpus order, initial weights and data order (``--seed``).
        hidden_size: width of the residual stream.
        layers: number of decoder blocks.
        heads: attention heads (``hidden_size`` must be a multiple).
        intermediate_size: width of the MLP.
        vocab_size: size of the byte-level BPE vocabulary trained on the corpus.
        seq_len: longest training sequence in tokens (longer statements are truncated).
        batch_size: statements per optimiser step.
        lr: peak learning rate of AdamW (linear warm-up, cosine decay to ``lr / 10``).
        warmup: warm-up steps (capped at a tenth of ``steps``).
        weight_decay: AdamW weight decay on matrices.
        corpus: ``dev`` (development half of each dimension; the test half is never seen) or
            ``all`` (every bundled statement, test half included).
        append_eos: end every training sequence with the end-of-text token. Off by default: it
            teaches the statement's last token to predict "end of text" whatever came before,
            which erases the context from the very state the probes read (``bench/BENCH.md``).
        threads: torch CPU threads during training; ``None``: the idle cores, at most 2
            (:func:`tracing_bench.threads.default_threads`).
    """

    steps: int = 200
    save_at: tuple[int, ...] | None = None
    seed: int = 0
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    intermediate_size: int = 256
    vocab_size: int = 1024
    seq_len: int = 64
    batch_size: int = 32
    lr: float = 2e-3
    warmup: int = 20
    weight_decay: float = 0.1
    corpus: Corpus = "dev"
    append_eos: bool = False
    threads: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for name, flag, low in (
            ("steps", "--steps", 0),
            ("hidden_size", "hidden_size", 8),
            ("layers", "layers", 1),
            ("heads", "heads", 1),
            ("intermediate_size", "intermediate_size", 1),
            ("vocab_size", "vocab_size", 300),
            ("seq_len", "seq_len", 4),
            ("batch_size", "batch_size", 1),
            ("warmup", "warmup", 0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise TracingBenchError(f"{flag} {value!r} is invalid: it must be a whole number >= {low}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise TracingBenchError(f"--seed {self.seed!r} is invalid: give a whole number >= 0")
        if self.hidden_size % self.heads:
            raise TracingBenchError(
                f"hidden_size {self.hidden_size} is not a multiple of heads {self.heads}; pick sizes that divide"
            )
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise TracingBenchError(f"lr {self.lr!r} is invalid: give a positive learning rate")
        if not (self.weight_decay >= 0):
            raise TracingBenchError(f"weight_decay {self.weight_decay!r} is invalid: give a value >= 0")
        if self.corpus not in CORPORA:
            raise TracingBenchError(f"corpus {self.corpus!r} is unknown: valid corpora are {', '.join(CORPORA)}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise TracingBenchError(f"--threads {self.threads!r} is invalid: give a number >= 1")
        if self.save_at is not None:
            steps = []
            for s in self.save_at:
                if isinstance(s, bool) or not isinstance(s, int) or s < 0 or s > self.steps:
                    raise TracingBenchError(
                        f"--save-at {s!r} is out of range: checkpoint steps must lie in 0..{self.steps} "
                        f"(--steps {self.steps}); raise --steps or drop the step"
                    )
                steps.append(s)
            self.save_at = tuple(sorted(set(steps) | {0, self.steps}))

    @classmethod
    def fast(cls, **overrides: Any) -> PretrainConfig:
        """The ``--fast`` preset (32 steps instead of 200, same model; for tests and quick looks)."""
        base: dict[str, Any] = {"steps": 32, "warmup": 3}
        base.update(overrides)
        return cls(**base)

    @property
    def save_steps(self) -> list[int]:
        """The checkpoint steps of this run, sorted, 0 and the final step included."""
        return list(self.save_at) if self.save_at is not None else default_save_steps(self.steps)

    def key(self, corpus_md5: str) -> str:
        """Cache key: sha256 of every setting but ``threads``, the corpus md5 and the version."""
        spec = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "threads"}
        spec["save_at"] = self.save_steps
        spec.update(corpus_md5=corpus_md5, package_version=__version__, model_layout=MODEL_LAYOUT)
        return spec_hash(spec)


def _lr_at(cfg: PretrainConfig, step: int) -> float:
    """Learning rate of update ``step`` (1-based): linear warm-up, cosine decay to lr/10."""
    warm = min(cfg.warmup, cfg.steps // 10)
    if warm and step <= warm:
        return cfg.lr * step / warm
    span = max(1, cfg.steps - warm)
    t = min(1.0, (step - warm) / span)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def _save_state(state: dict[str, Any], tmp: str) -> None:
    torch.save(state, tmp)


def _save_checkpoint(model: Any, tokenizer: Any, out_dir: Path, step: int) -> Path:
    """Write ``step<N>`` into a temporary folder, then rename it into place."""
    final = out_dir / f"step{step}"
    tmp = private_folder(out_dir, f".step{step}.")
    bars = hf_logging.is_progress_bar_enabled()
    try:
        hf_logging.disable_progress_bar()  # "Writing model shards" would break our own bar
        try:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        replace_folder(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _read_meta(out_dir: Path) -> dict | None:
    path = out_dir / META_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def cached_run(config: PretrainConfig, out_dir: str | Path) -> list[Path] | None:
    """The checkpoint folders of a complete run with the same settings in ``out_dir``, else None.

    Args:
        config: settings of the run.
        out_dir: the run's folder.

    Returns:
        Checkpoint folders in step order, or ``None`` if ``out_dir`` holds no such complete run.
    """
    out_dir = Path(out_dir)
    meta = _read_meta(out_dir)
    if not meta or not meta.get("complete"):
        return None
    _, prov = build_corpus(config.corpus)
    if meta.get("key") != config.key(str(prov["md5"])):
        return None
    folders = [out_dir / f"step{s}" for s in config.save_steps]
    if not all((f / "config.json").is_file() for f in folders):
        return None
    return folders


def pretrain(
    config: PretrainConfig,
    out_dir: str | Path,
    *,
    progress: bool = True,
    on_checkpoint: Callable[..., Any] | None = None,
) -> list[Path]:
    """Pre-train the tiny model and save its checkpoints (or reuse a complete cached run).

    Args:
        config: settings of the run.
        out_dir: folder that receives ``step<N>/`` (Hugging Face model + tokenizer) per
            checkpoint and ``pretrain.json``. Created if missing.
        progress: show a tqdm bar with the loss on stderr (when stderr is a terminal) and say
            when a cached run is reused or an interrupted one resumed.
        on_checkpoint: called as ``on_checkpoint(model, tokenizer, step, folder=path)`` right after
            each checkpoint is saved, with the live model (e.g. :meth:`tracing_bench.live.LiveTracer.on_checkpoint`);
            not called for checkpoints of a reused run or saved before a resume.

    Returns:
        Checkpoint folders in step order (``step0`` first, the final step last).

    Raises:
        TracingBenchError: ``out_dir`` is a file, or holds a complete run with other settings.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise TracingBenchError(f"--out {out_dir} is a file; give a folder (it will be created)")
    texts, corpus_prov = build_corpus(config.corpus)
    key = config.key(str(corpus_prov["md5"]))
    cached = _reuse(config, out_dir, key, progress)
    if cached is not None:
        return cached
    _clear(out_dir)
    # the idle cores, at most 2: the model is too small to use more, and on a busy 2-core machine
    # one thread ran it 3x faster than two (the weights do not depend on the count; tested)
    with use_threads(config.threads, cap=2) as threads:
        t0, c0 = time.perf_counter(), time.process_time()
        run = _start(config, texts, out_dir, key, progress)
        if run.start == 0:
            (out_dir / META_FILE).unlink(missing_ok=True)
            _save(run, out_dir, 0, on_checkpoint)
        _train(run, config, out_dir, key, progress, on_checkpoint)
    meta = _meta(
        run, config, key, corpus_prov, threads, wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - c0
    )
    atomic_write_text(out_dir / META_FILE, dumps_json(meta, indent=1, default=str))
    (out_dir / RESUME_FILE).unlink(missing_ok=True)
    return [out_dir / f"step{s}" for s in config.save_steps]


@dataclass
class _Run:
    """A training run between its steps: the tokenizer, the encoded corpus, the model and its optimiser."""

    tokenizer: Any
    encoded: list[list[int]]
    model_cfg: Any
    model: Any
    optim: Any
    start: int = 0  # the step it starts after (> 0 when resumed)
    losses: list[dict[str, Any]] = field(default_factory=list)


def _reuse(config: PretrainConfig, out_dir: Path, key: str, progress: bool) -> list[Path] | None:
    """The folders of a complete run with these settings; refuses a complete run with others."""
    cached = cached_run(config, out_dir)
    if cached is not None:
        if progress:
            print(f"reusing the complete pre-training run in {out_dir} (same settings)", file=sys.stderr)
        return cached
    meta = _read_meta(out_dir)
    if meta and meta.get("complete") and meta.get("key") != key:
        raise TracingBenchError(
            f"--out {out_dir} already holds a complete pre-training run with other settings "
            f"(steps {meta.get('steps')}, seed {meta.get('seed')}); give another --out folder or delete it"
        )
    return None


def _clear(out_dir: Path) -> None:
    """Create ``out_dir``; remove the temporary folders of a run that was killed outright."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*out_dir.glob(".step*"), *out_dir.glob(".old-step*")]:
        shutil.rmtree(stale, ignore_errors=True)


def _encode(tokenizer: Any, texts: list[str], config: PretrainConfig) -> list[list[int]]:
    """One training sequence per statement, truncated to ``seq_len`` (with the end-of-text token if asked)."""
    tail = [tokenizer.eos_token_id] if config.append_eos else []
    return [
        ids[: config.seq_len - len(tail)] + tail
        for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]
        if len(ids) + len(tail) >= 2  # a one-token sequence has nothing to predict
    ]


def _start(config: PretrainConfig, texts: list[str], out_dir: Path, key: str, progress: bool) -> _Run:
    """The tokenizer, the encoded corpus, the seeded model and AdamW; resumed from resume.pt when it matches."""
    torch.manual_seed(config.seed)
    tokenizer = train_tokenizer(texts, config.vocab_size)
    encoded = _encode(tokenizer, texts, config)
    model_cfg = model_config(config, tokenizer)
    torch.manual_seed(config.seed)
    model = AutoModelForCausalLM.from_config(model_cfg, dtype=torch.float32)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optim = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    run = _Run(tokenizer, encoded, model_cfg, model, optim)
    resume_path = out_dir / RESUME_FILE
    if resume_path.is_file():
        state = torch.load(resume_path, map_location="cpu", weights_only=False)
        if state.get("key") == key:
            model.load_state_dict(state["model"])
            optim.load_state_dict(state["optim"])
            run.start, run.losses = int(state["step"]), list(state["losses"])
            if progress:
                print(f"resuming the interrupted pre-training run in {out_dir} at step {run.start}", file=sys.stderr)
    return run


def _save(run: _Run, out_dir: Path, step: int, on_checkpoint: Callable[..., Any] | None) -> None:
    """Save checkpoint ``step`` (in eval mode) and hand the live model to ``on_checkpoint``."""
    training = run.model.training
    run.model.eval()
    saved = _save_checkpoint(run.model, run.tokenizer, out_dir, step)
    run.model.train(training)
    if on_checkpoint is not None:
        on_checkpoint(run.model, run.tokenizer, step, folder=saved)


def _step(run: _Run, config: PretrainConfig, step: int) -> float:
    """One optimiser update on the step's batch (padding masked out of the loss); its loss."""
    rows = [run.encoded[i] for i in batch_indices(step, config.batch_size, len(run.encoded), config.seed)]
    ids, mask = pad_rows(rows, pad_id(run.tokenizer))
    labels = ids.masked_fill(~mask, -100)
    for group in run.optim.param_groups:
        group["lr"] = _lr_at(config, step)
    loss = run.model(input_ids=ids, attention_mask=mask.long(), labels=labels).loss
    run.optim.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), 1.0)
    run.optim.step()
    return float(loss.item())


def _train(
    run: _Run,
    config: PretrainConfig,
    out_dir: Path,
    key: str,
    progress: bool,
    on_checkpoint: Callable[..., Any] | None,
) -> None:
    """Steps ``run.start + 1 .. config.steps``; a checkpoint and resume.pt at each save step."""
    save_steps = set(config.save_steps)
    run.model.train()
    bar = tqdm(
        total=config.steps,
        initial=run.start,
        desc="pretrain",
        unit="step",
        disable=None if progress else True,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    try:
        for step in range(run.start + 1, config.steps + 1):
            run.losses.append({"step": step, "loss": round(_step(run, config, step), 5)})
            bar.update(1)
            bar.set_postfix(loss=f"{run.losses[-1]['loss']:.3f}")
            if step in save_steps:
                _save(run, out_dir, step, on_checkpoint)
                if step < config.steps:
                    state = {
                        "key": key,
                        "step": step,
                        "model": run.model.state_dict(),
                        "optim": run.optim.state_dict(),
                        "losses": run.losses,
                    }
                    atomic_write(out_dir / RESUME_FILE, functools.partial(_save_state, state))
    finally:
        bar.close()


def _meta(
    run: _Run,
    config: PretrainConfig,
    key: str,
    corpus_prov: dict[str, Any],
    threads: int,
    *,
    wall_s: float,
    cpu_s: float,
) -> dict[str, Any]:
    """pretrain.json: settings, model, tokenizer, corpus, versions, times and losses; ``complete``."""
    save_steps = config.save_steps
    return {
        "complete": True,
        "key": key,
        "seed": config.seed,
        "steps": config.steps,
        "save_at": save_steps,
        "checkpoints": [f"step{s}" for s in save_steps],
        "config": {**asdict(config), "save_at": save_steps, "threads": threads},
        "model_config": run.model_cfg.to_dict(),
        "model_type": "llama",
        "n_parameters": sum(p.numel() for p in run.model.parameters()),
        "tokenizer": {"type": "byte-level BPE", "vocab_size": len(run.tokenizer), "eos": EOS, "pad": PAD},
        "corpus": {**corpus_prov, "n_tokens": sum(len(e) for e in run.encoded)},
        "dtype": "float32",
        "package_version": __version__,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "wall_s": round(wall_s, 2),
        "cpu_s": round(cpu_s, 2),
        "resumed_at": run.start or None,
        "losses": run.losses,
    }


__all__ = [
    "PretrainConfig",
    "build_corpus",
    "cached_run",
    "default_save_steps",
    "pretrain",
]
