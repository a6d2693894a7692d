"""A hub series at the pace of its slowest resource: prefetch, retried downloads, the progress line, timings."""

from __future__ import annotations

import csv
import io
import json
import random
import shutil
import statistics
import threading
import time
from pathlib import Path

import pytest

from tracing_bench.downloads import files_to_fetch
from tracing_bench.progress import SeriesProgress, format_seconds, series_eta

REVS = ("step1000-tokens4B", "step2000-tokens8B", "step3000-tokens12B")
SMALL = {
    "dimensions": "fairness",
    "layers": "0",
    "max_statements": 60,
    "mi_noise": 0,
    "controls": False,
    "baseline": "none",
    "device": "cpu",
    "progress": False,
}


# ------------------------------------------------------------------------------- the time left
def test_series_eta_is_the_mean_completed_checkpoint_times_those_left():
    rng = random.Random(0)
    for _ in range(200):
        done = [rng.uniform(0.5, 60) for _ in range(rng.randint(1, 8))]
        total = len(done) + rng.randint(0, 10)
        elapsed = rng.uniform(0, 90)
        mean = statistics.fmean(done)
        left = total - len(done)
        expected = 0.0 if left == 0 else (left - 1) * mean + max(0.0, mean - elapsed)
        assert series_eta(done, total, elapsed) == pytest.approx(expected, rel=1e-12, abs=1e-12)
        settled = rng.randint(0, 3)  # resumed or failed: done, not in the mean
        left = max(total - len(done) - settled, 0)
        expected = 0.0 if left == 0 else (left - 1) * mean + max(0.0, mean - elapsed)
        assert series_eta(done, total, elapsed, settled) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert series_eta([], 5) is None  # no checkpoint completed: no estimate
    assert series_eta([], 5, settled=2) is None  # resumed ones say nothing about the time of the rest
    assert series_eta([3.0, 5.0], 2) == 0.0


def test_progress_line_shows_checkpoint_label_stage_and_time_left():
    out = io.StringIO()
    progress = SeriesProgress(4, stream=out, live=True)
    progress.begin(0, "step1000")
    progress.stage("download")
    assert "trace 1/4 step1000: download" in out.getvalue() and "no estimate yet" in out.getvalue()
    progress.end(10.0)
    progress.begin(1, "step2000")
    progress.end(20.0)
    progress.begin(2, "step3000")
    progress.stage("harvest")
    progress.set_postfix_str("step3000 fairness")
    progress.stage("probe")
    line = progress.line()
    assert line.startswith("trace 3/4 step3000: probe fairness | 2 done, 15 s each, about ")
    left = line.rsplit("about ", 1)[1].removesuffix(" left")
    assert left in {format_seconds(15.0 + 15.0 - e) for e in (0, 1)}  # mean 15 s: this one's rest and one more
    progress.note("skipped: revision x")
    progress.close()

    resumed = SeriesProgress(5, stream=io.StringIO(), live=True)  # resumed checkpoints take ~0 s: not in the mean
    resumed.begin(0, "step0")
    resumed.end(0.01, resumed=True)
    resumed.begin(1, "step1")
    assert resumed.line().endswith("| 1 done, no estimate yet")
    resumed.end(12.0)
    resumed.begin(2, "step2")
    line = resumed.line()
    assert "| 2 done, 12 s each, about " in line
    left = line.rsplit("about ", 1)[1].removesuffix(" left")
    assert left in {format_seconds(2 * 12.0 + 12.0 - e) for e in (0, 1)}  # 3 left: this one's rest and two more
    assert "skipped: revision x\n" in out.getvalue() and out.getvalue().endswith("\n")

    ray = io.StringIO()  # checkpoints run elsewhere: only what is done, counted in dimensions
    progress = SeriesProgress(3, stream=ray, live=True, units=2)
    progress.update(2)
    progress.update(2)
    assert ray.getvalue().rsplit("\r", 1)[-1].strip() == "trace: 2/3 checkpoints done"

    plain = io.StringIO()  # not a terminal: no progress line (an error stays the only line), notes only
    progress = SeriesProgress(2, stream=plain, live=False)
    progress.begin(0, "a")
    progress.stage("load")
    progress.end(1.0)
    progress.begin(1, "b")
    progress.note("skipped: b")
    progress.close()
    assert plain.getvalue() == "skipped: b\n"


def test_only_what_from_pretrained_reads_is_fetched():
    names = [
        "config.json",
        "tokenizer.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "original/consolidated.00.pth",
        "README.md",
    ]
    got = files_to_fetch(names)
    assert sorted(got) == sorted(
        [
            "config.json",
            "tokenizer.json",
            "model.safetensors.index.json",
            "README.md",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
        ]
    )
    assert "pytorch_model.bin" in files_to_fetch(["config.json", "pytorch_model.bin", "training_args.bin"])
    assert "training_args.bin" not in files_to_fetch(["config.json", "pytorch_model.bin", "training_args.bin"])


# ------------------------------------------------------------------------------- against the local hub
def _revisions(out: Path) -> list[str]:
    with open(out / "probes.csv", newline="") as f:
        return sorted({r["revision"] for r in csv.DictReader(f)})


def _file_gets(hub, rev: str, filename: str = "") -> list[int]:
    """Statuses of the file downloads of one revision (the client names it by name or by commit)."""
    commit = hub.revision("local/olmo-tiny", rev).commit
    return [
        r[2]
        for r in hub.requests("GET", "/resolve/")
        if (f"/{rev}/" in r[1] or f"/{commit}/" in r[1]) and r[1].endswith("/" + filename if filename else "")
    ]


class CacheWatch:
    """Count the revisions in the Hugging Face cache (snapshot folders) every few ms while a trace runs."""

    def __init__(self, snapshots: Path) -> None:
        self.snapshots, self.most, self.seen = snapshots, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                n = sum(1 for _ in self.snapshots.iterdir()) if self.snapshots.is_dir() else 0
            except FileNotFoundError:
                continue
            self.most, self.seen = max(self.most, n), self.seen + 1
            time.sleep(0.002)

    def __enter__(self) -> CacheWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.parametrize("prefetch, on_disk", [(True, 2), (False, 1)])
def test_delete_checkpoints_bounds_the_cache_and_stage_seconds_add_up(local_hub, tmp_path, prefetch, on_disk):
    from tracing_bench.trace import trace

    snapshots = tmp_path / "hf" / "hub" / "models--local--olmo-tiny" / "snapshots"
    with CacheWatch(snapshots) as watch:
        began = time.perf_counter()
        res = trace(
            "local/olmo-tiny",
            ",".join(REVS),
            out=tmp_path / "out",
            cache_dir=tmp_path / "cache",
            delete_checkpoints=True,
            prefetch=prefetch,
            **SMALL,
        )
        wall = time.perf_counter() - began
    assert res.failed == {} and _revisions(tmp_path / "out") == sorted(REVS)
    assert watch.seen > 100 and watch.most == on_disk  # with prefetch: the one traced and the next, never more
    assert not snapshots.is_dir() or not any(snapshots.iterdir())  # each deleted after use
    assert len(local_hub.requests("GET", "/model.safetensors")) == 3  # fetched once; from_pretrained found it cached

    timings = json.loads(res.trace_json.read_text())["timings"]
    stages = timings["stages"]
    assert abs(sum(stages.values()) - wall) <= 0.05 * wall, (sum(stages.values()), wall, stages)
    assert {"load", "harvest", "probe", "delete"} <= set(stages), stages
    if prefetch:  # the download overlaps the compute: background seconds, and a foreground wait
        assert "wait" in stages and "download" not in stages
        assert timings["background"]["download"] > 0
        assert [bool(c.get("background")) for c in timings["checkpoints"]] == [True, True, True]
    else:
        assert "download" in stages and "wait" not in stages and not timings["background"]


def test_a_revision_that_always_fails_is_one_line_and_the_others_are_traced(local_hub, tmp_path, monkeypatch):
    from click.testing import CliRunner

    import tracing_bench.downloads as downloads
    from tracing_bench.cli import main

    monkeypatch.setattr(downloads, "BACKOFF_S", 0.01)
    local_hub.flaky[REVS[1]] = 10**6  # every download of it fails, every time
    out = tmp_path / "out"
    args = ["trace", "--model", "local/olmo-tiny", "--revisions", ",".join(REVS), "--out", str(out)]
    args += ["--dimensions", "fairness", "--layers", "0", "--max-statements", "60", "--mi-noise", "0"]
    args += ["--no-controls", "--baseline", "none", "--device", "cpu", "--cache-dir", str(tmp_path / "cache")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1, res.output
    skipped = [line for line in res.stderr.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 1 and REVS[1] in skipped[0] and f"after {downloads.ATTEMPTS} attempts" in skipped[0]
    assert REVS[1] in res.stderr.strip().splitlines()[-1]  # the summary names it too
    assert _revisions(out) == [REVS[0], REVS[2]]  # the others traced and kept
    failed = json.loads((out / "trace.json").read_text())["failed_revisions"]
    assert [f["revision"] for f in failed] == [REVS[1]]
    asked = local_hub.requests("GET", f"/api/models/local/olmo-tiny/revision/{REVS[1]}?blobs=true")
    assert len(asked) == downloads.ATTEMPTS  # each attempt asked for the revision again


def test_a_cut_and_a_transient_failure_are_retried_and_traced(local_hub, tmp_path, monkeypatch):
    import huggingface_hub.constants as c

    import tracing_bench.downloads as downloads
    from tracing_bench.trace import trace

    monkeypatch.setattr(downloads, "BACKOFF_S", 0.01)
    monkeypatch.setattr(c, "DOWNLOAD_CHUNK_SIZE", 8192)
    weights = local_hub.revision("local/olmo-tiny", REVS[0]).files["model.safetensors"]
    local_hub.cut_once(REVS[0], "model.safetensors", weights.stat().st_size // 2)
    local_hub.flaky[REVS[2]] = 1  # the first file download of the last revision fails, then it is served
    res = trace("local/olmo-tiny", ",".join(REVS), out=tmp_path / "out", cache_dir=tmp_path / "cache", **SMALL)
    assert res.failed == {} and _revisions(tmp_path / "out") == sorted(REVS)
    assert _file_gets(local_hub, REVS[0], "model.safetensors") == [200, 206]  # resumed with a range request
    statuses = _file_gets(local_hub, REVS[2])
    assert statuses.count(500) == 1 and statuses.count(200) >= 1
    asked = local_hub.requests("GET", f"/api/models/local/olmo-tiny/revision/{REVS[2]}?blobs=true")
    assert len(asked) == 3  # two attempts, then the free-space check before the load

    shutil.rmtree(tmp_path / "out" / "parts")  # parts gone, activations cached: nothing to download again
    gets = len(local_hub.requests("GET", "/resolve/"))
    again = trace("local/olmo-tiny", ",".join(REVS), out=tmp_path / "out", cache_dir=tmp_path / "cache", **SMALL)
    assert again.failed == {} and _revisions(tmp_path / "out") == sorted(REVS)
    assert len(local_hub.requests("GET", "/resolve/")) == gets
