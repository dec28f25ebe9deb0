"""Gaussian row parameterizations: KL against torch.distributions, quadratic forms, traces."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import (
    LowRankMultivariateNormal,
    MultivariateNormal,
    Normal,
    kl_divergence,
)

from bayeshead.heads.covariance import GaussianRows


def _random_rows(kind: str, rows: int, dim: int, rank: int, seed: int) -> GaussianRows:
    gen = torch.Generator().manual_seed(seed)
    post = GaussianRows(rows, dim, kind, rank=rank if kind == "lowrank" else None).double()
    with torch.no_grad():
        post.mean.copy_(torch.randn(rows, dim, generator=gen, dtype=torch.float64))
        post.log_scale.copy_(0.5 * torch.randn(rows, dim, generator=gen, dtype=torch.float64))
        if kind == "dense":
            post.tril.copy_(torch.randn(rows, dim, dim, generator=gen, dtype=torch.float64))
        if kind == "lowrank":
            post.factor.copy_(torch.randn(rows, dim, rank, generator=gen, dtype=torch.float64))
    return post


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(["diagonal", "dense", "lowrank"]),
    rows=st.integers(1, 4),
    dim=st.integers(1, 7),
    rank=st.integers(1, 3),
    prior=st.floats(1e-2, 10.0),
    seed=st.integers(0, 2**16),
)
def test_kl_matches_torch_distributions(kind: str, rows: int, dim: int, rank: int, prior: float, seed: int) -> None:
    rank = min(rank, dim)
    post = _random_rows(kind, rows, dim, rank, seed)
    zeros = torch.zeros(rows, dim, dtype=torch.float64)
    with torch.no_grad():
        if kind == "diagonal":
            q = Normal(post.mean, post.scale_diag())
            p = Normal(zeros, torch.full_like(zeros, math.sqrt(prior)))
            expected = kl_divergence(q, p).sum()
        else:
            if kind == "dense":
                q = MultivariateNormal(post.mean, scale_tril=post.cholesky())
            else:
                q = LowRankMultivariateNormal(post.mean, post.factor, post.scale_diag() ** 2)
            eye = torch.eye(dim, dtype=torch.float64).expand(rows, dim, dim)
            expected = kl_divergence(q, MultivariateNormal(zeros, covariance_matrix=prior * eye)).sum()
        got = post.kl(prior)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", ["diagonal", "dense", "lowrank"])
def test_quadratic_trace_logdet_match_dense_algebra(kind: str) -> None:
    post = _random_rows(kind, 3, 6, 2, seed=4)
    phi = torch.randn(5, 6, dtype=torch.float64)
    weights = torch.rand(6, dtype=torch.float64) + 0.1
    with torch.no_grad():
        cov = post.covariance()
        torch.testing.assert_close(post.quadratic(phi), torch.einsum("bi,rij,bj->br", phi, cov, phi))
        torch.testing.assert_close(post.trace(), torch.diagonal(cov, dim1=-2, dim2=-1).sum(-1))
        torch.testing.assert_close(post.weighted_trace(weights), (torch.diagonal(cov, dim1=-2, dim2=-1) * weights).sum(-1))
        torch.testing.assert_close(post.logdet(), torch.linalg.slogdet(cov)[1])
        samples = post.sample(40_000, generator=torch.Generator().manual_seed(0))
        centered = samples - post.mean
        emp = torch.einsum("nri,nrj->rij", centered, centered) / samples.shape[0]
    torch.testing.assert_close(emp, cov, atol=0.15 * float(cov.abs().max()), rtol=0)
    assert torch.all(post.quadratic(phi) >= 0)


def test_lowrank_rank_is_checked() -> None:
    with pytest.raises(ValueError, match="rank"):
        GaussianRows(2, 3, "lowrank", rank=4)
    with pytest.raises(ValueError, match="covariance"):
        GaussianRows(2, 3, "full")  # type: ignore[arg-type]
