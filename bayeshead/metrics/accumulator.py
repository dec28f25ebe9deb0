"""Streaming classification metrics: feed batches, get the metrics of their concatenation."""

from __future__ import annotations

import torch
from torch import Tensor

from bayeshead.errors import UserInputError
from bayeshead.metrics._validation import check_n_bins, check_predictions, check_targets
from bayeshead.metrics.calibration import ReliabilityBins, _adaptive_ece, _equal_width_bins
from bayeshead.metrics.scoring import _brier_terms, _nll_terms, _top_label
from bayeshead.metrics.selective import _aurc

__all__ = ["ClassificationMetrics"]


class ClassificationMetrics:
    """Accumulates ACC, NLL, Brier, ECE, adaptive ECE and AURC over batches.

    Metrics are weighted by example, never averaged over batch means: NLL, Brier and the
    number of correct predictions are kept as float64 sums, and the top-label confidence and
    correctness of every example are kept (on the CPU, 9 bytes per example) for the binned and
    ranked metrics. :meth:`compute` therefore returns the same numbers as the one-shot
    functions (:func:`~bayeshead.metrics.accuracy`, :func:`~bayeshead.metrics.nll`, ...) on the
    concatenation of the batches, up to float64 summation order.

    Example::

        metrics = ClassificationMetrics()
        for batch in loader:
            predictive = model.predict(batch)
            metrics.update(predictive.probs, batch.targets, log_probs=predictive.log_probs)
        metrics.compute()  # {"acc": ..., "nll": ..., "brier": ..., "ece": ..., ...}
    """

    def __init__(self, n_bins: int = 15, adaptive_n_bins: int = 15) -> None:
        self.n_bins = check_n_bins(n_bins)
        self.adaptive_n_bins = check_n_bins(adaptive_n_bins)
        self.reset()

    def reset(self) -> None:
        """Forget every example seen so far."""
        self.num_classes: int | None = None
        self._count = 0
        self._correct = 0
        self._nll_sum = 0.0
        self._brier_sum = 0.0
        self._confidence: list[Tensor] = []
        self._is_correct: list[Tensor] = []

    @property
    def count(self) -> int:
        """The number of examples seen since construction or the last :meth:`reset`."""
        return self._count

    def update(
        self, probs: Tensor | None, targets: Tensor, *, log_probs: Tensor | None = None
    ) -> None:
        """Add a batch: probabilities (B, C) and/or their log ``log_probs``, targets (B,).

        The NLL uses ``log_probs`` when given (see :func:`~bayeshead.metrics.nll`);
        ``probs`` may be ``None`` when ``log_probs`` is given. Every batch must have the same
        number of classes.
        """
        p, lp = check_predictions(probs, log_probs)
        if self.num_classes is not None and p.shape[1] != self.num_classes:
            raise UserInputError(
                f"this batch has {p.shape[1]} classes but earlier batches had "
                f"{self.num_classes}; use one ClassificationMetrics per task, or reset() it"
            )
        y = check_targets(targets, p.shape[0], p.shape[1])
        confidence, correct = _top_label(p, y)
        self.num_classes = p.shape[1]
        self._count += p.shape[0]
        self._correct += int(correct.sum())
        self._nll_sum += float(_nll_terms(p, lp, y).sum())
        self._brier_sum += float(_brier_terms(p, y).sum())
        self._confidence.append(confidence.cpu())
        self._is_correct.append(correct.cpu())

    def _stored(self) -> tuple[Tensor, Tensor]:
        if self._count == 0:
            raise UserInputError("no examples: call update(probs, targets) before computing metrics")
        return torch.cat(self._confidence), torch.cat(self._is_correct)

    def reliability_bins(self) -> ReliabilityBins:
        """The equal-width reliability bins of every example seen (for a reliability diagram)."""
        return _equal_width_bins(*self._stored(), self.n_bins)

    def compute(self) -> dict[str, float]:
        """``acc``, ``nll``, ``brier``, ``ece``, ``adaptive_ece`` and ``aurc`` as floats."""
        confidence, correct = self._stored()
        n = self._count
        return {
            "acc": self._correct / n,
            "nll": self._nll_sum / n,
            "brier": self._brier_sum / n,
            "ece": _equal_width_bins(confidence, correct, self.n_bins).ece,
            "adaptive_ece": _adaptive_ece(confidence, correct, self.adaptive_n_bins),
            "aurc": _aurc(confidence, correct),
        }
