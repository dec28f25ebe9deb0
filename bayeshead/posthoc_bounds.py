"""Warnings for post-hoc fits whose optimum runs to the limit of their search.

A bounded search (temperature scaling, the Laplace prior precision, TFB's β) that returns one of
its limits has found no interior optimum: the best value may lie beyond the limit (separable
validation data drive the temperature towards 0, for example). The value is still used, but
:func:`warn_at_bound` says so, with what to change.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

from bayeshead.errors import UserInputError

__all__ = ["bound_side", "warn_at_bound"]


def bound_side(value: float, low: float, high: float, rtol: float = 1e-3) -> Literal["lower", "upper"] | None:
    """"lower" or "upper" when ``value`` lies within ``rtol`` (relative to the interval's width)
    of that end of [low, high] (or beyond it); None inside."""
    width = high - low
    if not (math.isfinite(value) and width > 0):
        raise UserInputError(f"bound_side: need a finite value and low < high, got {value}, [{low}, {high}]")
    if value <= low + rtol * width:
        return "lower"
    if value >= high - rtol * width:
        return "upper"
    return None


def warn_at_bound(what: str, value: float, low: float, high: float, side: str, fix: str) -> None:
    """A ``RuntimeWarning``: ``what`` ended at the ``side`` limit of its search [low, high]."""
    warnings.warn(
        f"{what}: the fit ended at the {side} limit of its search ({value:.4g} in [{low:.4g}, {high:.4g}]), so "
        f"the optimum may lie beyond it and the value used is a limit, not an optimum; {fix}",
        RuntimeWarning,
        stacklevel=3,
    )
