"""Proper scores and accuracy of categorical predictions: ACC, NLL, Brier.

Inputs are ``probs`` (N, C) and integer ``targets`` (N,); all arithmetic is in float64 and the
results are plain Python floats, means over the N examples.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bayeshead.metrics._validation import check_predictions, check_probs, check_targets

__all__ = ["accuracy", "nll", "brier", "NLL_FLOOR"]

#: Floor applied to probabilities before their log when no log-probabilities are given:
#: the smallest positive normal float64 (about 2.2e-308), so -log p is at most about 708.4.
NLL_FLOOR = torch.finfo(torch.float64).tiny


def _top_label(probs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Top-label confidence max_c p_c (float64) and whether argmax_c p_c equals the target.

    Ties in the argmax go to the lowest class index (``torch.max``), as in torchmetrics.
    """
    confidence, prediction = probs.max(dim=1)
    return confidence, prediction == targets.to(probs.device)


def _nll_terms(probs: Tensor, log_probs: Tensor | None, targets: Tensor) -> Tensor:
    """Per-example -log p_y: from ``log_probs`` when given, else -log(max(p_y, NLL_FLOOR))."""
    index = targets.to(probs.device).unsqueeze(1)
    if log_probs is not None:
        return -log_probs.gather(1, index).squeeze(1)
    return -probs.gather(1, index).squeeze(1).clamp_min(NLL_FLOOR).log()


def _brier_terms(probs: Tensor, targets: Tensor) -> Tensor:
    """Per-example sum_c (p_c - 1[y = c])^2."""
    onehot = torch.nn.functional.one_hot(targets.to(probs.device), probs.shape[1])
    return (probs - onehot.to(probs.dtype)).pow(2).sum(dim=1)


def accuracy(probs: Tensor, targets: Tensor) -> float:
    """Top-1 accuracy: ACC = (1/N) sum_i 1[argmax_c p_ic = y_i].

    Ties in the argmax go to the lowest class index, as ``torch.argmax`` and torchmetrics'
    ``multiclass_accuracy(..., average="micro")`` do.
    """
    p = check_probs(probs)
    y = check_targets(targets, p.shape[0], p.shape[1])
    return float(_top_label(p, y)[1].to(torch.float64).mean())


def nll(probs: Tensor | None, targets: Tensor, *, log_probs: Tensor | None = None) -> float:
    """Mean negative log-likelihood: NLL = -(1/N) sum_i log p_i(y_i).

    The log is taken from ``log_probs`` when given (the stable ``log_softmax`` of a head; a
    log-probability of -inf gives ``inf``). From ``probs`` alone it is
    ``-log(max(p_y, NLL_FLOOR))`` with ``NLL_FLOOR = torch.finfo(torch.float64).tiny``, so a
    probability that underflowed to 0 costs about 708.4 nats rather than a clipped 16 nats.
    sklearn's ``log_loss`` clips at float64 eps (about 2.2e-16) instead, so the two agree
    unless a true-class probability is below 2.2e-16 or above 1 - 2.2e-16.

    ``probs`` may be ``None`` when ``log_probs`` is given.
    """
    p, lp = check_predictions(probs, log_probs)
    y = check_targets(targets, p.shape[0], p.shape[1])
    return float(_nll_terms(p, lp, y).mean())


def brier(probs: Tensor, targets: Tensor) -> float:
    """Multiclass Brier score (Brier 1950): (1/N) sum_i sum_c (p_ic - 1[y_i = c])^2, in [0, 2].

    Summed over classes and not divided by C. For two classes this is twice the usual binary
    Brier score (p_1 - y)^2; sklearn's ``brier_score_loss`` with ``scale_by_half="auto"``
    halves the binary case and returns exactly this value for three or more classes.
    """
    p = check_probs(probs)
    y = check_targets(targets, p.shape[0], p.shape[1])
    return float(_brier_terms(p, y).mean())
