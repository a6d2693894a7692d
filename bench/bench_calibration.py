"""Does contextual calibration add signal beyond the threshold-free metric?

Contextual calibration (Zhao et al. 2021, "Calibrate Before Use") estimates a prompt's answer
prior from content-free inputs ("N/A", "", "[MASK]") put through the task's template, and
decides with the log-odds minus that prior. Per 0/1 task (reliability, privacy, toxicity) and
model folder, this script scores the test documents with lm-eval's own ``HFLM.loglikelihood``
and prints, each with its stderr (tracing_bench.tasks.metrics):

* ``mcc``: Matthews correlation of the raw decision (log-odds > 0), the tasks' headline;
* ``mcc_cal``: of the calibrated decision (log-odds > content-free log-odds);
* ``mcc_best``: of the best threshold chosen on the same documents (optimistic: an upper bound
  for any threshold, calibrated or not);
* ``auroc``: of the log-odds (threshold-free; a constant shift such as calibration leaves it
  unchanged, so calibration can move the decision metric towards ``mcc_best`` but cannot add
  ranking signal beyond AUROC);
* ``top``: share of the most frequent raw and calibrated answers.

    .venv/bin/python bench/bench_calibration.py --model demo-out/checkpoints/step200 --limit 200
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CONTENT_FREE = ("N/A", "", "[MASK]")
TASKS = ("trust_reliability", "trust_privacy", "trust_toxicity")


def log_odds(lm, task, docs) -> list[float]:
    from lm_eval.api.instance import Instance

    reqs = []
    for i, doc in enumerate(docs):
        ctx = task.doc_to_text(doc)
        for choice in ("0", "1"):
            reqs.append(Instance(request_type="loglikelihood", doc=doc, arguments=(ctx, f" {choice}"), idx=i))
    lls = [float(r[0]) for r in lm.loglikelihood(reqs, disable_tqdm=True)]
    return [lls[k + 1] - lls[k] for k in range(0, len(lls), 2)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="model folder (repeat for several)")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()

    import numpy as np
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from tracing_bench.tasks import TASKS_DIR
    from tracing_bench.tasks.metrics import auroc, mcc, stderr_of, top_answer_share

    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    tasks = manager.load_task_or_group(list(TASKS))

    def fmt(fn, items) -> str:
        return f"{fn(items):+.3f}±{stderr_of(fn)(items):.3f}"

    print(
        f"{'model':<28} {'task':<18} {'n':>4} {'prior':>7} {'mcc':>13} {'mcc_cal':>13} {'mcc_best':>7} "
        f"{'auroc':>12} {'top raw/cal':>12}"
    )
    for folder in args.model:
        lm = HFLM(pretrained=folder, batch_size=args.batch_size, device="cpu", dtype="float32")
        for name in TASKS:
            task = tasks[name]
            docs = list(task.test_docs())[: args.limit]
            lo = np.array(log_odds(lm, task, docs))
            gold = np.array([int(d["label"]) for d in docs])
            prior = float(np.mean(log_odds(lm, task, [{**docs[0], "statement": s} for s in CONTENT_FREE])))
            raw = (lo > 0).astype(int)
            cal = (lo > prior).astype(int)
            best = max(mcc(list(zip(gold, (lo > t).astype(int), strict=True))) for t in np.unique(lo))
            print(
                f"{Path(folder).name[-28:]:<28} {name:<18} {len(docs):>4} {prior:>+7.2f} "
                f"{fmt(mcc, list(zip(gold, raw, strict=True))):>13} {fmt(mcc, list(zip(gold, cal, strict=True))):>13} "
                f"{best:>+7.3f} {fmt(auroc, list(zip(lo, gold, strict=True))):>12} "
                f"{top_answer_share(list(raw)):>5.2f}/{top_answer_share(list(cal)):.2f}"
            )
            sys.stdout.flush()


if __name__ == "__main__":
    main()
