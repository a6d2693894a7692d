"""Shared fixtures: tiny models, a checkpoint series, small datasets, a steering vector, real lm-eval results.

Everything is built here from configs and the bundled data (no download), once per session.
Test modules import helpers from the non-test modules beside them (``tiny``, ``fake_results``,
``fake_traces``, ``fake_data``), never from another test module.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models: one intra-op thread is as fast as two and immune to OpenMP stalls when the CPUs
# are shared (seen here: 250x slower tiny matmuls with two threads on a loaded machine). The
# variable reaches the lm_eval / accelerate subprocesses too.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from tiny import ARCHS, build_model, build_series, train_tokenizer


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread for the whole session (see OMP_NUM_THREADS above)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    return train_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, tiny_tokenizer) -> dict[str, Path]:
    """Folder of a saved tiny model per architecture: ``llama``, ``gpt_neox``, ``gpt2``."""
    root = tmp_path_factory.mktemp("models")
    return {arch: build_model(arch, tiny_tokenizer, root / arch) for arch in ARCHS}


@pytest.fixture(scope="session")
def tiny_llama(tiny_models) -> Path:
    return tiny_models["llama"]


@pytest.fixture(params=ARCHS)
def tiny_model(request, tiny_models) -> Path:
    """Each architecture in turn."""
    return tiny_models[request.param]


@pytest.fixture(scope="session")
def series_folder(tmp_path_factory, tiny_tokenizer) -> Path:
    """A folder of three checkpoints (``step0``, ``step10``, ``step100``: tiny Llamas, different seeds)."""
    return build_series(tmp_path_factory.mktemp("series"), tiny_tokenizer)


# ------------------------------------------------------------------ local Hugging Face cache
HF_SERIES_MODEL_ID = "local/tiny"
HF_SERIES_REVISIONS = ("step1", "step2")


@pytest.fixture(scope="session")
def _hf_cache_series_home(tmp_path_factory, tiny_tokenizer) -> Path:
    """Build, once per session, an HF_HOME whose hub cache holds ``local/tiny`` at two revisions.

    Layout (what ``huggingface_hub`` writes when it downloads):
    ``hub/models--local--tiny/refs/<rev>`` holds a 40-hex commit and
    ``hub/models--local--tiny/snapshots/<commit>/`` the model and tokenizer files. Each revision is
    a tiny Llama with different weights (seed = index of the revision).
    """
    import hashlib

    home = tmp_path_factory.mktemp("hf_home")
    repo = home / "hub" / ("models--" + HF_SERIES_MODEL_ID.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    for i, rev in enumerate(HF_SERIES_REVISIONS, start=1):
        commit = hashlib.sha1(f"{HF_SERIES_MODEL_ID}@{rev}".encode()).hexdigest()
        (repo / "refs" / rev).write_text(commit)
        build_model("llama", tiny_tokenizer, repo / "snapshots" / commit, seed=i)
    return home


@pytest.fixture
def hf_cache_series(_hf_cache_series_home, monkeypatch) -> tuple[str, list[str], Path]:
    """A model id with two revisions in an offline Hugging Face cache, for checkpoint series.

    Yields ``(model_id, revisions, hf_home)`` = ``("local/tiny", ["step1", "step2"], HF_HOME)``.
    The environment (HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE=1) points at that cache for this test
    and for subprocesses it starts; ``huggingface_hub.constants`` is patched too, so in-process
    ``from_pretrained("local/tiny", revision="step1")`` resolves from it without network.
    """
    import huggingface_hub.constants as hf_constants

    home = _hf_cache_series_home
    hub = str(home / "hub")
    for key, value in {
        "HF_HOME": str(home),
        "HF_HUB_CACHE": hub,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(hf_constants, "HF_HOME", str(home))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", hub)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    yield HF_SERIES_MODEL_ID, list(HF_SERIES_REVISIONS), home


# ------------------------------------------------------- real lm-eval results (leaderboard, gate, report)
@pytest.fixture(scope="session")
def lm_eval_results(tiny_models, tmp_path_factory) -> dict[str, Path]:
    """Folders written by real in-process lm-eval runs (``tracing_bench.evaluate.run_eval``) of the tiny Llama.

    ``base``: ``hf`` model, ``--tasks trust``, ``--limit 3``, ``--log_samples``;
    ``steered``: the same through ``trust-steered`` with a random vector at block 0 and alpha 40.
    Each folder holds ``<model>@main/results_<date>.json`` + ``samples_*.jsonl`` + the sidecar.
    """
    import torch

    import tracing_bench.models.steered  # noqa: F401  (registers trust-steered)
    from tracing_bench.evaluate import run_eval

    root = tmp_path_factory.mktemp("lm_eval_results")
    torch.manual_seed(0)
    vec = root / "worse.pt"
    torch.save(
        {
            "layers.0": {
                "steering_vector": torch.randn(32),
                "steering_coefficient": 1.0,
                "action": "add",
                "bias": None,
                "head_index": None,
            }
        },
        vec,
    )
    llama = tiny_models["llama"]
    runs = {
        "base": ("hf", f"pretrained={llama},dtype=float32"),
        "steered": ("trust-steered", f"pretrained={llama},dtype=float32,steer_path={vec},alpha=40"),
    }
    out: dict[str, Path] = {}
    for name, (model, args) in runs.items():
        run_eval(
            args,
            model=model,
            tasks="trust",
            limit=3,
            output_path=root / name,
            log_samples=True,
            extra_args=["--device", "cpu", "--batch_size", "8"],
        )
        out[name] = root / name
    return out


# ------------------------------------------------------------------ data and a steering vector
@pytest.fixture(scope="session")
def small_csv(tmp_path_factory) -> Path:
    """40 balanced fairness statements: extraction harvests 40 statements, not 3014."""
    import csv

    from tracing_bench.dimensions import load_dimension

    data = load_dimension("fairness")
    rows, seen = [], {0: 0, 1: 0}
    for s, y in zip(data.statements, data.labels, strict=True):
        if seen[int(y)] < 20:
            rows.append((s, int(y)))
            seen[int(y)] += 1
    path = tmp_path_factory.mktemp("data") / "fairness_small.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["statement", "label"])
        w.writerows(rows)
    return path


@pytest.fixture(scope="session")
def extracted(tiny_models, small_csv, tmp_path_factory) -> tuple[Path, Path]:
    """``tracing-bench steer extract`` on tiny Llama, layer 1, coefficient 4: (vector file, activation cache)."""
    from click.testing import CliRunner

    from tracing_bench.cli import main

    out = tmp_path_factory.mktemp("vec") / "fair_l1.pt"
    cache = tmp_path_factory.mktemp("cache")
    res = CliRunner().invoke(
        main,
        [
            "steer",
            "extract",
            "--model",
            str(tiny_models["llama"]),
            "--dimension",
            "fairness",
            "--layer",
            "1",
            "--coefficient",
            "4",
            "--data",
            str(small_csv),
            "--device",
            "cpu",
            "--cache-dir",
            str(cache),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    return out, cache


# ------------------------------------------------------------------ a local hub (tests/hub_server.py)
LOCAL_HUB_REVISIONS = ("step1000-tokens4B", "step2000-tokens8B", "step3000-tokens12B")


@pytest.fixture(scope="session")
def _local_hub_folders(tmp_path_factory, tiny_tokenizer) -> dict[str, Path]:
    """One tiny Llama per revision of ``local/olmo-tiny`` (seed = index), built once per session."""
    root = tmp_path_factory.mktemp("hub_repo")
    return {
        rev: build_model("llama", tiny_tokenizer, root / rev, seed=i)
        for i, rev in enumerate(LOCAL_HUB_REVISIONS, start=1)
    }


@pytest.fixture
def local_hub(_local_hub_folders, tmp_path, monkeypatch):
    """A started :class:`hub_server.LocalHub` serving ``local/olmo-tiny`` at three OLMo-named revisions.

    ``huggingface_hub`` in this process points at it (endpoint, URL template, the module-level
    ``HfApi``), online, with an empty cache under ``tmp_path/hf``; ``HF_ENDPOINT``, ``HF_HOME`` and
    ``HF_HUB_OFFLINE=0`` are set for subprocesses too. Stopped after the test.
    """
    import huggingface_hub.constants as c
    import huggingface_hub.hf_api as hf_api

    from hub_server import LocalHub

    hub = LocalHub()
    for rev, folder in _local_hub_folders.items():
        hub.add_revision("local/olmo-tiny", rev, folder)
    hub.start()
    home = tmp_path / "hf"
    for key, value in {
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(c, "ENDPOINT", hub.url)
    monkeypatch.setattr(c, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(c, "HF_HOME", str(home))
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_api.api, "endpoint", hub.url)
    import transformers.utils.hub as tf_hub

    # transformers keeps one HfApi made with the endpoint of its first use: an earlier test's hub
    # (a closed port, retried with backoff for about 23 s per call) or huggingface.co
    monkeypatch.setattr(tf_hub, "_hf_api", None, raising=False)
    yield hub
    hub.stop()
