"""`tracing-bench demo` idle and with one competing CPU-bound process, side by side in one run.

Each run starts from a fresh temporary --out folder (and fresh Hugging Face datasets and
activation caches), so nothing is reused. First the demo runs alone; then the benchmark starts
one CPU-bound process (a single-threaded busy loop that stops by itself after
--max-load-seconds, and is killed as soon as the second demo ends) and runs the same demo
again. The stage times come from the demo's own summary line.

    .venv/bin/python bench/bench_demo_load.py [--fast] [--threads N] [--order idle,load]

``--threads N`` passes --threads to both demos (e.g. 2 to see what a fixed thread count does
under load); without it the demo picks its threads from the idle cores, stage by stage.
Prints a Markdown table ready for bench/BENCH.md, with the command line and the load.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

_SPIN = "import time\nend = time.time() + {seconds}\nx = 1.0\nwhile time.time() < end:\n    x = x * 1.0000001 + 1e-9\n"


def _run_demo(fast: bool, threads: str | None) -> tuple[float, float, dict[str, float], str]:
    """(wall s, CPU s of the demo process and its children, stage timings, output tail)."""
    root = tempfile.mkdtemp(prefix="tb-demo-load-")
    env = dict(os.environ)
    env.update(
        {
            "TRACING_BENCH_CACHE": os.path.join(root, "cache"),
            "HF_DATASETS_CACHE": os.path.join(root, "hf-datasets"),
            "TQDM_DISABLE": "1",
        }
    )
    env.pop("OMP_NUM_THREADS", None)  # the demo chooses its own threads
    cmd = [sys.executable, "-m", "tracing_bench", "demo", "--out", os.path.join(root, "out")]
    if fast:
        cmd.append("--fast")
    if threads:
        cmd += ["--threads", threads]
    start, before = time.perf_counter(), os.times()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall, after = time.perf_counter() - start, os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    shutil.rmtree(root, ignore_errors=True)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"the demo failed (exit {proc.returncode}):\n{out[-3000:]}")
    match = re.search(r"timings \(s\): (.*)", out)
    stages = {}
    if match:
        for item in match.group(1).split(","):
            name, _, value = item.strip().rpartition(" ")
            stages[name] = float(value)
    return wall, cpu, stages, out[-600:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="tracing-bench demo --fast (about a minute idle)")
    ap.add_argument("--threads", default=None, help="pass --threads N to both demos (default: the demo decides)")
    ap.add_argument("--order", default="idle,load", help="idle,load or load,idle")
    ap.add_argument(
        "--max-load-seconds", type=float, default=1800, help="the competing process stops by itself after this"
    )
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"{cores} cores; load average at start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}", flush=True)
    results: dict[str, tuple[float, float, dict[str, float]]] = {}
    for condition in args.order.split(","):
        spinner = None
        if condition == "load":
            spinner = subprocess.Popen([sys.executable, "-c", _SPIN.format(seconds=args.max_load_seconds)])
            time.sleep(1.0)  # the competing job is running before the demo starts
        try:
            wall, cpu, stages, _ = _run_demo(args.fast, args.threads)
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
        results[condition] = (wall, cpu, stages)
        la = os.getloadavg()
        print(
            f"{condition}: {wall:.1f} s wall, {cpu:.1f} s CPU; stages {stages}; load average now {la[0]:.2f}",
            flush=True,
        )
    idle, busy = results.get("idle"), results.get("load")
    if not (idle and busy):
        return
    names = list(dict.fromkeys([*idle[2], *busy[2]]))
    print("\n| stage | idle s | with one competing CPU-bound process s | ratio |")
    print("|---|---|---|---|")
    for name in names:
        a, b = idle[2].get(name, float("nan")), busy[2].get(name, float("nan"))
        ratio = f"{b / a:.2f}x" if a > 0 else "-"
        print(f"| {name} | {a:.1f} | {b:.1f} | {ratio} |")
    print(f"| whole command (wall) | {idle[0]:.1f} | {busy[0]:.1f} | {busy[0] / idle[0]:.2f}x |")
    print(f"| whole command (CPU) | {idle[1]:.1f} | {busy[1]:.1f} | {busy[1] / idle[1]:.2f}x |")
    load = os.getloadavg()
    print(
        f"\nthreads: {args.threads or 'chosen by the demo'}; load average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}"
    )


if __name__ == "__main__":
    main()
