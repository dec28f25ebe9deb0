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

from bayeshead.metrics.calibration import ReliabilityBins

__all__ = ["reliability_diagram", "comparison_figure"]

_DEFAULT_METRICS = ("acc", "ece", "nll")
_LABELS = {"acc": "ACC", "ece": "ECE", "nll": "NLL", "brier": "Brier", "aurc": "AURC"}


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

    Top panel: the accuracy of each non-empty bin as a bar over the bin's width, the gap to the
    bin's mean confidence shaded, and the diagonal of perfect calibration; the ECE is in the
    title. Bottom panel: the number of examples per bin.
    """
    figure_class, canvas_class = _figure_classes()
    if bins.total == 0:
        raise ValueError("the reliability bins hold no examples; nothing to draw")
    lefts = list(bins.edges[:-1])
    widths = [right - left for left, right in zip(bins.edges[:-1], bins.edges[1:], strict=True)]
    filled = [i for i, count in enumerate(bins.counts) if count > 0]

    figure = figure_class(figsize=(5.0, 6.0))
    grid = figure.add_gridspec(2, 1, height_ratios=(3, 1), hspace=0.08)
    top = figure.add_subplot(grid[0])
    bottom = figure.add_subplot(grid[1], sharex=top)

    top.bar(
        [lefts[i] for i in filled],
        [bins.accuracy[i] for i in filled],
        width=[widths[i] for i in filled],
        align="edge",
        color="tab:blue",
        edgecolor="black",
        linewidth=0.5,
        label="accuracy",
    )
    top.bar(
        [lefts[i] for i in filled],
        [abs(bins.mean_confidence[i] - bins.accuracy[i]) for i in filled],
        bottom=[min(bins.mean_confidence[i], bins.accuracy[i]) for i in filled],
        width=[widths[i] for i in filled],
        align="edge",
        color="tab:red",
        alpha=0.3,
        edgecolor="tab:red",
        hatch="//",
        label="gap to confidence",
    )
    top.plot([0.0, 1.0], [0.0, 1.0], linestyle="--", color="gray", label="perfect calibration")
    top.set_xlim(0.0, 1.0)
    top.set_ylim(0.0, 1.0)
    top.set_ylabel("accuracy")
    top.set_title(f"{title}\nECE = {bins.ece:.4f} (N = {bins.total}, {bins.n_bins} bins)")
    top.legend(loc="upper left", fontsize="small")
    top.tick_params(labelbottom=False)

    bottom.bar(
        lefts,
        list(bins.counts),
        width=widths,
        align="edge",
        color="gray",
        edgecolor="black",
        linewidth=0.5,
    )
    bottom.set_xlabel("confidence (max probability)")
    bottom.set_ylabel("count")
    return _save(figure, canvas_class, path)


def _metric_value(row: Mapping[str, Any], metric: str, method: str) -> tuple[float, float]:
    if metric in row:
        mean = row[metric]
    elif f"{metric}_mean" in row:
        mean = row[f"{metric}_mean"]
    else:
        raise ValueError(
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
) -> Path:
    """Write a bar chart comparing methods on ``metrics`` (ACC, ECE, NLL by default) as a PNG at
    ``path`` and return the path.

    Each row is a mapping with ``"method"`` and, per metric ``m``, its mean under ``m`` or
    ``m + "_mean"`` and optionally its standard deviation under ``m + "_std"`` (drawn as an
    error bar; over seeds, say). One panel per metric, since the metrics have different scales,
    with one bar per method in the same colour across panels. A NaN mean is drawn as "n/a".
    """
    figure_class, canvas_class = _figure_classes()
    if not rows:
        raise ValueError("comparison_figure needs at least one row (one method)")
    if not metrics:
        raise ValueError("comparison_figure needs at least one metric")
    methods = []
    for index, row in enumerate(rows):
        if "method" not in row:
            raise ValueError(
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
    figure = figure_class(figsize=(min(width, 30.0), 4.0), layout="constrained")
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
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
    if title:
        figure.suptitle(title)
    return _save(figure, canvas_class, path)
