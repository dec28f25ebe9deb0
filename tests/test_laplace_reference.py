"""Last-layer Laplace agrees with laplace-torch on identical features, MAP weights and δ."""

from __future__ import annotations

import warnings

# laplace-torch is the reference these tests exist for; tests/run.sh installs it (dev set-up), so a
# missing install must fail here rather than skip.
import laplace
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bayeshead.heads.laplace import LaplaceHead, LaplaceHeadConfig

N, D, C = 48, 4, 3
TOL = {"rtol": 1e-4, "atol": 1e-4}


@pytest.fixture(scope="module")
def data():
    torch.manual_seed(0)
    x = torch.randn(N, D, dtype=torch.float64)
    true_w = torch.randn(C, D, dtype=torch.float64)
    y = (x @ true_w.T + 0.7 * torch.randn(N, C, dtype=torch.float64)).argmax(1)
    x_val = torch.randn(20, D, dtype=torch.float64)
    y_val = (x_val @ true_w.T + 0.7 * torch.randn(20, C, dtype=torch.float64)).argmax(1)
    weight, bias = 0.8 * true_w, 0.3 * torch.randn(C, dtype=torch.float64)
    return x, y, x_val, y_val, weight, bias


def _pair(data, structure: str, **cfg):
    x, y, _, _, weight, bias = data
    head = LaplaceHead(D, C, LaplaceHeadConfig(hessian_structure=structure, prior_optimization="none", **cfg))
    head.linear.double()
    with torch.no_grad():
        head.linear.weight.copy_(weight)
        head.linear.bias.copy_(bias)
    model = nn.Sequential(nn.Identity(), nn.Linear(D, C)).double()
    model[1].load_state_dict(head.linear.state_dict())
    ref = laplace.Laplace(
        model, "classification", subset_of_weights="last_layer", hessian_structure=structure, last_layer_name="1"
    )
    ref.fit(DataLoader(TensorDataset(x, y), batch_size=16))
    head.fit_posthoc(x, y)
    return head, ref


def _ref_precision(ref, structure: str) -> torch.Tensor:
    if structure == "kron":
        return ref.posterior_precision.to_matrix()
    if structure == "diag":
        return torch.diag(ref.posterior_precision)
    return ref.posterior_precision


@pytest.mark.parametrize("structure", ["full", "kron", "diag"])
def test_precision_marglik_probit_and_optimised_prior_match(data, structure):
    head, ref = _pair(data, structure)
    x_test = data[2]
    torch.testing.assert_close(head.posterior.precision_matrix(head.prior_precision), _ref_precision(ref, structure), **TOL)
    torch.testing.assert_close(head.log_marginal_likelihood(), ref.log_marginal_likelihood().reshape(()), **TOL)
    torch.testing.assert_close(head.predict(x_test).probs, ref(x_test, link_approx="probit"), **TOL)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.optimize_prior_precision(pred_type="glm", method="marglik", prior_structure="scalar")
    head.optimize_prior_precision("marglik")
    assert abs(float(head.prior_precision) - 1.0) > 1e-3  # it moved
    torch.testing.assert_close(head.prior_precision, ref.prior_precision.reshape(1), **TOL)
    torch.testing.assert_close(head.log_marginal_likelihood(), ref.log_marginal_likelihood().reshape(()), **TOL)
    torch.testing.assert_close(head.predict(x_test).probs, ref(x_test, link_approx="probit"), **TOL)


@pytest.mark.parametrize("structure", ["full", "diag"])
def test_per_class_prior_marglik_matches_a_diagonal_reference_prior(data, structure):
    head, ref = _pair(data, structure, prior_structure="per_class")
    delta = torch.tensor([0.5, 2.0, 7.0], dtype=torch.float64)
    ref_delta = torch.cat([delta.repeat_interleave(D), delta])  # [vec(W) row-major, b]
    torch.testing.assert_close(
        head.log_marginal_likelihood(delta), ref.log_marginal_likelihood(prior_precision=ref_delta).reshape(()), **TOL
    )
    head.set_prior_precision(delta)
    torch.testing.assert_close(head.predict(data[2]).probs, ref(data[2], link_approx="probit"), **TOL)


def test_gridsearch_picks_the_reference_prior(data):
    x_val, y_val = data[2], data[3]
    head, ref = _pair(data, "kron", grid_log10_min=-2.0, grid_log10_max=3.0, grid_size=26)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.optimize_prior_precision(
            pred_type="glm", method="gridsearch", val_loader=DataLoader(TensorDataset(x_val, y_val), batch_size=20),
            log_prior_prec_min=-2, log_prior_prec_max=3, grid_size=26,
        )
    chosen = head.optimize_prior_precision("gridsearch", val_features=x_val, val_targets=y_val)
    torch.testing.assert_close(chosen, torch.as_tensor(ref.prior_precision, dtype=torch.float64).reshape(1), **TOL)
