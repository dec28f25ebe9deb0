"""Bisection for the largest feasible value of a monotone criterion (TFB's search for β).

:func:`largest_feasible` finds the largest β in [lo, hi] with f(β) ≤ threshold, assuming f is
non-decreasing in β (more posterior noise, a larger change of the anchor-set loss). It keeps a
bracket [a, b] with a feasible (or the untested ``lo``) and b infeasible, halves it ``iterations``
times (arithmetic midpoints, or geometric ones with ``scale="log"``), and returns a: a value that
was evaluated and found feasible, within (hi − lo)/2^iterations of the feasibility boundary
(linear scale). Evaluations: f(hi) first (returned at once when feasible), then one per
iteration, and f(lo) only when no midpoint was feasible. Every (β, f(β)) evaluated is returned in
evaluation order. A NaN f(β) counts as infeasible.

When even f(lo) > threshold, ``on_infeasible="lo"`` (default) returns lo anyway — the caller sees
it from the history, whose last entry is then (lo, f(lo)) with f(lo) > threshold — and
``on_infeasible="raise"`` raises ``ValueError``.

Deviation from the reference (Wang-ML-Lab/bayesian-peft, ``modelwrappers/tfblora.py`` at commit
7bdafeb, ``TFBLoRA.fit``, lines 86–140; defaults in ``get_parser``, lines 38, 46–47):

* search space: linear bisection on [0.001, ``--bayes-beta``] (line 89; ``--bayes-beta``
  defaults to 0.2, line 38; the TFB scripts ``scripts/tfblora/{blob,mle}.sh`` pass 0.015),
  ``--iter`` = 10 midpoints (line 47; scripts: 5), threshold ``--th`` = 0.01 (line 46; scripts:
  0.003). Neither end point is ever evaluated.
* criterion (line 125): ``|NLL_β − NLL_0| / NLL_0 / N``, where NLL_* =
  ``F.nll_loss(log(p + 1e-12), ŷ)`` is already the *mean* over the N anchor examples (ŷ = the
  σ = 0 model's argmax predictions, lines 250–261; p = softmax probabilities averaged over
  ``--bayes-train-n-samples`` draws, lines 105–106), and the relative change is then divided by
  N = ``all_ori_predicted_classes.size(0)`` once more. The effective threshold on the relative
  NLL change is therefore th·N, which grows with the anchor-set size. Give ``f`` the plain
  relative change (and multiply the threshold by N to reproduce the reference).
* returned value (lines 130–137): ``best`` is updated only when the midpoint is *infeasible*
  (ratio > th), so the reference returns the last infeasible midpoint — the upper end of its
  final bracket, just above the threshold — or ``--bayes-beta`` itself (never evaluated) when every
  midpoint was feasible. :func:`largest_feasible` returns the lower, feasible end instead.
* ``modelwrappers/tfblora_acc.py`` (same commit) is the variant with f = fraction of anchor
  predictions that change (no division by N), the same bracket and update rule, and an early
  stop once high − low < 5e-4.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from bayeshead.errors import UserInputError

__all__ = ["largest_feasible"]


def largest_feasible(
    f: Callable[[float], float],
    lo: float,
    hi: float,
    threshold: float,
    *,
    iterations: int = 10,
    scale: Literal["linear", "log"] = "linear",
    on_infeasible: Literal["lo", "raise"] = "lo",
) -> tuple[float, list[tuple[float, float]]]:
    """Largest β in [lo, hi] with f(β) ≤ threshold for a non-decreasing f, by bisection.

    Returns (β, [(β_k, f(β_k)) for every evaluation, in order]). β = hi when f(hi) ≤ threshold;
    otherwise the largest midpoint found feasible after ``iterations`` halvings (within
    (hi − lo)/2^iterations of the boundary on the linear scale, within a factor
    (hi/lo)^(1/2^iterations) on the log scale), or lo when none was; if then f(lo) > threshold
    too, lo is returned (``on_infeasible="lo"``) or ``ValueError`` raised (``"raise"``)."""
    lo, hi, threshold = float(lo), float(hi), float(threshold)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise UserInputError(f"largest_feasible: need finite lo <= hi, got lo={lo}, hi={hi}")
    if scale not in ("linear", "log"):
        raise UserInputError(f"largest_feasible: scale must be 'linear' or 'log', got {scale!r}")
    if scale == "log" and lo <= 0:
        raise UserInputError(f"largest_feasible: scale='log' needs lo > 0, got lo={lo}")
    if on_infeasible not in ("lo", "raise"):
        raise UserInputError(f"largest_feasible: on_infeasible must be 'lo' or 'raise', got {on_infeasible!r}")
    if int(iterations) < 0:
        raise UserInputError(f"largest_feasible: iterations must be >= 0, got {iterations}")
    history: list[tuple[float, float]] = []

    def feasible(beta: float) -> bool:
        value = float(f(beta))
        history.append((beta, value))
        return value <= threshold  # False for NaN

    if feasible(hi):
        return hi, history
    a, b = lo, hi  # invariant: b infeasible; a feasible once any midpoint was
    for _ in range(int(iterations)):
        mid = math.sqrt(a * b) if scale == "log" else 0.5 * (a + b)
        if not (a < mid < b):  # the bracket is below floating-point resolution
            break
        if feasible(mid):
            a = mid
        else:
            b = mid
    lo_infeasible = a == lo and (lo == hi or not feasible(lo))  # lo == hi: f(hi) said it
    if lo_infeasible and on_infeasible == "raise":
        raise UserInputError(
            f"largest_feasible: even f(lo) = {history[-1][1]} > threshold {threshold} at lo={lo}; "
            "lower lo or raise the threshold"
        )
    return a, history
