"""Everything lm-eval loads from tracing-bench: its models and the steering files they read.

* :mod:`tracing_bench.models.hf`: ``trust-hf``, lm-eval's ``hf`` model made data-parallel under
  ``accelerate launch`` on CPU as on GPU (:class:`~tracing_bench.models.hf.DataParallelMixin`);
* :mod:`tracing_bench.models.steered`: ``trust-steered``, lm-eval's ``steered`` model with its
  file read safely, ``alpha=`` and ``positions=``; and ``safe_stock_steered()`` for the stock one;
* :mod:`tracing_bench.models.steerfile`: lm-eval's ``steered`` .pt format, its only reader
  (``weights_only=True``, validated) and its writer, with the JSON sidecar.

lm-eval finds a model by name once its module is imported (``register_model``): importing
:mod:`tracing_bench.models.hf` registers ``trust-hf`` and :mod:`tracing_bench.models.steered`
registers ``trust-steered`` (``tracing-bench eval`` imports both). This package's ``__init__``
imports nothing, so reading a steering file does not load lm-eval.
"""
