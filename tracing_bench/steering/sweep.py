"""Choose the layer and strength of a steering vector: a grid of (layer, alpha) scored by lm-eval.

:func:`run_sweep` loads the target model ONCE and scores, on the same tasks, batch size, limit
and seed:

1. the unsteered model (lm-eval's plain ``HFLM``): the baseline;
2. every (layer, alpha) with :class:`~tracing_bench.models.steered.TrustSteeredModel`.

Every setting also gets the fluency guard: perplexity on the bundled held-out text
``tracing_bench/data/heldout_fluency.txt`` (through lm-eval's ``loglikelihood_rolling``, so the
same positions are steered as in the tasks) and, when its data are in the local Hugging Face
datasets cache, lm-eval's ``lambada_openai`` (skipped with a note otherwise). Two bounds, either
or both:

* relative, ``max_ppl_increase`` (a fraction: 0.1 = +10 %, the default when no absolute bound is
  given): a setting whose perplexity rises more than that over the unsteered baseline, on the
  bundled text or on LAMBADA, is inadmissible;
* absolute, ``max_ppl``: a setting is admissible only while its LAMBADA perplexity stays below
  ``max_ppl``. This is the paper's selection: LAMBADA perplexity < 6 for AmberChat, whose own is
  4.5 (so about +33 %, not +10 %). Without LAMBADA in the cache the bound is applied to the
  bundled text's perplexity instead, which is on another scale (a note says so).

Layers and vectors: a vector file holds one layer. The layers swept are ``layers`` (default: the
vector's own layer). For the vector's layer the file is used as it is; for any other layer the
vector is RE-EXTRACTED from the source checkpoint recorded in its sidecar (same model,
revision, dimension, scale, protocol and seed, through the activation cache) and saved as
``OUT/vectors/<dimension>_layer<L>.pt``. A vector without a sidecar can only be swept at its own
layer.

Everything is scored with one :class:`~tracing_bench.settings.ScoringSettings` (tasks, limit,
batch size, seed, positions, preset, dtype, device), shared with ``steer correlate``. Every
setting's per-document samples give each document's trustworthy log-odds
(:mod:`tracing_bench.doc_logodds`); against the unsteered run, paired by document, they give the
mean change with its t interval, the share of documents moved the wrong way, and per layer the
per-document slope over alpha (steerability; :mod:`tracing_bench.steering.effects`). The best
admissible setting per task is the largest mean paired change in the log-odds (a task without
them: the largest improvement of its headline metric in the direction the results give,
``higher_is_better``). Outputs in ``OUT``: ``sweep.csv`` (CONVENTIONS schema, one row per
setting x task x metric, the baseline included with ``vector=none``; metric ``logodds`` carries
the paired columns), ``doc_logodds.csv`` (every document's log-odds per setting) and
``best.json`` (best admissible setting per dimension, with its side effects on the other tasks,
``logodds``: the paired change and steerability it was chosen on, each with ``ci``,
``within_noise`` and ``claim``, and the headline's change against the unsteered model: ``ci``
(95% normal interval from the two stderrs), ``within_noise`` and ``claim``, as
:func:`tracing_bench.compare.findings.steering_changes` states it). The sweep returns
its rows and draws nothing: ``tracing-bench steer sweep`` draws ``sweep_scores.png`` and
``sweep_ppl.png`` (:func:`tracing_bench.report.steer_plots.plot_sweep`).
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lm_eval.models.huggingface import HFLM

from tracing_bench import __version__
from tracing_bench.cache import default_cache_dir
from tracing_bench.checkpoints import Checkpoint
from tracing_bench.compare.findings import steering_changes
from tracing_bench.doc_logodds import results_logodds
from tracing_bench.errors import TracingBenchError
from tracing_bench.files import atomic_write_csv, atomic_write_json, check_outputs
from tracing_bench.loading import load_checkpoint
from tracing_bench.models.steered import TrustSteeredModel
from tracing_bench.results import TaskScore
from tracing_bench.results import task_scores as _task_scores
from tracing_bench.settings import HarvestSettings, Lambada, ScoringSettings
from tracing_bench.steering.effects import logodds_score, sweep_effects
from tracing_bench.steering.vector import SteeringVector, extract_from_checkpoint
from tracing_bench.tasks import TASKS_DIR

HELDOUT_TEXT = Path(__file__).resolve().parent.parent / "data" / "heldout_fluency.txt"
SWEEP_COLUMNS = (
    "model",
    "revision",
    "vector",
    "vector_sha256",
    "layer",
    "alpha",
    "task",
    "metric",
    "score",
    "stderr",
    "delta",
    "ppl",
    "ppl_increase",
    "admissible",
    "delta_lo",
    "delta_hi",
    "wrong_way",
    "n_docs",
    "slope",
    "slope_lo",
    "slope_hi",
    "anti_steerable",
)
LAMBADA = "lambada_openai"
#: The sweep.csv metric of the per-document trustworthy log-odds (:mod:`tracing_bench.doc_logodds`).
LOGODDS = "logodds"
DOC_COLUMNS = ("layer", "alpha", "task", "doc_id", "logodds")


# ------------------------------------------------------------------------------ the scorer
class Scorer:
    """The target model, loaded once, scored unsteered or with a steering file.

    Args:
        model: target model id or folder.
        scoring: tasks, limit, batch size, seed, positions, dtype and device
            (:class:`~tracing_bench.settings.ScoringSettings`), the same for every setting.
        revision: its revision.
        default_tasks: the tasks when ``scoring.tasks`` is empty (``trust``: the five
            log-likelihood tasks).
        lambada: ``auto`` (use ``lambada_openai`` when its data are cached) or ``off``.
    """

    def __init__(
        self,
        model: str,
        scoring: ScoringSettings,
        *,
        revision: str | None = None,
        default_tasks: tuple[str, ...] = ("trust",),
        lambada: Lambada = "auto",
    ) -> None:
        self.model_id, self.revision = model, revision
        self.tasks = list(scoring.tasks or default_tasks)
        self.limit, self.batch_size, self.seed = scoring.limit, scoring.batch_size, scoring.seed
        self.positions = scoring.applied_positions
        self.notes: list[str] = []
        self.lambada = lambada == "auto" and _lambada_cached()
        if lambada == "auto" and not self.lambada:
            self.notes.append(
                f"{LAMBADA} skipped: its data are not in the local Hugging Face datasets cache "
                "(run lm-eval once online to cache them); fluency guard = bundled text only"
            )
        self.hf_model, self.tokenizer = load_checkpoint(
            Checkpoint(model, revision), dtype=scoring.target_dtype, device=scoring.device
        )
        self.text = HELDOUT_TEXT.read_text(encoding="utf-8")
        names = self.tasks + ([LAMBADA] if self.lambada else [])
        try:
            # Tasks are built once and reused for every setting (lm-eval rebuilds the requests of a
            # task on every evaluate call); simple_evaluate would rebuild them and collect the
            # environment each time, which costs more than scoring a small model.
            self._loaded = _task_manager(names).load(names)
        except KeyError as e:
            raise TracingBenchError(
                f"--tasks: lm-eval does not know {e}; use trust, trust_<dimension> or an lm-eval task name"
            ) from None
        for task_obj in self._loaded["tasks"].values():
            if task_obj.get_config("num_fewshot") is None:
                task_obj.set_config(key="num_fewshot", value=0)
            task_obj.set_fewshot_seed(seed=self.seed)

    def _lm(self, steer_path: str | os.PathLike | None, alpha: float | None) -> Any:
        kwargs = {"pretrained": self.hf_model, "tokenizer": self.tokenizer, "batch_size": self.batch_size}
        if steer_path is None:
            return HFLM(**kwargs)
        return TrustSteeredModel(steer_path=str(steer_path), alpha=alpha, positions=self.positions, **kwargs)

    def check(self, steer_path: str | os.PathLike) -> None:
        """Raise a one-line error if the file does not fit the target (hookpoint, hidden size)."""
        self._lm(steer_path, None)

    def evaluate(
        self, steer_path: str | os.PathLike | None = None, alpha: float | None = None
    ) -> tuple[list[TaskScore], float, dict[str, Any]]:
        """Score one setting.

        Returns:
            ``(task scores, perplexity on the bundled text, lm-eval results dict)``; the dict holds the
            per-document ``samples`` (read by :func:`tracing_bench.doc_logodds.results_logodds`).
        """
        # lazy: lm-eval loads on first use, so importing steering.sweep stays light
        from lm_eval.api.instance import Instance
        from lm_eval.evaluator import evaluate

        lm = self._lm(steer_path, alpha)
        random.seed(self.seed)
        np.random.seed(self.seed)
        torch.manual_seed(self.seed)
        results = evaluate(lm=lm, task_dict=self._loaded, limit=self.limit, log_samples=True, verbosity="WARNING")
        results = dict(results or {})
        results["config"] = {
            "model_args": {"steer_path": str(steer_path) if steer_path else None, "alpha": alpha},
            **({"steering": lm._steering_info} if steer_path else {}),
        }
        req = Instance("loglikelihood_rolling", {}, (self.text,), 0)
        (ll,) = lm.loglikelihood_rolling([req], disable_tqdm=True)
        n_tokens = len(lm.tok_encode(self.text))
        ppl = math.exp(-float(ll) / max(n_tokens, 1))
        return task_scores(results), ppl, results


def _lambada_cached() -> bool:
    """Whether lm-eval's lambada_openai data are in the local HF datasets cache (no network)."""
    roots = [
        os.environ.get("HF_DATASETS_CACHE"),
        os.path.join(os.environ.get("HF_HOME", ""), "datasets") if os.environ.get("HF_HOME") else None,
        os.path.expanduser("~/.cache/huggingface/datasets"),
    ]
    for root in filter(None, roots):
        p = Path(root)
        if p.is_dir() and any("lambada_openai" in c.name for c in p.iterdir()):
            return True
    return False


def _task_manager(tasks: list[str]) -> Any:
    # lazy: lm-eval loads on first use, so importing steering.sweep stays light
    from lm_eval.tasks import TaskManager

    own = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    if all(own.match_tasks([t]) for t in tasks):
        return own
    return TaskManager(include_path=str(TASKS_DIR))


def task_scores(results: dict[str, Any]) -> list[TaskScore]:
    """Each task's headline metric, then ``p_trust`` when reported (:func:`tracing_bench.results.task_scores`).

    Groups are left out (their members are listed); ``lambada_openai`` gives perplexity and acc.
    ``p_trust`` (the probability of the trustworthy answer) moves when the headline does not: it
    is shown beside it, never chosen on.
    """
    return _task_scores(results, metrics={LAMBADA: ("perplexity", "acc")})


# ------------------------------------------------------------------------------ vectors per layer
def vectors_for_layers(
    vector: str | os.PathLike,
    layers: list[int] | None,
    out_dir: str | os.PathLike,
    *,
    harvest: HarvestSettings | None = None,
) -> dict[int, Path]:
    """One steering file per layer: the given file for its own layer, re-extracted for the others.

    Args:
        vector: a file from ``tracing-bench steer extract`` (with its ``.json`` sidecar).
        layers: layers to sweep; ``None`` = the vector's layer only.
        out_dir: the sweep folder; re-extracted vectors go to ``out_dir/vectors``.
        harvest: device and cache folder of a re-extraction (the dtype is the one in the sidecar).

    Returns:
        ``{layer: path}``.
    """
    harvest = harvest or HarvestSettings()
    v = SteeringVector.load(vector)
    layers = [v.layer] if not layers else list(dict.fromkeys(int(x) for x in layers))
    out: dict[int, Path] = {}
    for layer in layers:
        if layer == v.layer:
            out[layer] = Path(vector)
            continue
        src = v.provenance.get("source_model")
        if not src:
            raise TracingBenchError(
                f"--layers {layer}: {vector} is for layer {v.layer} and its sidecar names no source model to "
                f"re-extract from; sweep --layers {v.layer} or extract a vector with `tracing-bench steer extract`"
            )
        dim = v.provenance.get("dimension", "")
        path = Path(out_dir) / "vectors" / f"{dim}_layer{layer}.pt"
        new = extract_from_checkpoint(
            src,
            revision=v.provenance.get("source_revision"),
            dimension=dim,
            layer=layer,
            scale=v.scale,
            coefficient=v.coefficient,
            protocol=v.provenance.get("protocol", "paper"),
            seed=int(v.provenance.get("seed", 0)),
            data=v.provenance.get("data"),
            harvest=HarvestSettings.given(harvest, dtype=v.provenance.get("dtype")),
        )
        out[layer] = new.save(path)
    return out


# ------------------------------------------------------------------------------ the sweep
@dataclass
class SweepResult:
    """What :func:`run_sweep` wrote.

    Attributes:
        rows: the rows of ``sweep.csv``.
        best: the content of ``best.json``.
        files: paths written (``sweep.csv``, ``best.json``).
    """

    rows: list[dict[str, Any]]
    best: dict[str, Any]
    files: list[Path] = field(default_factory=list)


def run_sweep(
    model: str,
    vector: str | os.PathLike,
    out: str | os.PathLike,
    *,
    revision: str | None = None,
    layers: list[int] | None = None,
    alphas: list[float] = (-4.0, -1.0, 1.0, 4.0),  # type: ignore[assignment]
    max_ppl_increase: float | None = None,
    max_ppl: float | None = None,
    lambada: Lambada = "auto",
    scoring: ScoringSettings | None = None,
    **options: Any,
) -> SweepResult:
    """Score the unsteered target and every (layer, alpha); write the table and the choice.

    Args:
        model: target model (e.g. the chat/SFT model).
        vector: steering file (``tracing-bench steer extract``).
        out: output folder.
        revision: target revision.
        layers: layers to sweep (default: the vector's layer); see the module docstring.
        alphas: coefficients (positive = toward the trustworthy side).
        max_ppl_increase: allowed relative perplexity increase over the baseline (0.1 = 10 %);
            ``None``: 0.1 when ``max_ppl`` is not given, else no relative bound.
        max_ppl: absolute bound: LAMBADA perplexity (the bundled text's without LAMBADA) must stay
            below it (the paper: 6 for AmberChat).
        lambada: ``auto`` or ``off``.
        scoring: how the target is scored (:class:`~tracing_bench.settings.ScoringSettings`: tasks,
            default ``trust``; limit; batch size; seed; positions; preset; dtype; device; the
            activation cache for re-extraction), the same for every setting.
        **options: scoring settings given by keyword (``limit=20, device="cpu"``); they override
            ``scoring``.

    Returns:
        a :class:`SweepResult`.
    """
    scoring = ScoringSettings.given(scoring, **options)
    if not alphas:
        raise TracingBenchError("--alphas is empty; give e.g. --alphas -4,-1,1,4")
    if max_ppl is not None and not (max_ppl > 0):
        raise TracingBenchError(f"--max-ppl {max_ppl} must be a positive perplexity (the paper: 6 on LAMBADA)")
    if max_ppl_increase is None and max_ppl is None:
        max_ppl_increase = 0.1
    if max_ppl_increase is not None and not (max_ppl_increase >= 0):
        raise TracingBenchError(f"--max-ppl-increase {max_ppl_increase} must be >= 0 (a fraction: 0.1 = +10 %)")
    bad = [a for a in alphas if not math.isfinite(float(a))]
    if bad:
        raise TracingBenchError(f"--alphas holds {', '.join(map(str, bad))}: every coefficient must be a finite number")
    out = Path(out)
    check_outputs(
        [
            (out, "--out", "folder"),
            (scoring.cache_dir or default_cache_dir() if layers else None, "--cache-dir", "folder"),
        ]
    )
    SteeringVector.load(vector)  # validate early
    out.mkdir(parents=True, exist_ok=True)
    per_layer = vectors_for_layers(
        vector, layers, out, harvest=HarvestSettings(device=scoring.device, cache_dir=scoring.cache_dir)
    )
    scorer = Scorer(model, scoring, revision=revision, lambada=lambada)
    for path in per_layer.values():  # hookpoint / hidden size checked before the first evaluation
        scorer.check(path)
    base_scores, base_ppl, base_results = scorer.evaluate(None)
    base_logodds = results_logodds(base_results)
    base = {(s.task, s.metric): s for s in base_scores}
    base_lambada = base.get((LAMBADA, "perplexity"))
    rows: list[dict[str, Any]] = []
    common = {"model": model, "revision": revision or ""}

    if max_ppl is not None and base_lambada is None:
        scorer.notes.append(
            f"--max-ppl {max_ppl:g} applied to the bundled text's perplexity (baseline "
            f"{base_ppl:.3g}): {LAMBADA} is not scored, and the paper's bound is on LAMBADA"
        )

    docs: list[dict[str, Any]] = []

    def add_rows(
        vec_name: str,
        sha: str,
        layer: Any,
        alpha: float,
        scores: list[TaskScore],
        ppl: float,
        logodds: Mapping[str, Mapping[int, float]],
    ) -> None:
        inc = ppl / base_ppl - 1.0
        lam = next((s.score for s in scores if (s.task, s.metric) == (LAMBADA, "perplexity")), None)
        lam_inc = (lam / base_lambada.score - 1.0) if (lam is not None and base_lambada) else None
        admissible = True
        if max_ppl_increase is not None:
            admissible = inc <= max_ppl_increase + 1e-12 and (lam_inc is None or lam_inc <= max_ppl_increase + 1e-12)
        if max_ppl is not None:
            admissible = admissible and (lam if lam is not None else ppl) < max_ppl
        for s in scores:
            b = base.get((s.task, s.metric))
            rows.append(
                {
                    **common,
                    "vector": vec_name,
                    "vector_sha256": sha,
                    "layer": layer,
                    "alpha": alpha,
                    "task": s.task,
                    "metric": s.metric,
                    "score": s.score,
                    "stderr": "" if s.stderr is None else s.stderr,
                    "delta": (s.score - b.score) if b else "",
                    "ppl": ppl,
                    "ppl_increase": inc,
                    "admissible": admissible,
                }
            )
        for task, values in logodds.items():  # the per-document trustworthy log-odds: paired fields filled below
            mean, se = logodds_score(values)
            rows.append(
                {
                    **common,
                    "vector": vec_name,
                    "vector_sha256": sha,
                    "layer": layer,
                    "alpha": alpha,
                    "task": task,
                    "metric": LOGODDS,
                    "score": mean,
                    "stderr": se,
                    "delta": 0.0 if vec_name == "none" else "",
                    "ppl": ppl,
                    "ppl_increase": inc,
                    "admissible": admissible,
                    "n_docs": len(values),
                }
            )
            docs.extend(
                {"layer": layer, "alpha": alpha, "task": task, "doc_id": k, "logodds": x}
                for k, x in sorted(values.items())
            )

    add_rows("none", "", "", 0.0, base_scores, base_ppl, base_logodds)
    runs: dict[tuple[Any, float], dict[str, dict[int, float]]] = {}
    for layer, path in per_layer.items():
        v = SteeringVector.load(path)
        for alpha in alphas:
            scores, ppl, res = scorer.evaluate(path, float(alpha))
            runs[(layer, float(alpha))] = results_logodds(res)
            add_rows(str(path), v.sha256, layer, float(alpha), scores, ppl, runs[(layer, float(alpha))])
    effects = sweep_effects(base_logodds, runs)
    for r in rows:
        e = effects.get((r["layer"], r["alpha"], r["task"])) if r["metric"] == LOGODDS else None
        r.update({k: x for k, x in (e or {}).items() if k in SWEEP_COLUMNS})
    best = choose_best(rows, higher_is_better={(s.task, s.metric): s.higher_is_better for s in base_scores})
    for task, b in best["best"].items():  # the paired per-document change it was chosen on, with its interval
        e = effects.get((b["layer"], b["alpha"], task)) if b else None
        if b is not None and e is not None:
            b["logodds"] = {"change": e["change"].as_dict(), "steerability": e["steerability"].as_dict()}
    for e in steering_changes(rows, best):  # each chosen setting with its interval against the baseline
        if e.get("admissible"):
            best["best"][e["task"]].update(ci=e["ci"], within_noise=e["within_noise"], claim=e["claim"])
    best["settings"] = {
        "model": model,
        "revision": revision,
        "vector": str(vector),
        "layers": list(per_layer),
        "alphas": [float(a) for a in alphas],
        "tasks": scorer.tasks,
        "limit": scoring.limit,
        "batch_size": scoring.batch_size,
        "seed": scoring.seed,
        "positions": scorer.positions,
        "dtype": scoring.target_dtype,
        "preset": scoring.preset,
        "max_ppl_increase": max_ppl_increase,
        "max_ppl": max_ppl,
        "max_ppl_on": (LAMBADA if base_lambada is not None else HELDOUT_TEXT.name) if max_ppl is not None else None,
        "fluency_text": HELDOUT_TEXT.name,
        "baseline_ppl": base_ppl,
        "lambada": scorer.lambada,
        "package_version": __version__,
    }
    best["notes"] = scorer.notes
    files = [
        atomic_write_csv(out / "sweep.csv", SWEEP_COLUMNS, rows),
        atomic_write_json(out / "best.json", best, default=str),
        atomic_write_csv(out / "doc_logodds.csv", DOC_COLUMNS, docs),
    ]
    return SweepResult(rows, best, files)


def choose_best(
    rows: list[dict[str, Any]], higher_is_better: Mapping[tuple[str, str], bool] | None = None
) -> dict[str, Any]:
    """Best admissible setting per task (largest improvement; ties: smaller |alpha|, lower layer).

    The improvement is the paired per-document change in the trustworthy log-odds (the rows of
    metric ``logodds``; :mod:`tracing_bench.steering.effects`) where the task has them, which
    moves where steering acts even when no answer flips; else the headline metric's change.

    Args:
        rows: the rows of ``sweep.csv``.
        higher_is_better: the direction of each (task, metric), from lm-eval's results
            (``TaskScore.higher_is_better``); a pair not given counts as higher is better.

    Returns:
        ``{"best": {task: {...setting, metric, score, delta (of the headline metric), chosen_on
        (``logodds`` or the metric), side_effects: {other task:metric: delta}} | None}}``; ``None``
        where no steered setting is admissible. Perplexity rows (LAMBADA) are not tasks to optimise.
    """
    directions = higher_is_better or {}
    steered = [r for r in rows if r["vector"] != "none"]
    tasks = sorted(
        {(r["task"], r["metric"]) for r in rows if r["task"] != LAMBADA and r["metric"] not in ("p_trust", LOGODDS)}
    )
    best: dict[str, Any] = {}
    admissible = [r for r in steered if r["admissible"] and r["delta"] != ""]
    for task, metric in tasks:
        paired = [r for r in admissible if (r["task"], r["metric"]) == (task, LOGODDS)]
        on = LOGODDS if paired else metric
        cands = paired or [r for r in admissible if (r["task"], r["metric"]) == (task, metric)]
        if not cands:
            best[task] = None
            continue
        lower_better = on == metric and not directions.get((task, metric), True)
        pick = max(
            cands, key=lambda r: ((-r["delta"] if lower_better else r["delta"]), -abs(r["alpha"]), -int(r["layer"]))
        )
        top = next(
            (
                r
                for r in steered
                if (r["task"], r["metric"]) == (task, metric)
                and (r["vector"], r["alpha"], r["layer"]) == (pick["vector"], pick["alpha"], pick["layer"])
            ),
            pick,
        )
        side = {
            f"{r['task']}:{r['metric']}": r["delta"]
            for r in steered
            if r["vector"] == top["vector"]
            and r["alpha"] == top["alpha"]
            and r["layer"] == top["layer"]
            and (r["task"], r["metric"]) != (task, metric)
        }
        best[task] = {
            "metric": metric,
            "layer": top["layer"],
            "alpha": top["alpha"],
            "vector": top["vector"],
            "vector_sha256": top["vector_sha256"],
            "score": top["score"],
            "delta": top["delta"],
            "stderr": top["stderr"],
            "ppl": top["ppl"],
            "ppl_increase": top["ppl_increase"],
            "improves": (pick["delta"] < 0) if lower_better else (pick["delta"] > 0),
            "chosen_on": on,
            "side_effects": side,
        }
    return {"best": best}
