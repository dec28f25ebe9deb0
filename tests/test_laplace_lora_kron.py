"""Laplace-LoRA with a Kronecker-factored GGN: agreement with laplace-torch's KronLaplace (default
curvlinops backend, K-FAC-expand, exact type-2 GGN) on a PEFT copy of the same tiny Llama, the
exact one-token case, padding invariance, PoLAR Θ, and the δ search."""

from __future__ import annotations

import math

import pytest
import torch
from _helpers import TEXTS, tiny_decoder
from torch import nn

from bayeshead.adapters import LoRAConfig, PoLARConfig, inject_adapters
from bayeshead.backbones.huggingface import HuggingFaceBackbone
from bayeshead.heads.deterministic import DeterministicHead
from bayeshead.methods.adapter_laplace import fit_adapter_laplace, optimize_log_prior_precision
from bayeshead.model import BayesianModel

C = 3
ALPHA = 4.0  # scaling α/r = 2 with rank 2, so a missing scaling shows up
F64 = torch.float64


def _model(tokenizer, kind: str = "lora") -> BayesianModel:
    net = tiny_decoder("llama", tokenizer.vocab_size)
    cfg = LoRAConfig if kind == "lora" else PoLARConfig
    inject_adapters(net, cfg(rank=2, alpha=ALPHA, target_modules=["q_proj", "v_proj"]))
    net = net.to(F64)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith(("lora_B", "theta")):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    backbone = HuggingFaceBackbone(net, tokenizer, pooling="last_token")
    head = DeterministicHead(backbone.feature_dim, C).to(F64)
    with torch.no_grad():
        head.linear.weight.copy_(
            0.4 * torch.randn(head.linear.weight.shape, generator=gen, dtype=F64)
        )
        head.linear.bias.copy_(0.5 * torch.randn(C, generator=gen, dtype=F64))
    return BayesianModel(backbone, head)


class _PeftClassifier(nn.Module):
    """The reference: the same Llama with PEFT LoRA (nn.Linear lora_A/lora_B, which curvlinops'
    K-FAC supports) holding our adapter weights; input_ids -> logits of the last token."""

    def __init__(self, model: BayesianModel) -> None:
        from peft import LoraConfig as PeftLoraConfig
        from peft import inject_adapter_in_model

        super().__init__()
        ours = model.backbone.model
        self.net = tiny_decoder("llama", ours.config.vocab_size).to(F64)
        inject_adapter_in_model(
            PeftLoraConfig(
                r=2, lora_alpha=ALPHA, target_modules=["q_proj", "v_proj"], lora_dropout=0.0
            ),
            self.net,
        )
        theirs = dict(ours.named_parameters())
        with torch.no_grad():
            for name, p in self.net.named_parameters():
                p.copy_(theirs[name.replace(".default.weight", "") if ".lora_" in name else name])
                p.requires_grad_(".lora_" in name)
        self.linear = nn.Linear(model.head.linear.in_features, C).to(F64)
        self.linear.load_state_dict(model.head.linear.state_dict())
        self.linear.requires_grad_(False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.net(input_ids=input_ids, output_hidden_states=True).hidden_states[-1]
        return self.linear(hidden[:, -1])


class _Loader:
    """A list of (input_ids, y) batches with the ``.dataset`` length laplace-torch reads for N."""

    def __init__(self, batches):
        self.batches = batches
        self.dataset = [0] * sum(len(y) for _, y in batches)

    def __iter__(self):
        return iter(self.batches)


@pytest.fixture(scope="module")
def lora_model(offline_tokenizer) -> BayesianModel:
    return _model(offline_tokenizer, "lora")  # fitting never changes the model (checked below)


@pytest.fixture(scope="module")
def polar_model(offline_tokenizer) -> BayesianModel:
    return _model(offline_tokenizer, "polar")


def _ids_batches(vocab: int):
    gen = torch.Generator().manual_seed(2)
    # two unpadded batches of different sequence lengths (laplace-torch normalises per batch)
    return [
        (torch.randint(5, vocab, (3, 5), generator=gen), torch.tensor([0, 1, 2])),
        (torch.randint(5, vocab, (2, 7), generator=gen), torch.tensor([2, 1])),
    ]


def _mask(ids: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_kron_matches_laplace_torch(lora_model, offline_tokenizer):
    from laplace import KronLaplace, Laplace
    from laplace.curvature import CurvlinopsGGN

    model = lora_model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = _ids_batches(offline_tokenizer.vocab_size)
    ours = fit_adapter_laplace(
        model, [(_mask(x), y) for x, y in data], structure="kron", prior_precision=1.0
    )
    ref_model = _PeftClassifier(model)
    la = Laplace(
        ref_model,
        "classification",
        subset_of_weights="all",
        hessian_structure="kron",
        prior_precision=1.0,
    )
    assert isinstance(la, KronLaplace) and la._backend_cls is CurvlinopsGGN  # the default we mirror
    la.fit(_Loader(data))

    # same parameters in the same order, the same factors [G (out×out), A (in×in)]
    assert ours.num_parameters == la.n_params == 448
    torch.testing.assert_close(ours.mean(), la.mean, atol=0, rtol=0)
    assert len(ours.ggn.factors) == len(la.H_facs.kfacs) == 8
    for (g, a), (g_ref, a_ref) in zip(ours.ggn.factors, la.H_facs.kfacs, strict=True):
        assert g.abs().max() > 1e-5 and a.abs().max() > 1e-2  # non-trivial blocks
        torch.testing.assert_close(g, g_ref, atol=1e-14, rtol=1e-10)
        torch.testing.assert_close(a, a_ref, atol=1e-14, rtol=1e-10)
    torch.testing.assert_close(ours.map_nll, la.loss.to(F64), atol=1e-10, rtol=0)

    # log marginal likelihood in δ (δ passed as float64: a float32 δ alone moves it by ~1e-7)
    for d in (0.05, 0.7, 3.0, 40.0):
        delta = torch.tensor(d, dtype=F64)
        ref = la.log_marginal_likelihood(prior_precision=delta)
        torch.testing.assert_close(ours.log_marginal_likelihood(d), ref.to(F64), atol=1e-8, rtol=0)

    # GLM predictive: J Σ Jᵀ, probit probabilities and the marginal variances
    x_test = torch.randint(
        5, offline_tokenizer.vocab_size, (4, 6), generator=torch.Generator().manual_seed(3)
    )
    js, f_ref = la.backend.jacobians(x_test)
    for d in (0.3, 5.0):
        ours.set_prior_precision(d)
        la.prior_precision = torch.tensor(d, dtype=F64)
        mean, cov = ours.logit_moments(_mask(x_test))
        torch.testing.assert_close(mean, f_ref, atol=1e-10, rtol=0)
        assert cov.diagonal(dim1=1, dim2=2).min() > 1e-3  # the posterior matters for the predictive
        torch.testing.assert_close(cov, la.functional_variance(js), atol=1e-10, rtol=1e-8)
        torch.testing.assert_close(
            ours.posterior_variance(),
            la.posterior_precision.diag(exponent=-1),
            atol=1e-12,
            rtol=1e-9,
        )
    probs = ours.predict(_mask(x_test), link="probit").probs  # at δ = 5
    ref_probs = la(x_test, pred_type="glm", link_approx="probit")
    torch.testing.assert_close(probs, ref_probs.to(F64), atol=1e-10, rtol=0)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("kind", ["lora", "polar"])
def test_kron_exact_for_one_example_one_token(request, kind):
    """With N = T = 1, J_W = Σ_c g_c ⊗ x per class, so Σ_c J ΛJᵀ's diagonal blocks are exactly
    G ⊗ A: K-FAC equals the exact GGN on each parameter block."""
    model = request.getfixturevalue(f"{kind}_model")
    batch = _mask(torch.tensor([[1234]]))
    data = [(batch, torch.tensor([1]))]
    kron = fit_adapter_laplace(model, data, structure="kron")
    full = fit_adapter_laplace(model, data, structure="full")
    dense = kron.ggn.to_dense()
    blocks = torch.block_diag(
        *[torch.ones(m * n, m * n, dtype=F64) for m, n in kron.ggn.shapes]
    ).bool()
    scale = float(full.ggn.abs().max())
    assert scale > 1e-2
    # HF's LlamaRMSNorm computes in float32 even in a float64 model, so a backward pass of
    # Σ_c S_c f_c (K-FAC) and the C backward passes of f_c (exact J) round differently at the
    # ~1e-7 relative level (measured 1.9e-7); a wrong factor or scaling is off by O(1)
    torch.testing.assert_close(dense, torch.where(blocks, full.ggn, 0.0), atol=1e-6 * scale, rtol=0)
    torch.testing.assert_close(kron.map_nll, full.map_nll, atol=1e-12, rtol=0)

    # the eigenbasis algebra against dense linear algebra on the block-diagonal K-FAC matrix
    probe = _mask(torch.tensor([[17, 4242, 901]]))
    _, jac = full._jac(probe)
    eye = torch.eye(dense.shape[0], dtype=F64)
    for d in (0.2, 3.0):
        kron.set_prior_precision(d)
        sigma = torch.linalg.inv(dense + d * eye)
        _, cov = kron.logit_moments(probe)
        torch.testing.assert_close(cov, jac @ sigma @ jac.transpose(1, 2), atol=1e-10, rtol=1e-9)
        torch.testing.assert_close(kron.posterior_covariance(), sigma, atol=1e-10, rtol=1e-9)
        torch.testing.assert_close(
            kron.posterior_variance(), sigma.diagonal(), atol=1e-10, rtol=1e-9
        )
        theta = kron.mean()
        lml = -full.map_nll - 0.5 * d * theta.square().sum() + 0.5 * theta.numel() * math.log(d)
        lml = lml - 0.5 * torch.logdet(dense + d * eye)
        torch.testing.assert_close(kron.log_marginal_likelihood(d), lml, atol=1e-9, rtol=0)


def test_kron_padding_invariance(lora_model):
    """A padded batch of texts of different lengths gives the factors of the texts fed one by one
    (pads excluded, each example normalised by its own token count)."""
    model = lora_model
    targets = torch.tensor([0, 1, 2, 1])
    padded = model.backbone.tokenize(TEXTS)
    assert int(padded["attention_mask"].sum()) < padded["attention_mask"].numel()  # really padded
    together = fit_adapter_laplace(model, [(padded, targets)], structure="kron")
    one_by_one = fit_adapter_laplace(
        model, [([t], targets[i : i + 1]) for i, t in enumerate(TEXTS)], structure="kron"
    )
    assert together.n_data == one_by_one.n_data == 4
    for (g1, a1), (g2, a2) in zip(together.ggn.factors, one_by_one.ggn.factors, strict=True):
        torch.testing.assert_close(g1, g2, atol=1e-12, rtol=1e-8)
        torch.testing.assert_close(a1, a2, atol=1e-12, rtol=1e-8)
    torch.testing.assert_close(together.map_nll, one_by_one.map_nll, atol=1e-10, rtol=0)


def test_polar_theta_kron_and_prior_search(polar_model):
    model = polar_model
    la = fit_adapter_laplace(model, [(TEXTS, torch.tensor([0, 1, 2, 1]))], structure="kron")
    assert all(n.endswith(".theta") for n in la.names) and la.num_parameters == 4 * 2 * 2
    assert la.ggn.shapes == [(2, 2)] * 4
    assert all(g.shape == a.shape == (2, 2) for g, a in la.ggn.factors)
    assert "kron" in repr(la)

    variances = []
    for d in (0.1, 1.0, 10.0):
        la.set_prior_precision(d)
        mean, cov = la.logit_moments(TEXTS[:2])
        assert mean.shape == (2, C) and cov.shape == (2, C, C)
        torch.testing.assert_close(cov, cov.transpose(1, 2), atol=0, rtol=0)
        assert torch.linalg.eigvalsh(cov).min() > -1e-12  # PSD
        variances.append(cov.diagonal(dim1=1, dim2=2))
        assert la.posterior_variance().shape == (16,)
    pred = la.predict(TEXTS[:2])
    torch.testing.assert_close(pred.probs.sum(-1), torch.ones(2, dtype=pred.probs.dtype))
    assert bool((variances[0] > variances[1]).all() and (variances[1] > variances[2]).all())

    best = optimize_log_prior_precision(la)
    grid = torch.logspace(-4, 4, 33, dtype=F64)
    assert (
        float(la.log_marginal_likelihood(best))
        >= max(float(la.log_marginal_likelihood(d)) for d in grid) - 1e-9
    )
    with pytest.raises(ValueError, match="lower < upper"):
        optimize_log_prior_precision(la, bounds=(2.0, -2.0))
    with pytest.raises(ValueError, match="'diag', 'full' or 'kron'"):
        fit_adapter_laplace(model, [(TEXTS, torch.tensor([0, 1, 2, 1]))], structure="block")
