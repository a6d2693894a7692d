"""Checkpoints: step parsing, revision ranges, folder series, hub-cache loading, decoder blocks."""

from __future__ import annotations

import pytest
import torch

from tiny import build_model
from tracing_bench.checkpoints import PYTHIA_LOG, Checkpoint, parse_revisions, parse_step, resolve_series
from tracing_bench.errors import TracingBenchError
from tracing_bench.loading import find_blocks, hookpoint, load_checkpoint, n_blocks


@pytest.mark.parametrize(
    "name, step",
    [
        ("ckpt_179", 179),
        ("ckpt_000", 0),
        ("step1000", 1000),
        ("step1000-tokens4B", 1000),
        ("checkpoint-250", 250),
        ("iter_0005000", 5000),
        ("global_step42", 42),
        ("0005", 5),
        ("main", None),
        ("pythia-70m", None),
        (None, None),
    ],
)
def test_parse_step(name, step):
    assert parse_step(name) == step


def test_checkpoint_step_and_label(tmp_path):
    assert Checkpoint("LLM360/Amber", "ckpt_179").step == 179
    assert Checkpoint("LLM360/Amber", "ckpt_179").label == "ckpt_179"
    assert Checkpoint("EleutherAI/pythia-70m").step is None
    folder = tmp_path / "checkpoint-250"
    folder.mkdir()
    c = Checkpoint(str(folder))
    assert c.is_local and c.step == 250 and c.label == "checkpoint-250" and c.resolved_commit() is None


def test_parse_revisions_ranges():
    assert parse_revisions("ckpt_000:ckpt_359:10")[:3] == ["ckpt_000", "ckpt_010", "ckpt_020"]
    assert parse_revisions("ckpt_000:ckpt_359:10")[-1] == "ckpt_350"
    assert len(parse_revisions("ckpt_000:ckpt_359:10")) == 36
    assert parse_revisions("pythia-log") == list(PYTHIA_LOG)
    assert PYTHIA_LOG == (
        "step0",
        "step1",
        "step2",
        "step4",
        "step8",
        "step16",
        "step32",
        "step64",
        "step128",
        "step256",
        "step512",
    )
    revs = parse_revisions("pythia-log,step1000:step143000:1000")
    assert revs[11] == "step1000" and revs[-1] == "step143000" and len(revs) == 11 + 143
    assert parse_revisions("step1,main,step1") == ["step1", "main"]  # duplicates removed, order kept


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("ckpt_000:step10", "mixes naming styles"),
        ("step5:step1", "runs backwards"),
        ("step1:step5:0", "stride"),
        ("a:b", "not ckpt_N"),
        ("step1:step2:3:4", "malformed"),
        (" , ", "empty"),
    ],
)
def test_parse_revisions_errors(spec, fragment):
    with pytest.raises(TracingBenchError, match=fragment) as e:
        parse_revisions(spec)
    assert "\n" not in str(e.value)


def test_olmo_range_resolved_against_cache(hf_cache_series):
    model_id, _, home = hf_cache_series
    refs = home / "hub" / ("models--" + model_id.replace("/", "--")) / "refs"
    commit = (refs / "step1").read_text()
    added = ["step1000-tokens4B", "step2000-tokens8B", "step3000-tokens13B"]
    try:
        for r in added:
            (refs / r).write_text(commit)
        assert parse_revisions("step1000-tokens4B:step3000-tokens13B:2000", model=model_id) == [
            "step1000-tokens4B",
            "step3000-tokens13B",
        ]
        assert parse_revisions("step1000-tokens*:step2000-tokens*", model=model_id) == added[:2]
        with pytest.raises(TracingBenchError, match="matches none"):
            parse_revisions("step5000-tokens*:step9000-tokens*", model=model_id)
    finally:
        for r in added:
            (refs / r).unlink()


def test_folder_series_ordered_by_step(tmp_path, tiny_tokenizer):
    for name in ("step100", "step0", "step10"):
        build_model("gpt2", tiny_tokenizer, tmp_path / name, seed=1)
    (tmp_path / "notes").mkdir()  # no config.json: ignored
    series = resolve_series(str(tmp_path))
    assert [c.label for c in series] == ["step0", "step10", "step100"]
    assert [c.step for c in series] == [0, 10, 100]
    with pytest.raises(TracingBenchError, match="--revisions applies to hub"):
        resolve_series(str(tmp_path), "step1")
    build_model("gpt2", tiny_tokenizer, tmp_path / "final", seed=1)
    with pytest.raises(TracingBenchError, match="carry no step number"):
        resolve_series(str(tmp_path))


def test_missing_folder_one_line(tmp_path):
    with pytest.raises(TracingBenchError, match="does not exist") as e:
        resolve_series(str(tmp_path / "nope"))
    assert "\n" not in str(e.value)
    with pytest.raises(TracingBenchError, match="does not exist"):
        load_checkpoint(Checkpoint(str(tmp_path / "nope")))


@pytest.mark.parametrize(
    "arch, path, hook",
    [
        ("llama", "model.layers", "layers.2"),
        ("gpt_neox", "gpt_neox.layers", "layers.2"),
        ("gpt2", "transformer.h", "h.2"),
    ],
)
def test_blocks_and_hookpoint(tiny_models, arch, path, hook):
    model, tok = load_checkpoint(Checkpoint(str(tiny_models[arch])), dtype="float32", device="cpu")
    blocks, found = find_blocks(model)
    assert found == path and len(blocks) == model.config.num_hidden_layers == n_blocks(model)
    assert hookpoint(model, 2) == hook
    assert dict(model.base_model.named_modules())[hook] is blocks[2]
    with pytest.raises(TracingBenchError, match=r"out of range: the model has 3 blocks \(0-2\)"):
        hookpoint(model, 3)
    assert next(model.parameters()).dtype == torch.float32 and not model.training


def test_blocks_override_and_none_found(tiny_models):
    model, _ = load_checkpoint(Checkpoint(str(tiny_models["llama"])), device="cpu")

    class Wrapper(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

    wrapped = Wrapper(model)
    with pytest.raises(TracingBenchError, match="no decoder blocks found in Wrapper.*--blocks-attr") as e:
        find_blocks(wrapped)
    assert "\n" not in str(e.value)
    blocks, path = find_blocks(wrapped, "inner.model.layers")
    assert blocks is model.model.layers and path == "inner.model.layers"
    with pytest.raises(TracingBenchError, match="--blocks-attr 'inner.nothing'"):
        find_blocks(wrapped, "inner.nothing")


def test_hub_cache_series_loads_revisions(hf_cache_series):
    model_id, revisions, home = hf_cache_series
    series = resolve_series(model_id, ",".join(revisions))
    assert [c.revision for c in series] == revisions and [c.step for c in series] == [1, 2]
    weights = []
    for c in series:
        commit = c.resolved_commit()
        assert commit is not None and len(commit) == 40
        assert (home / "hub" / "models--local--tiny" / "snapshots" / commit).is_dir()
        model, _ = load_checkpoint(c, dtype="float32", device="cpu")
        weights.append(model.model.layers[0].mlp.up_proj.weight.clone())
    assert not torch.equal(weights[0], weights[1])


def test_unknown_revision_lists_cached_ones(hf_cache_series):
    model_id, _, _ = hf_cache_series
    with pytest.raises(TracingBenchError) as e:
        load_checkpoint(Checkpoint(model_id, "step999"), device="cpu")
    msg = str(e.value)
    assert "'step999'" in msg and "revisions in the local cache: step1, step2" in msg and "\n" not in msg


def test_bad_dtype_device():
    with pytest.raises(TracingBenchError, match="--dtype 'float8'"):
        load_checkpoint(Checkpoint("x/y"), dtype="float8")
    with pytest.raises(TracingBenchError, match="--device 'tpu'"):
        load_checkpoint(Checkpoint("x/y"), device="tpu")
