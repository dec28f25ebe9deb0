"""Independent Gaussian rows q(w_r) = N(m_r, S_r), r = 1..R, over R^d, and their KL to N(0, s₀I).

Used by the VBLL heads (Harrison, Willes & Snoek, "Variational Bayesian Last Layers", ICLR 2024)
for the posterior over last-layer weight rows (regression, discriminative classification) or over
class means (generative classification). Three parameterizations of S_r:

* ``"diagonal"``: S = diag(σ²), σ = exp(log_scale);
* ``"dense"``:    S = L Lᵀ, L lower triangular with strictly-lower part ``tril`` and diagonal
  exp(log_scale) (positive by construction);
* ``"lowrank"``:  S = F Fᵀ + D, F ∈ R^{d×r} (``factor``), D = diag(exp(2·log_scale)).

Every quadratic form is computed as a squared norm, never through S itself:
φᵀSφ = ‖Lᵀφ‖² (dense), Σ_i σ_i² φ_i² (diagonal), ‖Fᵀφ‖² + Σ_i D_i φ_i² (low rank), so it is
non-negative in floating point as well.

KL(N(m, S) ‖ N(0, s₀I)) = ½[tr(S)/s₀ + ‖m‖²/s₀ − d + d·log s₀ − log|S|], with
log|S| = 2Σ log_scale (diagonal, dense) and, for the low-rank form, the matrix determinant lemma
log|FFᵀ + D| = log|D| + log|I_r + FᵀD⁻¹F| (an r×r Cholesky factor).

Shared covariance (``shared=True``): every row has its own mean m_r but one covariance S, so
q(W) = Π_r N(m_r, S) (the rows stay independent). The covariance parameters then have a leading
dimension of 1 instead of R (d² instead of R·d² numbers for ``"dense"``), φᵀSφ is computed once
per example, and Σ_r KL(N(m_r, S) ‖ N(0, s₀I)) = ½[R·tr(S)/s₀ + Σ_r‖m_r‖²/s₀ − R·d + R·d·log s₀
− R·log|S|]. Per-row quantities (``quadratic``, ``trace``, ``logdet``, ``kl_rows``) keep their
(…, R) shapes, the shared value repeated.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from bayeshead.errors import UserInputError

__all__ = ["CovarianceKind", "GaussianRows"]

CovarianceKind = Literal["diagonal", "dense", "lowrank"]


class GaussianRows(nn.Module):
    """R independent Gaussians N(m_r, S_r) on R^d with a diagonal, dense or low-rank S_r.

    Parameters: ``mean`` (R, d), ``log_scale`` (G, d) and, by kind, ``tril`` (G, d, d; only the
    strictly-lower triangle is used) or ``factor`` (G, d, rank), where G = R, or G = 1 when
    ``shared`` (one covariance for all rows).
    """

    def __init__(
        self,
        rows: int,
        dim: int,
        kind: CovarianceKind,
        *,
        rank: int | None = None,
        init_std: float = 1.0,
        mean_std: float = 0.0,
        shared: bool = False,
    ) -> None:
        super().__init__()
        if kind not in ("diagonal", "dense", "lowrank"):
            raise UserInputError(f"covariance must be 'diagonal', 'dense' or 'lowrank', got {kind!r}")
        self.kind: CovarianceKind = kind
        self.rows, self.dim = int(rows), int(dim)
        self.shared = bool(shared)
        groups = self.cov_rows
        self.mean = nn.Parameter(torch.randn(rows, dim) * mean_std)
        self.log_scale = nn.Parameter(torch.full((groups, dim), math.log(init_std)))
        self.rank = 0
        if kind == "dense":
            self.tril = nn.Parameter(torch.zeros(groups, dim, dim))
        elif kind == "lowrank":
            if rank is None or not 1 <= rank <= dim:
                raise UserInputError(f"lowrank covariance needs 1 <= rank <= {dim}, got {rank}")
            self.rank = int(rank)
            # F = 0 is a stationary point of the ELBO (every gradient in F is linear in F), so
            # the factor starts small and random.
            self.factor = nn.Parameter(torch.randn(groups, dim, rank) * (1e-2 * init_std / math.sqrt(rank)))

    @property
    def cov_rows(self) -> int:
        """G, the number of covariances held: 1 when shared, else R."""
        return 1 if self.shared else self.rows

    def _per_row(self, value: Tensor) -> Tensor:
        """Repeat a shared value (…, 1) along the last dimension to (…, R) (a view)."""
        return value.expand(*value.shape[:-1], self.rows) if self.shared else value

    # -- building blocks -------------------------------------------------------------------
    def scale_diag(self) -> Tensor:
        """exp(log_scale): σ (diagonal), diag(L) (dense) or √D (low rank); shape (G, d)."""
        return self.log_scale.exp()

    def strict_lower(self) -> Tensor:
        """The strictly lower triangle of the dense factor L, shape (G, d, d)."""
        if self.kind != "dense":
            raise UserInputError("strict_lower() exists for the dense parameterization only")
        return self.tril.tril(-1)

    def cholesky(self) -> Tensor:
        """The dense factor L = tril(tril, −1) + diag(exp(log_scale)), shape (G, d, d)."""
        if self.kind != "dense":
            raise UserInputError("cholesky() exists for the dense parameterization only")
        return self.strict_lower() + torch.diag_embed(self.scale_diag())

    def covariance(self) -> Tensor:
        """S_r as dense (R, d, d) matrices (for tests and small d only)."""
        if self.kind == "diagonal":
            cov = torch.diag_embed(self.scale_diag().pow(2))
        elif self.kind == "dense":
            chol = self.cholesky()
            cov = chol @ chol.transpose(-1, -2)
        else:
            cov = self.factor @ self.factor.transpose(-1, -2) + torch.diag_embed(self.scale_diag().pow(2))
        return cov.expand(self.rows, -1, -1)

    def quadratic(self, phi: Tensor) -> Tensor:
        """φ_bᵀ S_r φ_b for a batch φ (B, d): shape (B, R), computed as squared norms (once per
        example when the covariance is shared)."""
        if self.kind == "dense" and self.shared:
            # Lᵀφ for all b at once: one (B, d)·(d, d) product instead of R of them.
            proj = phi @ self.strict_lower()[0] + phi * self.scale_diag()
            return self._per_row(proj.pow(2).sum(-1, keepdim=True))
        if self.kind == "dense":
            # Lᵀφ = (strict lower part)ᵀφ + diag(L)⊙φ: never materialises diag_embed(diag(L)).
            proj = torch.einsum("bi,rij->brj", phi, self.strict_lower()) + phi[:, None, :] * self.scale_diag()
            return proj.pow(2).sum(-1)
        var_diag = self.scale_diag().pow(2)
        out = phi.pow(2) @ var_diag.transpose(0, 1)
        if self.kind == "lowrank":
            out = out + torch.einsum("bi,rik->brk", phi, self.factor).pow(2).sum(-1)
        return self._per_row(out)

    def weighted_trace(self, weights: Tensor) -> Tensor:
        """tr(S_r·diag(p)) for p (d,) ≥ 0: shape (R,). (tr(S Σ⁻¹) with p = 1/Σ.)"""
        var_diag = self.scale_diag().pow(2)
        out = (var_diag * weights).sum(-1)
        if self.kind == "dense":  # Σ_ij L_ij² p_i, split into the strict lower part and the diagonal
            out = out + (self.strict_lower().pow(2) * weights[:, None]).sum((-1, -2))
        if self.kind == "lowrank":
            out = out + (self.factor.pow(2) * weights[:, None]).sum((-1, -2))
        return self._per_row(out)

    def trace(self) -> Tensor:
        """tr(S_r), shape (R,): ‖L‖²_F (dense), Σσ² (diagonal), ‖F‖²_F + ΣD (low rank).
        (``weighted_trace`` with p = 1, without the d² multiplications by one.)"""
        out = self.scale_diag().pow(2).sum(-1)
        if self.kind == "dense":
            out = out + self.strict_lower().pow(2).sum((-1, -2))
        if self.kind == "lowrank":
            out = out + self.factor.pow(2).sum((-1, -2))
        return self._per_row(out)

    def logdet(self) -> Tensor:
        """log|S_r|, shape (R,)."""
        out = 2.0 * self.log_scale.sum(-1)
        if self.kind == "lowrank":
            scaled = self.factor * (-self.log_scale).exp()[..., None]  # D^{-1/2} F
            eye = torch.eye(self.rank, dtype=scaled.dtype, device=scaled.device)
            capacitance = eye + scaled.transpose(-1, -2) @ scaled
            chol = torch.linalg.cholesky(capacitance)
            out = out + 2.0 * torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)
        return self._per_row(out)

    def kl_rows(self, prior_var: float) -> Tensor:
        """KL(N(m_r, S_r) ‖ N(0, s₀I)) per row, shape (R,), s₀ = ``prior_var``."""
        d = self.dim
        return 0.5 * (
            (self.trace() + self.mean.pow(2).sum(-1)) / prior_var
            - d
            + d * math.log(prior_var)
            - self.logdet()
        )

    def kl(self, prior_var: float) -> Tensor:
        """Σ_r KL(q(w_r) ‖ N(0, s₀I)), a scalar."""
        return self.kl_rows(prior_var).sum()

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n joint samples of all rows, shape (n, R, d): m + Lε, m + σ⊙ε or m + √D⊙ε₁ + Fε₂."""
        shape = (n, self.rows, self.dim)
        opts = {"dtype": self.mean.dtype, "device": self.mean.device, "generator": generator}
        eps = torch.randn(shape, **opts)
        if self.kind == "dense":
            lower = self.strict_lower()
            noise = eps @ lower[0].T if self.shared else torch.einsum("rij,nrj->nri", lower, eps)
            return self.mean + noise + self.scale_diag() * eps
        out = self.mean + self.scale_diag() * eps
        if self.kind == "lowrank":
            eps2 = torch.randn((n, self.rows, self.rank), **opts)
            factor = self.factor.expand(self.rows, -1, -1)
            out = out + torch.einsum("rik,nrk->nri", factor, eps2)
        return out

    @torch.no_grad()
    def set_mean(self, mean: Tensor) -> None:
        if mean.shape != self.mean.shape:
            raise UserInputError(f"expected a mean of shape {tuple(self.mean.shape)}, got {tuple(mean.shape)}")
        self.mean.copy_(mean.to(self.mean.dtype))

    @torch.no_grad()
    def reset_covariance(self, std: float) -> None:
        """Set every S_r to std²·I: diagonal std (all kinds), strict lower part 0 (dense), and the
        low-rank factor redrawn small (1e-2·std/√rank, since F = 0 is a stationary point)."""
        if not std > 0:
            raise UserInputError(f"the covariance standard deviation must be positive, got {std}")
        self.log_scale.fill_(math.log(std))
        if self.kind == "dense":
            self.tril.zero_()
        elif self.kind == "lowrank":
            self.factor.copy_(torch.randn_like(self.factor) * (1e-2 * std / math.sqrt(self.rank)))

    @torch.no_grad()
    def set_dense_covariance(self, covariance: Tensor) -> None:
        """Set S_r = ``covariance[r]`` (G, d, d), symmetric positive definite, through its
        Cholesky factor (dense parameterization only; G = 1 when the covariance is shared)."""
        if self.kind != "dense":
            raise UserInputError(
                f"setting full covariances needs covariance='dense', this posterior is {self.kind!r}"
            )
        expected = (self.cov_rows, self.dim, self.dim)
        if covariance.shape != expected:
            shared = " (one shared covariance)" if self.shared else ""
            raise UserInputError(f"expected covariances of shape {expected}{shared}, got {tuple(covariance.shape)}")
        chol, info = torch.linalg.cholesky_ex(covariance.to(torch.float64))
        if bool((info != 0).any()):
            raise UserInputError(f"covariances of rows {(info != 0).nonzero().flatten().tolist()} are not positive definite")
        diag = torch.diagonal(chol, dim1=-2, dim2=-1)
        self.log_scale.copy_(diag.log().to(self.log_scale.dtype))
        self.tril.copy_(chol.tril(-1).to(self.tril.dtype))

    def extra_repr(self) -> str:
        rank = f", rank={self.rank}" if self.kind == "lowrank" else ""
        shared = ", shared=True" if self.shared else ""
        return f"rows={self.rows}, dim={self.dim}, kind={self.kind!r}{rank}{shared}"
