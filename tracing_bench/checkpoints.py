"""Checkpoints and checkpoint series: naming, step numbers, loading, and finding decoder blocks.

A checkpoint is a Hugging Face model id or a local folder plus an optional revision (a branch,
tag or commit of the hub repository). A *series* is an ordered list of checkpoints, given either
as ``--model ID --revisions r1,r2,...`` or as a folder with one sub-folder per checkpoint.

Revision lists (:func:`parse_revisions`) are comma-separated items; each item is a revision name
or one of these shorthands:

* ``ckpt_000:ckpt_359:10``: LLM360 Amber style ``ckpt_NNN``, every 10th from 0 to 359
  (zero padding taken from the first endpoint; the stride defaults to 1);
* ``step1000:step143000:1000``: Pythia style ``stepN``, every 1000th step;
* ``pythia-log``: Pythia's log-spaced early checkpoints ``step0,step1,step2,step4,...,step512``;
* ``step1000-tokens4B:step10000-tokens42B:1000`` (or ``step1000-tokens*:step10000-tokens*:1000``):
  OLMo style ``stepN-tokensMB``. The token counts cannot be computed from the step reliably, so
  such a range is resolved against the revisions the repository has (the local Hugging Face
  cache when offline, the hub's branch list otherwise): every ``stepN-tokens...`` revision with
  ``A <= N <= B`` and ``(N - A) % stride == 0``.

The *step* of a checkpoint (:func:`parse_step`) is the integer in its revision or folder name:
``ckpt_179`` -> 179, ``step1000`` -> 1000, ``step1000-tokens4B`` -> 1000, ``checkpoint-250`` ->
250, ``iter_0005000`` -> 5000, a name that is only digits -> that number; otherwise ``None``.

Decoder blocks (:func:`find_blocks`) are looked up at ``model.layers`` (Llama, Mistral, Qwen,
OLMo, Gemma, ...), ``gpt_neox.layers`` (GPT-NeoX / Pythia), ``transformer.h`` (GPT-2, GPT-J,
Falcon, ...), ``model.decoder.layers`` (OPT), ``transformer.blocks`` (MPT) and
``model.transformer.blocks`` (old OLMo code). Any other architecture works through an explicit
override ``blocks_attr="path.to.blocks"`` (CLI ``--blocks-attr``): the dotted attribute path,
from the loaded model, of the ``torch.nn.ModuleList`` of decoder blocks. The number of blocks is
always read from that list, never assumed.

>>> series = resolve_series("EleutherAI/pythia-160m", "pythia-log,step1000:step3000:1000")
>>> [c.label for c in series][:3]
['step0', 'step1', 'step2']
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tracing_bench.errors import TracingBenchError, first_line

if TYPE_CHECKING:  # pragma: no cover
    import torch

DType = Literal["auto", "float32", "bfloat16", "float16"]
Device = Literal["auto", "cpu", "cuda"]
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

#: The Pythia log-spaced early revisions.
PYTHIA_LOG: tuple[str, ...] = tuple(["step0"] + [f"step{2**i}" for i in range(10)])

_STEP_RE = re.compile(
    r"(?:^|[^a-z])(?:ckpt|step|checkpoint|iter|global[_-]?step)[_-]?(\d+)", re.IGNORECASE
)
_RANGE_END_RE = re.compile(r"^(ckpt_|step)(\d+)(-tokens(?:\d+[KMBT]?|\*))?$")
_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def parse_step(name: str | None) -> int | None:
    """The step number in a revision or folder name, or ``None``.

    Args:
        name: a revision (``ckpt_179``, ``step1000``, ``step1000-tokens4B``) or folder name
            (``checkpoint-250``, ``step10``, ``0005000``).

    Returns:
        The integer, or ``None`` when the name carries no step.

    >>> parse_step("step1000-tokens4B")
    1000
    """
    if not name:
        return None
    if name.isdigit():
        return int(name)
    m = _STEP_RE.search(name)
    return int(m.group(1)) if m else None


def _is_folder_spec(model: str) -> bool:
    """True when ``model`` names a local folder (exists, or cannot be a hub repo id)."""
    if os.path.isdir(os.path.expanduser(model)):
        return True
    return not _REPO_ID_RE.match(model) or model.startswith((".", "~", "/")) or model.count("/") > 1


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint: a hub model id or local folder, and an optional revision.

    Attributes:
        model: Hugging Face model id (``LLM360/Amber``) or path of a folder holding
            ``config.json`` and weights.
        revision: branch, tag or commit of a hub repository (``ckpt_179``, ``step1000``);
            ``None`` for the default branch or a local folder.
    """

    model: str
    revision: str | None = None

    @property
    def is_local(self) -> bool:
        """Whether the checkpoint is a local folder (never deleted by ``--delete-checkpoints``)."""
        return _is_folder_spec(self.model)

    @property
    def step(self) -> int | None:
        """The step number parsed from the revision, else from the folder name."""
        if self.revision:
            return parse_step(self.revision)
        if self.is_local:
            return parse_step(Path(self.model).name)
        return None

    @property
    def label(self) -> str:
        """A short human name: the revision, else the folder name, else the model id."""
        if self.revision:
            return self.revision
        if self.is_local:
            return Path(self.model).name
        return self.model

    def resolved_commit(self) -> str | None:
        """The hub commit this revision resolves to in the local cache, or ``None``.

        ``None`` for local folders and for revisions not (yet) downloaded.
        """
        if self.is_local:
            return None
        return _cached_commit(self.model, self.revision)


# ------------------------------------------------------------------------------ revisions
def parse_revisions(spec: str, *, model: str | None = None) -> list[str]:
    """Expand a comma-separated revision list with range shorthands (see the module docstring).

    Args:
        spec: e.g. ``"ckpt_000:ckpt_359:10"``, ``"pythia-log,step1000:step143000:1000"``,
            ``"step1000-tokens4B:step5000-tokens21B:1000"``, ``"main"``.
        model: the hub model id; needed only for OLMo ``stepN-tokens`` ranges, which are
            resolved against the repository's revisions.

    Returns:
        Revision names in the given order, duplicates removed.

    Raises:
        TracingBenchError: malformed range (one line naming the item and the valid forms).
    """
    out: list[str] = []
    items = [s.strip() for s in spec.split(",")]
    if not any(items):
        raise TracingBenchError(
            f"--revisions {spec!r} is empty: give a comma list of revisions, e.g. step1000,step2000 "
            "or ckpt_000:ckpt_359:10"
        )
    for item in items:
        if not item:
            continue
        if item == "pythia-log":
            out.extend(PYTHIA_LOG)
        elif ":" in item:
            out.extend(_expand_range(item, model))
        else:
            out.append(item)
    seen: set[str] = set()
    return [r for r in out if not (r in seen or seen.add(r))]


_RANGE_HELP = (
    "valid ranges: ckpt_000:ckpt_359:10 (Amber), step1000:step143000:1000 (Pythia), "
    "step1000-tokens4B:step9000-tokens38B:1000 (OLMo), or pythia-log"
)


def _expand_range(item: str, model: str | None) -> list[str]:
    parts = item.split(":")
    if len(parts) not in (2, 3):
        raise TracingBenchError(f"revision range {item!r} is malformed: use START:END[:STRIDE]; {_RANGE_HELP}")
    m1, m2 = _RANGE_END_RE.match(parts[0]), _RANGE_END_RE.match(parts[1])
    if not m1 or not m2:
        raise TracingBenchError(f"revision range {item!r} has an endpoint that is not ckpt_N, stepN or stepN-tokensX; {_RANGE_HELP}")
    if m1.group(1) != m2.group(1) or bool(m1.group(3)) != bool(m2.group(3)):
        raise TracingBenchError(f"revision range {item!r} mixes naming styles: both ends must be alike; {_RANGE_HELP}")
    try:
        stride = int(parts[2]) if len(parts) == 3 else 1
    except ValueError:
        stride = 0
    if stride <= 0:
        raise TracingBenchError(f"revision range {item!r} has stride {parts[2]!r}: the stride must be a positive integer")
    start, end = int(m1.group(2)), int(m2.group(2))
    if start > end:
        raise TracingBenchError(f"revision range {item!r} runs backwards: the start ({start}) must not exceed the end ({end})")
    if m1.group(3):  # OLMo: resolve against the repository's revisions
        if model is None:
            raise TracingBenchError(f"revision range {item!r} (OLMo stepN-tokens) needs --model to list its revisions")
        available = list_revisions(model)
        found = sorted(
            (int(m.group(1)), r)
            for r in available
            if (m := re.fullmatch(r"step(\d+)-tokens\w+", r))
            and start <= int(m.group(1)) <= end
            and (int(m.group(1)) - start) % stride == 0
        )
        if not found:
            raise TracingBenchError(
                f"revision range {item!r} matches none of the {len(available)} revisions known for {model} "
                f"(local cache or hub); list them with huggingface_hub.list_repo_refs or give names explicitly"
            )
        return [r for _, r in found]
    if m1.group(1) == "ckpt_":
        width = len(m1.group(2))
        return [f"ckpt_{n:0{width}d}" for n in range(start, end + 1, stride)]
    return [f"step{n}" for n in range(start, end + 1, stride)]


def _hub_cache_dir() -> Path:
    import huggingface_hub.constants as c

    return Path(c.HF_HUB_CACHE)


def _repo_cache(model: str) -> Path:
    return _hub_cache_dir() / ("models--" + model.replace("/", "--"))


def cached_revisions(model: str) -> list[str]:
    """Revisions of a hub model present in the local Hugging Face cache (names under ``refs/``)."""
    refs = _repo_cache(model) / "refs"
    if not refs.is_dir():
        return []
    return sorted(p.relative_to(refs).as_posix() for p in refs.rglob("*") if p.is_file())


def list_revisions(model: str) -> list[str]:
    """Revisions of a hub model: the hub's branches and tags when online, else the local cache's."""
    import huggingface_hub.constants as c

    if not c.HF_HUB_OFFLINE:
        try:
            from huggingface_hub import list_repo_refs

            refs = list_repo_refs(model)
            return sorted({b.name for b in refs.branches} | {t.name for t in refs.tags})
        except Exception:  # noqa: BLE001 - fall back to what is cached
            pass
    return cached_revisions(model)


def _cached_commit(model: str, revision: str | None) -> str | None:
    rev = revision or "main"
    if re.fullmatch(r"[0-9a-f]{40}", rev):
        return rev
    ref = _repo_cache(model) / "refs" / rev
    try:
        commit = ref.read_text().strip()
    except OSError:
        return None
    return commit if re.fullmatch(r"[0-9a-f]{40}", commit) else None


# --------------------------------------------------------------------------------- series
def _folder_series(folder: Path) -> list[Checkpoint]:
    subs = [p for p in sorted(folder.iterdir()) if p.is_dir() and (p / "config.json").is_file()]
    if not subs:
        raise TracingBenchError(
            f"checkpoint folder {folder} has no config.json and no sub-folders holding one: give a model "
            "folder (saved with save_pretrained) or a folder of such checkpoint folders"
        )
    unnumbered = [p.name for p in subs if parse_step(p.name) is None]
    if unnumbered:
        raise TracingBenchError(
            f"checkpoint sub-folders {', '.join(unnumbered[:5])} of {folder} carry no step number, so the series "
            "cannot be ordered: name them like step100, ckpt_010 or checkpoint-250"
        )
    subs.sort(key=lambda p: (parse_step(p.name), p.name))
    return [Checkpoint(str(p.resolve())) for p in subs]


def resolve_series(model: str, revisions: str | list[str] | None = None) -> list[Checkpoint]:
    """The ordered checkpoints of a series.

    Args:
        model: hub model id, a model folder, or a folder of checkpoint sub-folders (each with
            ``config.json``; ordered by the step number in the sub-folder name).
        revisions: comma list / list of revisions with shorthands (:func:`parse_revisions`);
            only for hub ids. ``None``: the default branch (or the folder's checkpoints).

    Returns:
        A list of :class:`Checkpoint`.

    Raises:
        TracingBenchError: missing folder, revisions given for a folder, an empty revision list
            (``--revisions ""``), malformed ranges.
    """
    text = None if revisions is None else (
        revisions if isinstance(revisions, str) else ",".join(str(r) for r in revisions))
    if text is not None and not text.replace(",", "").strip():
        raise TracingBenchError(
            f"--revisions {text!r} names no revision: give revisions such as step1000,step2000 or "
            "ckpt_000:ckpt_359:10, or leave --revisions out (the default branch, or a folder's checkpoints)"
        )
    if _is_folder_spec(model):
        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise TracingBenchError(
                f"checkpoint folder {model} does not exist: give an existing folder or a Hugging Face model id "
                "like EleutherAI/pythia-160m"
            )
        if text:
            raise TracingBenchError(
                f"--revisions applies to hub model ids, but {model} is a local folder: drop --revisions "
                "(a folder of sub-folders step0, step10, ... is a series by itself)"
            )
        if (folder / "config.json").is_file():
            return [Checkpoint(str(folder.resolve()))]
        return _folder_series(folder)
    if text is None:
        return [Checkpoint(model)]
    revs = parse_revisions(text, model=model)
    return [Checkpoint(model, r) for r in revs]


# ---------------------------------------------------------------------------------- loading
def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` if available else ``cpu``; validates the name."""
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
    import torch

    if dtype not in DTYPES:
        raise TracingBenchError(f"--dtype {dtype!r} is not valid: use one of {', '.join(DTYPES)}")
    return "auto" if dtype == "auto" else getattr(torch, dtype)


def _revision_error(ckpt: Checkpoint, err: Exception) -> TracingBenchError:
    import huggingface_hub.constants as c

    found = cached_revisions(ckpt.model)
    where = "offline (HF_HUB_OFFLINE=1)" if c.HF_HUB_OFFLINE else "on the hub or in the local cache"
    listing = (
        f"revisions in the local cache: {', '.join(found)}" if found else f"no revision of {ckpt.model} is in the local cache"
    )
    cause = first_line(err, limit=160)
    return TracingBenchError(
        f"revision {ckpt.revision or 'main'!r} of {ckpt.model} could not be loaded {where}: {listing}; "
        f"check the name or the network ({type(err).__name__}: {cause})"
    )


#: Files any one of which lets ``AutoTokenizer`` build a tokenizer from a folder.
TOKENIZER_FILES: tuple[str, ...] = (
    "tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "vocab.txt", "sentencepiece.bpe.model",
)
#: Weight files ``from_pretrained`` reads (single file or sharded index).
WEIGHT_FILES: tuple[str, ...] = (
    "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
)


def _safetensors_problem(path: Path) -> str | None:
    """Why a ``.safetensors`` file is unusable (truncated, bad header), or ``None``; reads the header only."""
    import json

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
    import json

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
    if tokenizer and not any((folder / name).is_file() for name in TOKENIZER_FILES) \
            and not list(folder.glob("*.tiktoken")):
        raise TracingBenchError(
            f"{named} has no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...); copy them from the "
            f"model it was trained from, or save them with tokenizer.save_pretrained('{folder}')"
        )


def describe_load_error(e: BaseException, what: str, *, dtype: str = "auto", device: str = "auto",
                        folder: str | os.PathLike | None = None) -> TracingBenchError | None:
    """A one-line error for a model that failed to load, or ``None`` when the cause is not recognised.

    Recognised: out of memory, truncated or corrupt weight files, weights that do not match
    ``config.json``, an architecture transformers does not know, unusable tokenizer files.

    Args:
        e: the exception ``from_pretrained`` (or lm-eval) raised.
        what: how to name the model (``checkpoint folder X``, ``X@rev``).
        dtype, device: the settings used (named in the out-of-memory advice).
        folder: the model's folder if local (to name the broken weight file).
    """
    import torch

    text = str(e)
    name = type(e).__name__
    if isinstance(e, (MemoryError, torch.OutOfMemoryError)) or (
        isinstance(e, RuntimeError) and ("out of memory" in text.lower() or "can't allocate memory" in text
                                         or "DefaultCPUAllocator" in text)
    ):
        return TracingBenchError(
            f"not enough memory to load or run {what} (dtype {dtype}, device {device}): {first_line(e, limit=160)}; use --dtype bfloat16 "
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
    if isinstance(e, (ValueError, KeyError)) and ("does not recognize this architecture" in text
                                                  or "Unrecognized model" in text):
        return TracingBenchError(
            f"{what}: transformers does not know its architecture ({first_line(e, limit=160)[:120]}); upgrade transformers "
            "(pip install -U transformers) or correct model_type in config.json"
        )
    if isinstance(e, (OSError, ValueError)) and ("backend tokenizer" in text or "Can't load tokenizer" in text):
        return TracingBenchError(
            f"the tokenizer of {what} cannot be loaded ({first_line(e, limit=160)[:120]}); the folder needs tokenizer files "
            f"({', '.join(TOKENIZER_FILES[:3])}, ...) saved with tokenizer.save_pretrained"
        )
    return None


def snapshot_folder(model: str, revision: str | None = None) -> Path | None:
    """The local folder holding ``model`` (a folder as given, or its Hugging Face cache snapshot), or ``None``."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json", revision=revision)
    except Exception:  # noqa: BLE001 - not a repo id, no cache: nothing local to name
        return None
    return Path(cached).parent if isinstance(cached, str) else None


def load_checkpoint(
    ckpt: Checkpoint, *, dtype: str = "auto", device: str = "auto"
) -> tuple[Any, Any]:
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
    except Exception as e:  # noqa: BLE001 - every load failure becomes one line
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
        model.to(dev)
    model.eval()
    return model, tokenizer


def _get_attr(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def find_blocks(model: Any, blocks_attr: str | None = None) -> tuple["torch.nn.ModuleList", str]:
    """The decoder blocks of a model and their dotted path.

    Args:
        model: a loaded Hugging Face model.
        blocks_attr: override: dotted attribute path of the ``ModuleList`` of blocks.

    Returns:
        ``(blocks, path)``.

    Raises:
        TracingBenchError: no blocks found (names the paths tried and the override).
    """
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
