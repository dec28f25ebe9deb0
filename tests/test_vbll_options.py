"""Per-option heads: the VBLL head's joint logit Gaussian, its Jensen bound, its reduction to the
class-row VBLL head, mixed option counts, and the deterministic head's closed form."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayeshead.heads.option_deterministic import DeterministicOptionConfig, DeterministicOptionHead
from bayeshead.heads.option_scoring import segment_log_softmax
from bayeshead.heads.vbll_classification import VBLLClassificationConfig, VBLLClassificationHead
from bayeshead.heads.vbll_options import VBLLOptionConfig, VBLLOptionHead


@pytest.fixture(autouse=True)
def _float64():
    """Closed forms are compared in float64; the default dtype is restored after each test."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _spd(d: int, gen: torch.Generator) -> torch.Tensor:
    a = torch.randn(d, d, generator=gen)
    return a @ a.T / d + 0.3 * torch.eye(d)


def _head(d: int, covariance: str = "dense", bias: bool = False, seed: int = 0, **kw) -> VBLLOptionHead:
    torch.manual_seed(seed)
    cfg = VBLLOptionConfig(covariance=covariance, position_bias=bias, n_train=20, **kw)
    head = VBLLOptionHead(d, 5, cfg).double()
    with torch.no_grad():
        head.posterior.mean.normal_()
        head.posterior.log_scale.normal_(0.0, 0.3)
        if covariance == "dense":
            head.posterior.tril.normal_(0.0, 0.4)
        if covariance == "lowrank":
            head.posterior.factor.normal_(0.0, 0.5)
        if bias:
            head.position_bias.normal_()
    return head


@pytest.mark.parametrize("covariance", ["diagonal", "dense", "lowrank"])
def test_joint_logit_covariance_is_h_s_ht_plus_noise(covariance):
    gen = torch.Generator().manual_seed(1)
    head = _head(6, covariance, lowrank_rank=2)
    counts = torch.tensor([3, 5, 2])
    h = torch.randn(10, 6, generator=gen)
    s = head.covariance()
    covs = head.joint_covariance(h, counts)
    for block, cov in zip(torch.split(h, counts.tolist()), covs, strict=True):
        expected = block @ s @ block.T + head.noise_var * torch.eye(block.shape[0])
        torch.testing.assert_close(cov, expected)
    _, var = head.logit_moments(h, counts)
    torch.testing.assert_close(var, torch.cat([c.diagonal() for c in covs]))


def test_mc_samples_have_the_joint_mean_and_covariance():
    gen = torch.Generator().manual_seed(2)
    head = _head(4, "dense", bias=True)
    counts = torch.tensor([2, 4])
    h = torch.randn(6, 4, generator=gen)
    z = head.sample_logits(h, counts, 200_000, torch.Generator().manual_seed(3))
    mean, _ = head.logit_moments(h, counts)
    torch.testing.assert_close(z.mean(0), mean, atol=0.03, rtol=0)
    for block, cov in zip(torch.split(z, counts.tolist(), dim=1), head.joint_covariance(h, counts), strict=True):
        cov = cov.detach()
        torch.testing.assert_close(torch.cov(block.T.detach()), cov, atol=0.05 * float(cov.abs().max()), rtol=0)
    # off-diagonal correlation is really there (a diagonal sampler would fail this)
    assert float(head.joint_covariance(h, counts)[1][0, 1].detach().abs()) > 0.1


@pytest.mark.parametrize("covariance", ["diagonal", "dense", "lowrank"])
def test_jensen_bound_is_below_monte_carlo_expected_log_softmax(covariance):
    gen = torch.Generator().manual_seed(4)
    head = _head(5, covariance, bias=True, lowrank_rank=2)
    counts = torch.tensor([2, 3, 4, 5])
    h = torch.randn(14, 5, generator=gen)
    y = torch.tensor([1, 0, 3, 2])
    bound = head.jensen_bound(h, counts, y)
    z = head.sample_logits(h, counts, 100_000, torch.Generator().manual_seed(5))
    starts = torch.cumsum(counts, 0) - counts
    expected = segment_log_softmax(z, counts)[:, starts + y]
    mc, se = expected.mean(0), expected.std(0) / math.sqrt(z.shape[0])
    assert bool((bound <= mc + 4 * se).all()), (bound, mc)
    assert bool((bound < mc).all())  # strict gap with non-zero variance


def _class_and_option_heads(c: int, d: int, bias: bool):
    gen = torch.Generator().manual_seed(6)
    cls_cfg = VBLLClassificationConfig(
        covariance="dense", prior_width_scaling="none", prior_scale=0.7, bias=bias, noise_prior=False, n_train=30
    )
    cls_head = VBLLClassificationHead(d, c, cls_cfg).double()
    covs = torch.stack([_spd(d, gen) for _ in range(c)])
    with torch.no_grad():
        cls_head.posterior.mean.copy_(torch.randn(c, d, generator=gen))
        cls_head.posterior.set_dense_covariance(covs)
        cls_head.noise_log_std.fill_(-0.4)  # equal noise in every class: one σ² in the option head
        if bias:
            cls_head.bias.copy_(torch.randn(c, generator=gen))
    opt_cfg = VBLLOptionConfig(
        covariance="dense", prior_width_scaling="none", prior_scale=0.7, position_bias=bias, noise_prior=False, n_train=30
    )
    opt_head = VBLLOptionHead(c * d, c, opt_cfg).double()
    opt_head.init_from_vector(cls_head.posterior.mean.detach().flatten(), cls_head.bias.detach() if bias else None)
    opt_head.set_covariance(torch.block_diag(*covs))
    with torch.no_grad():
        opt_head.noise_log_std.fill_(-0.4)
    return cls_head, opt_head


def _kron_features(x: torch.Tensor, c: int) -> torch.Tensor:
    """h_{b,k} = e_k ⊗ x_b, rows ordered question by question: (B·C, C·d)."""
    eye = torch.eye(c)
    return torch.einsum("kc,bd->bkcd", eye, x).reshape(x.shape[0] * c, c * x.shape[1])


@pytest.mark.parametrize("bias", [False, True])
def test_reduces_to_the_class_row_vbll_head_for_kron_features(bias):
    c, d, b = 4, 3, 7
    cls_head, opt_head = _class_and_option_heads(c, d, bias)
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(b, d, generator=gen)
    y = torch.randint(0, c, (b,), generator=gen)
    h, counts = _kron_features(x, c), torch.full((b,), c)
    torch.testing.assert_close(opt_head.jensen_bound(h, counts, y), cls_head.jensen_bound(x, y))
    torch.testing.assert_close(opt_head.kl(), cls_head.kl())
    torch.testing.assert_close(opt_head.loss_flat(h, counts, y).total, cls_head.loss(x, y).total)
    torch.testing.assert_close(opt_head.predict_flat(h, counts).padded().probs, cls_head.predict(x).probs)
    # Monte Carlo: both estimate E[softmax(z)] of the same Gaussian
    mc_opt = opt_head.predict_flat(h, counts, method="mc", n_samples=40_000, generator=torch.Generator().manual_seed(8))
    mc_cls = cls_head.predict(x, method="mc", n_samples=40_000, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(mc_opt.padded().probs, mc_cls.probs, atol=0.01, rtol=0)


def test_gradients_match_the_class_row_head_for_kron_features():
    c, d = 3, 2
    cls_head, opt_head = _class_and_option_heads(c, d, bias=False)
    gen = torch.Generator().manual_seed(10)
    x = torch.randn(5, d, generator=gen)
    y = torch.randint(0, c, (5,), generator=gen)
    cls_head.loss(x, y).total.backward()
    opt_head.loss_flat(_kron_features(x, c), torch.full((5,), c), y).total.backward()
    torch.testing.assert_close(opt_head.posterior.mean.grad.reshape(c, d), cls_head.posterior.mean.grad)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(min_value=2, max_value=5), min_size=1, max_size=6), st.integers(0, 2**16))
def test_mixed_option_counts_equal_each_question_alone(counts_list, seed):
    gen = torch.Generator().manual_seed(seed)
    head = _head(4, "dense", bias=True, seed=seed % 7)
    counts = torch.tensor(counts_list)
    h = torch.randn(int(counts.sum()), 4, generator=gen)
    y = torch.tensor([int(torch.randint(0, n, (1,), generator=gen)) for n in counts_list])
    bound = head.jensen_bound(h, counts, y)
    probit = head.predict_flat(h, counts)
    det = DeterministicOptionHead(4, 5, DeterministicOptionConfig(position_bias=True)).double()
    det.init_from_vector(torch.randn(4, generator=gen), torch.randn(5, generator=gen))
    det_pred = det.predict_flat(h, counts)
    torch.testing.assert_close(probit.question_sums(), torch.ones(len(counts_list)))
    torch.testing.assert_close(det_pred.question_sums(), torch.ones(len(counts_list)))
    for q, (block, n) in enumerate(zip(torch.split(h, counts_list), counts_list, strict=True)):
        one = torch.tensor([n])
        torch.testing.assert_close(bound[q], head.jensen_bound(block, one, y[q : q + 1])[0])
        torch.testing.assert_close(probit.per_question()[q], head.predict_flat(block, one).probs)
        torch.testing.assert_close(det_pred.per_question()[q], det.predict_flat(block, one).probs)
    # the per-question MC predictive with the same generator state draws question by question
    mc = head.predict_flat(h, counts, method="mc", n_samples=3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(mc.question_sums(), torch.ones(len(counts_list)))


def test_probit_predictive_closed_form():
    head = _head(3, "diagonal", bias=True)
    h = torch.randn(5, 3, generator=torch.Generator().manual_seed(11))
    counts = torch.tensor([2, 3])
    sigma2 = head.posterior.scale_diag()[0].pow(2)
    mu = h @ head.mean + head.position_bias[torch.tensor([0, 1, 0, 1, 2])]
    v = (h.pow(2) * sigma2).sum(-1) + head.noise_var
    scaled = mu / torch.sqrt(1 + math.pi / 8 * v)
    expected = torch.cat([torch.softmax(scaled[:2], 0), torch.softmax(scaled[2:], 0)])
    torch.testing.assert_close(head.predict_flat(h, counts).probs, expected)


def test_kl_of_the_shared_vector_closed_form():
    head = _head(3, "dense")
    s, m, p = head.covariance(), head.mean, head.prior_var
    expected = 0.5 * (torch.trace(s) / p + m @ m / p - 3 + 3 * math.log(p) - torch.logdet(s))
    torch.testing.assert_close(head.kl(), expected)


def test_deterministic_option_head_loss_closed_form_and_weight_decay():
    gen = torch.Generator().manual_seed(12)
    head = DeterministicOptionHead(3, 4, DeterministicOptionConfig(weight_decay=0.1)).double()
    w = torch.randn(3, generator=gen)
    head.init_from_vector(w)
    h = torch.randn(7, 3, generator=gen)
    counts, y = torch.tensor([3, 4]), torch.tensor([2, 0])
    z = h @ w
    nll = -(torch.log_softmax(z[:3], 0)[2] + torch.log_softmax(z[3:], 0)[0]) / 2
    terms = head.loss_flat(h, counts, y)
    torch.testing.assert_close(terms["nll"], nll)
    torch.testing.assert_close(terms.total, nll + 0.05 * w.pow(2).sum())
    torch.testing.assert_close(head.predict_flat(h, counts).nll(y).mean(), nll)


def test_inputs_are_checked_with_messages_that_say_what_to_do():
    head = _head(3, "dense", bias=True)
    h = torch.randn(7, 3)
    with pytest.raises(ValueError, match="counts sum to 6 but there are 7 option rows"):
        head.predict_flat(h, torch.tensor([3, 3]))
    with pytest.raises(ValueError, match="question 1 has 4 options but its target is 4"):
        head.loss_flat(h, torch.tensor([3, 4]), torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="max_options >= 7"):
        head.predict_flat(h, torch.tensor([7]))
    with pytest.raises(ValueError, match=r"expected features of shape \(batch, 3\)"):
        head.predict_flat(torch.randn(7, 2), torch.tensor([7]))
    # without a position bias any option count is scored
    free = _head(3, "dense", bias=False)
    assert free.predict_flat(h, torch.tensor([7])).question_sums().shape == (1,)


def test_loss_trains_a_vbll_option_head_towards_the_correct_options():
    gen = torch.Generator().manual_seed(13)
    d = 4
    w_true = torch.randn(d, generator=gen) * 3
    counts = torch.randint(2, 6, (60,), generator=gen)
    h = torch.randn(int(counts.sum()), d, generator=gen)
    starts = torch.cumsum(counts, 0) - counts
    y = torch.stack([(h[s : s + n] @ w_true).argmax() for s, n in zip(starts.tolist(), counts.tolist(), strict=True)])
    torch.manual_seed(0)
    head = VBLLOptionHead(d, 5, VBLLOptionConfig(n_train=60, mean_init_std=0.0)).double()
    opt = torch.optim.Adam(head.parameters(), lr=0.1)
    before = float(head.predict_flat(h, counts).nll(y).mean())
    for _ in range(60):
        opt.zero_grad()
        head.loss_flat(h, counts, y).total.backward()
        opt.step()
    pred = head.predict_flat(h, counts)
    assert float(pred.nll(y).mean()) < 0.5 * before
    assert float((pred.argmax() == y).double().mean()) > 0.9
