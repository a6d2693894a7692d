"""Tests of the tiny pre-training run (tracing_bench.pretrain) and `tracing-bench pretrain`.

The runs here use a model far smaller than the default (hidden 32, 2 blocks, vocabulary 400) so
that each takes a few seconds on a shared CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from tracing_bench import pretrain as pt
from tracing_bench.cli import main
from tracing_bench.errors import TracingBenchError
from tracing_bench.files import current_umask

TINY = dict(
    hidden_size=32,
    layers=2,
    heads=2,
    intermediate_size=64,
    vocab_size=400,
    seq_len=32,
    batch_size=8,
    lr=1e-2,
    warmup=0,
    threads=1,
)


def _tiny(**overrides) -> pt.PretrainConfig:
    return pt.PretrainConfig(**{"steps": 8, **TINY, **overrides})


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _same(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[pt.PretrainConfig, Path, list[Path]]:
    cfg = _tiny(steps=16)
    out = tmp_path_factory.mktemp("run")
    return cfg, out, pt.pretrain(cfg, out, progress=False)


def test_default_save_steps_are_log_spaced():
    assert pt.default_save_steps(0) == [0]
    assert pt.default_save_steps(1) == [0, 1]
    assert pt.default_save_steps(100) == [0, 1, 2, 4, 8, 16, 32, 64, 100]
    assert pt.default_save_steps(128) == [0, 1, 2, 4, 8, 16, 32, 64, 128]


def test_layout_and_provenance(run):
    cfg, out, folders = run
    assert [f.name for f in folders] == [f"step{s}" for s in pt.default_save_steps(16)]
    assert sorted(p.name for p in out.iterdir()) == sorted([pt.META_FILE, *(f.name for f in folders)])
    meta = json.loads((out / pt.META_FILE).read_text())
    assert meta["complete"] and meta["seed"] == 0 and meta["steps"] == 16
    assert meta["checkpoints"] == [f.name for f in folders]
    assert [x["step"] for x in meta["losses"]] == list(range(1, 17))
    assert len(meta["corpus"]["md5"]) == 32 and meta["package_version"]
    assert all(f.stat().st_mode & 0o777 == 0o777 & ~current_umask() for f in folders)
    assert meta["config"]["hidden_size"] == 32 and meta["model_config"]["num_hidden_layers"] == 2


def test_every_checkpoint_loads(run):
    _, _, folders = run
    for folder in folders:
        model = AutoModelForCausalLM.from_pretrained(folder)
        tok = AutoTokenizer.from_pretrained(folder)
        assert model.config.model_type == "llama"
        assert tok.eos_token is not None and tok.pad_token is not None
        batch = tok(["The sky is blue.", "Q: Who?\tA: Me."], return_tensors="pt", padding=True)
        with torch.no_grad():
            hs = model(**batch, output_hidden_states=True).hidden_states
        assert len(hs) == 3 and hs[-1].shape[-1] == 32
    # step 0 is the initialisation, later steps moved away from it
    assert not _same(folders[0], folders[-1])


def test_pretraining_lowers_the_loss(run):
    _, out, folders = run
    tok = AutoTokenizer.from_pretrained(folders[0])
    texts, _ = pt.build_corpus("dev")
    batch = tok(texts[:64:4], return_tensors="pt", padding=True, truncation=True, max_length=32)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)

    def loss(folder: Path) -> float:
        model = AutoModelForCausalLM.from_pretrained(folder).eval()
        with torch.no_grad():
            return float(model(**batch, labels=labels).loss)

    assert loss(folders[-1]) < loss(folders[0]) - 0.5
    losses = [x["loss"] for x in json.loads((out / pt.META_FILE).read_text())["losses"]]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


def test_same_seed_same_weights_other_seed_differs(run, tmp_path):
    cfg, _, folders = run
    again = pt.pretrain(cfg, tmp_path / "again", progress=False)
    assert all(_same(a, b) for a, b in zip(folders, again, strict=False))
    other = pt.pretrain(pt.PretrainConfig(**{**TINY, "steps": 2, "seed": 1}), tmp_path / "other", progress=False)
    assert not _same(folders[0], other[0])


def test_thread_count_does_not_change_the_weights(run, tmp_path):
    cfg, _, folders = run
    two = pt.pretrain(
        pt.PretrainConfig(**{**TINY, "steps": 4, "save_at": (4,), "threads": 2}), tmp_path / "two", progress=False
    )
    one = pt.pretrain(pt.PretrainConfig(**{**TINY, "steps": 4, "save_at": (4,)}), tmp_path / "one", progress=False)
    assert _same(one[-1], two[-1])


def test_cached_run_is_reused(run, capsys):
    cfg, out, folders = run
    stamp = (folders[-1] / "model.safetensors").stat().st_mtime_ns
    assert pt.cached_run(cfg, out) == folders
    assert pt.pretrain(cfg, out) == folders
    assert "reusing" in capsys.readouterr().err
    assert (folders[-1] / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(TracingBenchError, match="other settings"):
        pt.pretrain(_tiny(steps=4), out, progress=False)


def test_interrupted_run_resumes_to_identical_weights(run, tmp_path, monkeypatch):
    cfg, _, folders = run
    save = pt._save_checkpoint

    def save_then_stop(model, tokenizer, out_dir, step):
        if step == 8:
            raise KeyboardInterrupt
        return save(model, tokenizer, out_dir, step)

    monkeypatch.setattr(pt, "_save_checkpoint", save_then_stop)
    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        pt.pretrain(cfg, out, progress=False)
    assert pt.cached_run(cfg, out) is None
    assert not (out / pt.META_FILE).exists() and (out / pt.RESUME_FILE).exists()
    assert not (out / "step8").exists() and not list(out.glob(".step*"))
    monkeypatch.setattr(pt, "_save_checkpoint", save)
    resumed = pt.pretrain(cfg, out, progress=False)
    assert not (out / pt.RESUME_FILE).exists()
    assert all(_same(a, b) for a, b in zip(folders, resumed, strict=False))
    assert json.loads((out / pt.META_FILE).read_text())["resumed_at"] == 4


@pytest.mark.parametrize(
    "kwargs, flag",
    [
        ({"steps": -1}, "--steps"),
        ({"seed": -2}, "--seed"),
        ({"steps": 4, "save_at": (5,)}, "--save-at"),
        ({"hidden_size": 30, "heads": 4}, "hidden_size"),
        ({"corpus": "test"}, "corpus"),
        ({"lr": 0.0}, "lr"),
        ({"threads": 0}, "--threads"),
    ],
)
def test_config_rejects_bad_values(kwargs, flag):
    with pytest.raises(TracingBenchError, match=flag) as e:
        pt.PretrainConfig(**kwargs)
    assert "\n" not in str(e.value)


def test_save_at_always_includes_first_and_last():
    assert _tiny(steps=10, save_at=(5, 3, 5)).save_steps == [0, 3, 5, 10]


@pytest.mark.parametrize(
    "args, says",
    [
        (["--steps", "-5"], "--steps -5"),
        (["--steps", "4", "--save-at", "9"], "--save-at 9"),
        (["--save-at", "1,x"], "--save-at 'x'"),
        (["--seed", "-1"], "--seed -1"),
        (["--threads", "0"], "--threads 0"),
    ],
)
def test_cli_bad_flags_one_line_exit_2(tmp_path, args, says):
    res = CliRunner().invoke(main, ["pretrain", "--out", str(tmp_path / "o"), *args])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0]
    assert not (tmp_path / "o").exists()


def test_cli_out_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    res = CliRunner().invoke(main, ["pretrain", "--out", str(tmp_path / "f"), "--fast", "--steps", "1"])
    assert res.exit_code == 2 and "is a file" in res.output


def test_cli_trains_then_reuses(tmp_path, monkeypatch):
    # --fast with the tiny sizes, so that the command itself is what is tested
    monkeypatch.setattr(pt.PretrainConfig, "fast", classmethod(lambda cls, **kw: cls(**{**TINY, **kw})))
    out = tmp_path / "cli"
    args = ["pretrain", "--out", str(out), "--fast", "--steps", "4", "--save-at", "0,2", "--quiet"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "3 checkpoints trained" in first.output
    assert sorted(p.name for p in out.glob("step*")) == ["step0", "step2", "step4"]
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0 and "3 checkpoints reused" in second.output


def test_stale_temp_folders_of_a_killed_run_are_removed(tmp_path):
    out = tmp_path / "killed"
    (out / ".step3.abc").mkdir(parents=True)
    (out / ".step3.abc" / "config.json").write_text("{}")
    folders = pt.pretrain(_tiny(steps=2), out, progress=False)
    assert not list(out.glob(".*")) and [f.name for f in folders] == ["step0", "step1", "step2"]


@pytest.mark.parametrize("corpus", ["dev", "all"])
def test_crows_pairs_never_enters_the_pretraining_corpus(corpus):
    """CrowS-Pairs is an evaluation set: no sentence of it, in either role, is trained on."""
    import csv

    from tracing_bench.dimensions import DIMENSIONS

    with open(DIMENSIONS["fairness"].path, newline="", encoding="utf-8") as f:
        crows = {" ".join(r[c].split()).lower() for r in csv.DictReader(f) for c in ("sent_more", "sent_less")}
    texts, prov = pt.build_corpus(corpus)
    assert len(crows) > 3000 and len(texts) > 1000
    assert not [t for t in texts if " ".join(t.split()).lower() in crows]
    assert "fairness" not in prov["files"]


def test_every_trust_answer_choice_is_one_token(run):
    """Zero-shot choice scoring must not be decided by token counts: each choice of every trust_*
    task (read from the task YAMLs, after the target delimiter) is a single token of the saved
    tokenizer, and ordinary text still tokenises."""
    import yaml

    from tracing_bench.tasks import TASKS_DIR

    _, _, folders = run
    tok = AutoTokenizer.from_pretrained(folders[-1])
    choices = set()
    for path in TASKS_DIR.glob("*/trust_*.yaml"):
        text = path.read_text()
        spec = yaml.safe_load("\n".join(line for line in text.splitlines() if "!function" not in line))
        template = yaml.safe_load(
            "\n".join(
                line for line in (TASKS_DIR / "_template_yaml").read_text().splitlines() if "!function" not in line
            )
        )
        delimiter = spec.get("target_delimiter", template.get("target_delimiter", " "))
        choices |= {delimiter + c for c in spec.get("doc_to_choice", template["doc_to_choice"])}
    assert {" 0", " 1", " negative", " positive"} <= choices
    for c in sorted(choices):
        assert len(tok(c, add_special_tokens=False).input_ids) == 1, (c, tok.tokenize(c))
    text = "The sentiment is positive"
    assert tok.decode(tok(text, add_special_tokens=False).input_ids) == text
