"""Aggregate run JSONs into mean ± std tables (Markdown, CSV) and figures (PNG).

Means and standard deviations are over seeds (sample standard deviation, ddof = 1; 0 for a
single seed). Reliability diagrams pool the test predictions of all seeds of a method by summing
the per-bin counts, confidence sums and correct counts.
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

__all__ = [
    "COLUMNS",
    "load_runs",
    "aggregate",
    "markdown_table",
    "write_csv",
    "pooled_bins",
    "write_report",
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


def load_runs(directory: str | Path) -> list[dict[str, Any]]:
    """Every ``*.json`` run record under ``directory`` (recursively), sorted by method and seed."""
    paths = sorted(Path(directory).rglob("*.json"))
    runs = []
    for path in paths:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err.msg}); delete or fix it") from None
        if isinstance(record, dict) and "method" in record and "metrics" in record:
            runs.append(record)
    if not runs:
        raise ValueError(f"no run records (JSON with 'method' and 'metrics') under {directory}")
    return runs


def _value(record: dict[str, Any], key: str) -> float | None:
    value = record.get(key, record["metrics"].get(key))
    return None if value is None else float(value)


def aggregate(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per method (first-seen order): ``<key>_mean``, ``<key>_std``, ``seeds``."""
    order: list[str] = []
    by_method: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        if run["method"] not in by_method:
            order.append(run["method"])
        by_method.setdefault(run["method"], []).append(run)
    rows = []
    for method in order:
        group = by_method[method]
        row: dict[str, Any] = {"method": method, "seeds": sorted(r["seed"] for r in group)}
        keys = [k for k, _, _ in COLUMNS] + [
            "aece",
            "aurc",
            "ood_auroc_entropy",
            "ood_auroc_mi",
            "peak_memory_mb",
        ]
        for key in keys:
            values = [v for v in (_value(r, key) for r in group) if v is not None]
            if values:
                row[f"{key}_mean"] = statistics.fmean(values)
                row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def _cell(row: dict[str, Any], key: str, decimals: int) -> str:
    if f"{key}_mean" not in row:
        return "n/a"
    mean, std = row[f"{key}_mean"], row[f"{key}_std"]
    return (
        f"{mean:.{decimals}f} ± {std:.{decimals}f}"
        if len(row["seeds"]) > 1
        else f"{mean:.{decimals}f}"
    )


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    header = "| method | " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(COLUMNS)
    lines = [header, rule]
    for row in rows:
        lines.append(
            f"| {row['method']} | " + " | ".join(_cell(row, k, d) for k, _, d in COLUMNS) + " |"
        )
    return "\n".join(lines)


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    keys = sorted({k for row in rows for k in row if k not in ("method", "seeds")})
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "seeds", *keys])
        for row in rows:
            writer.writerow(
                [row["method"], " ".join(map(str, row["seeds"])), *(row.get(k, "") for k in keys)]
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
            raise ValueError("runs of one method use different reliability bins; cannot pool them")
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


def slug(name: str) -> str:
    """A file-name-safe form of a method name (``polar+vbll (landing)`` -> ``polar+vbll_landing``)."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_")


def write_report(
    runs: Sequence[dict[str, Any]], out_dir: str | Path, *, figures: bool = True
) -> dict[str, Path]:
    """``results.md``, ``results.csv``, ``reliability/<method>.png`` and ``comparison.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = aggregate(runs)
    written = {"markdown": out_dir / "results.md", "csv": write_csv(rows, out_dir / "results.csv")}
    written["markdown"].write_text(markdown_table(rows) + "\n", encoding="utf-8")
    if figures:
        from bayeshead.bench.plots import comparison_figure, reliability_diagram

        for row in rows:
            group = [r for r in runs if r["method"] == row["method"]]
            seeds = ", ".join(map(str, row["seeds"]))
            path = out_dir / "reliability" / f"{slug(row['method'])}.png"
            path.parent.mkdir(exist_ok=True)
            reliability_diagram(pooled_bins(group), path, title=f"{row['method']} (seeds {seeds})")
            written[f"reliability:{row['method']}"] = path
        written["comparison"] = comparison_figure(rows, out_dir / "comparison.png")
    return written
