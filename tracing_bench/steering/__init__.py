"""Steering vectors from pre-training checkpoints: extract them (vector.py), choose layer and
strength (sweep.py), and relate probe accuracy to steering benefit across checkpoints
(correlate.py).

What lm-eval loads lives in :mod:`tracing_bench.models`: the steering-file format
(``models.steerfile``) and the ``trust-steered`` model that applies a vector (``models.steered``).
"""
