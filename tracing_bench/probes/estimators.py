"""The probes as scikit-learn estimators: :class:`LinearProbe` and :class:`MassMeanProbe`.

* :class:`LinearProbe` is scikit-learn's ``LogisticRegression()`` objective (L2, ``C``,
  unpenalised intercept) as an estimator: ``LinearProbe(C=1.0).fit(X, y).score(X_val, y_val)``,
  fitted by :func:`tracing_bench.probes.solver.fit_logistic`.
* :class:`MassMeanProbe`: direction = mean(label 1) - mean(label 0) (the steering direction),
  threshold at the midpoint of the projected class means (or a fitted 1-D logistic).

Both follow scikit-learn's estimator contract (``__init__`` stores parameters, ``fit`` returns
``self``, learned state ends in ``_``), so they drop into pipelines and ``cross_val_score``.

>>> LinearProbe().fit(X_train, y_train).predict_proba(X_test)[:, 1]
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from tracing_bench.errors import TracingBenchError
from tracing_bench.probes.solver import fit_logistic, mass_mean

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn

    def _validate_data(est: Any, *args: Any, **kwargs: Any) -> Any:
        return est._validate_data(*args, **kwargs)


class _BinaryProbe(ClassifierMixin, BaseEstimator):
    """Shared parts of the binary linear estimators: labels, scores, probabilities."""

    def _check_xy(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        X, y = _validate_data(self, X, y, dtype=[np.float64, np.float32], y_numeric=False)
        check_classification_targets(y)
        classes, y_idx = np.unique(y, return_inverse=True)
        if len(classes) > 2:  # wording that scikit-learn's checks expect
            raise TracingBenchError(
                f"Only binary classification is supported: {type(self).__name__} got y with "
                f"{len(classes)} classes ({classes[:5].tolist()}); give labels of exactly two classes"
            )
        if len(classes) < 2:
            raise TracingBenchError(
                f"{type(self).__name__} got y with one class ({classes.tolist()}); "
                "a probe needs labels of exactly two classes"
            )
        self.classes_ = classes
        return X, y_idx.astype(np.float64)

    def decision_function(self, X: Any) -> np.ndarray:
        """Signed distance-like score; positive means ``classes_[1]``."""
        check_is_fitted(self)
        X = _validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return (X @ self.coef_.T.astype(X.dtype)).ravel().astype(np.float64) + self.intercept_[0]

    def predict(self, X: Any) -> np.ndarray:
        """Class labels (``classes_[1]`` where the decision function is positive)."""
        check_is_fitted(self)
        return self.classes_[(self.decision_function(X) > 0).astype(np.int64)]

    def predict_proba(self, X: Any) -> np.ndarray:
        """[n, 2] probabilities of ``classes_[0]`` and ``classes_[1]``."""
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.stack([1.0 - p, p], axis=1)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log of :meth:`predict_proba`."""
        z = self.decision_function(X)
        return np.stack([-np.logaddexp(0.0, z), -np.logaddexp(0.0, -z)], axis=1)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {"binary_only": True}


class LinearProbe(_BinaryProbe):
    """Binary logistic-regression probe with scikit-learn's objective (L2, C, lbfgs-equivalent).

    Same minimiser as ``sklearn.linear_model.LogisticRegression(C=C)``; fitted by the batched
    L-BFGS of :func:`tracing_bench.probes.solver.fit_logistic` in float64 on the CPU. Put a
    ``StandardScaler`` in front for the paper's standardisation:
    ``make_pipeline(StandardScaler(), LinearProbe())``.

    Args:
        C: inverse L2 regularisation strength.
        fit_intercept: learn an unpenalised intercept.
        tol: stop when the largest absolute gradient entry of the mean-scaled objective is at
            most ``tol`` (the meaning of scikit-learn's ``tol`` for lbfgs; same default).
        max_iter: L-BFGS iterations at most.

    Attributes:
        classes_: the two labels. coef_: [1, n_features]. intercept_: [1]. n_iter_: [1].
        n_features_in_: number of features seen in ``fit``.

    >>> LinearProbe(C=1.0).fit(X, y).score(X_val, y_val)  # doctest: +SKIP
    """

    def __init__(self, C: float = 1.0, *, fit_intercept: bool = True, tol: float = 1e-4, max_iter: int = 1000) -> None:
        self.C = C
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, X: Any, y: Any) -> LinearProbe:
        """Fit on X [n, d] and binary labels y [n]; returns self."""
        X, y01 = self._check_xy(X, y)
        x = torch.tensor(np.asarray(X, dtype=np.float64)).unsqueeze(0)
        fit = fit_logistic(
            x,
            torch.from_numpy(y01),
            C=self.C,
            fit_intercept=self.fit_intercept,
            tol=self.tol,
            max_iter=self.max_iter,
        )
        self.coef_ = fit.coef.numpy().reshape(1, -1)
        self.intercept_ = fit.intercept.numpy().reshape(1)
        self.n_iter_ = fit.n_iter.numpy().astype(np.int32)
        if not bool(fit.converged.all()):
            warnings.warn(
                f"LinearProbe did not reach tol={self.tol} in max_iter={self.max_iter} iterations; "
                "raise max_iter or standardise the features",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self


class MassMeanProbe(_BinaryProbe):
    """Mass-mean probe: direction = mean(class 1) - mean(class 0), the steering direction.

    ``threshold="midpoint"`` (default): the boundary is the hyperplane through the midpoint of
    the two class means, orthogonal to the direction; ``decision_function`` is the projection
    onto the (unnormalised) direction minus that midpoint, and ``predict_proba`` is its sigmoid:
    monotone in the score, but not calibrated. ``threshold="logistic"``: the scale and offset of
    the projection are fitted by a 1-D logistic regression (C = 1e4), so probabilities are
    calibrated and the boundary sits where the classes balance on the training data.

    Attributes:
        classes_, coef_ [1, n_features], intercept_ [1], direction_ [n_features] (the raw mean
        difference), n_features_in_.
    """

    def __init__(self, *, threshold: Literal["midpoint", "logistic"] = "midpoint") -> None:
        self.threshold = threshold

    def fit(self, X: Any, y: Any) -> MassMeanProbe:
        """Fit on X [n, d] and binary labels y [n]; returns self."""
        if self.threshold not in ("midpoint", "logistic"):
            raise TracingBenchError(f"threshold={self.threshold!r}: valid thresholds are 'midpoint' and 'logistic'")
        X, y01 = self._check_xy(X, y)
        x = torch.tensor(np.asarray(X, dtype=np.float64)).unsqueeze(0)
        w, b = mass_mean(x, torch.from_numpy(y01))
        self.direction_ = w[0].numpy().copy()
        if self.threshold == "midpoint":
            self.coef_ = w.numpy().reshape(1, -1)
            self.intercept_ = b.numpy().reshape(1)
        else:
            proj = (x[0] @ w[0]).reshape(1, -1, 1)
            scale = float(proj.std()) or 1.0
            fit = fit_logistic(proj / scale, torch.from_numpy(y01), C=1e4, tol=1e-8)
            a = float(fit.coef[0, 0]) / scale
            self.coef_ = (a * w).numpy().reshape(1, -1)
            self.intercept_ = fit.intercept.numpy().reshape(1)
        return self
