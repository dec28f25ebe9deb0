"""PNG figures of regression results: calibration curves and predicted vs true with intervals.

* :func:`calibration_curve_plot`: expected vs observed quantile coverage (Kuleshov et al. 2018),
  one line per method, the diagonal being perfect calibration;
* :func:`predicted_vs_true_plot`: predictive means against the targets, each with its central
  interval, the targets outside their interval marked.

Like :mod:`bayeshead.bench.plots`, figures are built on :class:`matplotlib.figure.Figure` with
the Agg canvas (no ``pyplot`` state); matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from bayeshead.bench.plots import _figure_classes, _save
from bayeshead.errors import InputTypeError, UserInputError
from bayeshead.metrics.regression import interval_coverage

__all__ = ["calibration_curve_plot", "predicted_vs_true_plot"]


def _curve(name: str, curve: tuple[Tensor, Tensor]) -> tuple[list[float], list[float]]:
    if not (isinstance(curve, tuple) and len(curve) == 2):
        raise InputTypeError(
            f"curve {name!r} must be the (expected, observed) pair of bayeshead.metrics.calibration_curve, "
            f"got {type(curve).__name__}"
        )
    expected, observed = (torch.as_tensor(c, dtype=torch.float64).flatten() for c in curve)
    if expected.shape != observed.shape or expected.numel() == 0:
        raise UserInputError(
            f"curve {name!r}: expected and observed must be non-empty and of one length, got "
            f"{expected.numel()} and {observed.numel()}"
        )
    order = torch.argsort(expected)
    return expected[order].tolist(), observed[order].tolist()


def calibration_curve_plot(
    curves: Mapping[str, tuple[Tensor, Tensor]],
    path: str | os.PathLike[str],
    title: str = "Regression calibration",
) -> Path:
    """Write the calibration curves ``{method: (expected, observed)}`` (each from
    :func:`bayeshead.metrics.calibration_curve`) as a PNG at ``path`` and return the path.

    x: the quantile level p; y: the observed fraction of targets below the predictive's
    p-quantile. A curve flatter than the diagonal (above it at low p, below it at high p) means
    intervals too narrow (over-confident); a steeper one, intervals too wide; a curve shifted
    up or down, a biased mean. The legend gives each method's mean |p − p̂| over the plotted
    levels."""
    if not curves:
        raise UserInputError("curves is empty; pass {method name: calibration_curve(mean, var, targets)}")
    figure_class, canvas_class = _figure_classes()
    figure = figure_class(figsize=(5.2, 5.0))
    axes = figure.add_subplot(1, 1, 1)
    axes.plot([0, 1], [0, 1], linestyle="--", color="0.4", linewidth=1.0, label="perfect calibration")
    markers = "osD^vP*X"
    for index, (name, curve) in enumerate(curves.items()):
        expected, observed = _curve(name, curve)
        gap = sum(abs(e - o) for e, o in zip(expected, observed, strict=True)) / len(expected)
        axes.plot(
            expected, observed, marker=markers[index % len(markers)], markevery=max(1, len(expected) // 10),
            markersize=4, linewidth=1.5, label=f"{name} (cal. error {gap:.3f})",
        )
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_aspect("equal")
    axes.set_xlabel("expected quantile level p")
    axes.set_ylabel("observed frequency of y ≤ predicted p-quantile")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    return _save(figure, canvas_class, path)


def _column(value: Tensor, name: str, output: int) -> Tensor:
    tensor = torch.as_tensor(value).detach().to(torch.float64)
    if tensor.dim() == 1:
        return tensor
    if tensor.dim() != 2 or not 0 <= output < tensor.shape[1]:
        raise UserInputError(f"{name} must be (N,) or (N, k) with output < k, got shape {tuple(tensor.shape)} and output={output}")
    return tensor[:, output]


def predicted_vs_true_plot(
    mean: Tensor,
    var: Tensor,
    targets: Tensor,
    path: str | os.PathLike[str],
    *,
    level: float = 0.9,
    output: int = 0,
    max_points: int = 400,
    seed: int = 0,
    title: str = "Predicted vs true",
) -> Path:
    """Write a PNG at ``path`` of the predictive mean (y axis) against the target (x axis) for
    one ``output``, each point with its central ``level`` interval μ ± Φ⁻¹((1 + level)/2)·σ as an
    error bar; points whose interval misses the target are red. At most ``max_points`` points
    are drawn (a seeded random subset); the title's coverage and mean width use all of them."""
    m, v, y = _column(mean, "mean", output), _column(var, "var", output), _column(targets, "targets", output)
    coverage, width = interval_coverage(m, v, y, level)
    z = float(torch.special.ndtri(torch.tensor((1.0 + level) / 2.0, dtype=torch.float64)))
    half = z * v.sqrt()
    keep = torch.arange(m.numel())
    if m.numel() > max_points:
        keep = torch.randperm(m.numel(), generator=torch.Generator().manual_seed(seed))[:max_points]
    m, half, y = m[keep], half[keep], y[keep]
    covered = (y - m).abs() <= half
    figure_class, canvas_class = _figure_classes()
    figure = figure_class(figsize=(5.6, 5.0))
    axes = figure.add_subplot(1, 1, 1)
    low = float(torch.minimum(y.min(), (m - half).min()))
    high = float(torch.maximum(y.max(), (m + half).max()))
    pad = 0.03 * (high - low if high > low else 1.0)
    for mask, colour, label in ((covered, "tab:blue", "inside"), (~covered, "tab:red", "outside")):
        if bool(mask.any()):
            axes.errorbar(
                y[mask].tolist(), m[mask].tolist(), yerr=half[mask].tolist(), fmt="o", markersize=2.5,
                color=colour, ecolor=colour, elinewidth=0.6, alpha=0.55, capsize=0,
                label=f"target {label} its {100 * level:g}% interval ({int(mask.sum())})",
            )
    axes.plot([low - pad, high + pad], [low - pad, high + pad], linestyle="--", color="0.3", linewidth=1.0, label="y = μ")
    axes.set_xlim(low - pad, high + pad)
    axes.set_ylim(low - pad, high + pad)
    axes.set_xlabel("true target y")
    axes.set_ylabel(f"predicted mean μ ± {100 * level:g}% interval")
    shown = "" if keep.numel() == mean.shape[0] else f", {keep.numel()} of {mean.shape[0]} shown"
    axes.set_title(f"{title}\n{100 * level:g}% coverage {coverage:.3f}, mean width {width:.3g}{shown}", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    return _save(figure, canvas_class, path)
