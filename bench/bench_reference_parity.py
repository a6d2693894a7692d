"""Does ``trace --protocol reference --mi`` give the released scripts' numbers? One checkpoint, one file.

Ours: ``tracing_bench.trace.trace(..., protocol="reference", mi=True)``. Theirs: the released
recipe written out independently in tests/test_reference.py (forward hooks and one
``model(input_ids)`` per statement, whole-file float32 scaling, ``LogisticRegression()`` on the
first 80 %, the nHSIC formula in float32 with explicit inverses).

    .venv/bin/python bench/bench_reference_parity.py demo-out/checkpoints/step200 [--dimension fairness]

Prints, per block, both test accuracies and both I(X;T), I(Y;T), and the largest relative
differences; and the convergence count of the logistic fits.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from test_reference import _released_acts, _released_train_probes
from tracing_bench.dimensions import load_dimension
from tracing_bench.trace import trace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="a checkpoint folder (saved with save_pretrained)")
    ap.add_argument("--dimension", default="fairness", help="read as --protocol reference reads it")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dimension(args.dimension, protocol="reference")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = trace(
            args.checkpoint,
            out=Path(tmp) / "out",
            dimensions=args.dimension,
            mi=True,
            protocol="reference",
            cache_dir=Path(tmp) / "cache",
            device="cpu",
            progress=False,
        )
        t_ours = time.perf_counter() - t0
        with open(res.probes_csv, newline="") as f:
            probes = [r for r in csv.DictReader(f) if r["probe"] == "logistic"]
        with open(res.mi_csv, newline="") as f:
            mi = list(csv.DictReader(f))
        ref = json.loads(Path(res.trace_json).read_text())["reference_protocol"]
    t0 = time.perf_counter()
    accs, ixt, iyt, unconverged = _released_train_probes(_released_acts(args.checkpoint, data.statements), data.labels)
    t_theirs = time.perf_counter() - t0
    print(
        f"{args.checkpoint}, {data.name} ({data.path.name}, {len(data.statements)} rows, "
        f"m = {mi[0]['m']}); ours {t_ours:.0f} s, the released recipe {t_theirs:.0f} s\n"
    )
    print("| block | test acc ours | released | I(X;T) ours | released | I(Y;T) ours | released |")
    print("|---|---|---|---|---|---|---|")
    rel_x, rel_y = [], []
    for k, (p, m) in enumerate(zip(probes, mi, strict=False)):
        ox, oy = float(m["i_xt"]), float(m["i_yt"])
        rel_x.append(abs(ox - ixt[k]) / abs(ixt[k]))
        rel_y.append(abs(oy - iyt[k]) / abs(iyt[k]))
        print(
            f"| {k} | {float(p['test_acc']):.4f} | {accs[k]:.4f} | {ox:.6g} | {ixt[k]:.6g} | {oy:.6g} | {iyt[k]:.6g} |"
        )
    same = [float(p["test_acc"]) for p in probes] == accs
    print(
        f"\ntest accuracy identical on every block: {same}; nHSIC largest relative difference: "
        f"I(X;T) {max(rel_x):.1e}, I(Y;T) {max(rel_y):.1e}"
    )
    print(
        f"unconverged LogisticRegression() fits: ours {ref['convergence_warnings']} of {ref['logistic_fits']}, "
        f"the released recipe {unconverged} of {len(accs)}"
    )
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
