"""Executors: a trace on a local Ray cluster equals the local one; a killed task is redone on resume."""

from __future__ import annotations

import os
import sys

import pytest
from click.testing import CliRunner

import tracing_bench.trace as trace_mod
from tiny import write_small_dims
from tracing_bench.checkpoints import Checkpoint
from tracing_bench.cli import main
from tracing_bench.executors import ExecutorSettings
from tracing_bench.settings import TraceSettings
from tracing_bench.trace import run_checkpoints, trace

try:
    import ray
except ImportError:  # pragma: no cover - make test installs it (the `test` extra)
    ray = None

needs_ray = pytest.mark.skipif(ray is None, reason="ray is not installed: pip install 'tracing-bench[ray]'")


@pytest.fixture(scope="module")
def ray_cluster():
    if ray is None:
        pytest.skip("ray is not installed: pip install 'tracing-bench[ray]'")
    # Test-module functions (the crash wrapper) must travel by value: workers cannot import tests/.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def dims(tmp_path_factory) -> str:
    """Two small statement,label CSVs (40 rows each), given as a comma list of paths."""
    return write_small_dims(tmp_path_factory.mktemp("dims"), 40)


@pytest.fixture(scope="module")
def local_tables(series_folder, dims, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    return trace(
        str(series_folder),
        out=out,
        dimensions=dims,
        layers="0,2",
        mi=True,
        batch_size=16,
        cache_dir=out / "cache",
        progress=False,
    )


KW = dict(layers="0,2", mi=True, batch_size=16, progress=False)


@pytest.fixture(scope="module")
def ray_cache(tmp_path_factory):
    """One activation cache for the Ray runs (harvested by Ray workers in the first test)."""
    return tmp_path_factory.mktemp("ray_cache")


def _crash_once(marker: str, label: str):
    """trace_checkpoint that kills its worker process (os._exit) the first time it sees ``label``."""
    original = trace_mod.trace_checkpoint

    def work(ckpt, *args, **kwargs):
        if ckpt.label == label and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)  # a dying worker: no exception, no cleanup
        return original(ckpt, *args, **kwargs)

    return work


def test_run_checkpoints_runs_the_work_passed_in(tmp_path):
    """The per-checkpoint step is a collaborator: what is passed runs, once per checkpoint, in order."""
    seen = []

    def work(ckpt, datas, settings, out, bar=None):
        seen.append((ckpt.label, datas, settings, out, bar))
        return []

    ckpts, settings = [Checkpoint("m", "step0"), Checkpoint("m", "step10")], TraceSettings()
    run_checkpoints(ckpts, ["d"], settings, tmp_path, ExecutorSettings("local"), bar="bar", work=work)
    assert seen == [("step0", ["d"], settings, tmp_path, "bar"), ("step10", ["d"], settings, tmp_path, "bar")]


@needs_ray
@pytest.mark.slow
def test_ray_trace_equals_local(ray_cluster, series_folder, dims, local_tables, ray_cache, tmp_path):
    out = tmp_path / "ray"
    got = trace(str(series_folder), out=out, dimensions=dims, cache_dir=ray_cache, executor="ray", **KW)
    for a, b in ((got.probes_csv, local_tables.probes_csv), (got.mi_csv, local_tables.mi_csv)):
        assert a.read_bytes() == b.read_bytes()


@needs_ray
@pytest.mark.slow
def test_killed_task_is_redone_on_resume(
    ray_cluster, series_folder, dims, local_tables, ray_cache, tmp_path, monkeypatch
):
    out, cache = tmp_path / "ray", ray_cache
    monkeypatch.setattr(trace_mod, "trace_checkpoint", _crash_once(str(tmp_path / "crashed"), "step10"))
    res = CliRunner().invoke(
        main,
        [
            "trace",
            "--model",
            str(series_folder),
            "--dimensions",
            dims,
            "--layers",
            "0,2",
            "--mi",
            "--batch-size",
            "16",
            "--cache-dir",
            str(cache),
            "--out",
            str(out),
            "--executor",
            "ray",
            "--max-retries",
            "0",
        ],
    )
    assert res.exit_code == 2, res.output
    line = next(ln for ln in res.output.splitlines() if ln.startswith("error:"))  # Ray logs to stderr too
    assert line.startswith("error: 1 of 3 Ray tasks failed: checkpoint step10:"), line
    assert "run the same command again to resume" in line
    assert not (out / "probes.csv").exists()
    parts = sorted((out / "parts").rglob("*.json"))
    assert len(parts) == 4 and not any(p.parent.name.startswith("step10-") for p in parts)  # step0, step100 finished
    mtimes = [p.stat().st_mtime_ns for p in parts]

    again = trace(str(series_folder), out=out, dimensions=dims, cache_dir=cache, executor="ray", **KW)
    assert [p.stat().st_mtime_ns for p in parts] == mtimes  # finished checkpoints were not recomputed
    assert len(list((out / "parts").rglob("*.json"))) == 6
    for a, b in ((again.probes_csv, local_tables.probes_csv), (again.mi_csv, local_tables.mi_csv)):
        assert a.read_bytes() == b.read_bytes()


@needs_ray
@pytest.mark.slow
def test_dead_worker_is_retried(ray_cluster, series_folder, dims, local_tables, ray_cache, tmp_path, monkeypatch):
    monkeypatch.setattr(trace_mod, "trace_checkpoint", _crash_once(str(tmp_path / "crashed"), "step0"))
    got = trace(
        str(series_folder),
        out=tmp_path / "ray",
        dimensions=dims,
        cache_dir=ray_cache,
        executor="ray",
        max_retries=1,
        **KW,
    )
    assert (tmp_path / "crashed").exists()  # it did die once
    assert got.probes_csv.read_bytes() == local_tables.probes_csv.read_bytes()


def test_ray_missing_is_one_line(series_folder, dims, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    res = CliRunner().invoke(
        main,
        ["trace", "--model", str(series_folder), "--dimensions", dims, "--out", str(tmp_path), "--executor", "ray"],
    )
    assert res.exit_code == 2
    assert res.output.strip() == (
        "error: --executor ray needs Ray, which is not installed: pip install 'tracing-bench[ray]'"
    )


def test_ray_options_need_ray_executor(series_folder, dims, tmp_path):
    res = CliRunner().invoke(
        main,
        ["trace", "--model", str(series_folder), "--dimensions", dims, "--out", str(tmp_path), "--gpus-per-task", "1"],
    )
    assert res.exit_code == 2 and "only apply to --executor ray" in res.output


# ------------------------------------------------------------------ evaluation over several revisions
def _eval_series_args(series_folder, out, *extra):
    return [
        "eval-series",
        "--model",
        "trust-hf",
        "--model_args",
        f"pretrained={series_folder},dtype=float32",
        "--tasks",
        "trust_fairness",
        "--limit",
        "4",
        "--device",
        "cpu",
        "--output_path",
        str(out),
        *extra,
    ]


def _scores(out):
    import json

    got = {}
    for folder in sorted(p for p in out.iterdir() if p.is_dir()):
        [results] = folder.glob("results_*.json")
        got[folder.name] = json.loads(results.read_text())["results"]["trust_fairness"]["acc,none"]
    return got


@needs_ray
@pytest.mark.slow
def test_eval_series_ray_equals_local(ray_cluster, series_folder, tmp_path):
    local = CliRunner().invoke(main, _eval_series_args(series_folder, tmp_path / "local"))
    assert local.exit_code == 0, local.output
    res = CliRunner().invoke(main, _eval_series_args(series_folder, tmp_path / "ray", "--executor", "ray"))
    assert res.exit_code == 0, res.output
    scores = _scores(tmp_path / "local")
    assert len(scores) == 3 and all(name.endswith("@main") for name in scores)  # one folder per checkpoint
    assert sorted(n.split("__")[-1] for n in scores) == ["step0@main", "step100@main", "step10@main"]
    assert _scores(tmp_path / "ray") == scores


def test_with_checkpoint_rewrites_model_args():
    from tracing_bench.evaluate import with_checkpoint

    argv = ["--model", "hf", "--model_args", "pretrained=a,revision=x,dtype=float32", "--limit", "2"]
    assert with_checkpoint(argv, "a", "step1")[3] == "pretrained=a,revision=step1,dtype=float32"
    assert with_checkpoint(["--model_args=pretrained=a"], "/f/step0", None) == ["--model_args=pretrained=/f/step0"]


def test_eval_series_needs_revisions(tiny_models):
    res = CliRunner().invoke(
        main, ["eval-series", "--model", "hf", "--model_args", f"pretrained={tiny_models['llama']}"]
    )
    assert res.exit_code == 2 and "needs several revisions" in res.output
