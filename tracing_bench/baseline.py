"""The random-feature baseline of a trace: a randomly initialised model of the same config and tokenizer.

A probe that reads a label at initialisation reads it from the words (token identity, length,
a marker), not from anything the model learned. ``trace --baseline random-init`` builds the last
checkpoint's architecture from its config with seeded random weights
(:func:`random_init_model`: ``AutoModelForCausalLM.from_config`` under ``torch.manual_seed(seed)``,
the checkpoint's own tokenizer; the weights are never saved), harvests it through the same
harvest code and probes it like a checkpoint. Its activations are cached under a key that adds
``init: random-init`` and ``init_seed`` to the checkpoint's (never mistaken for the trained
model's); its part files live in ``OUT/parts/<settings key>/random-init-s<seed>-<checkpoint>/``
and its probe rows go to ``OUT/baseline.csv`` (the columns of probes.csv, revision
``random-init``). ``auto`` (the default) traces it when the series is one checkpoint or has no
step-0 checkpoint (a step-0 checkpoint is itself a random initialisation).

:func:`finish_controls` (called by :func:`tracing_bench.trace.merge`) reads those parts, writes
baseline.csv and adds the controls' verdicts to the findings
(:func:`tracing_bench.compare.claims.add_claims`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from tracing_bench.cache import ActivationCache, activation_spec
from tracing_bench.checkpoints import Checkpoint
from tracing_bench.compare.claims import add_claims
from tracing_bench.compare.findings_schema import Findings
from tracing_bench.dimensions import DimensionData
from tracing_bench.errors import TracingBenchError, first_line
from tracing_bench.files import atomic_write_csv, safe_name
from tracing_bench.harvest import harvest
from tracing_bench.loading import resolve_device, torch_dtype
from tracing_bench.parts import PROBE_COLUMNS, build_part, checkpoint_slug, read_part, write_part
from tracing_bench.settings import TraceSettings
from tracing_bench.threads import use_threads

INIT = "random-init"


def needs_baseline(ckpts: list[Checkpoint], settings: TraceSettings) -> bool:
    """Whether the random-init baseline is traced: asked for, or ``auto`` and the series is one
    checkpoint or starts after step 0."""
    if settings.baseline == "none" or not settings.probes:
        return False
    return settings.baseline == INIT or len(ckpts) < 2 or ckpts[0].step != 0


def baseline_part_path(out: str | Path, settings: TraceSettings, ckpt: Checkpoint, dimension: str) -> Path:
    """Where the baseline's part of one dimension lives (beside the checkpoints' parts)."""
    slug = f"{INIT}-s{int(settings.seed)}-{checkpoint_slug(ckpt)}"
    return Path(out) / "parts" / settings.key() / slug / f"{safe_name(dimension)}.json"


def random_init_model(ckpt: Checkpoint, *, seed: int, dtype: str = "auto", device: str = "auto") -> tuple[Any, Any]:
    """A randomly initialised model of ``ckpt``'s config, with ``ckpt``'s tokenizer.

    Args:
        ckpt: the checkpoint whose ``config.json`` and tokenizer are used (its weights are not read).
        seed: ``torch.manual_seed`` of the initialisation (the global RNG is restored after).
        dtype: ``auto`` (float32) or a dtype name; device: ``auto``, ``cpu`` or ``cuda``.

    Returns:
        ``(model, tokenizer)``, the model in eval mode on the device.

    Raises:
        TracingBenchError: the config or tokenizer cannot be read (one line).
    """
    # lazy: transformers loads on first use, so importing baseline stays light
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"revision": ckpt.revision} if ckpt.revision else {}
    what = (
        f"checkpoint folder {ckpt.model}" if ckpt.is_local else f"revision {ckpt.revision or 'main'!r} of {ckpt.model}"
    )
    try:
        config = AutoConfig.from_pretrained(ckpt.model, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(ckpt.model, **kwargs)
    except (OSError, ValueError, KeyError) as e:
        raise TracingBenchError(
            f"the random-init baseline could not read the config and tokenizer of {what} ({first_line(e, limit=160)}); "
            "make them available offline or trace with --baseline none"
        ) from None
    td = torch_dtype(dtype)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = AutoModelForCausalLM.from_config(config)
    model.to(device=resolve_device(device), dtype=torch.float32 if td == "auto" else td)
    model.eval()
    return model, tokenizer


def _activations(
    ckpt: Checkpoint, data: DimensionData, settings: TraceSettings, loaded: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """The baseline's activations of one dimension, from the cache or harvested (and cached)."""
    h = settings.run_harvest
    spec = {**activation_spec(ckpt, data, h), "init": INIT, "init_seed": int(settings.seed)}
    cache = ActivationCache(h.cache_dir)
    hit = cache.load(spec)
    if hit is not None:
        return hit
    if "model" not in loaded:
        loaded["model"], loaded["tokenizer"] = random_init_model(
            ckpt, seed=settings.seed, dtype=h.dtype, device=h.device
        )
    model = loaded["model"]
    acts = harvest(model, loaded["tokenizer"], data.statements, h)
    meta = cache.save(
        spec,
        acts,
        {
            "resolved_commit": None,
            "step": None,
            "label": f"{INIT} ({ckpt.label} config)",
            "dataset_file": data.path.name,
            "torch_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        },
    )
    return acts, meta


def trace_baseline(
    ckpt: Checkpoint, datas: list[DimensionData], settings: TraceSettings, out: str | Path
) -> list[Path]:
    """Probe a random initialisation of ``ckpt``'s architecture on every dimension (resumable parts).

    Returns:
        the baseline's part files, one per dimension.
    """
    probe_only = replace(settings, mi=False)
    paths = []
    loaded: dict[str, Any] = {}
    with use_threads(settings.threads):
        for data in datas:
            path = baseline_part_path(out, settings, ckpt, data.key_name)
            paths.append(path)
            if read_part(path, data.md5) is not None:
                continue
            acts, prov = _activations(ckpt, data, settings, loaded)
            part = build_part(ckpt, data, acts.numpy(), prov, probe_only)
            part["checkpoint"] = {**part["checkpoint"], "revision": INIT, "step": None, "label": INIT}
            part["baseline"] = {
                "init": INIT,
                "seed": int(settings.seed),
                "config_of": ckpt.label,
                "model": ckpt.model,
                "config_revision": ckpt.revision,
                "weights": "never saved; rebuilt from the config with the seed",
            }
            for r in part["probes"]:
                r.update(revision=INIT, step=None)
            write_part(path, part)
    return paths


def finish_controls(
    out: str | Path,
    ckpts: list[Checkpoint],
    datas: list[DimensionData],
    settings: TraceSettings,
    findings: Findings,
    parts: dict[str, list[Mapping[str, Any]]],
) -> Path | None:
    """Write ``OUT/baseline.csv`` (when the baseline was traced) and add the controls to ``findings``.

    A caller that merges parts without having traced the baseline (:func:`trace` always does)
    gets the controls without it: the first checkpoint is the baseline, or none for one checkpoint,
    and ``controls.baseline_note`` says so.

    Returns:
        the path of baseline.csv, or ``None`` when the baseline was not traced.
    """
    base: dict[str, Any] = {}
    csv_path = None
    missing = []
    if needs_baseline(ckpts, settings):
        rows = []
        for data in datas:
            part = read_part(baseline_part_path(out, settings, ckpts[-1], data.key_name), data.md5)
            if part is None:
                missing.append(data.name)
                continue
            base[data.name] = part
            rows += [{**r, "dimension": data.name} for r in part["probes"]]
        if not missing:
            csv_path = atomic_write_csv(Path(out) / "baseline.csv", PROBE_COLUMNS, rows)
    add_claims(findings, parts, None if missing else base or None)
    if missing:
        findings["controls"]["baseline_note"] = (
            f"the random-init baseline of {', '.join(missing)} was not traced "
            "(merged without it); trace again to compare against it"
        )
    return csv_path
