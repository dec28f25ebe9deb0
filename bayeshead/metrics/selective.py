"""Selective prediction: the area under the risk-coverage curve (AURC)."""

from __future__ import annotations

import torch
from torch import Tensor

from bayeshead.metrics._validation import check_probs, check_targets
from bayeshead.metrics.scoring import _top_label

__all__ = ["aurc"]


def _aurc(confidence: Tensor, correct: Tensor) -> float:
    """AURC of top-label confidences (float64) and correctness (bool); see :func:`aurc`."""
    n = confidence.numel()
    sorted_conf, order = torch.sort(confidence, descending=True)
    errors = (~correct[order]).to(torch.float64)
    _, sizes = torch.unique_consecutive(sorted_conf, return_counts=True)
    group = torch.repeat_interleave(torch.arange(sizes.numel(), device=sizes.device), sizes)
    group_errors = torch.zeros(sizes.numel(), dtype=torch.float64, device=errors.device)
    group_errors.index_add_(0, group, errors)
    start = torch.cumsum(sizes, 0) - sizes  # examples ranked before each tie group
    errors_before = torch.cumsum(group_errors, 0) - group_errors
    k = torch.arange(1, n + 1, dtype=torch.float64, device=errors.device)
    # Expected errors among the top k when the examples of a tie group are ordered at random:
    # the group's errors are spread evenly over its positions.
    expected = errors_before[group] + (k - start[group]) * (group_errors / sizes)[group]
    return float((expected / k).mean())


def aurc(probs: Tensor, targets: Tensor) -> float:
    """Area under the risk-coverage curve of the top-label confidence (Geifman & El-Yaniv 2017,
    "Selective Classification for Deep Neural Networks"; Geifman et al. 2019, "Bias-Reduced
    Uncertainty Estimation for Deep Neural Classifiers"), in [0, 1]; lower is better.

    Examples are ranked by confidence max_c p_ic, highest first. At coverage k/N the risk is
    the error rate among the k most confident examples, and AURC = (1/N) sum_{k=1..N} risk(k).

    Ties: examples with equal confidence cannot be ordered by the model, so within a tie group
    the errors are counted as spread evenly over the group's positions. The result is the
    expected AURC over uniformly random orderings of each tie group; it does not depend on the
    order of the input, and it equals the plain formula when all confidences are distinct.
    """
    p = check_probs(probs)
    y = check_targets(targets, p.shape[0], p.shape[1])
    return _aurc(*_top_label(p, y))
