"""Hand-built tidy tables of a trace (``probes.csv``, ``mi.csv``), for the figures and the report."""

from __future__ import annotations

import csv
from pathlib import Path

PROBE_COLS = (
    "model,revision,step,dimension,layer,protocol,pooling,probe,n_train,val_acc,val_auroc,test_acc,"
    "test_auroc,dataset_md5,package_version"
).split(",")
MI_COLS = "model,revision,step,dimension,layer,sigma,m,i_xt,i_yt,dataset_md5,package_version".split(",")


def write_trace_tables(
    out: Path,
    revisions: list[tuple[str, int | None]],
    *,
    dims=("fairness", "reliability"),
    layers: int = 3,
    mi: bool = True,
) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    probes, mis = out / "probes.csv", out / "mi.csv"
    with open(probes, "w", newline="") as f, open(mis, "w", newline="") as g:
        pw, mw = csv.DictWriter(f, PROBE_COLS), csv.DictWriter(g, MI_COLS)
        pw.writeheader()
        mw.writeheader()
        for i, (rev, step) in enumerate(revisions):
            for dim in dims:
                for layer in range(layers):
                    for probe in ("logistic", "mass_mean"):
                        acc = 0.5 + 0.04 * i + 0.01 * layer
                        pw.writerow(
                            {
                                "model": "local/tiny",
                                "revision": rev,
                                "step": "" if step is None else step,
                                "dimension": dim,
                                "layer": layer,
                                "protocol": "paper",
                                "pooling": "last",
                                "probe": probe,
                                "n_train": 100,
                                "val_acc": acc,
                                "val_auroc": acc,
                                "test_acc": acc,
                                "test_auroc": acc,
                                "dataset_md5": "m" * 32,
                                "package_version": "0.1.0",
                            }
                        )
                    if mi:
                        ixt = [1.0, 2.0, 3.0, 2.5, 2.0, 1.5][i % 6] * (layer + 1)
                        mw.writerow(
                            {
                                "model": "local/tiny",
                                "revision": rev,
                                "step": "" if step is None else step,
                                "dimension": dim,
                                "layer": layer,
                                "sigma": 50,
                                "m": 100,
                                "i_xt": ixt,
                                "i_yt": 0.1 * i * (layer + 1),
                                "dataset_md5": "m" * 32,
                                "package_version": "0.1.0",
                            }
                        )
    return probes, mis


PYTHIA = [(f"step{s}", s) for s in (0, 1, 2, 4, 512, 1000)]
