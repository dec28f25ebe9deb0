"""The empirical-Bayes prior of the VBLL classification head (``prior_scale_rule="evidence"``).

The prior is p(w_c) = N(0, s·I). A fixed s is tied to the scale of the features and to the task:
multiplying φ by 10 multiplies every prior logit wᵀφ by 10, so a value tuned for one backbone
(MiniLM, ‖φ‖ ≈ 4) is wrong for another (LLM features, ‖φ‖ in the hundreds), and a value tuned for a
hard task is too tight for an easy one (under-confident) or too loose for a hard one. The rule
chooses s by type-II maximum likelihood (MacKay 1992, "The evidence framework applied to
classification networks"; Bishop 2006 §4.5), on the features and labels the head is trained on:

    s* = argmax_s log p(y | Φ, s),   p(y | Φ, s) = ∫ Π_n softmax(Wφ_n)_{y_n} N(W | 0, s·I) dW,

with the evidence in its Laplace approximation around the MAP weights W_s:

    log p(y | Φ, s) ≈ Σ_n log softmax(W_s φ_n)_{y_n} − ‖W_s‖²/(2s) − (C·d/2)·log s − ½·log|H_s|,
    H_s = I/s + Σ_n (diag p_n − p_n p_nᵀ) ⊗ φ_n φ_nᵀ        (exact Hessian of the MAP objective).

``log|H_s|`` is computed in whichever of two equal forms is smaller: the (C·d)² primal, or
−C·d·log s + log|I + s·K| with K the (N·C)² Gram matrix of the rows A_n^{1/2}(I ⊗ φ_nᵀ)
(Sylvester's determinant identity), so LLM widths with few examples stay cheap.

s is searched as the prior logit standard deviation κ = √s·rms‖φ‖ (golden-section search on log κ
in [``KAPPA_RANGE``]), which makes the choice invariant to rescaling the features: with φ → a·φ
every term above is unchanged under W → W/a, s → s/a², so κ* is the same and s* scales by 1/a².

Why not the head's own ELBO: maximised over s for the mean-field (diagonal) posterior, the ELBO
s* = Σ_c(‖w̄_c‖² + tr S_c)/(C·d) picked a prior logit sd below 0.5 on both corpora of
benchmarks/results/vbll-defaults.md, where validation NLL wanted 2 (tweets) and 4–8 (an easy
corpus); the Laplace evidence peaked at 2 and 4–8, tracking validation NLL.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from bayeshead.errors import UserInputError

__all__ = [
    "KAPPA_RANGE",
    "feature_norm_prior_var",
    "laplace_log_evidence",
    "evidence_prior_var",
    "prior_logit_std",
]

#: the search interval of the prior logit standard deviation κ = √s·rms‖φ‖.
KAPPA_RANGE = (0.05, 200.0)


def _mean_sq_norm(features: Tensor) -> float:
    if features.dim() != 2 or features.shape[0] == 0:
        raise UserInputError(f"expected a non-empty (N, d) feature matrix, got shape {tuple(features.shape)}")
    mean_sq = float(features.detach().double().pow(2).sum(-1).mean())
    if not mean_sq > 0:
        raise UserInputError(
            "every feature vector is zero, so no prior scale can be set from the data; check the "
            "backbone's features, or use prior_scale_rule='fixed' with an explicit prior_scale"
        )
    return mean_sq


def feature_norm_prior_var(features: Tensor, logit_std: float = 1.0) -> float:
    """s = κ² / mean_n ‖φ_n‖²: the prior variance under which wᵀφ has standard deviation κ =
    ``logit_std`` at the features' root-mean-square norm."""
    if not logit_std > 0:
        raise UserInputError(f"logit_std must be positive, got {logit_std}")
    return logit_std**2 / _mean_sq_norm(features)


def prior_logit_std(prior_var: float, features: Tensor) -> float:
    """κ = √(s · mean_n ‖φ_n‖²): the prior standard deviation of a logit wᵀφ on these features."""
    return math.sqrt(prior_var * _mean_sq_norm(features))


def _objective(phi: Tensor, y: Tensor, weight: Tensor, prior_var: float) -> Tensor:
    return F.cross_entropy(phi @ weight.T, y, reduction="sum") + weight.pow(2).sum() / (2.0 * prior_var)


def _primal_hessian(phi: Tensor, probs: Tensor, prior_var: float) -> Tensor:
    """H = I/s + Σ_n (diag p_n − p_n p_nᵀ) ⊗ φ_nφ_nᵀ as a (C·d, C·d) matrix (row-major vec(W))."""
    c, d = probs.shape[1], phi.shape[1]
    curv = torch.diag_embed(probs) - probs[:, :, None] * probs[:, None, :]
    ggn = torch.einsum("nab,ni,nj->aibj", curv, phi, phi).reshape(c * d, c * d)
    return ggn + torch.eye(c * d, dtype=phi.dtype, device=phi.device) / prior_var


def _map_weights(phi: Tensor, y: Tensor, classes: int, prior_var: float, start: Tensor | None) -> Tensor:
    """argmin_W Σ_n CE(Wφ_n, y_n) + ‖W‖²/(2s) (strictly convex): Newton's method with backtracking
    when the (C·d)² Hessian is no larger than (N·C)², otherwise L-BFGS; float64."""
    n, d = phi.shape
    weight = torch.zeros(classes, d, dtype=phi.dtype) if start is None else start.clone()
    onehot = F.one_hot(y, classes).to(phi.dtype)
    if classes * d > n * classes:
        weight.requires_grad_(True)
        opt = torch.optim.LBFGS(
            [weight], lr=1.0, max_iter=500, tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe"
        )

        def closure() -> Tensor:
            opt.zero_grad()
            loss = _objective(phi, y, weight, prior_var)
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        return weight.detach()
    value = _objective(phi, y, weight, prior_var)
    for _ in range(100):
        probs = (phi @ weight.T).softmax(-1)
        grad = (probs - onehot).T @ phi + weight / prior_var
        step = torch.linalg.solve(_primal_hessian(phi, probs, prior_var), grad.reshape(-1)).reshape(weight.shape)
        if float((grad * step).sum()) < 1e-14 * max(1.0, abs(float(value))):  # Newton decrement λ²
            break
        rate = 1.0
        while rate > 1e-10:
            trial = weight - rate * step
            trial_value = _objective(phi, y, trial, prior_var)
            if trial_value <= value:
                break
            rate *= 0.5
        if rate <= 1e-10:
            break
        weight, value = trial, trial_value
    return weight


def _logdet_hessian(phi: Tensor, probs: Tensor, prior_var: float) -> Tensor:
    """log|I/s + Σ_n A_n ⊗ φ_nφ_nᵀ|, A_n = diag p_n − p_n p_nᵀ, in the primal or the dual form."""
    n, d = phi.shape
    c = probs.shape[1]
    if c * d <= n * c:
        return torch.linalg.slogdet(_primal_hessian(phi, probs, prior_var))[1]
    curv = torch.diag_embed(probs) - probs[:, :, None] * probs[:, None, :]  # (N, C, C)
    evals, evecs = torch.linalg.eigh(curv)
    root = evecs @ torch.diag_embed(evals.clamp_min(0.0).sqrt()) @ evecs.transpose(-1, -2)  # A_n^{1/2}
    gram = phi @ phi.T  # B_n B_mᵀ = (φ_nᵀφ_m) A_n^{1/2} A_m^{1/2}
    dual = torch.einsum("nm,nab,mbc->namc", gram, root, root).reshape(n * c, n * c)
    return -c * d * math.log(prior_var) + torch.linalg.slogdet(torch.eye(n * c, dtype=phi.dtype) + prior_var * dual)[1]


def laplace_log_evidence(
    features: Tensor, labels: Tensor, classes: int, prior_var: float, *, start: Tensor | None = None
) -> tuple[float, Tensor]:
    """The Laplace approximation of log p(y | Φ, s) for the linear softmax model with prior
    N(0, s·I) on its (C, d) weights (see the module docstring), and the MAP weights W_s.
    ``start`` warm-starts the MAP fit."""
    if not prior_var > 0:
        raise UserInputError(f"prior_var must be positive, got {prior_var}")
    phi = features.detach().double()
    y = labels.detach().long().to(phi.device)
    weight = _map_weights(phi, y, classes, prior_var, start)
    logits = phi @ weight.T
    log_lik = -F.cross_entropy(logits, y, reduction="sum")
    c, d = weight.shape
    log_prior = -weight.pow(2).sum() / (2.0 * prior_var) - 0.5 * c * d * math.log(prior_var)
    value = log_lik + log_prior - 0.5 * _logdet_hessian(phi, logits.softmax(-1), prior_var)
    return float(value), weight


def evidence_prior_var(
    features: Tensor, labels: Tensor, classes: int, *, tol: float = 1e-3, kappa_range: tuple[float, float] = KAPPA_RANGE
) -> float:
    """s* maximising :func:`laplace_log_evidence`, by golden-section search on log κ (κ = √s·rms‖φ‖)
    over ``kappa_range`` to a relative tolerance ``tol`` in κ. The search assumes one maximum in the
    interval (the evidence of this model is unimodal in s in practice); an optimum at an end of the
    interval returns that end."""
    if features.shape[0] != labels.shape[0]:
        raise UserInputError(f"got {features.shape[0]} feature rows but {labels.shape[0]} labels")
    mean_sq = _mean_sq_norm(features)
    low, high = (math.log(k) for k in kappa_range)
    starts: dict[str, Tensor] = {}

    def score(log_kappa: float) -> float:
        value, weight = laplace_log_evidence(
            features, labels, classes, math.exp(2.0 * log_kappa) / mean_sq, start=starts.get("w")
        )
        starts["w"] = weight
        return value

    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = low, high
    x1, x2 = b - ratio * (b - a), a + ratio * (b - a)
    f1, f2 = score(x1), score(x2)
    while b - a > tol:
        if f1 >= f2:
            b, x2, f2 = x2, x1, f1
            x1 = b - ratio * (b - a)
            f1 = score(x1)
        else:
            a, x1, f1 = x1, x2, f2
            x2 = a + ratio * (b - a)
            f2 = score(x2)
    best = x1 if f1 >= f2 else x2
    return math.exp(2.0 * best) / mean_sq
