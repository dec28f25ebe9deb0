"""Metrics of Gaussian regression predictions, computed in float64 on torch tensors.

Inputs are the predictive ``mean`` and variance ``var`` and the ``targets``, each (N,) or (N, k)
(one shape for all three; ``var`` > 0). With k > 1 outputs, the point and interval metrics
average over all N·k (example, output) entries, the NLL sums over outputs per example (the
joint density of independent outputs) and averages over examples, and the correlations are
computed per output and averaged. Results are plain Python floats.

* point accuracy: :func:`rmse`, :func:`mae`, :func:`pearson`, :func:`spearman`;
* proper scores: :func:`gaussian_nll`, :func:`crps_gaussian` (Gneiting & Raftery 2007);
* intervals: :func:`interval_coverage` (coverage and mean width of central intervals);
* calibration: :func:`calibration_curve`, :func:`regression_calibration_error`
  (Kuleshov, Fenner & Ermon 2018, "Accurate Uncertainties for Deep Learning Using Calibrated
  Regression");
* OOD: :func:`variance_ood_metrics` (AUROC, AUPR, FPR95 of the predictive variance as the OOD
  score, via :mod:`bayeshead.metrics.ood`);
* :func:`regression_metrics`: all of the above that need no OOD data, in one dict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from bayeshead.errors import InputTypeError, UserInputError
from bayeshead.metrics.ood import aupr, auroc, fpr_at_tpr

__all__ = [
    "INTERVAL_LEVELS",
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

#: The central-interval probabilities reported by :func:`regression_metrics`.
INTERVAL_LEVELS = (0.5, 0.9, 0.95)
_DEFAULT_QUANTILES = tuple(j / 100 for j in range(1, 100))  # 0.01, ..., 0.99


def _as_float64(value: object, name: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise InputTypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}; convert it with torch.as_tensor")
    if not value.is_floating_point():
        raise InputTypeError(f"{name} must be floating point (real-valued regression values), got dtype {value.dtype}")
    if value.dim() not in (1, 2) or value.shape[0] == 0:
        raise UserInputError(f"{name} must have shape (N,) or (N, k) with N >= 1, got {tuple(value.shape)}")
    tensor = value.detach().to(torch.float64)
    if not torch.isfinite(tensor).all():
        row = int((~torch.isfinite(tensor)).reshape(tensor.shape[0], -1).any(1).nonzero()[0])
        raise UserInputError(f"{name} contains NaN or inf (first at row {row}); fix or drop those examples")
    return tensor.reshape(tensor.shape[0], -1)


def _check_pair(mean: object, targets: object) -> tuple[Tensor, Tensor]:
    m, y = _as_float64(mean, "mean"), _as_float64(targets, "targets")
    if m.shape != y.shape:
        raise UserInputError(
            f"mean and targets must have one shape (N,) or (N, k), got {tuple(mean.shape)} and "  # type: ignore[union-attr]
            f"{tuple(targets.shape)}; pass targets shaped like the predictive mean"  # type: ignore[union-attr]
        )
    return m, y.to(m.device)


def _check_gaussian(mean: object, var: object, targets: object) -> tuple[Tensor, Tensor, Tensor]:
    m, y = _check_pair(mean, targets)
    v = _as_float64(var, "var").to(m.device)
    if v.shape != m.shape:
        raise UserInputError(f"var must have the shape of mean {tuple(m.shape)}, got {tuple(var.shape)}")  # type: ignore[union-attr]
    if (v <= 0).any():
        row = int((v <= 0).any(1).nonzero()[0])
        raise UserInputError(f"var must be > 0, but row {row} has {v[row].tolist()}; a predictive variance is positive")
    return m, v, y


def rmse(mean: Tensor, targets: Tensor) -> float:
    """√(mean((y − μ)²)) over all entries."""
    m, y = _check_pair(mean, targets)
    return float((y - m).pow(2).mean().sqrt())


def mae(mean: Tensor, targets: Tensor) -> float:
    """mean(|y − μ|) over all entries."""
    m, y = _check_pair(mean, targets)
    return float((y - m).abs().mean())


def _pearson_columns(a: Tensor, b: Tensor) -> Tensor:
    a = a - a.mean(0)
    b = b - b.mean(0)
    denom = a.pow(2).sum(0).sqrt() * b.pow(2).sum(0).sqrt()
    if (denom == 0).any():
        raise UserInputError("a correlation is undefined when the predictions or the targets are constant")
    return (a * b).sum(0) / denom


def _average_ranks(values: Tensor) -> Tensor:
    """1-based ranks of each column, ties sharing their average rank (scipy's 'average')."""
    ranks = torch.empty_like(values)
    for j in range(values.shape[1]):
        _, inverse, counts = torch.unique(values[:, j], sorted=True, return_inverse=True, return_counts=True)
        counts = counts.to(torch.float64)
        average = torch.cumsum(counts, 0) - (counts - 1.0) / 2.0
        ranks[:, j] = average[inverse]
    return ranks


def pearson(mean: Tensor, targets: Tensor) -> float:
    """Pearson's r = cov(μ, y) / (sd(μ)·sd(y)), per output, averaged over outputs."""
    m, y = _check_pair(mean, targets)
    if m.shape[0] < 2:
        raise UserInputError("a correlation needs at least 2 examples")
    return float(_pearson_columns(m, y).mean())


def spearman(mean: Tensor, targets: Tensor) -> float:
    """Spearman's ρ: Pearson's r of the average ranks (ties share their mean rank), per output,
    averaged over outputs."""
    m, y = _check_pair(mean, targets)
    if m.shape[0] < 2:
        raise UserInputError("a correlation needs at least 2 examples")
    return float(_pearson_columns(_average_ranks(m), _average_ranks(y)).mean())


def gaussian_nll(mean: Tensor, var: Tensor, targets: Tensor) -> float:
    """(1/N)·Σ_n Σ_j ½[log 2π + log v_nj + (y_nj − μ_nj)²/v_nj]: the mean negative log density."""
    m, v, y = _check_gaussian(mean, var, targets)
    return float((0.5 * (math.log(2 * math.pi) + v.log() + (y - m).pow(2) / v)).sum(1).mean())


def crps_gaussian(mean: Tensor, var: Tensor, targets: Tensor) -> float:
    """Mean CRPS of N(μ, σ²) at y (Gneiting & Raftery 2007, closed form), over all entries:

        CRPS = σ·[z·(2Φ(z) − 1) + 2φ(z) − 1/√π],   z = (y − μ)/σ,

    where CRPS(F, y) = ∫ (F(x) − 1{x ≥ y})² dx. Same units as y; 0 is perfect."""
    m, v, y = _check_gaussian(mean, var, targets)
    sigma = v.sqrt()
    z = (y - m) / sigma
    pdf = torch.exp(-0.5 * z.pow(2)) / math.sqrt(2 * math.pi)
    crps = sigma * (z * (2.0 * torch.special.ndtr(z) - 1.0) + 2.0 * pdf - 1.0 / math.sqrt(math.pi))
    return float(crps.mean())


def _check_level(level: float, name: str = "level") -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0.0 < float(level) < 1.0:
        raise UserInputError(f"{name} must be a probability strictly between 0 and 1, got {level!r}")
    return float(level)


def interval_coverage(mean: Tensor, var: Tensor, targets: Tensor, level: float = 0.9) -> tuple[float, float]:
    """(coverage, mean width) of the central ``level`` interval μ ± z·σ, z = Φ⁻¹((1 + level)/2):
    the fraction of entries with |y − μ| ≤ z·σ, and the mean of 2·z·σ."""
    p = _check_level(level)
    m, v, y = _check_gaussian(mean, var, targets)
    z = float(torch.special.ndtri(torch.tensor((1.0 + p) / 2.0, dtype=torch.float64)))
    half = z * v.sqrt()
    return float(((y - m).abs() <= half).double().mean()), float((2.0 * half).mean())


def _levels(levels: Sequence[float] | Tensor | None) -> Tensor:
    values = list(_DEFAULT_QUANTILES) if levels is None else [float(x) for x in levels]
    if not values:
        raise UserInputError("levels is empty; pass quantile levels in (0, 1), e.g. [0.1, 0.2, ..., 0.9]")
    for p in values:
        _check_level(p, "every quantile level")
    return torch.tensor(values, dtype=torch.float64)


def calibration_curve(
    mean: Tensor, var: Tensor, targets: Tensor, levels: Sequence[float] | Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """(expected, observed): for each quantile level p_j, the observed frequency
    p̂_j = (1/n)·#{entries with F(y) ≤ p_j}, F(y) = Φ((y − μ)/σ) the predictive CDF at the target
    (the probability integral transform; Kuleshov et al. 2018). A calibrated predictive has
    p̂_j ≈ p_j. Default levels: 0.01, 0.02, ..., 0.99. Both tensors are float64 (m,)."""
    expected = _levels(levels)
    m, v, y = _check_gaussian(mean, var, targets)
    pit = torch.special.ndtr((y - m) / v.sqrt()).flatten()
    observed = (pit.unsqueeze(0) <= expected.to(pit.device).unsqueeze(1)).double().mean(1)
    return expected, observed.cpu()


def regression_calibration_error(
    mean: Tensor,
    var: Tensor,
    targets: Tensor,
    levels: Sequence[float] | Tensor | None = None,
    norm: str = "l1",
) -> float:
    """Miscalibration over quantile levels (Kuleshov et al. 2018), from :func:`calibration_curve`:

    * ``"l2"``: Kuleshov's cal = (1/m)·Σ_j (p_j − p̂_j)² (weights w_j = 1/m);
    * ``"l1"`` (default): (1/m)·Σ_j |p_j − p̂_j|, the mean gap between the curve and the diagonal
      (in the units of a coverage, comparable to a classification ECE)."""
    if norm not in ("l1", "l2"):
        raise UserInputError(f"norm must be 'l1' or 'l2', got {norm!r}")
    expected, observed = calibration_curve(mean, var, targets, levels)
    gap = expected - observed
    return float(gap.abs().mean() if norm == "l1" else gap.pow(2).mean())


def _variance_score(var: Tensor, name: str) -> Tensor:
    return _as_float64(var, name).sum(1)


def variance_ood_metrics(id_var: Tensor, ood_var: Tensor) -> dict[str, float]:
    """OOD detection by the total predictive variance Σ_j v_j (higher = more OOD; OOD is the
    positive class): ``auroc_variance``, ``aupr_variance``, ``fpr95_variance``."""
    id_score, ood_score = _variance_score(id_var, "id_var"), _variance_score(ood_var, "ood_var")
    if (id_score <= 0).any() or (ood_score <= 0).any():
        raise UserInputError("predictive variances must be > 0")
    return {
        "auroc_variance": auroc(id_score, ood_score),
        "aupr_variance": aupr(id_score, ood_score),
        "fpr95_variance": fpr_at_tpr(id_score, ood_score, 0.95),
    }


def regression_metrics(
    mean: Tensor, var: Tensor, targets: Tensor, levels: Sequence[float] = INTERVAL_LEVELS
) -> dict[str, float]:
    """RMSE, MAE, Pearson, Spearman, NLL, CRPS, calibration error (l1 and l2), and the coverage
    and mean width of each central interval in ``levels`` (keys ``coverage_90``, ``width_90``, ...)."""
    _check_gaussian(mean, var, targets)
    out = {
        "rmse": rmse(mean, targets),
        "mae": mae(mean, targets),
        "pearson": pearson(mean, targets),
        "spearman": spearman(mean, targets),
        "nll": gaussian_nll(mean, var, targets),
        "crps": crps_gaussian(mean, var, targets),
        "calibration_error": regression_calibration_error(mean, var, targets),
        "calibration_error_l2": regression_calibration_error(mean, var, targets, norm="l2"),
    }
    for level in levels:
        coverage, width = interval_coverage(mean, var, targets, level)
        tag = f"{round(100 * level):d}"
        out[f"coverage_{tag}"] = coverage
        out[f"width_{tag}"] = width
    return out
