"""Laplace over adapter parameters (Laplace-LoRA, Yang et al. 2024), a model-level method.

θ are the adapter parameters (all LoRA ``lora_A``/``lora_B``, or only PoLAR's Θ with U, V
fixed: a Gaussian on Θ ∈ R^{r×r} is well defined, one on Stiefel factors is not). The head stays
at its MAP weights. With logits f_n = W·φ_n(θ) + b and J_n = ∂f_n/∂θ (C × P),

    H = Σ_n J_nᵀ Λ_n J_n,   Λ_n = diag(p_n) − p_n p_nᵀ        (GGN of the softmax NLL)
    posterior precision  H + δ·I,   Σ = (H + δ·I)⁻¹
    GLM predictive       f ~ N(f_MAP, J Σ Jᵀ)  (probit or seeded MC link)
    log Z(δ) = log p(D|θ*) − ½δ‖θ*‖² + ½P·log δ − ½·log|H + δ·I|

J_n is computed exactly by reverse mode, one backward pass per (example, class): fine for the
tiny models and few classes this is meant for. ``structure="diag"`` keeps diag(H) (P numbers),
``"full"`` the dense P×P matrix (refused above :data:`MAX_FULL_PARAMETERS`), ``"kron"`` one
Kronecker-factored block H_l ≈ G_l ⊗ A_l per adapter weight (K-FAC-expand over the tokens, as
laplace-torch's default ``KronLaplace``; :mod:`bayeshead.methods.adapter_kfac`), with
log|H + δI| and J Σ Jᵀ from the factors' eigendecompositions (:mod:`bayeshead.methods.kron_ggn`).
Covariance algebra is in float64; the backbone is used in place (never copied).

Multiple choice (a per-option head, ``head.kind=deterministic_options``): an example n is a
question q with n_q options, each its own sequence (a row of the flat tokenized batch, whose
``option_counts`` say which rows belong to which question). Its logits are f_q = H_q w + b
(n_q,), H_q the option features, w the head's shared weight vector, b the position bias; the
question fills the first n_q of K output slots (K = the batch's most options) and the absent slots
get logit −∞: probability 0, zero Jacobian rows, so Λ_q has zero rows and columns there and

    H = Σ_q J_qᵀ Λ_q J_q   over each question's real options only.

The GLM predictive is taken per question over its real options (J_q Σ J_qᵀ is n_q × n_q) and
returned padded to the head's ``max_options`` columns with probability exactly 0 elsewhere.
For ``"kron"`` the shared dimension of the expand rule is every token of every option of a
question (:mod:`bayeshead.methods.adapter_kfac`).

    la = fit_adapter_laplace(model, train_batches, prior_precision=1.0, structure="full")
    best = max(grid, key=la.log_marginal_likelihood); la.set_prior_precision(best)
    predictive = la.predict(["a text"], link="probit")
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import torch
from scipy.optimize import minimize_scalar
from torch import Tensor, nn

from bayeshead.backbones.option_groups import OPTION_COUNTS, is_option_groups, option_batch
from bayeshead.errors import InputTypeError, UserInputError
from bayeshead.heads.glm_predictive import mc_predictive, probit_predictive, sample_logits
from bayeshead.heads.option_scoring import (
    OptionPredictive,
    check_counts,
    option_positions,
    pad_segments,
    unpad_segments,
)
from bayeshead.methods.adapter_kfac import AdapterKFAC
from bayeshead.methods.kron_ggn import KronGGN
from bayeshead.types import CategoricalPredictive

__all__ = [
    "AdapterLaplace",
    "fit_adapter_laplace",
    "adapter_laplace_parameters",
    "optimize_log_prior_precision",
    "ggn_terms",
    "slice_question",
    "MAX_FULL_PARAMETERS",
]

MAX_FULL_PARAMETERS = 20_000
_NAME = "adapter Laplace"
Batch = Mapping[str, Tensor] | Sequence[str]


def adapter_laplace_parameters(
    model: nn.Module, params: str = "auto"
) -> tuple[list[str], list[nn.Parameter]]:
    """Names and parameters θ for ``params`` in ``"lora"``, ``"polar_theta"`` or ``"auto"``."""
    from bayeshead.adapters import LoRALinear, PoLARLinear, adapter_modules

    if params in ("U", "V", "polar", "polar_U", "polar_V", "polar_uv", "stiefel"):
        raise UserInputError(
            f"{_NAME}: params={params!r} would put a Gaussian on PoLAR's Stiefel factors U, V, which "
            "is not defined (they live on a manifold); use params='polar_theta' (U, V kept fixed)"
        )
    adapters = adapter_modules(model)
    lora = {n: a for n, a in adapters.items() if isinstance(a, LoRALinear)}
    polar = {n: a for n, a in adapters.items() if isinstance(a, PoLARLinear)}
    if params == "auto":
        if lora and polar:
            raise UserInputError(f"{_NAME}: the model holds both LoRA and PoLAR adapters; pass params explicitly")
        params = "lora" if lora else "polar_theta" if polar else ""
        if not params:
            raise UserInputError(f"{_NAME}: the model holds no LoRA or PoLAR adapters; inject_adapters first")
    if params == "lora":
        chosen = [(f"{n}.{p}", getattr(a, p)) for n, a in lora.items() for p in ("lora_A", "lora_B")]
    elif params == "polar_theta":
        chosen = [(f"{n}.theta", a.theta) for n, a in polar.items()]
    else:
        raise UserInputError(f"{_NAME}: params must be 'lora', 'polar_theta' or 'auto', got {params!r}")
    if not chosen:
        raise UserInputError(f"{_NAME}: params={params!r} but the model holds no such adapters")
    merged = [n for n, a in adapters.items() if a.merged]
    if merged:
        raise UserInputError(f"{_NAME}: adapters {merged[:5]} are merged; unmerge_adapters(model) first")
    return [n for n, _ in chosen], [p for _, p in chosen]


def _head_linear(model: nn.Module) -> nn.Linear:
    linear = getattr(model.head, "linear", None)
    if not isinstance(linear, nn.Linear):
        raise InputTypeError(
            f"{_NAME}: the head must have a MAP linear layer `.linear` (deterministic or laplace "
            f"head), got {type(model.head).__name__}"
        )
    return linear


def _option_head(model: nn.Module) -> nn.Module:
    """The MAP per-option head: one shared weight vector ``weight`` (d,) and an optional
    ``position_bias`` (K,), as ``deterministic_options`` has."""
    head = model.head
    weight = getattr(head, "weight", None)
    if not isinstance(weight, nn.Parameter) or weight.dim() != 1:
        raise InputTypeError(
            f"{_NAME}: a per-option head must be a MAP head with one shared weight vector `.weight` "
            f"(head.kind=deterministic_options), got {type(head).__name__}"
        )
    return head


def _is_option_head(model: nn.Module) -> bool:
    return getattr(model.head, "task_type", None) == "multiple_choice"


def _slice(batch: Mapping[str, Tensor], i: int) -> dict[str, Tensor]:
    return {k: v[i : i + 1] for k, v in batch.items() if isinstance(v, Tensor)}


def slice_question(batch: Mapping[str, Tensor], q: int) -> dict[str, Tensor]:
    """Question ``q`` of a tokenized option batch (flat option rows and ``option_counts``): its
    n_q option rows of every tensor, with ``option_counts`` = [n_q]."""
    tokenized, counts = option_batch(batch)
    if counts is None:
        raise UserInputError(f"{_NAME}: slice_question needs a tokenized option batch (with {OPTION_COUNTS!r})")
    counts = torch.as_tensor(counts).long().reshape(-1)
    if not 0 <= q < counts.numel():
        raise IndexError(f"{_NAME}: question {q} of a batch of {counts.numel()}")
    start, n = int(counts[:q].sum()), int(counts[q])
    out = {k: v[start : start + n] for k, v in tokenized.items() if isinstance(v, Tensor)}
    out[OPTION_COUNTS] = counts[q : q + 1].clone()
    return out


class _Jacobians:
    """Logits and per-example Jacobians J (B, C, P) of the model w.r.t. θ, in float64.

    With a per-option head an example is a question: logits (Q, K) with −inf on the slots a
    question lacks and zero Jacobian rows there (K = the batch's most options)."""

    def __init__(self, model: nn.Module, params: list[nn.Parameter]) -> None:
        self.model = model
        self.params = params
        self.options = _is_option_head(model)
        if self.options:
            self.head = _option_head(model)
        else:
            self.linear = _head_linear(model)

    def as_batch(self, batch: Batch) -> Mapping[str, Tensor]:
        if isinstance(batch, Mapping):
            return batch
        texts = list(batch)
        if is_option_groups(texts):
            return self.model.as_batch(texts)
        return self.model.backbone.tokenize(texts)

    def _check_layout(self, batch: Mapping[str, Tensor]) -> None:
        if self.options and OPTION_COUNTS not in batch:
            raise UserInputError(
                f"{_NAME}: the per-option head {type(self.model.head).__name__} scores option groups; give "
                "each example as a tuple of its option texts (or a tokenized batch with option_counts)"
            )
        if not self.options and OPTION_COUNTS in batch:
            raise UserInputError(
                f"{_NAME}: got option groups (option_counts), but the head {type(self.model.head).__name__} "
                "scores class rows; use a per-option head (head.kind=deterministic_options)"
            )

    def logits(self, batch: Mapping[str, Tensor]) -> Tensor:
        self._check_layout(batch)
        if self.options:
            return self._option_logits(batch)
        phi = self.model.backbone.features(batch).to(torch.float64)
        w = self.linear.weight.detach().to(torch.float64)
        b = None if self.linear.bias is None else self.linear.bias.detach().to(torch.float64)
        return nn.functional.linear(phi, w, b)

    def _option_logits(self, batch: Mapping[str, Tensor]) -> Tensor:
        """z_{q,k} = wᵀh_{q,k} (+ b_k) padded to (Q, K) with −inf where question q has no option k."""
        tokenized, counts = option_batch(batch)
        phi = self.model.backbone.option_features(tokenized, counts).to(torch.float64)
        counts = check_counts(counts, phi.shape[0], _NAME).to(phi.device)
        z = phi @ self.head.weight.detach().to(torch.float64)
        bias = getattr(self.head, "position_bias", None)
        if bias is not None:
            if int(counts.max()) > bias.shape[0]:
                raise UserInputError(
                    f"{_NAME}: a question has {int(counts.max())} options but the head's position bias covers "
                    f"{bias.shape[0]}"
                )
            z = z + bias.detach().to(torch.float64)[option_positions(counts)]
        return pad_segments(z, counts)

    def __call__(self, batch: Batch) -> tuple[Tensor, Tensor]:
        batch = self.as_batch(batch)
        self._check_layout(batch)
        if self.options:
            counts = torch.as_tensor(batch[OPTION_COUNTS]).long().reshape(-1)
            n, width = int(counts.numel()), int(counts.max())
        else:
            n = int(batch["input_ids"].shape[0])
        was_training = self.model.training
        flags = [p.requires_grad for p in self.params]
        self.model.eval()
        try:
            for p in self.params:
                p.requires_grad_(True)
            means, jacs = [], []
            with torch.enable_grad():
                for i in range(n):  # one example at a time: J_n is per example
                    f = self.logits(slice_question(batch, i) if self.options else _slice(batch, i))[0]
                    rows = []
                    for c in range(f.shape[0]):
                        grads = torch.autograd.grad(
                            f[c], self.params, retain_graph=c + 1 < f.shape[0], allow_unused=True
                        )
                        rows.append(
                            torch.cat(
                                [
                                    (torch.zeros_like(p) if g is None else g).reshape(-1).to(torch.float64)
                                    for g, p in zip(grads, self.params, strict=True)
                                ]
                            )
                        )
                    mean, jac = f.detach(), torch.stack(rows)
                    if self.options and f.shape[0] < width:  # absent options: logit −inf, J = 0
                        mean = nn.functional.pad(mean, (0, width - f.shape[0]), value=-math.inf)
                        jac = nn.functional.pad(jac, (0, 0, 0, width - f.shape[0]))
                    means.append(mean)
                    jacs.append(jac)
        finally:
            for p, flag in zip(self.params, flags, strict=True):
                p.requires_grad_(flag)
            self.model.train(was_training)
        return torch.stack(means), torch.stack(jacs)


class AdapterLaplace:
    """The fitted Laplace posterior over adapter parameters; see the module docstring."""

    def __init__(
        self,
        model: nn.Module,
        names: list[str],
        params: list[nn.Parameter],
        ggn: Tensor | KronGGN,
        structure: Literal["diag", "full", "kron"],
        map_nll: Tensor,
        n_data: int,
        prior_precision: float,
    ) -> None:
        self.model = model
        self.names = names
        self.params = params
        self.ggn = ggn
        self.structure = structure
        self.map_nll = map_nll
        self.n_data = n_data
        self._jac = _Jacobians(model, params)
        self.set_prior_precision(prior_precision)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.params)

    def mean(self) -> Tensor:
        """θ* flattened in the order of :attr:`names` (float64)."""
        return torch.cat([p.detach().reshape(-1).to(torch.float64) for p in self.params])

    def _check_delta(self, prior_precision: float | Tensor) -> Tensor:
        delta = torch.as_tensor(prior_precision, dtype=torch.float64, device=self.ggn.device)
        if delta.dim() != 0 or not bool(torch.isfinite(delta)) or float(delta) <= 0:
            raise UserInputError(f"{_NAME}: prior_precision must be a positive finite scalar, got {prior_precision}")
        return delta

    def _precision(self, delta: Tensor) -> Tensor:
        if self.structure == "diag":
            return self.ggn + delta
        return self.ggn + delta * torch.eye(self.ggn.shape[0], dtype=self.ggn.dtype, device=self.ggn.device)

    def set_prior_precision(self, prior_precision: float | Tensor) -> None:
        self.prior_precision = self._check_delta(prior_precision)
        if self.structure == "kron":  # the eigendecompositions already cover every δ
            self._factor = None
            return
        precision = self._precision(self.prior_precision)
        self._factor = precision if self.structure == "diag" else torch.linalg.cholesky(precision)

    def posterior_covariance(self) -> Tensor:
        """Σ = (H + δI)⁻¹: its diagonal (P,) for ``diag``, the dense (P, P) for ``full`` and, up to
        :data:`MAX_FULL_PARAMETERS`, the dense block-diagonal (P, P) for ``kron``."""
        if self.structure == "diag":
            return 1.0 / self._factor
        if self.structure == "kron":
            if self.num_parameters > MAX_FULL_PARAMETERS:
                raise UserInputError(
                    f"{_NAME}: a dense {self.num_parameters}×{self.num_parameters} covariance is too "
                    f"large (above {MAX_FULL_PARAMETERS}); use posterior_variance() or logit_moments()"
                )
            return self.ggn.covariance(self.prior_precision)
        return torch.cholesky_inverse(self._factor)

    def posterior_variance(self) -> Tensor:
        """diag Σ (P,) for every structure, in the order of :meth:`mean`."""
        if self.structure == "diag":
            return 1.0 / self._factor
        if self.structure == "kron":
            return self.ggn.variance(self.prior_precision)
        return torch.cholesky_inverse(self._factor).diagonal()

    def log_marginal_likelihood(self, prior_precision: float | Tensor | None = None) -> Tensor:
        """log p(D|θ*) − ½δ‖θ*‖² + ½P·log δ − ½·log|H + δI| (float64 scalar)."""
        delta = self.prior_precision if prior_precision is None else self._check_delta(prior_precision)
        if self.structure == "kron":
            logdet = self.ggn.logdet(delta)
        elif self.structure == "diag":
            logdet = self._precision(delta).log().sum()
        else:
            precision = self._precision(delta)
            logdet = 2.0 * torch.linalg.cholesky(precision).diagonal().log().sum()
        theta = self.mean().to(self.ggn.device)
        p = theta.numel()
        return -self.map_nll - 0.5 * delta * theta.square().sum() + 0.5 * p * delta.log() - 0.5 * logdet

    @torch.no_grad()
    def logit_moments(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """f_MAP (B, C) and J Σ Jᵀ (B, C, C) in float64; for option groups (Q, K) and (Q, K, K),
        K the batch's most options, with f = −inf and zero covariance rows/columns on the slots a
        question lacks."""
        mean, jac = self._jac(batch)
        jac = jac.to(self.ggn.device)
        if self.structure == "diag":
            cov = torch.einsum("bcp,p,bdp->bcd", jac, 1.0 / self._factor, jac)
        elif self.structure == "kron":
            cov = self.ggn.inv_square_form(jac, self.prior_precision)
        else:
            half = torch.linalg.solve_triangular(self._factor, jac.transpose(1, 2), upper=False)  # L⁻¹Jᵀ
            cov = half.transpose(1, 2) @ half
        return mean, 0.5 * (cov + cov.transpose(1, 2))

    def predict(
        self,
        batch: Batch,
        *,
        link: Literal["probit", "mc"] = "probit",
        n_samples: int = 1000,
        generator: torch.Generator | None = None,
    ) -> CategoricalPredictive:
        """GLM predictive for a tokenized batch, a list of texts or a list of option groups (then
        per question over its own options, (Q, max_options) with probability 0 on absent ones)."""
        batch = self._jac.as_batch(batch)
        mean, cov = self.logit_moments(batch)
        if OPTION_COUNTS in batch:
            return self._option_predictive(mean, cov, batch[OPTION_COUNTS], link, n_samples, generator)
        if link == "probit":
            return probit_predictive(mean, cov)
        if link == "mc":
            return mc_predictive(mean, cov, n_samples, generator)
        raise UserInputError(f"{_NAME}: link must be 'probit' or 'mc', got {link!r}")

    def _option_predictive(
        self,
        mean: Tensor,
        cov: Tensor,
        counts: Tensor,
        link: str,
        n_samples: int,
        generator: torch.Generator | None,
    ) -> CategoricalPredictive:
        """f_q ~ N(z_q, J_q Σ J_qᵀ) over each question's real options (``mean`` (Q, K) with −inf and
        ``cov`` (Q, K, K) with zero rows/columns on absent slots), padded to ``max_options``."""
        counts = torch.as_tensor(counts).long().reshape(-1).to(mean.device)
        if link == "probit":
            # κ_k·z_k on the real slots; −inf stays −inf (probability 0) on the absent ones
            log_probs = probit_predictive(mean, cov).log_probs
            predictive = OptionPredictive(log_probs=unpad_segments(log_probs, counts), counts=counts)
        elif link == "mc":
            # the absent block of the covariance is 0: put I there so that the Cholesky factor is
            # block diagonal (real block = that of J_q Σ J_qᵀ alone), and drop the absent draws
            absent = ~torch.isfinite(mean)
            cov = cov + torch.diag_embed(absent.to(cov.dtype))
            samples = sample_logits(mean.masked_fill(absent, 0.0), cov, n_samples, generator)  # (S, Q, K)
            predictive = OptionPredictive.from_sample_logits(unpad_segments(samples, counts), counts)
        else:
            raise UserInputError(f"{_NAME}: link must be 'probit' or 'mc', got {link!r}")
        return predictive.padded(int(self.model.head.max_options))

    # -- persistence ---------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, Tensor]:
        """The fitted posterior as named tensors (the curvature, the MAP NLL, N and δ), so that a
        saved model predicts without refitting; the mean θ* lives in the adapters themselves."""
        state = {
            "map_nll": self.map_nll.detach().to(torch.float64).cpu(),
            "n_data": torch.tensor(self.n_data, dtype=torch.int64),
            "prior_precision": self.prior_precision.detach().cpu(),
        }
        if isinstance(self.ggn, KronGGN):
            for i, (g, a) in enumerate(self.ggn.factors):
                state[f"kron.{i}.G"] = g.detach().cpu()
                state[f"kron.{i}.A"] = a.detach().cpu()
        else:
            state["ggn"] = self.ggn.detach().cpu()
        return state

    @classmethod
    def from_state_tensors(
        cls,
        model: nn.Module,
        state: Mapping[str, Tensor],
        *,
        params: Literal["auto", "lora", "polar_theta"] = "auto",
        structure: Literal["diag", "full", "kron"] = "diag",
    ) -> AdapterLaplace:
        """Rebuild the posterior written by :meth:`state_tensors` over ``model``'s adapters,
        checking that the curvature fits the adapter parameters."""
        names, plist = adapter_laplace_parameters(model.backbone.model, params)
        p = sum(t.numel() for t in plist)
        missing = sorted({"map_nll", "n_data", "prior_precision"} - set(state))
        if missing:
            raise UserInputError(f"{_NAME}: the saved posterior lacks {missing}")
        device = plist[0].device
        if structure == "kron":
            blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith("kron.")})
            if blocks != list(range(len(blocks))) or not blocks:
                raise UserInputError(f"{_NAME}: the saved K-FAC factors are incomplete (blocks {blocks})")
            ggn: Tensor | KronGGN = KronGGN(
                [(state[f"kron.{i}.G"].to(device), state[f"kron.{i}.A"].to(device)) for i in blocks]
            )
            size = ggn.num_parameters
        else:
            if "ggn" not in state:
                raise UserInputError(f"{_NAME}: the saved posterior has no curvature tensor 'ggn'")
            ggn = state["ggn"].to(device=device, dtype=torch.float64)
            expected = (p,) if structure == "diag" else (p, p)
            if tuple(ggn.shape) != expected:
                raise UserInputError(
                    f"{_NAME}: the saved {structure} curvature has shape {tuple(ggn.shape)}, the adapters need {expected}"
                )
            size = p
        if size != p:
            raise UserInputError(f"{_NAME}: the saved K-FAC blocks cover {size} parameters, the adapters hold {p}")
        return cls(
            model, names, plist, ggn, structure,
            state["map_nll"].to(device=device, dtype=torch.float64), int(state["n_data"]),
            float(state["prior_precision"]),
        )

    def __repr__(self) -> str:
        return (
            f"AdapterLaplace(P={self.num_parameters}, structure={self.structure!r}, "
            f"prior_precision={float(self.prior_precision):g}, n_data={self.n_data})"
        )


def ggn_terms(logits: Tensor, jac: Tensor, structure: Literal["diag", "full"]) -> Tensor:
    """Σ_n J_nᵀ Λ_n J_n of one batch, Λ_n = diag(p_n) − p_n p_nᵀ, p_n = softmax(f_n): (P, P) for
    ``"full"``, its diagonal (P,) for ``"diag"``. ``logits`` (B, C), ``jac`` (B, C, P). A slot with
    logit −inf (an option the question lacks) has p = 0, so Λ_n is 0 on its row and column and
    it adds nothing: a question of n real options among C slots gives the C = n class-row term."""
    probs = torch.softmax(logits, dim=-1)
    lam = torch.diag_embed(probs) - probs.unsqueeze(2) * probs.unsqueeze(1)  # (B, C, C)
    lam_j = lam.to(jac.device) @ jac  # (B, C, P)
    if structure == "diag":
        return (jac * lam_j).sum(dim=(0, 1))
    return torch.einsum("bcp,bcq->pq", jac, lam_j)


def _checked_targets(targets: Tensor, logits: Tensor, counts: Tensor | None = None) -> Tensor:
    """Class (or, with option ``counts``, correct-option) indices (B,) on the logits' device."""
    targets = torch.as_tensor(targets, device=logits.device).long().reshape(-1)
    if targets.shape[0] != logits.shape[0]:
        raise UserInputError(f"{_NAME}: {targets.shape[0]} targets for a batch of {logits.shape[0]}")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= logits.shape[1]):
        raise UserInputError(f"{_NAME}: targets must lie in [0, {logits.shape[1]})")
    if counts is not None:
        counts = torch.as_tensor(counts).long().reshape(-1).to(logits.device)
        bad = targets >= counts
        if bool(bad.any()):
            q = int(bad.nonzero()[0])
            raise UserInputError(
                f"{_NAME}: question {q} has {int(counts[q])} options but its target is {int(targets[q])}; "
                "targets index the question's own options (0-based)"
            )
    return targets


def _fit_kron(
    model: nn.Module, names: list[str], plist: list[nn.Parameter], batches: Iterable[tuple[Batch, Tensor]]
) -> tuple[KronGGN, Tensor, int]:
    """K-FAC factors (one forward and C backward passes per batch), the MAP NLL and N."""
    jacobians = _Jacobians(model, plist)
    kfac = AdapterKFAC(model.backbone.model, names)
    device = plist[0].device
    nll = torch.zeros((), dtype=torch.float64, device=device)
    n_data = 0
    was_training = model.training
    flags = [p.requires_grad for p in plist]
    model.eval()  # dropout off: the curvature of the deterministic network
    try:
        for p in plist:
            p.requires_grad_(True)
        for batch, targets in batches:
            batch = jacobians.as_batch(batch)
            logits = kfac.accumulate(jacobians.logits, batch)
            targets = _checked_targets(targets, logits, batch.get(OPTION_COUNTS))
            nll += nn.functional.cross_entropy(logits, targets, reduction="sum").to(device)
            n_data += int(targets.shape[0])
    finally:
        for p, flag in zip(plist, flags, strict=True):
            p.requires_grad_(flag)
        model.train(was_training)
    if n_data == 0:
        raise UserInputError(f"{_NAME}: needs at least one training example, got none")
    return KronGGN(kfac.factors(n_data)), nll, n_data


def fit_adapter_laplace(
    model: nn.Module,
    batches: Iterable[tuple[Batch, Tensor]],
    *,
    params: Literal["auto", "lora", "polar_theta"] = "auto",
    prior_precision: float = 1.0,
    structure: Literal["diag", "full", "kron"] = "diag",
) -> AdapterLaplace:
    """Fit the GGN-Laplace posterior over the adapter parameters of ``model`` (a
    :class:`~bayeshead.model.BayesianModel`) at its current (MAP) weights on ``batches`` of
    (tokenized batch or list of texts, class targets), or, with a per-option head
    (``deterministic_options``), of (option groups or a tokenized option batch, the index of each
    question's correct option); N then counts questions.

    ``structure="kron"`` uses one forward and C backward passes per batch (K-FAC, see
    :mod:`bayeshead.methods.adapter_kfac`); ``"diag"``/``"full"`` use exact per-example Jacobians."""
    if structure not in ("diag", "full", "kron"):
        raise UserInputError(f"{_NAME}: structure must be 'diag', 'full' or 'kron', got {structure!r}")
    names, plist = adapter_laplace_parameters(model.backbone.model, params)
    p = sum(t.numel() for t in plist)
    if structure == "full" and p > MAX_FULL_PARAMETERS:
        raise UserInputError(
            f"{_NAME}: structure='full' needs a dense {p}×{p} matrix; above {MAX_FULL_PARAMETERS} "
            "parameters use structure='diag' or 'kron' (or fewer adapted modules / a lower rank)"
        )
    if structure == "kron":
        kron, nll, n_data = _fit_kron(model, names, plist, batches)
        return AdapterLaplace(model, names, plist, kron, structure, nll, n_data, prior_precision)
    jacobians = _Jacobians(model, plist)
    device = plist[0].device
    ggn = torch.zeros((p,) if structure == "diag" else (p, p), dtype=torch.float64, device=device)
    nll = torch.zeros((), dtype=torch.float64, device=device)
    n_data = 0
    for batch, targets in batches:
        batch = jacobians.as_batch(batch)
        logits, jac = jacobians(batch)  # option groups: −inf logits and zero J rows on absent options
        targets = _checked_targets(targets, logits, batch.get(OPTION_COUNTS))
        ggn += ggn_terms(logits, jac.to(device), structure)
        nll += nn.functional.cross_entropy(logits, targets, reduction="sum").to(device)
        n_data += int(targets.shape[0])
    if n_data == 0:
        raise UserInputError(f"{_NAME}: needs at least one training example, got none")
    if structure == "full":
        ggn = 0.5 * (ggn + ggn.T)
    return AdapterLaplace(model, names, plist, ggn, structure, nll, n_data, prior_precision)


def optimize_log_prior_precision(laplace: AdapterLaplace, bounds: tuple[float, float] = (-10.0, 10.0)) -> float:
    """argmax_δ log Z(δ) over log δ in ``bounds`` (Brent's bounded search, xatol 1e-4); returns δ.
    Cheap for every structure: ``diag``/``kron`` evaluate log|H + δI| from stored spectra,
    ``full`` with one Cholesky per evaluation. An optimum at either bound warns
    (``RuntimeWarning``): the evidence still rises beyond it."""
    from bayeshead.posthoc_bounds import bound_side, warn_at_bound

    lo, hi = (float(b) for b in bounds)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise UserInputError(f"{_NAME}: bounds on log δ must be finite with lower < upper, got {bounds}")
    result = minimize_scalar(
        lambda log_delta: -float(laplace.log_marginal_likelihood(math.exp(log_delta))),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-4},
    )
    log_delta = float(result.x)
    side = bound_side(log_delta, lo, hi, rtol=1e-3)
    if side is not None:
        warn_at_bound(
            f"{_NAME}: prior precision (marginal likelihood, log δ)", log_delta, lo, hi, side,
            "the adapters' MAP values are ~0 or the curvature is degenerate; check the training data and "
            "weight decay, or pass wider bounds",
        )
    return math.exp(log_delta)
