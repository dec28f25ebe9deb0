"""Aggregate run JSONs into mean ± std tables (Markdown, CSV) and figures (PNG).

One row per (task, method); means and standard deviations are over seeds (sample standard
deviation, ddof = 1; 0 for a single seed). Markdown has one table per task, and for a task with
labelled OOD sets (OBQA -> ARC / MMLU) a second table: ACC, ECE and detection AUROC per set.
Reliability diagrams pool the test predictions of all seeds of a (task, method) by summing the
per-bin counts, confidence sums and correct counts.

When every run of a task stores its per-example test outputs (``record["per_example"]``), the
report adds "Paired differences vs <baseline>": per method, the mean over shared seeds of
metric(method) − metric(baseline) for ACC, ECE, NLL and OOD AUROC with a 95% paired percentile
bootstrap interval over test (and OOD) examples (:func:`bayeshead.metrics.paired_bootstrap`);
the baseline is the task's first trained method (zero-shot rows come first) unless named. A QA
task with labelled OOD sets also gets "Paired OOD AUROC per OOD set": Δ AUROC on each set, with
the same bootstrap over test and that set's questions (:func:`paired_ood_sets`). Older run JSONs
get no such sections.
"""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bayeshead.bench.paths import inside, safe_name
from bayeshead.errors import UserInputError

__all__ = [
    "COLUMNS",
    "load_runs",
    "aggregate",
    "markdown_table",
    "write_csv",
    "pooled_bins",
    "write_report",
    "OOD_SET_COLUMNS",
    "ood_sets_table",
    "slug",
    "PAIRED_COLUMNS",
    "paired_differences",
    "paired_ood_sets",
    "paired_ood_table",
    "paired_table",
]

#: (key in the run record or its metrics, column title, decimals)
COLUMNS: list[tuple[str, str, int]] = [
    ("acc", "ACC ↑", 3),
    ("ece", "ECE ↓", 3),
    ("nll", "NLL ↓", 3),
    ("brier", "Brier ↓", 3),
    ("ood_auroc_maxprob", "OOD AUROC ↑", 3),
    ("train_seconds", "train s", 0),
    ("predict_seconds", "predict s", 1),
]

#: metrics of each labelled OOD set, as (key after "<set>/", column title suffix)
OOD_SET_COLUMNS: list[tuple[str, str]] = [
    ("acc", "ACC"),
    ("ece", "ECE"),
    ("auroc_maxprob", "AUROC"),
]

_EXTRA_KEYS = ["aece", "aurc", "ood_auroc_entropy", "ood_auroc_mi", "peak_memory_mb", "wall_seconds"]


def load_runs(directory: str | Path) -> list[dict[str, Any]]:
    """Every ``*.json`` run record under ``directory`` (recursively), in suite order (task, then
    method, as recorded in each run's ``suite_position``), else in path order."""
    paths = sorted(Path(directory).rglob("*.json"))
    runs = []
    for path in paths:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise UserInputError(f"{path}: not valid JSON ({err.msg}); delete or fix it") from None
        if isinstance(record, dict) and "method" in record and "metrics" in record:
            runs.append(record)
    if not runs:
        raise UserInputError(f"no run records (JSON with 'method' and 'metrics') under {directory}")
    runs.sort(key=_suite_order)  # stable: records without a suite position keep the path order
    return runs


def _suite_order(record: dict[str, Any]) -> tuple[float, float]:
    position = record.get("suite_position") or {}
    return (position.get("task", math.inf), position.get("method", math.inf))


def _value(record: dict[str, Any], key: str) -> float | None:
    value = record.get(key, record["metrics"].get(key))
    return None if value is None else float(value)


def _ood_set_keys(group: Sequence[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for run in group:
        keys += [k for k in run["metrics"] if "/" in k and k not in keys]
    return keys


def aggregate(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (task, method), in first-seen order: ``task`` (None for non-QA data),
    ``method``, ``seeds``, and ``<key>_mean`` / ``<key>_std`` for every metric present."""
    order: list[tuple[str | None, str]] = []
    groups: dict[tuple[str | None, str], list[dict[str, Any]]] = {}
    for run in runs:
        key = (run.get("task"), run["method"])
        if key not in groups:
            order.append(key)
        groups.setdefault(key, []).append(run)
    rows = []
    for task, method in order:
        group = groups[(task, method)]
        row: dict[str, Any] = {
            "task": task,
            "method": method,
            "seeds": sorted(r["seed"] for r in group),
        }
        for key in _aggregated_keys(group):
            values = [v for v in (_value(r, key) for r in group) if v is not None]
            if values:
                row[f"{key}_mean"] = statistics.fmean(values)
                row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def _aggregated_keys(group: Sequence[dict[str, Any]]) -> list[str]:
    """The table and extra keys of the group's kind (classification or regression), then its OOD-set keys."""
    from bayeshead.bench.regression_report import (
        REGRESSION_COLUMNS,
        REGRESSION_EXTRA_KEYS,
        is_regression_run,
    )

    if any(is_regression_run(r) for r in group):
        return [k for k, _, _ in REGRESSION_COLUMNS] + REGRESSION_EXTRA_KEYS + _EXTRA_KEYS + _ood_set_keys(group)
    return [k for k, _, _ in COLUMNS] + _EXTRA_KEYS + _ood_set_keys(group)


def _columns_for(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str, int]]:
    """:data:`COLUMNS`, or a regression suite's metrics (``REGRESSION_COLUMNS``) when its rows have RMSE."""
    from bayeshead.bench.regression_report import REGRESSION_COLUMNS

    return REGRESSION_COLUMNS if any("rmse_mean" in row for row in rows) else COLUMNS


def _cell(row: dict[str, Any], key: str, decimals: int) -> str:
    if f"{key}_mean" not in row:
        return "n/a"
    mean, std = row[f"{key}_mean"], row[f"{key}_std"]
    return (
        f"{mean:.{decimals}f} ± {std:.{decimals}f}"
        if len(row["seeds"]) > 1
        else f"{mean:.{decimals}f}"
    )


def _tasks(rows: Sequence[dict[str, Any]]) -> list[str | None]:
    seen: list[str | None] = []
    for row in rows:
        if row.get("task") not in seen:
            seen.append(row.get("task"))
    return seen


def _single_table(rows: Sequence[dict[str, Any]]) -> str:
    columns = [c for c in _columns_for(rows) if any(f"{c[0]}_mean" in row for row in rows)]
    header = "| method | " + " | ".join(title for _, title, _ in columns) + " |"
    lines = [header, "|---|" + "---:|" * len(columns)]
    for row in rows:
        lines.append(
            f"| {row['method']} | " + " | ".join(_cell(row, k, d) for k, _, d in columns) + " |"
        )
    return "\n".join(lines)


def ood_sets_table(rows: Sequence[dict[str, Any]]) -> str | None:
    """Method x (OOD set x {ACC, ECE, AUROC}) for rows of one task; None when it has no OOD sets."""
    sets: list[str] = []
    for row in rows:
        for key in row:
            name = key.split("/")[0]
            if "/" in key and name not in sets:
                sets.append(name)
    if not sets:
        return None
    set_columns = OOD_SET_COLUMNS
    if any("rmse_mean" in row for row in rows):
        from bayeshead.bench.regression_report import REGRESSION_OOD_SET_COLUMNS

        set_columns = REGRESSION_OOD_SET_COLUMNS
    titles = [f"{name} {title}" for name in sets for _, title in set_columns]
    lines = ["| method | " + " | ".join(titles) + " |", "|---|" + "---:|" * len(titles)]
    for row in rows:
        cells = [_cell(row, f"{name}/{key}", 3) for name in sets for key, _ in set_columns]
        lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The results table; with QA tasks, one ``### task`` section per task (plus its OOD table).
    Columns no row has are left out."""
    tasks = _tasks(rows)
    if tasks == [None]:
        ood = ood_sets_table(rows)  # labelled OOD sets of a data set without tasks (STS-B forum pairs)
        if ood is None:
            return _single_table(rows)
        score = "predictive variance" if any("rmse_mean" in row for row in rows) else "max-probability"
        intro = f"Labelled OOD sets (AUROC: the set against the test set, {score} score):"
        return "\n".join([_single_table(rows), "", intro, "", ood])
    parts = []
    for task in tasks:
        group = [row for row in rows if row.get("task") == task]
        parts += [f"### {task or 'other data'}", "", _single_table(group)]
        ood = ood_sets_table(group)
        if ood:
            score = "predictive variance" if any("rmse_mean" in row for row in group) else "max-probability"
            parts += ["", f"OOD sets scored by the {task} model (AUROC: the set against the {task} test set, {score} score):", "", ood]
        parts.append("")
    return "\n".join(parts).rstrip()


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    keys = sorted({k for row in rows for k in row if k not in ("task", "method", "seeds")})
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["task", "method", "seeds", *keys])
        for row in rows:
            writer.writerow(
                [
                    row.get("task") or "",
                    row["method"],
                    " ".join(map(str, row["seeds"])),
                    *(row.get(k, "") for k in keys),
                ]
            )
    return path


def pooled_bins(runs: Sequence[dict[str, Any]]):  # noqa: ANN201 - ReliabilityBins
    """Reliability bins of the union of the runs' test predictions."""
    from bayeshead.metrics import ReliabilityBins

    first = runs[0]["metrics"]["reliability"]
    n = len(first["counts"])
    counts = [0] * n
    conf_sum = [0.0] * n
    correct = [0.0] * n
    for run in runs:
        rel = run["metrics"]["reliability"]
        if rel["edges"] != first["edges"]:
            raise UserInputError("runs of one method use different reliability bins; cannot pool them")
        for b in range(n):
            c = rel["counts"][b]
            if c:
                counts[b] += c
                conf_sum[b] += c * rel["mean_confidence"][b]
                correct[b] += c * rel["accuracy"][b]
    return ReliabilityBins(
        edges=tuple(first["edges"]),
        counts=tuple(counts),
        mean_confidence=tuple(conf_sum[b] / counts[b] if counts[b] else math.nan for b in range(n)),
        accuracy=tuple(correct[b] / counts[b] if counts[b] else math.nan for b in range(n)),
    )


#: (metric key, column title, decimals) of the paired-differences table
PAIRED_COLUMNS: list[tuple[str, str, int]] = [
    ("acc", "Δ ACC", 3),
    ("ece", "Δ ECE", 3),
    ("nll", "Δ NLL", 3),
    ("ood_auroc_maxprob", "Δ OOD AUROC", 3),
]


def paired_differences(
    runs: Sequence[dict[str, Any]], baseline: str | None = None, **options: Any
) -> tuple[str, dict[str, dict[str, Any]]] | None:
    """Paired bootstrap differences of every method against ``baseline`` (default: the first
    trained method, so a suite's zero-shot rows are compared with it, not it with them) for runs of one task: ``(baseline, {method: {metric: PairedDifference}})``, or None
    when some run lacks ``per_example``. ``options`` go to
    :func:`bayeshead.metrics.paired_bootstrap` (``n_boot``, ``seed``, ...)."""
    from bayeshead.metrics.paired import has_per_example, paired_differences_from_records

    if not runs or not all(has_per_example(run) for run in runs):
        return None
    if any("confidence" not in run["per_example"]["test"] for run in runs):
        return None  # regression runs: the paired bootstrap compares classification metrics
    methods: list[str] = []
    for run in runs:
        if run["method"] not in methods:
            methods.append(run["method"])
    trained = [m for m in methods if any(r["method"] == m and r.get("method_kind") != "zero_shot" for r in runs)]
    base = baseline if baseline is not None else (trained or methods)[0]
    if base not in methods:
        raise UserInputError(
            f"paired baseline {base!r} is not among the methods of these runs: {methods}; "
            "pass one of them"
        )
    base_runs = [run for run in runs if run["method"] == base]
    out = {
        method: paired_differences_from_records(
            [run for run in runs if run["method"] == method], base_runs, **options
        )
        for method in methods
        if method != base
    }
    return base, out


def paired_ood_sets(
    runs: Sequence[dict[str, Any]], baseline: str | None = None, **options: Any
) -> tuple[str, dict[str, dict[str, Any]]] | None:
    """Δ OOD AUROC against ``baseline`` for each named OOD set of one QA task's runs (the
    ``per_example`` blocks besides ``test``, e.g. ``arc_easy`` scored by an OBQA model): the
    bootstrap of :func:`paired_differences` with that set as the OOD examples, so test and OOD
    questions are both resampled. ``(baseline, {method: {set: PairedDifference}})``, or None when
    the runs lack per-example outputs or share no named OOD set."""
    from bayeshead.metrics.paired import has_per_example

    if not runs or not all(has_per_example(run) for run in runs):
        return None
    names = [k for k in runs[0]["per_example"] if k not in ("test", "ood")]
    names = [k for k in names if all(isinstance(run["per_example"].get(k), dict) for run in runs)]
    base, out = None, {}
    for name in names:
        view = [{**run, "per_example": {"test": run["per_example"]["test"], "ood": run["per_example"][name]}} for run in runs]
        found = paired_differences(view, baseline, metrics=("ood_auroc_maxprob",), **options)
        if found is None:
            return None
        base, differences = found
        for method, diffs in differences.items():
            if "ood_auroc_maxprob" in diffs:
                out.setdefault(method, {})[name] = diffs["ood_auroc_maxprob"]
    return (base, out) if base is not None and out else None


def _signed(value: float, decimals: int) -> str:
    return f"{value:+.{decimals}f}".replace("-", "−")


def _interval_cell(d: Any, decimals: int) -> str:
    if d is None:
        return "n/a"
    star = "*" if d.excludes_zero() else ""
    return f"{_signed(d.estimate, decimals)} [{_signed(d.low, decimals)}, {_signed(d.high, decimals)}]{star}"


def paired_table(baseline: str, differences: dict[str, dict[str, Any]]) -> str:
    """Markdown table: per method, each metric's difference and [low, high] interval; a ``*``
    marks an interval that excludes 0."""
    columns = [c for c in PAIRED_COLUMNS if any(c[0] in d for d in differences.values())]
    level = next((d.confidence_level for ds in differences.values() for d in ds.values()), 0.95)
    lines = [
        f"Method − {baseline}, mean over the seeds both share, with the {level:.0%} paired "
        "percentile bootstrap interval over test examples (and OOD examples for AUROC); "
        "`*`: the interval excludes 0.",
        "",
        "| method | seeds | " + " | ".join(title for _, title, _ in columns) + " |",
        "|---|---|" + "---:|" * len(columns),
    ]
    for method, diffs in differences.items():
        cells = [_interval_cell(diffs.get(key), decimals) for key, _, decimals in columns]
        seeds = next(iter(diffs.values())).seeds if diffs else ()
        lines.append(f"| {method} | {' '.join(map(str, seeds))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_ood_table(baseline: str, differences: dict[str, dict[str, Any]]) -> str:
    """Markdown table of :func:`paired_ood_sets`: per method, Δ OOD AUROC on each named set."""
    sets: list[str] = []
    for diffs in differences.values():
        sets += [name for name in diffs if name not in sets]
    lines = [
        f"Δ OOD AUROC (1 − max p; each OOD set against this task's test set), method − {baseline}, "
        "mean over the seeds both share, 95% paired percentile bootstrap over test and OOD "
        "examples; `*`: the interval excludes 0.",
        "",
        "| method | seeds | " + " | ".join(sets) + " |",
        "|---|---|" + "---:|" * len(sets),
    ]
    for method, diffs in differences.items():
        seeds = next(iter(diffs.values())).seeds if diffs else ()
        cells = [_interval_cell(diffs.get(name), 3) for name in sets]
        lines.append(f"| {method} | {' '.join(map(str, seeds))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def slug(name: str) -> str:
    """A file-name-safe form of a method name (``polar+vbll (landing)`` -> ``polar+vbll_landing``)."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_")


def write_report(
    runs: Sequence[dict[str, Any]],
    out_dir: str | Path,
    *,
    figures: bool = True,
    baseline: str | None = None,
    n_boot: int = 2000,
) -> dict[str, Path]:
    """``results.md``, ``results.csv``, ``reliability/[<task>/]<method>.png`` and
    ``comparison[-<task>].png`` in ``out_dir``. With per-example outputs in the runs,
    ``results.md`` also gets "Paired differences vs <baseline>" (per task) and the comparison
    figures a row of paired differences with their intervals (``n_boot`` replicates, seed 0)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = aggregate(runs)
    written = {"markdown": out_dir / "results.md", "csv": write_csv(rows, out_dir / "results.csv")}
    if baseline is not None and all(run["method"] != baseline for run in runs):
        methods = sorted({run["method"] for run in runs})
        raise UserInputError(
            f"baseline {baseline!r} is not a method of these runs; pick one of {methods}"
        )
    paired: dict[str | None, tuple[str, dict[str, dict[str, Any]]]] = {}
    sections = [markdown_table(rows)]
    for task in _tasks(rows):
        task_runs = [run for run in runs if run.get("task") == task]
        task_baseline = baseline
        if baseline is not None and all(run["method"] != baseline for run in task_runs):
            task_baseline = None
        found = paired_differences(task_runs, task_baseline, n_boot=n_boot)
        if found is None or not found[1]:
            continue
        paired[task] = found
        where = f" ({task})" if task else ""
        sections += [f"## Paired differences vs {found[0]}{where}", paired_table(*found)]
        ood_sets = paired_ood_sets(task_runs, task_baseline, n_boot=n_boot)
        if ood_sets is not None:
            sections += [f"## Paired OOD AUROC per OOD set vs {ood_sets[0]}{where}", paired_ood_table(*ood_sets)]
    written["markdown"].write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    if figures:
        from bayeshead.bench.plots import comparison_figure, reliability_diagram

        for task in _tasks(rows):
            group_rows = [row for row in rows if row.get("task") == task]
            if any("rmse_mean" in row for row in group_rows):
                written.update(_regression_figures(runs, group_rows, out_dir, task))
                continue
            folder = inside(out_dir, out_dir / "reliability" / safe_name(task) if task else out_dir / "reliability")
            folder.mkdir(parents=True, exist_ok=True)
            for row in group_rows:
                group = [r for r in runs if r["method"] == row["method"] and r.get("task") == task]
                seeds = ", ".join(map(str, row["seeds"]))
                where = f" on {task}" if task else ""
                path = inside(out_dir, folder / f"{safe_name(row['method'])}.png")
                reliability_diagram(
                    pooled_bins(group), path, title=f"{row['method']}{where} (seeds {seeds})"
                )
                written[f"reliability:{task + '/' if task else ''}{row['method']}"] = path
            name = f"comparison-{safe_name(task)}.png" if task else "comparison.png"
            key = f"comparison:{task}" if task else "comparison"
            metrics = ["acc", "ece", "nll"]
            if all("ood_auroc_maxprob_mean" in row for row in group_rows):
                metrics.append("ood_auroc_maxprob")
            base, differences = paired.get(task, (None, None))
            written[key] = comparison_figure(
                group_rows,
                inside(out_dir, out_dir / name),
                metrics=metrics,
                title=task,
                differences=differences,
                baseline=base,
            )
    return written


def _regression_figures(
    runs: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]], out_dir: Path, task: str | None
) -> dict[str, Path]:
    """Calibration curves and predicted-vs-true per method, and a comparison of Spearman, NLL,
    90 % coverage and calibration error (for a task whose runs are regression runs)."""
    from bayeshead.bench.plots import comparison_figure
    from bayeshead.bench.regression_report import write_regression_figures

    written = write_regression_figures(runs, [row["method"] for row in rows], out_dir, task)
    name = f"comparison-{task}.png" if task else "comparison.png"
    written[f"comparison:{task}" if task else "comparison"] = comparison_figure(
        rows, out_dir / name, metrics=["spearman", "nll", "coverage_90", "calibration_error"], title=task
    )
    return written
