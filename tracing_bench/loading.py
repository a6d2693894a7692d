"""Loading a checkpoint: checks before loading, one-line load errors, and finding its decoder blocks.

:func:`load_checkpoint` loads model and tokenizer with ``from_pretrained`` after
:func:`check_model_folder` has checked a local folder (config, complete weight files, tokenizer),
and turns every load failure into one line (:func:`describe_load_error`: out of memory, corrupt
weights, an unknown architecture, a revision that cannot be found).

Decoder blocks (:func:`find_blocks`) are looked up at ``model.layers`` (Llama, Mistral, Qwen,
OLMo, Gemma, ...), ``gpt_neox.layers`` (GPT-NeoX / Pythia), ``transformer.h`` (GPT-2, GPT-J,
Falcon, ...), ``model.decoder.layers`` (OPT), ``transformer.blocks`` (MPT) and
``model.transformer.blocks`` (old OLMo code). Any other architecture works through an explicit
override ``blocks_attr="path.to.blocks"`` (CLI ``--blocks-attr``): the dotted attribute path,
from the loaded model, of the ``torch.nn.ModuleList`` of decoder blocks. The number of blocks is
always read from that list, never assumed. :func:`hookpoint` names a block the way lm-eval's
``steered`` model addresses it.

>>> model, tokenizer = load_checkpoint(Checkpoint("EleutherAI/pythia-160m", "step1000"))
>>> hookpoint(model, 12)
'layers.12'
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tracing_bench.checkpoints import Checkpoint, cached_revisions
from tracing_bench.errors import TracingBenchError, first_line

if TYPE_CHECKING:  # pragma: no cover
    import torch

DType = Literal["auto", "float32", "bfloat16", "float16"]
DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")

#: Where decoder blocks live, tried in this order (dotted paths from the loaded model).
BLOCK_PATHS: tuple[str, ...] = (
    "model.layers",
    "gpt_neox.layers",
    "transformer.h",
    "model.decoder.layers",
    "transformer.blocks",
    "model.transformer.blocks",
    "transformer.layers",
    "layers",
    "h",
)


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` if available else ``cpu``; validates the name."""
    # lazy: torch loads on first use, so importing loading stays light
    import torch

    if device not in DEVICES and not device.startswith("cuda:"):
        raise TracingBenchError(f"--device {device!r} is not valid: use one of {', '.join(DEVICES)} (or cuda:N)")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TracingBenchError(f"--device {device} asked for, but torch sees no CUDA device: use --device cpu or auto")
    return device


def torch_dtype(dtype: str) -> Any:
    """``auto`` (as stored in the checkpoint) or a ``torch.dtype``; validates the name."""
    # lazy: torch loads on first use, so importing loading stays light
    import torch

    if dtype not in DTYPES:
        raise TracingBenchError(f"--dtype {dtype!r} is not valid: use one of {', '.join(DTYPES)}")
    return "auto" if dtype == "auto" else getattr(torch, dtype)


def _revision_error(ckpt: Checkpoint, err: Exception) -> TracingBenchError:
    # lazy: huggingface_hub loads on first use, so importing loading stays light
    import huggingface_hub.constants as c

    found = cached_revisions(ckpt.model)
    where = "offline (HF_HUB_OFFLINE=1)" if c.HF_HUB_OFFLINE else "on the hub or in the local cache"
    listing = (
        f"revisions in the local cache: {', '.join(found)}"
        if found
        else f"no revision of {ckpt.model} is in the local cache"
    )
    cause = first_line(err, limit=160)
    return TracingBenchError(
        f"revision {ckpt.revision or 'main'!r} of {ckpt.model} could not be loaded {where}: {listing}; "
        f"check the name or the network ({type(err).__name__}: {cause})"
    )


#: Files any one of which lets ``AutoTokenizer`` build a tokenizer from a folder.
TOKENIZER_FILES: tuple[str, ...] = (
    "tokenizer.json",
    "tokenizer.model",
    "vocab.json",
    "spiece.model",
    "vocab.txt",
    "sentencepiece.bpe.model",
)
#: Weight files ``from_pretrained`` reads (single file or sharded index).
WEIGHT_FILES: tuple[str, ...] = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def _safetensors_problem(path: Path) -> str | None:
    """Why a ``.safetensors`` file is unusable (truncated, bad header), or ``None``; reads the header only."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{size} bytes, shorter than the 8-byte header length"
            n = int.from_bytes(head, "little")
            if n > size - 8:
                return f"{size} bytes, but its header alone claims {n} bytes"
            meta = json.loads(f.read(n))
        ends = [v["data_offsets"][1] for k, v in meta.items() if k != "__metadata__"]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        return f"unreadable header ({type(e).__name__})"
    expected = 8 + n + max(ends, default=0)
    if expected != size:
        return f"{size} bytes, expected {expected}" + (" (truncated)" if size < expected else "")
    return None


def check_model_folder(folder: str | os.PathLike, *, tokenizer: bool = True, flag: str = "checkpoint folder") -> None:
    """Fail with one line, before any loading, on a model folder that cannot be loaded.

    Checks ``config.json`` (present, JSON, an architecture this transformers knows), the weight
    files (present; every ``.safetensors`` complete: header and data sizes agree), and, with
    ``tokenizer=True``, that some tokenizer file is there.

    Args:
        folder: a folder saved with ``save_pretrained``.
        tokenizer: also require tokenizer files (off when the tokenizer comes from elsewhere).
        flag: how the message names the folder (``checkpoint folder``, ``--model_args pretrained=``).

    Raises:
        TracingBenchError: naming the file and the fix.
    """
    folder = Path(folder).expanduser()
    named = f"{flag}{folder}" if flag.endswith("=") else f"{flag} {folder}"
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise TracingBenchError(
            f"{named} has no config.json; give a folder saved with save_pretrained (config, weights, tokenizer)"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TracingBenchError(f"{config_path} is not valid JSON ({type(e).__name__}); save the model again") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if isinstance(model_type, str) and not config.get("auto_map"):
        # lazy: transformers loads on first use, so importing loading stays light
        import transformers
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

        if model_type not in CONFIG_MAPPING_NAMES:
            raise TracingBenchError(
                f"{config_path}: model_type {model_type!r} is an architecture transformers {transformers.__version__} "
                "does not know; upgrade transformers (pip install -U transformers) or correct config.json"
            )
    shards = sorted(folder.glob("*.safetensors"))
    if not shards and not any((folder / name).is_file() for name in WEIGHT_FILES) and not list(folder.glob("*.bin")):
        raise TracingBenchError(
            f"{named} has no weight files ({', '.join(WEIGHT_FILES[::2])}); "
            "copy them in or save the model with save_pretrained"
        )
    for shard in shards:
        why = _safetensors_problem(shard)
        if why is not None:
            raise TracingBenchError(
                f"{shard} is incomplete or corrupt ({why}); download or copy it again (or save the model again)"
            )
    if (
        tokenizer
        and not any((folder / name).is_file() for name in TOKENIZER_FILES)
        and not list(folder.glob("*.tiktoken"))
    ):
        raise TracingBenchError(
            f"{named} has no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...); copy them from the "
            f"model it was trained from, or save them with tokenizer.save_pretrained('{folder}')"
        )


def describe_load_error(
    e: BaseException, what: str, *, dtype: str = "auto", device: str = "auto", folder: str | os.PathLike | None = None
) -> TracingBenchError | None:
    """A one-line error for a model that failed to load, or ``None`` when the cause is not recognised.

    Recognised: out of memory, truncated or corrupt weight files, weights that do not match
    ``config.json``, an architecture transformers does not know, unusable tokenizer files.

    Args:
        e: the exception ``from_pretrained`` (or lm-eval) raised.
        what: how to name the model (``checkpoint folder X``, ``X@rev``).
        dtype, device: the settings used (named in the out-of-memory advice).
        folder: the model's folder if local (to name the broken weight file).
    """
    # lazy: torch loads on first use, so importing loading stays light
    import torch

    text = str(e)
    name = type(e).__name__
    if isinstance(e, (MemoryError, torch.OutOfMemoryError)) or (
        isinstance(e, RuntimeError)
        and ("out of memory" in text.lower() or "can't allocate memory" in text or "DefaultCPUAllocator" in text)
    ):
        return TracingBenchError(
            f"not enough memory to load or run {what} (dtype {dtype}, device {device}): {first_line(e, limit=160)}; "
            "use --dtype bfloat16 "
            "or float16, a smaller batch, another device, or a machine with more memory"
        )
    if name == "SafetensorError" or "safetensors" in type(e).__module__:
        culprit = ""
        if folder is not None:
            for shard in sorted(Path(folder).glob("*.safetensors")):
                why = _safetensors_problem(shard)
                if why is not None:
                    culprit = f"{shard} is incomplete or corrupt ({why})"
                    break
        return TracingBenchError(
            (culprit or f"a weight file of {what} is incomplete or corrupt ({name}: {first_line(e, limit=160)})")
            + "; download or copy it again (or save the model again)"
        )
    if isinstance(e, RuntimeError) and ("size mismatch" in text or "ignore_mismatched_sizes" in text):
        return TracingBenchError(
            f"the weights of {what} do not match its config.json (a tensor has another shape); "
            "use the config.json saved with these weights"
        )
    if isinstance(e, (ValueError, KeyError)) and (
        "does not recognize this architecture" in text or "Unrecognized model" in text
    ):
        return TracingBenchError(
            f"{what}: transformers does not know its architecture ({first_line(e, limit=160)[:120]}); upgrade "
            "transformers "
            "(pip install -U transformers) or correct model_type in config.json"
        )
    if isinstance(e, (OSError, ValueError)) and ("backend tokenizer" in text or "Can't load tokenizer" in text):
        return TracingBenchError(
            f"the tokenizer of {what} cannot be loaded ({first_line(e, limit=160)[:120]}); the folder needs tokenizer "
            "files "
            f"({', '.join(TOKENIZER_FILES[:3])}, ...) saved with tokenizer.save_pretrained"
        )
    return None


def snapshot_folder(model: str, revision: str | None = None) -> Path | None:
    """The local folder holding ``model`` (a folder as given, or its Hugging Face cache snapshot), or ``None``."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    # lazy: huggingface_hub loads on first use, so importing loading stays light
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json", revision=revision)
    except Exception:
        return None
    return Path(cached).parent if isinstance(cached, str) else None


def load_checkpoint(ckpt: Checkpoint, *, dtype: str = "auto", device: str = "auto") -> tuple[Any, Any]:
    """Load model and tokenizer through ``from_pretrained(model, revision=...)``.

    Args:
        ckpt: the checkpoint.
        dtype: ``auto`` (the checkpoint's stored dtype), ``float32``, ``bfloat16`` or ``float16``.
        device: ``auto`` (cuda if available), ``cpu`` or ``cuda``.

    Returns:
        ``(model, tokenizer)``; the model in eval mode on the device.

    Raises:
        TracingBenchError: a folder that cannot be loaded (:func:`check_model_folder`), a revision
            that cannot be found (listing the revisions in the local cache), or a load that fails
            (out of memory, corrupt weights, unknown architecture: :func:`describe_load_error`).
    """
    # lazy: transformers loads on first use, so importing loading stays light
    from transformers import AutoModelForCausalLM, AutoTokenizer

    td = torch_dtype(dtype)
    dev = resolve_device(device)
    if ckpt.is_local:
        if not Path(ckpt.model).expanduser().is_dir():
            raise TracingBenchError(f"checkpoint folder {ckpt.model} does not exist: check the path")
        check_model_folder(ckpt.model)
    kwargs: dict[str, Any] = {"revision": ckpt.revision} if ckpt.revision else {}
    what = f"checkpoint folder {ckpt.model}" if ckpt.is_local else f"{ckpt.model}@{ckpt.revision or 'main'}"
    try:
        tokenizer = AutoTokenizer.from_pretrained(ckpt.model, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(
            ckpt.model, dtype=td, **({"device_map": dev} if dev != "cpu" else {}), **kwargs
        )
    except TracingBenchError:
        raise
    except Exception as e:
        known = describe_load_error(e, what, dtype=dtype, device=dev, folder=snapshot_folder(ckpt.model, ckpt.revision))
        if known is not None:
            raise known from e
        if not isinstance(e, (OSError, ValueError, KeyError)):
            raise
        if ckpt.is_local:
            raise TracingBenchError(
                f"checkpoint folder {ckpt.model} could not be loaded ({type(e).__name__}: "
                f"{first_line(e, limit=160)}): it needs config.json, "
                "weights and tokenizer files saved with save_pretrained"
            ) from e
        raise _revision_error(ckpt, e) from e
    if dev == "cpu":
        model.to(dev)  # type: ignore[arg-type]  # transformers types .to as its decorator
    model.eval()
    return model, tokenizer


def _get_attr(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def find_blocks(model: Any, blocks_attr: str | None = None) -> tuple[torch.nn.ModuleList, str]:
    """The decoder blocks of a model and their dotted path.

    Args:
        model: a loaded Hugging Face model.
        blocks_attr: override: dotted attribute path of the ``ModuleList`` of blocks.

    Returns:
        ``(blocks, path)``.

    Raises:
        TracingBenchError: no blocks found (names the paths tried and the override).
    """
    # lazy: torch loads on first use, so importing loading stays light
    import torch

    if blocks_attr:
        try:
            blocks = _get_attr(model, blocks_attr)
        except AttributeError:
            blocks = None
        if not isinstance(blocks, torch.nn.ModuleList) or len(blocks) == 0:
            raise TracingBenchError(
                f"--blocks-attr {blocks_attr!r} is not a non-empty ModuleList of {type(model).__name__}: give the "
                "dotted path of the decoder blocks, e.g. model.layers or transformer.h"
            )
        return blocks, blocks_attr
    for path in BLOCK_PATHS:
        try:
            blocks = _get_attr(model, path)
        except AttributeError:
            continue
        if isinstance(blocks, torch.nn.ModuleList) and len(blocks) > 0:
            return blocks, path
    raise TracingBenchError(
        f"no decoder blocks found in {type(model).__name__} (tried {', '.join(BLOCK_PATHS)}): pass "
        "--blocks-attr path.to.blocks (the ModuleList of decoder blocks)"
    )


def n_blocks(model: Any, blocks_attr: str | None = None) -> int:
    """Number of decoder blocks, read from the model."""
    return len(find_blocks(model, blocks_attr)[0])


def hookpoint(model: Any, layer: int, blocks_attr: str | None = None) -> str:
    """Module name of block ``layer`` relative to ``model.base_model`` (lm-eval ``steered`` format).

    ``layers.N`` for Llama and GPT-NeoX, ``h.N`` for GPT-2.

    Args:
        model: a loaded Hugging Face model.
        layer: block index, ``0 <= layer < n_blocks``.
        blocks_attr: override of the blocks' path (see :func:`find_blocks`).

    Returns:
        The module name, e.g. ``"layers.12"``.

    Raises:
        TracingBenchError: layer out of range or blocks outside ``model.base_model``.
    """
    blocks, path = find_blocks(model, blocks_attr)
    if not 0 <= layer < len(blocks):
        raise TracingBenchError(
            f"layer {layer} is out of range: the model has {len(blocks)} blocks (0-{len(blocks) - 1})"
        )
    base = getattr(model, "base_model", model)
    for name, module in base.named_modules():
        if module is blocks:
            return f"{name}.{layer}" if name else str(layer)
    raise TracingBenchError(
        f"the decoder blocks at {path} are not inside {type(base).__name__} (model.base_model): "
        "lm-eval's steered model cannot address them"
    )


def model_hookpoint(model: str, layer: int, revision: str | None = None) -> str:
    """The lm-eval hookpoint of block ``layer`` of a model id or folder, without loading weights.

    Builds the architecture from its config on the ``meta`` device and asks :func:`hookpoint`.

    Raises:
        TracingBenchError: the config cannot be read, or the layer is out of range.
    """
    # lazy: torch and transformers load on first use, so importing loading stays light
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(model, **({"revision": revision} if revision else {}))
    except (OSError, ValueError) as e:
        raise TracingBenchError(
            f"--model {model}{'@' + revision if revision else ''}: its config cannot be read "
            f"({type(e).__name__}); give a Hugging Face id in the local cache or a saved folder"
        ) from None
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    return hookpoint(skeleton, layer)
