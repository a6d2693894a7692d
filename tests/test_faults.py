"""The fault suite: every bad input, broken file and interrupted run ends in one line, the right
exit status, and no finished work lost or changed.

Each case asserts the exit status (0 ok, 1 a measured gate regression, 2 anything else), that
stderr holds exactly one ``error:`` line and no traceback, and that the files that were there
before (inputs and finished outputs, compared by sha256) are unchanged afterwards. Most cases
run in-process through click's CliRunner with the tiny models of ``tests/tiny.py``; the real
console script runs in a subprocess for ``kill -9``, for two traces writing one folder at once,
and for one error line.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from fake_results import five, results_json, write_results, write_samples
from tiny import write_small_dims
from tracing_bench.cli import main

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ---------------------------------------------------------------------------------- helpers
class _OpenOnUnpickle:
    """A pickle payload: unpickling it calls ``open(path, "w")``, creating ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _vector_file(
    path: Path, hidden: int = 32, hookpoint: str = "layers.0", *, payload: Path | None = None, seed: int = 0
) -> Path:
    torch.manual_seed(seed)
    entry: dict = {
        "steering_vector": torch.randn(hidden),
        "steering_coefficient": 4.0,
        "action": "add",
        "bias": None,
        "head_index": None,
    }
    if payload is not None:
        entry["note"] = _OpenOnUnpickle(payload)
    torch.save({hookpoint: entry}, path)
    return path


def tree(root: Path) -> dict[str, str]:
    """sha256 of every file below ``root`` (relative path -> digest)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def invoke(args: list) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(res, *needles: str, code: int = 2) -> str:
    """Assert exit ``code``, exactly one stderr line starting ``error:``, no traceback; returns it."""
    assert res.exit_code == code, f"exit {res.exit_code}\n{res.output}"
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def console() -> list[str]:
    """The installed ``tracing-bench`` console script (else ``python -m tracing_bench``)."""
    script = Path(sys.executable).with_name("tracing-bench")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "tracing_bench"]


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody may write in: chmod 0o555, or for root (who ignores permissions) a read-only
    tmpfs mounted there; skipped when root cannot mount."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if not IS_ROOT:
        ro.chmod(0o555)
        yield ro
        ro.chmod(0o755)
        return
    mount = shutil.which("mount")
    done = (
        mount
        and subprocess.run(
            [mount, "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)], capture_output=True, check=False
        ).returncode
        == 0
    )
    if not done:
        pytest.skip("running as root (permissions are ignored) and cannot mount a read-only tmpfs here")
    try:
        yield ro
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True, check=False)


@pytest.fixture
def no_model_load(monkeypatch) -> list:
    """Records every attempt to load a model or tokenizer (and stops it)."""
    import transformers

    calls: list = []

    def spy(*args, **kwargs):
        calls.append(args[:1])
        raise RuntimeError("a model was loaded")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", spy)
    return calls


# --------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def dim_csv(tmp_path_factory) -> str:
    """One small statement,label CSV (48 fairness statements)."""
    return write_small_dims(tmp_path_factory.mktemp("dims"), 48, names=("fairness",))


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    write_results(root / "m@step1", results_json(five(0.6), revision="step1"))
    return root


@pytest.fixture(scope="module")
def broken_models(tmp_path_factory, tiny_models) -> dict[str, Path]:
    """Copies of the tiny Llama with one fault each."""
    root = tmp_path_factory.mktemp("broken")
    out = {}
    for name in ("truncated", "no_tokenizer", "unknown_arch"):
        out[name] = Path(shutil.copytree(tiny_models["llama"], root / name))
    weights = out["truncated"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    for f in out["no_tokenizer"].glob("tokenizer*"):
        f.unlink()
    config = out["unknown_arch"] / "config.json"
    config.write_text(config.read_text().replace('"model_type": "llama"', '"model_type": "nosucharch"'))
    return out


# ------------------------------------------------------------ 1. no code from a steering file
@pytest.mark.parametrize("command", ["eval-steered", "eval-trust-steered", "eval-series-steered", "steer-sweep"])
def test_pickled_payload_never_runs(command, tiny_llama, series_folder, tmp_path):
    marker = tmp_path / "PAYLOAD_RAN"
    evil = _vector_file(tmp_path / "evil.pt", payload=marker)
    before = tree(tmp_path)
    args = {
        "eval-steered": [
            "eval",
            "--model",
            "steered",
            "--model_args",
            f"pretrained={tiny_llama},steer_path={evil}",
            "--tasks",
            "trust_privacy",
            "--output_path",
            tmp_path / "out",
        ],
        "eval-trust-steered": [
            "eval",
            "--model",
            "trust-steered",
            "--model_args",
            f"pretrained={tiny_llama},steer_path={evil}",
            "--tasks",
            "trust_privacy",
            "--output_path",
            tmp_path / "out",
        ],
        "eval-series-steered": [
            "eval-series",
            "--model",
            "steered",
            "--model_args",
            f"pretrained={series_folder},steer_path={evil}",
            "--tasks",
            "trust_privacy",
            "--output_path",
            tmp_path / "out",
        ],
        "steer-sweep": [
            "steer",
            "sweep",
            "--model",
            tiny_llama,
            "--vector",
            evil,
            "--alphas",
            "1",
            "--tasks",
            "trust_privacy",
            "--out",
            tmp_path / "out",
        ],
    }[command]
    one_line_error(invoke(args), "weights_only=True", "refuses to run")
    assert not marker.exists()
    assert tree(tmp_path) == before


def test_pickled_payload_never_runs_through_the_python_api(tiny_llama, tmp_path):
    """README: `import tracing_bench.models.steered` then `lm_eval.simple_evaluate(model="trust-steered")`."""
    import lm_eval

    import tracing_bench.models.steered  # noqa: F401  (registers trust-steered)
    from tracing_bench.errors import TracingBenchError

    marker = tmp_path / "PAYLOAD_RAN"
    evil = _vector_file(tmp_path / "evil.pt", payload=marker)
    with pytest.raises(TracingBenchError, match="weights_only=True"):
        lm_eval.simple_evaluate(
            model="trust-steered",
            model_args=f"pretrained={tiny_llama},steer_path={evil}",
            tasks=["trust_privacy"],
            limit=1,
        )
    assert not marker.exists()


def test_stock_steered_model_never_unpickles_even_if_the_check_is_bypassed(tiny_llama, tmp_path):
    """Inside safe_stock_steered, lm-eval's own SteeredModel reads the file with weights_only=True."""
    from lm_eval.models.hf_steered import SteeredModel

    from tracing_bench.errors import TracingBenchError
    from tracing_bench.models.steered import safe_stock_steered

    marker = tmp_path / "PAYLOAD_RAN"
    evil = _vector_file(tmp_path / "evil.pt", payload=marker)
    with safe_stock_steered(), pytest.raises(TracingBenchError, match="weights_only=True"):
        SteeredModel(pretrained=str(tiny_llama), steer_path=str(evil), device="cpu", dtype="float32")
    assert not marker.exists()
    import lm_eval.models.hf_steered as hf_steered

    assert hf_steered.torch is torch  # restored after the block


def test_stock_steered_through_tracing_bench_scores_as_lm_eval_does(tiny_llama, tmp_path):
    """Same benign file: `tracing-bench eval --model steered` (safe load) == lm-eval's stock run."""
    import lm_eval

    from tracing_bench.tasks import TASKS_DIR

    vec = _vector_file(tmp_path / "v.pt", seed=3)
    res = invoke(
        [
            "eval",
            "--model",
            "steered",
            "--model_args",
            f"pretrained={tiny_llama},steer_path={vec},dtype=float32",
            "--tasks",
            "trust_privacy",
            "--limit",
            "3",
            "--device",
            "cpu",
            "--log_samples",
            "--output_path",
            tmp_path / "ours",
        ]
    )
    assert res.exit_code == 0, res.output
    (samples,) = (tmp_path / "ours").rglob("samples_trust_privacy_*.jsonl")
    ours = [json.loads(line)["resps"] for line in samples.read_text().splitlines()]
    stock = lm_eval.simple_evaluate(
        model="steered",
        model_args=f"pretrained={tiny_llama},steer_path={vec},dtype=float32",
        tasks=["trust_privacy"],
        limit=3,
        device="cpu",
        log_samples=True,
        task_manager=lm_eval.tasks.TaskManager(include_path=str(TASKS_DIR), include_defaults=False),
    )
    theirs = [s["resps"] for s in stock["samples"]["trust_privacy"]]
    assert [[[float(x[0][0])] for x in r] for r in ours] == [[[float(x[0][0])] for x in r] for r in theirs]


@pytest.mark.parametrize("model", ["steered", "trust-steered"])
@pytest.mark.parametrize(
    "fault, needle",
    [
        ("hidden", "has 16 dimensions but the model's hidden size is 32"),
        ("hookpoint", "hookpoint 'layers.9' is not a module"),
    ],
)
def test_vector_that_does_not_fit_is_one_line_before_loading(model, fault, needle, tiny_llama, tmp_path, no_model_load):
    vec = (
        _vector_file(tmp_path / "v.pt", hidden=16)
        if fault == "hidden"
        else _vector_file(tmp_path / "v.pt", hookpoint="layers.9")
    )
    one_line_error(
        invoke(
            [
                "eval",
                "--model",
                model,
                "--model_args",
                f"pretrained={tiny_llama},steer_path={vec}",
                "--tasks",
                "trust_privacy",
                "--output_path",
                tmp_path / "out",
            ]
        ),
        needle,
    )
    assert no_model_load == []


# ---------------------------------------------------------------- 2. outputs that cannot be written
def _writers(
    tiny_llama: Path, series: Path, dim_csv: str, results_dir: Path, vec: Path, bad: Path, cache: Path
) -> dict[str, list]:
    """Every command that writes, with ``bad`` as the output (folder) or its parent (file)."""
    limit = ["--tasks", "trust_privacy", "--limit", "1"]
    return {
        "trace": ["trace", "--model", tiny_llama, "--dimensions", dim_csv, "--cache-dir", cache, "--out", bad],
        "trace --cache-dir": [
            "trace",
            "--model",
            tiny_llama,
            "--dimensions",
            dim_csv,
            "--cache-dir",
            bad,
            "--out",
            cache.parent / "trace_out",
        ],
        "leaderboard": ["leaderboard", results_dir, "--out", bad / "board.md"],
        "report": ["report", results_dir, "--out", bad / "report.html"],
        "steer extract": [
            "steer",
            "extract",
            "--model",
            tiny_llama,
            "--dimension",
            "fairness",
            "--data",
            dim_csv,
            "--layer",
            "0",
            "--cache-dir",
            cache,
            "--out",
            bad / "v.pt",
        ],
        "steer sweep": [
            "steer",
            "sweep",
            "--model",
            tiny_llama,
            "--vector",
            vec,
            "--alphas",
            "1",
            *limit,
            "--out",
            bad,
        ],
        "steer correlate": [
            "steer",
            "correlate",
            "--model",
            series,
            "--target",
            tiny_llama,
            "--dimension",
            "fairness",
            "--data",
            dim_csv,
            "--layer",
            "0",
            *limit,
            "--cache-dir",
            cache,
            "--out",
            bad,
        ],
        "eval": ["eval", "--model", "hf", "--model_args", f"pretrained={tiny_llama}", *limit, "--output_path", bad],
        "eval-series": [
            "eval-series",
            "--model",
            "hf",
            "--model_args",
            f"pretrained={series}",
            *limit,
            "--output_path",
            bad,
        ],
        "gate --json-out": ["gate", "--baseline", results_dir, "--current", results_dir, "--json-out", bad / "g.json"],
        "pretrain": ["pretrain", "--fast", "--out", bad],
        "demo": ["demo", "--fast", "--out", bad],
    }


WRITERS = [
    "trace",
    "trace --cache-dir",
    "leaderboard",
    "report",
    "steer extract",
    "steer sweep",
    "steer correlate",
    "eval",
    "eval-series",
    "gate --json-out",
    "pretrain",
    "demo",
]


@pytest.mark.parametrize("how", ["under_a_file", "read_only_folder"])
@pytest.mark.parametrize("command", WRITERS)
def test_unwritable_output_is_one_line_before_any_model_loads(
    command, how, tiny_llama, series_folder, dim_csv, results_dir, tmp_path, request, no_model_load
):
    if how == "under_a_file":
        blocker = tmp_path / "blocker"
        blocker.write_text("a file, not a folder\n")
        bad = blocker / "sub"
        needle = "which is a file, not a folder"
    else:
        bad = request.getfixturevalue("read_only_dir") / "sub"
        needle = "cannot write in"
    vec = _vector_file(tmp_path / "v.pt")
    (tmp_path / "cache").mkdir()
    before = tree(tmp_path)
    args = _writers(tiny_llama, series_folder, dim_csv, results_dir, vec, bad, tmp_path / "cache")[command]
    one_line_error(invoke(args), needle)
    assert no_model_load == []
    assert tree(tmp_path) == before


def test_late_write_failure_names_the_path_and_keeps_finished_parts(tiny_llama, dim_csv, tmp_path, monkeypatch):
    import errno

    import tracing_bench.trace as trace_mod

    args = [
        "trace",
        "--model",
        tiny_llama,
        "--dimensions",
        dim_csv,
        "--layers",
        "0,2",
        "--cache-dir",
        tmp_path / "cache",
        "--out",
        tmp_path / "out",
    ]
    original = trace_mod.atomic_write_csv

    def disk_full(path, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(trace_mod, "atomic_write_csv", disk_full)
    line = one_line_error(invoke(args), "probes.csv", "No space left on device")
    assert "finished work is kept" in line
    parts = tree(tmp_path / "out" / "parts")
    assert len(parts) == 2  # the checkpoint's and its random-init baseline's (one model: tracing_bench.baseline)
    monkeypatch.setattr(trace_mod, "atomic_write_csv", original)
    res = invoke(args)
    assert res.exit_code == 0, res.output
    assert tree(tmp_path / "out" / "parts") == parts  # the part was reused, not recomputed


def test_gate_exit_codes_pass_regression_and_anything_else(tmp_path, monkeypatch):
    base, worse = tmp_path / "base", tmp_path / "worse"
    write_results(base, results_json(five(0.6, 0.01)))
    scores = five(0.6, 0.01)
    scores["trust_fairness"] = (0.4, 0.01)
    write_results(worse, results_json(scores))
    assert invoke(["gate", "--baseline", base, "--current", base]).exit_code == 0
    res = invoke(["gate", "--baseline", base, "--current", worse])
    assert res.exit_code == 1 and "FAIL: regression in trust_fairness" in res.stdout
    under_a_file = next(base.glob("results_*.json")) / "g.json"
    res = invoke(["gate", "--baseline", base, "--current", base, "--json-out", under_a_file])
    one_line_error(res, "--json-out")
    assert "PASS" not in res.stdout  # the verdict is not printed before a failure
    import tracing_bench.compare.gate as gate_mod

    def crash(*a, **k):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(gate_mod, "gate", crash)  # a bug must not read as a regression
    one_line_error(invoke(["gate", "--baseline", base, "--current", base]), "unexpected ZeroDivisionError")


# -------------------------------------------------------------------- 3. same-named CSVs
def test_same_named_csvs_and_a_bundled_name_give_four_dimensions(tiny_llama, tmp_path):
    import csv

    from tracing_bench.dimensions import load_dimension
    from tracing_bench.files import file_md5

    src = Path(write_small_dims(tmp_path / "src", 40).split(",")[0]).parent  # fairness_small, privacy_small
    for folder in ("e1", "e2", "e3"):
        (tmp_path / folder).mkdir()
    shutil.copy(src / "fairness_small.csv", tmp_path / "e1" / "data.csv")
    shutil.copy(src / "privacy_small.csv", tmp_path / "e2" / "data.csv")
    shutil.copy(src / "privacy_small.csv", tmp_path / "e3" / "privacy.csv")
    dims = f"{tmp_path / 'e1' / 'data.csv'},{tmp_path / 'e2' / 'data.csv'},{tmp_path / 'e3' / 'privacy.csv'},privacy"
    args = [
        "trace",
        "--model",
        tiny_llama,
        "--dimensions",
        dims,
        "--layers",
        "0",
        "--probes",
        "mass_mean",
        "--max-statements",
        "40",
        "--cache-dir",
        tmp_path / "cache",
        "--out",
        tmp_path / "out",
        "--baseline",
        "none",
    ]  # one part per dimension (no random-init baseline parts)
    res = invoke(args)
    assert res.exit_code == 0, res.output
    with open(tmp_path / "out" / "probes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    md5 = {r["dimension"]: r["dataset_md5"] for r in rows}
    assert list(md5) == ["e1-data", "e2-data", "e3-privacy", "privacy"]
    assert md5["e1-data"] == file_md5(tmp_path / "e1" / "data.csv")
    assert md5["e2-data"] == md5["e3-privacy"] == file_md5(tmp_path / "e2" / "data.csv")
    assert md5["privacy"] == load_dimension("privacy").md5
    parts = tree(tmp_path / "out" / "parts")
    assert len(parts) == 4 and any(p.endswith("/privacy.json") for p in parts)
    # same content under two names: the same numbers; run again: every part reused
    by_dim = {r["dimension"]: r["test_acc"] for r in rows}
    assert by_dim["e2-data"] == by_dim["e3-privacy"]
    res = invoke(args)
    assert res.exit_code == 0, res.output
    assert tree(tmp_path / "out" / "parts") == parts


def test_the_same_csv_twice_is_refused(dim_csv, tmp_path, no_model_load):
    one_line_error(
        invoke(["trace", "--model", tmp_path, "--dimensions", f"{dim_csv},{dim_csv}", "--out", tmp_path / "out"]),
        "names",
        "twice",
    )
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------- 4. model faults
MODEL_FAULTS = [
    ("truncated", "model.safetensors is incomplete or corrupt"),
    ("no_tokenizer", "has no tokenizer files"),
    ("unknown_arch", "model_type 'nosucharch'"),
]


@pytest.mark.parametrize("command", ["trace", "eval"])
@pytest.mark.parametrize("fault, needle", MODEL_FAULTS)
def test_broken_model_folder_is_one_line_naming_the_file(command, fault, needle, broken_models, dim_csv, tmp_path):
    folder = broken_models[fault]
    before = tree(folder)
    args = (
        ["trace", "--model", folder, "--dimensions", dim_csv, "--cache-dir", tmp_path / "c", "--out", tmp_path / "o"]
        if command == "trace"
        else [
            "eval",
            "--model",
            "hf",
            "--model_args",
            f"pretrained={folder}",
            "--tasks",
            "trust_privacy",
            "--output_path",
            tmp_path / "o",
        ]
    )
    line = one_line_error(invoke(args), needle)
    assert str(folder) in line
    assert tree(folder) == before
    assert tree(tmp_path) == {}  # nothing written


@pytest.mark.parametrize("command", ["trace", "eval"])
def test_out_of_memory_while_loading_is_one_line(command, tiny_llama, dim_csv, tmp_path, monkeypatch):
    import transformers

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 13.50 GiB")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", oom)
    args = (
        [
            "trace",
            "--model",
            tiny_llama,
            "--dimensions",
            dim_csv,
            "--cache-dir",
            tmp_path / "c",
            "--out",
            tmp_path / "o",
        ]
        if command == "trace"
        else [
            "eval",
            "--model",
            "hf",
            "--model_args",
            f"pretrained={tiny_llama}",
            "--tasks",
            "trust_privacy",
            "--output_path",
            tmp_path / "o",
        ]
    )
    one_line_error(invoke(args), "not enough memory to load", str(tiny_llama), "--dtype bfloat16")


# -------------------------------------------------------------- 5. no silent wrong answer
@pytest.mark.parametrize("tasks", ["trustgen_privacy", "trustgen"])
def test_num_fewshot_is_refused_where_lm_eval_would_ignore_it(tasks, tiny_llama, tmp_path, no_model_load):
    one_line_error(
        invoke(
            [
                "eval",
                "--model",
                "hf",
                "--model_args",
                f"pretrained={tiny_llama}",
                "--tasks",
                tasks,
                "--num_fewshot",
                "3",
                "--output_path",
                tmp_path / "o",
            ]
        ),
        "--num_fewshot 3",
        "trustgen_privacy",
        "0-shot",
    )
    assert no_model_load == []


def _trust_tasks_fixed_at_zero_shots() -> bool:
    from tracing_bench.tasks import TASKS_DIR

    return any(line.strip() == "num_fewshot: 0" for line in (TASKS_DIR / "_template_yaml").read_text().splitlines())


# Expected behaviour once the trust tasks take few-shot examples from the development split; while
# their YAML still fixes `num_fewshot: 0`, `tracing-bench eval` refuses the option and this fails.
@pytest.mark.xfail(
    _trust_tasks_fixed_at_zero_shots(), strict=True, reason="needs dev-split few-shot from the tasks branch"
)
def test_num_fewshot_for_trust_tasks_uses_development_examples(tiny_llama, tmp_path):
    from tracing_bench.dimensions import load_dimension

    res = invoke(
        [
            "eval",
            "--model",
            "hf",
            "--model_args",
            f"pretrained={tiny_llama},dtype=float32",
            "--tasks",
            "trust_privacy",
            "--num_fewshot",
            "2",
            "--limit",
            "2",
            "--device",
            "cpu",
            "--log_samples",
            "--output_path",
            tmp_path / "o",
        ]
    )
    assert res.exit_code == 0, res.output
    (results,) = (tmp_path / "o").rglob("results_*.json")
    assert json.loads(results.read_text())["n-shot"]["trust_privacy"] == 2
    data = load_dimension("privacy")
    dev = {data.statements[i] for i in data.splits["dev"]}
    test = {data.statements[i] for i in data.splits["test"]}
    (samples,) = (tmp_path / "o").rglob("samples_trust_privacy_*.jsonl")
    for line in samples.read_text().splitlines():
        sample = json.loads(line)
        prompt = sample["arguments"]["gen_args_0"]["arg_0"]
        assert sum(s in prompt for s in dev) >= 2
        assert [s for s in test if s in prompt] == [sample["doc"]["statement"]]


def test_nan_is_shown_and_flagged_in_leaderboard_report_and_gate(tmp_path):
    from tracing_bench.report.plots import radar_chart

    scores = five(0.6)
    scores["trust_privacy"] = (float("nan"), 0.1)
    write_results(tmp_path / "r" / "a", results_json(scores, revision="step1"))
    write_results(tmp_path / "r" / "b", results_json(five(0.7), revision="step2"))
    res = invoke(["leaderboard", tmp_path / "r"])
    assert res.exit_code == 0 and "NaN ⚠" in res.stdout and "⚠ NaN score in trust_privacy" in res.stdout
    assert res.stderr.count("warning: NaN score in trust_privacy") == 1
    csv_text = invoke(["leaderboard", tmp_path / "r", "--format", "csv"]).stdout
    assert ",NaN," in csv_text
    board = json.loads(
        invoke(["leaderboard", tmp_path / "r", "--format", "json"]).stdout,
        parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"),
    )
    row = next(r for r in board["rows"] if r["revision"] == "step1")
    # the group mean is NaN too
    assert row["trust_privacy"] is None and row["nan"] == ["trust_privacy", "trust"] and board["flags"]
    res = invoke(["report", tmp_path / "r", "--out", tmp_path / "report.html"])
    assert res.exit_code == 0, res.output
    assert "NaN score in trust_privacy" in (tmp_path / "report.html").read_text()
    # the radar keeps an axis whose only score is NaN (three axes, one all-NaN: drawn, not dropped)
    rows = [{"label": "m", "trust_a": 0.5, "trust_b": 0.6, "trust_c": float("nan")}]
    assert radar_chart(rows, tmp_path / "radar.png", columns={"a": "trust_a", "b": "trust_b", "c": "trust_c"})
    one_line_error(
        invoke(["gate", "--baseline", tmp_path / "r" / "b", "--current", tmp_path / "r" / "a"]),
        "task trust_privacy is NaN in current",
    )


def test_gate_refuses_different_documents_unless_told(tmp_path):
    base, cur, same_n = tmp_path / "b10", tmp_path / "c20", tmp_path / "c10"
    write_results(base, results_json({"trust_fairness": (0.6, 0.0)}, group=False, n=10))
    write_results(cur, results_json({"trust_fairness": (0.5, 0.0)}, group=False, n=20))
    line = one_line_error(
        invoke(["gate", "--baseline", base, "--current", cur]),
        "scored 10 documents in the baseline but 20",
        "--allow-mismatch",
    )
    assert "-inf" not in line and "PASS" not in line
    res = invoke(["gate", "--baseline", base, "--current", cur, "--allow-mismatch", "--json-out", tmp_path / "g.json"])
    assert res.exit_code == 1 and "--allow-mismatch: task trust_fairness scored 10" in res.stdout
    verdict = json.loads((tmp_path / "g.json").read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert verdict["settings"]["allow_mismatch"] is True and verdict["tasks"][0]["z"] == "inf"
    # same count, other documents (by lm-eval's doc_hash in the samples logs)
    write_results(same_n, results_json({"trust_fairness": (0.6, 0.0)}, group=False, n=10))
    for folder, offset in ((base, 0), (same_n, 5)):
        path = write_samples(folder, "trust_fairness", [1.0] * 10)
        rows = [json.loads(x) | {"doc_hash": f"h{i + offset}"} for i, x in enumerate(path.read_text().splitlines())]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    one_line_error(
        invoke(["gate", "--baseline", base, "--current", same_n]),
        "scored different documents (5 only in the baseline, 5 only in the current run",
    )


def test_correlate_json_is_valid_and_says_why_r_is_undefined(series_folder, tiny_llama, dim_csv, tmp_path):
    res = invoke(
        [
            "steer",
            "correlate",
            "--model",
            series_folder,
            "--target",
            tiny_llama,
            "--dimension",
            "fairness",
            "--data",
            dim_csv,
            "--layer",
            "0",
            "--alpha",
            "0",
            "--tasks",
            "trust_fairness",
            "--limit",
            "1",
            "--batch-size",
            "4",
            "--n-boot",
            "10",
            "--cache-dir",
            tmp_path / "c",
            "--out",
            tmp_path / "o",
        ]
    )
    assert res.exit_code == 0, res.output
    assert "Pearson r is undefined over 3 checkpoints: the steering benefit is 0 at every checkpoint" in res.stdout
    summary = json.loads(
        (tmp_path / "o" / "correlate.json").read_text(),
        parse_constant=lambda c: pytest.fail(f"bare {c} in correlate.json"),
    )
    assert summary["pearson_r"] is None and summary["ci95"] == [None, None]
    assert summary["r_undefined_reason"].startswith("the steering benefit is 0")


@pytest.mark.parametrize("command", ["trace", "eval-series", "steer correlate"])
def test_empty_revisions_is_an_error(command, hf_cache_series, tiny_llama, tmp_path, no_model_load):
    model_id = hf_cache_series[0]
    args = {
        "trace": ["trace", "--model", model_id, "--revisions", "", "--out", tmp_path / "o"],
        "eval-series": [
            "eval-series",
            "--model",
            "hf",
            "--model_args",
            f"pretrained={model_id}",
            "--revisions",
            "",
            "--output_path",
            tmp_path / "o",
        ],
        "steer correlate": [
            "steer",
            "correlate",
            "--model",
            model_id,
            "--revisions",
            " , ",
            "--target",
            tiny_llama,
            "--dimension",
            "fairness",
            "--layer",
            "0",
            "--out",
            tmp_path / "o",
        ],
    }[command]
    one_line_error(invoke(args), "--revisions", "names no revision")
    assert no_model_load == []


# ------------------------------------------------------------------------- 6. quiet by default
def test_quiet_by_default_verbose_shows_library_messages(tiny_llama, tmp_path, monkeypatch, capfd):
    import logging

    class Keep(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    keep = Keep()
    task_logger = logging.getLogger("lm_eval.api.task")  # where lm-eval's "Custom kwargs" hint comes from
    task_logger.addHandler(keep)
    monkeypatch.chdir(tmp_path)  # not a git checkout: lm-eval's git probe fails here
    args = [
        "eval",
        "--model",
        "hf",
        "--model_args",
        f"pretrained={tiny_llama},dtype=float32",
        "--tasks",
        "trust_privacy",
        "--limit",
        "1",
        "--device",
        "cpu",
        "--output_path",
        tmp_path / "o",
    ]
    try:
        res = invoke(args)
        err = res.stderr + capfd.readouterr().err
        assert res.exit_code == 0, res.output
        assert "not a git repository" not in err
        assert not any("Custom kwargs" in m for m in keep.messages)
        res = invoke(["-v", *args])
        err = res.stderr + capfd.readouterr().err
        assert res.exit_code == 0, res.output
        assert any("Custom kwargs" in m for m in keep.messages)
        if shutil.which("git"):
            assert "not a git repository" in err
    finally:
        task_logger.removeHandler(keep)


def test_corrupt_cache_entry_warns_once_and_recomputes_the_same_tables(tiny_llama, dim_csv, tmp_path):
    args = [
        "trace",
        "--model",
        tiny_llama,
        "--dimensions",
        dim_csv,
        "--layers",
        "0",
        "--probes",
        "mass_mean",
        "--cache-dir",
        tmp_path / "cache",
        "--baseline",
        "none",
    ]  # one cache entry (no random-init one)
    res = invoke([*args, "--out", tmp_path / "clean"])
    assert res.exit_code == 0, res.output
    (entry,) = (tmp_path / "cache" / "activations").glob("*.safetensors")
    entry.write_bytes(entry.read_bytes()[:100])
    res = invoke([*args, "--out", tmp_path / "again"])
    assert res.exit_code == 0, res.output
    warned = [x for x in res.stderr.splitlines() if "activation cache entry" in x]
    assert len(warned) == 1 and warned[0].startswith("warning: ") and "truncated" in warned[0], res.stderr
    assert "harvest.py" not in res.stderr  # no source line
    for name in ("probes.csv", "mi.csv"):
        assert (tmp_path / "again" / name).read_bytes() == (tmp_path / "clean" / name).read_bytes()


# ------------------------------------------------------------------ 7. leaderboard by step number
def test_leaderboard_rows_sort_by_step_number(tmp_path):
    for rev in ("step32", "step4", "step0", "step128"):
        write_results(tmp_path / rev, results_json(five(0.6), revision=rev))
    res = invoke(["leaderboard", tmp_path, "--format", "csv"])
    assert [line.split(",")[1] for line in res.stdout.splitlines()[1:]] == ["step0", "step4", "step32", "step128"]


def test_report_provenance_shows_dataset_md5_without_sample_logs(lm_eval_results, tmp_path):
    """`tracing-bench eval` records each task's dataset md5 next to the results; the report shows it."""
    from tracing_bench.dimensions import load_dimension

    (results,) = lm_eval_results["base"].rglob("results_*.json")
    (sidecar,) = results.parent.glob("tracing_bench_*.json")
    shutil.copy(results, tmp_path / results.name)  # no samples_*.jsonl next to it
    shutil.copy(sidecar, tmp_path / sidecar.name)
    res = invoke(["report", tmp_path, "--out", tmp_path / "r.html"])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "r.html").read_text()
    for dim in ("privacy", "toxicity", "reliability"):
        assert f"trust_{dim}: {load_dimension(dim).md5}" in html


# ------------------------------------------------------- cases that already passed, locked in
def test_nan_alpha_is_one_line(tiny_llama, tmp_path, no_model_load):
    vec = _vector_file(tmp_path / "v.pt")
    one_line_error(
        invoke(
            ["steer", "sweep", "--model", tiny_llama, "--vector", vec, "--alphas", "1,nan", "--out", tmp_path / "o"]
        ),
        "--alphas holds nan",
    )
    assert no_model_load == []


def test_nan_alpha_in_trust_steered_is_one_line(tiny_llama, tmp_path):
    vec = _vector_file(tmp_path / "v.pt")
    one_line_error(
        invoke(
            [
                "eval",
                "--model",
                "trust-steered",
                "--model_args",
                f"pretrained={tiny_llama},steer_path={vec},alpha=nan",
                "--tasks",
                "trust_privacy",
                "--output_path",
                tmp_path / "o",
            ]
        ),
        "alpha=nan is not finite",
    )


@pytest.mark.parametrize(
    "revisions, needle",
    [("step999", "revision 'step999' of local/tiny could not be loaded"), ("step9:step1", "runs backwards")],
)
def test_bad_revisions_are_one_line(revisions, needle, hf_cache_series, dim_csv, tmp_path):
    args = [
        "trace",
        "--model",
        hf_cache_series[0],
        "--revisions",
        revisions,
        "--dimensions",
        dim_csv,
        "--cache-dir",
        tmp_path / "c",
        "--out",
        tmp_path / "o",
    ]
    line = one_line_error(invoke(args), needle)
    if revisions == "step999":
        assert "step1, step2" in line  # the revisions that are there


@pytest.mark.parametrize("content", ["{oops", '{"results": 3}', None])
@pytest.mark.parametrize("command", ["leaderboard", "gate", "report"])
def test_malformed_results_files_are_one_line(command, content, results_dir, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    if content is not None:
        (bad / "results_2026-01-01T00-00-00.json").write_text(content)
    needle = {
        "{oops": "not valid JSON",
        '{"results": 3}': "no 'results' mapping",
        None: "nothing to report" if command == "report" else "no results_*.json below this folder",
    }[content]
    before = tree(tmp_path)
    args = {
        "leaderboard": ["leaderboard", bad],
        "gate": ["gate", "--baseline", results_dir, "--current", bad],
        "report": ["report", bad, "--out", tmp_path / "r.html"],
    }[command]
    one_line_error(invoke(args), needle)
    assert tree(tmp_path) == before


# ------------------------------------------------------- the real console script, in subprocesses
def _trace_cmd(series: Path, dims: str, out: Path, cache: Path) -> list[str]:
    return [
        *console(),
        "trace",
        "--model",
        str(series),
        "--dimensions",
        dims,
        "--layers",
        "0,2",
        "--probes",
        "mass_mean",
        "--cache-dir",
        str(cache),
        "--out",
        str(out),
    ]


@pytest.fixture(scope="module")
def reference_tables(series_folder, tmp_path_factory) -> tuple[str, Path, Path]:
    """An uninterrupted trace of the series (in-process), and the activation cache it filled."""
    from tracing_bench.trace import trace

    root = tmp_path_factory.mktemp("reference")
    dims = write_small_dims(root / "dims", 40)
    trace(
        str(series_folder),
        out=root / "out",
        dimensions=dims,
        layers="0,2",
        probes="mass_mean",
        cache_dir=root / "cache",
        progress=False,
    )
    return dims, root / "out", root / "cache"


_KILL_CHILD = """
import sys, time
from pathlib import Path
import tracing_bench.trace as trace_mod
from tracing_bench.cli import main

original = trace_mod.trace_checkpoint
ready = Path(sys.argv[1])

def first_then_hang(ckpt, *args, **kwargs):
    paths = original(ckpt, *args, **kwargs)
    ready.write_text("one checkpoint done")
    time.sleep(600)  # killed here, with later checkpoints not started
    return paths

trace_mod.trace_checkpoint = first_then_hang
sys.argv = ["tracing-bench", *sys.argv[2:]]
main()
"""


@pytest.mark.slow
def test_kill_9_then_the_same_command_resumes_to_identical_tables(series_folder, reference_tables, tmp_path):
    """`tracing-bench trace` killed with SIGKILL after its first checkpoint; the same command finishes it."""
    from tracing_bench.trace import trace

    dims, ref, ref_cache = reference_tables
    out, cache, ready = tmp_path / "out", tmp_path / "cache", tmp_path / "ready"
    shutil.copytree(ref_cache, cache)
    args = _trace_cmd(series_folder, dims, out, cache)[len(console()) :]
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_CHILD, str(ready), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 240
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
    assert ready.exists(), err.decode()[-2000:]
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "probes.csv").exists()
    finished = tree(out / "parts")
    assert len(finished) == 2  # the first checkpoint's two dimensions
    trace(
        str(series_folder), out=out, dimensions=dims, layers="0,2", probes="mass_mean", cache_dir=cache, progress=False
    )
    after = tree(out / "parts")
    assert len(after) == 6 and {k: after[k] for k in finished} == finished  # finished parts kept as they were
    for name in ("probes.csv", "mi.csv"):
        assert (out / name).read_bytes() == (ref / name).read_bytes()


@pytest.mark.slow
def test_two_traces_writing_one_folder_at_once(series_folder, reference_tables, tmp_path):
    """Two processes trace the same series into one --out at the same time (figures off, cache warm)."""
    dims, ref, ref_cache = reference_tables
    cache = tmp_path / "cache"
    shutil.copytree(ref_cache, cache)  # both harvest nothing: they race on parts and tables
    out = tmp_path / "out"
    code = (
        "import sys; from tracing_bench.trace import trace; "
        "trace(sys.argv[1], out=sys.argv[2], dimensions=sys.argv[3], layers='0,2', probes='mass_mean', "
        "cache_dir=sys.argv[4], progress=False)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(series_folder), str(out), dims, str(cache)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0 and "Traceback" not in err, err
    for name in ("probes.csv", "mi.csv"):
        assert (out / name).read_bytes() == (ref / name).read_bytes()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_console_script_error_is_one_stderr_line(tiny_llama, tmp_path):
    marker = tmp_path / "PAYLOAD_RAN"
    evil = _vector_file(tmp_path / "evil.pt", payload=marker)
    run = subprocess.run(
        check=False,
        args=[
            *console(),
            "eval",
            "--model",
            "steered",
            "--model_args",
            f"pretrained={tiny_llama},steer_path={evil}",
            "--output_path",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2 and run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "weights_only=True" in lines[0], run.stderr
    assert not marker.exists()
