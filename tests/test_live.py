"""Live tracing (tracing_bench.live): training is unchanged, the tables equal `trace` afterwards, early warnings."""

from __future__ import annotations

import csv
import gc
import json
import os
import random
import socket
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

import tracing_bench.trace as trace_mod
from tiny import write_planted_dimension, write_small_dims
from tracing_bench.errors import TracingBenchError
from tracing_bench.live import LiveTracer
from tracing_bench.trace import MI_COLUMNS, PROBE_COLUMNS, trace

SETTINGS = dict(
    layers="all", mi=True, mi_subsample=30, mi_noise=2, batch_size=16, device="cpu", dtype="float32", threads=1
)


@pytest.fixture(scope="module")
def dims(tmp_path_factory) -> str:
    return write_small_dims(tmp_path_factory.mktemp("live_dims"), 60)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def assert_tables_close(a: Path, b: Path, columns: tuple[str, ...], tol: float = 1e-6) -> None:
    """Same rows in the same order; numbers within ``tol``, everything else equal."""
    ra, rb = _rows(a), _rows(b)
    assert len(ra) == len(rb) > 0 and list(ra[0]) == list(rb[0]) == list(columns)
    for x, y in zip(ra, rb, strict=True):
        for k in columns:
            try:
                fx, fy = float(x[k]), float(y[k])
            except ValueError:
                assert x[k] == y[k], (k, x[k], y[k])
                continue
            assert abs(fx - fy) <= tol, (k, x, y)


def _batches(tokenizer, steps: int, size: int = 4) -> list[dict[str, torch.Tensor]]:
    from tracing_bench.dimensions import load_dimension

    texts = load_dimension("privacy").statements[: steps * size]
    out = []
    for i in range(steps):
        enc = tokenizer(
            texts[i * size : (i + 1) * size], return_tensors="pt", padding=True, truncation=True, max_length=32
        )
        enc["labels"] = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        out.append(dict(enc))
    return out


def train_loop(
    folder: Path,
    tokenizer,
    steps: int,
    *,
    tracer: LiveTracer | None = None,
    save_root: Path | None = None,
    mid_step: int | None = None,
) -> tuple[list[float], dict[str, torch.Tensor], list[float]]:
    """A plain PyTorch loop (AdamW, dropout on) that draws from every RNG; traced at every step when given a tracer.

    Returns the losses, the final weights and the draws of Python's and NumPy's RNGs.
    """
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.train()
    optim = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses, draws = [], []

    def checkpoint(step: int) -> None:
        if tracer is None:
            return
        saved = None
        if save_root is not None:
            saved = save_root / f"step{step}"
            model.save_pretrained(saved)
            tokenizer.save_pretrained(saved)
        rng = torch.get_rng_state()
        tracer.on_checkpoint(model, tokenizer, step, folder=saved)
        assert torch.equal(rng, torch.get_rng_state()) and model.training

    checkpoint(0)
    for step, batch in enumerate(_batches(tokenizer, steps), start=1):
        loss = model(**batch).loss
        loss.backward()
        if tracer is not None and step == mid_step:  # between backward and step: the gradients stay as they are
            grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
            tracer.on_checkpoint(model, tokenizer, 10_000 + step)
            assert all(torch.equal(grads[n], p.grad) for n, p in model.named_parameters() if p.grad is not None)
        optim.step()
        optim.zero_grad()
        losses.append(loss.item())
        draws += [random.random(), float(np.random.rand())]
        checkpoint(step)
    return losses, {k: v.detach().clone() for k, v in model.state_dict().items()}, draws


def test_training_with_the_tracer_is_bit_identical(tiny_models, tiny_tokenizer, dims, tmp_path):
    folder = tiny_models["gpt2"]  # GPT-2's dropout draws from torch's RNG at every step
    assert AutoModelForCausalLM.from_pretrained(folder).config.resid_pdrop > 0
    plain = train_loop(folder, tiny_tokenizer, 3)
    tracer = LiveTracer(tmp_path / "live", dimensions=dims, cache_dir=str(tmp_path / "cache"), **SETTINGS)
    traced = train_loop(folder, tiny_tokenizer, 3, tracer=tracer, mid_step=2)
    assert traced[0] == plain[0] and traced[2] == plain[2]
    assert plain[1].keys() == traced[1].keys() and all(torch.equal(plain[1][k], traced[1][k]) for k in plain[1])
    assert len(tracer.checkpoints) == 5  # steps 0-3 and the one between backward and step
    live = json.loads((tmp_path / "live" / "live.json").read_text())
    assert [c["step"] for c in live["checkpoints"]] == [0, 1, 10002, 2, 3] and live["package_version"]


def test_live_tables_equal_trace_of_the_saved_checkpoints(tiny_models, tiny_tokenizer, dims, tmp_path, monkeypatch):
    root = tmp_path / "ckpts"
    tracer = LiveTracer(tmp_path / "live", dimensions=dims, name=str(root), cache_dir=str(tmp_path / "c1"), **SETTINGS)
    train_loop(tiny_models["llama"], tiny_tokenizer, 2, tracer=tracer, save_root=root)
    live = tmp_path / "live"
    after = trace(
        str(root), out=tmp_path / "after", dimensions=dims, cache_dir=tmp_path / "c2", progress=False, **SETTINGS
    )  # reloads every checkpoint from disk
    assert_tables_close(live / "probes.csv", after.probes_csv, PROBE_COLUMNS)
    assert_tables_close(live / "mi.csv", after.mi_csv, MI_COLUMNS)
    assert [r["revision"] for r in _rows(live / "probes.csv")][::12] == ["step0", "step1", "step2"]
    f_live = json.loads((live / "findings.json").read_text())
    f_after = json.loads(after.findings_json.read_text())
    for key in ("learned", "mi_turns", "summary"):
        assert json.dumps(f_live[key], sort_keys=True) == json.dumps(f_after[key], sort_keys=True)

    def no_load(*args, **kwargs):
        raise AssertionError("trace loaded a checkpoint that was traced live")

    monkeypatch.setattr(trace_mod, "load_checkpoint", no_load)
    again = trace(str(root), out=live, dimensions=dims, cache_dir=tmp_path / "c3", progress=False, **SETTINGS)
    assert again.probes_csv.read_bytes() == (tmp_path / "after" / "probes.csv").read_bytes()


def test_early_warning_on_a_planted_drop(tiny_models, tiny_tokenizer, tmp_path, caplog):
    from scipy.stats import binomtest

    from tracing_bench.files import unpack_bits

    csv_path = write_planted_dimension(tmp_path / "planted.csv")
    tracer = LiveTracer(
        tmp_path / "live",
        dimensions=str(csv_path),
        layers="0,2",
        probes="logistic",
        stop_on_drop=True,
        device="cpu",
        dtype="float32",
        threads=1,
        cache_dir=str(tmp_path / "c"),
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_models["llama"])
    first = tracer.on_checkpoint(model, tiny_tokenizer, 0)
    assert not first.warnings and not first.should_stop and first.figures["trace/drops"] == 0
    with torch.no_grad():
        model.get_input_embeddings().weight.zero_()  # every statement now looks the same to the blocks
    second = tracer.on_checkpoint(model, tiny_tokenizer, 1)
    assert second.should_stop and second.figures["trace/drops"] == 2 and len(second.warnings) == 2
    assert "step0" in second.warnings[0] and "fell" in second.warnings[0]
    assert "early warning at step 1" in caplog.text
    # the p-value is an exact two-sided binomial test on the discordant statements, Holm over the two layers
    drops = json.loads((tmp_path / "live" / "live.json").read_text())["checkpoints"][-1]["early_warning"]
    parts = tracer.parts[tracer.datas[0].name]
    for t in drops["tests"]:
        n = t["n_test"]
        bits = [
            unpack_bits(next(r for r in parts[c]["probes"] if r["layer"] == t["layer"])["test_correct"], n)
            for c in ("step0", "step1")
        ]
        b, c = int((bits[0] & ~bits[1]).sum()), int((~bits[0] & bits[1]).sum())
        p = binomtest(min(b, c), b + c, 0.5).pvalue
        assert t["p_value"] == pytest.approx(min(1.0, p), rel=1e-9)
        assert t["p_holm"] <= min(1.0, 2 * t["p_value"]) + 1e-12 and t["change"] < -0.3


def test_bad_input_is_one_line(tiny_models, tiny_tokenizer, dims, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_models["llama"])
    tracer = LiveTracer(tmp_path / "live", dimensions=dims, layers="0,7", device="cpu", threads=1)
    for call, says in (
        (lambda: tracer.on_checkpoint(model, tiny_tokenizer, -1), "step -1"),
        (lambda: tracer.on_checkpoint(model, tiny_tokenizer, 3), "--layers 7"),
        (lambda: tracer.on_checkpoint(model, tiny_tokenizer, 3, folder=tmp_path / "step4"), "step 4"),
    ):
        with pytest.raises(TracingBenchError, match=says) as e:
            call()
        assert "\n" not in str(e.value)
    with pytest.raises(TracingBenchError, match="alpha"):
        LiveTracer(tmp_path / "x", dimensions=dims, alpha=2.0)
    model.get_input_embeddings().weight.ds_id = 0  # how DeepSpeed ZeRO-3 marks a partitioned parameter
    with pytest.raises(TracingBenchError, match="sharded .FSDP or DeepSpeed ZeRO-3.") as e:
        tracer.on_checkpoint(model, tiny_tokenizer, 3)
    assert "\n" not in str(e.value) and not (tmp_path / "live" / "live.json").exists()
    assert model.training is False  # from_pretrained's eval mode, left as it was


def test_pretrain_traces_live_with_identical_weights_and_the_tables_of_trace(dims, tmp_path, monkeypatch):
    from click.testing import CliRunner
    from safetensors.torch import load_file

    from tracing_bench import pretrain as pt
    from tracing_bench.cli import main

    tiny = dict(
        steps=4,
        hidden_size=32,
        layers=2,
        heads=2,
        intermediate_size=64,
        vocab_size=400,
        seq_len=32,
        batch_size=8,
        lr=1e-2,
        warmup=0,
        threads=1,
    )
    plain = pt.pretrain(pt.PretrainConfig(**tiny), tmp_path / "plain", progress=False)
    root = tmp_path / "run"
    tracer = LiveTracer(tmp_path / "live", dimensions=dims, name=str(root), cache_dir=str(tmp_path / "c1"), **SETTINGS)
    live = pt.pretrain(pt.PretrainConfig(**tiny), root, progress=False, on_checkpoint=tracer.on_checkpoint)
    assert [f.name for f in live] == [f.name for f in plain] == ["step0", "step1", "step2", "step4"]
    for a, b in zip(plain, live, strict=True):
        wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    losses = [json.loads((f.parent / pt.META_FILE).read_text())["losses"] for f in (plain[0], live[0])]
    assert losses[0] == losses[1]
    assert [c.label for c in tracer.checkpoints] == ["step0", "step1", "step2", "step4"]
    after = trace(
        str(root), out=tmp_path / "after", dimensions=dims, cache_dir=tmp_path / "c2", progress=False, **SETTINGS
    )
    assert_tables_close(tmp_path / "live" / "probes.csv", after.probes_csv, PROBE_COLUMNS)
    assert_tables_close(tmp_path / "live" / "mi.csv", after.mi_csv, MI_COLUMNS)
    # the command line: `tracing-bench pretrain --trace-out` (--fast with the tiny sizes), the same tables again
    monkeypatch.setattr(pt.PretrainConfig, "fast", classmethod(lambda cls, **kw: cls(**{**tiny, **kw})))
    args = [
        "pretrain",
        "--out",
        str(tmp_path / "cli"),
        "--fast",
        "--steps",
        "4",
        "--quiet",
        "--threads",
        "1",
        "--trace-out",
        str(tmp_path / "cli_trace"),
        "--dimensions",
        dims,
        "--mi",
    ]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "traced 4 checkpoints while training" in first.output
    rows = _rows(tmp_path / "cli_trace" / "probes.csv")
    assert len(rows) == 4 * 2 * 2 * 2 and {r["model"] for r in rows} == {str(tmp_path / "cli")}
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0 and "nothing traced live (the run was reused)" in second.output


DDP_LIMIT_S = 180  # the two ranks take about 15 s alone, 40 s on a loaded machine


def _ddp_worker(rank: int, world: int, init: str, model_dir: str, dim_csv: str, out: str, report: str) -> None:
    """One DDP rank (gloo, CPU): trace a good checkpoint, then a planted drop with stop_on_drop."""
    import faulthandler

    import torch.distributed as dist
    from transformers import AutoTokenizer

    stacks = open(report.format(rank) + ".stacks", "w")
    faulthandler.dump_traceback_later(DDP_LIMIT_S - 30, exit=True, file=stacks)  # a hung rank says where

    # a stuck collective fails after two minutes instead of holding the suite (gloo's default is 30)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world, timeout=timedelta(seconds=120))
    try:
        torch.set_num_threads(1)
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        tok = AutoTokenizer.from_pretrained(model_dir)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        tracer = LiveTracer(
            out,
            dimensions=dim_csv,
            layers="0",
            probes="logistic",
            stop_on_drop=True,
            device="cpu",
            dtype="float32",
            threads=1,
            cache_dir=str(Path(out) / "cache"),
        )
        first = tracer.on_checkpoint(ddp.module, tok, 0)
        with torch.no_grad():
            model.get_input_embeddings().weight.zero_()
        second = tracer.on_checkpoint(ddp.module, tok, 1)
        if rank == 0:  # rank 0 fails at the next checkpoint: the waiting rank is released with the failure
            model.get_input_embeddings().weight.ds_id = 0
        try:
            tracer.on_checkpoint(ddp.module, tok, 2)
            failure = ""
        except TracingBenchError as e:
            failure = str(e)
        Path(report.format(rank)).write_text(
            json.dumps(
                {
                    "traced": [first.traced, second.traced],
                    "stop": [first.should_stop, second.should_stop],
                    "n_warnings": len(second.warnings),
                    "failure": failure,
                }
            )
        )
    finally:
        # DDP's reducer goes before its process group: torn down after it, with the frame, a rank
        # hung in CI (its stack: inside the spawned function's return, no Python frame below)
        ddp = None
        gc.collect()
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # the report is written: no interpreter teardown left to hang in


@pytest.mark.slow
def test_ddp_rank_0_traces_and_every_rank_gets_the_stop(tiny_models, tmp_path):
    import torch.multiprocessing as mp

    csv_path = write_planted_dimension(tmp_path / "planted.csv")
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.spawn(
        _ddp_worker,
        nprocs=2,
        join=False,
        args=(
            2,
            f"tcp://127.0.0.1:{port}",
            str(tiny_models["llama"]),
            str(csv_path),
            str(tmp_path / "live"),
            str(tmp_path / "rank{}.json"),
        ),
    )
    deadline = time.monotonic() + DDP_LIMIT_S
    try:
        while not ctx.join(timeout=5):
            if time.monotonic() > deadline:
                for p in ctx.processes:
                    p.kill()
                raise TimeoutError(f"DDP ranks still running after {DDP_LIMIT_S} s")
    except Exception as e:  # a hung or dead rank: fail with where each rank was
        stacks = "\n".join(f.read_text() for f in sorted(tmp_path.glob("rank*.json.stacks")))
        pytest.fail(f"{e}\nstacks of the ranks:\n{stacks}")
    got = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert got[0]["traced"] == [True, True] and got[1]["traced"] == [False, False]
    assert got[0]["stop"] == got[1]["stop"] == [False, True]  # rank 0's decision reached rank 1
    assert got[0]["n_warnings"] == 1 and got[1]["n_warnings"] == 0
    assert "sharded" in got[0]["failure"] and "failed on rank 0" in got[1]["failure"] and "sharded" in got[1]["failure"]
    live = json.loads((tmp_path / "live" / "live.json").read_text())
    assert [c["step"] for c in live["checkpoints"]] == [0, 1]  # written once, by rank 0


def test_live_scoring_equals_lm_eval_on_the_saved_checkpoint_and_leaves_training_unchanged(
    tiny_models, tiny_tokenizer, dims, tmp_path
):
    from tracing_bench.evaluate import run_eval
    from tracing_bench.live_scoring import LiveScorer
    from tracing_bench.results import task_scores

    folder = tiny_models["gpt2"]
    plain = train_loop(folder, tiny_tokenizer, 2)
    scorer = LiveScorer("trust_privacy", limit=4, batch_size=4)
    tracer = LiveTracer(
        tmp_path / "live",
        dimensions=dims.split(",")[0],
        layers="0",
        probes="logistic",
        cache_dir=str(tmp_path / "c"),
        device="cpu",
        dtype="float32",
        threads=1,
        scorer=scorer,
    )
    traced = train_loop(folder, tiny_tokenizer, 2, tracer=tracer, save_root=tmp_path / "ckpts")
    assert (
        traced[0] == plain[0]
        and traced[2] == plain[2]
        and all(torch.equal(plain[1][k], traced[1][k]) for k in plain[1])
    )
    last = json.loads((tmp_path / "live" / "live.json").read_text())["checkpoints"][-1]
    run = run_eval(
        {"pretrained": str(tmp_path / "ckpts" / "step2"), "dtype": "float32"},
        tasks="trust_privacy",
        output_path=tmp_path / "results",
        limit=4,
        extra_args=["--batch_size", "4", "--device", "cpu"],
    )
    assert run is not None
    want = {(s.task, s.metric): s.value for s in task_scores(run.results)}
    got = {(s["task"], s["metric"]): s["value"] for s in last["scores"]}
    assert got.keys() == want.keys() and ("trust_privacy", "p_trust") in got
    assert all(got[k] == pytest.approx(want[k], abs=1e-6) for k in got)
    assert last["figures"]["score/trust_privacy/p_trust"] == pytest.approx(want[("trust_privacy", "p_trust")])
    with pytest.raises(TracingBenchError, match="not trust tasks"):
        LiveScorer("arc_easy")


def test_a_call_inside_autocast_traces_the_settings_dtype(tiny_models, tiny_tokenizer, dims, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_models["llama"], dtype=torch.float32)
    kw = dict(dimensions=dims, probes="logistic", device="cpu", dtype="float32", threads=1)
    plain = LiveTracer(tmp_path / "plain", **kw)
    plain.on_checkpoint(model, tiny_tokenizer, 1)
    inside = LiveTracer(tmp_path / "inside", **kw)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        inside.on_checkpoint(model, tiny_tokenizer, 1)
        assert torch.is_autocast_enabled("cpu")  # the loop's autocast is back on after the call
    assert (tmp_path / "plain" / "probes.csv").read_text() == (tmp_path / "inside" / "probes.csv").read_text()
