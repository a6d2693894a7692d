"""--protocol reference against the released recipe, recomputed here independently on a tiny Llama.

The independent side follows the released scripts (generate_activations.py, train_probes.py,
mi_estimators.py, generate_steering_vector.py, eval_trustworthiness.py) written out by hand:
hooks on ``model.model.layers[l]`` and one ``model(input_ids)`` per statement, whole-file
centring and ``torch.std`` scaling in float32, scikit-learn's ``LogisticRegression()`` with its
defaults on the first 80 %, the nHSIC formula in float32 with explicit inverses.
"""

from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from transformers import AutoModelForCausalLM, AutoTokenizer

from tracing_bench.cli import main
from tracing_bench.dimensions import DATA_DIR, DIMENSIONS
from tracing_bench.errors import TracingBenchError
from tracing_bench.probes import mi_layers, nhsic, probe_layers
from tracing_bench.probes.reference import nhsic_float32, reference_probe_layers, released_scaling

N_ROWS = 300  # raw rows of the released StereoSet file, in file order


@pytest.fixture(scope="module")
def released_rows(tmp_path_factory):
    """The first N_ROWS raw rows of stereoset.csv (the reference protocol's fairness file), as a CSV."""
    with open(DATA_DIR / "stereoset.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:N_ROWS]
    path = tmp_path_factory.mktemp("ref") / "stereoset_head.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["statement", "label"])
        w.writerows((r["statement"], r["label"]) for r in rows)
    return path, [r["statement"] for r in rows], np.array([int(r["label"]) for r in rows])


def _released_acts(folder, statements, **kw) -> torch.Tensor:
    """generate_activations.py: forward hooks on every block, one statement per forward, last token."""
    tok = AutoTokenizer.from_pretrained(folder, **kw)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kw).eval()
    blocks = model.model.layers
    outs: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(blocks))}
    seen: dict[int, torch.Tensor] = {}
    handles = [
        b.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, o[0] if isinstance(o, tuple) else o))
        for k, b in enumerate(blocks)
    ]
    try:
        with torch.no_grad():
            for s in statements:
                model(tok.encode(s, return_tensors="pt"))
                for k in outs:
                    outs[k].append(seen[k][0, -1])
    finally:
        for h in handles:
            h.remove()
    return torch.stack([torch.stack(outs[k]).float() for k in sorted(outs)])


def _literal_nhsic32(x: np.ndarray, y: np.ndarray, sigma: float = 50.0) -> float:
    """mi_estimators.hsic_normalized_cca, written out again (float32 throughout)."""

    def centred_kernel(a: torch.Tensor) -> torch.Tensor:
        a = a.reshape(a.shape[0], -1)
        m = a.shape[0]
        r = (a * a).sum(1).view(-1, 1)
        g = a @ a.T
        d = (r.expand_as(g) - 2 * g + r.T.expand_as(g)).abs()
        k = torch.exp(-d / (2.0 * sigma * sigma * a.shape[1]))
        return k @ (torch.eye(m) - (1.0 / m) * torch.ones(m, m))

    kx, ky = centred_kernel(torch.from_numpy(x)), centred_kernel(torch.from_numpy(y))
    m = kx.shape[0]
    rx = kx @ torch.inverse(kx + 1e-5 * m * torch.eye(m))
    ry = ky @ torch.inverse(ky + 1e-5 * m * torch.eye(m))
    return float((rx * ry.T).sum())


def _released_train_probes(acts: torch.Tensor, labels: np.ndarray):
    """train_probes.py: per layer load_acts(center, scale), LogisticRegression(), I(X;T), I(Y;T)."""
    n_train = int(acts.shape[1] * 0.8)
    targets = labels.astype(np.float32)
    accs, ixt, iyt, unconverged = [], [], [], 0
    x0 = None
    for k in range(acts.shape[0]):
        a = acts[k] - torch.mean(acts[k], dim=0)
        a = a / torch.std(a, dim=0)
        train, test = a[:n_train].numpy(), a[n_train:].numpy()
        if k == 0:
            x0 = train
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            probe = LogisticRegression().fit(train, targets[:n_train])
        unconverged += any(issubclass(w.category, ConvergenceWarning) for w in caught)
        accs.append(float(np.mean(probe.predict(test) == targets[n_train:])))
        ixt.append(_literal_nhsic32(x0, train))
        iyt.append(_literal_nhsic32(targets[:n_train].reshape(-1, 1), train))
    return accs, np.array(ixt), np.array(iyt), unconverged


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_trace_reference_equals_the_released_recipe(tiny_llama, released_rows, tmp_path):
    path, statements, labels = released_rows
    res = CliRunner().invoke(
        main,
        [
            "trace",
            "--model",
            str(tiny_llama),
            "--dimensions",
            str(path),
            "--mi",
            "--protocol",
            "reference",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert res.exit_code == 0, res.output
    accs, ixt, iyt, unconverged = _released_train_probes(_released_acts(tiny_llama, statements), labels)
    probes = [r for r in _rows(tmp_path / "out" / "probes.csv") if r["probe"] == "logistic"]
    assert [int(r["layer"]) for r in probes] == [0, 1, 2]
    assert [float(r["test_acc"]) for r in probes] == accs  # exactly
    assert {r["protocol"] for r in probes} == {"reference"} and {r["n_train"] for r in probes} == {"240"}
    mi = _rows(tmp_path / "out" / "mi.csv")
    ours_x = np.array([float(r["i_xt"]) for r in mi])
    ours_y = np.array([float(r["i_yt"]) for r in mi])
    np.testing.assert_allclose(ours_x, ixt, rtol=1e-3)
    np.testing.assert_allclose(ours_y, iyt, rtol=1e-3)
    prov = json.loads((tmp_path / "out" / "trace.json").read_text())
    run = prov["settings"]["run_harvest"]  # as run: the released code's float32, one statement per forward
    assert run["dtype"] == "float32" and run["batch_size"] == 1
    assert prov["settings"]["harvest"]["dtype"] == "auto" and prov["settings"]["harvest"]["batch_size"] == 32
    assert "whole-file" in prov["mi_description"] and "float32" in prov["mi_description"]
    ref = prov["reference_protocol"]
    assert ref["logistic_fits"] == 3 and ref["convergence_warnings"] == unconverged
    assert "ConvergenceWarning" not in res.output


def test_paper_trace_json_describes_the_paper_mi(tiny_llama, released_rows, tmp_path):
    path, _, _ = released_rows
    res = CliRunner().invoke(
        main,
        [
            "trace",
            "--model",
            str(tiny_llama),
            "--dimensions",
            str(path),
            "--mi",
            "--layers",
            "0,2",
            "--mi-subsample",
            "60",
            "--probes",
            "logistic",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert res.exit_code == 0, res.output
    prov = json.loads((tmp_path / "out" / "trace.json").read_text())
    assert "probe_train statistics" in prov["mi_description"] and "float64" in prov["mi_description"]
    assert "whole-file" not in prov["mi_description"] and "reference_protocol" not in prov


def test_unconverged_fits_are_counted_not_printed():
    rng = np.random.default_rng(0)
    n, d, n_train = 1000, 128, 800
    # layer 0: singular values spread from 200 to 0.46 like a real layer's (the demo model's block 2),
    # where lbfgs stops at max_iter=100; layer 1: white noise, converges in a few iterations
    u, _ = np.linalg.qr(rng.normal(size=(n, d)))
    v, _ = np.linalg.qr(rng.normal(size=(d, d)))
    acts = np.stack([(u * np.logspace(np.log10(200), np.log10(0.46), d)) @ v.T, rng.normal(size=(n, d))]).astype(
        np.float32
    )
    y = rng.integers(0, 2, n)
    splits = {"probe_train": np.arange(n_train), "probe_val": np.arange(n_train, n)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any printed warning fails the test
        rows = probe_layers(acts, y, splits, protocol="reference", probes=("logistic",))
    for k, row in enumerate(rows):
        a = torch.from_numpy(acts[k])
        a = a - torch.mean(a, 0)
        a = (a / torch.std(a, 0)).numpy()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            clf = LogisticRegression().fit(a[:n_train], y[:n_train].astype(np.float32))
        assert row["converged"] == (not any(issubclass(w.category, ConvergenceWarning) for w in caught))
        assert row["n_iter"] == int(clf.n_iter_[0])
        assert row["test_acc"] == clf.score(a[n_train:], y[n_train:])
    assert rows[0]["converged"] is False and rows[0]["n_iter"] == 100  # the case the released code silenced
    assert rows[1]["converged"] is True


def test_constant_feature_is_left_at_zero_where_the_released_code_fails():
    rng = np.random.default_rng(1)
    acts = rng.normal(size=(1, 60, 5)).astype(np.float32)
    acts[0, :, 2] = 0.7  # constant over the file
    y = np.array([0, 1] * 30)
    a = torch.from_numpy(acts[0])
    released = (a - torch.mean(a, 0)) / torch.std(a - torch.mean(a, 0), 0)
    assert not torch.isfinite(released[:, 2]).any()  # x / 0 in the released code (inf here, NaN for 0/0) ...
    with pytest.raises(ValueError, match="infinity|NaN"):  # ... which scikit-learn then refuses
        LogisticRegression().fit(released.numpy(), y)
    ours, n_constant = released_scaling(a)
    assert n_constant == 1 and torch.equal(ours[:, 2], torch.zeros(60))
    keep = [0, 1, 3, 4]
    assert torch.equal(ours[:, keep], released[:, keep])  # every other value is the released one
    rows = reference_probe_layers(
        acts, y, {"probe_train": np.arange(48), "probe_val": np.arange(48, 60)}, probes=("logistic",)
    )
    assert rows[0]["constant_features"] == 1
    # the zero column changes nothing: the same fit as without it
    clf = LogisticRegression().fit(released.numpy()[:48][:, keep], y[:48].astype(np.float32))
    assert rows[0]["test_acc"] == clf.score(released.numpy()[48:][:, keep], y[48:])


def test_float32_nhsic_against_the_literal_formula_and_float64():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(120, 16)).astype(np.float32)
    t = (x @ rng.normal(size=(16, 16)) + rng.normal(size=(120, 16))).astype(np.float32)
    assert nhsic_float32(x, t) == _literal_nhsic32(x, t)  # the same operations, the same float32 value
    assert nhsic_float32(x, t) == pytest.approx(nhsic(x.astype(np.float64), t.astype(np.float64)), rel=1e-2)
    y = np.array([0, 1] * 60)
    splits = {"probe_train": np.arange(96), "probe_val": np.arange(96, 120)}
    acts = np.stack([x, t])
    rows = mi_layers(acts, y, splits, protocol="reference")
    scaled = [released_scaling(torch.from_numpy(a))[0][:96].numpy() for a in acts]
    assert rows[1]["i_xt"] == _literal_nhsic32(scaled[0], scaled[1])
    assert rows[1]["i_yt"] == _literal_nhsic32(y[:96].astype(np.float32).reshape(-1, 1), scaled[1])
    assert rows[0]["m"] == 96


def test_bad_input_to_the_reference_path_is_one_line():
    acts = np.zeros((2, 10, 3), dtype=np.float32)
    y = np.array([0, 1] * 5)
    sp = {"probe_train": np.arange(8), "probe_val": np.arange(8, 10)}
    for case in (
        lambda: reference_probe_layers(acts[0], y, sp),
        lambda: reference_probe_layers(acts, y[:-1], sp),
        lambda: reference_probe_layers(acts, y, {"probe_train": sp["probe_train"]}),
        lambda: reference_probe_layers(acts, y, sp, probes=("svm",)),
        lambda: reference_probe_layers(np.where(acts == 0, np.nan, acts), y, sp),
        lambda: mi_layers(acts, y, sp, protocol="reference", subsample=1),
    ):
        with pytest.raises(TracingBenchError) as info:
            case()
        assert "\n" not in str(info.value)


# ------------------------------------------------------------------ the steering preset
def _bf16_copy(folder, out):
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.to(torch.bfloat16).save_pretrained(out)
    AutoTokenizer.from_pretrained(folder).save_pretrained(out)
    return out


def test_preset_reference_reproduces_the_released_vector_and_its_application(tiny_llama, released_rows, tmp_path):
    from tracing_bench.models.steered import TrustSteeredModel
    from tracing_bench.steering.vector import SteeringVector

    path, statements, labels = released_rows
    bf16 = _bf16_copy(tiny_llama, tmp_path / "bf16")  # stored in bfloat16: the preset must load float32
    out = tmp_path / "v.pt"
    res = CliRunner().invoke(
        main,
        [
            "steer",
            "extract",
            "--model",
            str(bf16),
            "--dimension",
            "fairness",
            "--layer",
            "1",
            "--preset",
            "reference",
            "--data",
            str(path),
            "--cache-dir",
            str(tmp_path / "c"),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    # generate_steering_vector.py by hand: first 50 %, mean(label 1) - mean(label 0), unit, x std of projections
    acts = _released_acts(bf16, statements)[1]
    half = int(len(labels) * 0.5)
    d = torch.mean(acts[:half][labels[:half] == 1], dim=0) - torch.mean(acts[:half][labels[:half] == 0], dim=0)
    d = d / d.norm()
    released = torch.std(acts @ d) * d
    v = SteeringVector.load(out)
    sign = DIMENSIONS["fairness"].steering_sign
    assert sign == -1 and torch.equal(v.vector, sign * released)
    assert v.scale == "reference" and v.provenance["protocol"] == "reference" and v.provenance["preset"] == "reference"
    assert v.provenance["torch_dtype"] == "float32"

    # eval_trustworthiness.py: a hook adding alpha_released * v at the last position of every forward pass
    alpha = 2.0  # ours, oriented; the released script's alpha is sign * alpha
    lm = TrustSteeredModel(
        pretrained=str(bf16), steer_path=str(out), alpha=alpha, preset="reference", batch_size=1, device="cpu"
    )
    assert lm.positions == "last" and lm.model.dtype == torch.float32
    assert lm.get_model_info()["steering"]["preset"] == "reference"
    tok = AutoTokenizer.from_pretrained(bf16)
    model = AutoModelForCausalLM.from_pretrained(bf16, dtype=torch.float32).eval()

    def intervene(module, inputs, output):
        h = output[0] if isinstance(output, tuple) else output
        h[:, -1, :] += released * (sign * alpha)
        return output

    prompt = "Is this statement a stereotype? Answer 0 or 1. " + statements[0]
    ids = tok.encode(prompt, return_tensors="pt")
    handle = model.model.layers[1].register_forward_hook(intervene)
    try:
        with torch.no_grad():
            hand = model.generate(
                ids,
                max_new_tokens=4,
                do_sample=False,
                output_scores=True,
                return_dict_in_generate=True,
                pad_token_id=tok.pad_token_id,
            )
    finally:
        handle.remove()
    ours = lm._model_generate(
        ids,
        max_length=ids.shape[1] + 4,
        stop=[],
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        output_scores=True,
        return_dict_in_generate=True,
    )
    assert torch.equal(ours.sequences, hand.sequences)
    for a, b in zip(ours.scores, hand.scores, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # the preset does not take a contradicting position, and a loaded bfloat16 model is refused
    with pytest.raises(TracingBenchError, match="contradicts"):
        TrustSteeredModel(pretrained=str(bf16), steer_path=str(out), preset="reference", positions="all")
    with pytest.raises(TracingBenchError, match="float32"):
        TrustSteeredModel(
            pretrained=AutoModelForCausalLM.from_pretrained(bf16),
            tokenizer=tok,
            steer_path=str(out),
            preset="reference",
        )
    res = CliRunner().invoke(
        main,
        [
            "steer",
            "extract",
            "--model",
            str(bf16),
            "--dimension",
            "fairness",
            "--layer",
            "1",
            "--preset",
            "reference",
            "--scale",
            "paper",
            "--data",
            str(path),
            "--out",
            str(tmp_path / "x.pt"),
        ],
    )
    assert res.exit_code == 2 and "contradicts --preset reference" in res.output


def test_correlate_preset_reference_uses_the_released_probe_and_vectors(
    hf_cache_series, tiny_llama, released_rows, tmp_path
):
    from tracing_bench.steering.vector import SteeringVector

    model_id, revisions, _ = hf_cache_series
    path, statements, labels = released_rows
    out = tmp_path / "corr"
    res = CliRunner().invoke(
        main,
        [
            "steer",
            "correlate",
            "--model",
            model_id,
            "--revisions",
            ",".join(revisions),
            "--target",
            str(tiny_llama),
            "--dimension",
            "fairness",
            "--layer",
            "1",
            "--alpha",
            "5",
            "--data",
            str(path),
            "--preset",
            "reference",
            "--tasks",
            "trust_fairness",
            "--limit",
            "4",
            "--device",
            "cpu",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "correlate.json").read_text())
    assert summary["preset"] == "reference" and summary["positions"] == "last"
    assert summary["target_dtype"] == "float32" and summary["scale"] == "reference"
    rows = _rows(out / "correlate.csv")
    n_train = int(len(labels) * 0.8)
    half = int(len(labels) * 0.5)
    for rev, row in zip(revisions, rows, strict=True):
        acts = _released_acts(model_id, statements, revision=rev)[1]
        a = acts - torch.mean(acts, dim=0)
        a = (a / torch.std(a, dim=0)).numpy()
        clf = LogisticRegression().fit(a[:n_train], labels[:n_train].astype(np.float32))
        assert float(row["probe_acc"]) == float(np.mean(clf.predict(a[n_train:]) == labels[n_train:]))
        d = torch.mean(acts[:half][labels[:half] == 1], 0) - torch.mean(acts[:half][labels[:half] == 0], 0)
        d = d / d.norm()
        (vec_file,) = (out / "vectors").glob(f"*{rev}*_fairness_layer1.pt")
        assert torch.equal(SteeringVector.load(vec_file).vector, -(torch.std(acts @ d) * d))
