"""Hand-built lm-eval results files in lm-eval 0.4.13's schema, for edge cases real runs don't produce."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

TRUST = ("trust_reliability", "trust_privacy", "trust_toxicity", "trust_fairness", "trust_robustness")


def results_json(
    scores: dict[str, tuple[float, float | str | None]],
    *,
    model: str = "EleutherAI/pythia-70m",
    revision: str | None = "step1000",
    date: float = 1.7e9,
    group: bool = True,
    versions: dict[str, Any] | None = None,
    steering: dict[str, Any] | None = None,
    model_args_as_string: bool = False,
    n: int = 100,
    p_trust: dict[str, tuple[float, float]] | None = None,
) -> dict[str, Any]:
    """A results dict: task -> (score, stderr); stderr None = key absent, "N/A" = lm-eval's N/A.

    ``p_trust``: task -> (p_trust, stderr) for the tasks that report it (the group then reports the
    unweighted mean, with the stderr of a mean of independent task means).
    """
    p_trust = p_trust or {}
    results: dict[str, Any] = {}
    for task, (value, se) in scores.items():
        cell: dict[str, Any] = {"name": task, "alias": task, "sample_len": n, "acc,none": value, "score,none": value}
        if se is not None:
            cell["acc_stderr,none"] = se
            cell["score_stderr,none"] = se
        if task in p_trust:
            cell["p_trust,none"], cell["p_trust_stderr,none"] = p_trust[task]
        results[task] = cell
    groups: dict[str, Any] = {}
    if group:
        vals = [v for v, _ in scores.values()]
        mean = sum(vals) / len(vals) if vals else math.nan
        groups["trust"] = {
            "alias": "trust",
            "name": "trust",
            "sample_len": n * len(vals),
            "score,none": mean,
            "score_stderr,none": "N/A",
        }
        if p_trust and set(p_trust) == set(scores):
            groups["trust"]["p_trust,none"] = sum(v for v, _ in p_trust.values()) / len(p_trust)
            groups["trust"]["p_trust_stderr,none"] = math.sqrt(sum(e**2 for _, e in p_trust.values())) / len(p_trust)
        results["trust"] = dict(groups["trust"])
    args: dict[str, Any] = {"pretrained": model}
    if revision is not None:
        args["revision"] = revision
    config: dict[str, Any] = {
        "model": "hf",
        "model_args": args,
        "model_revision": revision or "main",
        "limit": None,
        "batch_size": 8,
    }
    if steering:
        config["model"] = "trust-steered"
        config["steering"] = steering
        args["steer_path"] = steering.get("steer_path")
    if model_args_as_string:
        config["model_args"] = ",".join(f"{k}={v}" for k, v in args.items())
    ver = {t: 1.0 for t in scores}
    if group:
        ver["trust"] = "1.0"
    ver.update(versions or {})
    return {
        "results": results,
        **({"groups": groups} if group else {}),
        "group_subtasks": {"trust": list(scores)} if group else {},
        "configs": {t: {"task": t, "metadata": {"version": ver[t]}} for t in scores},
        "versions": ver,
        "n-shot": {t: 0 for t in scores},
        "higher_is_better": {t: {"acc": True, "score": True, "p_trust": True} for t in scores}
        | ({"trust": {"acc": True, "score": True, "p_trust": True}} if group else {}),
        "n-samples": {t: {"original": n, "effective": n} for t in scores},
        "config": config,
        "date": date,
        "model_name": model,
        "model_name_sanitized": model.replace("/", "__"),
        "lm_eval_version": "0.4.13",
    }


def write_results(folder: Path, data: dict[str, Any], stamp: str = "2026-01-01T00-00-00.000000") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"results_{stamp}.json"
    path.write_text(json.dumps(data, indent=2))  # NaN written as NaN, as Python's json (and lm-eval) do
    return path


def write_samples(
    folder: Path,
    task: str,
    values: list[float],
    stamp: str = "2026-01-01T00-00-00.000000",
    metric: str = "score",
    p_trust: list[float] | None = None,
) -> Path:
    path = folder / f"samples_{task}_{stamp}.jsonl"
    with open(path, "w") as f:
        for i, v in enumerate(values):
            row = {"doc_id": i, "filter": "none", "metrics": [metric, "acc"], metric: v, "acc": v}
            if p_trust is not None:
                row["metrics"].append("p_trust")
                row["p_trust"] = p_trust[i]
            f.write(json.dumps(row) + "\n")
    return path


def write_answer_samples(
    folder: Path,
    task: str,
    answers: list[list[str]],
    *,
    choices: tuple[str, ...] = (" 0", " 1"),
    sentences: bool = False,
    same_context: bool = False,
    stamp: str = "2026-01-01T00-00-00.000000",
    seed: int = 0,
) -> Path:
    """A multiple-choice sample log in lm-eval's layout in which document i's member j answers
    ``answers[i][j]``: one question (context) per member, one request per choice, the answer's
    log-likelihood the highest; ``sentences`` adds each member scored alone (empty context);
    ``same_context`` gives every member of a document the same question text."""
    rng = random.Random(seed)
    path = folder / f"samples_{task}_{stamp}.jsonl"
    folder.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for i, members in enumerate(answers):
            args, resps = [], []
            for j, answer in enumerate(members):
                top = -rng.uniform(0.5, 5.0)
                for choice in choices:
                    ll = top if choice == answer else top - rng.uniform(0.01, 3.0)
                    ctx = f"doc {i}: is it so?" if same_context else f"doc {i} member {j}: is it so?"
                    args.append({"arg_0": ctx, "arg_1": choice})
                    resps.append([str(ll), "False"])
            if sentences:
                for j in range(len(members)):
                    args.append({"arg_0": "", "arg_1": f"sentence {j}"})
                    resps.append([str(-rng.uniform(1.0, 50.0)), "False"])
            row = {
                "doc_id": i,
                "arguments": {f"gen_args_{k}": a for k, a in enumerate(args)},
                "resps": [[r] for r in resps],
                "filtered_resps": resps,
                "filter": "none",
                "metrics": ["acc"],
                "acc": 1.0,
            }
            f.write(json.dumps(row) + "\n")
    return path


def five(value: float = 0.6, se: float | str | None = 0.02) -> dict[str, tuple[float, float | str | None]]:
    return {t: (value, se) for t in TRUST}
