"""Uncertainty metrics of categorical predictions, computed in float64 on torch tensors.

* :mod:`~bayeshead.metrics.scoring`: :func:`accuracy`, :func:`nll`, :func:`brier`;
* :mod:`~bayeshead.metrics.calibration`: :func:`ece`, :func:`adaptive_ece`,
  :func:`reliability_bins`;
* :mod:`~bayeshead.metrics.selective`: :func:`aurc`;
* :mod:`~bayeshead.metrics.ood`: :func:`ood_scores`, :func:`auroc`, :func:`aupr`,
  :func:`fpr_at_tpr`, :func:`ood_metrics` (OOD is the positive class);
* :mod:`~bayeshead.metrics.paired`: :func:`paired_bootstrap` (percentile-bootstrap intervals of
  metric differences between two methods on the same examples and seeds), :class:`PerExample`,
  :class:`PairedDifference`, :func:`paired_differences_from_records`;
* :mod:`~bayeshead.metrics.accumulator`: :class:`ClassificationMetrics`, which accumulates
  over batches and matches the one-shot functions on their concatenation.

Inputs are ``probs`` (N, C) (or ``log_probs``) and integer ``targets`` (N,); the functions
return plain Python floats.

Regression (Gaussian predictives: ``mean``, ``var``, real ``targets``) lives in
:mod:`~bayeshead.metrics.regression`: RMSE, MAE, Pearson, Spearman, Gaussian NLL, CRPS,
interval coverage and width, the calibration curve and error, OOD detection by variance.
"""

from __future__ import annotations

from bayeshead.metrics.accumulator import ClassificationMetrics
from bayeshead.metrics.calibration import ReliabilityBins, adaptive_ece, ece, reliability_bins
from bayeshead.metrics.ood import aupr, auroc, fpr_at_tpr, ood_metrics, ood_scores
from bayeshead.metrics.paired import (
    PairedDifference,
    PerExample,
    paired_bootstrap,
    paired_differences_from_records,
)
from bayeshead.metrics.regression import (
    calibration_curve,
    crps_gaussian,
    gaussian_nll,
    interval_coverage,
    mae,
    pearson,
    regression_calibration_error,
    regression_metrics,
    rmse,
    spearman,
    variance_ood_metrics,
)
from bayeshead.metrics.scoring import NLL_FLOOR, accuracy, brier, nll
from bayeshead.metrics.selective import aurc

__all__ = [
    "ClassificationMetrics",
    "ReliabilityBins",
    "NLL_FLOOR",
    "accuracy",
    "nll",
    "brier",
    "ece",
    "adaptive_ece",
    "reliability_bins",
    "aurc",
    "ood_scores",
    "auroc",
    "aupr",
    "fpr_at_tpr",
    "ood_metrics",
    "PerExample",
    "PairedDifference",
    "paired_bootstrap",
    "paired_differences_from_records",
    "rmse",
    "mae",
    "pearson",
    "spearman",
    "gaussian_nll",
    "crps_gaussian",
    "interval_coverage",
    "calibration_curve",
    "regression_calibration_error",
    "variance_ood_metrics",
    "regression_metrics",
]
