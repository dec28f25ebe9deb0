"""Laplace over adapter parameters: exact GGN vs brute-force Jacobians, PoLAR Θ, predictive."""

from __future__ import annotations

import pytest
import torch
from _helpers import TEXTS, tiny_decoder
from torch.func import functional_call

from bayeshead.adapters import LoRAConfig, PoLARConfig, inject_adapters
from bayeshead.backbones.huggingface import HuggingFaceBackbone
from bayeshead.backbones.pooling import pool
from bayeshead.heads.deterministic import DeterministicHead
from bayeshead.methods.adapter_laplace import adapter_laplace_parameters, fit_adapter_laplace
from bayeshead.model import BayesianModel

C = 3
TARGETS = torch.tensor([0, 1, 2, 1])


def _model(tokenizer, kind: str = "lora") -> BayesianModel:
    net = tiny_decoder("llama", tokenizer.vocab_size)
    cfg = LoRAConfig if kind == "lora" else PoLARConfig
    inject_adapters(net, cfg(rank=2, target_modules=["q_proj", "v_proj"]))
    net = net.to(torch.float64)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith(("lora_B", "theta")):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    backbone = HuggingFaceBackbone(net, tokenizer, pooling="last_token")
    head = DeterministicHead(backbone.feature_dim, C).to(torch.float64)
    with torch.no_grad():
        head.linear.weight.copy_(2.0 * torch.randn(head.linear.weight.shape, generator=gen, dtype=torch.float64))
    return BayesianModel(backbone, head)


def _brute_force(model: BayesianModel, batch, names):
    """Logits (B, C) and J (B, C, P) by autograd.functional.jacobian on the whole padded batch."""
    net = model.backbone.model
    named = dict(net.named_parameters())
    shapes = [named[n].shape for n in names]
    theta0 = torch.cat([named[n].detach().reshape(-1) for n in names])
    w, b = model.head.linear.weight.detach(), model.head.linear.bias.detach()
    pos = (batch["attention_mask"].long().cumsum(-1) - 1).clamp_min(0)

    def logits(theta):
        parts, i = {}, 0
        for n, s in zip(names, shapes, strict=True):
            k = s.numel()
            parts[n] = theta[i : i + k].reshape(s)
            i += k
        out = functional_call(net, parts, kwargs={**batch, "position_ids": pos, "output_hidden_states": True})
        phi = pool(out.hidden_states[-1], batch["attention_mask"], "last_token")
        return phi @ w.T + b

    net.eval()
    jac = torch.autograd.functional.jacobian(logits, theta0)
    return logits(theta0).detach(), jac


def test_full_ggn_matches_brute_force_and_diag(offline_tokenizer):
    model = _model(offline_tokenizer)
    batch = model.backbone.tokenize(TEXTS)
    full = fit_adapter_laplace(model, [(batch, TARGETS)], prior_precision=1.0, structure="full")
    diag = fit_adapter_laplace(model, [(TEXTS[:2], TARGETS[:2]), (TEXTS[2:], TARGETS[2:])], structure="diag")
    names, params = adapter_laplace_parameters(model.backbone.model, "lora")
    assert full.names == names and full.num_parameters == sum(p.numel() for p in params)
    f, jac = _brute_force(model, batch, names)
    p = torch.softmax(f, -1)
    lam = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)
    expected = torch.einsum("bcp,bcd,bdq->pq", jac, lam, jac)
    assert expected.abs().max() > 1e-3  # non-trivial curvature
    torch.testing.assert_close(full.ggn, expected, atol=1e-8, rtol=0)
    torch.testing.assert_close(diag.ggn, expected.diagonal(), atol=1e-8, rtol=0)
    # the MAP NLL and the marginal likelihood formula
    nll = torch.nn.functional.cross_entropy(f, TARGETS, reduction="sum")
    torch.testing.assert_close(full.map_nll, nll, atol=1e-10, rtol=0)
    d = 0.7
    theta = full.mean()
    lml = -nll - 0.5 * d * theta.square().sum() + 0.5 * theta.numel() * torch.log(torch.tensor(d, dtype=torch.float64))
    lml = lml - 0.5 * torch.logdet(expected + d * torch.eye(len(theta), dtype=torch.float64))
    torch.testing.assert_close(full.log_marginal_likelihood(d), lml, atol=1e-8, rtol=0)
    lml_diag = lml + 0.5 * torch.logdet(expected + d * torch.eye(len(theta), dtype=torch.float64))
    lml_diag = lml_diag - 0.5 * torch.log(expected.diagonal() + d).sum()
    torch.testing.assert_close(diag.log_marginal_likelihood(d), lml_diag, atol=1e-8, rtol=0)
    # J Σ Jᵀ against the brute-force Jacobian
    mean, cov = full.logit_moments(batch)
    sigma = torch.linalg.inv(expected + torch.eye(len(theta), dtype=torch.float64))
    torch.testing.assert_close(mean, f, atol=1e-10, rtol=0)
    torch.testing.assert_close(cov, jac @ sigma @ jac.transpose(1, 2), atol=1e-8, rtol=1e-8)


def test_full_refused_when_too_large(offline_tokenizer, monkeypatch):
    import bayeshead.methods.adapter_laplace as mod

    model = _model(offline_tokenizer)
    monkeypatch.setattr(mod, "MAX_FULL_PARAMETERS", 10)
    with pytest.raises(ValueError, match="structure='diag'"):
        fit_adapter_laplace(model, [(TEXTS, TARGETS)], structure="full")


def test_polar_theta_only(offline_tokenizer):
    model = _model(offline_tokenizer, "polar")
    la = fit_adapter_laplace(model, [(TEXTS, TARGETS)], structure="full")
    ranks = [2] * 4  # q_proj, v_proj in 2 layers, rank 2
    assert la.num_parameters == sum(r * r for r in ranks)
    assert all(n.endswith(".theta") for n in la.names)
    names, _ = adapter_laplace_parameters(model.backbone.model, "polar_theta")
    f, jac = _brute_force(model, model.backbone.tokenize(TEXTS), names)
    p = torch.softmax(f, -1)
    lam = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)
    torch.testing.assert_close(la.ggn, torch.einsum("bcp,bcd,bdq->pq", jac, lam, jac), atol=1e-8, rtol=0)
    for bad in ("U", "V", "polar"):
        with pytest.raises(ValueError, match="Stiefel"):
            fit_adapter_laplace(model, [(TEXTS, TARGETS)], params=bad)
    with pytest.raises(ValueError, match="no such adapters"):
        fit_adapter_laplace(model, [(TEXTS, TARGETS)], params="lora")


def test_predictive_and_no_copy(offline_tokenizer):
    model = _model(offline_tokenizer)
    net = model.backbone.model
    base = net.model.layers[0].self_attn.q_proj.base_layer.weight
    ptr, n_params = base.data_ptr(), sum(1 for _ in model.parameters())
    la = fit_adapter_laplace(model, [(TEXTS, TARGETS)], prior_precision=0.5, structure="full")
    assert base.data_ptr() == ptr and sum(1 for _ in model.parameters()) == n_params
    assert la.model is model and la.params[0] is net.model.layers[0].self_attn.q_proj.lora_A

    batch = model.backbone.tokenize(TEXTS)
    mean, cov = la.logit_moments(batch)
    assert cov.diagonal(dim1=1, dim2=2).min() > 1e-3  # the posterior is not degenerate
    probit = la.predict(batch)
    mc = la.predict(TEXTS, link="mc", n_samples=20000, generator=torch.Generator().manual_seed(0))
    for pred in (probit, mc):
        assert torch.isfinite(pred.probs).all()
        torch.testing.assert_close(pred.probs.sum(-1), torch.ones(4, dtype=pred.probs.dtype))
    map_conf = torch.softmax(mean, -1).max(-1).values.mean()
    assert probit.probs.max(-1).values.mean() < map_conf
    assert mc.probs.max(-1).values.mean() < map_conf

    # independent reference: sample θ ~ N(θ*, Σ) and push through the linearised model
    names = la.names
    f, jac = _brute_force(model, batch, names)
    sigma = la.posterior_covariance()
    gen = torch.Generator().manual_seed(1)
    eps = torch.randn(20000, sigma.shape[0], generator=gen, dtype=torch.float64)
    dtheta = eps @ torch.linalg.cholesky(sigma).T
    ref = torch.softmax(f + torch.einsum("bcp,sp->sbc", jac, dtheta), -1).mean(0)
    # two independent 20k-sample means: std per entry ≤ 0.5/sqrt(20000) ≈ 0.0035 each
    torch.testing.assert_close(mc.probs, ref, atol=0.02, rtol=0)
    # probit uses only diag(JΣJᵀ) and the probit≈logistic match, so with logit variances of
    # O(1) here it is off by up to ~0.2 per entry (measured 0.17); only a loose bound
    torch.testing.assert_close(probit.probs, ref, atol=0.25, rtol=0)
    # seeded MC is reproducible
    again = la.predict(TEXTS, link="mc", n_samples=20000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(again.probs, mc.probs, atol=0, rtol=0)
