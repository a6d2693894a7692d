"""Hub downloads and disk: the real hub client against a local hub (refs, resume, failures, free space), ENOSPC."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracing_bench.checkpoints import list_revisions, parse_revisions


def test_olmo_range_resolved_from_the_servers_refs(local_hub):
    revs = parse_revisions("step1000-tokens*:step3000-tokens*:2000", model="local/olmo-tiny")
    assert revs == ["step1000-tokens4B", "step3000-tokens12B"]
    assert local_hub.requests("GET", "/api/models/local/olmo-tiny/refs")  # asked the server, not a cache
    assert list_revisions("local/olmo-tiny") == sorted(local_hub.repos["local/olmo-tiny"])


def test_a_download_cut_halfway_resumes_with_a_range_request(local_hub, monkeypatch):
    import huggingface_hub.constants as c
    from huggingface_hub import snapshot_download

    monkeypatch.setattr(c, "DOWNLOAD_CHUNK_SIZE", 8192)  # the client counts bytes per chunk it has read
    rev = local_hub.revision("local/olmo-tiny", "step2000-tokens8B")
    size = rev.files["model.safetensors"].stat().st_size
    local_hub.cut_once(rev.name, "model.safetensors", size // 2)
    folder = snapshot_download("local/olmo-tiny", revision=rev.name)
    got = (Path(folder) / "model.safetensors").read_bytes()
    assert got == rev.files["model.safetensors"].read_bytes()
    gets = local_hub.requests("GET", "model.safetensors")
    assert [g[2] for g in gets] == [200, 206], gets
    start = int(gets[1][3].removeprefix("bytes=").split("-")[0])
    assert 0 < start <= size // 2  # resumed from what had arrived, not from zero


def test_a_failing_revision_is_an_error_naming_it(local_hub):
    from tracing_bench.checkpoints import Checkpoint
    from tracing_bench.errors import TracingBenchError
    from tracing_bench.loading import load_checkpoint

    local_hub.fail["step3000-tokens12B"] = 404
    with pytest.raises(TracingBenchError, match="step3000-tokens12B"):
        load_checkpoint(Checkpoint("local/olmo-tiny", "step3000-tokens12B"), dtype="float32", device="cpu")


def test_a_checkpoint_that_cannot_fit_is_one_line_before_any_download(local_hub, tmp_path, monkeypatch):
    from collections import namedtuple

    from click.testing import CliRunner

    import tracing_bench.downloads as downloads
    from tracing_bench.checkpoints import Checkpoint
    from tracing_bench.cli import main

    rev = local_hub.revision("local/olmo-tiny", "step1000-tokens4B")
    size = sum(p.stat().st_size for p in rev.files.values())
    assert downloads.check_free_space(Checkpoint("local/olmo-tiny", rev.name)) == size  # nothing cached yet
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(downloads.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - size // 2, size // 2))
    res = CliRunner().invoke(
        main,
        [
            "trace",
            "--model",
            "local/olmo-tiny",
            "--revisions",
            rev.name,
            "--dimensions",
            "fairness",
            "--max-statements",
            "60",
            "--device",
            "cpu",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert res.exit_code == 2, res.output
    line = res.output.strip().splitlines()[-1]
    assert "--delete-checkpoints" in line and rev.name in line and str(tmp_path / "hf" / "hub") in line, line
    assert not local_hub.requests("GET", "/resolve/")  # nothing downloaded


def _half_then_enospc(path, text_or_bytes):
    import errno

    mode = "wb" if isinstance(text_or_bytes, bytes) else "w"
    with open(path, mode) as f:
        f.write(text_or_bytes[: len(text_or_bytes) // 2])
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


def test_enospc_while_writing_a_part_or_a_cache_entry_leaves_no_half_file(tmp_path, monkeypatch):
    import builtins
    import errno

    import safetensors.torch
    import torch

    import tracing_bench.files as files
    from tracing_bench.cache import ActivationCache
    from tracing_bench.parts import write_part

    part = tmp_path / "parts" / "fairness.json"
    write_part(part, {"dataset_md5": "old"})
    real_open = builtins.open

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, text):
            self.f.write(text[: len(text) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "open", lambda *a, **k: Full(real_open(*a, **k)), raising=False)
    with pytest.raises(OSError, match="No space"):
        write_part(part, {"dataset_md5": "new", "rows": ["x" * 1000]})
    monkeypatch.undo()
    assert part.read_text() == '{\n "dataset_md5": "old"\n}'  # the old part, whole
    assert sorted(p.name for p in part.parent.iterdir()) == ["fairness.json"]  # no temporary left

    monkeypatch.setattr(
        safetensors.torch, "save_file", lambda tensors, path, metadata=None: _half_then_enospc(path, b"\0" * 4096)
    )
    cache = ActivationCache(tmp_path / "cache")
    with pytest.raises(OSError, match="No space"):
        cache.save({"model": "m"}, torch.zeros(2, 3, 4), {})
    assert list((tmp_path / "cache" / "activations").iterdir()) == []  # neither tensor nor sidecar
    assert cache.load({"model": "m"}) is None


def test_trace_json_stage_seconds_add_up_to_the_wall_time(series_folder, tmp_path):
    import json
    import time

    from tracing_bench.trace import trace

    began = time.perf_counter()
    res = trace(
        str(series_folder),
        out=tmp_path / "out",
        cache_dir=tmp_path / "cache",
        dimensions="fairness",
        layers="0,2",
        mi=True,
        max_statements=80,
        mi_noise=0,
        progress=False,
    )
    wall = time.perf_counter() - began
    timings = json.loads(res.trace_json.read_text())["timings"]
    stages = timings["stages"]
    assert {"setup", "threads", "load", "harvest", "probe", "mi", "write", "merge"} <= set(stages), stages
    assert [c["checkpoint"] for c in timings["checkpoints"]] == ["step0", "step10", "step100"]
    assert abs(sum(stages.values()) - wall) <= 0.05 * wall, (sum(stages.values()), wall, stages)


@pytest.mark.slow
def test_console_script_traces_a_hub_series_and_deletes_each_checkpoint(local_hub, tmp_path):
    import csv
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    script = Path(sys.executable).with_name("tracing-bench")
    out = tmp_path / "out"
    res = subprocess.run(
        [
            str(script),
            "trace",
            "--model",
            "local/olmo-tiny",
            "--revisions",
            "step1000-tokens*:step3000-tokens*:1000",
            "--dimensions",
            "fairness",
            "--layers",
            "0",
            "--max-statements",
            "60",
            "--device",
            "cpu",
            "--delete-checkpoints",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    with open(out / "probes.csv", newline="") as f:
        assert sorted({r["revision"] for r in csv.DictReader(f)}) == list(LOCAL_HUB_REVS)
    assert local_hub.requests("GET", "/api/models/local/olmo-tiny/refs")
    assert len(local_hub.requests("GET", "/model.safetensors")) == 3  # each revision downloaded once
    snapshots = tmp_path / "hf" / "hub" / "models--local--olmo-tiny" / "snapshots"
    assert not snapshots.is_dir() or not any(snapshots.iterdir())  # every checkpoint deleted after use


LOCAL_HUB_REVS = ("step1000-tokens4B", "step2000-tokens8B", "step3000-tokens12B")
