"""Live tracing against reload-and-trace: the demo's first two stages both ways, and the cost per checkpoint.

Before (the demo until 0.3.0): ``pretrain`` saves every checkpoint, then ``trace`` loads each one
again from disk, harvests, probes and estimates MI. After: ``pretrain(on_checkpoint=LiveTracer(...))``
probes each checkpoint in the training process as it is saved, and ``trace`` afterwards only merges
the parts. Both use the demo's trace settings (all five dimensions, probes + MI, ``--fast``: 400
statements and MI on 256; default: 1000 and 512) with a fresh output folder and activation cache.
The script prints the stage times, the per-checkpoint cost of each way (live: ``live.json``;
reload: each ``trace_checkpoint`` timed on its own, i.e. load + harvest + cache write + probes +
MI) and the largest difference between the two ways' tables.

Then, on the same checkpoints, each way is timed per checkpoint with the two alternated (:func:`interleaved`), so that
both see the same load on a shared machine.

Usage: python bench/bench_live.py [--fast] [--out /tmp/bench-live] [--threads 1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

from tracing_bench.checkpoints import resolve_series
from tracing_bench.live import LiveTracer
from tracing_bench.pretrain import PretrainConfig, pretrain
from tracing_bench.settings import TraceSettings
from tracing_bench.trace import load_datas, merge, trace, trace_checkpoint


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _max_diff(a: Path, b: Path) -> float:
    worst = 0.0
    ra, rb = _rows(a), _rows(b)
    assert len(ra) == len(rb), (len(ra), len(rb))
    for x, y in zip(ra, rb, strict=True):
        for k in x:
            if k == "model":  # the series' folder: before/ or after/
                continue
            try:
                worst = max(worst, abs(float(x[k]) - float(y[k])))
            except ValueError:
                assert x[k] == y[k], (k, x[k], y[k])
    return worst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fast", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-live"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2, help="rounds of the interleaved per-checkpoint comparison")
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    config = (PretrainConfig.fast if args.fast else PretrainConfig)(seed=0, threads=args.threads)
    n_stmt, m = (400, 256) if args.fast else (1000, 512)

    def settings(root: Path, cache: Path) -> TraceSettings:
        return TraceSettings.from_options(
            dimensions="all",
            mi=True,
            cache_dir=cache,
            batch_size=64,
            device="cpu",
            dtype="float32",
            seed=0,
            max_statements=n_stmt,
            mi_subsample=m,
            threads=args.threads,
            series_name=str(root),
        )

    # before: pretrain, then reload and trace each checkpoint
    before = args.out / "before"
    t0, c0 = time.perf_counter(), time.process_time()
    pretrain(config, before / "checkpoints", progress=False)
    t_pre_before, c_pre_before = time.perf_counter() - t0, time.process_time() - c0
    s_before = settings(before / "checkpoints", before / "cache")
    datas = load_datas(s_before)
    ckpts = resolve_series(str(before / "checkpoints"))
    reload_s = []
    t0, c0 = time.perf_counter(), time.process_time()
    for ckpt in ckpts:
        t1 = time.perf_counter()
        trace_checkpoint(ckpt, datas, s_before, before / "trace")
        reload_s.append(time.perf_counter() - t1)
    merged = merge(before / "trace", ckpts, datas, s_before)
    t_trace_before, c_trace_before = time.perf_counter() - t0, time.process_time() - c0

    # after: trace live while pre-training, then trace merges the parts
    after = args.out / "after"
    s_after = settings(after / "checkpoints", after / "cache")
    t0, c0 = time.perf_counter(), time.process_time()
    tracer = LiveTracer(after / "trace", s_after)
    pretrain(config, after / "checkpoints", progress=False, on_checkpoint=tracer.on_checkpoint)
    t_pre_after, c_pre_after = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    res = trace(str(after / "checkpoints"), out=after / "trace", settings=s_after, progress=False)
    t_trace_after, c_trace_after = time.perf_counter() - t0, time.process_time() - c0
    live = json.loads((after / "trace" / "live.json").read_text())["checkpoints"]

    diff = max(_max_diff(merged.probes_csv, res.probes_csv), _max_diff(merged.mi_csv, res.mi_csv))
    n = len(ckpts)
    live_s = [c["seconds"] for c in live]
    print(
        f"{'--fast' if args.fast else 'default'} run: {n} checkpoints, {config.steps} steps, "
        f"{n_stmt} statements per dimension, MI on {m}, {args.threads} thread(s)"
    )
    print("| wall s (CPU s) | pretrain | trace | pretrain + trace |")
    print("|---|---|---|---|")
    for name, (tp, cp, tt, ct) in (
        ("before: reload and trace", (t_pre_before, c_pre_before, t_trace_before, c_trace_before)),
        ("after: live, then merge", (t_pre_after, c_pre_after, t_trace_after, c_trace_after)),
    ):
        print(f"| {name} | {tp:.1f} ({cp:.1f}) | {tt:.1f} ({ct:.1f}) | {tp + tt:.1f} ({cp + ct:.1f}) |")
    print()
    print("| per checkpoint (s) | mean | min | max |")
    print("|---|---|---|---|")
    print(f"| reload and trace | {sum(reload_s) / n:.2f} | {min(reload_s):.2f} | {max(reload_s):.2f} |")
    print(f"| live (harvest + probes + MI + merge) | {sum(live_s) / n:.2f} | {min(live_s):.2f} | {max(live_s):.2f} |")
    harvest = [c["harvest_s"] for c in live]
    merge_s = [c["merge_s"] for c in live]
    print(f"| of which live harvest | {sum(harvest) / n:.2f} | {min(harvest):.2f} | {max(harvest):.2f} |")
    print(f"| of which merge of the tables so far | {sum(merge_s) / n:.2f} | {min(merge_s):.2f} | {max(merge_s):.2f} |")
    print(f"\nlargest difference between the two ways' probes.csv / mi.csv numbers: {diff:.3g}")
    interleaved(ckpts, s_before, args.out / "interleaved", args.repeats)


def interleaved(ckpts: list, settings: TraceSettings, out: Path, repeats: int) -> None:
    """Per checkpoint, reload-and-trace and live tracing of the same weights, alternated, so both see the same load.

    Reload: ``trace_checkpoint`` into a fresh part folder and activation cache (load + harvest + cache write +
    probes + MI). Live: the model loaded beforehand (untimed: in training it is already in memory), then
    ``LiveTracer.on_checkpoint`` (harvest + probes + MI, then the merge of the tables so far).
    """
    from tracing_bench.loading import load_checkpoint

    datas = load_datas(settings)
    reload_w, reload_c, live_w, live_c, merge_w = [], [], [], [], []
    for r in range(repeats):
        tracer = LiveTracer(out / f"live{r}", settings)
        for ckpt in ckpts:
            t0, c0 = time.perf_counter(), time.process_time()
            trace_checkpoint(ckpt, datas, replace(settings, cache_dir=str(out / f"cache{r}")), out / f"reload{r}")
            reload_w.append(time.perf_counter() - t0)
            reload_c.append(time.process_time() - c0)
            model, tok = load_checkpoint(ckpt, dtype="float32", device="cpu")
            model.train()  # as in training
            t0, c0 = time.perf_counter(), time.process_time()
            res = tracer.on_checkpoint(model, tok, ckpt.step or 0, folder=ckpt.model)
            live_w.append(time.perf_counter() - t0)
            live_c.append(time.process_time() - c0)
            merge_w.append(json.loads((out / f"live{r}" / "live.json").read_text())["checkpoints"][-1]["merge_s"])
            assert res.traced
    n = len(reload_w)

    def mean(x: list[float]) -> float:
        return sum(x) / len(x)

    print(f"\ninterleaved, {n} checkpoint traces each way ({repeats} x {len(ckpts)}), wall s (CPU s) per checkpoint:")
    print("| per checkpoint | wall mean | CPU mean |")
    print("|---|---|---|")
    print(
        f"| reload and trace (load + harvest + cache write + probes + MI) | {mean(reload_w):.2f} | {mean(reload_c):.2f} |"
    )
    print(f"| live (harvest + probes + MI + merge of the tables so far) | {mean(live_w):.2f} | {mean(live_c):.2f} |")
    print(f"| of which the merge | {mean(merge_w):.2f} | |")


if __name__ == "__main__":
    main()
