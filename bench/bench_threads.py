"""How many threads the trace's probes and nHSIC should use: one and two threads side by side.

Three measurements, each in this one process, at one thread and at two (torch and the BLAS
libraries set together, as `tracing_bench.threads.use_threads` does):

1. micro: a small Gram matrix in torch followed by a scipy Cholesky factor (200 statements x
   hidden 128, the shape of the demo's nHSIC half-samples), alternating as the nHSIC code
   does. Run it twice, once as is and once with `OMP_WAIT_POLICY=PASSIVE` in the environment
   (what the `tracing-bench` command sets before torch loads), to see what spinning OpenMP
   threads cost.
2. estimate_mi: m statements x hidden, 3 layers (`--mi` shapes).
3. probe_layers: all layers of n statements x hidden (`--probe` shapes).

Pass `--trace DIR` (a folder of checkpoints whose activations are cached under `--cache-dir`,
e.g. a demo's `checkpoints` and `cache`) to also time the demo's trace stage from cached
activations at `--threads 1`, `--threads 2` and the default choice.

    .venv/bin/python bench/bench_threads.py
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/bench_threads.py
    .venv/bin/python bench/bench_threads.py --trace demo-out/checkpoints --cache-dir demo-out/cache --trace-only

Prints Markdown tables ready for bench/BENCH.md, with the command line and the load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np


def _best(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mi", default="200x128,1500x512,1500x4096", help="m x hidden shapes for estimate_mi")
    parser.add_argument("--probe", default="1800x512,1800x4096", help="n x hidden shapes for probe_layers (8 layers)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--trace", default=None, help="folder of checkpoints with cached activations")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--trace-only", action="store_true", help="skip the micro, estimate_mi and probe timings")
    args = parser.parse_args()

    import scipy.linalg as sl
    import torch

    from tracing_bench.probes import probe_layers
    from tracing_bench.probes.mi import estimate_mi
    from tracing_bench.threads import use_threads

    print(
        f"command: {' '.join(sys.argv)}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}; "
        f"load average {os.getloadavg()[0]:.2f}; cores {os.cpu_count()}\n"
    )
    rng = np.random.default_rng(0)
    rows: list[tuple[str, float, float]] = []
    if args.trace_only:
        args.mi = args.probe = ""
    a = rng.standard_normal((200, 128))
    ta = torch.from_numpy(a)
    k = a @ a.T + 200 * np.eye(200)
    for name, fn in (
        ()
        if args.trace_only
        else (("micro: torch Gram + scipy Cholesky, 200 x 128", lambda: (ta @ ta.T, sl.cholesky(k, lower=True))),)
    ):
        times = []
        for n in (1, 2):
            with use_threads(n):
                times.append(_best(lambda: [fn() for _ in range(20)], args.repeat) / 20)
        rows.append((name, *times))
    for shape in filter(None, args.mi.split(",")):
        m, d = (int(x) for x in shape.split("x"))
        t = rng.standard_normal((3, m, d)).astype(np.float32)
        y = rng.integers(0, 2, m)
        times = []
        for n in (1, 2):
            with use_threads(n):
                times.append(_best(lambda: estimate_mi(t[0], y, t), args.repeat))
        rows.append((f"estimate_mi, 3 layers, m {m} x hidden {d}", *times))
    for shape in filter(None, args.probe.split(",")):
        n_stat, d = (int(x) for x in shape.split("x"))
        acts = rng.standard_normal((8, n_stat, d)).astype(np.float32)
        labels = rng.integers(0, 2, n_stat)
        cut = [int(n_stat * f) for f in (0.6, 0.75)]
        splits = {
            "probe_train": np.arange(cut[0]),
            "probe_val": np.arange(cut[0], cut[1]),
            "test": np.arange(cut[1], n_stat),
        }
        times = []
        for n in (1, 2):
            with use_threads(n):
                times.append(_best(lambda: probe_layers(acts, labels, splits), args.repeat))
        rows.append((f"probe_layers, 8 layers, {n_stat} statements x hidden {d}", *times))
    if rows:
        print("| work | 1 thread | 2 threads | 2 / 1 |\n|---|---|---|---|")
    for name, one, two in rows:
        unit, scale = ("ms", 1e3) if one < 0.1 else ("s", 1.0)
        print(f"| {name} | {one * scale:.3g} {unit} | {two * scale:.3g} {unit} | {two / one:.2f} |")
    if args.trace:
        from tracing_bench.trace import trace

        print("\n| trace stage from cached activations | wall | CPU |\n|---|---|---|")
        for threads in (1, 2, None):
            out = tempfile.mkdtemp(prefix="bench-threads-")
            try:
                start, cpu = time.perf_counter(), time.process_time()
                # the demo's trace settings, so that its cached activations are found
                trace(
                    args.trace,
                    None,
                    out=out,
                    dimensions="all",
                    mi=True,
                    cache_dir=args.cache_dir,
                    batch_size=64,
                    device="cpu",
                    dtype="float32",
                    max_statements=1000,
                    mi_subsample=512,
                    progress=False,
                    threads=threads,
                )
                print(
                    f"| --threads {threads or 'default'} | {time.perf_counter() - start:.1f} s | "
                    f"{time.process_time() - cpu:.1f} s |"
                )
            finally:
                shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
