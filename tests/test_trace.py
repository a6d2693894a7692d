"""trace: end to end on a folder series and a hub-cache series, resume after interruption, bad input."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from click.testing import CliRunner

import tracing_bench.trace as trace_mod
from tiny import write_small_dims
from tracing_bench.cli import main
from tracing_bench.dimensions import load_dimension
from tracing_bench.trace import MI_COLUMNS, PROBE_COLUMNS, trace


@pytest.fixture(scope="module")
def dims(tmp_path_factory) -> str:
    """Two small statement,label CSVs (48 rows each), given as a comma list of paths."""
    return write_small_dims(tmp_path_factory.mktemp("dims"), 48)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_trace_folder_series_cli(series_folder, dims, tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(
        main,
        [
            "trace",
            "--model",
            str(series_folder),
            "--dimensions",
            dims,
            "--mi",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--batch-size",
            "16",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    probes = _rows(out / "probes.csv")
    assert list(probes[0]) == list(PROBE_COLUMNS)
    assert len(probes) == 3 * 2 * 3 * 2  # checkpoints x dimensions x layers x probes
    assert [r["step"] for r in probes[::12]] == ["0", "10", "100"]
    assert [r["revision"] for r in probes[::12]] == ["step0", "step10", "step100"]
    assert {r["probe"] for r in probes} == {"logistic", "mass_mean"}
    assert {r["dimension"] for r in probes} == {"fairness_small", "privacy_small"}
    for r in probes:
        assert 0.0 <= float(r["test_acc"]) <= 1.0 and r["package_version"] and len(r["dataset_md5"]) == 32
    mi = _rows(out / "mi.csv")
    assert list(mi[0]) == list(MI_COLUMNS) and len(mi) == 3 * 2 * 3
    assert all(float(r["i_xt"]) > 0 for r in mi)
    prov = json.loads((out / "trace.json").read_text())
    assert [c["step"] for c in prov["checkpoints"]] == [0, 10, 100]
    assert prov["format"] == 2 and prov["settings"]["harvest"]["pooling"] == "last"
    assert prov["datasets"][0]["dataset_md5"]
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))  # drawn by report.plots.trace_figures
    assert "probes_fairness_small.png" in pngs and "mi_fairness_small.png" in pngs, pngs
    assert prov["figures"]


def test_interrupted_trace_resumes_to_identical_tables(series_folder, dims, tmp_path, monkeypatch):
    kw = dict(dimensions=dims, layers="0,2", mi=True, batch_size=16, progress=False)
    full = trace(str(series_folder), out=tmp_path / "full", cache_dir=tmp_path / "cache_full", **kw)

    original = trace_mod.trace_checkpoint
    done = []

    def crash_after_first(ckpt, *args, **kwargs):
        if done:
            raise KeyboardInterrupt  # Ctrl-C while the second checkpoint starts
        done.append(ckpt)
        return original(ckpt, *args, **kwargs)

    monkeypatch.setattr(trace_mod, "trace_checkpoint", crash_after_first)
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
            str(tmp_path / "cache_int"),
            "--out",
            str(tmp_path / "int"),
        ],
    )
    assert res.exit_code == 130 and "run the same command again" in res.output
    assert not (tmp_path / "int" / "probes.csv").exists()
    parts = sorted((tmp_path / "int" / "parts").rglob("*.json"))
    assert len(parts) == 2  # the first checkpoint's two dimensions
    mtimes = [p.stat().st_mtime_ns for p in parts]

    monkeypatch.setattr(trace_mod, "trace_checkpoint", original)
    again = trace(str(series_folder), out=tmp_path / "int", cache_dir=tmp_path / "cache_int", **kw)
    assert [p.stat().st_mtime_ns for p in parts] == mtimes  # finished work was not redone
    for a, b in ((again.probes_csv, full.probes_csv), (again.mi_csv, full.mi_csv)):
        assert a.read_bytes() == b.read_bytes()


def test_trace_hub_cache_series_and_delete(hf_cache_series, dims, tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    model_id, revisions, home = hf_cache_series
    copy = tmp_path / "hf_home"
    shutil.copytree(home, copy, symlinks=True)  # --delete-checkpoints must not touch the shared fixture
    monkeypatch.setenv("HF_HOME", str(copy))
    monkeypatch.setenv("HF_HUB_CACHE", str(copy / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HOME", str(copy))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(copy / "hub"))
    snapshots = copy / "hub" / "models--local--tiny" / "snapshots"
    assert len(list(snapshots.iterdir())) == 2

    out = tmp_path / "out"
    res = CliRunner().invoke(
        main,
        [
            "trace",
            "--model",
            model_id,
            "--revisions",
            ",".join(revisions),
            "--dimensions",
            dims.split(",")[0],
            "--probes",
            "mass_mean",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--delete-checkpoints",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    probes = _rows(out / "probes.csv")
    assert len(probes) == 2 * 3 and {r["model"] for r in probes} == {model_id}
    assert [r["revision"] for r in probes[::3]] == revisions and [r["step"] for r in probes[::3]] == ["1", "2"]
    prov = json.loads((out / "trace.json").read_text())
    assert all(len(c["resolved_commit"]) == 40 for c in prov["checkpoints"])
    assert not snapshots.exists() or not list(snapshots.iterdir())  # downloaded checkpoints removed
    assert len(list((home / "hub" / "models--local--tiny" / "snapshots").iterdir())) == 2  # fixture intact


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory, tiny_tokenizer):
    """A causal LM whose blocks are not where decoder blocks usually are (bert.encoder.layer)."""
    from transformers import BertConfig, BertLMHeadModel

    out = tmp_path_factory.mktemp("bert")
    cfg = BertConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        is_decoder=True,
        pad_token_id=tiny_tokenizer.pad_token_id,
    )
    BertLMHeadModel(cfg).save_pretrained(out)
    tiny_tokenizer.save_pretrained(out)
    return out


def _bad(args, match):
    res = CliRunner().invoke(main, ["trace", *args])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and match in lines[0], res.output
    assert "Traceback" not in res.output


def test_bad_input_one_line_exit_2(tiny_models, series_folder, bert_folder, hf_cache_series, dims, tmp_path):
    llama = str(tiny_models["llama"])
    common = ["--dimensions", dims.split(",")[0], "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o")]
    _bad(["--model", llama, "--dimensions", "honesty", "--out", str(tmp_path / "o")], "unknown dimension 'honesty'")
    _bad(["--model", llama, "--layers", "1,7", *common], "--layers 7 is out of range: the model has 3 blocks (0-2)")
    _bad(["--model", llama, "--layers", "x", *common], "--layers 'x' is malformed")
    _bad(["--model", str(tmp_path / "missing"), *common], "does not exist")
    _bad(
        ["--model", "local/tiny", "--revisions", "step1,step9", *common],
        "revision 'step9' of local/tiny could not be loaded",
    )
    _bad(["--model", "local/tiny", "--revisions", "step9:step1", *common], "runs backwards")
    _bad(["--model", str(bert_folder), *common], "no decoder blocks found in BertLMHeadModel")
    _bad(["--model", str(bert_folder), "--blocks-attr", "bert.nothing", *common], "--blocks-attr 'bert.nothing'")
    _bad(["--model", str(series_folder), "--delete-checkpoints", *common], "refusing to delete")
    _bad(["--model", llama, "--probes", "svm", *common], "--probes svm unknown")
    _bad(["--model", llama, "--mi", "--mi-noise", "1", *common], "--mi-noise 1 is not valid: give 0")


def test_blocks_attr_override_traces_bert(bert_folder, dims, tmp_path):
    res = CliRunner().invoke(
        main,
        [
            "trace",
            "--model",
            str(bert_folder),
            "--blocks-attr",
            "bert.encoder.layer",
            "--dimensions",
            dims.split(",")[0],
            "--probes",
            "mass_mean",
            "--cache-dir",
            str(tmp_path / "c"),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert len(_rows(tmp_path / "o" / "probes.csv")) == 2


def test_max_statements_and_mi_subsample(series_folder, tmp_path):
    """A subsampled trace probes exactly the subsample, records it, and MI uses m = --mi-subsample."""
    res = CliRunner().invoke(
        main,
        [
            "trace",
            "--model",
            str(series_folder),
            "--dimensions",
            "fairness",
            "--max-statements",
            "60",
            "--mi",
            "--mi-subsample",
            "20",
            "--layers",
            "0,2",
            "--out",
            str(tmp_path / "t"),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
    )
    assert res.exit_code == 0, res.output
    sub = load_dimension("fairness").subsample(60, seed=0)
    probes = _rows(tmp_path / "t" / "probes.csv")
    assert {int(r["n_train"]) for r in probes} == {len(sub.splits["probe_train"])}
    assert {int(r["m"]) for r in _rows(tmp_path / "t" / "mi.csv")} == {20}
    prov = json.loads((tmp_path / "t" / "trace.json").read_text())
    assert prov["datasets"][0]["subsampled_from"] == len(load_dimension("fairness").statements)
    assert prov["settings"]["max_statements"] == 60
    bad = CliRunner().invoke(
        main, ["trace", "--model", str(series_folder), "--max-statements", "3", "--out", str(tmp_path / "u")]
    )
    assert bad.exit_code == 2 and bad.output.startswith("error: --max-statements 3")


def test_layer_specs_expand_against_the_model_and_open_slices_cost_nothing_before_it():
    import time

    from tracing_bench.errors import TracingBenchError
    from tracing_bench.settings import TraceSettings, parse_layers

    assert parse_layers("4:", 6) == [4, 5] and parse_layers("0:32:8", 32) == [0, 8, 16, 24]
    assert parse_layers("1-3,0", 6) == [0, 1, 2, 3] and parse_layers("all", 3) == [0, 1, 2]
    start = time.perf_counter()
    assert TraceSettings(layers="4:").layers == "4:"  # checked before the model is known
    assert time.perf_counter() - start < 1.0  # the open end is not expanded (it used to build 10^9 ints)
    for bad in ("x", "0:32:0", "1:b"):
        with pytest.raises(TracingBenchError, match="is malformed"):
            TraceSettings(layers=bad)
    with pytest.raises(TracingBenchError, match="out of range"):
        parse_layers("4:8", 6)
