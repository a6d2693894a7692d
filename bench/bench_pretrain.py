"""Does the embedded tiny model learn something trust-related? step0 vs later checkpoints.

For every dimension: last-token hidden states of every layer (``output_hidden_states=True``,
no padding at the last token, no template) on up to ``--cap`` statements of the paper
protocol's ``probe_train`` and ``test`` splits (seed 0, subsampled with seed 0), standardised
on probe_train, scikit-learn ``LogisticRegression`` per layer, accuracy on test. Prints one line
per (dimension, checkpoint); "best block" is the best decoder block (hidden_states[1:]).

Usage: python bench/bench_pretrain.py RUN_DIR step0,step200 [--cap 1000] [--threads 1]
(run ``tracing-bench pretrain --out RUN_DIR`` first). Independent of tracing_bench.harvest
and tracing_bench.probes on purpose: a cross-check with plain transformers + scikit-learn.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from transformers import AutoModelForCausalLM, AutoTokenizer

from tracing_bench.dimensions import DIMENSIONS, load_dimension


def harvest(folder: Path, texts: list[str]) -> np.ndarray:
    """(n, layers + 1, hidden) last-token states, batches sorted by length, right padding."""
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    order = np.argsort([len(t) for t in texts])
    out: list[np.ndarray | None] = [None] * len(texts)
    with torch.no_grad():
        for i in range(0, len(texts), 64):
            idx = order[i : i + 64]
            batch = tok(
                [texts[j] for j in idx],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=128,
                add_special_tokens=False,
            )
            hs = model(**batch, output_hidden_states=True).hidden_states
            last = batch["attention_mask"].sum(1) - 1
            states = torch.stack([h[torch.arange(len(idx)), last] for h in hs], 1).numpy()
            for k, j in enumerate(idx):
                out[j] = states[k]
    return np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("steps")
    ap.add_argument("--cap", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    for name in DIMENSIONS:
        data = load_dimension(name)
        tr, ytr = data.subset("probe_train")
        te, yte = data.subset("test")
        if len(tr) > args.cap:
            k = rng.choice(len(tr), args.cap, replace=False)
            tr, ytr = [tr[i] for i in k], ytr[k]
        if len(te) > args.cap:
            k = rng.choice(len(te), args.cap, replace=False)
            te, yte = [te[i] for i in k], yte[k]
        for step in args.steps.split(","):
            t = time.time()
            xtr, xte = harvest(args.run / step, tr), harvest(args.run / step, te)
            accs = []
            for layer in range(xtr.shape[1]):
                sc = StandardScaler().fit(xtr[:, layer])
                clf = LogisticRegression(max_iter=2000).fit(sc.transform(xtr[:, layer]), ytr)
                accs.append(round(float(clf.score(sc.transform(xte[:, layer]), yte)), 3))
            print(
                name,
                step,
                "acc per layer (0=emb)",
                accs,
                "best block",
                max(accs[1:]),
                f"{time.time() - t:.0f}s",
                flush=True,
            )


if __name__ == "__main__":
    main()
