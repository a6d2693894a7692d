"""What the tiny pre-training run starts from: its corpus (no labels), tokenizer, data order and model.

Corpus (what and why). The run trains on the *development half* of every bundled dimension
whose data may be trained on (``load_dimension(name).subset("dev")``, paper protocol, seed 0),
**without labels**, one statement per sequence, in a seeded random order. Fairness
(CrowS-Pairs) is excluded: CrowS-Pairs is an evaluation set, never to be trained on
(``Dimension.pretrain`` is ``False``), so no fairness statement is in the corpus:

* in-domain text is what lets a model this small learn, in a couple of minutes, something the
  probes can find (what they find: ``bench/BENCH.md``, "make demo");
* the *test* half of each dimension is never seen, so the probes' test accuracy (and the
  steering evaluation on the test half) measures generalisation to unseen statements, not
  recall of memorised text. The dev half contains the probes' training statements (as text,
  never with their labels), as a pre-training corpus may contain a probe's training data.
  This guarantee holds for the paper protocol with split seed 0; the ``reference`` protocol's
  file-order test split overlaps the corpus;
* no labels are used anywhere: the model only does next-token prediction;
* no extra public-domain text ships: with no network there was nothing to take verbatim, and
  every bundled statement already exists in the package (``tracing_bench/data``, see its
  README for sources and licences). The TruthfulQA *test questions* are excluded (they are
  evaluation prompts).

The tokenizer is a byte-level BPE trained on that corpus, with merges appended so that each
answer choice of the trust tasks is one token (:data:`ANSWER_CHOICES`); :func:`batch_indices`
is the seeded order in which the corpus is read, :func:`model_config` the Llama it trains.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Literal

from tracing_bench.dimensions import DIMENSIONS, Split, load_dimension
from tracing_bench.files import dumps_json, text_hash

Corpus = Literal["dev", "all"]
CORPORA: tuple[str, ...] = ("dev", "all")
EOS = "<|endoftext|>"
PAD = "<pad>"


def build_corpus(corpus: Corpus = "dev") -> tuple[list[str], dict[str, object]]:
    """The pre-training statements (no labels) and their provenance.

    Args:
        corpus: ``dev`` (development half of every dimension that may be trained on, paper
            protocol, seed 0) or ``all``; evaluation-only data (CrowS-Pairs) is never included.

    Returns:
        (statements in a fixed order, provenance dict with per-file md5 and the corpus md5).
    """
    texts, prov = _corpus(corpus)
    return list(texts), json.loads(prov)


@functools.cache
def _corpus(corpus: str) -> tuple[tuple[str, ...], str]:
    texts: list[str] = []
    files: dict[str, dict[str, object]] = {}
    for name, dim in DIMENSIONS.items():
        if not dim.pretrain:  # evaluation-only data (CrowS-Pairs) never enters the corpus
            continue
        data = load_dimension(name, protocol="paper", seed=0)
        split: Split = "dev" if corpus == "dev" else "all"
        statements, _ = data.subset(split)
        texts.extend(statements)
        files[name] = {"file": data.path.name, "md5": data.md5, "split": split, "n": len(statements)}
    md5 = text_hash("\n".join(texts), "md5")
    prov = {
        "source": f"bundled statements without labels, split {corpus!r} (paper protocol, seed 0)",
        "files": files,
        "n_statements": len(texts),
        "md5": md5,
    }
    return tuple(texts), dumps_json(prov)


#: The answer choices of the trust tasks as they follow the prompt (target delimiter " "). Each is
#: one token of the tiny model's vocabulary: zero-shot choice scoring compares the choices'
#: log-likelihoods, and a choice of two tokens against one of one token loses on every prompt
#: whatever the model knows (seen with the trained vocabulary alone: " 1" one token, " 0" two).
ANSWER_CHOICES: tuple[str, ...] = (" 0", " 1", " negative", " positive")


def _one_token_each(tok: Any, words: tuple[str, ...]) -> Any:
    """The BPE tokenizer with merges appended so that each of ``words`` is a single token.

    Each word is tokenised with the trained merges and its pieces are joined left to right by new
    merges, ranked after all trained ones, so no other text changes unless it contains the same
    adjacent pieces.
    """
    # lazy: tokenizers loads on first use, so importing pretrain_data stays light
    from tokenizers import Tokenizer

    spec = json.loads(tok.to_str())
    vocab: dict[str, int] = spec["model"]["vocab"]
    merges: list = spec["model"]["merges"]
    for word in words:
        pieces = tok.encode(word).tokens
        while len(pieces) > 1:
            left, right = pieces[0], pieces[1]
            merges.append([left, right] if merges and isinstance(merges[0], list) else f"{left} {right}")
            top = max(max(vocab.values()), max((t["id"] for t in spec["added_tokens"]), default=0))
            vocab.setdefault(left + right, top + 1)
            pieces = [left + right, *pieces[2:]]
    return Tokenizer.from_str(dumps_json(spec))


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    # lazy: tokenizers and transformers load on first use, so importing pretrain_data stays light
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok = _one_token_each(tok, ANSWER_CHOICES)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=PAD,
        model_max_length=512,
    )


MODEL_LAYOUT = 3  # bump when model_config or the tokenizer changes, so cached runs are not reused


def model_config(cfg: Any, tokenizer: Any) -> Any:
    """The Llama configuration of a run for its tokenizer.

    ``cfg`` is a :class:`~tracing_bench.pretrain.PretrainConfig`.
    """
    # lazy: transformers loads on first use, so importing pretrain_data stays light
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.heads,
        # RoPE: a longer window costs nothing; the trust prompts reach ~150 tokens with this vocabulary
        max_position_embeddings=max(512, cfg.seq_len),
        tie_word_embeddings=True,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def batch_indices(step: int, batch_size: int, n: int, seed: int) -> list[int]:
    """Corpus indices of the batch of update ``step`` (1-based): seeded permutation per epoch."""
    # lazy: torch loads on first use, so importing pretrain_data stays light
    import torch

    out: list[int] = []
    perms: dict[int, list[int]] = {}
    for i in range((step - 1) * batch_size, step * batch_size):
        epoch, pos = divmod(i, n)
        if epoch not in perms:
            g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            perms[epoch] = torch.randperm(n, generator=g).tolist()
        out.append(perms[epoch][pos])
    return out
