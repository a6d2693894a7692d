"""tracing-bench eval data-parallel under `accelerate launch` on CPU processes, and parallelize=True on CPU."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

from tracing_bench.evaluate import run_eval

LIMIT = 8
#: A trust_fairness document is a CrowS-Pairs pair: 2 sentences x 2 choices + 2 sentence log-likelihoods.
REQUESTS_PER_DOC = 6


def _score(run) -> float:
    return run.results["results"]["trust_fairness"]["acc,none"]


@pytest.fixture(scope="module")
def single(tiny_models, tmp_path_factory):
    """The reference: one process, trust-hf, --limit 8 (8 pair documents x 6 = 48 requests)."""
    out = tmp_path_factory.mktemp("single")
    return run_eval(
        f"pretrained={tiny_models['llama']},dtype=float32",
        model="trust-hf",
        tasks="trust_fairness",
        output_path=out,
        limit=LIMIT,
        log_samples=True,
        extra_args=["--device", "cpu"],
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_accelerate_launch_two_cpu_processes_split_the_requests(tiny_models, single, tmp_path):
    # `accelerate launch --cpu --num_processes 2` starts ONE process unless an MPI hostfile is given;
    # two CPU processes come from the torchrun-based launcher with ACCELERATE_USE_CPU=1 (gloo).
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "0",
        "-m",
        "tracing_bench",
        "eval",
        "--model",
        "trust-hf",
        "--model_args",
        f"pretrained={tiny_models['llama']},dtype=float32",
        "--tasks",
        "trust_fairness",
        "--limit",
        str(LIMIT),
        "--log_samples",
        "--output_path",
        str(tmp_path),
    ]
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=280)
    if proc.returncode != 0 and "terminate called without an active exception" in proc.stderr:
        # seen once in a CI-like run: a rank aborted in teardown after scoring its share (gloo's
        # threads, not our code); one retry keeps the assertion on the shares and scores below
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=280)
    if proc.returncode != 0 and "data parallel: process" not in proc.stderr:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        pytest.skip(f"accelerate could not start two CPU processes here: {tail[0]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    shares = {int(r): int(n) for r, n in re.findall(r"process (\d) of 2 scores (\d+) loglikelihood", proc.stderr)}
    half = LIMIT * REQUESTS_PER_DOC // 2
    assert shares == {0: half, 1: half}, proc.stderr[-3000:]  # 48 requests, 24 per process (1 process: 48)
    [folder] = [p for p in tmp_path.iterdir() if p.is_dir()]
    results = list(folder.glob("results_*.json"))
    assert len(results) == 1  # rank 0 only
    import json

    got = json.loads(results[0].read_text())["results"]["trust_fairness"]
    ref = single.results["results"]["trust_fairness"]
    assert got["acc,none"] == ref["acc,none"] and got["chance_corrected,none"] == ref["chance_corrected,none"]
    samples = list(folder.glob("samples_trust_fairness_*.jsonl"))
    assert len(samples) == 1 and len(samples[0].read_text().splitlines()) == LIMIT  # gathered on rank 0


def test_parallelize_true_on_cpu_matches(tiny_models, single, tmp_path):
    """parallelize=True (device_map=auto; only the CPU here) gives the same scores as one device."""
    run = run_eval(
        f"pretrained={tiny_models['llama']},dtype=float32,parallelize=True",
        model="trust-hf",
        tasks="trust_fairness",
        output_path=tmp_path,
        limit=LIMIT,
        extra_args=["--device", "cpu"],
    )
    assert _score(run) == _score(single)


def _logliks(run) -> list:
    import json

    [path] = run.folder.glob("samples_trust_fairness_*.jsonl")
    rows = sorted((json.loads(line) for line in path.read_text().splitlines()), key=lambda r: r["doc_id"])
    return [r["filtered_resps"] for r in rows]


def test_trust_steered_parallelize_true_on_cpu(tiny_models, tmp_path):
    """trust-steered with parallelize=True: the vector is applied (log-likelihoods equal the unsharded run's)."""
    from tracing_bench.models.hf import DataParallelMixin
    from tracing_bench.models.steered import TrustSteeredModel

    torch.manual_seed(0)
    path = tmp_path / "v.pt"
    torch.save(
        {
            "layers.1": {
                "steering_vector": torch.randn(32) * 40,
                "steering_coefficient": 1.0,
                "action": "add",
                "bias": None,
                "head_index": None,
            }
        },
        path,
    )
    common = f"pretrained={tiny_models['llama']},dtype=float32,steer_path={path}"
    kw = dict(model="trust-steered", tasks="trust_fairness", limit=4, log_samples=True, extra_args=["--device", "cpu"])
    plain = run_eval(common, output_path=tmp_path / "a", **kw)
    split = run_eval(common + ",parallelize=True", output_path=tmp_path / "b", **kw)
    off = run_eval(common + ",parallelize=True,alpha=0", output_path=tmp_path / "c", **kw)
    assert _logliks(split) == _logliks(plain)
    assert _logliks(off) != _logliks(split)  # the vector is really added under parallelize=True
    assert issubclass(TrustSteeredModel, DataParallelMixin)
