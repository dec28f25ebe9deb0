"""What a search leaves behind: ``tuning.json`` and ``tuning.md`` (every trial of every study) and
``tuned.yaml``, the suite with each method's best parameters appended to its overrides, which
``bayeshead bench run tuned.yaml`` runs as it stands.

Tuned parameters of a suite without tasks go to the end of the method's ``overrides``; those of a
QA suite go to ``task_overrides[task]`` (each task has its own study). Overrides given to the
search (``--set``, ``--model``) come before them, in the order the search applied them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bayeshead.bench.suite import SuiteConfig
from bayeshead.bench.tune_trial import format_override

if TYPE_CHECKING:
    from bayeshead.bench.tune import StudyResult

__all__ = ["tuned_suite", "write_tuned_suite", "write_summary", "summary_markdown", "TUNED", "SUMMARY"]

TUNED = "tuned.yaml"
SUMMARY = "tuning"


def tuned_suite(suite: SuiteConfig, results: Sequence[StudyResult], overrides: Sequence[str] = ()) -> SuiteConfig:
    """``suite`` with every method's best parameters (per task for QA suites) as overrides."""
    best = {(r.method, r.task): r.best for r in results}
    methods = []
    for method in suite.methods:
        spec = method.model_dump()
        for task in suite.tasks or [None]:
            trial = best.get((method.name, task))
            if trial is None:
                continue
            sets = [*overrides, *(format_override(k, v) for k, v in trial["params"].items())]
            if task is None:
                spec["overrides"] = [*spec["overrides"], *sets]
            else:
                spec["task_overrides"][task] = [*spec["task_overrides"].get(task, []), *sets]
        methods.append(spec)
    tune = suite.tune
    per = "method and task" if suite.tasks else "method"
    note = (
        f"tuned by `bayeshead bench tune` on validation data only: objective {tune.objective}"
        + (f" (ece weight {tune.ece_weight})" if tune.objective == "nll+ece" else "")
        + f", {tune.n_trials} trials per {per}, TPE sampler seed {tune.seed}, training seed {suite.seeds[0]}"
    )
    name = suite.name if suite.name.endswith("-tuned") else f"{suite.name}-tuned"
    description = f"{suite.description}; {note}" if suite.description else note
    return SuiteConfig.model_validate(
        {**suite.model_dump(), "name": name, "description": description, "methods": methods}
    )


def write_tuned_suite(tuned: SuiteConfig, out_dir: Path) -> Path:
    """``out_dir/tuned.yaml``, written atomically."""
    path = out_dir / TUNED
    text = yaml.safe_dump(tuned.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=120)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def _number(value: Any, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _param(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def summary_markdown(suite: SuiteConfig, results: Sequence[StudyResult]) -> str:
    """One section per study: best trial, then every trial."""
    tune = suite.tune
    lines = [
        f"# Tuning: {suite.name}",
        "",
        f"Objective: validation {tune.objective}"
        + (f" (ece weight {tune.ece_weight})" if tune.objective == "nll+ece" else "")
        + f"; {tune.n_trials} trials per study; TPE seed {tune.seed}; training seed {suite.seeds[0]}. "
        "The test split is not read.",
        "",
        "| study | trials | best objective | val acc | val nll | val ece | best parameters |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        b = r.best
        m = b.get("metrics", {}) if b else {}
        params = ", ".join(f"{k}={_param(v)}" for k, v in b["params"].items()) if b else "–"
        lines.append(
            f"| {r.name} | {len(r.counted)} | {_number(b['value'] if b else None)} | {_number(m.get('acc'), 3)} "
            f"| {_number(m.get('nll'))} | {_number(m.get('ece'))} | {params or '(nothing to tune)'} |"
        )
    for r in results:
        keys = list(r.space)
        lines += ["", f"## {r.name}", "", "| # | state | objective | val acc | val nll | val ece | s | "
                  + " | ".join(keys) + " |", "|---" * (7 + len(keys)) + "|"]
        for t in r.trials:
            m = t.get("metrics", {})
            state = t["state"].lower() + (" (interrupted)" if t.get("interrupted") else "")
            row = [str(t["number"]), state, _number(t["value"]), _number(m.get("acc"), 3), _number(m.get("nll")),
                   _number(m.get("ece")), _number(t.get("seconds"), 0)]
            row += [_param(t["params"][k]) if k in t["params"] else "–" for k in keys]
            lines.append("| " + " | ".join(row) + " |")
        errors = [t for t in r.trials if "error" in t]
        for t in errors:
            lines.append(f"\nTrial {t['number']} failed: {t['error']}")
    return "\n".join(lines) + "\n"


def write_summary(suite: SuiteConfig, results: Sequence[StudyResult], out_dir: Path) -> dict[str, Path]:
    """``tuning.json`` (every trial: params, objective, validation metrics, seconds) and ``tuning.md``."""
    record = {
        "suite": suite.name,
        "tune": suite.tune.model_dump(mode="json"),
        "train_seed": suite.seeds[0],
        "studies": [
            {"name": r.name, "method": r.method, "task": r.task, "space": r.space, "best": r.best, "trials": r.trials}
            for r in results
        ],
    }
    paths = {"json": out_dir / f"{SUMMARY}.json", "markdown": out_dir / f"{SUMMARY}.md"}
    for key, text in (("json", json.dumps(record, indent=1)), ("markdown", summary_markdown(suite, results))):
        tmp = paths[key].with_suffix(paths[key].suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(paths[key])
    return paths
