"""`tracing-bench tasks-path` and `tracing-bench eval`: results per model AND revision, errors as one line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tracing_bench.cli import main
from tracing_bench.evaluate import EvalRun, run_eval, run_folder
from tracing_bench.files import model_slug
from tracing_bench.tasks import TASKS_DIR


def test_tasks_path_prints_the_include_path():
    result = CliRunner().invoke(main, ["tasks-path"])
    assert result.exit_code == 0
    assert result.output.strip() == str(TASKS_DIR)
    assert (TASKS_DIR / "_trust.yaml").is_file()


def test_eval_two_revisions_write_two_folders(hf_cache_series, tmp_path):
    model_id, revisions, hf_home = hf_cache_series
    out = tmp_path / "out"
    for rev in revisions:  # sample logs by default; --no_log_samples for the second revision
        result = CliRunner().invoke(
            main,
            [
                "eval",
                "--model",
                "hf",
                "--model_args",
                f"pretrained={model_id},revision={rev},dtype=float32",
                "--tasks",
                "trust_privacy",
                "--limit",
                "2",
                "--device",
                "cpu",
                "--output_path",
                str(out),
                *(["--no_log_samples"] if rev == revisions[1] else []),
            ],
        )
        assert result.exit_code == 0, result.output
    folders = sorted(p.name for p in out.iterdir())
    assert folders == [f"local__tiny@{rev}" for rev in revisions]
    assert len(list((out / f"local__tiny@{revisions[0]}").glob("samples_trust_privacy_*.jsonl"))) == 1
    assert not list((out / f"local__tiny@{revisions[1]}").glob("samples_*.jsonl"))
    for rev in revisions:
        (results_file,) = (out / f"local__tiny@{rev}").glob("results_*.json")
        results = json.loads(results_file.read_text())
        assert results["config"]["model_args"]["revision"] == rev
        assert "acc,none" in results["results"]["trust_privacy"]
        (prov_file,) = (out / f"local__tiny@{rev}").glob("tracing_bench_*.json")
        prov = json.loads(prov_file.read_text())
        commit = (hf_home / "hub" / "models--local--tiny" / "refs" / rev).read_text()
        assert (prov["model"], prov["revision"], prov["commit"]) == (model_id, rev, commit)
        assert prov["results_file"] == results_file.name
        assert prov["datasets"]["trust_privacy"]["dataset_md5"] == "cc19207e184cecac1bd67eb056fdcc78"
        assert prov["datasets"]["trust_privacy"]["protocol"] == "paper"


def test_run_eval_library_call(tiny_models, tmp_path):
    run = run_eval(
        {"pretrained": str(tiny_models["gpt_neox"]), "dtype": "float32"},
        tasks=["trust_fairness"],
        limit=2,
        output_path=tmp_path,
        log_samples=True,
        extra_args=["--device", "cpu"],
    )
    assert isinstance(run, EvalRun)
    assert run.folder == run_folder(tmp_path, str(tiny_models["gpt_neox"]), None)
    assert run.folder.name.endswith("@main") and run.revision == "main"
    assert run.results_file.parent == run.folder and run.results_file.name.startswith("results_")
    assert "acc,none" in run.results["results"]["trust_fairness"]
    assert list(run.folder.glob("samples_trust_fairness_*.jsonl"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bogus_option", "1"], "unrecognized arguments: --bogus_option"),
        (["--model", "hf"], "no model given"),
        (["--model_args", "pretrained=/nonexistent/model", "--tasks", "trust_privacy"], "no such folder"),
        (
            ["--model_args", "pretrained=local/tiny,revision=step9", "--tasks", "trust_privacy"],
            "not in the local Hugging Face cache",
        ),
        (["--model_args", "pretrained=local/tiny,revision=step1", "--output_path", "r.json"], "give a folder"),
    ],
)
def test_eval_errors_are_one_line_and_exit_2(args, message, hf_cache_series, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["eval", *args])
    assert result.exit_code == 2, result.output
    err = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and message in err[0], result.output
    assert "Traceback" not in result.output


def test_missing_judge_through_the_cli(tiny_models, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "eval",
            "--model_args",
            f"pretrained={tiny_models['gpt2']}",
            "--tasks",
            "trustgen_reliability",
            "--limit",
            "1",
            "--device",
            "cpu",
            "--output_path",
            str(tmp_path),
            "--metadata",
            json.dumps({"truth_judge": str(tmp_path / "no-judge")}),
        ],
    )
    assert result.exit_code == 2
    assert "truth judge" in result.output and "TRACING_BENCH_TRUTH_JUDGE" in result.output


def test_model_slug():
    assert model_slug("EleutherAI/pythia-70m") == "EleutherAI__pythia-70m"
    assert model_slug("step1000-tokens4B") == "step1000-tokens4B"
    assert run_folder("out", "/models/ckpt", "ckpt_179").name == "models__ckpt@ckpt_179"
