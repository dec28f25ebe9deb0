"""The "+LA" refinement: Laplace row covariances at a Gaussian head's mean (protocol-level)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from bayeshead.heads.laplace import LaplaceHead, LaplaceHeadConfig
from bayeshead.heads.laplace_refine import refine_with_laplace


class RowGaussianHead(nn.Module):
    """A minimal head following SupportsLaplaceRefinement."""

    def __init__(self, d: int, c: int) -> None:
        super().__init__()
        self.in_features, self.num_outputs = d, c
        self.mean = torch.randn(c, d, dtype=torch.float64)
        self.bias = torch.randn(c, dtype=torch.float64)
        self.cov = torch.eye(d, dtype=torch.float64).expand(c, d, d).clone()

    def laplace_mean(self) -> tuple[Tensor, Tensor | None]:
        return self.mean, self.bias

    def set_row_covariances(self, covariances: Tensor) -> None:
        self.cov = covariances.clone()


def test_row_covariances_are_inverse_class_blocks_of_the_full_ggn():
    torch.manual_seed(0)
    d, c = 3, 4
    head = RowGaussianHead(d, c)
    x, y = torch.randn(50, d, dtype=torch.float64), torch.randint(0, c, (50,))
    cov = refine_with_laplace(head, x, y, prior_precision=2.0)
    assert torch.equal(head.cov, cov)
    full = LaplaceHead(d, c, LaplaceHeadConfig(hessian_structure="full", bias=False, prior_optimization="none", prior_precision=2.0))
    full.linear.double()
    with torch.no_grad():
        full.linear.weight.copy_(head.mean)
    full.fit_posthoc(x + 0.0, y)
    # the mean logits include the bias, so rebuild the blocks from the same probabilities instead
    probs = torch.softmax(x @ head.mean.T + head.bias, -1)
    for k in range(c):
        block = (probs[:, k] * (1 - probs[:, k]))[:, None, None] * x[:, :, None] * x[:, None, :]
        expected = torch.linalg.inv(block.sum(0) + 2.0 * torch.eye(d, dtype=torch.float64))
        torch.testing.assert_close(cov[k], expected)
    # without a bias it is exactly the inverse of each class-diagonal block of the full GGN
    head.bias = None
    cov = refine_with_laplace(head, x, y, prior_precision=2.0)
    prec = full.posterior.precision_matrix(full.prior_precision)
    for k in range(c):
        torch.testing.assert_close(cov[k], torch.linalg.inv(prec[k * d : (k + 1) * d, k * d : (k + 1) * d]))


def test_refinement_refuses_heads_without_the_protocol():
    with pytest.raises(TypeError, match="laplace_mean"):
        refine_with_laplace(nn.Linear(3, 2), torch.randn(4, 3), torch.zeros(4, dtype=torch.long), 1.0)
