"""The live tracer's adapters: transformers' Trainer callback and the Lightning callback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from tiny import write_planted_dimension, write_small_dims
from tracing_bench.dimensions import load_dimension
from tracing_bench.errors import TracingBenchError
from tracing_bench.live import LiveTracer
from tracing_bench.live_trainer import TraceCallback
from tracing_bench.trace import trace

SETTINGS = dict(
    layers="all",
    probes="logistic",
    mi=True,
    mi_subsample=30,
    mi_noise=2,
    batch_size=16,
    device="cpu",
    dtype="float32",
    threads=1,
)


@pytest.fixture(scope="module")
def dims(tmp_path_factory) -> str:
    return write_small_dims(tmp_path_factory.mktemp("cb_dims"), 60, names=("fairness",))


class Recorder(TrainerCallback):
    """Stands for TensorBoard / W&B: the report_to callbacks run before user callbacks, as this one does."""

    def __init__(self) -> None:
        self.logs: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append({**(logs or {}), "_step": state.global_step})


def run_trainer(
    folder: Path, tokenizer, out: Path, *, tracer: LiveTracer | None = None, attach: bool = True, **options
) -> tuple[Trainer, Recorder, dict[str, torch.Tensor]]:
    texts = load_dimension("privacy").statements[:16]
    data = [{"input_ids": ids} for ids in tokenizer(texts, truncation=True, max_length=32)["input_ids"]]
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=4,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        logging_steps=1,
        save_strategy="steps",
        save_steps=2,
        save_only_model=True,
        report_to="none",
        use_cpu=True,
        seed=0,
        data_seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    recorder = Recorder()
    callbacks: list = [recorder]
    if tracer is not None and not attach:
        callbacks.append(TraceCallback(tracer, **options))
    trainer = Trainer(
        model=AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32),
        args=args,
        train_dataset=data,
        processing_class=tokenizer,
        callbacks=callbacks,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )
    if tracer is not None and attach:
        TraceCallback.attach(trainer, tracer, **options)
    trainer.train()
    return trainer, recorder, {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def _losses(trainer: Trainer) -> list[float]:
    return [e["loss"] for e in trainer.state.log_history if "loss" in e]


def test_trainer_callback_bit_identical_logged_and_equal_to_trace(tiny_models, tiny_tokenizer, dims, tmp_path):
    folder = tiny_models["gpt2"]  # dropout on: the RNG matters
    plain, _, w_plain = run_trainer(folder, tiny_tokenizer, tmp_path / "plain")
    out = tmp_path / "run"
    tracer = LiveTracer(tmp_path / "live", dimensions=dims, name=str(out), cache_dir=str(tmp_path / "c1"), **SETTINGS)
    traced, recorder, w_traced = run_trainer(folder, tiny_tokenizer, out, tracer=tracer)
    assert len(_losses(plain)) == 4 and _losses(traced) == _losses(plain)
    assert w_plain.keys() == w_traced.keys() and all(torch.equal(w_plain[k], w_traced[k]) for k in w_plain)
    # traced at each save, named as trace names the saved folders; the figures reached the logging callbacks
    assert [c.label for c in tracer.checkpoints] == ["checkpoint-2", "checkpoint-4"]
    key = "trace/fairness_small/probe_acc"
    logged = [e for e in recorder.logs if key in e]
    assert [e["_step"] for e in logged] == [2, 4]
    probes = (tmp_path / "live" / "probes.csv").read_text().splitlines()
    best = [r for r in tracer.parts["fairness_small"]["checkpoint-4"]["probes"] if r["probe"] == "logistic"]
    best.sort(key=lambda r: (-r["val_acc"], r["layer"]))
    assert logged[-1][key] == best[0]["test_acc"] and len(probes) == 1 + 2 * 3
    assert any(key in e for e in traced.state.log_history)
    after = trace(
        str(out), out=tmp_path / "after", dimensions=dims, cache_dir=tmp_path / "c2", progress=False, **SETTINGS
    )
    assert after.probes_csv.read_text() == (tmp_path / "live" / "probes.csv").read_text()
    assert after.mi_csv.read_text() == (tmp_path / "live" / "mi.csv").read_text()


def test_trainer_callback_on_a_schedule_without_attach(tiny_models, tiny_tokenizer, dims, tmp_path):
    tracer = LiveTracer(tmp_path / "live", dimensions=dims, cache_dir=str(tmp_path / "c"), **SETTINGS)
    trainer, recorder, _ = run_trainer(
        tiny_models["llama"], tiny_tokenizer, tmp_path / "run", tracer=tracer, attach=False, steps=[0, 3]
    )
    assert [c.label for c in tracer.checkpoints] == ["step0", "step3"]
    key = "trace/fairness_small/probe_acc"
    entries = [e for e in trainer.state.log_history if key in e]
    assert [e["step"] for e in entries] == [1, 3]  # step 0 is traced before any log: its figures ride on step 1's
    assert [e["_step"] for e in recorder.logs if key in e] == []  # a logger placed before it misses them
    with pytest.raises(TracingBenchError, match="every=0"):
        TraceCallback(tracer, every=0)


def test_trainer_callback_stops_training_on_an_early_warning(tiny_models, tiny_tokenizer, tmp_path):
    from transformers import TrainerControl, TrainerState

    path = write_planted_dimension(tmp_path / "planted.csv")
    tracer = LiveTracer(
        tmp_path / "live",
        dimensions=str(path),
        layers="0",
        probes="logistic",
        stop_on_drop=True,
        device="cpu",
        dtype="float32",
        threads=1,
        cache_dir=str(tmp_path / "c"),
    )
    callback = TraceCallback(tracer, every=1)
    model = AutoModelForCausalLM.from_pretrained(tiny_models["llama"])
    state, control = TrainerState(), TrainerControl()

    class Args:
        output_dir = str(tmp_path / "run")

    for step in (1, 2):
        if step == 2:
            with torch.no_grad():
                model.get_input_embeddings().weight.zero_()
        state.global_step = step
        callback.on_step_end(Args(), state, control, model=model, processing_class=tiny_tokenizer)
        assert control.should_training_stop == (step == 2)
    assert callback.results[-1].warnings and json.loads((tmp_path / "live" / "live.json").read_text())


def test_lightning_callback(tiny_models, tiny_tokenizer, dims, tmp_path):
    pl = pytest.importorskip("lightning.pytorch", reason="Lightning is an optional extra (tracing-bench[lightning])")
    from tracing_bench.live_lightning import trace_callback

    texts = load_dimension("privacy").statements[:8]
    enc = tiny_tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=32)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    batches = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(enc["input_ids"], enc["attention_mask"], labels), batch_size=4
    )

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = AutoModelForCausalLM.from_pretrained(tiny_models["llama"], dtype=torch.float32)

        def training_step(self, batch, batch_idx):
            ids, mask, lab = batch
            return self.model(input_ids=ids, attention_mask=mask, labels=lab).loss

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-2)

    class Logger(pl.loggers.Logger):
        name, version = "rec", 0
        seen: list = []

        @property
        def experiment(self):
            return None

        def log_hyperparams(self, *args, **kwargs):
            pass

        def log_metrics(self, metrics, step=None):
            self.seen.append((step, dict(metrics)))

    tracer = LiveTracer(tmp_path / "live", dimensions=dims, cache_dir=str(tmp_path / "c"), **SETTINGS)
    callback = trace_callback(tracer, tiny_tokenizer, steps=[0, 2])
    logger = Logger()
    trainer = pl.Trainer(
        max_steps=2,
        accelerator="cpu",
        logger=logger,
        callbacks=[callback],
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    trainer.fit(Module(), train_dataloaders=batches)
    assert [r.step for r in callback.results] == [0, 2]
    assert [c.label for c in tracer.checkpoints] == ["step0", "step2"]
    assert [s for s, m in logger.seen if "trace/fairness_small/probe_acc" in m] == [0, 2]
