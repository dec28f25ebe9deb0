"""Causal-LM multiple-choice path: last-token features from the base model, and a C-way head
initialised from the LM-head rows of the answer tokens, so that at initialisation

    z_c = w_{t_c}ᵀ h_last (+ b_{t_c})  ==  the LM's next-token logit of answer c.
"""

from __future__ import annotations

import sys
from typing import Literal

import pytest
import torch
from _helpers import tiny_decoder
from torch import nn

from bayeshead.backbones.answer_head import answer_head_rows, answer_token_ids
from bayeshead.backbones.huggingface import HuggingFaceBackbone
from bayeshead.backbones.pooling import pool
from bayeshead.config import BackboneConfig, load_config
from bayeshead.heads.base import HeadConfig, UncertaintyHead
from bayeshead.heads.init_rows import init_head_from_rows
from bayeshead.model import BayesianModel
from bayeshead.registry import HEADS

KINDS = ["llama", "qwen2", "gpt2"]
PROMPTS = [
    "Question: where do cats sleep? Options: A bed B sea C sky D fire. Answer:",
    "Is water wet? Answer:",
    "Question: which number is the largest of the four numbers listed below? A one B two C three D four. Answer:",
    "Yes?",
]
ANSWER_SETS = {"abcd": [" A", " B", " C", " D"], "true_false": [" true", " false"]}


@pytest.fixture(scope="module")
def decoders(offline_tokenizer):
    return {
        kind: tiny_decoder(kind, offline_tokenizer.vocab_size, seed=i)
        for i, kind in enumerate(KINDS)
    }


def _model(net, tokenizer, head: str, n_answers: int, padding_side: str = "right") -> BayesianModel:
    backbone = HuggingFaceBackbone(net, tokenizer, pooling="last_token", padding_side=padding_side)
    config = load_config(overrides=[f"head.kind={head}", "training.progress=false"])
    return BayesianModel.from_config(config, num_outputs=n_answers, backbone=backbone)


def _mean_logits(head, features):
    """The head's mean logits: W·φ + b (deterministic) or μ = W̄·φ + b (VBLL)."""
    if hasattr(head, "logit_moments"):
        return head.logit_moments(features)[0]
    return head.logits(features)


@torch.no_grad()
def _lm_answer_logits(net, tokenizer, answers):
    """Reference: each prompt alone (no padding) through the full LM; logits at its last token."""
    ids = [tokenizer(a, add_special_tokens=False)["input_ids"][-1] for a in answers]
    rows = []
    for prompt in PROMPTS:
        alone = tokenizer([prompt], return_tensors="pt")
        rows.append(net(**alone).logits[0, -1, ids])
    return torch.stack(rows)


# -- features: base model, final-normed state, no vocabulary logits ------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_causal_lm_features_come_from_the_base_model_without_computing_logits(
    kind, decoders, offline_tokenizer
):
    net = decoders[kind]
    backbone = HuggingFaceBackbone(
        net, offline_tokenizer, pooling="last_token", padding_side="left"
    )
    assert backbone.is_causal_lm
    batch = backbone.tokenize(PROMPTS)
    calls = []
    hook = net.get_output_embeddings().register_forward_hook(lambda *args: calls.append(1))
    try:
        with torch.no_grad():
            features = backbone.features(batch)
        assert calls == []  # the (B, L, vocab) logits were never computed
        positions = (batch["attention_mask"].cumsum(-1) - 1).clamp_min(0)
        with torch.no_grad():
            out = net(**batch, position_ids=positions, output_hidden_states=True)
    finally:
        hook.remove()
    expected = pool(out.hidden_states[-1], batch["attention_mask"], "last_token")
    torch.testing.assert_close(features, expected, atol=1e-6, rtol=0)
    # hidden_states[-1] is the state the LM head multiplies: lm_head(h) gives the logits.
    torch.testing.assert_close(
        net.get_output_embeddings()(out.hidden_states[-1]), out.logits, atol=1e-5, rtol=0
    )


def test_encoder_backbone_is_not_treated_as_a_causal_lm(minilm_backbone):
    assert not minilm_backbone.is_causal_lm
    assert minilm_backbone._feature_model() is minilm_backbone.model


# -- the head starts at the LM's answer logits ----------------------------------------------------
@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("answers", sorted(ANSWER_SETS))
@pytest.mark.parametrize("head", ["deterministic", "vbll_classification"])
@pytest.mark.parametrize("kind", KINDS)
def test_head_initialised_from_answers_gives_the_lm_answer_logits(
    kind, head, answers, padding_side, decoders, offline_tokenizer
):
    net, texts = decoders[kind], ANSWER_SETS[answers]
    model = _model(net, offline_tokenizer, head, len(texts), padding_side)
    batch = model.backbone.tokenize(PROMPTS)
    assert (batch["attention_mask"] == 0).any()  # prompts of different lengths: padding present
    model.init_head_from_answers(texts)
    with torch.no_grad():
        got = _mean_logits(model.head, model.features(batch))
    expected = _lm_answer_logits(net, offline_tokenizer, texts)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_lm_head_bias_rows_are_copied(decoders, offline_tokenizer):
    net = tiny_decoder("llama", offline_tokenizer.vocab_size, seed=7)
    net.lm_head.bias = nn.Parameter(torch.randn(offline_tokenizer.vocab_size))
    texts = ANSWER_SETS["abcd"]
    weight, bias = answer_head_rows(net, offline_tokenizer, texts)
    ids = answer_token_ids(offline_tokenizer, texts)
    torch.testing.assert_close(bias, net.lm_head.bias[ids].detach())
    assert weight.dtype == torch.float32 and weight.shape == (4, 32) and not weight.requires_grad
    model = _model(net, offline_tokenizer, "deterministic", 4, "left")
    model.init_head_from_answers(texts)
    with torch.no_grad():
        got = model.head.logits(model.features(PROMPTS))
    torch.testing.assert_close(
        got, _lm_answer_logits(net, offline_tokenizer, texts), atol=1e-5, rtol=0
    )


def test_rows_are_a_detached_clone(decoders, offline_tokenizer):
    net = decoders["gpt2"]  # tied input/output embeddings
    weight, bias = answer_head_rows(net, offline_tokenizer, [" true", " false"])
    assert bias is None
    before = net.lm_head.weight.detach().clone()
    weight.add_(1.0)
    assert torch.equal(net.lm_head.weight, before)


# -- token ids -------------------------------------------------------------------------------
def _sentencepiece_like_tokenizer():
    """A Metaspace BPE tokenizer without '▁A' / '▁B' merges: ' A' -> ['▁', 'A'] (a bare '▁' first)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "</s>": 1, "▁": 2, "A": 3, "B": 4, "t": 5, "r": 6, "u": 7, "e": 8}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="▁", prepend_scheme="always", split=False
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="</s>")


def test_answer_token_is_the_last_token_after_a_bare_sentencepiece_prefix():
    tokenizer = _sentencepiece_like_tokenizer()
    assert tokenizer(" A", add_special_tokens=False)["input_ids"] == [2, 3]
    assert answer_token_ids(tokenizer, [" A", " B"]) == [3, 4]
    with pytest.warns(UserWarning, match="only the last one"):
        assert answer_token_ids(tokenizer, [" A", " true"]) == [3, 8]


def test_answer_token_ids_of_the_wordpiece_tokenizer(offline_tokenizer):
    ids = answer_token_ids(offline_tokenizer, (" A", " B", " C", " D"))
    assert ids == offline_tokenizer.convert_tokens_to_ids(["a", "b", "c", "d"])


def test_answer_token_ids_refuse_duplicates_and_empty_answers(offline_tokenizer):
    with pytest.raises(
        ValueError, match=r"' A' \(class 0\) and ' a' \(class 2\) map to the same token id"
    ):
        answer_token_ids(offline_tokenizer, [" A", " B", " a"])
    with pytest.raises(ValueError, match="gives no token"):
        answer_token_ids(offline_tokenizer, [" A", ""])
    with pytest.raises(ValueError, match="gives no token"):
        answer_token_ids(offline_tokenizer, [" A", "   "])
    with pytest.raises(ValueError, match="answers is empty"):
        answer_token_ids(offline_tokenizer, [])
    with pytest.raises(TypeError, match="single string"):
        answer_token_ids(offline_tokenizer, " A")
    with pytest.raises(TypeError, match=r"items \[1\]"):
        answer_token_ids(offline_tokenizer, [" A", 3])


def test_encoder_has_no_answer_rows(minilm_backbone):
    with pytest.raises(ValueError, match="model_class=causal_lm"):
        minilm_backbone.answer_head_rows([" A", " B"])
    model = BayesianModel.from_config(load_config(), num_outputs=2, backbone=minilm_backbone)
    with pytest.raises(ValueError, match="model_class=causal_lm"):
        model.init_head_from_answers([" A", " B"])


def test_init_head_from_answers_checks_the_answers(decoders, offline_tokenizer):
    model = _model(decoders["llama"], offline_tokenizer, "deterministic", 4)
    with pytest.raises(ValueError, match="got 2 answers .* 4 classes"):
        model.init_head_from_answers([" A", " B"])
    with pytest.raises(TypeError, match="list of strings"):
        model.init_head_from_answers(" A")


# -- init_head_from_rows on every head kind ------------------------------------------------------
def _head(kind: str, c: int = 3, d: int = 8, **options):
    cls = HEADS.get(kind)
    return cls(d, c, cls.Config(**options))


def _rows(c: int = 3, d: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(c, d, generator=g, dtype=torch.float64), torch.randn(
        c, generator=g, dtype=torch.float64
    )


@pytest.mark.parametrize(
    "kind", ["deterministic", "temperature", "mc_dropout", "laplace"]
)
def test_linear_heads_take_the_rows_and_bias(kind):
    head = _head(kind)
    weight, bias = _rows()
    assert init_head_from_rows(head, weight, bias) is head
    assert head.linear.weight.dtype == torch.float32
    torch.testing.assert_close(head.linear.weight, weight.float())
    torch.testing.assert_close(head.linear.bias, bias.float())
    init_head_from_rows(head, weight)  # no bias given: the head's bias is zeroed
    assert torch.equal(head.linear.bias, torch.zeros(3))


def test_ensemble_sets_every_member():
    head = _head("ensemble", members=3)
    weight, bias = _rows()
    init_head_from_rows(head, weight, bias)
    for member in head.members:
        torch.testing.assert_close(member.weight, weight.float())
        torch.testing.assert_close(member.bias, bias.float())
    phi = torch.randn(5, 8)
    logits = head.member_logits(phi)
    torch.testing.assert_close(logits, (phi @ weight.float().T + bias.float()).expand(3, -1, -1))


def test_vbll_heads_use_init_from_linear():
    weight, bias = _rows()
    head = _head("vbll_classification", bias=True)
    head.bias.data.fill_(5.0)
    init_head_from_rows(head, weight)
    torch.testing.assert_close(head.posterior.mean, weight.float())
    assert torch.equal(head.bias, torch.zeros(3))  # zeroed: logits are exactly W·φ
    init_head_from_rows(head, weight, bias)
    torch.testing.assert_close(head.bias, bias.float())
    without_bias = _head("vbll_classification")
    with pytest.raises(ValueError, match="bias"):
        init_head_from_rows(without_bias, weight, bias)
    generative = _head("vbll_generative_classification")
    init_head_from_rows(generative, weight)
    torch.testing.assert_close(generative.posterior.mean, weight.float() * generative.noise_var())


def test_a_fitted_laplace_posterior_is_marked_stale():
    head = _head("laplace")
    phi, y = torch.randn(20, 8), torch.randint(0, 3, (20,))
    head.fit_posthoc(phi, y)
    assert head.is_fitted
    init_head_from_rows(head, *_rows())
    assert not head.is_fitted


def test_init_head_from_rows_checks_shapes():
    head = _head("deterministic", c=4, d=8)
    with pytest.raises(ValueError, match=r"expects rows of shape \(4, 8\); got \(3, 8\)"):
        init_head_from_rows(head, torch.zeros(3, 8))
    with pytest.raises(ValueError, match=r"expects rows of shape \(4, 8\); got \(4, 7\)"):
        init_head_from_rows(head, torch.zeros(4, 7))
    with pytest.raises(ValueError, match=r"bias of shape \(4,\)"):
        init_head_from_rows(head, torch.zeros(4, 8), torch.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        init_head_from_rows(head, torch.full((4, 8), float("nan")))


class _NoRowsConfig(HeadConfig):
    kind: Literal["no_rows"] = "no_rows"


class _NoRowsHead(UncertaintyHead):
    Config = _NoRowsConfig

    def loss(self, features, targets):  # pragma: no cover - never called
        raise NotImplementedError

    def predict(self, features, *, n_samples=None, generator=None):  # pragma: no cover
        raise NotImplementedError


def test_unsupported_head_is_refused():
    with pytest.raises(
        TypeError,
        match=r"'no_rows' \(_NoRowsHead\) head has no class weight rows.*Supported: .*deterministic",
    ):
        init_head_from_rows(_NoRowsHead(8, 3), torch.zeros(3, 8))
    with pytest.raises(TypeError, match="expected an UncertaintyHead"):
        init_head_from_rows(nn.Linear(8, 3), torch.zeros(3, 8))


# -- device and 8-bit ----------------------------------------------------------------------------
def test_8bit_needs_a_gpu(monkeypatch):
    for device in (None, "cpu"):
        if device is None and torch.cuda.is_available():
            continue
        with pytest.raises(RuntimeError, match="load_in_8bit=true needs a CUDA GPU.*GPU-only"):
            HuggingFaceBackbone.from_config(
                BackboneConfig(name_or_path="minilm", load_in_8bit=True, device=device)
            )
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU is usable.*load_in_8bit=false"):
            HuggingFaceBackbone.from_config(
                BackboneConfig(name_or_path="minilm", load_in_8bit=True, device="cuda")
            )


def test_8bit_without_bitsandbytes_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # `import bitsandbytes` raises ImportError
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU, but no bitsandbytes
    with pytest.raises(ImportError, match="pip install bitsandbytes"):
        HuggingFaceBackbone.from_config(
            BackboneConfig(name_or_path="minilm", load_in_8bit=True, device="cuda")
        )


def test_device_option(monkeypatch):
    with pytest.raises(ValueError, match="torch device"):
        BackboneConfig(device="gpu0")
    assert BackboneConfig().device is None and not BackboneConfig().load_in_8bit
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="device='cuda' but no CUDA GPU"):
            HuggingFaceBackbone.from_config(BackboneConfig(name_or_path="minilm", device="cuda"))
    backbone = HuggingFaceBackbone.from_config(BackboneConfig(name_or_path="minilm", device="auto"))
    assert backbone.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_head_is_built_on_the_backbone_device(offline_tokenizer):
    net = tiny_decoder("llama", 64).to("meta")
    backbone = HuggingFaceBackbone(net, offline_tokenizer, pooling="last_token")
    config = load_config(overrides=["head.kind=vbll_classification"])
    model = BayesianModel.from_config(config, num_outputs=2, backbone=backbone)
    assert all(p.device.type == "meta" for p in model.head.parameters())
