"""Stable rank from r×r cores equals the explicit ‖ΔW‖²_F / ‖ΔW‖²_2."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayeshead.manifolds import (
    orthogonality_error,
    random_stiefel,
    stable_rank,
    stable_rank_lowrank,
    stable_rank_orthonormal,
)


def explicit(delta: torch.Tensor) -> float:
    sv = torch.linalg.svdvals(delta.double())
    return float((sv**2).sum() / sv[0] ** 2)


@st.composite
def dims(draw):
    m, n = draw(st.integers(1, 30)), draw(st.integers(1, 30))
    r = draw(st.integers(1, 8))
    return m, n, r


@settings(max_examples=40, deadline=None)
@given(d=dims(), seed=st.integers(0, 10_000), spread=st.floats(0.0, 3.0))
def test_lora_core_matches_explicit(d, seed, spread):
    m, n, r = d
    g = torch.Generator().manual_seed(seed)
    scales = torch.exp(spread * torch.randn(r, generator=g))
    b = torch.randn(m, r, generator=g) * scales
    a = torch.randn(r, n, generator=g)
    assert stable_rank_lowrank(b, a) == pytest.approx(explicit(b @ a), rel=1e-5, abs=1e-5)


@settings(max_examples=40, deadline=None)
@given(d=dims(), seed=st.integers(0, 10_000))
def test_polar_core_matches_explicit(d, seed):
    m, n, r = d
    r = min(r, m, n)
    g = torch.Generator().manual_seed(seed)
    u = random_stiefel(m, r, generator=g)
    v = random_stiefel(n, r, generator=g)
    theta = torch.randn(r, r, generator=g)
    assert stable_rank_orthonormal(theta) == pytest.approx(explicit(u @ theta @ v.T), rel=1e-5)


def test_generic_and_degenerate_cases():
    assert stable_rank(torch.eye(4)) == pytest.approx(4.0)
    assert stable_rank(torch.diag(torch.tensor([2.0, 1.0]))) == pytest.approx(1.25)
    assert stable_rank(torch.zeros(3, 5)) == 0.0
    assert stable_rank_lowrank(torch.zeros(6, 2), torch.randn(2, 4)) == 0.0
    with pytest.raises(ValueError, match="matching r"):
        stable_rank_lowrank(torch.zeros(6, 2), torch.zeros(3, 4))


def test_random_stiefel_is_orthonormal_with_positive_r_diagonal():
    g = torch.Generator().manual_seed(0)
    q = random_stiefel(7, 3, dtype=torch.float64, generator=g)
    assert orthogonality_error(q).item() < 1e-12
    gauss = torch.randn(7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    r = q.T @ gauss  # gauss = q·r with r upper triangular, positive diagonal
    assert torch.all(torch.diagonal(r) > 0)
    torch.testing.assert_close(q @ r, gauss)
    with pytest.raises(ValueError, match="rows"):
        random_stiefel(2, 3)
