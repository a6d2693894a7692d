"""Fixtures: tiny models of three architectures saved to a temporary folder (no download)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tiny import ARCHS, build_model, train_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    return train_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, tiny_tokenizer) -> dict[str, Path]:
    """Folder of a saved tiny model per architecture: ``llama``, ``gpt_neox``, ``gpt2``."""
    root = tmp_path_factory.mktemp("models")
    return {arch: build_model(arch, tiny_tokenizer, root / arch) for arch in ARCHS}


@pytest.fixture(scope="session")
def tiny_llama(tiny_models) -> Path:
    return tiny_models["llama"]


@pytest.fixture(params=ARCHS)
def tiny_model(request, tiny_models) -> Path:
    """Each architecture in turn."""
    return tiny_models[request.param]
