"""Cached frozen layers: the top-k forward from cached prefix states equals the full forward
(last-token features and answer-token logits, left padding, Llama / Qwen2 / Gemma-3, k = 0, 1, n),
never runs the bottom blocks, back-propagates like the full forward, is keyed by model, data and
prompt, detects truncated files, and is what training and sampling methods run."""

from __future__ import annotations

import pytest
import torch
from _helpers import SENTIMENT, TEXTS
from hypothesis import given, settings
from hypothesis import strategies as st

from bayeshead.adapters import LoRAConfig, inject_adapters
from bayeshead.backbones.answer_logits import answer_logits
from bayeshead.backbones.huggingface import HuggingFaceBackbone
from bayeshead.backbones.prefix_cache import PrefixCache, adapted_top_blocks, enable_prefix_cache
from bayeshead.backbones.prefix_store import PrefixCacheError, PrefixCacheMismatch

N_BLOCKS = 4
ANSWERS = [" yes", " no", " maybe"]
MORE_TEXTS = ["A completely different sentence about boats.", "Rain again today", "ok"]


def _decoder(kind: str, vocab_size: int, seed: int = 0):
    """A random 4-block causal LM; Gemma-3 and Qwen2 mix sliding-window and full-attention blocks
    (window 3, shorter than the prompts), so each block must keep its own attention type."""
    from transformers import AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig, Qwen2Config

    common = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=N_BLOCKS, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=vocab_size, max_position_embeddings=128,
    )
    if kind == "llama":
        config = LlamaConfig(**common)
    elif kind == "qwen2":
        config = Qwen2Config(**common, use_sliding_window=True, sliding_window=3, max_window_layers=1)
    elif kind == "gemma3":
        config = Gemma3TextConfig(
            **common, head_dim=8, sliding_window=3,
            layer_types=["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"],
        )
    else:
        raise ValueError(kind)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).eval()


def _backbone(kind: str, tokenizer, k: int, seed: int = 0, max_length: int = 24) -> HuggingFaceBackbone:
    net = _decoder(kind, tokenizer.vocab_size, seed)
    if k:
        inject_adapters(net, LoRAConfig(rank=2, target_modules=["q_proj", "v_proj"], top_layers=k))
        with torch.no_grad():  # non-zero updates, so the adapted blocks differ from the base ones
            for name, p in net.named_parameters():
                if p.requires_grad:
                    p.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(len(name)))
    else:
        net.requires_grad_(False)
    return HuggingFaceBackbone(net, tokenizer, pooling="last_token", max_length=max_length, padding_side="left")


def _lm_answer_logits(backbone: HuggingFaceBackbone, batch) -> torch.Tensor:
    """Reference: the full model's vocabulary logits at the last token, answer columns."""
    from bayeshead.backbones.answer_head import answer_token_ids

    mask = batch["attention_mask"]
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    logits = backbone.model(
        input_ids=batch["input_ids"], attention_mask=mask, position_ids=positions, use_cache=False
    ).logits
    assert (mask[:, -1] == 1).all()  # left padding: the last column is every prompt's last token
    return logits[:, -1, answer_token_ids(backbone.tokenizer, ANSWERS)]


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gemma3"])
@pytest.mark.parametrize("k", [0, 1, N_BLOCKS])
def test_cached_forward_equals_full_forward(kind, k, offline_tokenizer, tmp_path):
    backbone = _backbone(kind, offline_tokenizer, k)
    batch = backbone.tokenize(TEXTS)
    assert (batch["attention_mask"][:, 0] == 0).any()  # left padding is exercised
    with torch.no_grad():
        full = backbone.full_features(batch)
        reference_logits = _lm_answer_logits(backbone, batch)
    cache = enable_prefix_cache(backbone, tmp_path)
    assert cache.k == k and adapted_top_blocks(backbone.model) == k
    cache.attach(TEXTS)
    calls = []
    hooks = [
        block.register_forward_hook(lambda *a, i=i: calls.append(i))
        for i, block in enumerate(backbone.model.base_model.layers)
    ]
    with torch.no_grad():
        cached = backbone.features(batch)
    for hook in hooks:
        hook.remove()
    assert calls == list(range(N_BLOCKS - k, N_BLOCKS))  # only the top k blocks ran
    assert cache.stats.disk == len(TEXTS) and cache.stats.computed == len(TEXTS)  # computed once, at attach
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=0)
    torch.testing.assert_close(answer_logits(backbone, cached, ANSWERS), reference_logits, atol=1e-5, rtol=0)
    # another batch composition and padding side finds the same per-example states
    backbone.padding_side = "right"
    again = backbone.features(backbone.tokenize(TEXTS[::-1]))
    torch.testing.assert_close(again, full.flip(0), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["llama", "gemma3"])
def test_gradients_of_the_adapters_match_the_full_forward(kind, offline_tokenizer, tmp_path):
    backbone = _backbone(kind, offline_tokenizer, 2)
    batch = backbone.tokenize(TEXTS)
    params = [p for p in backbone.parameters() if p.requires_grad]
    weight = torch.randn(backbone.feature_dim, generator=torch.Generator().manual_seed(1))
    full = torch.autograd.grad((backbone.full_features(batch) @ weight).sum(), params)
    enable_prefix_cache(backbone, tmp_path)
    cached = torch.autograd.grad((backbone.features(batch) @ weight).sum(), params)
    for a, b in zip(cached, full, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_unattached_examples_are_computed_once_and_kept_in_memory(offline_tokenizer, tmp_path):
    backbone = _backbone("llama", offline_tokenizer, 1)
    cache = enable_prefix_cache(backbone, tmp_path)
    batch = backbone.tokenize(MORE_TEXTS)
    first = backbone.features(batch)
    second = backbone.features(batch)
    assert (cache.stats.computed, cache.stats.memory, cache.stats.disk) == (3, 3, 0)
    torch.testing.assert_close(first, second, atol=0, rtol=0)
    torch.testing.assert_close(first, backbone.full_features(batch), atol=1e-5, rtol=0)
    assert not list(tmp_path.iterdir())  # nothing written for data that was never attached


def test_reuse_across_instances_and_refusal_of_other_data_prompt_or_model(offline_tokenizer, tmp_path):
    backbone = _backbone("llama", offline_tokenizer, 1)
    store = PrefixCache(backbone, tmp_path).attach(TEXTS)
    folder = store.folder
    again = PrefixCache(backbone, tmp_path)
    assert again.attach(TEXTS).folder == folder and again.stats.written == []  # reused from disk
    with pytest.raises(PrefixCacheMismatch, match="data"):
        PrefixCache(backbone, tmp_path).attach(MORE_TEXTS, folder=folder)
    shorter = HuggingFaceBackbone(backbone.model, offline_tokenizer, pooling="last_token", max_length=6,
                                  padding_side="left")
    with pytest.raises(PrefixCacheMismatch, match="prompt"):
        PrefixCache(shorter, tmp_path).attach(TEXTS, folder=folder)
    other = _backbone("llama", offline_tokenizer, 1, seed=1)
    with pytest.raises(PrefixCacheMismatch, match="model"):
        PrefixCache(other, tmp_path).attach(TEXTS, folder=folder)
    # by default each of them gets its own folder instead
    assert PrefixCache(other, tmp_path).attach(TEXTS).folder != folder
    assert PrefixCache(shorter, tmp_path).attach(TEXTS).folder != folder


def test_a_truncated_cache_file_is_detected(offline_tokenizer, tmp_path):
    backbone = _backbone("qwen2", offline_tokenizer, 1)
    folder = PrefixCache(backbone, tmp_path).attach(TEXTS).folder
    states = folder / "states.bin"
    states.write_bytes(states.read_bytes()[:-4])
    with pytest.raises(PrefixCacheError, match="truncated"):
        PrefixCache(backbone, tmp_path).attach(TEXTS, folder=folder)
    rebuilt = PrefixCache(backbone, tmp_path)  # at its default place a corrupt folder is rebuilt
    assert rebuilt.attach(TEXTS).folder == folder and rebuilt.stats.written == [str(folder)]
    (folder / "manifest.json").unlink()  # an interrupted write: no manifest
    with pytest.raises(PrefixCacheError, match="manifest"):
        PrefixCache(backbone, tmp_path).attach(TEXTS, folder=folder)


def _model(tokenizer, cache: bool, tmp_path, *overrides: str):
    from bayeshead.config import load_config
    from bayeshead.model import BayesianModel

    config = load_config(overrides=[
        "training.progress=false", "training.batch_size=4", "training.epochs=2", "training.head_lr=0.01",
        "adapter.kind=lora", "adapter.rank=2", "adapter.top_layers=1", "adapter.target_modules=[q_proj, v_proj]",
        f"backbone.cache_prefix={str(cache).lower()}", f"backbone.cache_dir={tmp_path}", *overrides,
    ])
    net = _decoder("llama", tokenizer.vocab_size)
    backbone = HuggingFaceBackbone(net, tokenizer, pooling="last_token", max_length=16, padding_side="left",
                                   config=config.backbone)
    torch.manual_seed(0)
    return BayesianModel.from_config(config, num_outputs=2, backbone=backbone)


def test_training_with_cached_prefix_matches_full_depth_training(offline_tokenizer, tmp_path):
    from bayeshead.data import TextDataset

    texts, labels = SENTIMENT
    train, val = TextDataset(texts[:8], labels[:8]), TextDataset(texts[8:], labels[8:])
    plain = _model(offline_tokenizer, False, tmp_path)
    plain.fit(train, val)
    cached = _model(offline_tokenizer, True, tmp_path)
    cached.fit(train, val)
    cache = cached.backbone.__dict__["_prefix_cache"]
    assert len(cache.stats.written) == 2 and cache.stats.computed == len(texts)  # both splits, once each
    assert cache.stats.disk > 0
    for (name, a), b in zip(cached.named_parameters(), plain.parameters(), strict=True):
        if a.requires_grad:
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4, msg=name)
    probe = ["great fun", "so dull"]
    torch.testing.assert_close(cached.predict(probe).probs, plain.predict(probe).probs, atol=1e-5, rtol=0)


def test_mc_dropout_passes_run_on_the_cached_prefix(offline_tokenizer, tmp_path):
    from bayeshead.methods.mc_dropout import MCDropout

    probs = []
    for cache in (False, True):
        model = _model(offline_tokenizer, cache, tmp_path, "adapter.dropout=0.3", "method.kind=mc_dropout",
                       "method.n_samples=4")
        with torch.no_grad():  # non-zero adapter updates, so dropout changes the features
            for p in model.backbone.parameters():
                if p.requires_grad:
                    p.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(p.numel()))
        method = MCDropout(model)
        probs.append(method.predict(["great fun", "so dull"], generator=torch.Generator().manual_seed(3)).probs)
    cache = model.backbone.__dict__["_prefix_cache"]
    assert cache.stats.computed == 2 and cache.stats.memory == 2 * 3  # 4 passes, the prefix computed once
    torch.testing.assert_close(probs[1], probs[0], atol=1e-5, rtol=0)


def test_fit_head_on_features_trains_a_head_that_predicts():
    from bayeshead.config import TrainingConfig
    from bayeshead.training import fit_head_on_features

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(240, 6, generator=generator)
    y = (x[:, 0] - x[:, 2] > 0).long()
    training = TrainingConfig(epochs=20, batch_size=32, head_lr=0.01, progress=False, early_stopping_patience=5)
    fit = fit_head_on_features({"kind": "vbll_classification"}, x[:160], y[:160], training=training,
                               val=(x[160:200], y[160:200]))
    accuracy = (fit.head.predict(x[200:]).probs.argmax(-1) == y[200:]).float().mean()
    assert accuracy >= 0.9 and fit.history[-1]["val_nll"] < 0.6  # chance: log 2 = 0.69
    with pytest.raises(ValueError, match="targets"):
        fit_head_on_features(None, x[:10], y[:9])


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(min_value=0, max_value=6), min_size=1, max_size=6),
       dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float64]))
def test_store_round_trips_ragged_examples_and_checks_every_size(lengths, dtype, tmp_path_factory):
    import numpy as np

    from bayeshead.backbones.prefix_store import open_store, write_store

    folder = tmp_path_factory.mktemp("store") / "cache"
    states = torch.randn(sum(lengths), 3).to(dtype)
    positions = torch.cat([torch.arange(n) for n in lengths])
    offsets = torch.tensor([0, *lengths]).cumsum(0)
    keys = np.arange(len(lengths) * 16, dtype=np.uint8).reshape(-1, 16)
    write_store(folder, {"model": "m"}, states, positions, offsets, keys)
    store = open_store(folder, {"model": "m"})
    for i, n in enumerate(lengths):
        rows, pos = store.rows(i)
        lo = int(offsets[i])
        assert rows.dtype == dtype and torch.equal(rows, states[lo : lo + n]) and torch.equal(pos, positions[lo : lo + n])
    with open(folder / "offsets.bin", "ab") as handle:  # a grown (or any resized) file is refused too
        handle.write(b"\0")
    with pytest.raises(PrefixCacheError, match="offsets.bin"):
        open_store(folder)
