"""Top-label calibration: expected calibration error, adaptive ECE and reliability bins.

Bin convention (equal-width bins, ``n_bins`` of them, 15 by default): the edges are
``torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)`` and bin ``b`` holds the confidences
``edges[b] <= conf < edges[b + 1]`` (left-closed, as ``torch.bucketize(..., right=True)``), except
the last bin, which is closed on both sides so that a confidence of exactly 1.0 falls into it.
A confidence exactly at an interior edge therefore belongs to the bin that starts there.

Differences from torchmetrics' ``multiclass_calibration_error`` (which is otherwise the same
L1 top-label ECE, with the same left-closed bins):

* torchmetrics puts a confidence of exactly 1.0 in an extra, sixteenth bin of its own; here it
  shares the last bin [14/15, 1]. The two ECEs differ only when the last bin also holds a
  confidence below 1.0 (common with saturated float32 softmax outputs).
* torchmetrics casts confidences to float32 and uses float32 edges, some of which round above
  the decimal value (its edge 0.2 is 0.20000001788); a confidence of exactly 0.2, 0.4 or 7/15
  lands in the lower bin there and in the upper bin here. Confidences farther than float32
  rounding (~1e-7) from an edge are binned identically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from bayeshead.metrics._validation import check_n_bins, check_probs, check_targets
from bayeshead.metrics.scoring import _top_label

__all__ = ["ReliabilityBins", "reliability_bins", "ece", "adaptive_ece"]


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin statistics of a reliability diagram (equal-width top-label confidence bins).

    ``edges`` has ``n_bins + 1`` entries; ``counts[b]`` examples fall in bin ``b``, with mean
    top-label confidence ``mean_confidence[b]`` and accuracy ``accuracy[b]`` (both NaN for an
    empty bin).
    """

    edges: tuple[float, ...]
    counts: tuple[int, ...]
    mean_confidence: tuple[float, ...]
    accuracy: tuple[float, ...]

    @property
    def n_bins(self) -> int:
        return len(self.counts)

    @property
    def total(self) -> int:
        """The number of examples binned."""
        return sum(self.counts)

    @property
    def ece(self) -> float:
        """sum_b (n_b / N) |acc_b - conf_b| over the non-empty bins."""
        total = self.total
        return math.fsum(
            count / total * abs(acc - conf)
            for count, acc, conf in zip(
                self.counts, self.accuracy, self.mean_confidence, strict=True
            )
            if count > 0
        )


def _equal_width_bins(confidence: Tensor, correct: Tensor, n_bins: int) -> ReliabilityBins:
    """Reliability bins of top-label confidences (float64) and correctness (bool)."""
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64, device=confidence.device)
    index = (torch.bucketize(confidence, edges, right=True) - 1).clamp(0, n_bins - 1)
    counts = torch.bincount(index, minlength=n_bins)
    conf_sum = torch.bincount(index, weights=confidence, minlength=n_bins)
    correct_sum = torch.bincount(index, weights=correct.to(torch.float64), minlength=n_bins)
    denominator = counts.to(torch.float64)
    return ReliabilityBins(
        edges=tuple(edges.tolist()),
        counts=tuple(int(c) for c in counts.tolist()),
        mean_confidence=tuple((conf_sum / denominator).tolist()),
        accuracy=tuple((correct_sum / denominator).tolist()),
    )


def _adaptive_ece(confidence: Tensor, correct: Tensor, n_bins: int) -> float:
    """Equal-mass ECE of top-label confidences (float64) and correctness (bool)."""
    correct = correct.to(torch.float64)
    # Order by confidence, ties broken by correctness (wrong first): the result depends only on
    # the multiset of (confidence, correct) pairs, not on the order of the examples.
    by_correct = torch.argsort(correct, stable=True)
    order = by_correct[torch.argsort(confidence[by_correct], stable=True)]
    n = confidence.numel()
    total = 0.0
    for conf_bin, correct_bin in zip(
        torch.tensor_split(confidence[order], n_bins),
        torch.tensor_split(correct[order], n_bins),
        strict=True,
    ):
        if conf_bin.numel():
            gap = (correct_bin.mean() - conf_bin.mean()).abs()
            total += conf_bin.numel() / n * float(gap)
    return total


def reliability_bins(probs: Tensor, targets: Tensor, n_bins: int = 15) -> ReliabilityBins:
    """Count, mean top-label confidence, accuracy and edges of ``n_bins`` equal-width bins.

    The top-label confidence of example i is max_c p_ic, and it is correct when
    argmax_c p_ic = y_i (DeGroot & Fienberg 1983; Niculescu-Mizil & Caruana 2005; Guo et al.
    2017). See the module docstring for the bin convention.
    """
    n_bins = check_n_bins(n_bins)
    p = check_probs(probs)
    y = check_targets(targets, p.shape[0], p.shape[1])
    confidence, correct = _top_label(p, y)
    return _equal_width_bins(confidence, correct, n_bins)


def ece(probs: Tensor, targets: Tensor, n_bins: int = 15) -> float:
    """Expected calibration error, top-label, equal-width bins, L1 (Naeini et al. 2015;
    Guo et al. 2017): ECE = sum_b (n_b / N) |acc_b - conf_b|, in [0, 1].

    acc_b and conf_b are the accuracy and mean top-label confidence of the n_b examples in bin
    b. With 15 bins this matches torchmetrics' ``multiclass_calibration_error(probs, targets,
    num_classes=C, n_bins=15, norm="l1")`` except for the edge cases listed in the module
    docstring (confidence exactly 1.0 alongside others in the last bin; confidences within
    float32 rounding of a bin edge).
    """
    return reliability_bins(probs, targets, n_bins).ece


def adaptive_ece(probs: Tensor, targets: Tensor, n_bins: int = 15) -> float:
    """Adaptive (equal-mass) calibration error (Nixon et al. 2019, "Measuring Calibration in
    Deep Learning"): ECE with bins holding equal numbers of examples, in [0, 1].

    The N examples are sorted by top-label confidence and split into ``n_bins`` contiguous
    groups whose sizes differ by at most one (the first ``N mod n_bins`` groups hold one more,
    as ``numpy.array_split``); empty groups (N < n_bins) are skipped. Equal confidences are
    ordered wrong-before-right, so the value does not depend on the order of the examples.
    AECE = sum_b (n_b / N) |acc_b - conf_b|.
    """
    n_bins = check_n_bins(n_bins)
    p = check_probs(probs)
    y = check_targets(targets, p.shape[0], p.shape[1])
    confidence, correct = _top_label(p, y)
    return _adaptive_ece(confidence, correct, n_bins)
