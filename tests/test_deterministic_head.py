"""The deterministic softmax head: MLE and MAP objectives, and its input checks."""

from __future__ import annotations

import pytest
import torch

from bayeshead.heads.deterministic import DeterministicHead, DeterministicHeadConfig


def _head(wd: float = 0.0) -> DeterministicHead:
    torch.manual_seed(0)
    return DeterministicHead(5, 3, DeterministicHeadConfig(weight_decay=wd))


def test_loss_is_cross_entropy_plus_half_lambda_norm():
    head = _head(wd=0.3)
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    terms = head.loss(x, y)
    ce = torch.nn.functional.cross_entropy(x @ head.weight.T + head.bias, y)
    torch.testing.assert_close(terms["nll"], ce)
    torch.testing.assert_close(terms.total, ce + 0.15 * head.weight.pow(2).sum())
    assert "weight_decay" not in _head(0.0).loss(x, y)


def test_map_minimiser_is_the_mode_of_the_gaussian_posterior():
    """At the optimum of N·L, the gradient of the NLL sum equals -N·λ·W (prior precision N·λ)."""
    torch.manual_seed(1)
    x, y = torch.randn(40, 5, dtype=torch.float64), torch.randint(0, 3, (40,))
    head = DeterministicHead(5, 3, DeterministicHeadConfig(weight_decay=0.05)).double()
    opt = torch.optim.LBFGS(head.parameters(), max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure():
        opt.zero_grad()
        loss = head.loss(x, y).total
        loss.backward()
        return loss

    opt.step(closure)
    head.zero_grad()
    nll_sum = torch.nn.functional.cross_entropy(head.linear(x), y, reduction="sum")
    nll_sum.backward()
    torch.testing.assert_close(head.weight.grad, -40 * 0.05 * head.weight.detach(), atol=1e-6, rtol=1e-5)


def test_predict_is_softmax_and_ignores_sampling_arguments():
    head = _head()
    x = torch.randn(4, 5)
    pred = head.predict(x, n_samples=10, generator=torch.Generator())
    torch.testing.assert_close(pred.probs, torch.softmax(head.linear(x), -1))


def test_bad_inputs_get_clear_errors():
    head = _head()
    with pytest.raises(ValueError, match=r"expected features of shape \(batch, 5\), got \(4, 6\)"):
        head.loss(torch.randn(4, 6), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="integer class indices"):
        head.loss(torch.randn(4, 5), torch.zeros(4))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got values in \[0, 7\]"):
        head.loss(torch.randn(2, 5), torch.tensor([0, 7]))
    with pytest.raises(ValueError, match=r"targets of shape \(2,\)"):
        head.loss(torch.randn(2, 5), torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"NaN or inf in rows \[1\]"):
        head.predict(torch.tensor([[0.0] * 5, [float("nan")] * 5]))


def test_bf16_features_are_computed_in_fp32():
    head = _head()
    out = head.predict(torch.randn(2, 5).bfloat16())
    assert out.probs.dtype == torch.float32
