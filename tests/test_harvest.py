"""Harvest: batched == one-at-a-time, checked against Hugging Face's output_hidden_states; the cache."""

from __future__ import annotations

import csv
import json
import warnings

import pytest
import torch

from tracing_bench.cache import CacheWarning, cached_activations, lookup_activations
from tracing_bench.checkpoints import Checkpoint
from tracing_bench.dimensions import load_dimension
from tracing_bench.errors import TracingBenchError
from tracing_bench.harvest import harvest, record_blocks
from tracing_bench.loading import find_blocks, load_checkpoint

TOL = 1e-4


@pytest.fixture(scope="module")
def statements() -> list[str]:
    data = load_dimension("fairness")
    picked = data.statements[:10] + ["Hi.", "A", data.statements[30] + " " + data.statements[31]]
    return picked


def _final_norm(model):
    for path in ("model.norm", "gpt_neox.final_layer_norm", "transformer.ln_f"):
        obj = model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
            return obj
        except AttributeError:
            continue
    raise AssertionError("no final norm")


def _reference(model, tok, statements, pooling):
    """Batch 1, no padding, from output_hidden_states: [L, N, D] (last block: final norm applied)."""
    rows = []
    with torch.no_grad():
        for s in statements:
            hs = model(**tok(s, return_tensors="pt"), output_hidden_states=True).hidden_states
            if pooling == "last":
                rows.append(torch.stack([h[0, -1] for h in hs[1:]]))
            else:
                rows.append(torch.stack([h[0].mean(0) for h in hs[1:]]))
    return torch.stack(rows, 1)


@pytest.fixture(scope="module")
def loaded(tiny_models, statements):
    """Per architecture, loaded once: (model, tokenizer, batch-1 reference of last-token states)."""
    cache: dict[str, tuple] = {}

    def get(arch: str):
        if arch not in cache:
            model, tok = load_checkpoint(Checkpoint(str(tiny_models[arch])), dtype="float32", device="cpu")
            cache[arch] = (model, tok, _reference(model, tok, statements, "last"))
        return cache[arch]

    return get


@pytest.mark.parametrize("arch", ["llama", "gpt_neox", "gpt2"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_batched_equals_unbatched_last(loaded, statements, arch, side):
    model, tok, ref = loaded(arch)
    tok.padding_side = side
    acts = harvest(model, tok, statements, batch_size=5)
    L = len(find_blocks(model)[0])
    assert acts.shape == (L, len(statements), ref.shape[-1]) and acts.dtype == torch.float32
    torch.testing.assert_close(acts[:-1], ref[:-1], atol=TOL, rtol=0)
    # the last block's own output; HF applies the final norm to hidden_states[-1]
    with torch.no_grad():
        torch.testing.assert_close(_final_norm(model)(acts[-1]), ref[-1], atol=TOL, rtol=0)
    capped = harvest(model, tok, statements, batch_size=5, max_batch_tokens=64)  # token-capped batches
    torch.testing.assert_close(capped, acts, atol=TOL, rtol=0)
    if side == "left":  # one at a time, through harvest itself
        single = torch.cat([harvest(model, tok, [s], batch_size=1) for s in statements], 1)
        torch.testing.assert_close(acts, single, atol=TOL, rtol=0)


@pytest.mark.parametrize("side", ["left", "right"])
def test_mean_pooling(loaded, statements, side):
    model, tok, _ = loaded("llama")
    ref = _reference(model, tok, statements, "mean")
    tok.padding_side = side
    acts = harvest(model, tok, statements, pooling="mean", batch_size=6)
    torch.testing.assert_close(acts[:-1], ref[:-1], atol=TOL, rtol=0)


def test_layers_subset_stops_early_and_removes_hooks(loaded, statements):
    model, tok, _ = loaded("gpt_neox")
    blocks, _ = find_blocks(model)
    n_hooks = [len(b._forward_hooks) for b in blocks]  # transformers may keep its own hooks
    calls = {"block2": 0, "head": 0}
    h1 = blocks[2].register_forward_hook(lambda *a: calls.__setitem__("block2", calls["block2"] + 1))
    h2 = model.get_output_embeddings().register_forward_hook(lambda *a: calls.__setitem__("head", calls["head"] + 1))
    try:
        acts = harvest(model, tok, statements, layers=[1, 0], batch_size=8)
    finally:
        h1.remove()
        h2.remove()
    assert calls == {"block2": 0, "head": 0}
    full = harvest(model, tok, statements, batch_size=8)
    torch.testing.assert_close(acts, full[[1, 0]], atol=TOL, rtol=0)
    assert [len(b._forward_hooks) for b in blocks] == n_hooks
    # hooks are removed when the forward fails, too
    with pytest.raises(RuntimeError, match="boom"):
        with record_blocks(model, [0], lambda *a: None):
            raise RuntimeError("boom")
    assert [len(b._forward_hooks) for b in blocks] == n_hooks


def test_harvest_bad_input(tiny_models):
    model, tok = load_checkpoint(Checkpoint(str(tiny_models["gpt2"])), device="cpu")
    with pytest.raises(TracingBenchError, match=r"out of range: the model has 3 blocks \(0-2\)"):
        harvest(model, tok, ["x"], layers=[3])
    with pytest.raises(TracingBenchError, match="--pooling 'max'"):
        harvest(model, tok, ["x"], pooling="max")
    with pytest.raises(TracingBenchError, match="--batch-size 0"):
        harvest(model, tok, ["x"], batch_size=0)
    assert harvest(model, tok, [], layers=[0]).shape == (1, 0, 32)


@pytest.fixture()
def small_dim(tmp_path):
    data = load_dimension("fairness")
    path = tmp_path / "small.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["statement", "label"])
        w.writerows(zip(data.statements[:40], data.labels[:40].tolist(), strict=True))
    return load_dimension(path)


def test_cache_hit_and_corruption(tiny_models, small_dim, tmp_path):
    ckpt = Checkpoint(str(tiny_models["llama"]))
    cache = tmp_path / "cache"
    acts, prov = cached_activations(ckpt, small_dim, cache_dir=cache, dtype="float32", device="cpu", batch_size=7)
    assert acts.shape == (3, 40, 32)
    for k in (
        "model",
        "revision",
        "resolved_commit",
        "dataset_md5",
        "protocol",
        "pooling",
        "dtype",
        "max_length",
        "package_version",
        "n_statements",
        "n_layers",
        "hidden",
        "key",
    ):
        assert k in prov
    tensor_file = cache / "activations" / f"{prov['key']}.safetensors"
    sidecar = tensor_file.with_suffix(".json")
    assert tensor_file.exists() and json.loads(sidecar.read_text())["n_statements"] == 40

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a hit issues no warning
        again, _ = cached_activations(ckpt, small_dim, cache_dir=cache, dtype="float32", model="never loaded")
    assert torch.equal(acts, again)
    assert torch.equal(lookup_activations(ckpt, small_dim, cache_dir=cache, dtype="float32")[0], acts)

    # truncated tensor file -> warning, recomputed, identical
    tensor_file.write_bytes(tensor_file.read_bytes()[:500])
    with pytest.warns(CacheWarning, match="truncated"):
        fixed, _ = cached_activations(ckpt, small_dim, cache_dir=cache, dtype="float32", device="cpu", batch_size=7)
    assert torch.equal(fixed, acts)

    # same size, flipped bytes -> sha256 mismatch
    raw = bytearray(tensor_file.read_bytes())
    raw[-8:] = bytes(8)
    tensor_file.write_bytes(bytes(raw))
    with pytest.warns(CacheWarning, match="sha256"):
        fixed, _ = cached_activations(ckpt, small_dim, cache_dir=cache, dtype="float32", device="cpu", batch_size=7)
    assert torch.equal(fixed, acts)

    # a sidecar whose provenance does not match its key -> mismatch
    meta = json.loads(sidecar.read_text())
    meta["pooling"] = "mean"
    sidecar.write_text(json.dumps(meta))
    with pytest.warns(CacheWarning, match="provenance mismatch in pooling"):
        cached_activations(ckpt, small_dim, cache_dir=cache, dtype="float32", device="cpu", batch_size=7)
    # unreadable sidecar
    sidecar.write_text("{not json")
    with pytest.warns(CacheWarning, match="unreadable sidecar"):
        cached_activations(ckpt, small_dim, cache_dir=cache, dtype="float32", device="cpu", batch_size=7)

    # a different pooling is a different entry
    mean, prov_mean = cached_activations(ckpt, small_dim, cache_dir=cache, pooling="mean", dtype="float32")
    assert prov_mean["key"] != prov["key"] and not torch.equal(mean, acts)


def test_cache_env_dir_and_hub_commit(hf_cache_series, small_dim, tmp_path, monkeypatch):
    model_id, revisions, _ = hf_cache_series
    monkeypatch.setenv("TRACING_BENCH_CACHE", str(tmp_path / "envcache"))
    ckpt = Checkpoint(model_id, revisions[0])
    acts, prov = cached_activations(ckpt, small_dim, dtype="float32", device="cpu")
    assert prov["resolved_commit"] == ckpt.resolved_commit() and prov["revision"] == "step1"
    assert (tmp_path / "envcache" / "activations" / f"{prov['key']}.safetensors").exists()
