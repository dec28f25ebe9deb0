"""The per-option last-layer Laplace head (``laplace_options``) and the Laplace refinement of the
per-option VBLL head: the GGN is the exact Hessian, the evidence and its maximiser, the probit and
Monte Carlo predictives, the reduction to the class-row ``laplace`` head, the unfitted refusal,
save/load, and both post-hoc fits end to end through ``BayesianModel.fit``."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import torch
from _helpers import tiny_model, toy_questions

from bayeshead.backbones.option_groups import pad_option_features, unpad_option_features
from bayeshead.errors import NotFittedError
from bayeshead.heads.laplace import LaplaceHead, LaplaceHeadConfig
from bayeshead.heads.laplace_options import LaplaceOptionConfig, LaplaceOptionHead
from bayeshead.heads.laplace_refine import refine_options_with_laplace
from bayeshead.heads.option_deterministic import DeterministicOptionConfig, DeterministicOptionHead
from bayeshead.heads.option_laplace_math import option_ggn, option_laplace_covariance
from bayeshead.heads.option_scoring import option_positions
from bayeshead.heads.vbll_options import VBLLOptionConfig, VBLLOptionHead
from bayeshead.training import Trainer

F64 = torch.float64


# ----- helpers -----

def _data(counts: list[int], d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat option features (N, d), counts (Q,), targets (Q,), float64."""
    gen = torch.Generator().manual_seed(seed)
    counts_t = torch.tensor(counts)
    h = torch.randn(int(counts_t.sum()), d, generator=gen, dtype=F64)
    y = torch.tensor([int(torch.randint(0, n, (1,), generator=gen)) for n in counts])
    return h, counts_t, y


def _summed_nll(h: torch.Tensor, counts: torch.Tensor, y: torch.Tensor, offsets: torch.Tensor | None):
    """w ↦ −Σ_q log softmax_{k<n_q}(H_q w + b)_{y_q}, written question by question (independent of
    the segment ops the heads use)."""
    blocks = torch.split(torch.arange(h.shape[0]), counts.tolist())

    def nll(w: torch.Tensor) -> torch.Tensor:
        z = h @ w if offsets is None else h @ w + offsets
        return -sum(torch.log_softmax(z[rows], 0)[int(t)] for rows, t in zip(blocks, y, strict=True))

    return nll


def _hessian(h, counts, y, w, offsets=None) -> torch.Tensor:
    return torch.autograd.functional.hessian(_summed_nll(h, counts, y, offsets), w.detach().clone())


def _head(d: int, k: int = 5, bias: bool = False, **cfg) -> LaplaceOptionHead:
    head = LaplaceOptionHead(d, k, LaplaceOptionConfig(position_bias=bias, **cfg)).double()
    return head


def _fitted(counts, d, seed, *, bias=False, weight_scale=1.0, **cfg):
    h, c, y = _data(counts, d, seed)
    head = _head(d, max(5, max(counts)), bias=bias, **cfg)
    gen = torch.Generator().manual_seed(seed + 100)
    head.init_from_vector(
        weight_scale * torch.randn(d, generator=gen, dtype=F64),
        torch.randn(head.max_options, generator=gen, dtype=F64) if bias else None,
    )
    head.fit_posthoc(h, y, counts=c)
    return head, h, c, y


# ----- (a) the GGN is the exact Hessian -----

@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("bias", [False, True])
def test_ggn_equals_the_autograd_hessian_of_the_summed_nll(seed, bias):
    gen = torch.Generator().manual_seed(seed + 10)
    counts = torch.randint(2, 6, (9,), generator=gen).tolist()  # mixed option counts 2-5
    d = 6
    h, c, y = _data(counts, d, seed)
    w = torch.randn(d, generator=gen, dtype=F64)
    offsets = torch.randn(5, generator=gen, dtype=F64)[option_positions(c)] if bias else None
    ggn = option_ggn(h, c, w, offsets)
    assert ggn.dtype == F64 and ggn.shape == (d, d)
    torch.testing.assert_close(ggn, _hessian(h, c, y, w, offsets), atol=1e-8, rtol=1e-8)
    # float32 inputs: the GGN is still computed in float64
    low = option_ggn(h.float(), c, w.float(), None)
    assert low.dtype == F64
    torch.testing.assert_close(low, option_ggn(h.float().double(), c, w.float().double()))


def test_the_head_stores_the_ggn_of_its_map_weights_from_padded_or_flat_features():
    head, h, c, y = _fitted([2, 5, 3, 4, 2, 3], 5, seed=3, bias=True, prior_optimization="none")
    offsets = head.position_bias.detach()[option_positions(c)]
    expected = _hessian(h, c, y, head.weight, offsets)
    torch.testing.assert_close(head.precision_matrix() - head.prior_precision * torch.eye(5, dtype=F64), expected)
    # the padded (Q, K, d) features the trainer collects give the same fit
    again = _head(5, bias=True, prior_optimization="none")
    again.load_state_dict({k: v for k, v in head.state_dict().items()})
    again.fitted.fill_(False)
    again.fit_posthoc(pad_option_features(h, c), y)
    torch.testing.assert_close(again.ggn_eigvals, head.ggn_eigvals)
    torch.testing.assert_close(again.map_nll, head.map_nll)
    torch.testing.assert_close(again.map_nll, _summed_nll(h, c, y, offsets)(head.weight.detach()))


# ----- (b) the evidence and its maximiser -----

def _map_trained(counts, d, seed, weight_decay=0.05):
    """A laplace_options head at the MAP of mean NLL + (λ/2)‖w‖² (L-BFGS), fitted by marglik."""
    h, c, y = _data(counts, d, seed)
    w_true = torch.randn(d, generator=torch.Generator().manual_seed(seed + 1), dtype=F64)
    # labels from a noisy linear scorer, so the MAP is finite and informative
    gen = torch.Generator().manual_seed(seed + 2)
    scores = h @ w_true + 0.8 * torch.randn(h.shape[0], generator=gen, dtype=F64)
    y = torch.stack([block.argmax() for block in torch.split(scores, c.tolist())])
    head = _head(d, weight_decay=weight_decay)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=200, tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure():
        opt.zero_grad()
        loss = head.loss_flat(h, c, y).total
        loss.backward()
        return loss

    opt.step(closure)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the search must end inside its limits
        head.fit_posthoc(h, y, counts=c)
    return head, h, c, y


def test_log_evidence_equals_a_brute_force_computation():
    head, h, c, y = _map_trained([2, 3, 4, 5] * 8, 5, seed=4)
    w = head.weight.detach()
    ggn = _hessian(h, c, y, w)
    nll = _summed_nll(h, c, y, None)(w)
    for delta in (1e-3, 0.37, 1.0, 12.5, 1e3):
        sign, logdet = torch.linalg.slogdet(ggn + delta * torch.eye(5, dtype=F64))
        assert sign > 0
        brute = -nll - 0.5 * delta * w.pow(2).sum() + 0.5 * 5 * math.log(delta) - 0.5 * logdet
        torch.testing.assert_close(head.log_marginal_likelihood(delta), brute, atol=1e-9, rtol=1e-12)


def test_evidence_maximiser_beats_nearby_prior_precisions_and_is_stationary():
    head, h, c, y = _map_trained([2, 3, 4, 5] * 8, 5, seed=5)
    best = float(head.prior_precision)
    assert 1e-6 * 1.01 < best < 1e6 / 1.01
    value = float(head.log_marginal_likelihood())
    for factor in (0.5, 0.9, 0.99, 1.01, 1.1, 2.0):
        assert value >= float(head.log_marginal_likelihood(best * factor)) - 1e-12, factor
    # MacKay's stationarity condition at an interior maximum: δ‖w*‖² = γ = Σ λ_i / (λ_i + δ)
    lam = head.ggn_eigvals.clamp_min(0.0)
    gamma = float((lam / (lam + best)).sum())
    assert best * float(head.weight.detach().pow(2).sum()) == pytest.approx(gamma, rel=1e-4)
    # prior_optimization='none' keeps the configured δ
    fixed = _head(5, prior_optimization="none", prior_precision=3.25)
    fixed.init_from_vector(head.weight.detach())
    out = fixed.fit_posthoc(h, y, counts=c)
    assert out["prior_precision"] == pytest.approx(3.25) and float(fixed.prior_precision) == pytest.approx(3.25)


def test_evidence_search_at_a_limit_warns():
    h, c, y = _data([2, 3, 4], 3, seed=6)
    head = _head(3)  # w* = 0: the evidence rises with δ to the upper limit
    with pytest.warns(RuntimeWarning, match="upper limit"):
        head.fit_posthoc(h, y, counts=c)
    assert float(head.prior_precision) == pytest.approx(1e6, rel=1e-2)


# ----- (c) the predictives -----

def _expected_softmax_by_quadrature(mean: torch.Tensor, cov: torch.Tensor, points: int = 40) -> torch.Tensor:
    """E[softmax(z)], z ~ N(mean, cov) (n ≤ 3), by a Gauss-Hermite product rule."""
    n = mean.shape[0]
    x, w = np.polynomial.hermite.hermgauss(points)
    chol = np.linalg.cholesky(cov.numpy())
    total = np.zeros(n)
    for idx in itertools.product(range(points), repeat=n):
        z = mean.numpy() + math.sqrt(2.0) * chol @ x[list(idx)]
        p = np.exp(z - z.max())
        total += np.prod(w[list(idx)]) * p / p.sum()
    return torch.from_numpy(total / math.pi ** (n / 2))


def test_probit_predictive_equals_a_hand_computation():
    head, h, c, _ = _fitted([2, 3, 5, 4], 4, seed=7, bias=True, prior_optimization="none", prior_precision=0.7)
    sigma = torch.linalg.inv(_hessian(h, c, torch.zeros(4, dtype=torch.long), head.weight,
                                      head.position_bias.detach()[option_positions(c)]) + 0.7 * torch.eye(4, dtype=F64))
    torch.testing.assert_close(head.covariance(), sigma)
    mu = h @ head.weight.detach() + head.position_bias.detach()[option_positions(c)]
    v = torch.einsum("ni,ij,nj->n", h, sigma, h)
    scaled = mu / torch.sqrt(1 + math.pi / 8 * v)
    expected = torch.cat([torch.softmax(block, 0) for block in torch.split(scaled, c.tolist())])
    pred = head.predict_flat(h, c)
    torch.testing.assert_close(pred.probs, expected)
    # the padded registry layout: zeros on the absent options
    padded = head.predict(pad_option_features(h, c))
    assert padded.probs.shape == (4, 5)
    assert (padded.probs[0, 2:] == 0).all() and (padded.probs[2] > 0).all()
    torch.testing.assert_close(padded.probs.sum(-1), torch.ones(4, dtype=F64))
    # joint covariances are H_q Σ H_qᵀ
    for block, cov in zip(torch.split(h, c.tolist()), head.joint_covariance(h, c), strict=True):
        torch.testing.assert_close(cov, block @ sigma @ block.T)


def test_monte_carlo_predictive_matches_the_exact_expectation_by_quadrature():
    head, h, c, _ = _fitted([2, 3, 3, 2], 4, seed=8, weight_scale=1.5, prior_optimization="none", prior_precision=0.3)
    mean, _ = head.logit_moments(h, c)
    exact = torch.cat([
        _expected_softmax_by_quadrature(mu, cov)
        for mu, cov in zip(torch.split(mean, c.tolist()), head.joint_covariance(h, c), strict=True)
    ])
    mc = head.predict_flat(h, c, link_approx="mc", n_samples=400_000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(mc.probs, exact, atol=4e-3, rtol=0)
    assert mc.samples is not None and mc.samples.shape == (400_000, h.shape[0])
    assert bool((mc.mutual_information() > 0).all())
    # not vacuous: the posterior moves the predictive away from the plug-in MAP softmax
    plug_in = torch.cat([torch.softmax(block, 0) for block in torch.split(mean, c.tolist())])
    assert float((exact - plug_in).abs().max()) > 0.03
    # the config's link_approx='mc' is the default of predict
    again = _head(4, link_approx="mc", n_samples=7)
    again.load_state_dict(head.state_dict())
    assert again.predict_flat(h, c, generator=torch.Generator().manual_seed(0)).samples.shape == (7, h.shape[0])


# ----- (d) reduction to the class-row laplace head -----

def _kron_features(x: torch.Tensor, c: int) -> torch.Tensor:
    """h_{b,k} = e_k ⊗ x_b, rows ordered question by question: (B·C, C·d)."""
    eye = torch.eye(c, dtype=x.dtype)
    return torch.einsum("kc,bd->bkcd", eye, x).reshape(x.shape[0] * c, c * x.shape[1])


def test_reduces_to_the_full_ggn_class_row_laplace_head_for_kron_features():
    """With h_k = e_k ⊗ x and w = vec(W) (class rows stacked), H_q = I_C ⊗ xᵀ and
    G = Σ_n Λ_n ⊗ x_n x_nᵀ: exactly the class-row head's full GGN in its class-by-class order. The
    reduction is exact for a class-row head *without* bias: its bias b_c is part of the Gaussian
    posterior (laplace-torch's convention), while the per-option head's position bias is a point
    estimate, so with a bias the two posteriors differ (an extra Gaussian block), not a rounding."""
    c, d, b, delta = 3, 4, 30, 0.8
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(b, d, generator=gen, dtype=F64)
    weight = torch.randn(c, d, generator=gen, dtype=F64)
    y = torch.randint(0, c, (b,), generator=gen)
    rows = LaplaceHead(d, c, LaplaceHeadConfig(
        hessian_structure="full", bias=False, prior_optimization="none", prior_precision=delta,
    ))
    rows.linear.double()
    with torch.no_grad():
        rows.linear.weight.copy_(weight)
    rows.fit_posthoc(x, y)
    opt = _head(c * d, c, prior_optimization="none", prior_precision=delta)
    opt.init_from_vector(weight.flatten())
    h, counts = _kron_features(x, c), torch.full((b,), c)
    opt.fit_posthoc(h, y, counts=counts)
    # posterior precision and covariance
    prec_rows = rows.posterior.precision_matrix(rows.prior_precision)
    torch.testing.assert_close(opt.precision_matrix(), prec_rows, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(opt.covariance(), torch.linalg.inv(prec_rows), atol=1e-10, rtol=1e-8)
    # the same Laplace log evidence at any δ
    for value in (0.01, 0.8, 5.0, 300.0):
        torch.testing.assert_close(
            opt.log_marginal_likelihood(value), rows.log_marginal_likelihood(torch.tensor([value], dtype=F64)),
            atol=1e-9, rtol=1e-12,
        )
    # the same logit moments and predictives (probit; Monte Carlo with the same draws)
    mean_rows, cov_rows = rows.logit_moments(x)
    mean_opt, var_opt = opt.logit_moments(h, counts)
    torch.testing.assert_close(mean_opt.reshape(b, c), mean_rows)
    torch.testing.assert_close(var_opt.reshape(b, c), cov_rows.diagonal(dim1=-2, dim2=-1))
    torch.testing.assert_close(torch.stack(opt.joint_covariance(h, counts)), cov_rows)
    torch.testing.assert_close(opt.predict_flat(h, counts).padded().probs, rows.predict(x).probs)
    mc_opt = opt.predict_flat(h, counts, link_approx="mc", n_samples=500, generator=torch.Generator().manual_seed(1))
    mc_rows = rows.predict(x, link_approx="mc", n_samples=500, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(mc_opt.padded().probs, mc_rows.probs, atol=1e-9, rtol=1e-9)
    # marglik: Brent on the exact evidence does at least as well as the class-row head's Adam search
    rows_ml = LaplaceHead(d, c, LaplaceHeadConfig(hessian_structure="full", bias=False, prior_optimization="marglik"))
    rows_ml.linear.double()
    with torch.no_grad():
        rows_ml.linear.weight.copy_(weight)
    rows_ml.fit_posthoc(x, y)
    opt_ml = _head(c * d, c)
    opt_ml.init_from_vector(weight.flatten())
    opt_ml.fit_posthoc(h, y, counts=counts)
    assert float(opt_ml.log_marginal_likelihood()) >= float(rows_ml.log_marginal_likelihood()) - 1e-9
    assert float(opt_ml.prior_precision) == pytest.approx(float(rows_ml.prior_precision), rel=0.05)


# ----- (e) unfitted refusal, training predictive, save/load -----

def test_refuses_to_predict_before_the_fit_except_as_the_training_predictive():
    h, c, y = _data([2, 4, 3], 3, seed=10)
    head = _head(3, 4, bias=True)
    head.init_from_vector(torch.tensor([0.5, -1.0, 2.0], dtype=F64), torch.tensor([0.1, 0.0, -0.2, 0.3], dtype=F64))
    assert not head.is_fitted
    with pytest.raises(NotFittedError, match="fit_posthoc"):
        head.predict_flat(h, c)
    with pytest.raises(NotFittedError):
        head.predict(pad_option_features(h, c))
    with pytest.raises(RuntimeError, match="fit_posthoc"):
        head.log_marginal_likelihood(1.0)
    det = DeterministicOptionHead(3, 4, DeterministicOptionConfig(position_bias=True)).double()
    det.load_state_dict({k: v for k, v in head.state_dict().items() if k in ("weight", "position_bias")})
    with head.training_predictive():
        pred = head.predict(pad_option_features(h, c))
    torch.testing.assert_close(pred.probs, det.predict(pad_option_features(h, c)).probs)
    # the MAP loss is the deterministic head's
    torch.testing.assert_close(head.loss_flat(h, c, y).total, det.loss_flat(h, c, y).total)
    with pytest.raises(TypeError, match="unexpected fit_posthoc arguments"):
        head.fit_posthoc(h, y, counts=c, val_features=h)


def test_fitted_head_round_trips_through_its_state_dict(tmp_path):
    from safetensors.torch import load_file, save_file

    head, h, c, _ = _fitted([2, 5, 3, 4], 5, seed=11, bias=True)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(tmp_path / "head.safetensors"))
    again = LaplaceOptionHead(5, 5, head.config).double()
    assert not again.is_fitted
    again.load_state_dict(load_file(str(tmp_path / "head.safetensors")))
    assert again.is_fitted
    assert float(again.prior_precision) == float(head.prior_precision)
    torch.testing.assert_close(again.predict_flat(h, c).probs, head.predict_flat(h, c).probs, rtol=0, atol=0)
    gen = torch.Generator
    torch.testing.assert_close(
        again.predict_flat(h, c, link_approx="mc", n_samples=50, generator=gen().manual_seed(2)).probs,
        head.predict_flat(h, c, link_approx="mc", n_samples=50, generator=gen().manual_seed(2)).probs,
        rtol=0, atol=0,
    )


def test_config_is_checked():
    with pytest.raises(ValueError, match="marglik_log10_min must be below"):
        LaplaceOptionConfig(marglik_log10_min=2.0, marglik_log10_max=1.0)
    with pytest.raises(ValueError):
        LaplaceOptionConfig(prior_optimization="gridsearch")
    with pytest.raises(ValueError):
        LaplaceOptionConfig(unknown=1)


# ----- (f) Laplace refinement of the per-option VBLL head -----

def _vbll(d: int, covariance: str, seed: int = 0) -> VBLLOptionHead:
    torch.manual_seed(seed)
    head = VBLLOptionHead(d, 5, VBLLOptionConfig(covariance=covariance, position_bias=True, n_train=20)).double()
    with torch.no_grad():
        head.posterior.mean.normal_()
        head.position_bias.normal_()
    return head


@pytest.mark.parametrize("covariance", ["dense", "diagonal", "lowrank"])
def test_vbll_options_refinement_sets_the_laplace_covariance_at_the_mean(covariance):
    d, delta = 4, 1.7
    head = _vbll(d, covariance)
    h, c, y = _data([2, 3, 5, 4, 2, 3, 4], d, seed=12)
    mean_before, bias_before = head.mean.detach().clone(), head.position_bias.detach().clone()
    noise_before = head.noise_var.detach().clone()
    cov = refine_options_with_laplace(head, pad_option_features(h, c), y, delta)
    ggn = _hessian(h, c, y, mean_before, bias_before[option_positions(c)])
    expected = torch.linalg.inv(ggn + delta * torch.eye(d, dtype=F64))
    torch.testing.assert_close(cov, expected, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(head.covariance(), expected, atol=1e-10, rtol=1e-8)
    assert head.posterior.kind == "dense" and head.config.covariance == "dense"
    assert torch.equal(head.mean, mean_before) and torch.equal(head.position_bias, bias_before)
    torch.testing.assert_close(head.noise_var, noise_before)
    # flat rows with counts: the same; and the shared helper is what the refinement uses
    torch.testing.assert_close(
        option_laplace_covariance(h, c, mean_before, bias_before[option_positions(c)], delta), expected,
        atol=1e-10, rtol=1e-8,
    )
    # the updated config rebuilds a head with the same state (save/load)
    again = VBLLOptionHead(d, 5, head.config).double()
    again.load_state_dict(head.state_dict())
    torch.testing.assert_close(again.predict_flat(h, c).probs, head.predict_flat(h, c).probs)


def test_refinement_refuses_heads_that_are_not_per_option_gaussians():
    det = DeterministicOptionHead(3, 4)
    h, c, y = _data([2, 3], 3, seed=13)
    with pytest.raises(TypeError, match="laplace_option_mean"):
        refine_options_with_laplace(det, h.float(), y, 1.0, counts=c)


# ----- end to end through BayesianModel.fit -----



# evaluation.batch_size=2: the post-hoc features come in batches with different largest option counts
_E2E = ["training.max_steps=3", "training.batch_size=4", "optimizer.lr=0.02", "evaluation.batch_size=2"]


def _train_features(model, data):
    model.eval()
    with torch.no_grad():
        return unpad_option_features(model.features(data.texts), "test")


def test_vbll_options_with_laplace_refine_end_to_end(offline_tokenizer):
    model = tiny_model(offline_tokenizer, ["head.kind=vbll_options", "head.covariance=diagonal",
                                           "training.laplace_refine=true", *_E2E], num_outputs=4)
    train = toy_questions(8)
    trainer = Trainer(model)
    trainer.fit(train)
    head = model.head
    delta = 1.0 / head.prior_var
    assert trainer.posthoc["laplace_prior_precision"] == pytest.approx(delta)
    assert head.posterior.kind == "dense" and head.config.covariance == "dense"
    flat, counts = _train_features(model, train)
    ggn = _hessian(flat.double(), counts, train.labels, head.mean.detach().double())
    expected = torch.linalg.inv(ggn + delta * torch.eye(flat.shape[1], dtype=F64))
    torch.testing.assert_close(head.covariance().double(), expected, rtol=2e-3, atol=1e-6)
    pred = model.predict(train.texts)
    assert pred.probs.shape == (8, 4)
    torch.testing.assert_close(pred.probs.sum(-1), torch.ones(8, dtype=pred.probs.dtype), atol=1e-6, rtol=0)


def test_laplace_options_end_to_end(offline_tokenizer, tmp_path):
    from bayeshead.model import BayesianModel

    model = tiny_model(offline_tokenizer, ["head.kind=laplace_options", "head.weight_decay=0.01", *_E2E], num_outputs=4)
    train = toy_questions(8)
    with pytest.raises(NotFittedError):
        model.predict(train.texts)
    trainer = Trainer(model)
    trainer.fit(train)
    head = model.head
    assert head.is_fitted and trainer.posthoc["prior_precision"] == pytest.approx(float(head.prior_precision))
    flat, counts = _train_features(model, train)
    torch.testing.assert_close(
        head.precision_matrix() - head.prior_precision * torch.eye(flat.shape[1], dtype=F64),
        _hessian(flat.double(), counts, train.labels, head.weight.detach().double()),
        rtol=2e-3, atol=1e-6,
    )
    pred = model.predict(train.texts)
    sizes = torch.tensor([len(g) for g in train.texts])
    absent = torch.arange(4)[None, :] >= sizes[:, None]
    assert (pred.probs[absent] == 0).all() and (pred.probs[~absent] > 0).all()
    model.save_pretrained(tmp_path / "saved")
    again = BayesianModel.from_pretrained(tmp_path / "saved", backbone=model.backbone)
    assert again.head.is_fitted
    torch.testing.assert_close(again.predict(train.texts).probs, pred.probs, rtol=0, atol=0)
