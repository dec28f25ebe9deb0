"""Mask-aware pooling: closed forms on random tensors, and left/right padding agreement."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayeshead.backbones.pooling import pool


def _batch(lengths: list[int], max_len: int, dim: int, left: bool, seed: int):
    g = torch.Generator().manual_seed(seed)
    tokens = [torch.randn(n, dim, generator=g, dtype=torch.float64) for n in lengths]
    hidden = torch.randn(len(lengths), max_len, dim, generator=g, dtype=torch.float64) * 100  # pad garbage
    mask = torch.zeros(len(lengths), max_len, dtype=torch.long)
    for i, t in enumerate(tokens):
        n = t.shape[0]
        span = slice(max_len - n, max_len) if left else slice(0, n)
        hidden[i, span] = t
        mask[i, span] = 1
    return hidden, mask, tokens


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 7), min_size=1, max_size=5),
    extra=st.integers(0, 3),
    dim=st.integers(1, 6),
    seed=st.integers(0, 10_000),
)
def test_pooling_matches_closed_form_for_left_and_right_padding(lengths, extra, dim, seed):
    max_len = max(lengths) + extra
    for left in (False, True):
        hidden, mask, tokens = _batch(lengths, max_len, dim, left, seed)
        expected_mean = torch.stack([t.mean(0) for t in tokens])
        expected_first = torch.stack([t[0] for t in tokens])
        expected_last = torch.stack([t[-1] for t in tokens])
        torch.testing.assert_close(pool(hidden, mask, "mean"), expected_mean)
        torch.testing.assert_close(pool(hidden, mask, "cls"), expected_first)
        torch.testing.assert_close(pool(hidden, mask, "last_token"), expected_last)


def test_pooling_errors_name_the_problem():
    hidden = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        pool(hidden, torch.ones(2, 3), "max")
    with pytest.raises(ValueError, match=r"attention mask must be \(batch, length\)"):
        pool(hidden, torch.ones(2, 4), "mean")
    with pytest.raises(ValueError, match=r"rows \[1\] .* all zero"):
        pool(hidden, torch.tensor([[1, 1, 0], [0, 0, 0]]), "mean")
