"""probe_layers (all layers in one batched solve) vs a per-layer loop of default scikit-learn.

Baseline: for every layer, standardise, `sklearn.linear_model.LogisticRegression()` with its
defaults (L2, C=1, lbfgs, tol=1e-4, max_iter=100) fit on probe-train, accuracy and AUROC on
probe-val and test. Ours: `probe_layers(acts, labels, splits, protocol=..., probes=("logistic",))`,
the same standardisation and objective. Data: bench/_synth.py activations (float32, structured:
power-law latent factors, outlier features, a label direction that grows over the layers), 16
layers x 1800 statements (probe-train 720: n < hidden at 4096, n > hidden at 512). Splits: the
paper's (test / dev 1:1, dev -> probe-train / probe-val 4:1, seeded).

Threads: `1` limits both sides to one thread (torch.set_num_threads and threadpoolctl for the
BLAS libraries); `default` leaves each library's own default (every core). Times are the median
of --repeat runs, baseline and ours interleaved, as wall time and as this process's CPU time
(the load-independent figure at one thread; on a busy machine wall time mostly measures the
other jobs).

FLOP floor: the arithmetic the solver cannot avoid, two passes over the [n_train, hidden]
training activations per L-BFGS iteration of each layer (4 n d flops, with the iterations our
solver took), plus standardising (3 n d) and scoring the evaluated statements (2 d per
statement), divided by the single-thread float32 rate of a 2048^3 matrix product measured in
the same run (`floor @ mm`) and by the rate of the workload's own matrix-vector products on
one layer (`floor @ mv`: what the two passes can do when the layer stays in cache); `x floor`
is probe_layers' CPU time over the floor.

    .venv/bin/python bench/bench_probes.py [--hidden 512,4096] [--threads 1,default] [--repeat 3]

Prints a Markdown table ready for bench/BENCH.md, with the command line and the load.
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
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _synth import synthetic_activations

import tracing_bench.probes.layers as layers
from tracing_bench.probes.layers import probe_layers


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


def _ours(acts: np.ndarray, y: np.ndarray, sp: dict[str, np.ndarray], protocol: str) -> tuple[np.ndarray, int]:
    """Rows as in _baseline, and the L-BFGS iterations summed over the layers."""
    iters = []
    fit = layers.fit_logistic

    def counting(*a, **k):
        res = fit(*a, **k)
        iters.append(int(res.n_iter.sum()))
        return res

    layers.fit_logistic = counting
    try:
        rows = probe_layers(acts, y, sp, protocol=protocol, probes=("logistic",))
    finally:
        layers.fit_logistic = fit
    return np.array([[r["val_acc"], r["val_auroc"], r["test_acc"], r["test_auroc"]] for r in rows]), sum(iters)


def _rates(n: int, d: int) -> tuple[float, float]:
    """Single-thread float32 GFLOP/s of a 2048^3 product and of the [n, d] matrix-vector products."""
    a = torch.randn(2048, 2048)
    x = np.random.default_rng(0).standard_normal((n, d), dtype=np.float32)
    w = np.ones(d, dtype=np.float32)
    r = np.ones(n, dtype=np.float32)
    with threadpool_limits(1):
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            best_mm = min(_time(lambda: a @ a)[0] for _ in range(3))
            best_mv = min(_time(lambda: [x @ w, r @ x])[0] for _ in range(20))
        finally:
            torch.set_num_threads(before)
    return 2 * 2048**3 / best_mm / 1e9, 4 * n * d / best_mv / 1e9


def _time(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--n", type=int, default=1800)
    ap.add_argument("--hidden", default="512,4096", help="comma list of hidden sizes")
    ap.add_argument("--threads", default="1,default", help="comma list: a number, or 'default' (library defaults)")
    ap.add_argument("--protocol", default="paper", choices=["paper", "reference"])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(
        f"{args.layers} layers x {args.n} statements, float32, {args.protocol} protocol; torch {torch.__version__}; "
        f"{cores} cores; load average at start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}\n"
    )
    head = (
        "| hidden | threads | sklearn loop wall s (CPU s), median | probe_layers wall s (CPU s), median | speed-up wall (CPU) | "
        "L-BFGS iters (sum) | GFLOP | floor @ mm s | x floor @ mm | floor @ mv s | x floor @ mv | "
        "test acc sklearn / ours | max abs. test acc diff | max abs. AUROC diff |"
    )
    table = [head, "|" + "---|" * (head.count("|") - 1)]
    notes = []
    default_torch = torch.get_num_threads()
    for hidden in [int(h) for h in args.hidden.split(",")]:
        acts, y = synthetic_activations(args.layers, args.n, hidden, seed=0)
        sp = _splits(args.n, args.protocol)
        n_tr, n_eval = len(sp["probe_train"]), len(np.union1d(sp["probe_val"], sp.get("test", sp["probe_val"])))
        mm_rate, mv_rate = _rates(n_tr, hidden)
        for spec in args.threads.split(","):
            threads = None if spec == "default" else int(spec)
            limit = threadpool_limits(threads) if threads else threadpool_limits(None)
            with limit:
                torch.set_num_threads(threads or default_torch)
                t_base, t_ours = [], []
                base = ours = None
                iters = 0
                for _ in range(args.repeat):
                    wall, cpu, base = _time(lambda: _baseline(acts, y, sp, args.protocol))
                    t_base.append((wall, cpu))
                    wall, cpu, (ours, iters) = _time(lambda: _ours(acts, y, sp, args.protocol))
                    t_ours.append((wall, cpu))
                torch.set_num_threads(default_torch)
            assert base is not None and ours is not None
            flops = 4 * iters * n_tr * hidden + args.layers * (3 * n_tr * hidden + 2 * n_eval * hidden)
            (wb, cb), (wo, co) = np.median(t_base, axis=0), np.median(t_ours, axis=0)
            floor_mm, floor_mv = flops / mm_rate / 1e9, flops / mv_rate / 1e9
            label = threads if threads else f"default ({default_torch})"
            table.append(
                f"| {hidden} | {label} | {wb:.2f} ({cb:.2f}) | {wo:.3f} ({co:.3f}) | {wb / wo:.1f}x ({cb / co:.1f}x) | "
                f"{iters} | {flops / 1e9:.2f} | {floor_mm:.3f} | {co / floor_mm:.1f}x | {floor_mv:.3f} | "
                f"{co / floor_mv:.1f}x | {base[:, 2].mean():.4f} / {ours[:, 2].mean():.4f} | "
                f"{100 * np.abs(base[:, 2] - ours[:, 2]).max():.2f} points | {np.abs(base[:, 3] - ours[:, 3]).max():.4f} |"
            )
            notes.append(
                f"hidden {hidden}, threads {label}: wall s sklearn {[round(t[0], 2) for t in t_base]}, "
                f"ours {[round(t[0], 3) for t in t_ours]}; measured rates: mm {mm_rate:.1f}, mv {mv_rate:.1f} "
                f"GFLOP/s (one thread)"
            )
            print(table[-1], flush=True)
    print("\n" + "\n".join(table))
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")
    for line in notes:
        print(line)


if __name__ == "__main__":
    main()
