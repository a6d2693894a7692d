"""Steering vectors: class-mean difference, scales, orientation, lm-eval file format, bad files."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tracing_bench.dimensions import DIMENSIONS
from tracing_bench.errors import TracingBenchError
from tracing_bench.models.steerfile import load_steer_file, vector_sha256
from tracing_bench.steering.vector import SteeringVector, extract_vector

# Four statements in two dimensions, labels 1,1,0,0; dev = rows 0..3 (all).
ACTS = torch.tensor([[2.0, 0.0], [4.0, 2.0], [0.0, 0.0], [2.0, 2.0]])
LABELS = [1, 1, 0, 0]


def test_paper_scale_is_raw_difference_oriented_toward_trustworthy():
    # mean(label1) = (3, 1), mean(label0) = (1, 1): raw difference (2, 0).
    rel = extract_vector(ACTS, LABELS, [0, 1, 2, 3], dimension="reliability", scale="paper")
    assert torch.equal(rel.vector, torch.tensor([2.0, 0.0]))  # label 1 trustworthy: sign +1
    for name in ("privacy", "toxicity", "fairness", "robustness"):
        v = extract_vector(ACTS, LABELS, [0, 1, 2, 3], dimension=name, scale="paper")
        assert DIMENSIONS[name].steering_sign == -1
        assert torch.equal(v.vector, torch.tensor([-2.0, 0.0]))  # toward label 0 = trustworthy


def test_reference_scale_matches_hand_computed_case():
    # docs/METHOD.md: unit difference x std of ALL statements' projections onto it.
    # unit = (1, 0); projections of all four rows = 2, 4, 0, 2; mean 2;
    # unbiased std = sqrt((0 + 4 + 4 + 0) / 3) = sqrt(8/3).
    v = extract_vector(ACTS, LABELS, [0, 1, 2, 3], dimension="reliability", scale="reference")
    expected = math.sqrt(8.0 / 3.0)
    assert v.vector[0].item() == pytest.approx(expected, rel=1e-6)
    assert v.vector[1].item() == 0.0
    # the std uses every row given, not only the dev rows: dev = rows 0 and 2 gives the same
    # direction (label1 row 0 minus label0 row 2 = (2, 0)) and the same all-rows std.
    v2 = extract_vector(ACTS, LABELS, [0, 2], dimension="reliability", scale="reference")
    assert v2.vector[0].item() == pytest.approx(expected, rel=1e-6)
    u = extract_vector(ACTS, LABELS, [0, 1, 2, 3], dimension="fairness", scale="unit")
    assert torch.allclose(u.vector, torch.tensor([-1.0, 0.0]))


def test_reference_scale_matches_released_formula_on_random_data():
    g = torch.Generator().manual_seed(0)
    acts = torch.randn(40, 8, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1] * 20)
    dev = torch.arange(20)
    d = acts[dev][labels[dev] == 1].mean(0) - acts[dev][labels[dev] == 0].mean(0)
    d = d / d.norm()
    ref = torch.std(acts @ d) * d  # the released code's generate_steering_vector, float64
    v = extract_vector(acts, labels.numpy(), dev.numpy(), dimension="reliability", scale="reference")
    assert torch.allclose(v.vector.double(), ref, atol=1e-6)


def test_save_load_roundtrip_in_lm_eval_format(tmp_path):
    v = extract_vector(
        ACTS,
        LABELS,
        [0, 1, 2, 3],
        dimension="fairness",
        layer=5,
        hookpoint="h.5",
        coefficient=-2.5,
        provenance={"source_model": "m", "dataset_md5": "abc"},
    )
    path = v.save(tmp_path / "v.pt")
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"h.5"}
    assert set(raw["h.5"]) == {"steering_vector", "steering_coefficient", "action", "bias", "head_index"}
    assert raw["h.5"]["action"] == "add" and raw["h.5"]["steering_coefficient"] == -2.5
    side = json.loads((tmp_path / "v.pt.json").read_text())
    for key in (
        "source_model",
        "dimension",
        "layer",
        "scale",
        "dataset_md5",
        "package_version",
        "vector_sha256",
        "orientation",
    ):
        assert key in side
    assert side["vector_sha256"] == vector_sha256(raw["h.5"]["steering_vector"])
    back = SteeringVector.load(path)
    assert back.layer == 5 and back.hookpoint == "h.5" and back.coefficient == -2.5
    assert torch.equal(back.vector, v.vector) and back.provenance["source_model"] == "m"


class _Opaque:  # a pickled object that weights_only=True refuses
    pass


def test_bad_files_are_one_line_errors(tmp_path):
    nan = tmp_path / "nan.pt"
    torch.save(
        {
            "layers.1": {
                "steering_vector": torch.tensor([1.0, float("nan")]),
                "steering_coefficient": 1.0,
                "action": "add",
                "bias": None,
                "head_index": None,
            }
        },
        nan,
    )
    pickled = tmp_path / "pickled.pt"
    torch.save(
        {
            "layers.1": {
                "steering_vector": torch.ones(2),
                "steering_coefficient": 1.0,
                "action": "add",
                "extra": _Opaque(),
            }
        },
        pickled,
    )
    clamp = tmp_path / "clamp.pt"
    torch.save({"layers.1": {"steering_vector": torch.ones(2), "steering_coefficient": 1.0, "action": "clamp"}}, clamp)
    for path, word in ((nan, "NaN"), (pickled, "weights_only"), (clamp, "clamp"), (tmp_path / "missing.pt", "exist")):
        with pytest.raises(TracingBenchError) as e:
            load_steer_file(path)
        assert word in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(TracingBenchError, match="NaN"):
        SteeringVector(torch.tensor([float("nan")]), layer=0, hookpoint="layers.0")
    with pytest.raises(TracingBenchError, match="dimension"):
        extract_vector(ACTS, LABELS, [0, 1, 2, 3], dimension="honesty")
    with pytest.raises(TracingBenchError, match="both classes"):
        extract_vector(ACTS, LABELS, [0, 1], dimension="fairness")
