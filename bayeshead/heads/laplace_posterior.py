"""Gaussian posteriors N(θ̃*, P⁻¹) over a linear last layer, P = H + diag(δ), for the
``full``, ``kron`` and ``diag`` curvature structures of :mod:`bayeshead.heads.laplace_curvature`.

Each structure is an ``nn.Module`` whose curvature lives in buffers of fixed shape (so a
state_dict saved with safetensors round-trips) and offers

* ``fit(features, probs)``: the curvature at the MAP probabilities;
* ``logdet(delta)``: log|P|, differentiable in δ (for the marginal likelihood);
* ``refresh(delta)``: cache what prediction needs (the Cholesky factor of P for ``full``);
* ``logit_covariance(features, delta)``: Σ_f = J Σ Jᵀ per example, J = I_C ⊗ φ̃ᵀ;
* ``precision_matrix(delta)``: P as a dense matrix in laplace-torch's [vec(W), b] order.

δ is a tensor of shape (1,) (one prior precision) or (C,) (one per class: every parameter of
row c of [W | b] has precision δ_c). Covariances are never formed by inversion: ``full`` uses
triangular solves with the Cholesky factor, ``kron`` and ``diag`` use their eigenvalues.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from bayeshead.errors import UserInputError
from bayeshead.heads.laplace_curvature import augment, ggn_diag, ggn_full, ggn_kron, reference_index

__all__ = ["LaplacePosterior", "FullPosterior", "KronPosterior", "DiagPosterior", "make_posterior"]

_BATCH = 256


class LaplacePosterior(nn.Module, ABC):
    """Curvature and posterior algebra of one Hessian structure."""

    structure: str = ""
    supports_per_class_prior: bool = True

    def __init__(self, num_classes: int, in_features: int, bias: bool, dtype: torch.dtype) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.in_features = int(in_features)
        self.has_bias = bool(bias)
        self.dim = self.in_features + int(self.has_bias)
        self.dtype = dtype
        self.register_buffer("_ref_index", reference_index(num_classes, in_features, bias), persistent=False)

    @property
    def n_params(self) -> int:
        return self.num_classes * self.dim

    def expand_prior(self, delta: Tensor) -> Tensor:
        """δ (1,) or (C,) as a per-parameter precision of shape (C, D)."""
        if delta.shape not in ((1,), (self.num_classes,)):
            raise UserInputError(
                f"prior precision must have shape (1,) or ({self.num_classes},), got {tuple(delta.shape)}"
            )
        if delta.shape != (1,) and not self.supports_per_class_prior:
            raise UserInputError(
                f"the {self.structure!r} structure takes one scalar prior precision, got one per class; "
                "use prior_structure='scalar' or hessian_structure='full' / 'diag'"
            )
        return delta.reshape(-1, 1).expand(self.num_classes, self.dim)

    @abstractmethod
    def fit(self, features: Tensor, probs: Tensor) -> None:
        """Store the curvature of the summed NLL at probabilities ``probs`` (N, C)."""

    @abstractmethod
    def logdet(self, delta: Tensor) -> Tensor:
        """log|H + diag(δ)|."""

    def refresh(self, delta: Tensor) -> None:  # noqa: B027
        """Cache the factorisation of P that prediction needs (nothing by default)."""

    @abstractmethod
    def logit_covariance(self, features: Tensor, delta: Tensor) -> Tensor:
        """J Σ Jᵀ per example: (B, C, C), or its diagonal (B, C) where off-diagonals are zero."""

    @abstractmethod
    def precision_matrix(self, delta: Tensor) -> Tensor:
        """P as a dense (n_params, n_params) matrix in laplace-torch's [vec(W), b] order."""

    def extra_repr(self) -> str:
        return f"classes={self.num_classes}, in_features={self.in_features}, bias={self.has_bias}"


class FullPosterior(LaplacePosterior):
    """Dense P = H + diag(δ) with the full GGN; O((C·D)²) memory."""

    structure = "full"

    def __init__(self, num_classes: int, in_features: int, bias: bool, dtype: torch.dtype) -> None:
        super().__init__(num_classes, in_features, bias, dtype)
        p = self.n_params
        self.register_buffer("ggn", torch.zeros(p, p, dtype=dtype))
        self.register_buffer("cholesky", torch.zeros(p, p, dtype=dtype))

    def fit(self, features: Tensor, probs: Tensor) -> None:
        self.ggn.copy_(ggn_full(augment(features.to(self.dtype), self.has_bias), probs.to(self.dtype)))

    def _precision(self, delta: Tensor) -> Tensor:
        return self.ggn + torch.diag(self.expand_prior(delta).reshape(-1).to(self.dtype))

    def _cholesky(self, delta: Tensor) -> Tensor:
        chol, info = torch.linalg.cholesky_ex(self._precision(delta))
        if int(info) != 0:
            raise UserInputError(
                f"posterior precision H + δI is not positive definite (δ = {delta.detach().tolist()}); "
                "use a larger prior precision or dtype='float64'"
            )
        return chol

    def logdet(self, delta: Tensor) -> Tensor:
        return 2.0 * self._cholesky(delta).diagonal().log().sum()

    def refresh(self, delta: Tensor) -> None:
        self.cholesky.copy_(self._cholesky(delta.detach()))

    def logit_covariance(self, features: Tensor, delta: Tensor) -> Tensor:
        phi = augment(features.to(self.dtype), self.has_bias)
        eye = torch.eye(self.num_classes, dtype=self.dtype, device=phi.device)
        out = []
        for start in range(0, phi.shape[0], _BATCH):
            chunk = phi[start : start + _BATCH]
            jac_t = torch.einsum("ce,ni->cine", eye, chunk).reshape(self.n_params, -1)  # Jᵀ
            solved = torch.linalg.solve_triangular(self.cholesky, jac_t, upper=False)  # L⁻¹Jᵀ
            solved = solved.reshape(self.n_params, chunk.shape[0], self.num_classes)
            out.append(torch.einsum("pnc,pne->nce", solved, solved))
        return torch.cat(out) if out else phi.new_zeros(0, self.num_classes, self.num_classes)

    def precision_matrix(self, delta: Tensor) -> Tensor:
        idx = self._ref_index
        return self._precision(delta)[idx][:, idx]


class KronPosterior(LaplacePosterior):
    """K-FAC P: weight block B ⊗ A + δI and bias block B + δI, via eigendecompositions of B, A.

    With B = Q_B diag(λ_B) Q_Bᵀ and A = Q_A diag(λ_A) Q_Aᵀ, the weight block has eigenvectors
    Q_B ⊗ Q_A and eigenvalues λ_B,i·λ_A,j + δ, so log|P| and Σ_f need no inverse.
    """

    structure = "kron"
    supports_per_class_prior = False

    def __init__(self, num_classes: int, in_features: int, bias: bool, dtype: torch.dtype) -> None:
        super().__init__(num_classes, in_features, bias, dtype)
        c, d = self.num_classes, self.in_features
        self.register_buffer("factor_b", torch.zeros(c, c, dtype=dtype))
        self.register_buffer("factor_a", torch.zeros(d, d, dtype=dtype))
        self.register_buffer("eigvals_b", torch.zeros(c, dtype=dtype))
        self.register_buffer("eigvecs_b", torch.zeros(c, c, dtype=dtype))
        self.register_buffer("eigvals_a", torch.zeros(d, dtype=dtype))
        self.register_buffer("eigvecs_a", torch.zeros(d, d, dtype=dtype))

    def fit(self, features: Tensor, probs: Tensor) -> None:
        factor_b, factor_a = ggn_kron(features.to(self.dtype), probs.to(self.dtype))
        self.factor_b.copy_(factor_b)
        self.factor_a.copy_(factor_a)
        for vals, vecs, mat in ((self.eigvals_b, self.eigvecs_b, factor_b), (self.eigvals_a, self.eigvecs_a, factor_a)):
            lam, q = torch.linalg.eigh(mat)
            vals.copy_(lam)
            vecs.copy_(q)

    def _scalar(self, delta: Tensor) -> Tensor:
        self.expand_prior(delta)  # validates the shape
        return delta.reshape(()).to(self.dtype)

    def logdet(self, delta: Tensor) -> Tensor:
        d = self._scalar(delta)
        out = torch.log(torch.outer(self.eigvals_b, self.eigvals_a) + d).sum()
        if self.has_bias:
            out = out + torch.log(self.eigvals_b + d).sum()
        return out

    def logit_covariance(self, features: Tensor, delta: Tensor) -> Tensor:
        d = self._scalar(delta)
        proj = features.to(self.dtype) @ self.eigvecs_a  # (B, d): Q_Aᵀφ per example
        inv_eig = 1.0 / (torch.outer(self.eigvals_b, self.eigvals_a) + d)  # (C, d)
        weights = proj.pow(2) @ inv_eig.transpose(0, 1)  # (B, C)
        cov = torch.einsum("ci,ni,ei->nce", self.eigvecs_b, weights, self.eigvecs_b)
        if self.has_bias:
            cov = cov + (self.eigvecs_b / (self.eigvals_b + d)) @ self.eigvecs_b.transpose(0, 1)
        return cov

    def precision_matrix(self, delta: Tensor) -> Tensor:
        d = self._scalar(delta)
        weight = torch.kron(self.factor_b, self.factor_a)
        blocks = [weight + d * torch.eye(weight.shape[0], dtype=self.dtype, device=weight.device)]
        if self.has_bias:
            blocks.append(self.factor_b + d * torch.eye(self.num_classes, dtype=self.dtype, device=weight.device))
        return torch.block_diag(*blocks)


class DiagPosterior(LaplacePosterior):
    """Diagonal P = diag(H) + δ: independent Gaussians per parameter."""

    structure = "diag"

    def __init__(self, num_classes: int, in_features: int, bias: bool, dtype: torch.dtype) -> None:
        super().__init__(num_classes, in_features, bias, dtype)
        self.register_buffer("ggn_diag", torch.zeros(self.num_classes, self.dim, dtype=dtype))

    def fit(self, features: Tensor, probs: Tensor) -> None:
        self.ggn_diag.copy_(ggn_diag(augment(features.to(self.dtype), self.has_bias), probs.to(self.dtype)))

    def _precision(self, delta: Tensor) -> Tensor:
        return self.ggn_diag + self.expand_prior(delta).to(self.dtype)

    def logdet(self, delta: Tensor) -> Tensor:
        return self._precision(delta).log().sum()

    def logit_covariance(self, features: Tensor, delta: Tensor) -> Tensor:
        phi = augment(features.to(self.dtype), self.has_bias)
        return phi.pow(2) @ (1.0 / self._precision(delta)).transpose(0, 1)  # (B, C): diagonal

    def precision_matrix(self, delta: Tensor) -> Tensor:
        return torch.diag(self._precision(delta).reshape(-1)[self._ref_index])


_STRUCTURES: dict[str, type[LaplacePosterior]] = {
    "full": FullPosterior,
    "kron": KronPosterior,
    "diag": DiagPosterior,
}


def make_posterior(structure: str, num_classes: int, in_features: int, bias: bool, dtype: torch.dtype) -> LaplacePosterior:
    """The posterior module of ``structure`` ('full', 'kron' or 'diag')."""
    if structure not in _STRUCTURES:
        raise UserInputError(f"hessian_structure must be one of {sorted(_STRUCTURES)}, got {structure!r}")
    return _STRUCTURES[structure](num_classes, in_features, bias, dtype)
