"""Laplace-LoRA on multiple choice in the per-option formulation (``deterministic_options``): a
question is one example whose logits are its own options' scores. The GGN against brute-force
autograd Jacobians, the padded slots contributing nothing, the per-question GLM predictive, the
K-FAC factors against their closed form, and the method end to end with a save/load round trip."""

from __future__ import annotations

import math

import pytest
import torch
from _helpers import tiny_decoder, toy_questions
from torch.func import functional_call

from bayeshead.adapters import LoRAConfig, inject_adapters
from bayeshead.backbones.huggingface import HuggingFaceBackbone
from bayeshead.backbones.option_groups import OPTION_COUNTS, option_batch
from bayeshead.backbones.pooling import pool
from bayeshead.config import load_config
from bayeshead.errors import BayesheadError
from bayeshead.heads.option_deterministic import DeterministicOptionConfig, DeterministicOptionHead
from bayeshead.methods import build_method, load_method
from bayeshead.methods.adapter_laplace import fit_adapter_laplace, ggn_terms, slice_question
from bayeshead.model import BayesianModel

F64 = torch.float64
K = 5  # the head's max_options: one more than any question below, so the predictive pads a column
GROUPS = [
    ("the cat sat on the mat", "a dog"),
    ("yes", "no", "maybe so, who knows"),
    ("red apple", "green", "blue sky above us", "yellow"),
    ("hi there", "hello"),
]
TARGETS = torch.tensor([1, 2, 0, 0])
COUNTS = [len(g) for g in GROUPS]
DELTA = 0.7


def _model(tokenizer) -> BayesianModel:
    net = tiny_decoder("llama", tokenizer.vocab_size)
    inject_adapters(net, LoRAConfig(rank=2, alpha=4.0, target_modules=["q_proj", "v_proj"]))
    net = net.to(F64)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("lora_B"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=F64))
    backbone = HuggingFaceBackbone(net, tokenizer, pooling="last_token")
    head = DeterministicOptionHead(backbone.feature_dim, K, DeterministicOptionConfig(position_bias=True)).to(F64)
    with torch.no_grad():
        head.weight.copy_(0.5 * torch.randn(head.weight.shape, generator=gen, dtype=F64))
        head.position_bias.copy_(0.5 * torch.randn(K, generator=gen, dtype=F64))
    return BayesianModel(backbone, head)


@pytest.fixture(scope="module")
def model(offline_tokenizer) -> BayesianModel:
    return _model(offline_tokenizer)  # fitting never changes the model


@pytest.fixture(scope="module")
def full(model):
    # two batches, given as option groups: the GGN and the NLL are sums over questions
    return fit_adapter_laplace(
        model, [(GROUPS[:2], TARGETS[:2]), (GROUPS[2:], TARGETS[2:])], structure="full", prior_precision=DELTA
    )


@pytest.fixture(scope="module")
def brute(model, full):
    """Flat option logits (N,) and J (N, P) by autograd.functional.jacobian on the whole flat batch."""
    batch, counts = option_batch(model.as_batch(GROUPS))
    assert counts.tolist() == COUNTS
    net = model.backbone.model
    named = dict(net.named_parameters())
    shapes = [named[n].shape for n in full.names]
    theta0 = torch.cat([named[n].detach().reshape(-1) for n in full.names])
    w, b = model.head.weight.detach(), model.head.position_bias.detach()
    slot = torch.cat([torch.arange(n) for n in COUNTS])
    pos = (batch["attention_mask"].long().cumsum(-1) - 1).clamp_min(0)

    def logits(theta):
        parts, i = {}, 0
        for n, s in zip(full.names, shapes, strict=True):
            parts[n] = theta[i : i + s.numel()].reshape(s)
            i += s.numel()
        out = functional_call(net, parts, kwargs={**batch, "position_ids": pos, "output_hidden_states": True})
        return pool(out.hidden_states[-1], batch["attention_mask"], "last_token") @ w + b[slot]

    net.eval()
    return logits(theta0).detach(), torch.autograd.functional.jacobian(logits, theta0)


def _questions_of(flat: torch.Tensor) -> list[torch.Tensor]:
    return list(flat.split(COUNTS))


def _lam(f: torch.Tensor) -> torch.Tensor:
    p = torch.softmax(f, -1)
    return torch.diag(p) - torch.outer(p, p)


# ----- (a) the GGN over the real options of each question -----


def test_ggn_is_the_sum_over_questions_of_their_real_option_jacobians(model, full, brute):
    f, jac = brute
    expected = sum(jq.T @ _lam(fq) @ jq for fq, jq in zip(_questions_of(f), _questions_of(jac), strict=True))
    assert expected.abs().max() > 1e-3  # non-trivial curvature
    torch.testing.assert_close(full.ggn, expected, atol=1e-8, rtol=0)
    diag = fit_adapter_laplace(model, [(model.as_batch(GROUPS), TARGETS)], structure="diag")
    torch.testing.assert_close(diag.ggn, expected.diagonal(), atol=1e-8, rtol=0)
    assert full.n_data == diag.n_data == 4  # N counts questions
    nll = -sum(torch.log_softmax(fq, -1)[y] for fq, y in zip(_questions_of(f), TARGETS.tolist(), strict=True))
    torch.testing.assert_close(full.map_nll, nll, atol=1e-10, rtol=0)
    # the logit moments: padded to the batch's 4 slots, −inf and zero covariance on absent options
    mean, cov = full.logit_moments(GROUPS)
    assert mean.shape == (4, 4) and cov.shape == (4, 4, 4)
    sigma = torch.linalg.inv(expected + DELTA * torch.eye(expected.shape[0], dtype=F64))
    for q, (fq, jq) in enumerate(zip(_questions_of(f), _questions_of(jac), strict=True)):
        n = COUNTS[q]
        torch.testing.assert_close(mean[q, :n], fq, atol=1e-10, rtol=0)
        assert (mean[q, n:] == -math.inf).all() and (cov[q, n:] == 0).all() and (cov[q, :, n:] == 0).all()
        torch.testing.assert_close(cov[q, :n, :n], jq @ sigma @ jq.T, atol=1e-8, rtol=1e-8)


def test_slice_question_takes_its_option_rows(model):
    batch = model.as_batch(GROUPS)
    part = slice_question(batch, 2)
    assert part[OPTION_COUNTS].tolist() == [4]
    assert set(part) == set(batch)
    for key, value in batch.items():
        if key != OPTION_COUNTS:
            torch.testing.assert_close(part[key], value[5:9], atol=0, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(model.features(part)[0], model.features(batch)[2], atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match="option batch"):
        slice_question(model.backbone.tokenize(["a", "b"]), 0)


def test_option_data_errors_are_clear(model):
    with pytest.raises(ValueError, match="option groups"):
        fit_adapter_laplace(model, [(["a text", "another"], torch.tensor([0, 1]))], structure="diag")
    with pytest.raises(ValueError, match="question 0 has 2 options but its target is 2"):
        fit_adapter_laplace(model, [([GROUPS[3], GROUPS[1]], torch.tensor([2, 0]))], structure="diag")
    with pytest.raises(ValueError, match="question 0 has 2 options but its target is 3"):
        fit_adapter_laplace(model, [(GROUPS[::2], torch.tensor([3, 0]))], structure="kron")
    with pytest.raises(BayesheadError, match="deterministic_options"):
        build_method(load_config(overrides=[*_TRAIN, "head.kind=vbll_options", "method.kind=laplace_lora"]), 4)


# ----- (b) a question of n options among K slots is a C = n class-row example -----


def test_padded_slots_add_nothing_and_a_question_is_a_class_row_example():
    gen = torch.Generator().manual_seed(0)
    p_dim = 7
    f2, f4 = torch.randn(2, generator=gen, dtype=F64), torch.randn(4, generator=gen, dtype=F64)
    j2, j4 = torch.randn(2, p_dim, generator=gen, dtype=F64), torch.randn(4, p_dim, generator=gen, dtype=F64)
    # the class-row GGN of a C = 2 and a C = 4 head whose logits are the same numbers
    rows = ggn_terms(f2[None], j2[None], "full") + ggn_terms(f4[None], j4[None], "full")
    torch.testing.assert_close(rows, j2.T @ _lam(f2) @ j2 + j4.T @ _lam(f4) @ j4, atol=1e-12, rtol=0)
    # both questions padded to K = 5 slots in one batch: −inf logits on absent options; whatever
    # their Jacobian rows hold, Λ is 0 on them
    logits = torch.full((2, 5), -math.inf, dtype=F64)
    logits[0, :2], logits[1, :4] = f2, f4
    jac = torch.randn(2, 5, p_dim, generator=gen, dtype=F64)
    jac[0, :2], jac[1, :4] = j2, j4
    torch.testing.assert_close(ggn_terms(logits, jac, "full"), rows, atol=1e-12, rtol=0)
    torch.testing.assert_close(ggn_terms(logits, jac, "diag"), rows.diagonal(), atol=1e-12, rtol=0)
    jac[0, 2:], jac[1, 4:] = 0.0, 0.0  # as the Jacobians of absent options are
    torch.testing.assert_close(ggn_terms(logits, jac, "full"), rows, atol=1e-12, rtol=0)


# ----- (c) the GLM predictive per question -----


def test_probit_and_mc_predictive_per_question(model, full, brute):
    f, jac = brute
    absent = torch.arange(K)[None, :] >= torch.tensor(COUNTS)[:, None]
    probit = full.predict(GROUPS)
    mc = full.predict(GROUPS, link="mc", n_samples=10000, generator=torch.Generator().manual_seed(0))
    for pred in (probit, mc):
        assert pred.probs.shape == (4, K)
        assert (pred.probs[absent] == 0).all() and (pred.probs[~absent] > 0).all()
        assert (pred.log_probs[absent] == -math.inf).all()
        torch.testing.assert_close(pred.probs.sum(-1), torch.ones(4, dtype=F64), atol=1e-12, rtol=0)
    assert mc.samples.shape == (10000, 4, K) and (mc.samples[:, absent] == 0).all()
    # probit by hand: softmax over the question's options of z_k / sqrt(1 + π/8·(J Σ Jᵀ)_kk)
    sigma = full.posterior_covariance()
    for q in (1, 2):
        fq, jq = _questions_of(f)[q], _questions_of(jac)[q]
        var = (jq @ sigma @ jq.T).diagonal()
        assert var.min() > 1e-3  # the posterior matters
        hand = torch.softmax(fq / torch.sqrt(1.0 + math.pi / 8.0 * var), -1)
        torch.testing.assert_close(probit.probs[q, : COUNTS[q]], hand, atol=1e-10, rtol=0)
    # MC against θ ~ N(θ*, Σ) pushed through the linearised model, softmax per question
    eps = torch.randn(10000, sigma.shape[0], generator=torch.Generator().manual_seed(1), dtype=F64)
    logits = f + (eps @ torch.linalg.cholesky(sigma).T) @ jac.T  # (S, N)
    for q, zq in enumerate(logits.split(COUNTS, dim=1)):
        # two independent 10k-sample means: std per entry ≤ 0.5/sqrt(10000) each
        torch.testing.assert_close(mc.probs[q, : COUNTS[q]], torch.softmax(zq, -1).mean(0), atol=0.03, rtol=0)
    again = full.predict(GROUPS, link="mc", n_samples=10000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(again.probs, mc.probs, atol=0, rtol=0)


# ----- K-FAC: expand over every token of every option of a question -----


def test_kfac_factors_match_their_closed_form(model, brute):
    """For LoRA B of one adapter, with u_{r,t} = ∂z_r/∂h_{r,t} (row r = option k of question q):
    Σ_c S_q[k, c]² = p_{q,k}(1 − p_{q,k}), so G = s²·Σ_q Σ_{r∈q} p_{q,k}(1 − p_{q,k}) Σ_t u u ᵀ and
    A = (1/N)·Σ_q (1/T_q) Σ_{r∈q, t} (A x)(A x)ᵀ, T_q the real tokens of all of q's options."""
    kron = fit_adapter_laplace(model, [(GROUPS, TARGETS)], structure="kron")
    name = "model.layers.1.self_attn.v_proj"
    adapter = model.backbone.model.get_submodule(name)
    g_ours, a_ours = kron.ggn.factors[kron.names.index(f"{name}.lora_B")]

    batch, counts = option_batch(model.as_batch(GROUPS))
    captured = {}

    def hook(module, args, output):
        captured["x"] = args[0].detach()
        captured["probe"] = torch.zeros_like(output, requires_grad=True)
        return output + captured["probe"]

    handle = adapter.register_forward_hook(hook)
    try:
        z = model.backbone.features(batch) @ model.head.weight.detach()
    finally:
        handle.remove()
    mask = batch["attention_mask"].to(F64)
    f, _ = brute
    p = torch.cat([torch.softmax(fq, -1) for fq in _questions_of(f)])
    s = float(adapter.scaling)
    g_hand = torch.zeros_like(g_ours)
    for r in range(z.shape[0]):
        (u,) = torch.autograd.grad(z[r], captured["probe"], retain_graph=True)
        u = u[r] * mask[r, :, None]
        g_hand += s**2 * p[r] * (1 - p[r]) * u.T @ u
    ax = captured["x"] @ adapter.lora_A.detach().T  # (rows, tokens, rank)
    tokens = torch.stack([m.sum() for m in mask.split(COUNTS)]).repeat_interleave(counts)
    a_hand = torch.einsum("rt,rti,rtj->ij", mask / tokens[:, None], ax, ax) / len(GROUPS)
    assert g_hand.abs().max() > 1e-4 and a_hand.abs().max() > 1e-2
    # HF's RMSNorm rounds in float32 inside a float64 model, differently for the two sets of passes
    torch.testing.assert_close(g_ours, g_hand, atol=1e-6 * float(g_hand.abs().max()), rtol=0)
    torch.testing.assert_close(a_ours, a_hand, atol=1e-10, rtol=1e-10)

    # questions one at a time give the same factors (padding left out, each question its own T_q)
    alone = fit_adapter_laplace(model, [([g], TARGETS[i : i + 1]) for i, g in enumerate(GROUPS)], structure="kron")
    for (g1, a1), (g2, a2) in zip(kron.ggn.factors, alone.ggn.factors, strict=True):
        torch.testing.assert_close(g1, g2, atol=1e-12, rtol=1e-6)
        torch.testing.assert_close(a1, a2, atol=1e-12, rtol=1e-8)
    torch.testing.assert_close(kron.map_nll, alone.map_nll, atol=1e-10, rtol=0)

    # the predictive over the K-FAC posterior: J_q Σ J_qᵀ on the real options, 0 elsewhere
    kron.set_prior_precision(DELTA)
    dense = kron.ggn.to_dense()
    sigma = torch.linalg.inv(dense + DELTA * torch.eye(dense.shape[0], dtype=F64))
    _, cov = kron.logit_moments(GROUPS)
    _, jac = brute
    for q, jq in enumerate(_questions_of(jac)):
        n = COUNTS[q]
        torch.testing.assert_close(cov[q, :n, :n], jq @ sigma @ jq.T, atol=1e-8, rtol=1e-7)
        assert (cov[q, n:] == 0).all() and (cov[q, :, n:] == 0).all()
    pred = kron.predict(GROUPS)
    assert pred.probs.shape == (4, K) and (pred.probs[0, 2:] == 0).all()


# ----- (d) the method end to end -----

_TRAIN = [
    "training.progress=false", "training.epochs=2", "training.batch_size=4", "optimizer.lr=0.02",
    "training.head_lr=0.05", "adapter.kind=lora", "adapter.rank=2", "adapter.target_modules=[q_proj, v_proj]",
]




@pytest.mark.parametrize("structure", ["diag", "full", "kron"])
def test_laplace_lora_fits_predicts_and_round_trips_option_data(structure, offline_tokenizer, tmp_path):
    def backbone():
        net = tiny_decoder("llama", offline_tokenizer.vocab_size, seed=0)
        return HuggingFaceBackbone(net, offline_tokenizer, pooling="last_token", max_length=32)

    config = load_config(
        overrides=[*_TRAIN, "head.kind=deterministic_options", "head.weight_decay=0.01", "method.kind=laplace_lora",
                   f"method.hessian_structure={structure}", "method.fit_batch_size=3"]
    )
    torch.manual_seed(0)
    method = build_method(config, num_outputs=4, backbone=backbone())
    train = toy_questions(8)
    rows = method.fit(train, toy_questions(4))
    assert rows and method.laplace is not None and method.laplace.n_data == 8
    assert method.laplace.structure == structure and math.isfinite(float(method.laplace.prior_precision))
    groups = toy_questions(6).texts
    pred = method.predict(groups)
    assert pred.probs.shape == (6, 4)
    absent = torch.arange(4)[None, :] >= torch.tensor([len(g) for g in groups])[:, None]
    assert (pred.probs[absent] == 0).all() and (pred.probs[~absent] > 0).all()
    torch.testing.assert_close(pred.probs.sum(-1), torch.ones(6, dtype=pred.probs.dtype), atol=1e-10, rtol=0)
    # the posterior widens the MAP predictive
    map_probs = method.model.predict(groups).probs.to(pred.probs.dtype)
    assert pred.probs.max(-1).values.mean() < map_probs.max(-1).values.mean()

    method.save_pretrained(tmp_path / "saved")
    again = load_method(tmp_path / "saved", backbone=backbone())
    assert type(again) is type(method) and again.laplace.structure == structure
    torch.testing.assert_close(again.predict(groups).probs, pred.probs, atol=0, rtol=0)
    mc = [
        m.laplace.predict(groups, link="mc", n_samples=50, generator=torch.Generator().manual_seed(3))
        for m in (method, again)
    ]
    torch.testing.assert_close(mc[0].probs, mc[1].probs, atol=0, rtol=0)
    assert mc[0].samples.shape == (50, 6, 4) and (mc[0].probs[absent] == 0).all()
