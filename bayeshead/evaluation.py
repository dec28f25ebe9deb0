"""One evaluation path: a predictive in, metrics out -- used by ``bayeshead train``, the bench
runner and user code alike.

    predictive = predict_dataset(method.predict, test.texts, batch_size=64, seed=0)
    metrics = evaluate(predictive, test.labels, ood=predict_dataset(method.predict, ood_texts, 64, 0))

``predict`` is anything with the signature ``predict(texts, *, generator=...) -> Predictive``:
``BayesianModel.predict`` or any method's ``predict``. Metrics are computed in float64 from the
concatenated predictive (never as averages of batch means): ACC, NLL, Brier, ECE, adaptive ECE,
AURC, the reliability bins, and, with an OOD set, detection AUROC / AUPR / FPR95 for the
max-probability, entropy and (where the predictive has samples) mutual-information scores.

A regression predictive (:class:`~bayeshead.types.GaussianPredictive`) is scored by
:func:`regression_metrics` instead: RMSE, MAE, Pearson, Spearman, NLL, CRPS, coverage and mean
width of the central 50/90/95 % intervals, the calibration error and curve, and with an OOD set
detection by the predictive variance (and by its epistemic part where the predictive has one).
Text pairs: ``predict_dataset(predict, texts, 64, text_pair=second_texts)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from bayeshead.errors import InputTypeError, UserInputError
from bayeshead.types import CategoricalPredictive, GaussianPredictive, Predictive

__all__ = [
    "predict_dataset",
    "evaluate",
    "classification_metrics",
    "detection_metrics",
    "labelled_set_metrics",
    "per_example",
    "regression_metrics",
    "regression_detection_metrics",
]


@torch.no_grad()
def predict_dataset(
    predict: Callable[..., Predictive],
    texts: Sequence[str],
    batch_size: int,
    seed: int = 0,
    *,
    text_pair: Sequence[str] | None = None,
) -> Predictive:
    """The predictive over ``texts`` (with ``text_pair``: over the pairs ``(texts[i],
    text_pair[i])``, passed on as ``predict(..., text_pair=...)``) in batches of ``batch_size``,
    concatenated in float64, with one seeded generator for the whole pass (Monte-Carlo
    predictives are reproducible)."""
    if batch_size <= 0:
        raise UserInputError(f"batch_size must be a positive integer, got {batch_size}")
    texts = list(texts)
    if not texts:
        raise UserInputError("predict_dataset: no texts to predict (an empty split?)")
    pairs = None if text_pair is None else list(text_pair)
    if pairs is not None and len(pairs) != len(texts):
        raise UserInputError(f"predict_dataset: {len(texts)} texts but {len(pairs)} text_pair entries; give one per text")
    generator = torch.Generator().manual_seed(seed)

    def chunk(start: int) -> Predictive:
        extra = {} if pairs is None else {"text_pair": pairs[start : start + batch_size]}
        return predict(texts[start : start + batch_size], generator=generator, **extra).double().to("cpu")

    parts = [chunk(start) for start in range(0, len(texts), batch_size)]
    kind = type(parts[0])
    if any(type(p) is not kind for p in parts):
        raise InputTypeError("predict returned predictives of different kinds for different batches")
    return kind.cat(parts)  # type: ignore[attr-defined]


def _categorical(pred: Predictive, what: str) -> CategoricalPredictive:
    if not isinstance(pred, CategoricalPredictive):
        raise InputTypeError(f"{what}: classification metrics need a CategoricalPredictive, got {type(pred).__name__}")
    return pred


def classification_metrics(pred: Predictive, labels: Tensor, n_bins: int = 15) -> dict[str, float]:
    """ACC, NLL (from the log-probabilities), Brier and ECE (top-label, ``n_bins`` equal bins)."""
    from bayeshead import metrics

    pred = _categorical(pred, "classification_metrics")
    return {
        "acc": metrics.accuracy(pred.probs, labels),
        "nll": metrics.nll(pred.probs, labels, log_probs=pred.log_probs),
        "brier": metrics.brier(pred.probs, labels),
        "ece": metrics.ece(pred.probs, labels, n_bins),
    }


def detection_metrics(test: Predictive, ood: Predictive) -> dict[str, float]:
    """Telling ``ood`` from ``test`` (OOD = positive): AUROC / AUPR / FPR95 per score; the
    mutual-information score only when both predictives have samples. Gaussian predictives go
    to :func:`regression_detection_metrics`."""
    from bayeshead import metrics

    if isinstance(test, GaussianPredictive) and isinstance(ood, GaussianPredictive):
        return regression_detection_metrics(test, ood)
    test, ood = _categorical(test, "detection_metrics"), _categorical(ood, "detection_metrics")
    with_samples = test.samples is not None and ood.samples is not None
    return metrics.ood_metrics(
        test.probs,
        ood.probs,
        test.samples if with_samples else None,
        ood.samples if with_samples else None,
    )


def labelled_set_metrics(test: Predictive, ood: Predictive, labels: Tensor, n_bins: int = 15) -> dict[str, float]:
    """ACC, NLL, Brier, ECE on a labelled OOD set (for regression: :func:`regression_metrics`),
    and detection of it against the test set."""
    if isinstance(ood, GaussianPredictive):
        scores = {k: v for k, v in regression_metrics(ood, labels).items() if k != "calibration_curve"}
        return {**scores, **detection_metrics(test, ood)}
    return {**classification_metrics(ood, labels, n_bins), **detection_metrics(test, ood)}


def _gaussian(pred: Predictive, what: str) -> GaussianPredictive:
    if not isinstance(pred, GaussianPredictive):
        raise InputTypeError(f"{what}: regression metrics need a GaussianPredictive, got {type(pred).__name__}")
    return pred


def _shaped_targets(pred: GaussianPredictive, targets: Tensor) -> Tensor:
    targets = torch.as_tensor(targets)
    if not targets.is_floating_point():
        raise InputTypeError(f"regression targets must be floating point, got dtype {targets.dtype}")
    if targets.numel() != pred.mean.numel():
        raise UserInputError(
            f"{targets.numel()} targets for a predictive of shape {tuple(pred.mean.shape)}; pass one target "
            "per example and output"
        )
    return targets.to(torch.float64).reshape(pred.mean.shape)


def regression_metrics(pred: Predictive, targets: Tensor) -> dict[str, Any]:
    """:func:`bayeshead.metrics.regression.regression_metrics` of a Gaussian predictive (RMSE,
    MAE, Pearson, Spearman, NLL, CRPS, calibration error l1/l2, ``coverage_<p>``/``width_<p>``
    for p = 50, 90, 95) plus ``calibration_curve`` = {"expected", "observed"} at the quantile
    levels 0.01..0.99 (for the calibration figure)."""
    from bayeshead.metrics import regression as reg

    pred = _gaussian(pred, "regression_metrics")
    y = _shaped_targets(pred, targets)
    out: dict[str, Any] = reg.regression_metrics(pred.mean, pred.var, y)
    expected, observed = reg.calibration_curve(pred.mean, pred.var, y)
    out["calibration_curve"] = {"expected": expected.tolist(), "observed": observed.tolist()}
    return out


def regression_detection_metrics(test: Predictive, ood: Predictive) -> dict[str, float]:
    """Telling ``ood`` from ``test`` by the total predictive variance Σ_j v_j (``auroc_variance``,
    ``aupr_variance``, ``fpr95_variance``) and, when both predictives carry an epistemic part, by
    Σ_j epistemic_var_j (``auroc_epistemic``, ``aupr_epistemic``, ``fpr95_epistemic``); OOD positive."""
    from bayeshead.metrics import aupr, auroc, fpr_at_tpr
    from bayeshead.metrics.regression import variance_ood_metrics

    test, ood = _gaussian(test, "detection_metrics"), _gaussian(ood, "detection_metrics")
    out = variance_ood_metrics(test.var, ood.var)
    if test.epistemic_var is not None and ood.epistemic_var is not None:
        a = test.epistemic_var.double().reshape(test.mean.shape[0], -1).sum(1)
        b = ood.epistemic_var.double().reshape(ood.mean.shape[0], -1).sum(1)
        out.update(
            {"auroc_epistemic": auroc(a, b), "aupr_epistemic": aupr(a, b), "fpr95_epistemic": fpr_at_tpr(a, b, 0.95)}
        )
    return out


def evaluate(
    pred: Predictive, labels: Tensor, ood: Predictive | None = None, n_bins: int = 15
) -> dict[str, Any]:
    """Every test-set metric, OOD detection against ``ood`` (keys ``ood_*``) and the reliability
    bins; for a :class:`~bayeshead.types.GaussianPredictive` the regression metrics
    (:func:`regression_metrics`, with the calibration curve) and variance-based detection."""
    from bayeshead import metrics

    if isinstance(pred, GaussianPredictive):
        out = regression_metrics(pred, labels)
        if ood is not None:
            out.update({f"ood_{k}": v for k, v in regression_detection_metrics(pred, ood).items()})
        return out
    pred = _categorical(pred, "evaluate")
    out: dict[str, Any] = {
        **classification_metrics(pred, labels, n_bins),
        "aece": metrics.adaptive_ece(pred.probs, labels, n_bins),
        "aurc": metrics.aurc(pred.probs, labels),
    }
    if ood is not None:
        out.update({f"ood_{k}": v for k, v in detection_metrics(pred, ood).items()})
    bins = metrics.reliability_bins(pred.probs, labels, n_bins)
    out["reliability"] = {
        "edges": list(bins.edges),
        "counts": list(bins.counts),
        "mean_confidence": list(bins.mean_confidence),
        "accuracy": list(bins.accuracy),
    }
    return out


def per_example(pred: Predictive, labels: Tensor | None = None) -> dict[str, list[float]]:
    """Per-example values for paired comparisons between methods on the same examples:
    ``confidence`` (max probability) and, with labels, ``correct`` (0/1) and ``nll``. For a
    regression predictive: ``mean`` and ``var`` (first output; ``epistemic_var`` when present)
    and, with targets, ``target``, ``nll`` and ``squared_error`` (summed over outputs)."""
    if isinstance(pred, GaussianPredictive):
        return _regression_per_example(pred, labels)
    pred = _categorical(pred, "per_example")
    confidence, guess = pred.probs.max(dim=-1)
    out = {"confidence": confidence.tolist()}
    if labels is not None:
        labels = labels.long().to(guess.device)
        out["correct"] = (guess == labels).double().tolist()
        out["nll"] = pred.nll(labels).tolist()
    return out


def _regression_per_example(pred: GaussianPredictive, targets: Tensor | None) -> dict[str, list[float]]:
    out = {"mean": pred.mean[:, 0].tolist(), "var": pred.var[:, 0].tolist()}
    if pred.epistemic_var is not None:
        out["epistemic_var"] = pred.epistemic_var[:, 0].tolist()
    if targets is not None:
        y = _shaped_targets(pred, targets)
        out["target"] = y[:, 0].tolist()
        out["nll"] = pred.nll(y).tolist()
        out["squared_error"] = (y - pred.mean).pow(2).sum(-1).tolist()
    return out
