"""``evaluation.merge_adapters``: BayesianModel.predict folds LoRA/PoLAR deltas into the base
weights for the pass, gives the unmerged probabilities to 1e-5, leaves training bit-identical
afterwards, and sampling methods (BLoB, MC dropout) never merge."""

from __future__ import annotations

import pytest
import torch
from _helpers import SENTIMENT, TEXTS, tiny_decoder, tiny_model

from bayeshead.adapters import LoRALinear, adapter_modules
from bayeshead.data import TextDataset

TRAIN = ["training.batch_size=4", "training.epochs=2", "training.max_steps=3", "training.eval_every=1", "optimizer.lr=1e-2"]
KINDS = {
    "lora": ["adapter.kind=lora", "adapter.target_modules=all-linear", "head.kind=deterministic"],
    "polar": [
        "adapter.kind=polar", "adapter.target_modules=all-linear", "optimizer.kind=riemannian_adam",
        "head.kind=deterministic",
    ],
}


@torch.no_grad()
def perturb(model: torch.nn.Module, seed: int = 3) -> None:
    """Move every adapter away from ΔW = 0 (LoRA's B and PoLAR's Θ start at zero)."""
    g = torch.Generator().manual_seed(seed)
    for adapter in adapter_modules(model).values():
        param = adapter.lora_B if isinstance(adapter, LoRALinear) else adapter.theta
        param.copy_(0.3 * torch.randn(param.shape, generator=g))


def record_merged(model: torch.nn.Module) -> list[bool]:
    """Forward pre-hooks on every adapter, appending its ``merged`` flag at each call."""
    seen: list[bool] = []
    for adapter in adapter_modules(model).values():
        adapter.register_forward_pre_hook(lambda module, args: seen.append(bool(module.merged)))
    return seen


def build(tokenizer, kind: str, merge: bool, *extra: str):
    model = tiny_model(tokenizer, [*KINDS[kind], *TRAIN, f"evaluation.merge_adapters={merge}", *extra])
    perturb(model.backbone)
    return model


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_merged_prediction_matches_unmerged(offline_tokenizer, kind: str) -> None:
    plain, merged = build(offline_tokenizer, kind, False), build(offline_tokenizer, kind, True)
    seen_plain, seen_merged = record_merged(plain.backbone), record_merged(merged.backbone)
    before = {k: v.clone() for k, v in merged.state_dict().items()}
    p0, p1 = plain.predict(TEXTS).probs, merged.predict(TEXTS).probs
    assert seen_plain and not any(seen_plain)
    assert seen_merged and all(seen_merged), "evaluation.merge_adapters=true did not merge the adapters"
    torch.testing.assert_close(p1, p0, atol=1e-5, rtol=0)
    assert not torch.equal(p1, plain.head.predict(torch.zeros(len(TEXTS), plain.head.in_features)).probs)
    after = merged.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the merged prediction changed a weight"
    assert not any(a.merged for a in adapter_modules(merged.backbone).values())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_training_after_merged_prediction_is_bit_identical(offline_tokenizer, kind: str) -> None:
    texts, labels = SENTIMENT
    train = TextDataset(texts[:8], torch.tensor(labels[:8]))
    val = TextDataset(texts[8:], torch.tensor(labels[8:]))
    plain, merged = build(offline_tokenizer, kind, False), build(offline_tokenizer, kind, True)
    seen = record_merged(merged.backbone)
    merged.predict(TEXTS)  # a merged prediction before training, and validation (merged) after every step
    plain.fit(train, val)
    rows = merged.fit(train, val)
    assert len(rows) == 3 and all("val_nll" in r for r in rows)
    assert any(seen) and not all(seen), "expected merged validation passes and unmerged training passes"
    a, b = plain.state_dict(), merged.state_dict()
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"training after merged predictions diverged in {differ[:5]}"
    trained = [k for k in a if "lora_" in k or "theta" in k]
    assert trained and any(not torch.equal(a[k], build(offline_tokenizer, kind, False).state_dict()[k]) for k in trained)


@pytest.mark.parametrize(
    ("overrides", "n"),
    [
        (["method.kind=blob", "method.n_samples=3"], 3),
        (["method.kind=mc_dropout", "method.n_samples=3", "adapter.dropout=0.3"], 3),
    ],
)
def test_sampling_methods_never_merge(offline_tokenizer, overrides: list[str], n: int) -> None:
    from bayeshead.backbones.huggingface import HuggingFaceBackbone
    from bayeshead.config import load_config
    from bayeshead.methods import build_method

    config = load_config(overrides=["training.progress=false", *KINDS["lora"], "evaluation.merge_adapters=true", *overrides])
    net = tiny_decoder("llama", offline_tokenizer.vocab_size)
    backbone = HuggingFaceBackbone(net, offline_tokenizer, pooling="last_token", max_length=32)
    torch.manual_seed(0)
    method = build_method(config, num_outputs=2, backbone=backbone)
    perturb(method.model.backbone)
    seen = record_merged(method.model.backbone)
    pred = method.predict(TEXTS, generator=torch.Generator().manual_seed(0))
    assert seen and not any(seen), f"{config.method.kind} merged its adapters"
    draws = pred.samples
    assert draws is not None and draws.shape[0] == n
    assert not torch.allclose(draws[0], draws[1]), "the passes were identical: nothing was sampled"
