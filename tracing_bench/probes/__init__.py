"""Probes of hidden states: linear (logistic, mass-mean) and mutual information (nHSIC).

>>> from tracing_bench.probes import LinearProbe, probe_layers, estimate_mi
"""

from tracing_bench.probes.linear import (
    PROBES,
    LinearProbe,
    LogisticFit,
    MassMeanProbe,
    fit_logistic,
    probe_layers,
    standardise,
)
from tracing_bench.probes.mi import estimate_mi, gaussian_kernel, mi_layers, nhsic

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
