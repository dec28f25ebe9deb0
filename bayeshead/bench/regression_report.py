"""The regression part of a bench report: table columns, OOD-set columns and figures.

A run is a regression run when its metrics hold ``rmse`` (written by
:func:`bayeshead.evaluation.regression_metrics`). For a (task, method) over seeds:

* the table reports RMSE, Spearman, Pearson, NLL, CRPS, the coverage and mean width of the
  central 90 % interval, the calibration error and OOD AUROC by predictive variance;
* the calibration curve pools seeds by averaging the observed coverage at each quantile level
  (every seed scores the same test examples, so the average is the pooled frequency);
* predicted vs true is drawn from the lowest seed's per-example means, variances and targets.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bayeshead.errors import UserInputError

__all__ = [
    "REGRESSION_COLUMNS",
    "REGRESSION_OOD_SET_COLUMNS",
    "REGRESSION_EXTRA_KEYS",
    "is_regression_run",
    "pooled_calibration_curve",
    "write_regression_figures",
]

#: (key in the run record or its metrics, column title, decimals)
REGRESSION_COLUMNS: list[tuple[str, str, int]] = [
    ("rmse", "RMSE ↓", 3),
    ("spearman", "Spearman ↑", 3),
    ("pearson", "Pearson ↑", 3),
    ("nll", "NLL ↓", 3),
    ("crps", "CRPS ↓", 3),
    ("coverage_90", "cov. 90% (→0.90)", 3),
    ("width_90", "width 90%", 2),
    ("calibration_error", "cal. error ↓", 3),
    ("ood_auroc_variance", "OOD AUROC ↑", 3),
    ("train_seconds", "train s", 0),
    ("predict_seconds", "predict s", 1),
]

#: metrics of each labelled OOD set of a regression suite, as (key after "<set>/", column title)
REGRESSION_OOD_SET_COLUMNS: list[tuple[str, str]] = [
    ("spearman", "Spearman"),
    ("nll", "NLL"),
    ("coverage_90", "cov. 90%"),
    ("auroc_variance", "AUROC (variance)"),
]

#: further aggregated keys (in results.csv, not in the Markdown table)
REGRESSION_EXTRA_KEYS = [
    "mae", "coverage_50", "width_50", "coverage_95", "width_95", "calibration_error_l2",
    "ood_auroc_epistemic", "ood_aupr_variance", "ood_fpr95_variance",
]


def is_regression_run(record: dict[str, Any]) -> bool:
    return "rmse" in record.get("metrics", {})


def pooled_calibration_curve(runs: Sequence[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(expected, observed) quantile coverage averaged over ``runs`` (seeds of one method)."""
    curves = [run["metrics"].get("calibration_curve") for run in runs]
    if any(c is None for c in curves):
        raise UserInputError("a regression run lacks metrics['calibration_curve']; re-run it with this bayeshead version")
    expected = curves[0]["expected"]
    if any(c["expected"] != expected for c in curves):
        raise UserInputError("runs of one method use different quantile levels; cannot pool their calibration curves")
    observed = [statistics.fmean(values) for values in zip(*(c["observed"] for c in curves), strict=True)]
    return torch.tensor(expected, dtype=torch.float64), torch.tensor(observed, dtype=torch.float64)


def write_regression_figures(
    runs: Sequence[dict[str, Any]], methods: Sequence[str], out_dir: Path, task: str | None
) -> dict[str, Path]:
    """``calibration[-<task>].png`` (every method's pooled curve), and per method
    ``calibration/[<task>/]<method>.png`` and ``predicted_vs_true/[<task>/]<method>.png``."""
    from bayeshead.bench.regression_plots import calibration_curve_plot, predicted_vs_true_plot
    from bayeshead.bench.report import slug

    written: dict[str, Path] = {}
    where = f" on {task}" if task else ""
    prefix = f"{task}/" if task else ""
    curves = {}
    for method in methods:
        group = [r for r in runs if r["method"] == method and r.get("task") == task]
        seeds = ", ".join(str(r["seed"]) for r in sorted(group, key=lambda r: r["seed"]))
        curves[method] = pooled_calibration_curve(group)
        folder = out_dir / "calibration" / task if task else out_dir / "calibration"
        folder.mkdir(parents=True, exist_ok=True)
        written[f"calibration:{prefix}{method}"] = calibration_curve_plot(
            {method: curves[method]}, folder / f"{slug(method)}.png", title=f"{method}{where} (seeds {seeds})"
        )
        first = min(group, key=lambda r: r["seed"])
        test = (first.get("per_example") or {}).get("test") or {}
        if {"mean", "var", "target"} <= set(test):
            folder = out_dir / "predicted_vs_true" / task if task else out_dir / "predicted_vs_true"
            folder.mkdir(parents=True, exist_ok=True)
            written[f"predicted_vs_true:{prefix}{method}"] = predicted_vs_true_plot(
                torch.tensor(test["mean"], dtype=torch.float64),
                torch.tensor(test["var"], dtype=torch.float64),
                torch.tensor(test["target"], dtype=torch.float64),
                folder / f"{slug(method)}.png",
                title=f"{method}{where} (seed {first['seed']})",
            )
    name = f"calibration-{task}.png" if task else "calibration.png"
    written[f"calibration:{task}" if task else "calibration"] = calibration_curve_plot(
        curves, out_dir / name, title=f"Regression calibration{where}"
    )
    return written
