"""A block-diagonal Kronecker-factored GGN with a scalar prior precision, in an eigenbasis.

Each block belongs to one weight matrix W ∈ R^{m×n}, flattened row-major (``W.reshape(-1)``):

    H_l ≈ G_l ⊗ A_l,   G_l ∈ R^{m×m} (output-side GGN factor), A_l ∈ R^{n×n} (input second moment)

(the factor order of laplace-torch's ``Kron``/``KronDecomposed``; Martens & Grosse 2015,
Ritter et al. 2018, Daxberger et al. 2021). With G_l = Q_G diag(μ) Q_Gᵀ and A_l = Q_A diag(λ) Q_Aᵀ,
the posterior precision block is (Q_G ⊗ Q_A)·diag(μ_i λ_j + δ)·(Q_G ⊗ Q_A)ᵀ, so for any δ > 0

    log|G_l ⊗ A_l + δI| = Σ_ij log(μ_i λ_j + δ)
    J_l Σ_l J_lᵀ        = Σ_ij (Q_Gᵀ J_l Q_A)_ij ⊗ (Q_Gᵀ J_l Q_A)_ij / (μ_i λ_j + δ)

after one eigendecomposition per factor: the marginal likelihood in δ costs O(Σ_l m_l n_l).
Blocks are independent (Σ is block diagonal). Everything is float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from bayeshead.errors import UserInputError

__all__ = ["KronGGN"]


class KronGGN:
    """Block-diagonal Σ_l G_l ⊗ A_l, eigendecomposed once (see the module docstring).

    ``factors[l] = (G_l, A_l)`` with G_l (m_l, m_l) and A_l (n_l, n_l) symmetric PSD; the
    eigenvalues are clamped at 0 (negative values can only be rounding error)."""

    def __init__(self, factors: Sequence[tuple[Tensor, Tensor]]) -> None:
        if not factors:
            raise UserInputError("KronGGN needs at least one (G, A) factor pair, got none")
        self.factors: list[tuple[Tensor, Tensor]] = []
        self.eigen: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []  # (μ, Q_G, λ, Q_A)
        for i, (g, a) in enumerate(factors):
            for label, f in (("G", g), ("A", a)):
                if f.dim() != 2 or f.shape[0] != f.shape[1]:
                    raise UserInputError(
                        f"KronGGN: factor {label} of block {i} must be square, got {tuple(f.shape)}"
                    )
            g = 0.5 * (g + g.T).to(torch.float64)
            a = 0.5 * (a + a.T).to(torch.float64)
            self.factors.append((g, a))
            mu, q_g = torch.linalg.eigh(g)
            lam, q_a = torch.linalg.eigh(a)
            self.eigen.append((mu.clamp_min(0.0), q_g, lam.clamp_min(0.0), q_a))

    @property
    def device(self) -> torch.device:
        return self.factors[0][0].device

    @property
    def dtype(self) -> torch.dtype:
        return torch.float64

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """(m_l, n_l) of each block's weight matrix."""
        return [(g.shape[0], a.shape[0]) for g, a in self.factors]

    @property
    def num_parameters(self) -> int:
        return sum(m * n for m, n in self.shapes)

    def _spectra(self, delta: Tensor) -> list[Tensor]:
        """μ_i λ_j + δ of each block, shape (m_l, n_l)."""
        return [torch.outer(mu, lam) + delta for mu, _, lam, _ in self.eigen]

    def logdet(self, delta: Tensor) -> Tensor:
        """log|H + δI| = Σ_l Σ_ij log(μ_i λ_j + δ)."""
        return sum(s.log().sum() for s in self._spectra(delta))

    def to_dense(self) -> Tensor:
        """The block-diagonal (P, P) matrix ⊕_l G_l ⊗ A_l (for tests and small P)."""
        return torch.block_diag(*[torch.kron(g, a) for g, a in self.factors])

    def covariance(self, delta: Tensor) -> Tensor:
        """Σ = (H + δI)⁻¹ as a dense block-diagonal (P, P) matrix (small P only)."""
        blocks = []
        for (_, q_g, _, q_a), s in zip(self.eigen, self._spectra(delta), strict=True):
            q = torch.kron(q_g, q_a)
            blocks.append((q / s.reshape(1, -1)) @ q.T)
        return torch.block_diag(*blocks)

    def variance(self, delta: Tensor) -> Tensor:
        """diag Σ (P,): Σ_ij Q_G[a,i]² Q_A[b,j]² / (μ_i λ_j + δ) for entry (a, b) of each block."""
        out = [
            torch.einsum("ai,bj,ij->ab", q_g.square(), q_a.square(), 1.0 / s).reshape(-1)
            for (_, q_g, _, q_a), s in zip(self.eigen, self._spectra(delta), strict=True)
        ]
        return torch.cat(out)

    def inv_square_form(self, jac: Tensor, delta: Tensor) -> Tensor:
        """J Σ Jᵀ for J of shape (B, C, P) in float64: (B, C, C), Σ applied block by block in the
        eigenbasis (never forming Σ)."""
        if jac.dim() != 3 or jac.shape[-1] != self.num_parameters:
            raise UserInputError(
                f"KronGGN: J must be (batch, classes, {self.num_parameters}), got {tuple(jac.shape)}"
            )
        b, c, _ = jac.shape
        out = jac.new_zeros(b, c, c, dtype=torch.float64)
        start = 0
        for (m, n), (_, q_g, _, q_a), s in zip(
            self.shapes, self.eigen, self._spectra(delta), strict=True
        ):
            block = jac[..., start : start + m * n].to(torch.float64).reshape(b, c, m, n)
            rotated = q_g.T @ block @ q_a  # (B, C, m, n) in the eigenbasis
            out += torch.einsum("bcij,bdij->bcd", rotated / s, rotated)
            start += m * n
        return out
