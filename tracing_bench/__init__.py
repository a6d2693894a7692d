"""tracing-bench: trace how a language model's trustworthiness forms during pre-training.

The package implements the three instruments of "Towards Tracing Trustworthiness Dynamics"
(arXiv 2402.19465) over any series of Hugging Face checkpoints: linear probes, steering vectors
and mutual-information probes, scored through lm-evaluation-harness tasks (``trust_*``).
"""

__version__ = "0.2.0"

from tracing_bench.errors import TracingBenchError

__all__ = ["TracingBenchError", "__version__"]
