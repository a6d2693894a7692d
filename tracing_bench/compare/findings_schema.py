"""The schema of ``findings.json``, as typed dictionaries: what :mod:`tracing_bench.compare.findings`
writes and reads, and :mod:`tracing_bench.compare.claims` adds (``controls``).

A :class:`Findings` is what :func:`~tracing_bench.compare.findings.build_findings` returns,
:func:`~tracing_bench.compare.findings.write_findings` writes and
:func:`~tracing_bench.compare.findings.read_findings` reads back (JSON: tuples become lists, NaN
null). docs/CONVENTIONS.md describes the fields in prose.
"""

from __future__ import annotations

from typing import Any, TypedDict


class CheckpointInfo(TypedDict):
    """One checkpoint of the series (``checkpoints``)."""

    model: str
    revision: str | None
    step: int | None
    label: str


class FindingsSettingsRecord(TypedDict):
    """How the claims were tested (``settings``): the :class:`FindingsSettings` and the trace's settings
    that bear on them."""

    alpha: float
    confidence: float
    n_boot: int
    boot_seed: int
    turn_z: float
    mi_noise: int | None
    mi_subsample: int | None
    max_statements: int | None
    protocol: str | None
    seed: int | None


class LearnedTest(TypedDict):
    """One (dimension, layer) test of first against last checkpoint (``learned.layers``)."""

    dimension: str
    layer: int
    probe: str
    n_test: int
    first_acc: float
    first_acc_ci: list[float]
    last_acc: float
    last_acc_ci: list[float]
    change: float
    change_ci: list[float]
    first_only_right: int
    last_only_right: int
    p_value: float
    p_holm: float
    verdict: str
    claim: str


class _Overruled(TypedDict, total=False):
    test_verdict: str  # the test's verdict when the controls overruled it


class LearnedDimension(LearnedTest, _Overruled):
    """The claim of a dimension, at its chosen layer (``learned.dimensions``); the controls may
    overrule a ``learned`` verdict (``test_verdict`` keeps the test's)."""

    title: str
    layer_choice: str


class _Compared(TypedDict, total=False):
    note: str  # one checkpoint: nothing to compare
    first: str
    last: str
    n_tests: int


class Learned(_Compared):
    """Which concepts were learned between the first and the last checkpoint (``learned``)."""

    question: str
    test: str
    layer_choice: str
    alpha: float
    confidence: float
    dimensions: dict[str, LearnedDimension]
    layers: list[LearnedTest]
    family: str


# a turn found: where, and the rise and fall with their noise ("from" is a keyword: the functional form)
_TurnFound = TypedDict(
    "_TurnFound",
    {"checkpoint": str, "from": str, "to": str, "rise": float, "rise_sd": float, "fall": float, "fall_sd": float},
    total=False,
)


class TurnEntry(_TurnFound):
    """One (dimension, layer) MI turn test (``mi_turns.series``)."""

    dimension: str
    layer: int
    turn: Any  # the checkpoint key of the turn (a step, or a revision without one), or None
    tested: bool
    claim: str


class TurnPoint(TypedDict):
    """A turn found (``mi_turns.dimensions.<dimension>.turns``)."""

    layer: int
    turn: Any
    checkpoint: str


class TurnDimension(TypedDict):
    """The MI turn claim of a dimension (``mi_turns.dimensions``)."""

    title: str
    turns: list[TurnPoint]
    claim: str


class NoiseInfo(TypedDict):
    """How the MI noise was estimated (``mi_turns.noise``)."""

    k: int | None
    m: int | None
    seeds: list[int] | None
    method: str | None


class MiTurns(TypedDict):
    """Where I(T;X) turns (``mi_turns``)."""

    quantity: str
    rule: str
    z: float
    series: list[TurnEntry]
    dimensions: dict[str, TurnDimension]
    noise: NoiseInfo | None


class PairedChange(TypedDict):
    """A paired bootstrap of accuracy b against a on the same test statements."""

    a: float
    b: float
    change: float
    change_ci: list[float]
    p_value: float


class Selectivity(PairedChange):
    """The probe against its control task (labels permuted within each split): b is the probe's accuracy."""

    control_acc: float
    p_holm: float
    passed: bool


class BaselineCheck(TypedDict):
    """The probe at the last checkpoint against the random-init baseline or the first checkpoint."""

    kind: str
    acc: float
    change: float
    change_ci: list[float]
    p_value: float
    p_holm: float
    passed: bool


class Transfer(TypedDict):
    """The probe on held-out groups, against chance; ``drop`` against its in-group accuracy."""

    column: str | None
    acc: float
    acc_ci: list[float]
    change: float
    p_value: float
    p_holm: float
    passed: bool
    drop: PairedChange


class ControlEntry(TypedDict):
    """The controls of a dimension at its claim's layer (``controls.dimensions``)."""

    title: str
    layer: int
    probe: str
    n_test: int
    acc: float
    acc_ci: list[float]
    chance: float
    selectivity: Selectivity | None
    baseline: BaselineCheck | None
    transfer: Transfer | None
    verdict: str
    failed: list[str]
    claim: str


class _BaselineNote(TypedDict, total=False):
    baseline_note: str  # merged without the random-init baseline of some dimensions


class Controls(_BaselineNote):
    """The controls (``controls``; :func:`tracing_bench.compare.claims.add_claims`): per dimension
    the selectivity, baseline and transfer tests at its claim's layer."""

    question: str
    rules: str
    baseline: str | None
    alpha: float
    confidence: float
    baseline_family: str
    dimensions: dict[str, ControlEntry]


class _Controlled(TypedDict, total=False):
    controls: Controls


class Findings(_Controlled):
    """``findings.json``."""

    tool: str
    package_version: str
    created: str
    settings: FindingsSettingsRecord
    checkpoints: list[CheckpointInfo]
    datasets: dict[str, str]
    learned: Learned
    mi_turns: MiTurns
    summary: list[str]


#: the keys every findings.json has (what :func:`~tracing_bench.compare.findings.read_findings` checks)
REQUIRED_KEYS: frozenset[str] = Findings.__required_keys__
