"""harvest vs the released code's batch-1 loop, and achieved FLOP/s vs this machine's matmul rate.

Baseline (the reference's way): one statement at a time (batch 1, no padding), the full model
with ``output_hidden_states=True`` (LM head included), the last token of ``hidden_states[l+1]``
per block. Ours: :func:`tracing_bench.harvest.harvest` (length-bucketed batches, early stop, no
LM head). Both in float32 on the CPU, same thread count, interleaved, best of ``--repeat``.

Models: the three tiny test models (hidden 32, 3 blocks) and a random Llama of hidden 512
(8 blocks, intermediate 1376, 8 heads), all with the tiny BPE tokenizer trained on the bundled
statements. Statements: the first ``--n`` of fairness (StereoSet; about 39 tokens each).

FLOP/s: forward FLOPs = 2 x non-embedding parameters x real tokens (blocks + final norm; the
LM head is not counted because harvest does not compute it); the rate is divided by the fp32
``torch.mm`` rate measured in the same run (square 2048 matrices, and a [batch-tokens x 512] @
[512 x 1376] shape like the workload's). Every time is given as wall clock and as this process's
CPU time (``time.process_time``): on the shared, loaded 2-core machine the CPU time is the
load-independent figure (with one thread; with two, OpenMP spin-waits count as CPU time).

    .venv/bin/python bench/bench_harvest.py [--n 128] [--batch-size 32] [--max-batch-tokens 512]
        [--threads 1] [--repeat 2] [--models llama,gpt_neox,gpt2,llama-512]

Prints a markdown table; outputs are compared (max |ours - reference| over all blocks; the last
block's reference is HF's ``hidden_states[-1]`` with the final norm, so it is compared after
applying that norm to ours).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from tiny import build_model, train_tokenizer
from tracing_bench.dimensions import load_dimension
from tracing_bench.harvest import harvest
from tracing_bench.loading import find_blocks


def matmul_rate(n: int = 2048, repeat: int = 5, shape: tuple[int, int, int] | None = None) -> tuple[float, float]:
    """Best fp32 torch.mm rate in FLOP/s for [m x k] @ [k x n] (square n by default): (wall, cpu time)."""
    m, k, nn = shape or (n, n, n)
    a, b = torch.randn(m, k), torch.randn(k, nn)
    torch.mm(a, b)
    inner = max(1, int(2e9 // (2 * m * k * nn)))  # at least ~2 GFLOP per timing
    wall = cpu = float("inf")
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        for _ in range(inner):
            torch.mm(a, b)
        wall = min(wall, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c)
    return 2 * m * k * nn * inner / wall, 2 * m * k * nn * inner / cpu


def timed(fn):
    """(result, wall seconds, process cpu seconds)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def reference_loop(model, tok, statements) -> torch.Tensor:
    """The released code's extraction: batch 1, full forward with output_hidden_states."""
    rows = []
    with torch.no_grad():
        for s in statements:
            hs = model(**tok(s, return_tensors="pt"), output_hidden_states=True).hidden_states
            rows.append(torch.stack([h[0, -1] for h in hs[1:]]))
    return torch.stack(rows, 1)


def final_norm(model):
    for path in ("model.norm", "gpt_neox.final_layer_norm", "transformer.ln_f"):
        obj = model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
            return obj
        except AttributeError:
            continue
    raise RuntimeError("no final norm")


def non_embedding_params(model) -> int:
    blocks, _ = find_blocks(model)
    return sum(p.numel() for p in blocks.parameters()) + sum(p.numel() for p in final_norm(model).parameters())


def big_llama(tok, out: Path) -> Path:
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=512,
        intermediate_size=1376,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=512,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="statements (first n of fairness)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--max-batch-tokens", type=int, default=None)
    ap.add_argument("--models", default="llama,gpt_neox,gpt2,llama-512")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    statements = load_dimension("fairness").statements[: args.n]
    tmp = Path(tempfile.mkdtemp(prefix="bench_harvest_"))
    tok = train_tokenizer(tmp / "tok")
    mm_square = matmul_rate()
    mm_shape = matmul_rate(shape=(args.batch_size * 40, 512, 1376))
    load = os.getloadavg()[0]
    print(
        f"threads {args.threads}; batch size {args.batch_size}; max batch tokens {args.max_batch_tokens}; load average (1 min) at start {load:.1f}; "
        f"fp32 torch.mm wall/cpu-time: {mm_square[0] / 1e9:.1f}/{mm_square[1] / 1e9:.1f} GFLOP/s (2048^3), "
        f"{mm_shape[0] / 1e9:.1f}/{mm_shape[1] / 1e9:.1f} GFLOP/s ({args.batch_size * 40}x512x1376)"
    )
    print()
    print(
        "| model | statements | tokens | batch-1 loop s wall (cpu) | harvest s wall (cpu) | speed-up wall (cpu) "
        "| harvest GFLOP/s wall (cpu) | % of mm 2048^3 wall (cpu) | % of mm workload shape wall (cpu) "
        "| max abs diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        if name == "llama-512":
            folder = big_llama(tok, tmp / name)
        else:
            folder = build_model(name, tok, tmp / name)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        mtok = AutoTokenizer.from_pretrained(folder)
        n_tokens = sum(len(x) for x in mtok(statements)["input_ids"])
        flops = 2 * non_embedding_params(model) * n_tokens
        ref_w = ref_c = ours_w = ours_c = float("inf")
        for _ in range(args.repeat):
            ref, w, c = timed(lambda: reference_loop(model, mtok, statements))
            ref_w, ref_c = min(ref_w, w), min(ref_c, c)
            ours, w, c = timed(
                lambda: harvest(
                    model, mtok, statements, batch_size=args.batch_size, max_batch_tokens=args.max_batch_tokens
                )
            )
            ours_w, ours_c = min(ours_w, w), min(ours_c, c)
        with torch.no_grad():
            diff = max(
                float((ours[:-1] - ref[:-1]).abs().max()), float((final_norm(model)(ours[-1]) - ref[-1]).abs().max())
            )
        rw, rc = flops / ours_w, flops / ours_c
        print(
            f"| {name} | {len(statements)} | {n_tokens} | {ref_w:.2f} ({ref_c:.2f}) | {ours_w:.2f} ({ours_c:.2f}) | "
            f"{ref_w / ours_w:.1f}x ({ref_c / ours_c:.1f}x) | {rw / 1e9:.1f} ({rc / 1e9:.1f}) | "
            f"{100 * rw / mm_square[0]:.0f}% ({100 * rc / mm_square[1]:.0f}%) | "
            f"{100 * rw / mm_shape[0]:.0f}% ({100 * rc / mm_shape[1]:.0f}%) | {diff:.1e} |"
        )
    print()
    print(f"load average (1 min) at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
