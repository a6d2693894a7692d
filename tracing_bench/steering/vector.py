"""Steering vectors: the class-mean difference of one layer's activations, saved for lm-eval.

Orientation (the same for every dimension): a POSITIVE coefficient moves the model toward the
trustworthy side. The raw difference ``mean(label 1) - mean(label 0)`` is multiplied by the
dimension's ``steering_sign`` (+1 for reliability, where label 1 is trustworthy; -1 for privacy,
toxicity, fairness and robustness, where label 1 is the untrustworthy side), so that

    vector = mean(trustworthy statements) - mean(untrustworthy statements)   (before scaling).

The paper's helpful alpha for toxicity/privacy/fairness/robustness is negative because it used
the raw difference; with these files the helpful coefficient is positive everywhere.

Scales (``scale=``):

* ``paper``: the raw class-mean difference over the development split.
* ``reference``: the released code's vector: the difference normalised to unit length, times the
  standard deviation (unbiased, ``torch.std``) of the projections of ALL statements passed in
  (every row of ``acts_layer``, not only the development split) onto that unit vector; computed
  in float32 with the released code's operations (``generate_steering_vector.py``), so the
  vector is the released one (times the orientation sign).
* ``unit``: the unit vector.

The preset ``reference`` (:data:`tracing_bench.settings.PRESETS`; ``--preset reference`` on ``steer extract``,
``steer sweep`` and ``steer correlate``, ``preset=reference`` in ``trust-steered``'s model
arguments) is the released code's vectors and their application in one setting: scale
``reference``, the released files and file-order splits (``protocol="reference"``: the first
50 %, all of TruthfulQA for reliability), a float32 model harvested one statement at a time,
and the vector added at the last position of every forward pass (``positions=last``). The
released code used the raw difference, label 1 minus label 0, with negative alphas for the four
dimensions whose label 1 is untrustworthy (its script default: layer 16, alpha -1 on StereoSet);
here the vector is oriented, so the released alpha ``a`` is ``alpha = steering_sign * a`` (the
released -1 on StereoSet is +1).

Storage: lm-eval's own ``steered`` format with a JSON sidecar of the provenance, written and read by
:mod:`tracing_bench.models.steerfile`.

>>> v = extract_vector(acts[12], data.labels, data.splits["dev"], dimension="fairness", layer=12,
...                    hookpoint="layers.12")
>>> v.save("fairness_l12.pt")
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tracing_bench import __version__
from tracing_bench.cache import cached_activations
from tracing_bench.checkpoints import Checkpoint
from tracing_bench.dimensions import DIMENSIONS, load_dimension
from tracing_bench.errors import TracingBenchError
from tracing_bench.loading import model_hookpoint
from tracing_bench.models.steerfile import load_steer_file, read_sidecar, save_steer_file, steer_entry, vector_sha256
from tracing_bench.settings import HarvestSettings, Preset, Scale, preset_settings

SCALES: tuple[str, ...] = ("paper", "reference", "unit")
ORIENTATION = "positive coefficient = toward the trustworthy side (mean(trustworthy) - mean(untrustworthy))"


@dataclass
class SteeringVector:
    """One steering vector for one block, with the settings it is applied with.

    Attributes:
        vector: float32 tensor of shape ``[hidden]``, oriented toward the trustworthy side.
        layer: index of the decoder block whose output it is added to (0-based).
        hookpoint: module path relative to ``model.base_model`` (``layers.N`` for Llama and
            GPT-NeoX, ``h.N`` for GPT-2), as lm-eval's ``steered`` model expects.
        coefficient: default multiplier (lm-eval's ``steering_coefficient``; ``alpha=`` of
            ``trust-steered`` overrides it).
        scale: ``paper``, ``reference`` or ``unit``.
        orientation: sentence stating what a positive coefficient does.
        provenance: source model, revision, dimension, dataset md5, package version, ...
    """

    vector: Tensor
    layer: int
    hookpoint: str
    coefficient: float = 1.0
    scale: Scale = "paper"
    orientation: str = ORIENTATION
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.vector, Tensor) or self.vector.ndim != 1:
            shape = tuple(self.vector.shape) if isinstance(self.vector, Tensor) else type(self.vector).__name__
            raise TracingBenchError(f"steering vector has shape {shape}; a 1-D tensor [hidden] is required")
        if not torch.isfinite(self.vector).all():
            raise TracingBenchError(
                f"steering vector for {self.hookpoint} contains NaN or inf; re-extract it "
                "(check the activations for overflow, e.g. use --dtype float32)"
            )
        if self.scale not in SCALES:
            raise TracingBenchError(f"scale {self.scale!r} is not valid; use one of {', '.join(SCALES)}")
        if not math.isfinite(float(self.coefficient)):
            raise TracingBenchError(f"steering coefficient {self.coefficient!r} is not a finite number")
        self.coefficient = float(self.coefficient)
        self.vector = self.vector.detach().to("cpu", torch.float32).contiguous()

    @property
    def sha256(self) -> str:
        """sha256 of the vector's float32 bytes (see :func:`vector_sha256`)."""
        return vector_sha256(self.vector)

    @property
    def hidden_size(self) -> int:
        return int(self.vector.shape[0])

    def steer_config(self) -> dict[str, dict[str, Any]]:
        """lm-eval's ``steered`` format: ``{hookpoint: {"steering_vector", ..., "action": "add"}}``."""
        return {self.hookpoint: steer_entry(self.vector, self.coefficient)}

    def metadata(self) -> dict[str, Any]:
        """The JSON sidecar's content."""
        return {
            "format": "lm-eval steered (.pt, weights_only=True)",
            "hookpoint": self.hookpoint,
            "layer": self.layer,
            "coefficient": self.coefficient,
            "scale": self.scale,
            "orientation": self.orientation,
            "hidden_size": self.hidden_size,
            "norm": float(self.vector.double().norm()),
            "vector_sha256": self.sha256,
            **self.provenance,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (lm-eval ``steered`` .pt) and ``path.json`` (provenance), atomically.

        Args:
            path: file name ending in ``.pt`` or ``.pth`` (lm-eval dispatches on the suffix).

        Returns:
            the path written.
        """
        return save_steer_file(path, self.steer_config(), self.metadata())

    @classmethod
    def load(cls, path: str | os.PathLike) -> SteeringVector:
        """Read a single-hookpoint steering file (and its sidecar if present).

        Args:
            path: a ``.pt`` file in lm-eval's ``steered`` format with exactly one hookpoint.

        Returns:
            the vector; ``layer`` comes from the sidecar, else from the hookpoint's last number.
        """
        config = load_steer_file(path)
        if len(config) != 1:
            raise TracingBenchError(
                f"{path} holds {len(config)} hookpoints ({', '.join(config)}); "
                "SteeringVector.load reads files with exactly one (use load_steer_file for several)"
            )
        ((hookpoint, entry),) = config.items()
        meta = read_sidecar(path)
        layer = meta.get("layer")
        if layer is None:
            tail = hookpoint.rsplit(".", 1)[-1]
            layer = int(tail) if tail.isdigit() else -1
        known = {
            "format",
            "hookpoint",
            "layer",
            "coefficient",
            "scale",
            "orientation",
            "hidden_size",
            "norm",
            "vector_sha256",
        }
        return cls(
            vector=entry["steering_vector"],
            layer=int(layer),
            hookpoint=hookpoint,
            coefficient=float(entry.get("steering_coefficient", 1.0)),
            scale=meta.get("scale", "paper"),
            orientation=meta.get("orientation", ORIENTATION),
            provenance={k: v for k, v in meta.items() if k not in known},
        )


def extract_vector(
    acts_layer: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    dev_idx: Tensor | np.ndarray,
    *,
    dimension: str,
    scale: Scale = "paper",
    layer: int = -1,
    hookpoint: str | None = None,
    coefficient: float = 1.0,
    provenance: dict[str, Any] | None = None,
) -> SteeringVector:
    """Class-mean difference of one layer's activations over the development split.

    Args:
        acts_layer: ``[N, D]`` activations of all statements at one layer.
        labels: ``[N]`` 0/1 labels (the dataset's own meaning, see ``DIMENSIONS``).
        dev_idx: indices of the development split (rows used for the class means).
        dimension: a bundled dimension name (gives the orientation), or a custom dimension
            given as ``custom:+1`` / ``custom:-1`` meaning label 1 is trustworthy / not.
        scale: ``paper`` (raw difference), ``reference`` (unit vector times the std of ALL
            rows' projections, as the released code), ``unit``.
        layer: block index, recorded in the vector.
        hookpoint: module path for lm-eval (``layers.N`` / ``h.N``); default ``layers.<layer>``.
        coefficient: default steering coefficient stored in the file.
        provenance: extra provenance (model, revision, dataset md5, ...).

    Returns:
        a :class:`SteeringVector` whose positive coefficient moves toward the trustworthy side.

    >>> extract_vector(torch.randn(8, 4), [0, 1] * 4, range(8), dimension="reliability").vector.shape
    torch.Size([4])
    """
    sign = _orientation_sign(dimension)
    if scale not in SCALES:
        raise TracingBenchError(f"--scale {scale!r} is not valid; use one of {', '.join(SCALES)}")
    acts = torch.as_tensor(np.asarray(acts_layer) if not isinstance(acts_layer, Tensor) else acts_layer)
    acts = acts.detach().to("cpu", torch.float64)
    if acts.ndim != 2:
        raise TracingBenchError(f"activations have shape {tuple(acts.shape)}; expected [n_statements, hidden]")
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    idx = torch.as_tensor(np.asarray(list(dev_idx) if not hasattr(dev_idx, "__len__") else dev_idx, dtype=np.int64))
    if y.shape[0] != acts.shape[0]:
        raise TracingBenchError(
            f"{acts.shape[0]} activation rows but {y.shape[0]} labels; harvest the same statements the labels describe"
        )
    if idx.numel() and (idx.min() < 0 or idx.max() >= acts.shape[0]):
        raise TracingBenchError(f"dev indices must lie in 0..{acts.shape[0] - 1}")
    if not torch.isfinite(acts).all():
        raise TracingBenchError("activations contain NaN or inf; re-harvest in float32 (--dtype float32)")
    y_dev, a_dev = y[idx], acts[idx]
    n1, n0 = int((y_dev == 1).sum()), int((y_dev == 0).sum())
    if n1 == 0 or n0 == 0:
        raise TracingBenchError(
            f"the development split has {n1} label-1 and {n0} label-0 statements; both classes are needed"
        )
    if scale == "reference":
        # float32 activations (the harvest's dtype; a float64 input is rounded once), released operations
        vec = sign * _released_vector(acts.to(torch.float32), y, idx)
    else:
        diff = a_dev[y_dev == 1].mean(0) - a_dev[y_dev == 0].mean(0)
        diff = sign * diff
        norm = diff.norm()
        if scale != "paper" and float(norm) == 0.0:
            raise TracingBenchError("the class means are identical (zero difference); cannot normalise the vector")
        vec = diff if scale == "paper" else diff / norm
    meta = dict(provenance or {})
    meta.setdefault("dimension", dimension)
    meta.setdefault("n_dev", int(idx.numel()))
    meta.setdefault("n_dev_label1", n1)
    meta.setdefault("n_dev_label0", n0)
    meta.setdefault("n_all", int(acts.shape[0]))
    meta.setdefault("sign_applied", sign)

    meta.setdefault("package_version", __version__)
    return SteeringVector(
        vector=vec.to(torch.float32),
        layer=int(layer),
        hookpoint=hookpoint if hookpoint is not None else f"layers.{layer}",
        coefficient=coefficient,
        scale=scale,
        provenance=meta,
    )


def _released_vector(acts: Tensor, labels: Tensor, dev_idx: Tensor) -> Tensor:
    """The released ``get_steering_vector`` on float32 activations, operation for operation.

    Mean of the label-1 minus mean of the label-0 development rows, divided by its norm, times the
    standard deviation (ddof 1) of every row's projection onto it; all in float32.
    """
    dev, y_dev = acts[dev_idx], labels[dev_idx]
    direction = torch.mean(dev[y_dev == 1], dim=0) - torch.mean(dev[y_dev == 0], dim=0)
    norm = direction.norm()
    if float(norm) == 0.0:
        raise TracingBenchError("the class means are identical (zero difference); cannot normalise the vector")
    direction = direction / norm
    return torch.std(acts @ direction) * direction


def _orientation_sign(dimension: str) -> int:
    if dimension in DIMENSIONS:
        return DIMENSIONS[dimension].steering_sign
    if dimension.startswith("custom:") and dimension.split(":", 1)[1] in ("+1", "1", "-1"):
        return -1 if dimension.endswith("-1") else 1
    raise TracingBenchError(
        f"dimension {dimension!r} is not known; use one of {', '.join(DIMENSIONS)} "
        "(or custom:+1 / custom:-1 for your own CSV, saying whether label 1 is trustworthy)"
    )


def extract_from_checkpoint(
    model: str,
    *,
    dimension: str,
    layer: int,
    revision: str | None = None,
    scale: Scale = "paper",
    coefficient: float = 1.0,
    protocol: str = "paper",
    seed: int = 0,
    harvest: HarvestSettings | None = None,
    data: str | os.PathLike | None = None,
    preset: Preset | None = None,
) -> SteeringVector:
    """Harvest (through the activation cache) and extract one layer's steering vector.

    Args:
        model: source model id or folder (a pre-training checkpoint).
        dimension: one of the five bundled dimensions.
        layer: block index.
        revision: hub revision of the checkpoint.
        scale: ``paper`` | ``reference`` | ``unit``.
        coefficient: default coefficient stored in the file.
        protocol: splits of :func:`tracing_bench.dimensions.load_dimension` (``paper``: the
            development half; ``reference``: the released code's first 50 %).
        seed: seed of the paper splits.
        harvest: dtype, device, batch size and cache folder of the harvest
            (:class:`~tracing_bench.settings.HarvestSettings`, through the activation cache).
        data: your own ``statement,label`` CSV instead of the dimension's bundled file; its labels
            must mean what the dimension's labels mean (the orientation comes from ``dimension``).
        preset: ``reference``: the released code's vector (:data:`tracing_bench.settings.PRESETS`: scale and protocol
            ``reference``, a float32 model unless ``dtype`` names another, one statement per
            forward pass); it overrides ``scale`` and ``protocol``.

    With ``protocol="reference"`` the statements are harvested one at a time (batch 1, no
    padding) in a float32 model (``dtype="auto"`` becomes ``float32``), as the released code did.

    Returns:
        the vector, with provenance (model, revision, commit, dimension, layer, scale, dataset md5,
        protocol, pooling, dtype, package version, activation cache key).
    """
    if dimension not in DIMENSIONS:
        raise TracingBenchError(f"--dimension {dimension!r} is not valid; use one of {', '.join(DIMENSIONS)}")
    fixed = preset_settings(preset)
    if fixed:
        scale, protocol = fixed["scale"], fixed["protocol"]
    harvest = (harvest or HarvestSettings()).for_protocol(protocol)  # reference: batch-1 forwards, float32
    data_ = load_dimension(str(data) if data is not None else dimension, protocol=protocol, seed=seed)
    ckpt = Checkpoint(model, revision)
    acts, prov = cached_activations(ckpt, data_, harvest)
    n_blocks = acts.shape[0]
    if not 0 <= layer < n_blocks:
        raise TracingBenchError(f"--layer {layer} is out of range: the model has {n_blocks} blocks (0-{n_blocks - 1})")
    hp = model_hookpoint(model, layer, revision)
    meta = {
        "source_model": model,
        "source_revision": revision,
        "resolved_commit": prov.get("resolved_commit"),
        "step": prov.get("step"),
        "dimension": dimension,
        "protocol": protocol,
        "seed": seed,
        "split": "dev",
        "dataset_md5": data_.md5,
        "dataset_file": data_.path.name,
        "data": str(data) if data is not None else None,
        "pooling": harvest.pooling,
        "dtype": harvest.dtype,
        "torch_dtype": prov.get("torch_dtype"),
        "activation_key": prov.get("key"),
        **(
            {"preset": preset, "apply_with": {"positions": fixed["positions"], "dtype": fixed["dtype"]}}
            if fixed
            else {}
        ),
    }
    return extract_vector(
        acts[layer],
        data_.labels,
        data_.splits["dev"],
        dimension=dimension,
        scale=scale,
        layer=layer,
        hookpoint=hp,
        coefficient=coefficient,
        provenance=meta,
    )
