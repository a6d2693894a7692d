"""What a trace hands back and what its ``trace.json`` holds: :class:`TraceResult` and the reader.

:func:`tracing_bench.trace.trace` and :func:`tracing_bench.trace.merge` return a
:class:`TraceResult` (the files written, the findings, the number of checkpoints).

``trace.json`` is the provenance of a trace. Format :data:`TRACE_JSON_FORMAT` (2, from
tracing-bench 0.3.0) records the settings as :meth:`tracing_bench.settings.TraceSettings.public`
gives them: the harvest nested (``settings.harvest``, as given, and ``settings.run_harvest``, as
run after the protocol's adjustment), and ``format: 2`` at the top. Format 1 (no ``format`` key)
recorded the seven harvest settings flat in ``settings``, as run. :func:`read_trace_json` reads
either and returns the record in format 2; :func:`settings_of` rebuilds the
:class:`~tracing_bench.settings.TraceSettings` a record was written with.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tracing_bench.compare.findings_schema import Findings
from tracing_bench.errors import TracingBenchError
from tracing_bench.settings import HARVEST_FIELDS, HarvestSettings, TraceSettings

#: the format of trace.json this version writes (1: the harvest settings flat in ``settings``)
TRACE_JSON_FORMAT = 2


@dataclass(frozen=True)
class TraceResult:
    """What :func:`tracing_bench.trace.trace` and :func:`tracing_bench.trace.merge` return.

    Attributes:
        probes_csv: ``OUT/probes.csv``.
        mi_csv: ``OUT/mi.csv``.
        trace_json: ``OUT/trace.json`` (provenance, format :data:`TRACE_JSON_FORMAT`).
        findings_json: ``OUT/findings.json``.
        findings: the findings as written to findings.json.
        checkpoints: the number of checkpoints traced.
        failed: ``{revision: one line}`` for the hub revisions that could not be downloaded.
    """

    probes_csv: Path
    mi_csv: Path
    trace_json: Path
    findings_json: Path
    findings: Findings
    checkpoints: int
    failed: dict[str, str] = field(default_factory=dict)


def upgrade_trace_record(record: dict[str, Any]) -> dict[str, Any]:
    """A trace.json record in format :data:`TRACE_JSON_FORMAT`, from format 1 or 2.

    Format 1 recorded the harvest as run (after the protocol's adjustment); it becomes both
    ``harvest`` and ``run_harvest`` (the adjustment gives the same values again).

    Raises:
        TracingBenchError: a format newer than this version reads.
    """
    version = record.get("format", 1)
    if not isinstance(version, int) or version > TRACE_JSON_FORMAT:
        raise TracingBenchError(
            f"trace.json format {version!r} is newer than this tracing-bench reads (up to {TRACE_JSON_FORMAT}): "
            "upgrade tracing-bench"
        )
    if version == TRACE_JSON_FORMAT:
        return record
    flat = dict(record.get("settings") or {})
    harvest = {k: flat.pop(k) for k in HARVEST_FIELDS if k in flat}
    settings = {**flat, "harvest": harvest}
    if "protocol" in flat:
        settings["run_harvest"] = asdict(HarvestSettings(**harvest).for_protocol(str(flat["protocol"])))
    return {"format": TRACE_JSON_FORMAT, **record, "settings": settings}


def read_trace_json(path: str | Path) -> dict[str, Any]:
    """``trace.json`` (the file, or a trace folder's), in format :data:`TRACE_JSON_FORMAT`.

    Raises:
        TracingBenchError: not a trace.json (missing, not JSON, not an object, a newer format).
    """
    p = Path(path)
    if p.is_dir():
        p = p / "trace.json"
    try:
        record = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TracingBenchError(f"{p} cannot be read as trace.json ({type(e).__name__}): give a trace's folder") from e
    if not isinstance(record, dict):
        raise TracingBenchError(f"{p} is not a trace.json (a JSON object): give a trace's folder")
    return upgrade_trace_record(record)


def settings_of(record: dict[str, Any]) -> TraceSettings:
    """The :class:`~tracing_bench.settings.TraceSettings` a trace.json record (either format) was written with."""
    settings = dict(upgrade_trace_record(record).get("settings") or {})
    settings.pop("run_harvest", None)
    return TraceSettings.from_options(**settings)
