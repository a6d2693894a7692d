"""The ``reference`` protocol: the released code's probes and nHSIC, operation for operation.

``--protocol reference`` exists to give the numbers the authors' released scripts
(``train_probes.py`` with ``mi_estimators.py``) give on the same activations, not better ones.
This module is a separate code path for that; the default ``paper`` protocol
(:func:`tracing_bench.probes.layers.probe_layers`, :func:`tracing_bench.probes.mi.estimate_mi`)
uses probe-train statistics, a converged solver and float64. What the released code does, and
what is done here (docs/METHOD.md, "The reference protocol"):

* **Scaling**, per layer and over the whole file (all statements, before the split), in float32:
  ``a = acts - mean(acts, 0)``, then ``a / torch.std(a, 0)`` (ddof 1, of the *centred* values).
  A feature that is constant over the file has standard deviation exactly 0; the released code
  then divides by zero (0/0 = NaN, or inf where the float32 mean left a rounding residue) and
  scikit-learn refuses the features (``ValueError: Input X contains NaN`` / ``infinity``), so it
  cannot run at all. Here such a feature is set to 0 (no effect on the probe or the kernel) and
  counted (``constant_features``). Every other value is the released code's, bit for bit.
* **Split**: train on the first 80 % of the file, test on the last 20 % (``splits["probe_train"]``
  and ``splits["probe_val"]`` of ``load_dimension(..., protocol="reference")``).
* **Logistic probe**: scikit-learn's ``LogisticRegression()`` itself with its defaults (L2,
  ``C=1``, lbfgs, ``max_iter=100``), fitted on the float32 scaled activations and float32 labels.
  On real activations it usually stops before converging, as it did for the released code
  (which silenced the warnings); the warnings are counted per layer (``converged``,
  ``n_iter``), never printed. The released code reports test accuracy only; AUROC is added
  from ``decision_function``.
* **Mass-mean probe** (not in the released code): on the same scaled activations, for
  comparison.
* **nHSIC** in float32 with the released formula's operations, in its order: squared
  distances ``r - 2 A A^T + r^T`` (absolute value), ``K = exp(-D / (2 sigma^2 d))``,
  ``Kc = K H`` with ``H = I - 11^T / m``, ``R = Kc (Kc + eps m I)^-1`` by an explicit inverse,
  ``nHSIC(A, B) = sum(R_A * R_B^T)``; X = block 0, Y = the labels (float32), T = block l, all
  on the first 80 %. The X and Y sides do not depend on the layer and are computed once (the
  released code recomputes them, with the same result). On the CPU like the released code
  (it converts numpy arrays with ``torch.from_numpy``).

>>> rows = reference_probe_layers(acts, data.labels, data.splits)        # acts [layers, n, hidden]
>>> mi = reference_mi_layers(acts, data.labels, data.splits, layers=[0, 4, 8])
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from torch import Tensor

from tracing_bench.errors import TracingBenchError
from tracing_bench.probes.estimators import MassMeanProbe
from tracing_bench.probes.inputs import check_probes, layer_names, score_details, subsample_rows

__all__ = [
    "nhsic_float32",
    "reference_mi_layers",
    "reference_probe_layers",
    "released_scaling",
]

EPS = 1e-5


def _layer_tensor(acts: Any, k: int) -> Tensor:
    """Layer ``k`` of ``acts`` as a contiguous float32 CPU tensor [n, d] (as the released code loads it)."""
    a = acts[k]
    t = a.detach() if isinstance(a, Tensor) else torch.from_numpy(np.asarray(a))
    return t.to("cpu", torch.float32).contiguous()


def released_scaling(layer_acts: Tensor) -> tuple[Tensor, int]:
    """Whole-file centring and scaling of one layer, exactly as the released ``load_acts``.

    Args:
        layer_acts: [n, d] activations of every statement of the file (float32, file order).

    Returns:
        ``(scaled, n_constant)``: the float32 [n, d] result of ``a = x - mean(x, 0)`` then
        ``a / torch.std(a, 0)``, with features of standard deviation 0 set to 0 (the released
        code's NaN or inf there); and how many such features there were.
    """
    x = layer_acts.to(torch.float32)
    centred = x - torch.mean(x, dim=0)
    std = torch.std(centred, dim=0)
    scaled = centred / std
    constant = std == 0
    n_constant = int(constant.sum())
    if n_constant:
        scaled[:, constant] = 0.0
    return scaled, n_constant


def _check_inputs(acts: Any, labels: Any, splits: dict[str, Any], needed: tuple[str, ...]) -> tuple[int, np.ndarray]:
    shape = tuple(acts.shape) if hasattr(acts, "shape") else None
    if shape is None or len(shape) != 3 or min(shape) == 0:
        raise TracingBenchError(
            f"acts has shape {shape}; expected [layers, statements, hidden] with at least one of each"
        )
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != shape[1]:
        raise TracingBenchError(
            f"labels has shape {y.shape} but acts has {shape[1]} statements; give one 0/1 label per statement"
        )
    if y.dtype == object or not np.isin(y, (0, 1)).all():
        raise TracingBenchError("labels must be 0 or 1 (the probes are binary)")
    for name in needed:
        if not isinstance(splits, dict) or name not in splits:
            raise TracingBenchError(
                f"splits has no {name!r}; pass DimensionData.splits of load_dimension(..., protocol='reference')"
            )
        idx = np.asarray(splits[name])
        if idx.size == 0 or idx.min() < 0 or idx.max() >= shape[1]:
            raise TracingBenchError(
                f"split {name!r} is empty or indexes outside 0..{shape[1] - 1}; pass the splits of these statements"
            )
    if len(np.unique(y[np.asarray(splits[needed[0]])])) < 2:
        raise TracingBenchError(
            f"the {needed[0]} split has only one label; a probe needs both classes (check the labels and the splits)"
        )
    return shape[0], y.astype(np.int64)


def _check_finite(x: Tensor, layer: int) -> None:
    if not bool(torch.isfinite(x).all()):
        raise TracingBenchError(
            f"acts has NaN or infinite values in layer {layer}; re-harvest in float32 (bfloat16/float16 can "
            "overflow) or drop that layer"
        )


def _auroc(scores: np.ndarray, y: np.ndarray) -> float:
    # lazy: scikit-learn loads on first use, so importing probes.reference stays light
    from sklearn.metrics import roc_auc_score

    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, scores))


def reference_probe_layers(
    acts: Any,
    labels: Any,
    splits: dict[str, Any],
    *,
    probes: tuple[str, ...] = ("logistic", "mass_mean"),
    layers: list[int] | None = None,
    details: bool = False,
) -> list[dict[str, Any]]:
    """The released ``train_probes.py`` on every layer: whole-file scaling, ``LogisticRegression()``.

    Args:
        acts: [layers, statements, hidden] activations of the whole file, in file order.
        labels: [statements] 0/1 labels.
        splits: ``load_dimension(..., protocol="reference").splits`` (``probe_train`` = first 80 %,
            ``probe_val`` = last 20 %).
        probes: any of ``logistic`` (the released probe), ``mass_mean``.
        layers: layer numbers written in the rows (default ``0 .. layers - 1``).
        details: also return the intervals and the per-statement correctness on the last 20 %
            (the keys :func:`tracing_bench.probes.layers.probe_layers` adds with ``details``).

    Returns:
        one dict per (layer, probe), layer-major, with the columns of
        :func:`tracing_bench.probes.layers.probe_layers` (``val_*`` and ``test_*`` are both the
        last 20 %, the released code's only evaluation split) plus, for ``logistic``, ``n_iter``,
        ``converged`` and ``constant_features``.

    Raises:
        TracingBenchError: mismatched shapes, labels other than 0/1, a one-class training split,
            NaN activations, an unknown probe.
    """
    # lazy: scikit-learn loads on first use, so importing probes.reference stays light
    from sklearn.linear_model import LogisticRegression

    probes = check_probes(probes)
    n_layers, y = _check_inputs(acts, labels, splits, ("probe_train", "probe_val"))
    names = layer_names(layers, n_layers)
    tr, te = np.asarray(splits["probe_train"]), np.asarray(splits["probe_val"])
    y32 = y.astype(np.float32)  # the released code's targets are float32
    rows: list[dict[str, Any]] = []
    for k, name in enumerate(names):
        x = _layer_tensor(acts, k)
        _check_finite(x, name)
        scaled, n_constant = released_scaling(x)
        x_tr, x_te = scaled[tr].numpy(), scaled[te].numpy()
        for probe in probes:
            extra: dict[str, Any] = {}
            if probe == "logistic":
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", ConvergenceWarning)
                    clf = LogisticRegression().fit(x_tr, y32[tr])
                unconverged = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
                for w in caught:  # anything else is not ours to swallow
                    if not issubclass(w.category, ConvergenceWarning):
                        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
                pred = clf.predict(x_te)
                score = clf.decision_function(x_te)
                acc = float(np.mean(pred == y32[te]))
                extra = {
                    "n_iter": int(np.max(clf.n_iter_)),
                    "converged": not unconverged,
                    "constant_features": n_constant,
                }
            else:
                est = MassMeanProbe().fit(x_tr.astype(np.float64), y[tr])
                score = est.decision_function(x_te.astype(np.float64))
                acc = float(np.mean((score > 0).astype(np.int64) == y[te]))
            auc = _auroc(np.asarray(score, dtype=np.float64), y[te])
            if details:  # LogisticRegression predicts class 1 exactly where its decision function is > 0
                extra.update(score_details(torch.as_tensor(np.asarray(score, dtype=np.float64))[None], y[te])[0])
            rows.append(
                {
                    "layer": name,
                    "probe": probe,
                    "n_train": int(len(tr)),
                    "val_acc": acc,
                    "val_auroc": auc,
                    "test_acc": acc,
                    "test_auroc": auc,
                    **extra,
                }
            )
    return rows


# ------------------------------------------------------------------------------------ nHSIC
def _released_r(a: Tensor, sigma: float, eps: float = EPS) -> Tensor:
    """R = Kc (Kc + eps m I)^-1 of one input [m, d], float32, in the released formula's order."""
    m, d = a.shape
    sq = torch.sum(a * a, 1).view(-1, 1)
    gram = torch.mm(a, a.t())
    dist = torch.abs(sq.expand_as(gram) - 2 * gram + sq.t().expand_as(gram))
    kernel = torch.exp(-dist / (2.0 * sigma * sigma * d))
    centring = torch.eye(m) - (1.0 / m) * torch.ones([m, m])
    kc = torch.mm(kernel, centring)
    return kc.mm(torch.inverse(kc + eps * m * torch.eye(m)))


def nhsic_float32(a: Any, b: Any, *, sigma: float = 50.0, eps: float = EPS) -> float:
    """nHSIC(a, b) = sum(R_a * R_b^T), computed like the released code (float32, explicit inverses).

    Args:
        a: [m] or [m, d] array or tensor (cast to float32 on the CPU).
        b: [m] or [m, d'] array or tensor.
        sigma: kernel width (the squared distance is divided by ``2 sigma^2 d``).
        eps: ridge, ``(Kc + eps m I)^-1``.

    Returns:
        the value as a Python float (the float32 result, widened).
    """
    ta, tb = (_as_2d_float32(v, n) for v, n in ((a, "a"), (b, "b")))
    if ta.shape[0] != tb.shape[0] or ta.shape[0] < 2:
        raise TracingBenchError(
            f"a has {ta.shape[0]} rows and b {tb.shape[0]}; both need the same number of rows (at least 2)"
        )
    return float(torch.sum(torch.mul(_released_r(ta, sigma, eps), _released_r(tb, sigma, eps).t())))


def _as_2d_float32(v: Any, name: str) -> Tensor:
    t = v.detach() if isinstance(v, Tensor) else torch.from_numpy(np.ascontiguousarray(np.asarray(v, dtype=np.float32)))
    t = t.to("cpu", torch.float32)
    if t.ndim == 1:
        t = t.reshape(-1, 1)
    if t.ndim != 2:
        raise TracingBenchError(f"{name} has shape {tuple(t.shape)}; expected [m] or [m, d]")
    return t


def reference_mi_layers(
    acts: Any,
    labels: Any,
    splits: dict[str, Any],
    *,
    split: str = "probe_train",
    x_layer: int = 0,
    layers: list[int] | None = None,
    sigma: float = 50.0,
    eps: float = EPS,
    subsample: int | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """I(X;T), I(Y;T) for every layer as the released ``train_probes.py`` computes them.

    X = block ``x_layer`` (the released code: block 0), Y = the labels, T = each layer, all on
    ``split`` (the first 80 %), after :func:`released_scaling` over the whole file; nHSIC in
    float32 (see the module docstring).

    Args:
        acts: [layers, statements, hidden] (``acts[x_layer]`` is X).
        labels: [statements] 0/1 labels.
        splits: ``load_dimension(..., protocol="reference").splits``.
        split: the rows used (``probe_train``, as the released code).
        x_layer: index into ``acts`` of X.
        layers: layer numbers written in the rows (default ``range(layers)``).
        sigma, eps: kernel width and ridge (the released code: 50 and 1e-5).
        subsample: use this many of the rows, drawn without replacement with ``seed`` (the same
            draw as :func:`tracing_bench.probes.mi.estimate_mi`); ``None``: all (the released code).
        seed: seed of the subsample.

    Returns:
        one dict per layer: ``layer``, ``sigma``, ``m``, ``i_xt``, ``i_yt``, ``constant_features``.
    """
    n_layers, y = _check_inputs(acts, labels, splits, (split,))
    names = layer_names(layers, n_layers)
    if not 0 <= x_layer < n_layers:
        raise TracingBenchError(f"x_layer={x_layer} is out of range: acts has {n_layers} layers (0-{n_layers - 1})")
    if not (np.isfinite(sigma) and sigma > 0 and np.isfinite(eps) and eps > 0):
        raise TracingBenchError(f"sigma={sigma!r}, eps={eps!r}: both must be positive numbers (released: 50, 1e-5)")
    rows_idx = np.asarray(splits[split])
    pick = subsample_rows(len(rows_idx), subsample, seed)  # the same draw as estimate_mi's
    if pick is not None:
        rows_idx = rows_idx[pick]
    m = len(rows_idx)
    if len(np.unique(y[rows_idx])) < 2:
        raise TracingBenchError(f"the {m} statements used for MI have one label; I(Y;T) needs both")

    def layer_t(k: int) -> tuple[Tensor, int]:
        x = _layer_tensor(acts, k)
        _check_finite(x, names[k])
        scaled, n_constant = released_scaling(x)
        return scaled[rows_idx].contiguous(), n_constant

    x_t, x_constant = layer_t(x_layer)
    r_x = _released_r(x_t, sigma, eps)
    r_y = _released_r(torch.from_numpy(y[rows_idx].astype(np.float32)).reshape(-1, 1), sigma, eps)
    out: list[dict[str, Any]] = []
    for k, name in enumerate(names):
        t, n_constant = (x_t, x_constant) if k == x_layer else layer_t(k)
        r_t = _released_r(t, sigma, eps).t()
        out.append(
            {
                "layer": name,
                "sigma": float(sigma),
                "m": m,
                "i_xt": float(torch.sum(torch.mul(r_x, r_t))),
                "i_yt": float(torch.sum(torch.mul(r_y, r_t))),
                "constant_features": n_constant,
            }
        )
    return out
