"""estimate_mi over all layers vs the released code's literal nHSIC run per layer, and its stages.

Baseline: the released code's formula as written (torch float32 on the CPU, the layer-0 and the
layer's kernel rebuilt for each of I(X;T) and I(Y;T), Kc = K @ H as a matrix product, four m x m
`torch.inverse` calls per layer). Accuracy reference: the same formula in float64 with
numpy.linalg.inv. Data: bench/_synth.py activations (float32), standardised over the
statements, m statements, the layers' own X = layer 0 and Y = the labels.

Stages: estimate_mi's own steps timed one by one (one thread, CPU time), each beside its
arithmetic: the X side once per call (Gram a a^T = m^2 d flops with syrk, Cholesky m^3/3,
Cholesky inverse 2m^3/3, Cholesky of P_X m^3/3), then per layer the Gram, the Cholesky factor
and the triangular solve with the triangular V (m^3/3), and the label side (a few m^2). `floor`
divides the flops by the float64 rate of an m x m matrix product measured in the same run.

Threads: `1` limits torch and the BLAS libraries to one thread; `default` leaves each library's
default (every core). Times are wall and, in brackets, this process's CPU time: the median of
--repeat runs, the literal formula and estimate_mi interleaved (literal, ours, literal, ours...),
so that a shared machine's load falls on both alike. `--no-stages` skips the stage table (it
needs this checkout's kernels; the main table also runs against an older checkout through
PYTHONPATH, for before/after ratios).

    .venv/bin/python bench/bench_mi.py [--layers 8] [--m 1500] [--hidden 512,4096] [--threads 1,default] [--repeat 3] [--no-stages]

Prints Markdown tables ready for bench/BENCH.md, with the command line and the load.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _synth import synthetic_activations

from tracing_bench.probes import kernels
from tracing_bench.probes.mi import estimate_mi


def _kernelmat_f32(x: torch.Tensor, sigma: float = 50.0) -> torch.Tensor:
    """The released code's kernelmat: distance matrix, Gaussian kernel, right-centring by K @ H."""
    if x.ndim == 1:
        x = x.view(-1, 1)
    m = x.shape[0]
    h = torch.eye(m) - (1.0 / m) * torch.ones([m, m])
    r = torch.sum(x * x, 1).view(-1, 1)
    a = x @ x.T
    dist = (r.expand_as(a) - 2 * a + r.T.expand_as(a)).abs()
    k = torch.exp(-dist / (2.0 * sigma * sigma * x.shape[1])).float()
    return k @ h


def _nhsic_literal_f32(x: torch.Tensor, y: torch.Tensor, sigma: float = 50.0) -> float:
    m = x.shape[0]
    kxc, kyc = _kernelmat_f32(x, sigma), _kernelmat_f32(y, sigma)
    eye = torch.eye(m)
    rx = kxc @ torch.inverse(kxc + 1e-5 * m * eye)
    ry = kyc @ torch.inverse(kyc + 1e-5 * m * eye)
    return float(torch.sum(rx * ry.t()))


def _side_f64(a: np.ndarray, sigma: float = 50.0) -> np.ndarray:
    a = a.reshape(a.shape[0], -1).astype(np.float64)
    m, d = a.shape
    sq = (a * a).sum(1)
    dist = np.abs(sq[:, None] - 2 * a @ a.T + sq[None, :])
    kc = np.exp(-dist / (2 * sigma**2 * d)) @ (np.eye(m) - np.ones((m, m)) / m)
    return kc @ np.linalg.inv(kc + 1e-5 * m * np.eye(m))


def _time(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def _stages(acts: np.ndarray, labels: np.ndarray, m: int) -> tuple[list[tuple[str, float, float]], float]:
    """[(stage, CPU seconds, flops)] of estimate_mi's steps at one thread, and the float64 mm rate."""
    lam = 1e-5 * m
    tx = torch.from_numpy(acts[0]).double()
    tt = torch.from_numpy(acts[1]).double()
    d = tx.shape[1]
    out = []
    with threadpool_limits(1):
        torch.set_num_threads(1)
        a = np.random.default_rng(0).standard_normal((m, m))
        rate = 2 * m**3 / min(_time(lambda: a @ a)[1] for _ in range(3))
        _, c, k = _time(lambda: kernels.regularised_centred_kernel(tx, 50.0, lam))
        out.append(("X: Gram + kernel + centring", c, m * m * d))
        _, c, chol = _time(lambda: kernels.cholesky(k, "x", 1e-5))
        out.append(("X: Cholesky of Kt + lam I", c, m**3 / 3))
        _, c, _ = _time(lambda: kernels._chol_inverse(chol, lower_only=True))
        out.append(("X: Cholesky inverse (P_X = I - lam A^-1)", c, 2 * m**3 / 3))
        _, c, fx = _time(lambda: kernels._dense_factor(k, lam, 1e-5, "x"))
        out.append(("X: the whole factor (above + Cholesky of P_X)", c, 4 * m**3 / 3))
        _, c, fy = _time(lambda: kernels.factor(torch.from_numpy(labels).double()[:, None], 50.0, lam, 1e-5, "y"))
        out.append(("Y: rank-1 label factor", c, 4 * m * m))
        _, c, b = _time(lambda: kernels.regularised_centred_kernel(tt, 50.0, lam))
        out.append(("layer: Gram + kernel + centring", c, m * m * d))
        _, c, cb = _time(lambda: kernels.cholesky(b, "t", 1e-5))
        out.append(("layer: Cholesky of Kt + lam I", c, m**3 / 3))
        _, c, _ = _time(lambda: kernels._cross_dense(fx, b.unsqueeze(0), cb.unsqueeze(0), lam))
        out.append(("layer: I(X;T), solve with triangular V", c, m**3 / 3))
        _, c, _ = _time(lambda: kernels._cross_low_rank(fy, b.unsqueeze(0), cb.unsqueeze(0), lam))
        out.append(("layer: I(Y;T), one Cholesky solve", c, 6 * m * m))
        torch.set_num_threads(_DEFAULT_TORCH)
    return out, rate


_DEFAULT_TORCH = torch.get_num_threads()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--m", type=int, default=1500)
    ap.add_argument("--hidden", default="512,4096", help="comma list of hidden sizes")
    ap.add_argument("--threads", default="1,default", help="comma list: a number, or 'default'")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-stages", dest="stages", action="store_false", help="skip the stage table")
    args = ap.parse_args()
    load = os.getloadavg()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(
        f"{args.layers} layers, m = {args.m}; torch {torch.__version__}; {cores} cores; "
        f"load average at start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}\n"
    )
    main_rows = [
        "| hidden | threads | literal float32 wall s (CPU s), median | estimate_mi wall s (CPU s), median | speed-up wall (CPU) | "
        "max rel. error literal (I(X;T) / I(Y;T)) | max rel. error estimate_mi |",
        "|---|---|---|---|---|---|---|",
    ]
    stage_tables = []
    for hidden in [int(h) for h in args.hidden.split(",")]:
        acts, labels = synthetic_activations(args.layers, args.m, hidden, seed=1)
        acts = ((acts - acts.mean(1, keepdims=True)) / acts.std(1, ddof=1, keepdims=True)).astype(np.float32)
        y = labels.astype(np.float32)
        px, py = _side_f64(acts[0]), _side_f64(y)
        ref = np.empty((args.layers, 2))
        for i in range(args.layers):
            pt = _side_f64(acts[i])
            ref[i] = [np.sum(px * pt.T), np.sum(py * pt.T)]
        for spec in args.threads.split(","):
            threads = None if spec == "default" else int(spec)
            with threadpool_limits(threads):
                torch.set_num_threads(threads or _DEFAULT_TORCH)
                t_lit, t_ours = [], []
                lit = ours = None
                for _ in range(args.repeat):
                    tt = torch.from_numpy(acts)
                    x, yy = tt[0], torch.from_numpy(y).view(-1, 1)
                    w, c, lit = _time(
                        lambda: np.array(
                            [[_nhsic_literal_f32(x, tt[i]), _nhsic_literal_f32(yy, tt[i])] for i in range(args.layers)]
                        )
                    )
                    t_lit.append((w, c))
                    w, c, res = _time(lambda: estimate_mi(acts[0], labels, acts))
                    t_ours.append((w, c))
                    ours = np.stack(res, axis=1)
                torch.set_num_threads(_DEFAULT_TORCH)
            assert lit is not None and ours is not None
            e_lit, e_ours = np.abs(lit - ref) / np.abs(ref), np.abs(ours - ref) / np.abs(ref)
            (wl, cl), (wo, co) = np.median(t_lit, axis=0), np.median(t_ours, axis=0)
            label = threads if threads else f"default ({_DEFAULT_TORCH})"
            main_rows.append(
                f"| {hidden} | {label} | {wl:.2f} ({cl:.2f}) | {wo:.2f} ({co:.2f}) | {wl / wo:.1f}x ({cl / co:.1f}x) | "
                f"{e_lit[:, 0].max():.1e} / {e_lit[:, 1].max():.1e} | "
                f"{e_ours[:, 0].max():.1e} / {e_ours[:, 1].max():.1e} |"
            )
            print(main_rows[-1], flush=True)
            print(
                f"  wall s literal {[round(t[0], 2) for t in t_lit]}, ours {[round(t[0], 2) for t in t_ours]}",
                flush=True,
            )
        if not args.stages:
            continue
        stages, rate = _stages(acts, labels, args.m)
        rows = [
            f"Stages at hidden {hidden} (one thread, CPU time; float64 m x m product: {rate / 1e9:.1f} GFLOP/s):",
            "",
            "| stage | CPU s | GFLOP | GFLOP/s | x floor |",
            "|---|---|---|---|---|",
        ]
        for name, c, flops in stages:
            rows.append(f"| {name} | {c:.3f} | {flops / 1e9:.2f} | {flops / c / 1e9:.1f} | {c / (flops / rate):.1f}x |")
        per_layer = sum(c for name, c, _ in stages if name.startswith("layer"))
        layer_flops = sum(f for name, _, f in stages if name.startswith("layer"))
        x_side = sum(c for name, c, _ in stages if name.startswith(("X: the whole", "Y:"))) + stages[0][1]
        rows.append(
            f"| per layer, all stages | {per_layer:.3f} | {layer_flops / 1e9:.2f} | {layer_flops / per_layer / 1e9:.1f} | "
            f"{per_layer / (layer_flops / rate):.1f}x |"
        )
        rows.append(
            f"\nexpected estimate_mi at one thread: X side {x_side:.2f} s + {args.layers} x {per_layer:.3f} s = "
            f"{x_side + args.layers * per_layer:.2f} s"
        )
        stage_tables.append("\n".join(rows))
    print("\n" + "\n".join(main_rows))
    for table in stage_tables:
        print("\n" + table)
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")


if __name__ == "__main__":
    main()
