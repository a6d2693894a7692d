"""Threads that suit the load: the measurement, the choice, the setting, and --threads on the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner
from threadpoolctl import threadpool_info

import tracing_bench.threads as th
from tiny import write_small_dims
from tracing_bench.cache import cached_activations
from tracing_bench.cli import main
from tracing_bench.errors import TracingBenchError
from tracing_bench.probes.layers import probe_layers
from tracing_bench.trace import TraceSteps, trace


def _blas_threads() -> set[int]:
    return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


def test_check_threads():
    assert th.check_threads(None) is None and th.check_threads("") is None
    assert th.check_threads("3") == 3 and th.check_threads(2) == 2
    for bad in ("0", "-1", "two", "1.5", 0, True):
        with pytest.raises(TracingBenchError, match="--threads") as info:
            th.check_threads(bad)
        assert "\n" not in str(info.value)


def test_use_threads_sets_torch_and_blas_and_restores():
    before_torch, before_blas = torch.get_num_threads(), _blas_threads()
    with th.use_threads(3) as n:
        assert n == 3 and torch.get_num_threads() == 3
        assert _blas_threads() == {3}
    assert torch.get_num_threads() == before_torch and _blas_threads() == before_blas
    with pytest.raises(TracingBenchError):
        with th.use_threads(0):
            pass  # pragma: no cover


def test_default_threads_follows_the_busy_cores(monkeypatch):
    monkeypatch.setattr(th, "available_cores", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cases = [(0.0, None, 2), (0.05, None, 2), (0.9, None, 1), (1.0, None, 1), (3.5, None, 1), (0.0, 1, 1)]
    for busy, cap, want in cases:
        monkeypatch.setattr(th, "busy_cores", lambda interval=0.1, b=busy: b)
        assert th.default_threads(cap) == want, (busy, cap)
    monkeypatch.setattr(th, "available_cores", lambda: 16)
    monkeypatch.setattr(th, "busy_cores", lambda interval=0.1: 3.0)
    assert th.default_threads() == 13
    monkeypatch.setenv("OMP_NUM_THREADS", "4")  # a Ray worker's or a test session's setting caps it
    assert th.default_threads() == 4
    monkeypatch.setattr(th, "busy_cores", lambda interval=0.1: None)  # no /proc/stat: the load average
    monkeypatch.setattr(th.os, "getloadavg", lambda: (15.5, 0.0, 0.0))
    assert th.default_threads() == 1


def test_busy_cores_sees_a_job_that_just_started():
    if th.busy_cores(0.05) is None:
        pytest.skip("no /proc/stat here")
    spin = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 4: pass"])
    try:
        time.sleep(0.3)
        busy = th.busy_cores(0.3)
    finally:
        spin.kill()
        spin.wait()
    assert 0.6 <= busy <= th.available_cores() + 0.2  # the spinner's core, whatever else runs


def _recording_steps(seen: list, what=lambda: torch.get_num_threads()) -> TraceSteps:
    """The trace's own steps, each noting the thread settings it runs under before it runs."""

    def record(name, fn):
        def wrapped(*a, **k):
            seen.append((name, what()))
            return fn(*a, **k)

        return wrapped

    return TraceSteps(harvest=record("harvest", cached_activations), probe=record("probe", probe_layers))


def _trace_small(series_folder, tmp_path, dims: str, steps: TraceSteps, **settings) -> None:
    """The logistic probes of a small dimension over the three-checkpoint series, with ``steps``."""
    trace(
        str(series_folder),
        out=tmp_path / "o",
        dimensions=dims,
        probes="logistic",
        cache_dir=str(tmp_path / "cache"),
        progress=False,
        steps=steps,
        **settings,
    )


def test_trace_threads_reach_the_work(series_folder, tmp_path):
    seen: list[tuple[str, tuple[int, set[int]]]] = []
    dims = write_small_dims(tmp_path / "dims", 40, names=("fairness",))
    before = torch.get_num_threads()
    _trace_small(
        series_folder,
        tmp_path,
        dims,
        _recording_steps(seen, lambda: (torch.get_num_threads(), _blas_threads())),
        threads=2,
    )
    assert {s[0] for s in seen} == {"probe", "harvest"} and len(seen) == 6  # 3 checkpoints
    # threads=2 (--threads 2) reaches the harvest; probes of 40 statements are small work: one thread
    assert all(got == ((2, {2}) if name == "harvest" else (1, {1})) for name, got in seen), seen
    assert torch.get_num_threads() == before
    # the command line's --threads becomes these settings (the activations are cached by now)
    args = ["--model", str(series_folder), "--dimensions", dims, "--probes", "logistic", "--threads", "2"]
    res = CliRunner().invoke(
        main, ["trace", *args, "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "c")]
    )
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "c" / "trace.json").read_text())["settings"]["threads"] == 2


def test_threads_for_work_keeps_small_problems_on_one_thread(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert th.threads_for_work(None, 200 * 200 * 128.0) == 1  # the demo's nHSIC half-samples
    assert th.threads_for_work(None, 1500 * 1500 * 4096.0) is None  # a 7B model's: the idle cores
    assert th.threads_for_work(3, 1500 * 1500 * 4096.0) == 3  # --threads for large work
    assert th.threads_for_work(3, 200 * 200 * 128.0) == 1  # small work: one thread even with --threads
    monkeypatch.delenv("OMP_WAIT_POLICY")  # spinning OpenMP threads: one thread even for large work
    assert th.threads_for_work(None, 1500 * 1500 * 4096.0) == 1


def test_trace_without_threads_harvests_on_idle_cores_and_probes_small_problems_on_one(
    series_folder, tmp_path, monkeypatch
):
    monkeypatch.setattr(th, "available_cores", lambda: 2)
    monkeypatch.setattr(th, "busy_cores", lambda interval=0.1: 0.0)  # an idle 2-core machine
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    seen: list[tuple[str, int]] = []
    dims = write_small_dims(tmp_path / "dims", 40, names=("fairness",))
    _trace_small(series_folder, tmp_path, dims, _recording_steps(seen))
    assert sorted(set(seen)) == [("harvest", 2), ("probe", 1)], seen


def test_eval_and_sweep_threads_reach_the_work(monkeypatch, tmp_path):
    import tracing_bench.evaluate as evaluate_mod
    import tracing_bench.steering.sweep as sweep_mod

    seen = []
    monkeypatch.setattr(evaluate_mod, "run_lm_eval", lambda argv: seen.append((argv, torch.get_num_threads())))
    res = CliRunner().invoke(main, ["eval", "--threads", "3", "--model", "hf", "--limit", "2"])
    assert res.exit_code == 0, res.output
    assert len(seen) == 1 and seen[0][1] == 3
    assert seen[0][0][:4] == ["--model", "hf", "--limit", "2"]  # (eval may add its own defaults after)

    class _Res:
        best = {"best": {}}
        files: list = []

    monkeypatch.setattr(sweep_mod, "run_sweep", lambda *a, **k: seen.append(torch.get_num_threads()) or _Res())
    vec = tmp_path / "v.pt"
    vec.write_bytes(b"")
    res = CliRunner().invoke(
        main, ["steer", "sweep", "--model", "m", "--vector", str(vec), "--threads", "2", "--out", str(tmp_path / "s")]
    )
    assert res.exit_code == 0, res.output
    assert seen[-1] == 2 and torch.get_num_threads() == 1


@pytest.mark.parametrize("value", ["0", "-2", "many"])
@pytest.mark.parametrize(
    "args",
    [
        ["trace", "--model", "m", "--out", "o"],
        ["eval", "--model", "hf"],
        ["eval-series", "--model", "hf"],
        ["demo", "--out", "o"],
        ["steer", "extract", "--model", "m", "--dimension", "fairness", "--layer", "0", "--out", "v.pt"],
        ["steer", "sweep", "--model", "m", "--vector", "v.pt", "--out", "o"],
        [
            "steer",
            "correlate",
            "--model",
            "m",
            "--target",
            "t",
            "--dimension",
            "fairness",
            "--layer",
            "0",
            "--out",
            "o",
        ],
    ],
)
def test_bad_threads_one_line_exit_2(args, value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, [*args, "--threads", value])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --threads"), res.output
