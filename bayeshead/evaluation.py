"""One evaluation path: a predictive in, metrics out -- used by ``bayeshead train``, the bench
runner and user code alike.

    predictive = predict_dataset(method.predict, test.texts, batch_size=64, seed=0)
    metrics = evaluate(predictive, test.labels, ood=predict_dataset(method.predict, ood_texts, 64, 0))

``predict`` is anything with the signature ``predict(texts, *, generator=...) -> Predictive``:
``BayesianModel.predict`` or any method's ``predict``. Metrics are computed in float64 from the
concatenated predictive (never as averages of batch means): ACC, NLL, Brier, ECE, adaptive ECE,
AURC, the reliability bins, and, with an OOD set, detection AUROC / AUPR / FPR95 for the
max-probability, entropy and (where the predictive has samples) mutual-information scores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from bayeshead.types import CategoricalPredictive, GaussianPredictive, Predictive

__all__ = [
    "predict_dataset",
    "evaluate",
    "classification_metrics",
    "detection_metrics",
    "labelled_set_metrics",
    "per_example",
]


@torch.no_grad()
def predict_dataset(
    predict: Callable[..., Predictive], texts: Sequence[str], batch_size: int, seed: int = 0
) -> Predictive:
    """The predictive over ``texts`` in batches of ``batch_size``, concatenated in float64, with
    one seeded generator for the whole pass (Monte-Carlo predictives are reproducible)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    texts = list(texts)
    if not texts:
        raise ValueError("predict_dataset: no texts to predict (an empty split?)")
    generator = torch.Generator().manual_seed(seed)
    parts = [
        predict(texts[start : start + batch_size], generator=generator).double().to("cpu")
        for start in range(0, len(texts), batch_size)
    ]
    kind = type(parts[0])
    if any(type(p) is not kind for p in parts):
        raise TypeError("predict returned predictives of different kinds for different batches")
    return kind.cat(parts)  # type: ignore[attr-defined]


def _categorical(pred: Predictive, what: str) -> CategoricalPredictive:
    if not isinstance(pred, CategoricalPredictive):
        raise TypeError(f"{what}: classification metrics need a CategoricalPredictive, got {type(pred).__name__}")
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
    mutual-information score only when both predictives have samples."""
    from bayeshead import metrics

    test, ood = _categorical(test, "detection_metrics"), _categorical(ood, "detection_metrics")
    with_samples = test.samples is not None and ood.samples is not None
    return metrics.ood_metrics(
        test.probs,
        ood.probs,
        test.samples if with_samples else None,
        ood.samples if with_samples else None,
    )


def labelled_set_metrics(test: Predictive, ood: Predictive, labels: Tensor, n_bins: int = 15) -> dict[str, float]:
    """ACC, NLL, Brier, ECE on a labelled OOD set, and detection of it against the test set."""
    return {**classification_metrics(ood, labels, n_bins), **detection_metrics(test, ood)}


def evaluate(
    pred: Predictive, labels: Tensor, ood: Predictive | None = None, n_bins: int = 15
) -> dict[str, Any]:
    """Every test-set metric, OOD detection against ``ood`` (keys ``ood_*``) and the reliability bins."""
    from bayeshead import metrics

    if isinstance(pred, GaussianPredictive):
        raise TypeError("evaluate: regression predictives are scored by bayeshead.metrics.regression")
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
    ``confidence`` (max probability) and, with labels, ``correct`` (0/1) and ``nll``."""
    pred = _categorical(pred, "per_example")
    confidence, guess = pred.probs.max(dim=-1)
    out = {"confidence": confidence.tolist()}
    if labels is not None:
        labels = labels.long().to(guess.device)
        out["correct"] = (guess == labels).double().tolist()
        out["nll"] = pred.nll(labels).tolist()
    return out
