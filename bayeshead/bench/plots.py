"""PNG figures of benchmark results: reliability diagrams and method comparisons.

matplotlib is an optional dependency (``pip install 'bayeshead[plot]'``) imported only when a
figure is drawn. Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas,
never through ``pyplot``, so no global state or GUI backend is touched.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bayeshead.errors import UserInputError
from bayeshead.metrics.calibration import ReliabilityBins

__all__ = ["reliability_diagram", "comparison_figure"]

_DEFAULT_METRICS = ("acc", "ece", "nll")
_LABELS = {
    "acc": "ACC",
    "ece": "ECE",
    "nll": "NLL",
    "brier": "Brier",
    "aurc": "AURC",
    "ood_auroc_maxprob": "OOD AUROC",
}


def _figure_classes() -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "bayeshead.bench.plots needs matplotlib, which is not installed: "
            "pip install 'bayeshead[plot]'"
        ) from error
    return Figure, FigureCanvasAgg


def _save(figure: Any, canvas_class: Any, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    canvas_class(figure)
    figure.savefig(target, format="png", dpi=100)
    return target


def reliability_diagram(
    bins: ReliabilityBins, path: str | os.PathLike[str], title: str = "Reliability diagram"
) -> Path:
    """Write a reliability diagram of ``bins`` (see :func:`bayeshead.metrics.reliability_bins`)
    as a PNG at ``path`` and return the path.

    Top panel, per non-empty bin b (equal width): the left half of the bin is a solid bar of
    height acc_b (the accuracy); the right half is an outlined, hatched box from the bin's mean
    confidence conf_b to acc_b, red when over-confident (conf_b > acc_b), green when
    under-confident; a black tick marks conf_b across the bin, and the dashed diagonal is perfect
    calibration. The two are never drawn on top of each other, so the accuracy is always the top
    of the solid bar. The title gives ECE = sum_b (n_b / N)|acc_b - conf_b|, N and the number of
    bins. Bottom panel: the number of examples per bin, each non-empty count written above its
    bar (small counts stay visible).
    """
    figure_class, canvas_class = _figure_classes()
    return _save(_reliability_figure(figure_class, bins, title), canvas_class, path)


def _reliability_figure(figure_class: Any, bins: ReliabilityBins, title: str) -> Any:
    """The figure of :func:`reliability_diagram` (top axis first, then the counts axis)."""
    if bins.total == 0:
        raise UserInputError("the reliability bins hold no examples; nothing to draw")
    lefts = list(bins.edges[:-1])
    widths = [right - left for left, right in zip(bins.edges[:-1], bins.edges[1:], strict=True)]
    filled = [i for i, count in enumerate(bins.counts) if count > 0]
    acc = [bins.accuracy[i] for i in filled]
    conf = [bins.mean_confidence[i] for i in filled]
    half = [widths[i] / 2 for i in filled]

    figure = figure_class(figsize=(5.0, 6.0))
    grid = figure.add_gridspec(2, 1, height_ratios=(3, 1), hspace=0.08)
    top = figure.add_subplot(grid[0])
    bottom = figure.add_subplot(grid[1], sharex=top)

    top.plot(
        [0.0, 1.0],
        [0.0, 1.0],
        linestyle="--",
        color="gray",
        linewidth=1,
        label="perfect calibration",
        zorder=1,
    )
    top.bar(
        [lefts[i] for i in filled],
        acc,
        width=half,
        align="edge",
        color="tab:blue",
        edgecolor="black",
        linewidth=0.5,
        label="accuracy",
        zorder=2,
    )
    for sign, colour, label in (
        (1, "tab:red", "gap: over-confident"),
        (-1, "tab:green", "gap: under-confident"),
    ):
        chosen = [j for j in range(len(filled)) if sign * (conf[j] - acc[j]) > 0]
        if chosen:
            top.bar(
                [lefts[filled[j]] + half[j] for j in chosen],
                [abs(conf[j] - acc[j]) for j in chosen],
                bottom=[min(conf[j], acc[j]) for j in chosen],
                width=[half[j] for j in chosen],
                align="edge",
                fill=False,
                edgecolor=colour,
                hatch="////",
                linewidth=1.0,
                label=label,
                zorder=3,
            )
    top.hlines(
        conf,
        [lefts[i] for i in filled],
        [lefts[i] + widths[i] for i in filled],
        colors="black",
        linewidth=1.5,
        label="mean confidence",
        zorder=4,
    )
    top.set_xlim(0.0, 1.0)
    top.set_ylim(0.0, 1.05)
    top.set_ylabel("accuracy (bars) / mean confidence (ticks)")
    top.set_title(
        f"{title}\nECE = {bins.ece:.4f}   (N = {bins.total}, {bins.n_bins} equal-width bins)",
        fontsize="medium",
    )
    top.legend(loc="upper left", fontsize="x-small")
    top.tick_params(labelbottom=False)

    bottom.bar(
        lefts,
        list(bins.counts),
        width=widths,
        align="edge",
        color="lightgray",
        edgecolor="black",
        linewidth=0.5,
    )
    peak = max(bins.counts)
    for i in filled:
        bottom.annotate(
            str(bins.counts[i]),
            (lefts[i] + widths[i] / 2, bins.counts[i]),
            xytext=(0, 1),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=6,
            rotation=90 if bins.counts[i] >= 1000 else 0,
        )
    bottom.set_ylim(0, peak * 1.35)
    bottom.set_xlabel("confidence (max probability)")
    bottom.set_ylabel("examples")
    return figure


def _metric_value(row: Mapping[str, Any], metric: str, method: str) -> tuple[float, float]:
    if metric in row:
        mean = row[metric]
    elif f"{metric}_mean" in row:
        mean = row[f"{metric}_mean"]
    else:
        raise UserInputError(
            f"comparison row for method {method!r} has no {metric!r} (or {metric + '_mean'!r}); "
            f"its keys are {sorted(row)}"
        )
    std = row.get(f"{metric}_std", 0.0)
    return float(mean), 0.0 if std is None else float(std)


def comparison_figure(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    metrics: Sequence[str] = _DEFAULT_METRICS,
    title: str | None = None,
    differences: Mapping[str, Mapping[str, Any]] | None = None,
    baseline: str | None = None,
) -> Path:
    """Write a bar chart comparing methods on ``metrics`` (ACC, ECE, NLL by default) as a PNG at
    ``path`` and return the path.

    Each row is a mapping with ``"method"`` and, per metric ``m``, its mean under ``m`` or
    ``m + "_mean"`` and optionally its standard deviation under ``m + "_std"`` (drawn as an
    error bar; over seeds, say). One panel per metric, since the metrics have different scales,
    with one bar per method in the same colour across panels. A NaN mean is drawn as "n/a".

    ``differences`` (method -> metric -> an object with ``estimate``, ``low`` and ``high``, e.g.
    :class:`bayeshead.metrics.PairedDifference`) adds a second row of panels: each method's
    difference to ``baseline`` as a point with its interval as an error bar, a line at 0, and
    the baseline itself at 0 without interval; a method or metric without a difference is
    left out of that panel.
    """
    figure_class, canvas_class = _figure_classes()
    if not rows:
        raise UserInputError("comparison_figure needs at least one row (one method)")
    if not metrics:
        raise UserInputError("comparison_figure needs at least one metric")
    methods = []
    for index, row in enumerate(rows):
        if "method" not in row:
            raise UserInputError(
                f"comparison row {index} has no 'method' key; its keys are {sorted(row)}"
            )
        methods.append(str(row["method"]))
    values = {
        m: [_metric_value(row, m, name) for row, name in zip(rows, methods, strict=True)]
        for m in metrics
    }

    from matplotlib import colormaps

    colours = [colormaps["tab10"](i % 10) for i in range(len(methods))]
    width = max(4.0, 0.45 * len(methods) + 1.5) * len(metrics)
    n_rows = 1 if differences is None else 2
    figure = figure_class(figsize=(min(width, 30.0), 4.0 * n_rows), layout="constrained")
    grid = figure.subplots(n_rows, len(metrics), squeeze=False)
    axes = grid[0]
    positions = list(range(len(methods)))
    for axis, metric in zip(axes, metrics, strict=True):
        means = [mean for mean, _ in values[metric]]
        stds = [std for _, std in values[metric]]
        shown = [i for i, mean in enumerate(means) if not math.isnan(mean)]
        axis.bar(
            [positions[i] for i in shown],
            [means[i] for i in shown],
            color=[colours[i] for i in shown],
            edgecolor="black",
            linewidth=0.5,
        )
        with_std = [i for i in shown if stds[i] > 0]
        if with_std:
            axis.errorbar(
                [positions[i] for i in with_std],
                [means[i] for i in with_std],
                yerr=[stds[i] for i in with_std],
                fmt="none",
                ecolor="black",
                capsize=3,
            )
        for i in set(range(len(methods))) - set(shown):
            axis.annotate("n/a", (positions[i], 0), ha="center", va="bottom", color="gray")
        axis.set_xticks(
            positions,
            methods,
            rotation=45 if len(methods) > 3 else 0,
            ha="right" if len(methods) > 3 else "center",
        )
        axis.set_title(_LABELS.get(metric, metric))
        axis.grid(axis="y", alpha=0.3)
    if differences is not None:
        for axis, metric in zip(grid[1], metrics, strict=True):
            _difference_panel(axis, metric, methods, colours, differences, baseline)
    if title:
        figure.suptitle(title)
    return _save(figure, canvas_class, path)


def _difference_panel(
    axis: Any,
    metric: str,
    methods: Sequence[str],
    colours: Sequence[Any],
    differences: Mapping[str, Mapping[str, Any]],
    baseline: str | None,
) -> None:
    """One metric's paired differences to the baseline: points with interval error bars."""
    axis.axhline(0.0, color="gray", linewidth=1, linestyle="--")
    for i, method in enumerate(methods):
        if method == baseline:
            axis.plot([i], [0.0], marker="D", color=colours[i], markeredgecolor="black")
            continue
        diff = differences.get(method, {}).get(metric)
        if diff is None:
            continue
        estimate, low, high = float(diff.estimate), float(diff.low), float(diff.high)
        axis.errorbar(
            [i],
            [estimate],
            yerr=[[estimate - low], [high - estimate]],
            fmt="o",
            color=colours[i],
            ecolor="black",
            capsize=4,
            markeredgecolor="black",
        )
    axis.set_xticks(
        range(len(methods)),
        methods,
        rotation=45 if len(methods) > 3 else 0,
        ha="right" if len(methods) > 3 else "center",
    )
    axis.set_xlim(-0.5, len(methods) - 0.5)
    label = _LABELS.get(metric, metric)
    level = next(
        (getattr(d, "confidence_level", None) for ds in differences.values() for d in ds.values()),
        None,
    )
    interval = f", {level:.0%} interval" if level else ""
    against = f" vs {baseline}" if baseline else ""
    axis.set_title(f"Δ {label}{against}{interval}", fontsize="medium")
    axis.grid(axis="y", alpha=0.3)
