"""Steering vectors from pre-training checkpoints: extract (vector.py), store and read them safely
(steerfile.py), apply in lm-eval (model.py, registered as ``trust-steered``), choose layer and
strength (sweep.py), and relate probe accuracy to steering benefit across checkpoints
(correlate.py).

Importing :mod:`tracing_bench.steering.model` registers the ``trust-steered`` lm-eval model.
"""
