"""Tiny models of three architectures, built from configs, with a tokenizer trained here.

Nothing is downloaded: the tokenizer is a byte-level BPE trained on the bundled statements, the
models are randomly initialised from ``LlamaConfig``, ``GPTNeoXConfig`` and ``GPT2Config``, and
both are saved with ``save_pretrained`` so that the code under test loads them through the real
``from_pretrained`` path.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    PreTrainedTokenizerFast,
)

from tracing_bench.dimensions import DIMENSIONS, load_dimension

ARCHS = ("llama", "gpt_neox", "gpt2")
HIDDEN = 32
LAYERS = 3


def corpus() -> list[str]:
    texts: list[str] = []
    for name in DIMENSIONS:
        texts.extend(load_dimension(name).statements[:600])
    return texts


def train_tokenizer(out: Path, vocab_size: int = 512) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<pad>",
        model_max_length=256,
    )
    fast.save_pretrained(out)
    return fast


def build_config(arch: str, vocab_size: int, eos_id: int, pad_id: int):
    common = dict(vocab_size=vocab_size, bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=pad_id)
    if arch == "llama":
        return LlamaConfig(
            hidden_size=HIDDEN,
            intermediate_size=64,
            num_hidden_layers=LAYERS,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            tie_word_embeddings=False,
            **common,
        )
    if arch == "gpt_neox":
        return GPTNeoXConfig(
            hidden_size=HIDDEN,
            intermediate_size=64,
            num_hidden_layers=LAYERS,
            num_attention_heads=4,
            max_position_embeddings=256,
            rotary_pct=0.25,
            use_parallel_residual=True,
            **common,
        )
    if arch == "gpt2":
        return GPT2Config(
            n_embd=HIDDEN,
            n_layer=LAYERS,
            n_head=4,
            n_positions=256,
            **common,
        )
    raise ValueError(f"unknown arch {arch!r}; valid: {ARCHS}")


def build_model(arch: str, tokenizer: PreTrainedTokenizerFast, out: Path, seed: int = 0) -> Path:
    """Build a randomly initialised tiny model, save it with the tokenizer, return the folder."""
    torch.manual_seed(seed)
    cfg = build_config(arch, len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id)
    model = AutoModelForCausalLM.from_config(cfg)
    # Larger weights than the default init make layers and checkpoints differ visibly.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.2)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def write_small_dims(root: Path, n: int, names: tuple[str, ...] = ("fairness", "privacy")) -> str:
    """The first ``n`` cleaned statements of each dimension as statement,label CSVs; a comma list of paths."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        data = load_dimension(name)
        path = root / f"{name}_small.csv"
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["statement", "label"])
            w.writerows(zip(data.statements[:n], data.labels[:n].tolist(), strict=True))
        paths.append(str(path))
    return ",".join(paths)


def build_series(root: Path, tokenizer: PreTrainedTokenizerFast) -> Path:
    """step0, step10, step100: tiny Llamas with different seeds, saved with save_pretrained."""
    for seed, name in enumerate(("step100", "step0", "step10")):
        build_model("llama", tokenizer, root / name, seed=seed)
    return root


def write_planted_dimension(path: Path, n: int = 160) -> Path:
    """A statement,label CSV whose label is the statement's last word (``apple`` 1, ``tiger`` 0).

    A model that keeps token identity in its residual stream reads the label off the last token
    perfectly; one whose embeddings are zeroed sees every statement alike (chance): a planted drop.
    """
    import random

    rng = random.Random(0)
    words = ["river", "stone", "cloud", "table", "green", "music"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["statement", "label"])
        for i in range(n):
            label = i % 2
            w.writerow([" ".join(rng.choice(words) for _ in range(4)) + (" apple" if label else " tiger"), label])
    return path
