"""Probe every layer of one checkpoint at once: the rows of probes.csv this package computes.

:func:`probe_layers` standardises each layer's features with the probe-train statistics, fits the
logistic probe of every layer in one batched solve (:func:`tracing_bench.probes.solver.fit_logistic`)
and the mass-mean probe in two products, and scores the validation and test splits, with the
intervals and per-statement correctness findings.json needs (``details=True``). The ``reference``
protocol is handed to :mod:`tracing_bench.probes.reference`.

>>> rows = probe_layers(acts, data.labels, data.splits)           # acts: [layers, statements, hidden]
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from torch import Tensor

from tracing_bench.dimensions import Protocol
from tracing_bench.errors import TracingBenchError
from tracing_bench.probes.inputs import (
    check_finite,
    check_probes,
    layer_names,
    metrics,
    one_thread_per_call,
    prepare_inputs,
    score_details,
)
from tracing_bench.probes.reference import reference_probe_layers
from tracing_bench.probes.solver import batched_mv, cpu_loop, fit_logistic, mass_mean

# keep about this many bytes of activations per batched chunk of layers
_CHUNK_BYTES = 1 << 30


def probe_layers(
    acts: Any,
    labels: Any,
    splits: dict[str, Any],
    *,
    protocol: Protocol = "paper",
    probes: tuple[str, ...] = ("logistic", "mass_mean"),
    C: float = 1.0,
    layers: list[int] | None = None,
    tol: float = 1e-4,
    max_iter: int = 1000,
    details: bool = False,
) -> list[dict[str, Any]]:
    """Probe every layer of one checkpoint at once.

    ``paper`` protocol: standardise each feature with the probe-train statistics only (ddof 0),
    train on ``probe_train``, report ``probe_val`` (val_*) and ``test`` (test_*).
    ``reference`` protocol (the released code's numbers): handed to
    :func:`tracing_bench.probes.reference.reference_probe_layers`, a separate path: whole-file
    float32 scaling (mean, then ``torch.std`` of the centred values), scikit-learn's
    ``LogisticRegression()`` with its defaults on ``splits["probe_train"]`` (the first 80 %),
    ``splits["probe_val"]`` (the last 20 %) reported as both val and test; ``C``, ``tol`` and
    ``max_iter`` do not apply there.

    Args:
        acts: [layers, statements, hidden] activations (numpy or torch; CUDA tensors stay on the
            GPU; float64 stays float64, other dtypes are computed in float32).
        labels: [statements] 0/1 labels aligned with ``acts[:, i]``.
        splits: ``DimensionData.splits`` (index arrays).
        protocol: ``paper`` or ``reference``.
        probes: any of ``logistic``, ``mass_mean``.
        C: inverse L2 strength of the logistic probe (scikit-learn's ``C``).
        layers: layer numbers to write in the rows (default ``0 .. layers - 1``).
        tol, max_iter: stopping rule of the batched solver (see :func:`fit_logistic`).
        details: also return, per row, ``n_test``, the 95 % intervals ``test_acc_lo``,
            ``test_acc_hi`` (Wilson) and ``test_auroc_lo``, ``test_auroc_hi`` (DeLong), and
            ``test_correct``: a [n_test] boolean array, statement ``splits[test][i]`` classified
            right (:mod:`tracing_bench.stats`).

    Returns:
        one dict per (layer, probe), layer-major: ``layer``, ``probe``, ``n_train``,
        ``val_acc``, ``val_auroc``, ``test_acc``, ``test_auroc`` (AUROC is NaN for a one-class
        split), plus the ``details`` keys when asked.

    Raises:
        TracingBenchError: mismatched shapes, labels other than 0/1, a one-class training split,
            NaN activations, an unknown protocol or probe.
    """
    probes = check_probes(probes)
    if protocol == "reference":  # the released recipe, operation for operation (probes/reference.py)
        return reference_probe_layers(acts, labels, splits, probes=probes, layers=layers, details=details)
    eval_names = ("probe_val", "test")  # the paper protocol (prepare_inputs refuses any other here)
    t, y, idx = prepare_inputs(acts, labels, splits, protocol, ("probe_train", *eval_names))
    tr = idx["probe_train"]
    if len(np.unique(y[tr])) < 2:
        raise TracingBenchError(
            f"the probe_train split ({len(tr)} statements) has only label {int(y[tr][0])}; "
            "a probe needs both classes (check the labels and the splits)"
        )
    n_layers, _, hidden = t.shape
    names = layer_names(layers, n_layers)
    dev = t.device
    per_layer = t.shape[1] * hidden * t.element_size() * 2
    chunk = max(1, min(n_layers, _CHUNK_BYTES // max(1, per_layer)))
    results: dict[str, dict[str, np.ndarray]] = {p: {} for p in probes}
    extra: dict[tuple[str, int], dict[str, Any]] = {}
    y_tr = torch.as_tensor(y[tr], device=dev)
    not_converged: list[int] = []
    tr_t = torch.as_tensor(tr, device=dev)
    # the statements scored: the union of the evaluated splits, gathered once unless it is most
    # of the file (then every statement is scored and the splits are read off the scores)
    eval_rows = np.unique(np.concatenate([idx[name] for name in eval_names]))
    gather = 2 * len(eval_rows) <= t.shape[1]
    eval_pos = {
        name: torch.as_tensor(np.searchsorted(eval_rows, idx[name]) if gather else idx[name], device=dev)
        for name in eval_names
    }
    eval_t = torch.as_tensor(eval_rows, device=dev)
    # on the CPU each library call on one thread: these products are too small for more
    with one_thread_per_call() if cpu_loop(t) else nullcontext():
        for lo in range(0, n_layers, chunk):
            part = t[lo : lo + chunk]
            x_tr = part.index_select(1, tr_t)  # a copy, standardised in place
            mean, std = _standardise_(x_tr)  # probe-train statistics, ddof 0 (StandardScaler)
            check_finite(torch.cat([mean, std], 1), lo)  # NaN/inf in the fitted rows propagate here
            scored = part.index_select(1, eval_t) if gather else part  # raw activations
            for probe in probes:
                if probe == "logistic":
                    fit = fit_logistic(x_tr, y_tr, C=C, tol=tol, max_iter=max_iter)
                    w, b = fit.coef, fit.intercept
                    not_converged += [names[lo + i] for i in (~fit.converged).nonzero().flatten().tolist()]
                else:
                    w, b = mass_mean(x_tr, y_tr)
                # the standardisation folded into the weights: ((x - mean) / std) . w + b
                w_raw = w / std.squeeze(1).to(torch.float64)
                b_raw = b - (mean.squeeze(1).to(torch.float64) * w_raw).sum(-1)
                all_scores = batched_mv(scored, w_raw).to(torch.float64) + b_raw.unsqueeze(-1)
                for name in eval_names:
                    scores = all_scores.index_select(1, eval_pos[name])
                    check_finite(scores, lo)  # NaN/inf in evaluated rows propagate here
                    acc, auc = metrics(scores, y[idx[name]])
                    store = results[probe].setdefault(name, np.empty((2, n_layers)))
                    store[0, lo : lo + len(acc)] = acc
                    store[1, lo : lo + len(acc)] = auc
                    if details and name == "test":
                        for i, row in enumerate(score_details(scores, y[idx[name]])):
                            extra[(probe, lo + i)] = row
    if not_converged:
        warnings.warn(
            f"the logistic probe did not reach tol={tol} in {max_iter} iterations for layers "
            f"{not_converged[:8]}; raise max_iter",
            ConvergenceWarning,
            stacklevel=2,
        )
    rows: list[dict[str, Any]] = []
    for i, layer_name in enumerate(names):
        for probe in probes:
            val, test = results[probe]["probe_val"], results[probe]["test"]
            rows.append(
                {
                    "layer": layer_name,
                    "probe": probe,
                    "n_train": int(len(tr)),
                    "val_acc": float(val[0, i]),
                    "val_auroc": float(val[1, i]),
                    "test_acc": float(test[0, i]),
                    "test_auroc": float(test[1, i]),
                    **extra.get((probe, i), {}),
                }
            )
    return rows


def _standardise_(x: Tensor) -> tuple[Tensor, Tensor]:
    """Centre and scale every feature of x [L, n, d] in place (population std, ddof 0).

    Returns:
        (mean, std) as [L, 1, d]; a constant feature keeps std 1 (only centred). Two passes
        and no [L, n, d] temporary; on the CPU the sums of squares go through numpy's einsum,
        faster there than ``torch.std`` on the middle axis.
    """
    mean = x.mean(1, keepdim=True)
    x.sub_(mean)
    if cpu_loop(x):
        ssq = torch.from_numpy(np.stack([np.einsum("ij,ij->j", a, a) for a in x.numpy()]))
    else:
        ssq = torch.stack([(a * a).sum(0) for a in x.unbind(0)])
    std = (ssq.unsqueeze(1) / x.shape[1]).sqrt_().to(x.dtype)
    std = torch.where(std > 0, std, torch.ones_like(std))
    x.div_(std)
    return mean, std
