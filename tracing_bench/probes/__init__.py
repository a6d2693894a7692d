"""Probes of hidden states: linear (logistic, mass-mean) and mutual information (nHSIC).

One concept a module: :mod:`.inputs` (validation, scaling, metrics), :mod:`.solver` with
:mod:`.lbfgs` (the batched logistic regression), :mod:`.estimators` (scikit-learn estimators),
:mod:`.layers` (every layer of a checkpoint at once), :mod:`.kernels` with :mod:`.mi` (nHSIC),
:mod:`.reference` (the released code's protocol).

>>> from tracing_bench.probes import LinearProbe, probe_layers, estimate_mi
"""

from tracing_bench.probes.estimators import LinearProbe, MassMeanProbe
from tracing_bench.probes.inputs import PROBES, standardise
from tracing_bench.probes.layers import probe_layers
from tracing_bench.probes.mi import estimate_mi, gaussian_kernel, mi_layers, nhsic
from tracing_bench.probes.solver import LogisticFit, fit_logistic

__all__ = [
    "PROBES",
    "LinearProbe",
    "LogisticFit",
    "MassMeanProbe",
    "estimate_mi",
    "fit_logistic",
    "gaussian_kernel",
    "mi_layers",
    "nhsic",
    "probe_layers",
    "standardise",
]
