"""What a command is asked to do, as settings objects that validate themselves once.

* :class:`HarvestSettings`: how activations are harvested and cached (pooling, dtype, device,
  batch size, max length, blocks path, cache folder); shared by :func:`tracing_bench.harvest.harvest`,
  the activation cache, ``trace`` and the steering vectors, so each check exists once.
* :class:`TraceSettings`: everything but the checkpoints that ``trace`` needs (the dimensions,
  layers, probes, MI options and its harvest settings); :meth:`TraceSettings.key` is the hash of
  what changes the numbers, which names the folder of its part files.
* :class:`ScoringSettings`: how ``steer sweep`` and ``steer correlate`` score a target model
  with lm-eval (tasks, limit, batch size, seed, steered positions, preset, dtype, device).
* :class:`CorrelateSettings`: the rest of a ``steer correlate`` (alpha, scale, probes, bootstrap,
  data, target revision) around its :class:`ScoringSettings`.
* :data:`PRESETS`: the released code's steering in one name (``--preset reference``).

Each object raises :class:`~tracing_bench.errors.TracingBenchError` in ``__post_init__`` with one
line naming the flag, what is valid and how to fix it; the closed sets are ``Literal`` types.
Where to run each checkpoint is :class:`tracing_bench.executors.ExecutorSettings`.

>>> TraceSettings.from_options(dimensions="fairness,privacy", layers="0:32:4", mi=True).harvest.pooling
'last'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, get_args

from tracing_bench import __version__
from tracing_bench.dimensions import DIMENSIONS, PROTOCOLS, Protocol, resolve_dimensions
from tracing_bench.errors import TracingBenchError
from tracing_bench.files import spec_hash
from tracing_bench.loading import DTYPES, DType, resolve_device
from tracing_bench.threads import check_threads

Pooling = Literal["last", "mean"]
POOLINGS: tuple[str, ...] = ("last", "mean")
PROBES: tuple[str, ...] = ("logistic", "mass_mean")
Positions = Literal["all", "last"]
POSITIONS: tuple[str, ...] = ("all", "last")
Preset = Literal["reference"]
#: how a steering vector is scaled (:mod:`tracing_bench.steering.vector`)
Scale = Literal["paper", "reference", "unit"]
#: whether ``steer sweep`` also guards fluency with lm-eval's lambada_openai (when cached)
Lambada = Literal["auto", "off"]
Baseline = Literal["auto", "random-init", "none"]
BASELINES: tuple[str, ...] = ("auto", "random-init", "none")

#: Settings a preset fixes: extraction (``scale``, ``protocol``, ``dtype``, ``batch_size``) and
#: application (``positions``, ``dtype`` of the steered model).
PRESETS: dict[str, dict[str, Any]] = {
    "reference": {
        "scale": "reference",
        "protocol": "reference",
        "dtype": "float32",
        "batch_size": 1,
        "positions": "last",
    },
}
#: half-samples of the MI noise estimate by default (each costs about 1/8 of the full estimate)
MI_NOISE_DEFAULT = 8


def preset_settings(preset: str | None) -> dict[str, Any]:
    """The settings of a named preset (empty for ``None``).

    Raises:
        TracingBenchError: an unknown preset name.
    """
    if preset is None:
        return {}
    if preset not in PRESETS:
        raise TracingBenchError(f"--preset {preset!r} is not valid; use one of {', '.join(PRESETS)}")
    return dict(PRESETS[preset])


def parse_layers(spec: str | list[int] | None, n_blocks: int | None) -> list[int]:
    """Layer indices from ``all`` / ``0,4,8`` / ``4-12`` (inclusive) / ``0:32:4`` (end exclusive).

    ``n_blocks=None`` checks the syntax only (before the model is known) and returns ``[]``:
    ranges are not expanded, so an open slice such as ``4:`` costs nothing.

    Raises:
        TracingBenchError: malformed spec or a layer out of ``0..n_blocks-1``.
    """
    if spec is None or spec == "all":
        return [] if n_blocks is None else list(range(n_blocks))
    if isinstance(spec, (list, tuple)):
        out = [int(x) for x in spec]
    else:
        out = []
        for item in (s.strip() for s in str(spec).split(",")):
            if not item:
                continue
            try:
                if ":" in item:
                    a, b, *k = item.split(":")
                    span = range(int(a or 0), int(b) if b else (n_blocks or 0), int(k[0]) if k else 1)
                elif re.fullmatch(r"\d+-\d+", item):
                    a, b = item.split("-")
                    span = range(int(a), int(b) + 1)
                else:
                    span = range(int(item), int(item) + 1)
            except ValueError:
                raise TracingBenchError(
                    f"--layers {spec!r} is malformed at {item!r}: use all, a comma list (0,4,8), a range 4-12 "
                    "or a slice 0:32:4"
                ) from None
            if n_blocks is not None:
                out.extend(span)
    if n_blocks is None:
        return []
    bad = sorted({x for x in out if not 0 <= x < n_blocks})
    if bad:
        raise TracingBenchError(
            f"--layers {','.join(map(str, bad))} is out of range: the model has {n_blocks} blocks (0-{n_blocks - 1})"
        )
    if not out:
        raise TracingBenchError(
            f"--layers {spec!r} selects no layer: the model has {n_blocks} blocks (0-{n_blocks - 1})"
        )
    return sorted(set(out))


def _positive_int(value: Any, flag: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TracingBenchError(f"{flag} {value} is not valid: use a positive integer")


def _check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise TracingBenchError(f"--dtype {dtype!r} is not valid: use one of {', '.join(DTYPES)}")


def setting(default: Any, help: str, **kwargs: Any) -> Any:
    """A settings field with its help text (``metadata["help"]``): what ``--help`` shows for the
    option that sets it (:func:`tracing_bench.cli.options.settings_option`)."""
    return field(default=default, metadata={"help": help}, **kwargs)


@dataclass(frozen=True)
class HarvestSettings:
    """How activations are harvested and cached.

    Attributes:
        pooling: ``last`` (the last real token) or ``mean`` (the mean over real tokens).
        dtype: dtype the model is loaded in: ``auto`` (as stored), ``float32``, ``bfloat16``, ``float16``.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: statements per forward pass (sorted by length first).
        max_length: truncate statements to this many tokens; ``None`` (or 0): no truncation.
        blocks_attr: dotted path of the decoder blocks' ``ModuleList`` for architectures not
            recognised (:func:`tracing_bench.loading.find_blocks`).
        cache_dir: activation cache folder; ``None``: ``$TRACING_BENCH_CACHE`` or
            ``~/.cache/tracing-bench``.

    Pooling, dtype, max length and blocks path are part of a cache entry's key; batch size,
    device and folder are not (they do not change the numbers beyond float rounding).
    """

    pooling: Pooling = setting("last", "last: the last real token of each statement; mean: the mean over its tokens.")
    dtype: DType = setting("auto", "Dtype the model is loaded in (auto: as stored).")
    device: str = setting("auto", "auto, cpu or cuda.")
    batch_size: int = setting(32, "Statements per forward pass.")
    max_length: int | None = setting(None, "Truncate statements to this many tokens.")
    blocks_attr: str | None = setting(
        None, "Dotted path of the decoder blocks' ModuleList for architectures not recognised (e.g. model.layers)."
    )
    cache_dir: str | None = setting(None, "Activation cache (default $TRACING_BENCH_CACHE or ~/.cache/tracing-bench).")

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise TracingBenchError(f"--pooling {self.pooling!r} is not valid: use one of {', '.join(POOLINGS)}")
        _check_dtype(self.dtype)
        resolve_device(self.device)
        _positive_int(self.batch_size, "--batch-size")
        if self.cache_dir is not None and not isinstance(self.cache_dir, str):
            object.__setattr__(self, "cache_dir", str(self.cache_dir))

    @classmethod
    def given(cls, settings: HarvestSettings | None = None, **options: Any) -> HarvestSettings:
        """``settings`` (default: the defaults) with the keyword ``options`` that are not ``None`` applied.

        The keyword form of the functions that take harvest settings:
        ``cached_activations(ckpt, data, dtype="float32")`` is
        ``cached_activations(ckpt, data, HarvestSettings(dtype="float32"))``.
        """
        unknown = sorted(set(options) - set(HARVEST_FIELDS))
        if unknown:
            raise TypeError(f"unexpected harvest option(s) {', '.join(unknown)}; valid: {', '.join(HARVEST_FIELDS)}")
        given = {k: v for k, v in options.items() if v is not None}
        return replace(settings or cls(), **given)  # __post_init__ turns a path into a string

    def for_protocol(self, protocol: str) -> HarvestSettings:
        """Under ``reference``, the released code's harvest: one statement per forward pass and a
        float32 model (unless ``dtype`` names another); otherwise these settings unchanged."""
        if protocol != "reference":
            return self
        return replace(self, batch_size=1, dtype="float32" if self.dtype == "auto" else self.dtype)


#: the fields of :class:`HarvestSettings` (a trace's keyword options that go to its harvest)
HARVEST_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(HarvestSettings))

# the settings of a trace that change its numbers (hashed into its key); pooling, dtype,
# blocks_attr and max_length are read from the harvest the trace runs with
_NUMBER_FIELDS = (
    "layers",
    "pooling",
    "mi",
    "protocol",
    "probes",
    "sigma",
    "dtype",
    "blocks_attr",
    "max_length",
    "seed",
    "max_statements",
    "mi_subsample",
    "mi_noise",
    "controls",
)

PROTOCOL_HELP = (
    "paper: seeded group-aware splits, probe-train scaling, converged probe, float64 nHSIC. "
    "reference: the released code's numbers: released files in file order, float32 model (unless "
    "--dtype), one statement per forward, whole-file scaling, sklearn LogisticRegression() on the "
    "first 80% / last 20%, float32 nHSIC."
)


@dataclass(frozen=True)
class TraceSettings:
    """Everything but the checkpoints that a trace needs.

    Attributes:
        dimensions: dimension names or CSV paths (validated by the loader).
        layers: ``all`` or a spec like ``0,4,8``, ``4-12`` or ``0:32:4`` (end exclusive).
        mi: estimate I(X;T), I(Y;T) per layer.
        protocol: ``paper`` or ``reference`` (splits and probe protocol). ``reference`` harvests
            one statement per forward pass in a float32 model (unless ``dtype`` names another),
            as the released code did (:attr:`run_harvest`).
        probes: probe kinds passed to ``probe_layers``.
        sigma: kernel width of the nHSIC estimator.
        harvest: pooling, dtype, device, batch size, cache folder, blocks path and max length
            (a :class:`HarvestSettings`), as given; the trace harvests with :attr:`run_harvest`.
        seed: seed of the paper splits.
        delete_checkpoints: remove each hub checkpoint from the Hugging Face cache after use.
        prefetch: download the next hub checkpoint while this one is traced (local executor;
            :mod:`tracing_bench.prefetch`). Nothing to fetch for local folders.
        max_statements: trace a seeded, split-preserving subsample of about this many statements
            per dimension (:meth:`tracing_bench.dimensions.DimensionData.subsample`); ``None``: all.
        mi_subsample: estimate MI on a seeded subsample of this many probe-train statements
            (the nHSIC cost grows as m^3); ``None``: all of them.
        mi_noise: the noise of the MI estimate: nHSIC is also computed on this many seeded
            half-samples (m // 2 statements) of the probe-train statements, the same ones at every
            checkpoint; their spread is the noise a turn must exceed. 0 = off (no turn is tested).
        series_name: the ``model`` column (the ``--model`` argument as given).
        threads: CPU threads (torch and BLAS) for each checkpoint's work; ``None``: the cores
            idle when the checkpoint starts (:func:`tracing_bench.threads.default_threads`).
            Does not change the numbers, so it is not part of :meth:`key`.
        controls: also train each probe on a control labelling (selectivity) and, where the data
            carry meaningful groups, on held-out groups (transfer): :mod:`tracing_bench.probes.controls`
            (``paper`` protocol only).
        baseline: ``random-init``: also trace a randomly initialised model of the last checkpoint's
            config and tokenizer (seeded with ``seed``; :mod:`tracing_bench.baseline`); ``auto``:
            when the series is one checkpoint or has no step-0 checkpoint; ``none``: never.
    """

    dimensions: tuple[str, ...] = setting(tuple(DIMENSIONS), "'all' or a comma list of dimensions / CSV paths.")
    layers: str = setting("all", "'all', 0,4,8, 4-12 or 0:32:4 (block indices).")
    mi: bool = setting(False, "Also estimate I(X;T) and I(Y;T) per layer (nHSIC).")
    protocol: Protocol = setting("paper", PROTOCOL_HELP)
    probes: tuple[str, ...] = setting(PROBES, "Probe kinds (comma list).")
    sigma: float = setting(50.0, "nHSIC kernel width.")
    harvest: HarvestSettings = field(default_factory=HarvestSettings)
    seed: int = setting(0, "Seed of the paper splits.")
    delete_checkpoints: bool = setting(
        False, "Delete each hub checkpoint from the Hugging Face cache after use (never a local folder)."
    )
    prefetch: bool = setting(
        True,
        "Hub series: download the next checkpoint while this one is traced (at most one ahead; two on "
        "disk with --delete-checkpoints). A download is tried 3 times; a revision that still fails is one "
        "line, the series goes on and the exit status is 1. No effect on local folders or with --executor ray.",
    )
    max_statements: int | None = setting(
        None, "Trace a seeded, split-preserving subsample of about N statements per dimension (quick looks)."
    )
    mi_subsample: int | None = setting(
        None, "Estimate MI on N probe-train statements (seeded); nHSIC costs grow as N^3."
    )
    mi_noise: int = setting(
        MI_NOISE_DEFAULT,
        "MI noise: nHSIC on K seeded half-samples (same at every checkpoint; about K/8 of the MI cost); "
        "a turn is reported only beyond it. 0 = off.",
    )
    series_name: str = ""
    threads: int | None = None
    controls: bool = setting(
        True,
        "Also train each probe on a control labelling (selectivity) and on held-out groups (transfer, "
        "where the data have them: CrowS-Pairs bias types, a CSV's topic column).",
    )
    baseline: Baseline = setting(
        "auto",
        "random-init: also probe a randomly initialised model of the last checkpoint's config and "
        "tokenizer (seeded with --seed; weights never saved); auto: when the series is one checkpoint "
        "or has no step-0 checkpoint.",
    )

    def __post_init__(self) -> None:
        check_threads(self.threads)  # before anything else: a bad --threads is one line
        if self.baseline not in BASELINES:
            raise TracingBenchError(f"--baseline {self.baseline!r} is not valid: use one of {', '.join(BASELINES)}")
        if self.protocol not in PROTOCOLS:
            raise TracingBenchError(f"unknown protocol {self.protocol!r}: valid protocols are {', '.join(PROTOCOLS)}")
        unknown = [p for p in self.probes if p not in PROBES]
        if unknown:
            raise TracingBenchError(f"--probes {','.join(unknown)} unknown: valid probes are {', '.join(PROBES)}")
        if self.layers != "all":
            parse_layers(self.layers, None)  # syntax only; the range is checked against the model
        if self.mi_subsample is not None and self.mi_subsample < 10:
            raise TracingBenchError(f"--mi-subsample {self.mi_subsample} is too small: use at least 10 statements")
        noise = self.mi_noise
        if isinstance(noise, bool) or not isinstance(noise, int) or noise < 0 or noise == 1:
            raise TracingBenchError(
                f"--mi-noise {noise} is not valid: give 0 (no noise estimate, no turn test) or at least 2 half-samples"
            )
        if not isinstance(self.harvest, HarvestSettings):
            raise TracingBenchError(
                f"harvest={self.harvest!r} is not valid: give a HarvestSettings (or the harvest options by keyword "
                "to TraceSettings.from_options)"
            )

    @classmethod
    def from_options(cls, base: TraceSettings | None = None, **options: Any) -> TraceSettings:
        """Settings from the loose values a command line or a keyword call gives, over ``base``
        (default: the defaults).

        ``dimensions`` may be ``all`` or a comma list of names / CSV paths, ``probes`` a comma
        list, ``layers`` a list of indices, ``threads`` a string; numbers are converted. The
        harvest options (:data:`HARVEST_FIELDS`: ``pooling``, ``dtype``, ``batch_size``,
        ``cache_dir`` as a path, ...) may be given flat, or as ``harvest`` (a
        :class:`HarvestSettings` or its dict, as :meth:`public` records it). Everything else is as
        the attributes.
        """
        o = dict(options)
        if "threads" in o:  # first: a bad --threads is one line whatever else is wrong
            o["threads"] = check_threads(o["threads"])
        if "dimensions" in o:
            o["dimensions"] = tuple(resolve_dimensions(o["dimensions"]))
        if isinstance(o.get("probes"), str):
            o["probes"] = tuple(p.strip() for p in o["probes"].split(","))
        elif o.get("probes") is not None:
            o["probes"] = tuple(o["probes"])
        if isinstance(o.get("layers"), (list, tuple)):
            o["layers"] = ",".join(map(str, o["layers"]))
        for name, kind in (("sigma", float), ("max_statements", int), ("mi_subsample", int), ("batch_size", int)):
            if o.get(name) is not None and not isinstance(o[name], bool):
                o[name] = kind(o[name])
        harvest = o.pop("harvest", None)
        if isinstance(harvest, Mapping):
            harvest = HarvestSettings(**harvest)
        flat = {k: o.pop(k) for k in HARVEST_FIELDS if k in o}
        base = base or cls()
        if harvest is not None or flat:
            o["harvest"] = replace(harvest or base.harvest, **flat)
        return replace(base, **o)

    @property
    def run_harvest(self) -> HarvestSettings:
        """The harvest the trace runs with: :attr:`harvest` after the protocol's adjustment
        (:meth:`HarvestSettings.for_protocol`)."""
        return self.harvest.for_protocol(self.protocol)

    def key(self) -> str:
        """Hash of the settings that change the numbers (not batch size, device, cache)."""
        run = asdict(self.run_harvest)
        spec = {k: run[k] if k in run else getattr(self, k) for k in _NUMBER_FIELDS} | {"package_version": __version__}
        return spec_hash(spec, 16)

    def public(self) -> dict[str, Any]:
        """The settings as recorded in trace.json and findings.json: every field, the harvest as
        given (``harvest``) and as run (``run_harvest``, after the protocol's adjustment)."""
        return asdict(self) | {"run_harvest": asdict(self.run_harvest)}


@dataclass(frozen=True)
class ScoringSettings:
    """How a target model is scored with lm-eval: the same for every setting a sweep or a
    correlation compares (the unsteered baseline included).

    Attributes:
        tasks: lm-eval tasks; empty: the command's default (``trust`` for a sweep,
            ``trust_<dimension>`` for a correlation).
        limit: lm-eval ``limit`` (documents per task); ``None``: all.
        batch_size: lm-eval batch size.
        seed: every lm-eval seed (random, numpy, torch, few-shot).
        positions: ``all`` (every position, lm-eval's ``steered``) or ``last`` (the released code;
            :mod:`tracing_bench.models.steered`); ``None``: the preset's, else ``all``.
        preset: ``reference``: apply vectors as the released code (``positions=last``, a float32
            target unless ``dtype`` names another; :data:`PRESETS`).
        dtype: dtype of the target (and of a source checkpoint harvested for a vector).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        cache_dir: the activation cache (vectors re-extracted or taken from checkpoints).
    """

    tasks: tuple[str, ...] = setting((), "lm-eval tasks (comma list).")
    limit: float | None = setting(None, "lm-eval --limit (documents per task).")
    batch_size: int = setting(8, "Same for every setting.")
    seed: int = setting(1234, "Every lm-eval seed.")
    positions: Positions | None = setting(
        None, "all: every position (lm-eval steered; the default); last: the released code (last context token onward)."
    )
    preset: Preset | None = setting(
        None, "reference: apply as the released code: --positions last and a float32 target (unless --dtype)."
    )
    dtype: DType = setting("auto", "Dtype of the target model (and of a source checkpoint harvested for a vector).")
    device: str = setting("auto", "auto, cpu or cuda.")
    cache_dir: str | None = setting(None, "Activation cache (vectors re-extracted from checkpoints).")

    def __post_init__(self) -> None:
        fixed = preset_settings(self.preset)
        if fixed and self.positions is not None and self.positions != fixed["positions"]:
            raise TracingBenchError(
                f"--positions {self.positions} contradicts --preset {self.preset} (which steers positions "
                f"{fixed['positions']}); drop one of them"
            )
        if self.positions is not None and self.positions not in POSITIONS:
            raise TracingBenchError(f"--positions {self.positions!r} is not valid; use all or last")
        _check_dtype(self.dtype)
        resolve_device(self.device)
        _positive_int(self.batch_size, "--batch-size")
        object.__setattr__(self, "tasks", tuple(self.tasks))
        if self.cache_dir is not None and not isinstance(self.cache_dir, str):
            object.__setattr__(self, "cache_dir", str(self.cache_dir))

    @classmethod
    def given(cls, settings: ScoringSettings | None = None, **options: Any) -> ScoringSettings:
        """``settings`` (default: the defaults) with the keyword ``options`` that are not ``None`` applied
        (``__post_init__`` makes a task list a tuple, a path a string)."""
        given = {k: v for k, v in options.items() if v is not None}
        return replace(settings or cls(), **given)

    @property
    def applied_positions(self) -> Positions:
        """The positions steered: as given, else the preset's, else ``all``."""
        return self.positions or preset_settings(self.preset).get("positions") or "all"

    @property
    def target_dtype(self) -> str:
        """The dtype the target is loaded in: the preset's float32 when ``dtype`` is ``auto``."""
        fixed = preset_settings(self.preset)
        return str(fixed["dtype"]) if fixed and self.dtype == "auto" else self.dtype


@dataclass(frozen=True)
class CorrelateSettings:
    """How ``steer correlate`` runs, beyond what it correlates (the source series, the target, the
    dimension, the layer and the output folder).

    Attributes:
        target_revision: revision of the target; ``None``: its default branch.
        alpha: coefficient of every vector (positive = toward trustworthy).
        scale: vector scale (``paper``/``reference``/``unit``); a preset overrides it.
        probes: a trace's ``probes.csv`` to read probe accuracy from; ``None``: computed.
        n_boot: bootstrap resamples of the interval of Pearson r.
        data: your own ``statement,label`` CSV for vectors and probes; ``None``: the dimension's.
        scoring: how the target is scored (:class:`ScoringSettings`; tasks default
            ``trust_<dimension>``; ``dtype`` is also the source checkpoints' dtype).
    """

    target_revision: str | None = setting(None, "Revision of the target.")
    alpha: float = setting(1.0, "Coefficient (positive = toward trustworthy).")
    scale: Scale = setting("paper", "Vector scale (a preset fixes its own).")
    probes: str | None = setting(None, "A trace's probes.csv to read probe accuracy from (else computed).")
    n_boot: int = setting(2000, "Bootstrap resamples for the interval of r.")
    data: str | None = setting(
        None, "Your own statement,label CSV for vectors and probes (labels must mean what --dimension's mean)."
    )
    scoring: ScoringSettings = field(default_factory=ScoringSettings)

    def __post_init__(self) -> None:
        scales = get_args(Scale)
        if self.scale not in scales:
            raise TracingBenchError(f"--scale {self.scale!r} is not valid; use one of {', '.join(scales)}")
        _positive_int(self.n_boot, "--n-boot")
        for name in ("probes", "data"):  # a path is kept as its string
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                object.__setattr__(self, name, str(value))
        if not isinstance(self.scoring, ScoringSettings):
            raise TracingBenchError(
                f"scoring={self.scoring!r} is not valid: give a ScoringSettings (or the scoring options by keyword "
                "to CorrelateSettings.from_options)"
            )

    @classmethod
    def from_options(cls, base: CorrelateSettings | None = None, **options: Any) -> CorrelateSettings:
        """``base`` (default: the defaults) with the keyword ``options`` that are not ``None`` applied:
        the fields, ``scoring`` (a :class:`ScoringSettings`) and the scoring options flat, which
        override ``scoring`` (:meth:`ScoringSettings.given`). The keyword form of
        :func:`tracing_bench.steering.correlate.run_correlate`.

        Raises:
            TypeError: an option that is neither a field here nor a scoring setting.
        """
        own = {f.name for f in fields(cls)} - {"scoring"}
        scoring_fields = {f.name for f in fields(ScoringSettings)}
        unknown = sorted(set(options) - own - scoring_fields - {"scoring"})
        if unknown:
            valid = sorted(own | scoring_fields | {"scoring"})
            raise TypeError(f"unexpected correlate option(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
        base = base or cls()
        flat = {k: v for k, v in options.items() if k in scoring_fields}
        scoring = ScoringSettings.given(options.get("scoring") or base.scoring, **flat)
        given = {k: v for k, v in options.items() if k in own and v is not None}
        return replace(base, scoring=scoring, **given)
