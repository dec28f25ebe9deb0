"""Text pairs: the tokenizer's own pair encoding for encoders, a prompt template for decoders."""

from __future__ import annotations

import pytest
import torch
from _helpers import tiny_decoder
from pydantic import ValidationError

from bayeshead.backbones.huggingface import HuggingFaceBackbone
from bayeshead.backbones.pairs import format_pairs
from bayeshead.config import BackboneConfig

A = ["A plane is taking off.", "A man is playing a flute.", "short"]
B = ["An air plane is taking off.", "A man plays the flute on a stage in front of a crowd.", "also short"]


def test_encoder_pairs_tokenize_exactly_as_the_tokenizers_pair_call(minilm_backbone):
    got = minilm_backbone.tokenize(A, B)
    want = minilm_backbone.tokenizer(A, B, padding=True, truncation=True, max_length=64, return_tensors="pt")
    assert set(got) == set(want) and "token_type_ids" in got
    for key in want:
        assert torch.equal(got[key], want[key]), key
    first = minilm_backbone.tokenizer.convert_ids_to_tokens(got["input_ids"][0][got["attention_mask"][0].bool()])
    assert first[0] == "[CLS]" and first.count("[SEP]") == 2
    assert got["token_type_ids"][0].max() == 1  # the second sentence is segment 1


def test_encoder_pair_truncation_matches_the_tokenizer(minilm_backbone):
    long_a, long_b = ["word " * 80], ["other " * 80]
    got = minilm_backbone.tokenize(long_a, long_b)
    want = minilm_backbone.tokenizer(long_a, long_b, padding=True, truncation=True, max_length=64, return_tensors="pt")
    assert got["input_ids"].shape[1] == 64 and torch.equal(got["input_ids"], want["input_ids"])


def test_pairs_change_the_features_and_single_texts_are_unchanged(minilm_backbone):
    with torch.no_grad():
        paired = minilm_backbone.features(minilm_backbone.tokenize(A, B))
        single = minilm_backbone.features(minilm_backbone.tokenize(A))
    assert paired.shape == single.shape and not torch.allclose(paired, single)
    assert torch.equal(minilm_backbone.tokenize(A)["input_ids"], minilm_backbone.tokenizer(A, padding=True, truncation=True, max_length=64, return_tensors="pt")["input_ids"])


def test_decoder_pairs_use_the_template(offline_tokenizer):
    model = tiny_decoder("llama", offline_tokenizer.vocab_size)
    backbone = HuggingFaceBackbone(model, offline_tokenizer, pooling="last_token")
    assert backbone.is_causal_lm
    got = backbone.tokenize(A, B)
    want = backbone.tokenize([f"{a}\n{b}" for a, b in zip(A, B, strict=True)])
    assert torch.equal(got["input_ids"], want["input_ids"])
    custom = HuggingFaceBackbone(model, offline_tokenizer, pooling="last_token", pair_template="S1: {a} S2: {b}")
    assert torch.equal(custom.tokenize(A, B)["input_ids"], custom.tokenize(format_pairs(A, B, "S1: {a} S2: {b}"))["input_ids"])


def test_pair_template_from_the_config_and_its_validation(offline_tokenizer):
    model = tiny_decoder("llama", offline_tokenizer.vocab_size)
    config = BackboneConfig(name_or_path="x", pair_template="Q: {a}\nA: {b}")
    backbone = HuggingFaceBackbone(model, offline_tokenizer, config=config)
    assert backbone.pair_template == "Q: {a}\nA: {b}"
    with pytest.raises(ValidationError, match=r"\{a\} and \{b\}"):
        BackboneConfig(pair_template="{a} {c}")
    with pytest.raises(ValidationError, match=r"\{a\} and \{b\}"):
        BackboneConfig(pair_template="{a}")


def test_bad_pairs_are_refused(minilm_backbone):
    with pytest.raises(ValueError, match="2 texts but 1 text_pair"):
        minilm_backbone.tokenize(A[:2], B[:1])
    with pytest.raises(TypeError, match="text_pair must be strings"):
        minilm_backbone.tokenize(A[:1], [3])
    with pytest.raises(TypeError, match="single str"):
        minilm_backbone.tokenize(A[:1], "b")
