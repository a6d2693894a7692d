"""A hub series with and without prefetch: wall time against the larger of total download and compute.

A local hub (``tests/hub_server.py``, on 127.0.0.1) serves ``--checkpoints`` revisions of a random
Llama (hidden ``--hidden``, ``--layers`` blocks, float32 safetensors: about 50 MB each with the
defaults). The compute time of one checkpoint is measured first (a trace of two of them from
local folders; the second's wall time), and the hub's throttle is set so that one checkpoint's
weights take about that long to download. Then the same series is traced through the real
``huggingface_hub`` client twice, each with an empty Hugging Face cache and activation cache:
``--no-prefetch`` (download, then trace, one after the other) and ``--prefetch`` (the next
checkpoint downloads while this one is traced).

Figures per run, from the run's trace.json ``timings``: wall (the whole ``trace`` call), total
download (the ``download`` stage without prefetch; the background ``download`` seconds with it)
and total compute (everything in the foreground that is neither downloading nor waiting for a
download: load, harvest, probes, MI, writing, setup, merge). Target: prefetch wall <= 1.2 x
max(download, compute); the first download overlaps nothing, so about one checkpoint's download
is the floor above max(download, compute).

    .venv/bin/python bench/bench_prefetch.py [--checkpoints 6] [--hidden 512] [--layers 4]
        [--statements 200] [--speed 1.0]

Prints a markdown table. ``--speed`` scales the download rate (2.0: downloads take half the
compute time).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from hub_server import LocalHub
from tiny import train_tokenizer
from tracing_bench.trace import trace

REPO = "bench/llama"


def build(tok: Any, out: Path, *, hidden: int, layers: int, seed: int) -> Path:
    """A random Llama of ``layers`` blocks of width ``hidden``, saved in float32 safetensors with ``tok``."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 8 // 3 // 32 * 32,
        num_hidden_layers=layers,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    AutoModelForCausalLM.from_config(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def point_hub_at(url: str, home: Path) -> None:
    """Point ``huggingface_hub`` in this process at the local hub, online, with the cache under ``home``."""
    import huggingface_hub.constants as c
    import huggingface_hub.hf_api as hf_api

    os.environ.update({"HF_ENDPOINT": url, "HF_HOME": str(home), "HF_HUB_OFFLINE": "0"})
    c.ENDPOINT = url
    c.HUGGINGFACE_CO_URL_TEMPLATE = url + "/{repo_id}/resolve/{revision}/{filename}"
    c.HF_HOME, c.HF_HUB_CACHE, c.HF_HUB_OFFLINE = str(home), str(home / "hub"), False
    hf_api.api.endpoint = url
    import transformers.utils.hub as tf_hub

    tf_hub._hf_api = None  # transformers keeps one HfApi made with the endpoint of its first use


def run(model: str, revisions: str | None, tmp: Path, name: str, **options: Any) -> tuple[float, dict[str, Any]]:
    """One trace with its own caches: (wall seconds, trace.json timings)."""
    point_hub_at(os.environ["HF_ENDPOINT"], tmp / f"hf-{name}")
    began = time.perf_counter()
    res = trace(model, revisions, out=tmp / f"out-{name}", cache_dir=tmp / f"cache-{name}", progress=False, **options)
    wall = time.perf_counter() - began
    return wall, json.loads(res.trace_json.read_text())["timings"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--statements", type=int, default=200, help="fairness statements traced per checkpoint")
    ap.add_argument("--speed", type=float, default=1.0, help="download rate / the rate that matches the compute")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_prefetch_"))
    tok = train_tokenizer(tmp / "tok")
    revs = [f"step{1000 * (i + 1)}" for i in range(args.checkpoints)]
    folders = {
        r: build(tok, tmp / "series" / r, hidden=args.hidden, layers=args.layers, seed=i) for i, r in enumerate(revs)
    }
    size = sum(p.stat().st_size for p in folders[revs[0]].iterdir())
    weights = (folders[revs[0]] / "model.safetensors").stat().st_size
    options = dict(
        dimensions="fairness", max_statements=args.statements, mi=True, mi_noise=0, controls=False, baseline="none"
    )
    options["device"] = "cpu"
    load_start = os.getloadavg()[0]
    with LocalHub() as hub:
        for r, folder in folders.items():
            hub.add_revision(REPO, r, folder)
        os.environ["HF_ENDPOINT"] = hub.url
        calib = tmp / "calibration"
        calib.mkdir()
        for r in revs[:2]:
            (calib / r).symlink_to(folders[r])
        _, timings = run(str(calib), None, tmp, "calibration", **options)
        compute_one = timings["checkpoints"][-1]["wall"]
        rate = weights / compute_one * args.speed
        hub.throttle["*.safetensors"] = rate
        rows, parts = [], []
        for name, prefetch in (("--no-prefetch", False), ("--prefetch", True)):
            wall, t = run(REPO, ",".join(revs), tmp, name.strip("-"), prefetch=prefetch, **options)
            stages = t["stages"]
            download = stages.get("download", 0.0) + t["background"].get("download", 0.0)
            compute = sum(v for k, v in stages.items() if k not in ("download", "wait"))
            rows.append((name, wall, download, compute, sum(stages.values()), stages.get("wait", 0.0)))
            parts.append(
                f"{name}: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(stages.items(), key=lambda x: -x[1]))
            )
    load_end = os.getloadavg()[0]
    print(
        f"{args.checkpoints} checkpoints of {size / 1e6:.1f} MB (weights {weights / 1e6:.1f} MB, Llama hidden "
        f"{args.hidden}, {args.layers} blocks, float32); {args.statements} fairness statements, all layers, MI; "
        f"one checkpoint's compute {compute_one:.2f} s, so the hub sends {rate / 1e6:.2f} MB/s; "
        f"torch threads {torch.get_num_threads()}, load average (1 min) {load_start:.1f} at start, {load_end:.1f} at end"
    )
    print()
    print(
        "| run | wall s | total download s | total compute s | wall / max(download, compute) | stages sum / wall | wait s |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, wall, download, compute, total, wait in rows:
        print(
            f"| {name} | {wall:.1f} | {download:.1f} | {compute:.1f} | {wall / max(download, compute):.2f} "
            f"| {total / wall:.3f} | {wait:.1f} |"
        )
    _, wall_off, d_off, c_off, _, _ = rows[0]
    wall_on = rows[1][1]
    print()
    print(
        f"prefetch wall / max(download, compute) of the --no-prefetch run: {wall_on / max(d_off, c_off):.2f}; "
        f"speed-up over --no-prefetch: {wall_off / wall_on:.2f}x (the first download overlaps nothing)"
    )
    print()
    print("stage seconds: " + "; ".join(parts))


if __name__ == "__main__":
    main()
