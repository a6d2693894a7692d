"""What the MI noise estimate of findings.json costs: probes + MI per (checkpoint, dimension), with and without it.

Runs the work of ``trace`` after harvesting (``tracing_bench.parts.build_part``: probes, nHSIC,
and with ``--mi-noise K`` nHSIC on K seeded half-samples) on every checkpoint of a folder series
and all five dimensions, alternating K = 0 and K = --mi-noise, and prints wall and CPU seconds.
Activations are harvested once (cached) before any timing.

    .venv/bin/python bench/bench_mi_noise.py demo-out/checkpoints --max-statements 1000 --mi-subsample 512
"""

from __future__ import annotations

import argparse
import time

import torch

from tracing_bench.cache import cached_activations
from tracing_bench.checkpoints import Checkpoint, resolve_series
from tracing_bench.dimensions import DIMENSIONS, load_dimension
from tracing_bench.parts import build_part
from tracing_bench.settings import TraceSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("series", help="folder of checkpoint sub-folders (e.g. demo-out/checkpoints)")
    ap.add_argument("--max-statements", type=int, default=1000)
    ap.add_argument("--mi-subsample", type=int, default=512)
    ap.add_argument("--mi-noise", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache-dir", default=None, help="activation cache (default: TRACING_BENCH_CACHE)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ckpts: list[Checkpoint] = resolve_series(args.series, None)
    datas = [load_dimension(d).subsample(args.max_statements, seed=0) for d in DIMENSIONS]
    acts = {}
    for c in ckpts:
        for d in datas:
            a, prov = cached_activations(c, d, device="cpu", cache_dir=args.cache_dir, dtype="float32", batch_size=64)
            acts[(c.label, d.name)] = (a.numpy(), prov)
    m = min(args.mi_subsample, min(len(d.splits["probe_train"]) for d in datas))
    print(
        f"{len(ckpts)} checkpoints x {len(datas)} dimensions, {args.max_statements} statements, MI on m = {m} "
        f"(half-samples of {m // 2}), {args.threads} thread(s)"
    )
    for _ in range(args.repeat):
        for k in (0, args.mi_noise):
            s = TraceSettings(mi=True, mi_subsample=args.mi_subsample, mi_noise=k, max_statements=args.max_statements)
            t0, c0 = time.perf_counter(), time.process_time()
            for c in ckpts:
                for d in datas:
                    a, prov = acts[(c.label, d.name)]
                    build_part(c, d, a, prov, s)
            print(
                f"  mi_noise={k}: {time.perf_counter() - t0:6.1f} s wall, {time.process_time() - c0:6.1f} s CPU",
                flush=True,
            )


if __name__ == "__main__":
    main()
