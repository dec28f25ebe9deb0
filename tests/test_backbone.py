"""The Hugging Face backbone: MiniLM offline, tiny random decoders, left vs right padding."""

from __future__ import annotations

import pytest
import torch
from _helpers import TEXTS, tiny_decoder

from bayeshead.backbones.huggingface import HuggingFaceBackbone, resolve_model_path


def test_minilm_loads_offline_and_gives_sentence_embeddings(minilm_backbone):
    assert resolve_model_path("minilm").endswith("model")
    assert minilm_backbone.feature_dim == 384
    with torch.no_grad():
        feats = minilm_backbone.features(minilm_backbone.tokenize(TEXTS))
    assert feats.shape == (len(TEXTS), 384) and feats.dtype == torch.float32
    unit = torch.nn.functional.normalize(feats, dim=-1)
    sims = unit @ unit.T
    # all-MiniLM-L6-v2 is a sentence-similarity model: the two paraphrases are closest.
    assert sims[0, 1] > sims[0, 2] and sims[0, 1] > 0.6


def test_bad_inputs_are_refused(minilm_backbone):
    with pytest.raises(TypeError, match="single str"):
        minilm_backbone.tokenize("one text")
    with pytest.raises(TypeError, match=r"items \[1\]"):
        minilm_backbone.tokenize(["ok", 3])
    with pytest.raises(KeyError, match="attention_mask"):
        minilm_backbone.features({"input_ids": torch.ones(1, 3, dtype=torch.long)})


def test_unknown_local_path_error_says_what_to_do(tmp_path):
    with pytest.raises(OSError, match="cannot load backbone"):
        HuggingFaceBackbone.from_pretrained(str(tmp_path / "no-such-model"))


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gpt2"])
@pytest.mark.parametrize("pooling", ["last_token", "mean", "cls"])
def test_tiny_decoders_give_the_same_features_with_left_and_right_padding(kind, pooling, offline_tokenizer):
    model = tiny_decoder(kind, offline_tokenizer.vocab_size)
    right = HuggingFaceBackbone(model, offline_tokenizer, pooling=pooling, padding_side="right")
    batch_right = right.tokenize(TEXTS)
    with torch.no_grad():
        f_right = right.features(batch_right)
    left = HuggingFaceBackbone(model, offline_tokenizer, pooling=pooling, padding_side="left")
    batch_left = left.tokenize(TEXTS)
    assert not torch.equal(batch_left["attention_mask"], batch_right["attention_mask"])  # padding differs
    with torch.no_grad():
        f_left = left.features(batch_left)
    assert f_right.shape == (len(TEXTS), 32)
    torch.testing.assert_close(f_left, f_right, atol=1e-5, rtol=1e-4)
    assert offline_tokenizer.padding_side == "right"  # the shared tokenizer is not mutated


def test_last_token_of_a_decoder_is_the_final_hidden_state_of_the_unpadded_prompt(offline_tokenizer):
    model = tiny_decoder("llama", offline_tokenizer.vocab_size)
    backbone = HuggingFaceBackbone(model, offline_tokenizer, pooling="last_token")
    with torch.no_grad():
        batched = backbone.features(backbone.tokenize(TEXTS))
        for i, text in enumerate(TEXTS):
            alone = backbone.tokenize([text])
            out = model(**alone, output_hidden_states=True)
            torch.testing.assert_close(batched[i], out.hidden_states[-1][0, -1].float(), atol=1e-5, rtol=1e-4)
