"""probe_layers (all layers in one batched solve) vs a per-layer loop of default scikit-learn.

Baseline: for every layer, standardise, `sklearn.linear_model.LogisticRegression()` with its
defaults (L2, C=1, lbfgs, tol=1e-4, max_iter=100) fit on probe-train, accuracy and AUROC on
probe-val and test. Ours: `probe_layers(acts, labels, splits, protocol=..., probes=("logistic",))`,
the same standardisation and objective. Data: bench/_synth.py activations (float32, structured:
power-law latent factors, outlier features, a label direction that grows over the layers).
Splits: the paper's (test / dev 1:1, dev -> probe-train / probe-val 4:1, seeded) and the
reference's (first 80 % / last 20 %).

    .venv/bin/python bench/bench_probes.py [--layers 16] [--n 1800] [--hidden 512] [--threads 0] [--repeat 3]

Prints a markdown table; timings are the best of --repeat runs, baseline and ours interleaved.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _synth import synthetic_activations  # noqa: E402

from tracing_bench.probes.linear import probe_layers  # noqa: E402


def _splits(n: int, protocol: str, seed: int = 0) -> dict[str, np.ndarray]:
    if protocol == "reference":
        cut = int(0.8 * n)
        return {"probe_train": np.arange(cut), "probe_val": np.arange(cut, n), "all": np.arange(n)}
    perm = np.random.default_rng(seed).permutation(n)
    test, dev = np.sort(perm[: n // 2]), perm[n // 2 :]
    n_val = int(round(0.2 * len(dev)))
    return {
        "test": test,
        "dev": np.sort(dev),
        "probe_train": np.sort(dev[n_val:]),
        "probe_val": np.sort(dev[:n_val]),
        "all": np.arange(n),
    }


def _baseline(acts: np.ndarray, y: np.ndarray, sp: dict[str, np.ndarray], protocol: str) -> np.ndarray:
    """[layers, 4]: val acc, val auroc, test acc, test auroc with default sklearn, layer by layer."""
    out = []
    tr = sp["probe_train"]
    evals = ("probe_val", "test") if protocol == "paper" else ("probe_val", "probe_val")
    for layer in range(acts.shape[0]):
        x = acts[layer]
        if protocol == "paper":
            mu, sd = x[tr].mean(0), x[tr].std(0)
        else:
            mu, sd = x.mean(0), x.std(0, ddof=1)
        x = (x - mu) / np.where(sd > 0, sd, 1.0)
        clf = LogisticRegression().fit(x[tr], y[tr])
        row = []
        for name in evals:
            idx = sp[name]
            row += [clf.score(x[idx], y[idx]), roc_auc_score(y[idx], clf.decision_function(x[idx]))]
        out.append(row)
    return np.array(out)


def _ours(acts: np.ndarray, y: np.ndarray, sp: dict[str, np.ndarray], protocol: str) -> np.ndarray:
    rows = probe_layers(acts, y, sp, protocol=protocol, probes=("logistic",))
    return np.array([[r["val_acc"], r["val_auroc"], r["test_acc"], r["test_auroc"]] for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--n", type=int, default=1800)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--threads", type=int, default=0, help="BLAS/torch threads for both (0: defaults)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)

    acts, y = synthetic_activations(args.layers, args.n, args.hidden, seed=0)
    load = os.getloadavg()
    print(
        f"probe_layers: {args.layers} layers x {args.n} statements x hidden {args.hidden} (float32), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}\n"
    )
    print(
        "| protocol | n_train | sklearn loop (s) | probe_layers (s) | speed-up | "
        "test acc sklearn (mean) | test acc ours (mean) | max abs. test acc diff | max abs. test AUROC diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    notes = []
    for protocol in ("paper", "reference"):
        sp = _splits(args.n, protocol)
        t_base, t_ours = [], []
        base = ours = None
        for _ in range(args.repeat):
            start = time.perf_counter()
            base = _baseline(acts, y, sp, protocol)
            t_base.append(time.perf_counter() - start)
            start = time.perf_counter()
            ours = _ours(acts, y, sp, protocol)
            t_ours.append(time.perf_counter() - start)
        assert base is not None and ours is not None
        dacc = np.abs(base[:, 2] - ours[:, 2]).max()
        dauc = np.abs(base[:, 3] - ours[:, 3]).max()
        print(
            f"| {protocol} | {len(sp['probe_train'])} | {min(t_base):.2f} | {min(t_ours):.2f} | "
            f"{min(t_base) / min(t_ours):.1f}x | {base[:, 2].mean():.4f} | {ours[:, 2].mean():.4f} | "
            f"{100 * dacc:.2f} points | {dauc:.4f} |"
        )
        notes.append(
            f"{protocol}: all timings (s) sklearn {[round(v, 2) for v in t_base]}, "
            f"ours {[round(v, 2) for v in t_ours]}; test acc per layer ours "
            f"{np.round(ours[:, 2], 3).tolist()}"
        )
    print()
    for line in notes:
        print(line)


if __name__ == "__main__":
    main()
