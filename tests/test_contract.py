"""The shared contract every registered head and every registered method must meet.

Parametrised over ``HEADS.names()`` and ``METHODS.names()`` (built-ins and installed plugins), as
geoopt's ``test_manifold_basic`` and PEFT's shared tester do: a new registry entry is covered
without a line of test code. Each entry, from its *default* config, on a tiny random Llama:

* builds from its config (and the config round-trips through JSON);
* trains a few steps with finite losses;
* predicts a proper distribution (probabilities that sum to 1; positive variances);
* round-trips through ``save_pretrained`` / ``load_method`` with identical predictions;
* is reproducible for a seed (two builds and trainings give bit-identical predictions);
* rejects bad inputs (a bare string, an empty list, features of the wrong width) with a clear error.
"""

from __future__ import annotations

import pytest
import torch
from _helpers import SENTIMENT, tiny_decoder

from bayeshead.config import ExperimentConfig, load_config
from bayeshead.data import TextDataset
from bayeshead.errors import BayesheadError
from bayeshead.methods import build_method, load_method
from bayeshead.registry import HEADS, METHODS
from bayeshead.types import CategoricalPredictive, GaussianPredictive

_BASE = [
    "training.progress=false",
    "training.max_steps=3",
    "training.batch_size=4",
    "optimizer.lr=0.01",
    "adapter.kind=lora",
    "adapter.rank=2",
    "adapter.target_modules=[q_proj, v_proj]",
    "adapter.dropout=0.1",  # gives the whole-model MC dropout something to switch on
]
_TEXTS = ["what a film", "awful, just awful", "fine", "a joy"]
#: multiple choice: option groups of 2 to 4 options (a per-option head scores each option text)
_GROUPS = [("it was good", "it was bad"), ("a joy", "awful", "fine", "dull"), ("great fun", "no fun", "so-so")]


def _backbone(tokenizer):
    from bayeshead.backbones.huggingface import HuggingFaceBackbone

    net = tiny_decoder("llama", tokenizer.vocab_size, seed=0)
    return HuggingFaceBackbone(net, tokenizer, pooling="last_token", max_length=32)


def _data(task_type: str) -> tuple[TextDataset, TextDataset, int]:
    texts, labels = SENTIMENT
    if task_type == "regression":
        targets = torch.tensor([2.0 * y - 1.0 + 0.1 * i for i, y in enumerate(labels)], dtype=torch.float32)
        return TextDataset(texts[:8], targets[:8]), TextDataset(texts[8:], targets[8:]), 1
    if task_type == "multiple_choice":
        # question q: the first len(texts) % ... options of mixed counts; the positive text is correct
        groups, answers = [], []
        for i, (text, y) in enumerate(zip(texts, labels, strict=True)):
            other = texts[(i + 1) % len(texts)]
            n = 2 + i % 3
            group = [other] * n
            answer = i % n
            group[answer] = text if int(y) == 1 else f"not {text}"
            groups.append(tuple(group))
            answers.append(answer)
        names = ["A", "B", "C", "D"]
        return TextDataset(groups[:8], answers[:8], names), TextDataset(groups[8:], answers[8:], names), 4
    return TextDataset(texts[:8], labels[:8]), TextDataset(texts[8:], labels[8:]), 2


def _check_predictive(pred, batch: int, num_outputs: int) -> None:
    if isinstance(pred, CategoricalPredictive):
        assert pred.probs.shape == (batch, num_outputs)
        # finite wherever there is probability; -inf only on the options a question lacks (multiple choice)
        assert torch.isfinite(pred.log_probs[pred.probs > 0]).all() and not torch.isnan(pred.log_probs).any()
        torch.testing.assert_close(pred.probs.sum(-1), torch.ones(batch, dtype=pred.probs.dtype), atol=1e-5, rtol=0)
        assert (pred.probs >= 0).all()
    else:
        assert isinstance(pred, GaussianPredictive)
        assert pred.mean.shape == pred.var.shape and pred.mean.shape[0] == batch
        assert torch.isfinite(pred.mean).all() and (pred.var > 0).all()


def _predict(method, texts):
    return method.predict(texts, generator=torch.Generator().manual_seed(123))


def _same(a, b) -> None:
    if isinstance(a, CategoricalPredictive):
        torch.testing.assert_close(a.probs, b.probs, rtol=0, atol=0)
    else:
        torch.testing.assert_close(a.mean, b.mean, rtol=0, atol=0)
        torch.testing.assert_close(a.var, b.var, rtol=0, atol=0)


def _fitted(tokenizer, config: ExperimentConfig, task_type: str):
    train, val, outputs = _data(task_type)
    torch.manual_seed(config.training.seed)
    method = build_method(config, num_outputs=outputs, backbone=_backbone(tokenizer))
    rows = method.fit(train, val)
    assert rows, "fit returned no training log"
    totals = [row["total"] for row in rows if "total" in row]
    assert totals and all(torch.isfinite(torch.tensor(totals))), f"non-finite training losses {totals}"
    return method, outputs


def _run_contract(tokenizer, config: ExperimentConfig, task_type: str, tmp_path) -> None:
    # builds from its config; the config survives JSON
    assert ExperimentConfig.model_validate_json(config.model_dump_json()) == config
    method, outputs = _fitted(tokenizer, config, task_type)
    texts = _GROUPS if task_type == "multiple_choice" else _TEXTS
    pred = _predict(method, texts)
    _check_predictive(pred, len(texts), outputs)
    if task_type == "multiple_choice":  # no probability on the options a question lacks
        assert (pred.probs[0, 2:] == 0).all() and (pred.probs[2, 3:] == 0).all() and (pred.probs[1] > 0).all()
    # save / load with identical predictions
    method.save_pretrained(tmp_path / "saved")
    again = load_method(tmp_path / "saved", backbone=_backbone(tokenizer))
    assert type(again) is type(method)
    _same(pred, _predict(again, texts))
    # reproducible for a seed
    twin, _ = _fitted(tokenizer, config, task_type)
    _same(pred, _predict(twin, texts))
    # bad inputs: clear errors, not crashes deep inside the tokenizer
    with pytest.raises((TypeError, ValueError, BayesheadError), match="string|list"):
        method.predict("a bare string")
    with pytest.raises((ValueError, BayesheadError), match="empty|at least one"):
        method.predict([])
    head = method.heads()[0]
    with pytest.raises((TypeError, ValueError), match=str(head.in_features)):
        head.predict(torch.zeros(2, head.in_features + 1))


@pytest.mark.parametrize("kind", HEADS.names())
def test_every_head_meets_the_contract(kind, offline_tokenizer, tmp_path):
    head_cls = HEADS.get(kind)
    config = load_config(overrides=[*_BASE, f"head.kind={kind}"])
    _run_contract(offline_tokenizer, config, head_cls.task_type, tmp_path)


@pytest.mark.parametrize("kind", METHODS.names())
def test_every_method_meets_the_contract(kind, offline_tokenizer, tmp_path):
    config = load_config(overrides=[*_BASE, "head.kind=deterministic", f"method.kind={kind}"])
    _run_contract(offline_tokenizer, config, "classification", tmp_path)


def test_the_contract_covers_every_registry_entry():
    """The parametrisation is read from the registries themselves (plugins included)."""
    assert {"single", "mc_dropout", "ensemble", "laplace_lora", "blob", "tfb"} <= set(METHODS.names())
    assert {"deterministic", "vbll_classification", "vbll_regression", "laplace", "temperature"} <= set(HEADS.names())
