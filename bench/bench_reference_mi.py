"""How far the released code's float32 nHSIC is from the float64 estimator, on the same inputs.

``--protocol reference`` computes I(X;T) and I(Y;T) in float32 with the released formula's
operations (:mod:`tracing_bench.probes.reference`); the ``paper`` protocol computes the same
formula in float64 (:func:`tracing_bench.probes.mi.estimate_mi`). Both get identical inputs
here: the whole-file float32 scaling of the released code, m statements drawn (seed 0) from the
first 80 % of the file, X = block 0, Y = the labels, T = each block. So the table measures the
float32 arithmetic alone.

Sources:
* ``--model DIR --dimension NAME``: a saved checkpoint (e.g. the demo's ``checkpoints/step200``)
  on a bundled dimension read as the reference protocol reads it (the released file, file order);
* ``--synthetic``: bench/_synth.py activations (``--layers`` blocks, ``--hidden`` wide), no model.

    .venv/bin/python bench/bench_reference_mi.py --model demo-out/checkpoints/step200 --dimension toxicity --m 1500
    .venv/bin/python bench/bench_reference_mi.py --synthetic --m 1500 [--hidden 4096 --layers 4]

Prints a markdown table: per block, both estimates, the relative error of I(X;T), and the
absolute and relative error of I(Y;T).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tracing_bench.probes.mi import estimate_mi
from tracing_bench.probes.reference import nhsic_float32, released_scaling


def _model_acts(folder: str, dimension: str, batch_size: int) -> tuple[torch.Tensor, np.ndarray, str]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tracing_bench.dimensions import load_dimension
    from tracing_bench.harvest import harvest

    data = load_dimension(dimension, protocol="reference")
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    acts = harvest(model, tok, data.statements, batch_size=batch_size)
    return acts, data.labels, f"{folder}, {data.name} ({data.path.name}, {len(data.statements)} rows)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="checkpoint folder (saved with save_pretrained)")
    ap.add_argument("--dimension", default="toxicity")
    ap.add_argument("--synthetic", action="store_true", help="bench/_synth.py activations instead of a model")
    ap.add_argument("--m", type=int, default=1500, help="statements used for nHSIC")
    ap.add_argument("--layers", type=int, default=8, help="blocks of the synthetic activations")
    ap.add_argument("--hidden", type=int, default=512, help="width of the synthetic activations")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.synthetic:
        from _synth import synthetic_activations

        a, y = synthetic_activations(n_layers=args.layers, n=int(args.m / 0.8) + 1, d=args.hidden, seed=0)
        acts, labels, what = torch.from_numpy(a), y, f"bench/_synth.py, {args.layers} blocks, hidden {args.hidden}"
    else:
        if not args.model:
            ap.error("give --model DIR (and --dimension) or --synthetic")
        acts, labels, what = _model_acts(args.model, args.dimension, args.batch_size)
    n_train = int(acts.shape[1] * 0.8)
    rows = np.arange(n_train)
    if args.m < n_train:
        rows = np.sort(np.random.default_rng(0).choice(n_train, size=args.m, replace=False))
    scaled = [released_scaling(acts[k])[0][rows].contiguous() for k in range(acts.shape[0])]
    y = labels[rows]
    t0 = time.perf_counter()
    f32 = [(nhsic_float32(scaled[0], t), nhsic_float32(y.astype(np.float32), t)) for t in scaled]
    t32 = time.perf_counter() - t0
    t0 = time.perf_counter()
    stack = torch.stack(scaled).double()
    ixt64, iyt64 = estimate_mi(stack[0], y, stack)
    t64 = time.perf_counter() - t0
    print(f"source: {what}; m = {len(rows)} of the first {n_train}; float32 {t32:.1f} s, float64 {t64:.1f} s\n")
    print(
        "| block | I(X;T) float32 | I(X;T) float64 | rel. error | I(Y;T) float32 | I(Y;T) float64 | abs. error | rel. error |"
    )
    print("|---|---|---|---|---|---|---|---|")
    worst = [0.0, 0.0, 0.0]
    for k, ((x32, y32), x64, y64) in enumerate(zip(f32, ixt64, iyt64, strict=False)):
        ex, ey = abs(x32 - x64) / abs(x64), abs(y32 - y64)
        worst = [max(worst[0], ex), max(worst[1], ey), max(worst[2], ey / abs(y64))]
        print(f"| {k} | {x32:.5g} | {x64:.5g} | {ex:.2%} | {y32:.5g} | {y64:.5g} | {ey:.2g} | {ey / abs(y64):.2%} |")
    print(f"\nlargest: I(X;T) {worst[0]:.2%} relative; I(Y;T) {worst[1]:.2g} absolute, {worst[2]:.2%} relative")


if __name__ == "__main__":
    main()
