"""estimate_mi over all layers vs the released code's literal nHSIC run per layer.

Baseline: the released code's formula as written (torch float32 on the CPU, the layer-0 and the
layer's kernel rebuilt for each of I(X;T) and I(Y;T), Kc = K @ H as a matrix product, four m x m
`torch.inverse` calls per layer). Accuracy reference: the same formula in float64 with
numpy.linalg.inv. Data: bench/_synth.py activations (float32), standardised over the
statements, m statements, the layers' own X = layer 0 and Y = the labels.

    .venv/bin/python bench/bench_mi.py [--layers 8] [--m 1500] [--hidden 512] [--threads 0] [--repeat 2]

Prints a markdown table (timings are the best of --repeat runs, baseline and ours interleaved).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _synth import synthetic_activations  # noqa: E402

from tracing_bench.probes.mi import estimate_mi  # noqa: E402


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--m", type=int, default=1500)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--threads", type=int, default=0, help="BLAS/torch threads for both (0: defaults)")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
        torch.set_num_threads(args.threads)

    acts, labels = synthetic_activations(args.layers, args.m, args.hidden, seed=1)
    acts = (acts - acts.mean(1, keepdims=True)) / acts.std(1, ddof=1, keepdims=True)
    acts = acts.astype(np.float32)
    y = labels.astype(np.float32)

    t_lit, t_ours = [], []
    lit = ours = None
    for _ in range(args.repeat):
        tt = torch.from_numpy(acts)
        x, yy = tt[0], torch.from_numpy(y).view(-1, 1)
        start = time.perf_counter()
        lit = np.array(
            [[_nhsic_literal_f32(x, tt[i]), _nhsic_literal_f32(yy, tt[i])] for i in range(args.layers)]
        )
        t_lit.append(time.perf_counter() - start)
        start = time.perf_counter()
        i_xt, i_yt = estimate_mi(acts[0], labels, acts)
        t_ours.append(time.perf_counter() - start)
        ours = np.stack([i_xt, i_yt], axis=1)
    assert lit is not None and ours is not None

    px, py = _side_f64(acts[0]), _side_f64(y)
    ref = np.empty_like(ours)
    for i in range(args.layers):
        pt = _side_f64(acts[i])
        ref[i] = [np.sum(px * pt.T), np.sum(py * pt.T)]
    err_ours = np.abs(ours - ref) / np.abs(ref)
    err_lit = np.abs(lit - ref) / np.abs(ref)

    load = os.getloadavg()
    print(
        f"estimate_mi: {args.layers} layers, m={args.m}, hidden={args.hidden}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}\n"
    )
    print("| method | time (s, best of %d) | speed-up | max rel. error vs float64 formula (I(X;T) / I(Y;T)) |" % args.repeat)
    print("|---|---|---|---|")
    print(
        f"| literal float32, per layer (4 inverses) | {min(t_lit):.2f} | 1.0x | "
        f"{err_lit[:, 0].max():.1e} / {err_lit[:, 1].max():.1e} |"
    )
    print(
        f"| estimate_mi (float64, Cholesky, X/Y factored once) | {min(t_ours):.2f} | "
        f"{min(t_lit) / min(t_ours):.1f}x | {err_ours[:, 0].max():.1e} / {err_ours[:, 1].max():.1e} |"
    )
    print(f"\nall timings (s): literal {[round(v, 2) for v in t_lit]}, ours {[round(v, 2) for v in t_ours]}")
    print("I(X;T) per layer:", np.round(ours[:, 0], 4).tolist())
    print("I(Y;T) per layer:", np.round(ours[:, 1], 5).tolist())


if __name__ == "__main__":
    main()
