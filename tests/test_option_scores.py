"""The LM's own score of each option as a per-option feature: equal to the full model's logits,
the same on cached prefix states, differentiable in the adapters, and a head started on it
predicts the LM's zero-shot cloze distribution."""

from __future__ import annotations

import pytest
import torch
from test_prefix_cache import _backbone

from bayeshead.backbones.option_groups import flatten_groups
from bayeshead.backbones.option_scores import continuation_positions, continuation_scores
from bayeshead.backbones.prefix_cache import enable_prefix_cache
from bayeshead.config import load_config
from bayeshead.heads.option_scoring import OptionPredictive

GROUPS = [
    ("the cat sat on the mat", "the cat sat on a hat", "the cat ran"),
    ("water boils at one hundred degrees", "water freezes"),
    ("a b c d", "a b c e", "a x", "q"),
]


def _reference_scores(backbone, batch, counts) -> torch.Tensor:
    """Brute force: the full model's vocabulary logits, one option sequence at a time, without
    padding; the mean log-probability of the tokens after the group's common token prefix."""
    model = backbone.model
    ids, mask = batch["input_ids"], batch["attention_mask"]
    out, start = [], 0
    for n in counts.tolist():
        seqs = [ids[i][mask[i] > 0] for i in range(start, start + n)]
        common = 0
        while common < min(map(len, seqs)) and all(s[common] == seqs[0][common] for s in seqs):
            common += 1
        for seq in seqs:
            first = min(max(common, 1), len(seq) - 1)
            logp = torch.log_softmax(model(input_ids=seq[None]).logits[0].float(), -1)
            out.append(torch.stack([logp[j - 1, seq[j]] for j in range(first, len(seq))]).mean())
        start += n
    return torch.stack(out)


@pytest.mark.parametrize("kind", ["llama", "gemma3"])
def test_scores_equal_the_full_models_logits_with_and_without_the_prefix_cache(kind, offline_tokenizer, tmp_path):
    backbone = _backbone(kind, offline_tokenizer, 1, max_length=32)
    flat, counts = flatten_groups(GROUPS)
    batch = backbone.tokenize(flat)
    assert (batch["attention_mask"][:, 0] == 0).any()  # left padding is exercised
    with torch.no_grad():
        reference = _reference_scores(backbone, batch, counts)
        hidden, mask = backbone.full_hidden_states(batch)
        full = continuation_scores(backbone.model, hidden, batch["input_ids"], mask, counts)
    torch.testing.assert_close(full, reference, atol=1e-5, rtol=1e-5)
    cache = enable_prefix_cache(backbone, tmp_path)
    cache.attach(flat)
    with torch.no_grad():
        hidden, mask = backbone.hidden_states(batch)
        cached = continuation_scores(backbone.model, hidden, batch["input_ids"], mask, counts)
    torch.testing.assert_close(cached, reference, atol=1e-5, rtol=1e-5)


def test_continuations_start_after_the_shared_tokens(offline_tokenizer):
    tok = offline_tokenizer
    flat, counts = flatten_groups([("a b c d", "a b c e"), ("x", "x y")])
    batch = tok(flat, padding=True, return_tensors="pt")
    rows, at, before = continuation_positions(batch["input_ids"], batch["attention_mask"], counts)
    # BERT-style ids [CLS] a b c d [SEP]: the shared prefix is [CLS] a b c, so d/e and [SEP] are scored
    assert rows.tolist()[:4] == [0, 0, 1, 1] and (before == at - 1).all()
    assert batch["input_ids"][0, at[0]] == tok.convert_tokens_to_ids("d")
    # "x" is a prefix of "x y": each option keeps at least its last token
    assert set(rows.tolist()) == {0, 1, 2, 3}


def test_a_head_started_on_the_score_predicts_the_zero_shot_distribution_and_trains_the_adapters(offline_tokenizer):
    from _helpers import tiny_decoder

    from bayeshead.backbones.huggingface import HuggingFaceBackbone
    from bayeshead.bench.runner import init_heads_from_answers
    from bayeshead.methods import build_method

    overrides = ["head.kind=vbll_options", "head.predictive=probit", "adapter.kind=lora", "adapter.rank=2",
                 "adapter.target_modules=[q_proj, v_proj]", "backbone.option_lm_score=true",
                 "backbone.model_class=causal_lm", "task.kind=obqa", "task.formulation=options"]
    config = load_config(overrides=["training.progress=false", *overrides])
    net = tiny_decoder("llama", offline_tokenizer.vocab_size, seed=0)
    backbone = HuggingFaceBackbone(net, offline_tokenizer, pooling="last_token", max_length=32,
                                   padding_side="left", config=config.backbone.model_copy(update={
                                       "pooling": "last_token", "max_length": 32, "padding_side": "left"}))
    runner = build_method(config, num_outputs=4, backbone=backbone)
    head = runner.model.head
    assert head.in_features == backbone.feature_dim + 1
    assert init_heads_from_answers(runner, config) == "lm_score"
    groups = [g[:4] for g in GROUPS]
    with torch.no_grad():
        features = runner.model.features(groups)
        flat, counts = flatten_groups(groups)
        batch = backbone.tokenize(flat)
        hidden, mask = backbone.full_hidden_states(batch)
        scores = continuation_scores(backbone.model, hidden, batch["input_ids"], mask, counts)
    assert features.shape == (3, 4, backbone.feature_dim + 1)
    pred = runner.predict(groups)
    mean, var = head.logit_moments(flat_features := features[~torch.isnan(features).all(-1)], counts)
    torch.testing.assert_close(mean, scores.to(mean.dtype), atol=1e-5, rtol=1e-5)  # w = e_last: the LM's score
    expected = OptionPredictive.from_logits(mean / torch.sqrt(1 + torch.pi / 8 * var), counts).padded(4)
    torch.testing.assert_close(pred.probs, expected.probs, atol=1e-6, rtol=1e-5)
    # the score column carries gradient to the adapters
    head.zero_grad()
    head.set_n_train(3)
    loss = head.loss(runner.model.features(groups), torch.tensor([0, 1, 0])).total
    loss.backward()
    grads = [p.grad for n, p in runner.model.backbone.named_parameters() if p.requires_grad and "lora_B" in n]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)
    assert flat_features.shape[1] == head.in_features


def test_the_score_needs_a_causal_lm(offline_tokenizer):
    encoder = torch.nn.Linear(2, 2)
    with pytest.raises(TypeError, match="causal LM"):
        continuation_scores(encoder, torch.zeros(1, 2, 2), torch.zeros(1, 2, dtype=torch.long),
                            torch.ones(1, 2), torch.tensor([1]))
