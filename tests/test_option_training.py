"""A per-option head trained end to end on a tiny random Llama (features of every option
sequence, grouped by question), and its predictions over mixed option counts."""

from __future__ import annotations

import torch
from _helpers import tiny_model

from bayeshead.data.choices import OptionDataset
from bayeshead.heads.vbll_options import VBLLOptionConfig, VBLLOptionHead
from bayeshead.training.options import fit_option_head, predict_options


def _toy_questions() -> OptionDataset:
    """The correct option is always the one that says 'good'; 2 to 5 options per question."""
    fillers = ["bad", "awful", "poor", "dull"]
    groups, labels = [], []
    for q in range(12):
        n = 2 + q % 4
        answer = q % n
        groups.append([f"it is {'good' if k == answer else fillers[(q + k) % 4]}" for k in range(n)])
        labels.append(answer)
    return OptionDataset.from_groups(groups, labels)


def test_vbll_option_head_trains_on_a_tiny_llama_and_predicts_per_question(offline_tokenizer):
    model = tiny_model(offline_tokenizer)
    data = _toy_questions()
    torch.manual_seed(0)
    head = VBLLOptionHead(model.backbone.feature_dim, 5, VBLLOptionConfig(mean_init_std=0.0, position_bias=True))
    before = predict_options(model, head, data)
    log = fit_option_head(model, head, data, epochs=6, batch_size=4, lr=0.05, seed=0)
    assert len(log) == 6 * 3 and head.n_train == 12
    after = predict_options(model, head, data)
    assert after.counts.tolist() == data.counts.tolist()
    torch.testing.assert_close(after.question_sums(), torch.ones(12), atol=1e-5, rtol=0)
    assert float(after.nll(data.labels).mean()) < float(before.nll(data.labels).mean())
    # batched prediction equals the head on all option features at once
    with torch.no_grad():
        features = model.features(data.texts)
    torch.testing.assert_close(after.probs, head.predict(features, data.counts).probs, atol=1e-5, rtol=1e-4)
