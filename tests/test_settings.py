"""Settings: one source of defaults and choices for the CLI; TraceSettings' harvest; trace.json formats."""

from __future__ import annotations

import json
import typing
from dataclasses import fields
from pathlib import Path

import click
import pytest

from tracing_bench.cli import main
from tracing_bench.cli.options import literal_choices
from tracing_bench.compare.leaderboard import Format
from tracing_bench.demo import DemoSettings
from tracing_bench.dimensions import DIMENSIONS, Protocol
from tracing_bench.errors import TracingBenchError
from tracing_bench.executors import ExecutorSettings
from tracing_bench.real_model import DTYPES as REAL_DTYPES
from tracing_bench.settings import (
    CorrelateSettings,
    HarvestSettings,
    Lambada,
    Preset,
    Scale,
    ScoringSettings,
    TraceSettings,
)
from tracing_bench.trace import record_figures
from tracing_bench.trace_files import TRACE_JSON_FORMAT, read_trace_json, settings_of

#: command -> the settings classes whose fields its options set
MAPPED: dict[tuple[str, ...], tuple[type, ...]] = {
    ("trace",): (TraceSettings, HarvestSettings, ExecutorSettings),
    ("eval-series",): (ExecutorSettings,),
    ("steer", "extract"): (HarvestSettings,),
    ("steer", "sweep"): (ScoringSettings,),
    ("steer", "correlate"): (CorrelateSettings, ScoringSettings),
    ("pretrain",): (TraceSettings,),  # --dimensions, --mi, --max-statements, --seed go to the live trace
    ("demo",): (DemoSettings,),
}
#: options named as a field whose command-line default is spelled otherwise on purpose
SPELLED_OTHERWISE = {
    (("steer", "sweep"), "tasks"): "trust",  # empty tasks: the command's default, trust for a sweep
    (("steer", "correlate"), "tasks"): "trust",  # trust = each dimension's trust_<dimension>
    (("demo",), "limit"): None,  # 50, or 20 with --fast
}
#: options whose values are a Literal type's (or a tuple's) that is no settings field
LITERAL_OPTIONS = {
    (("steer", "extract"), "scale"): Scale,
    (("steer", "extract"), "protocol"): Protocol,
    (("steer", "extract"), "preset"): Preset,
    (("steer", "sweep"), "lambada"): Lambada,
    (("steer", "correlate"), "scale"): Scale,
    (("data", "show"), "protocol"): Protocol,
    (("leaderboard",), "fmt"): Format,
}


def _command(path: tuple[str, ...]) -> click.Command:
    cmd: click.Command = main
    for name in path:
        assert isinstance(cmd, click.Group)
        cmd = cmd.commands[name]
    return cmd


def _cli_default(opt: click.Option) -> object:
    default = opt.default
    if opt.is_flag and not isinstance(default, bool):  # a flag without an explicit default is off
        return False
    return default


def _as_settings(cls: type, name: str, value: object) -> object:
    """The field's value in settings built from the command-line value (as the command builds them)."""
    if cls in (TraceSettings, HarvestSettings):
        built = TraceSettings.from_options(**{name: value})
        return getattr(built.harvest if cls is HarvestSettings else built, name)
    return getattr(cls(**{name: value}), name)


def _field_default(cls: type, name: str) -> object:
    return getattr(cls(), name) if cls is not HarvestSettings else getattr(TraceSettings().harvest, name)


def test_cli_defaults_and_choices_are_the_settings():
    checked = []
    for path, classes in MAPPED.items():
        for opt in _command(path).params:
            if not isinstance(opt, click.Option):
                continue
            cls = next((c for c in classes if opt.name in {f.name for f in fields(c)}), None)
            if cls is None:
                continue
            assert opt.name is not None
            hint = typing.get_type_hints(cls)[opt.name]
            choices = literal_choices(hint)
            if choices:
                assert isinstance(opt.type, click.Choice), (path, opt.name)
                assert tuple(opt.type.choices) == choices, (path, opt.name)
            else:
                assert not isinstance(opt.type, click.Choice), (path, opt.name)
            default = _cli_default(opt)
            if (path, opt.name) in SPELLED_OTHERWISE:
                assert default == SPELLED_OTHERWISE[(path, opt.name)], (path, opt.name)
            else:
                assert _as_settings(cls, opt.name, default) == _field_default(cls, opt.name), (path, opt.name)
            checked.append((path, opt.name))
    # every field of TraceSettings and HarvestSettings but the two a trace sets itself is an option of trace
    on_trace = {name for path, name in checked if path == ("trace",)}
    every = {f.name for c in (TraceSettings, HarvestSettings) for f in fields(c)} - {"harvest", "series_name"}
    assert every <= on_trace, every - on_trace
    assert {f.name for f in fields(ScoringSettings)} <= {n for p, n in checked if p == ("steer", "sweep")}
    # every field of CorrelateSettings (its scoring's too) is an option of steer correlate
    on_correlate = {n for p, n in checked if p == ("steer", "correlate")}
    every = {f.name for c in (CorrelateSettings, ScoringSettings) for f in fields(c)} - {"scoring"}
    assert every <= on_correlate, every - on_correlate


def test_correlate_settings_from_keywords():
    built = CorrelateSettings.from_options(alpha=2, probes=Path("p.csv"), limit=4, target_revision=None)
    assert built == CorrelateSettings(alpha=2.0, probes="p.csv", scoring=ScoringSettings(limit=4))
    # over a base: the options replace what they name; flat scoring options override ``scoring``
    again = CorrelateSettings.from_options(built, scoring=ScoringSettings(seed=7, limit=1), limit=3, n_boot=50)
    assert again == CorrelateSettings(alpha=2.0, probes="p.csv", n_boot=50, scoring=ScoringSettings(seed=7, limit=3))
    with pytest.raises(TypeError, match="alhpa"):
        CorrelateSettings.from_options(alhpa=1.0)
    with pytest.raises(TracingBenchError, match="--n-boot 0"):
        CorrelateSettings(n_boot=0)
    with pytest.raises(TracingBenchError, match="--scale 'big'"):
        CorrelateSettings(scale="big")  # type: ignore[arg-type]


def test_literal_options_offer_the_literal_values():
    for (path, name), literal in LITERAL_OPTIONS.items():
        opt = next(p for p in _command(path).params if p.name == name)
        assert isinstance(opt.type, click.Choice)
        assert tuple(opt.type.choices) == typing.get_args(literal), (path, name)
    real = next(p for p in _command(("real-model",)).params if p.name == "dtype")
    assert isinstance(real.type, click.Choice) and tuple(real.type.choices) == REAL_DTYPES


def test_literal_choices_reads_optional_literals():
    assert literal_choices(typing.get_type_hints(ScoringSettings)["positions"]) == ("all", "last")
    assert literal_choices(int) == ()


# --------------------------------------------------------------------------------- TraceSettings
def test_trace_settings_hold_the_harvest_as_given_and_run_the_protocols():
    s = TraceSettings.from_options(protocol="reference", batch_size=16, pooling="mean")
    assert s.harvest == HarvestSettings(batch_size=16, pooling="mean")  # as given, not rewritten
    assert s.run_harvest == HarvestSettings(batch_size=1, pooling="mean", dtype="float32")
    bf16 = TraceSettings(protocol="reference", harvest=HarvestSettings(dtype="bfloat16"))
    assert bf16.run_harvest.dtype == "bfloat16"
    paper = TraceSettings.from_options(batch_size=16)
    assert paper.run_harvest == paper.harvest == HarvestSettings(batch_size=16)
    # over a base: the options replace what they name, the rest is the base's
    again = TraceSettings.from_options(s, mi=True, dtype="float16")
    assert again.harvest == HarvestSettings(batch_size=16, pooling="mean", dtype="float16") and again.mi
    recorded = s.public()
    assert recorded["harvest"]["batch_size"] == 16 and recorded["run_harvest"]["batch_size"] == 1
    with pytest.raises(TracingBenchError, match="harvest"):
        TraceSettings(harvest={"dtype": "float32"})  # type: ignore[arg-type]


def test_the_key_changes_with_what_changes_the_numbers_only():
    base = TraceSettings()
    assert TraceSettings.from_options(batch_size=3, device="cpu", cache_dir="/x", threads=1).key() == base.key()
    assert TraceSettings.from_options(pooling="mean").key() != base.key()
    # under reference, auto and float32 load the same model: the same numbers, the same key
    assert (
        TraceSettings.from_options(protocol="reference").key()
        == TraceSettings.from_options(protocol="reference", dtype="float32").key()
    )


# --------------------------------------------------------------------------------- trace.json
def _format_1(**settings: object) -> dict:
    """A trace.json as tracing-bench 0.2 wrote it: the harvest settings flat in ``settings``, as run
    (under reference: batch size 1 and float32), and no ``format`` key."""
    flat = {
        "dimensions": list(DIMENSIONS),
        "layers": "all",
        "pooling": "mean",
        "mi": True,
        "protocol": "reference",
        "probes": ["logistic", "mass_mean"],
        "sigma": 50.0,
        "dtype": "float32",
        "device": "cpu",
        "batch_size": 1,
        "cache_dir": "/tmp/cache",
        "blocks_attr": None,
        "max_length": 64,
        "seed": 3,
        "delete_checkpoints": False,
        "max_statements": 200,
        "mi_subsample": None,
        "mi_noise": 8,
        "series_name": "m",
        "threads": None,
        "controls": True,
        "baseline": "auto",
    } | settings
    return {
        "tool": "tracing-bench trace",
        "package_version": "0.2.0",
        "settings": flat,
        "settings_key": "0123456789abcdef",
        "checkpoints": [{"model": "m", "revision": None, "step": 0, "label": "step0"}],
        "figures": [],
    }


def test_a_format_1_trace_json_is_read_in_the_current_format(tmp_path):
    (tmp_path / "trace.json").write_text(json.dumps(_format_1()))
    record = read_trace_json(tmp_path)
    assert record["format"] == TRACE_JSON_FORMAT and record["checkpoints"][0]["label"] == "step0"
    assert record["settings"]["harvest"] == {
        "pooling": "mean",
        "dtype": "float32",
        "device": "cpu",
        "batch_size": 1,
        "max_length": 64,
        "blocks_attr": None,
        "cache_dir": "/tmp/cache",
    }
    assert "pooling" not in record["settings"] and record["settings"]["seed"] == 3
    # the settings it was written with: those of the same command given today, so the same key (its parts are reused)
    today = TraceSettings.from_options(
        dimensions="all",
        pooling="mean",
        mi=True,
        protocol="reference",
        device="cpu",
        cache_dir="/tmp/cache",
        max_length=64,
        seed=3,
        max_statements=200,
        series_name="m",
    )
    assert settings_of(record).key() == today.key()
    assert settings_of(record).run_harvest == today.run_harvest
    assert settings_of(json.loads(json.dumps(record))) == settings_of(record)  # format 2 reads back the same


def test_figures_noted_in_a_format_1_trace_json_upgrade_it(tmp_path):
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(_format_1(protocol="paper", batch_size=8, dtype="auto")))
    record_figures(path, [tmp_path / "a.png"])
    record = json.loads(path.read_text())
    assert record["format"] == TRACE_JSON_FORMAT and record["figures"] == [str(tmp_path / "a.png")]
    assert record["settings"]["harvest"]["batch_size"] == 8 and record["settings"]["run_harvest"]["batch_size"] == 8


def test_a_newer_trace_json_is_refused(tmp_path):
    (tmp_path / "trace.json").write_text(json.dumps({"format": TRACE_JSON_FORMAT + 1, "settings": {}}))
    with pytest.raises(TracingBenchError, match="newer"):
        read_trace_json(tmp_path)
    (tmp_path / "trace.json").write_text("[1, 2]")
    with pytest.raises(TracingBenchError, match="not a trace.json"):
        read_trace_json(tmp_path)
