"""Power of `tracing-bench gate`: the smallest drop it detects 80% of the time, and its false alarms.

Per-document scores are real: lm-eval scores two pairs of tiny models on the five ``trust_*``
tasks (``--log_samples``, at most ``--limit`` documents per task; cached under ``--work``):

* ``demo-step128`` / ``demo-step200``: checkpoints of the demo's pre-training run
  (``tracing_bench.pretrain`` defaults; ``demo-step0`` is its initialisation);
* ``tiny`` / ``tiny-noisy``: the test suite's tiny Llama (``tests/tiny.py``, hidden 32, 3 blocks,
  weights N(0, 0.2)) and a nearby copy, every weight matrix moved by Gaussian noise of 0.1 times
  its own standard deviation (a stand-in for the next checkpoint).

Everything after that is statistics on those scores:

* a *pair of equally good models* is simulated from the two checkpoints' per-document scores: N
  documents are resampled with replacement, and for each document the two checkpoints' scores are
  assigned to baseline and current in random order (so the expected drop is exactly 0 while the
  per-document churn between the two real checkpoints is kept);
* a *drop* is injected into current: ``p_trust`` lower by delta on every document (clipped at
  0), or ``acc``/``consistency`` lowered by flipping round(delta N) documents down by one step
  (1, or 0.5 for trust_fairness, whose per-pair acc is 0, 0.5 or 1);
* the gate's rule at its defaults (``--max-drop 0.02 --z 2.0``) decides, with the two-sample z-test
  on lm-eval's stderrs (sd / sqrt(N) per side) and with ``--paired`` (z = mean(d) / (sd(d) / sqrt(N)));
  the paired statistic is the gate's own ``paired_z`` (checked against this vectorised copy).

Reported per task and N: the smallest effective drop (grid of ``--step``) detected in at least 80%
of ``--reps`` simulations, and the false-alarm rate (either metric fires, delta = 0). Identical
models (the same run twice) never fire: every per-document difference is 0; checked on the real
files with ``gate(..., paired=True)``.

    .venv/bin/python bench/bench_gate_power.py --work runs/gate-power --reps 400
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TASKS = ("trust_reliability", "trust_privacy", "trust_toxicity", "trust_fairness", "trust_robustness")
#: the per-document accuracy-like metric of each task (task version 3 has no per-task `score`)
DOC_METRIC = {t: "consistency" if t == "trust_robustness" else "acc" for t in TASKS}
N_BOOT = 200  # resamples of the simulated gate's paired bootstrap (the gate itself uses 2000)
SIZES = (50, 100, 200, 400, 1000)
MAX_DROP, Z = 0.02, 2.0  # the gate's defaults


def build_models(work: Path, names: list[str]) -> dict[str, Path]:
    """The model folders named (built once, cached under ``work``)."""
    models: dict[str, Path] = {}
    if any(n.startswith("demo-") for n in names):
        from tracing_bench.pretrain import PretrainConfig, pretrain

        for folder in pretrain(PretrainConfig(save_at=(128, 200), threads=1), work / "pretrain", progress=False):
            models[f"demo-{folder.name}"] = folder
    if any(n.startswith("tiny") for n in names):
        import torch
        from transformers import AutoModelForCausalLM

        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from tiny import build_model, train_tokenizer

        tiny, noisy = work / "tiny", work / "tiny-noisy"
        if not (noisy / "config.json").exists():
            tokenizer = train_tokenizer(work / "tokenizer")
            build_model("llama", tokenizer, tiny, seed=0)
            model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
            gen = torch.Generator().manual_seed(1)
            with torch.no_grad():
                for param in model.parameters():
                    if param.dim() > 1:
                        param.add_(0.1 * param.std() * torch.randn(param.shape, generator=gen))
            model.save_pretrained(noisy)
            tokenizer.save_pretrained(noisy)
        models.update({"tiny": tiny, "tiny-noisy": noisy})
    missing = [n for n in names if n not in models]
    if missing:
        raise SystemExit(f"unknown model {missing}; valid: {', '.join(models)}")
    return {n: models[n] for n in names}


def score_models(work: Path, limit: int, names: list[str]) -> dict[str, Path]:
    """Score the named models on the trust tasks (cached); their results folders."""
    from tracing_bench.evaluate import run_eval

    models = build_models(work, names)
    folders = {}
    for name, model in models.items():
        out = work / "scores" / name
        if not list(out.glob("*/results_*.json")):
            run_eval(
                f"pretrained={model},dtype=float32",
                tasks="trust_*",
                limit=limit,
                output_path=out,
                log_samples=True,
                extra_args=["--device", "cpu", "--batch_size", "64"],
            )
        (folders[name],) = [p.parent for p in out.glob("*/results_*.json")]
    return folders


def per_document(folder: Path, task: str, metric: str) -> dict[int, float]:
    from tracing_bench.compare.gate import read_samples

    (log,) = folder.glob(f"samples_{task}_*.jsonl")
    values = read_samples(log, metric)
    assert values is not None, (task, metric)
    return values


def _paired_z(d: np.ndarray) -> np.ndarray:
    """z of each row of per-document drops (rows = simulations), as gate.paired_z computes it."""
    mean = d.mean(axis=1)
    se = d.std(axis=1, ddof=1) / np.sqrt(d.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, mean / se, np.where(mean > 0, np.inf, np.where(mean < 0, -np.inf, 0.0)))
    return z


def _two_sample_z(b: np.ndarray, c: np.ndarray) -> np.ndarray:
    drop = b.mean(axis=1) - c.mean(axis=1)
    spread = np.sqrt(b.var(axis=1, ddof=1) / b.shape[1] + c.var(axis=1, ddof=1) / c.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(spread > 0, drop / spread, np.where(drop > 0, np.inf, np.where(drop < 0, -np.inf, 0.0)))


def fires(b: np.ndarray, c: np.ndarray, paired: bool) -> np.ndarray:
    """The gate's rule per simulation: drop > max_drop and z > Z."""
    drop = b.mean(axis=1) - c.mean(axis=1)
    z = _paired_z(b - c) if paired else _two_sample_z(b, c)
    return (drop > MAX_DROP + 1e-12) & (z > Z)


def null_pairs(x: np.ndarray, y: np.ndarray, n: int, reps: int, rng: np.random.Generator):
    """Baseline and current scores of `reps` simulated equally good models on n resampled documents."""
    idx = rng.integers(0, len(x), size=(reps, n))
    swap = rng.random((reps, n)) < 0.5
    a, b = x[idx], y[idx]
    return np.where(swap, b, a), np.where(swap, a, b)


def inject(c: np.ndarray, delta: float, metric: str, step: float, rng: np.random.Generator) -> np.ndarray:
    """current lowered by delta: every document (p_trust, clipped at 0) or round(delta n / step) flips."""
    if metric == "p_trust":
        return np.clip(c - delta, 0.0, None)
    k = int(round(delta * c.shape[1] / step))
    if k == 0:
        return c.copy()
    eligible = c >= step - 1e-9
    priority = np.where(eligible, rng.random(c.shape), np.inf)  # k random eligible documents per row
    chosen = np.zeros(c.shape, dtype=bool)
    np.put_along_axis(chosen, np.argsort(priority, axis=1)[:, :k], True, axis=1)
    return c - step * (chosen & eligible)


def smallest_detected(x, y, n, metric, step, grid, reps, paired, rng) -> float | None:
    """Smallest effective drop (mean over simulations) on the grid detected in >= 80% of them.

    Bisection over the grid (detection grows with the drop); None when even the largest is missed.
    """

    def trial(delta: float) -> tuple[bool, float]:
        b, c = null_pairs(x, y, n, reps, rng)
        c2 = inject(c, delta, metric, step, rng)
        return bool(fires(b, c2, paired).mean() >= 0.8), float((c.mean(axis=1) - c2.mean(axis=1)).mean())

    ok, effective = trial(grid[-1])
    if not ok:
        return None
    lo, hi = -1, len(grid) - 1  # grid[hi] detected; grid[lo] (or nothing) not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        ok, eff = trial(grid[mid])
        if ok:
            hi, effective = mid, eff
        else:
            lo = mid
    return effective


# ------------------------------------------------------------ the chance-corrected headline
def cc_items(folder: Path, task: str) -> dict[int, tuple[float, float]]:
    """doc_id -> the task's chance_corrected item as two numbers (gold/answer, clean/perturbed, or 0/value)."""
    from tracing_bench.compare.paired import read_items

    (log,) = folder.glob(f"samples_{task}_*.jsonl")
    out = {}
    for i, it in read_items(log, "chance_corrected").items():
        out[i] = (float(it[0]), float(it[1])) if isinstance(it, list) else (0.0, float(it))
    return out


def cc_aggregate(task: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The task's chance_corrected over the last axis (metrics.py's vectorised forms)."""
    from tracing_bench.tasks import metrics

    if task == "trust_fairness":
        return 2 * v.mean(-1) - 1
    if task == "trust_robustness":
        return metrics.kappa_rows(u, v)
    return metrics.mcc_rows(u, v)


def cc_inject(task: str, u: np.ndarray, v: np.ndarray, frac: float, rng: np.random.Generator) -> np.ndarray:
    """current made worse: round(frac n) documents turned from right to wrong (agreeing pairs to
    disagreeing for robustness; a pair's discrimination to 0 for fairness)."""
    k = int(round(frac * v.shape[1]))
    if k == 0:
        return v.copy()
    eligible = (v > 0) if task == "trust_fairness" else (u == v)
    priority = np.where(eligible, rng.random(v.shape), np.inf)
    chosen = np.zeros(v.shape, dtype=bool)
    np.put_along_axis(chosen, np.argsort(priority, axis=1)[:, :k], True, axis=1)
    chosen &= eligible
    worse = np.zeros_like(v) if task == "trust_fairness" else 1 - u
    return np.where(chosen, worse, v)


def cc_fires(
    task: str, ub: np.ndarray, vb: np.ndarray, uc: np.ndarray, vc: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The gate's paired-bootstrap rule per simulation (rows): drop > max_drop and drop / sd > Z.

    ``ub, vb`` / ``uc, vc``: the two numbers of each document's item, baseline / current (for the
    0/1 tasks ``u`` is the gold label, the same on both sides; for robustness both are answers)."""
    drop = cc_aggregate(task, ub, vb) - cc_aggregate(task, uc, vc)
    out = np.zeros(ub.shape[0], dtype=bool)
    for lo in range(0, ub.shape[0], 25):
        idx = rng.integers(0, ub.shape[1], size=(N_BOOT, ub.shape[1]))
        sl = slice(lo, lo + 25)
        drops = cc_aggregate(task, ub[sl][:, idx], vb[sl][:, idx]) - cc_aggregate(
            task, uc[sl][:, idx], vc[sl][:, idx]
        )  # [rows, B]
        sd = drops.std(axis=1, ddof=1)
        d = drop[sl]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(sd > 0, d / sd, np.where(d > 0, np.inf, 0.0))
        out[sl] = (d > MAX_DROP + 1e-12) & (z > Z)
    return out


def cc_power(
    task: str, xa: np.ndarray, ya: np.ndarray, n: int, reps: int, grid: np.ndarray, rng: np.random.Generator
) -> tuple[float | None, float]:
    """(smallest effective chance_corrected drop detected in >= 80% of simulations, false-alarm rate)."""

    def pair() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(ub, vb, uc, vc) of `reps` pairs of equally good models: each document's item comes from
        one checkpoint or the other at random, the other side gets the other checkpoint's."""
        idx = rng.integers(0, len(xa), size=(reps, n))
        swap = rng.random((reps, n)) < 0.5
        ub, uc = np.where(swap, ya[idx, 0], xa[idx, 0]), np.where(swap, xa[idx, 0], ya[idx, 0])
        vb, vc = np.where(swap, ya[idx, 1], xa[idx, 1]), np.where(swap, xa[idx, 1], ya[idx, 1])
        return ub, vb, uc, vc

    ub, vb, uc, vc = pair()
    alarm = float(cc_fires(task, ub, vb, uc, vc, rng).mean())

    def trial(frac: float) -> tuple[bool, float]:
        ub, vb, uc, vc = pair()
        vc2 = cc_inject(task, uc, vc, frac, rng)
        eff = float((cc_aggregate(task, uc, vc) - cc_aggregate(task, uc, vc2)).mean())
        return bool(cc_fires(task, ub, vb, uc, vc2, rng).mean() >= 0.8), eff

    ok, effective = trial(grid[-1])
    if not ok:
        return None, alarm
    lo, hi = -1, len(grid) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        ok, eff = trial(grid[mid])
        if ok:
            hi, effective = mid, eff
        else:
            lo = mid
    return effective, alarm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/gate-power"), help="cache of checkpoints and scores")
    ap.add_argument("--limit", type=int, default=1000, help="documents per task scored (pool to resample from)")
    ap.add_argument("--reps", type=int, default=400, help="simulations per setting")
    ap.add_argument("--step", type=float, default=0.0025, help="grid step of the injected drop")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--pairs",
        default="demo-step128:demo-step200,tiny:tiny-noisy",
        help="model pairs whose per-document churn the simulated models get "
        "(demo-step0, demo-step128, demo-step200, tiny, tiny-noisy)",
    )
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args()

    import torch

    from tracing_bench.compare.gate import gate, paired_z

    torch.set_num_threads(1)
    pairs = [tuple(p.split(":")) for p in args.pairs.split(",")]
    t0 = time.perf_counter()
    folders = score_models(args.work, args.limit, sorted({n for p in pairs for n in p}))
    t_score = time.perf_counter() - t0
    for folder in folders.values():
        identical = gate(folder, folder, paired=True)
        assert identical.passed and all(t.drop == 0 for t in identical.tasks), "identical runs must never fire"

    rng = np.random.default_rng(args.seed)
    grid = np.arange(args.step, 0.30 + 1e-9, args.step)
    rows = []
    for (first, second), task in ((pair, task) for pair in pairs for task in TASKS):
        data = {}
        for metric in ("score", "p_trust"):
            name = DOC_METRIC[task] if metric == "score" else metric
            a, b = per_document(folders[first], task, name), per_document(folders[second], task, name)
            ids = sorted(set(a) & set(b))
            data[metric] = (np.array([a[i] for i in ids]), np.array([b[i] for i in ids]))
        x, y = data["score"]
        step = 0.5 if task == "trust_fairness" else 1.0
        for metric in ("score", "p_trust"):  # the vectorised paired z is the gate's
            d = (data[metric][0] - data[metric][1])[:50]
            assert np.isclose(_paired_z(d[None])[0], paired_z(list(d))[1])
        for n in SIZES:
            row = {
                "checkpoints": f"{first}/{second}",
                "task": task,
                "n": n,
                "pool": len(x),
                "mean_score": float(np.r_[x, y].mean()),
                "sd_score": float(np.r_[x, y].std(ddof=1)),
                "mean_p_trust": float(np.r_[data["p_trust"][0], data["p_trust"][1]].mean()),
                "sd_p_trust": float(np.r_[data["p_trust"][0], data["p_trust"][1]].std(ddof=1)),
                "sd_churn_score": float((x - y).std(ddof=1)),
                "sd_churn_p_trust": float((data["p_trust"][0] - data["p_trust"][1]).std(ddof=1)),
            }
            for metric in ("score", "p_trust"):
                xs, ys = data[metric]
                for paired in (False, True):
                    key = f"{metric}_{'paired' if paired else 'z'}"
                    row[key] = smallest_detected(xs, ys, n, metric, step, grid, args.reps, paired, rng)
            for paired in (False, True):  # false alarms: either metric fires on equally good models
                idx = rng.integers(0, len(x), size=(args.reps, n))
                swap = rng.random((args.reps, n)) < 0.5
                alarm = np.zeros(args.reps, dtype=bool)
                for metric in ("score", "p_trust"):
                    xs, ys = data[metric]
                    bb, cc = np.where(swap, ys[idx], xs[idx]), np.where(swap, xs[idx], ys[idx])
                    alarm |= fires(bb, cc, paired)
                row[f"false_alarm_{'paired' if paired else 'z'}"] = float(alarm.mean())
            ca, cb = cc_items(folders[first], task), cc_items(folders[second], task)
            ids = sorted(set(ca) & set(cb))
            xa, ya = np.array([ca[i] for i in ids]), np.array([cb[i] for i in ids])
            row["mean_cc"] = float(
                np.r_[
                    cc_aggregate(task, xa[None, :, 0], xa[None, :, 1]),
                    cc_aggregate(task, ya[None, :, 0], ya[None, :, 1]),
                ].mean()
            )
            row["cc_paired"], row["false_alarm_cc"] = cc_power(task, xa, ya, n, args.reps, grid, rng)
            rows.append(row)
            print(json.dumps(row), flush=True)
    total = time.perf_counter() - t0

    def cell(v: float | None) -> str:
        return "> 0.30" if v is None else f"{v:.3f}"

    print(
        f"\nscoring {t_score:.0f} s, total {total:.0f} s wall; {args.reps} simulations per setting, "
        f"grid step {args.step}\n"
    )
    print(
        "| checkpoints | task | N | acc: z-test | acc: paired | p_trust: z-test | p_trust: paired | "
        "false alarms z / paired | chance_corrected (mean) | chance_corrected: paired bootstrap | its false alarms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['checkpoints']} | {r['task']} | {r['n']} | {cell(r['score_z'])} | {cell(r['score_paired'])} | "
            f"{cell(r['p_trust_z'])} | {cell(r['p_trust_paired'])} | "
            f"{r['false_alarm_z']:.3f} / {r['false_alarm_paired']:.3f} | {r['mean_cc']:+.3f} | "
            f"{cell(r['cc_paired'])} | {r['false_alarm_cc']:.3f} |"
        )
    if args.json_out:
        args.json_out.write_text(
            json.dumps(
                {"rows": rows, "reps": args.reps, "step": args.step, "score_seconds": t_score, "total_seconds": total},
                indent=2,
            )
        )


if __name__ == "__main__":
    sys.exit(main())
