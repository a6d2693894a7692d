"""trust-steered against lm-eval's stock `steered` model and hand-written hooks, on tiny models."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from transformers import AutoModelForCausalLM, AutoTokenizer

from tracing_bench.cli import main
from tracing_bench.steering.vector import SteeringVector

TASKS = ["trust_fairness", "trust_privacy"]
LIMIT = 6


_TM: list = []


def _evaluate(model: str, model_args: str, tasks=TASKS, limit=LIMIT):
    import lm_eval
    from lm_eval.tasks import TaskManager

    import tracing_bench.models.steered  # noqa: F401
    from tracing_bench.tasks import TASKS_DIR

    if not _TM:  # indexing the include path takes seconds; once per session
        _TM.append(TaskManager(include_path=str(TASKS_DIR), include_defaults=False))
    tm = _TM[0]
    return lm_eval.simple_evaluate(
        model=model,
        model_args=model_args,
        tasks=tasks,
        limit=limit,
        task_manager=tm,
        batch_size=4,
        device="cpu",
        log_samples=True,
    )


def _task_values(results):
    return {t: {k: v for k, v in m.items() if k != "alias"} for t, m in results["results"].items()}


def _sample_lls(results):
    return {t: [s["resps"] for s in samples] for t, samples in results["samples"].items()}


def test_extracted_vector_in_stock_steered_equals_trust_steered(tiny_models, extracted):
    path, _ = extracted
    pre = str(tiny_models["llama"])
    stock = _evaluate("steered", f"pretrained={pre},steer_path={path}")
    ours = _evaluate("trust-steered", f"pretrained={pre},steer_path={path},positions=all")
    assert _task_values(stock) == _task_values(ours)
    assert _sample_lls(stock) == _sample_lls(ours)  # every log-likelihood identical, not only the means
    info = ours["config"]["steering"]
    v = SteeringVector.load(path)
    assert info["hookpoints"]["layers.1"]["vector_sha256"] == v.sha256
    assert info["positions"] == "all" and info["hookpoints"]["layers.1"]["coefficient"] == 4.0
    # alpha=0 reproduces the unsteered HFLM exactly; a large alpha changes the log-likelihoods
    plain = _evaluate("hf", f"pretrained={pre}")
    zero = _evaluate("trust-steered", f"pretrained={pre},steer_path={path},alpha=0")
    assert _task_values(plain) == _task_values(zero) and _sample_lls(plain) == _sample_lls(zero)
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from tracing_bench.models.steered import TrustSteeredModel

    reqs = [Instance("loglikelihood", {}, ("The sentence is", " 1"), 0)]
    hf = HFLM(pretrained=pre, device="cpu")
    big = TrustSteeredModel(pretrained=hf.model, tokenizer=hf.tokenizer, steer_path=str(path), alpha=200)
    assert big.loglikelihood(reqs, disable_tqdm=True) != hf.loglikelihood(reqs, disable_tqdm=True)


# ------------------------------------------------------------------ positions=last by hand
def _hand_hook(module_out, vec, mask_fn):
    h = module_out[0] if isinstance(module_out, tuple) else module_out
    mask = mask_fn(h)
    h = torch.where(mask.unsqueeze(-1), h + vec.to(h.dtype), h)
    return (h, *module_out[1:]) if isinstance(module_out, tuple) else h


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_positions_last_loglikelihood_matches_hand_hook(tiny_models, tmp_path, arch):
    from lm_eval.api.instance import Instance

    from tracing_bench.loading import model_hookpoint
    from tracing_bench.models.steered import TrustSteeredModel

    folder = str(tiny_models[arch])
    hp = model_hookpoint(folder, 1)
    vec = torch.randn(32, generator=torch.Generator().manual_seed(1))
    alpha = 3.0
    SteeringVector(vec, layer=1, hookpoint=hp, coefficient=alpha).save(tmp_path / "v.pt")
    lm = TrustSteeredModel(
        pretrained=folder, steer_path=str(tmp_path / "v.pt"), positions="last", batch_size=3, device="cpu"
    )
    pairs = [
        ("The cat sat", " on the mat today"),
        ("A", " b"),
        ("Some longer context here, with words", " yes"),
        ("Q: is it true?", " no it is not"),
    ]
    got = lm.loglikelihood([Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)], disable_tqdm=True)

    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    block = dict(model.base_model.named_modules())[hp]
    v = (vec * alpha).float()
    for (ctx, cont), (ll, _) in zip(pairs, got, strict=True):
        c, t = tok(ctx)["input_ids"], tok(cont)["input_ids"]
        # (a) one teacher-forced pass, steering from the last context token onward
        inp = torch.tensor([c + t[:-1]])
        start = len(c) - 1
        hook = block.register_forward_hook(
            lambda m, i, o, start=start: _hand_hook(o, v, lambda h: torch.arange(h.shape[1]).unsqueeze(0) >= start)
        )
        try:
            with torch.no_grad():
                logp = model(inp).logits.log_softmax(-1)[0]
        finally:
            hook.remove()
        teacher = sum(logp[start + k, t[k]].item() for k in range(len(t)))
        # (b) the released code: KV cache, steer the last position of every forward pass
        hook = block.register_forward_hook(
            lambda m, i, o: _hand_hook(o, v, lambda h: torch.arange(h.shape[1]).unsqueeze(0) == h.shape[1] - 1)
        )
        try:
            with torch.no_grad():
                out = model(torch.tensor([c]), use_cache=True)
                incremental = out.logits[0, -1].log_softmax(-1)[t[0]].item()
                past = out.past_key_values
                for k in range(1, len(t)):
                    out = model(torch.tensor([[t[k - 1]]]), past_key_values=past, use_cache=True)
                    past = out.past_key_values
                    incremental += out.logits[0, -1].log_softmax(-1)[t[k]].item()
        finally:
            hook.remove()
        assert ll == pytest.approx(teacher, abs=1e-4)
        assert ll == pytest.approx(incremental, abs=1e-4)

    # identical logits on one padded batch: trust-steered's _model_call vs the hand hook
    reqs = [((a, b), tok(a)["input_ids"], tok(b)["input_ids"]) for a, b in pairs]
    ((starts, members),) = lm._unambiguous_groups(reqs)
    rows = [r[1] + r[2][:-1] for r in reqs]
    width = max(map(len, rows))
    batch = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    lm._ll_starts = starts
    try:
        ours = lm._model_call(batch)
    finally:
        lm._ll_starts = None
    first = torch.tensor([len(r[1]) - 1 for r in reqs])
    hook = block.register_forward_hook(
        lambda m, i, o: _hand_hook(o, v, lambda h: torch.arange(h.shape[1]).unsqueeze(0) >= first.unsqueeze(1))
    )
    try:
        with torch.no_grad():
            hand = model(batch).logits
    finally:
        hook.remove()
    assert torch.equal(ours, hand)


def test_positions_last_generation_matches_hand_hook(tiny_models, tmp_path):
    from tracing_bench.models.steered import TrustSteeredModel

    folder = str(tiny_models["llama"])
    vec = torch.randn(32, generator=torch.Generator().manual_seed(2))
    SteeringVector(vec, layer=1, hookpoint="layers.1", coefficient=5.0).save(tmp_path / "v.pt")
    lm = TrustSteeredModel(
        pretrained=folder, steer_path=str(tmp_path / "v.pt"), positions="last", batch_size=2, device="cpu"
    )
    prompts = ["The cat sat on", "Is this statement true? Answer"]
    ids, mask = lm.tok_batch_encode(prompts)  # left-padded, as generate_until does
    kw = {"attention_mask": mask, "do_sample": False, "output_scores": True, "return_dict_in_generate": True}
    ours = lm._model_generate(ids, max_length=ids.shape[1] + 6, stop=[], **kw)

    model = lm.model
    block = dict(model.base_model.named_modules())["layers.1"]
    seen: list[int] = []

    def last_only(m, i, o):
        h = o[0] if isinstance(o, tuple) else o
        seen.append(h.shape[1])
        return _hand_hook(o, vec * 5.0, lambda x: torch.arange(x.shape[1]).unsqueeze(0) == x.shape[1] - 1)

    hook = block.register_forward_hook(last_only)
    try:
        with torch.no_grad():
            hand = model.generate(
                input_ids=ids, max_length=ids.shape[1] + 6, pad_token_id=lm.tokenizer.pad_token_id, use_cache=True, **kw
            )
    finally:
        hook.remove()
    assert seen[0] == ids.shape[1] and set(seen[1:]) == {1}  # prompt pass, then one token per pass
    assert torch.equal(ours.sequences, hand.sequences)
    for a, b in zip(ours.scores, hand.scores, strict=True):
        assert torch.equal(a, b)
    # and positions=last is not positions=all
    lm_all = TrustSteeredModel(
        pretrained=model, tokenizer=lm.tokenizer, steer_path=str(tmp_path / "v.pt"), positions="all", batch_size=2
    )
    every = lm_all._model_generate(ids, max_length=ids.shape[1] + 6, stop=[], **kw)
    assert not torch.equal(every.scores[0], ours.scores[0])


# ------------------------------------------------------------------ bad input: one line, exit 2
def _bad_files(tmp_path):
    ok = {"steering_coefficient": 1.0, "action": "add", "bias": None, "head_index": None}
    files = {}
    files["hookpoint"] = ({"layers.7": {"steering_vector": torch.ones(32), **ok}}, "layers.7")
    files["hidden"] = ({"layers.1": {"steering_vector": torch.ones(16), **ok}}, "hidden size is 32")
    files["nan"] = ({"layers.1": {"steering_vector": torch.full((32,), float("nan")), **ok}}, "NaN")
    files["pickle"] = ({"layers.1": {"steering_vector": torch.ones(32), **ok, "extra": _Opaque()}}, "weights_only")
    out = {}
    for name, (content, word) in files.items():
        p = tmp_path / f"{name}.pt"
        torch.save(content, p)
        out[name] = (p, word)
    return out


class _Opaque:
    pass


def test_bad_vectors_one_line_exit_2(tiny_models, tmp_path):
    runner = CliRunner()
    for name, (path, word) in _bad_files(tmp_path).items():
        res = runner.invoke(
            main,
            [
                "steer",
                "sweep",
                "--model",
                str(tiny_models["llama"]),
                "--vector",
                str(path),
                "--alphas",
                "1",
                "--tasks",
                "trust_fairness",
                "--limit",
                "2",
                "--device",
                "cpu",
                "--out",
                str(tmp_path / f"sweep_{name}"),
            ],
        )
        assert res.exit_code == 2, (name, res.output)
        line = res.stderr if hasattr(res, "stderr") else res.output
        errs = [x for x in line.splitlines() if x.startswith("error:")]
        assert len(errs) == 1 and word in errs[0], (name, line)
        assert "Traceback" not in res.output
    # the same check through `tracing-bench eval --model trust-steered`
    path, word = _bad_files(tmp_path)["hookpoint"]
    res = runner.invoke(
        main,
        [
            "eval",
            "--model",
            "trust-steered",
            "--model_args",
            f"pretrained={tiny_models['llama']},steer_path={path}",
            "--tasks",
            "trust_fairness",
            "--limit",
            "2",
            "--device",
            "cpu",
            "--output_path",
            str(tmp_path / "ev"),
        ],
    )
    assert res.exit_code == 2, res.output
    assert word in res.output and "Traceback" not in res.output


def test_eval_cli_with_trust_steered_records_the_vector(tiny_models, extracted, tmp_path):
    import json

    path, _ = extracted
    res = CliRunner().invoke(
        main,
        [
            "eval",
            "--model",
            "trust-steered",
            "--model_args",
            f"pretrained={tiny_models['llama']},steer_path={path},alpha=2,positions=last",
            "--tasks",
            "trust_fairness",
            "--limit",
            "2",
            "--device",
            "cpu",
            "--output_path",
            str(tmp_path / "ev"),
        ],
    )
    assert res.exit_code == 0, res.output
    (results_file,) = list((tmp_path / "ev").rglob("results_*.json"))
    steering = json.loads(results_file.read_text())["config"]["steering"]
    assert steering["alpha"] == 2.0 and steering["positions"] == "last"
    assert steering["hookpoints"]["layers.1"]["vector_sha256"] == SteeringVector.load(path).sha256
