"""Synthetic-but-structured activations for the probe and MI benchmarks (no model needed).

A residual stream in miniature: statements carry 64 latent factors with a power-law spectrum
(a few directions dominate, as in real hidden states), every block adds its own update, four
"outlier" features are 20x larger than the rest, and the label is written along a direction
whose strength rises over the first blocks and then plateaus, so layer-0 probes score about
0.6 and middle layers 0.8-0.9 like the paper's Figure 2 (not separable, unlike pure noise).
"""

from __future__ import annotations

import numpy as np


def synthetic_activations(
    n_layers: int = 16, n: int = 1800, d: int = 512, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Float32 activations [n_layers, n, d] and balanced int64 labels [n]."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 2).astype(np.int64)
    k = 64
    factors = rng.standard_normal((n, k)) * (np.arange(1, k + 1) ** -0.7)
    # the label also leaks weakly into the latent factors (a realistic confound)
    factors[:, 0] += 0.3 * (2 * y - 1)
    u = rng.standard_normal(d)
    u /= np.linalg.norm(u)
    h = factors @ rng.standard_normal((k, d)) + 0.8 * rng.standard_normal((n, d))
    out = np.empty((n_layers, n, d), dtype=np.float32)
    for layer in range(n_layers):
        frac = layer / max(1, n_layers - 1)
        # half the class separation in units of the noise along u (d' / 2)
        strength = 0.3 + 0.9 * (1 - np.exp(-4 * frac)) * (1 - 0.25 * frac**2)
        update = factors @ (0.3 * rng.standard_normal((k, d))) + 0.5 * rng.standard_normal((n, d))
        h = h + update
        layer_acts = h + strength * np.std(h @ u) * np.outer(2 * y - 1, u)
        layer_acts[:, :4] *= 20.0
        out[layer] = layer_acts
    return out, y
