"""Out-of-distribution detection with OOD as the positive class.

A detector assigns each example a score, higher meaning "more likely OOD"; it is evaluated on
in-distribution (ID, negative) and OOD (positive) examples by AUROC, AUPR (average precision)
and the false-positive rate at 95% true-positive rate. The scores come from the predictive:
``maxprob`` = 1 - max_c p_c (the baseline of Hendrycks & Gimpel 2017), ``entropy`` =
H[p] = -sum_c p_c log p_c, and, with posterior samples, ``mi`` = the mutual information
H[mean_s p_s] - mean_s H[p_s] (Houlsby et al. 2011; Gal 2016).

Ties between scores are handled as in scikit-learn: a threshold never separates equal scores,
so tied examples enter the ROC and precision-recall curves together.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bayeshead.errors import UserInputError
from bayeshead.metrics._validation import check_probs, check_samples, check_scores

__all__ = ["ood_scores", "auroc", "aupr", "fpr_at_tpr", "ood_metrics"]


def _entropy(probs: Tensor) -> Tensor:
    """-sum_c p_c log p_c along the last dimension, with 0 log 0 = 0."""
    return -torch.special.xlogy(probs, probs).sum(dim=-1)


def _scores_and_labels(id_scores: Tensor, ood_scores: Tensor) -> tuple[Tensor, Tensor]:
    negatives = check_scores(id_scores, "id_scores")
    positives = check_scores(ood_scores, "ood_scores").to(negatives.device)
    labels = torch.cat(
        [
            torch.zeros(negatives.numel(), dtype=torch.float64, device=negatives.device),
            torch.ones(positives.numel(), dtype=torch.float64, device=negatives.device),
        ]
    )
    return torch.cat([negatives, positives]), labels


def _curve_points(scores: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """True and false positives counted above each distinct threshold, highest first."""
    sorted_scores, order = torch.sort(scores, descending=True, stable=True)
    true_positives = torch.cumsum(labels[order], 0)
    # The last position of every run of equal scores: thresholds sit between distinct scores.
    last = torch.ones_like(sorted_scores, dtype=torch.bool)
    last[:-1] = sorted_scores[1:] != sorted_scores[:-1]
    positions = torch.nonzero(last).flatten()
    tps = true_positives[positions]
    fps = (positions + 1).to(torch.float64) - tps
    return tps, fps


def ood_scores(probs: Tensor, samples: Tensor | None = None) -> dict[str, Tensor]:
    """Per-example OOD scores (higher = more OOD) from predictive probabilities (N, C).

    ``maxprob``: 1 - max_c p_c (Hendrycks & Gimpel 2017). ``entropy``: -sum_c p_c log p_c.
    ``mi`` (only with per-sample probabilities ``samples`` (S, N, C)): the mutual information
    H[mean_s p_s] - mean_s H[p_s] (Houlsby et al. 2011), computed from the samples alone and
    clamped at 0 against rounding. Returns float64 tensors of shape (N,).
    """
    p = check_probs(probs)
    scores = {"maxprob": 1.0 - p.max(dim=1).values, "entropy": _entropy(p)}
    if samples is not None:
        s = check_samples(samples, p.shape[0], p.shape[1], "samples").to(p.device)
        scores["mi"] = (_entropy(s.mean(dim=0)) - _entropy(s).mean(dim=0)).clamp_min(0.0)
    return scores


def auroc(id_scores: Tensor, ood_scores: Tensor) -> float:
    """Area under the ROC curve of detecting OOD (positive) against ID (negative) examples.

    Computed by the rank-sum (Mann-Whitney U) formula: with R the sum of the ranks of the n_ood
    OOD scores among all scores (ties get their average rank),
    AUROC = (R - n_ood (n_ood + 1) / 2) / (n_id n_ood) = P(s_ood > s_id) + P(s_ood = s_id) / 2.
    All scores equal gives 0.5; perfect separation gives 1.
    """
    scores, labels = _scores_and_labels(id_scores, ood_scores)
    n_pos = float(labels.sum())
    n_neg = labels.numel() - n_pos
    _, inverse, counts = torch.unique(scores, sorted=True, return_inverse=True, return_counts=True)
    counts = counts.to(torch.float64)
    average_rank = torch.cumsum(counts, 0) - (counts - 1.0) / 2.0  # 1-based ranks
    rank_sum = float((average_rank[inverse] * labels).sum())
    return (rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)


def aupr(id_scores: Tensor, ood_scores: Tensor) -> float:
    """Area under the precision-recall curve of detecting OOD as the positive class, as
    average precision (scikit-learn's ``average_precision_score``):
    AP = sum_k (R_k - R_{k-1}) P_k over the distinct score thresholds, highest first, where P_k
    and R_k are the precision and recall of flagging every example scoring >= the k-th
    threshold (R_0 = 0). Step-wise, without the trapezoidal interpolation.
    """
    scores, labels = _scores_and_labels(id_scores, ood_scores)
    tps, fps = _curve_points(scores, labels)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    recall_step = torch.diff(
        recall, prepend=torch.zeros(1, dtype=recall.dtype, device=recall.device)
    )
    return float((recall_step * precision).sum())


def fpr_at_tpr(id_scores: Tensor, ood_scores: Tensor, tpr: float = 0.95) -> float:
    """False-positive rate at the first threshold whose true-positive rate reaches ``tpr``.

    Over the thresholds at the distinct scores (as scikit-learn's ``roc_curve``), returns
    min {FPR(t) : TPR(t) >= tpr}: the fraction of ID examples scoring >= t at the highest
    threshold t that flags at least ``tpr`` of the OOD examples. No interpolation. With
    ``tpr=0.95`` this is the usual FPR95 (Hendrycks & Gimpel 2017; Liang et al. 2018).
    """
    if not 0.0 < tpr <= 1.0:
        raise UserInputError(f"tpr must be in (0, 1], got {tpr}")
    scores, labels = _scores_and_labels(id_scores, ood_scores)
    tps, fps = _curve_points(scores, labels)
    true_positive_rate = tps / tps[-1]
    false_positive_rate = fps / fps[-1]
    return float(false_positive_rate[true_positive_rate >= tpr].min())


def ood_metrics(
    id_predictive_probs: Tensor,
    ood_probs: Tensor,
    id_samples: Tensor | None = None,
    ood_samples: Tensor | None = None,
) -> dict[str, float]:
    """AUROC, AUPR and FPR95 of each OOD score, OOD being the positive class.

    Returns ``auroc_<score>``, ``aupr_<score>`` and ``fpr95_<score>`` for ``<score>`` in
    ``maxprob`` and ``entropy`` (see :func:`ood_scores`), and for ``mi`` when per-sample
    probabilities (S, N, C) are given for both the ID and the OOD examples.
    """
    if (id_samples is None) != (ood_samples is None):
        raise UserInputError(
            "pass per-sample probabilities for both the ID and the OOD examples (id_samples and "
            "ood_samples, each (S, N, C)) to get the mutual information, or for neither"
        )
    id_all = ood_scores(id_predictive_probs, id_samples)
    ood_all = ood_scores(ood_probs, ood_samples)
    id_classes = id_predictive_probs.shape[-1]
    if ood_probs.shape[-1] != id_classes:
        raise UserInputError(
            f"ID and OOD predictions must cover the same classes, got {id_classes} and "
            f"{ood_probs.shape[-1]} columns"
        )
    out: dict[str, float] = {}
    for name, id_score in id_all.items():
        out[f"auroc_{name}"] = auroc(id_score, ood_all[name])
        out[f"aupr_{name}"] = aupr(id_score, ood_all[name])
        out[f"fpr95_{name}"] = fpr_at_tpr(id_score, ood_all[name], 0.95)
    return out
