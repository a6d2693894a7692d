"""Overhead of ``trust-steered`` against the unsteered HFLM on the same task and batch size.

Builds a randomly initialised Llama from a config (no download; default hidden 256, 4 blocks)
with the tiny test tokenizer, loads it ONCE, wraps the same model object in lm-eval's ``HFLM``,
``trust-steered`` (positions=all and positions=last) and lm-eval's stock ``steered``, and times
``loglikelihood`` on the requests of one trust task. Variants are interleaved (order rotated each
repeat) so that load on a shared machine hits them alike; the figure is the ratio of medians.

    .venv/bin/python bench/bench_steering.py --task trust_fairness --limit 60 --batch-size 16 --repeats 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="trust_fairness")
    ap.add_argument("--limit", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; with 1, process CPU time is a stable measure on a loaded machine",
    )
    args = ap.parse_args()

    import torch
    from lm_eval.models.hf_steered import SteeredModel
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, LlamaConfig

    from tiny import train_tokenizer
    from tracing_bench.models.steered import TrustSteeredModel
    from tracing_bench.steering.vector import SteeringVector
    from tracing_bench.tasks import TASKS_DIR

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_steering_"))
    tok = train_tokenizer(tmp / "tok")
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 8 // 3,
        num_hidden_layers=args.layers,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = AutoModelForCausalLM.from_config(cfg).eval().to(args.device)
    layer = args.layers // 2
    vec = SteeringVector(torch.randn(args.hidden) * 0.1, layer=layer, hookpoint=f"layers.{layer}", coefficient=2.0)
    steer_path = str(vec.save(tmp / "v.pt"))

    loaded = TaskManager(include_path=str(TASKS_DIR), include_defaults=False).load([args.task])
    task = loaded["tasks"][args.task]
    task.build_all_requests(limit=args.limit, rank=0, world_size=1)
    reqs = list(task.instances)

    common = {"pretrained": model, "tokenizer": tok, "batch_size": args.batch_size}
    variants = {
        "hf": HFLM(**common),
        "trust-steered all": TrustSteeredModel(steer_path=steer_path, positions="all", **common),
        "trust-steered last": TrustSteeredModel(steer_path=steer_path, positions="last", **common),
        "steered (stock)": SteeredModel(steer_path=steer_path, **common),
    }
    for lm in variants.values():  # warm-up
        lm.loglikelihood(reqs[:8], disable_tqdm=True)
    times: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    for r in range(args.repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            t0, c0 = time.perf_counter(), time.process_time()
            variants[name].loglikelihood(reqs, disable_tqdm=True)
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
        print(
            f"repeat {r + 1}/{args.repeats}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()),
            file=sys.stderr,
            flush=True,
        )
    base = statistics.median(times["hf"])
    base_cpu = statistics.median(cpu["hf"])
    load = os.getloadavg()
    print(
        f"task {args.task}: {len(reqs)} loglikelihood requests, batch size {args.batch_size}, Llama hidden "
        f"{args.hidden} x {args.layers} blocks, device {args.device}, {args.threads} torch thread(s), {args.repeats} repeats, "
        f"load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}, {os.cpu_count()} cores"
    )
    for name in names:
        med, med_cpu = statistics.median(times[name]), statistics.median(cpu[name])
        print(
            f"{name:<20} wall median {med:7.3f} s (min {min(times[name]):.3f}, max {max(times[name]):.3f}) "
            f"overhead {100 * (med / base - 1):+5.1f}% | CPU median {med_cpu:7.3f} s "
            f"overhead {100 * (med_cpu / base_cpu - 1):+5.1f}%"
        )


if __name__ == "__main__":
    main()
