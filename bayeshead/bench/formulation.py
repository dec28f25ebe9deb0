"""``bayeshead bench formulation``: choose how each QA task is put to the model, on validation data.

A QA task can be put in three formulations (:data:`~bayeshead.bench.suite.FORMULATIONS`):
``letter`` (one prompt listing the options, a C-way head over the answer letters: BLoB's protocol,
suited to large LMs), ``options`` (each option its own sequence, a per-option head on its hidden
state) or ``options_lm_score`` (the same, with the LM's own mean log-likelihood of the option as
one more feature, :mod:`bayeshead.backbones.option_scores`; causal LMs only). Which one a small LM
does better with is an empirical question per task, and answering it on the test split would leak
test data into the benchmark. So, per task, one reference method of the suite (default: its first)
is trained once in each candidate formulation with the suite's first seed, and scored on the
validation split only (:func:`~bayeshead.bench.tune_trial.run_trial`: the test and OOD sets are
never read). The formulation with the lower validation objective (NLL by default) wins; ties go to
the earlier candidate (``letter``, then ``options``).

Written under ``out_dir``: ``formulation.json`` (every fit: metrics, seconds), ``formulation.md``
(the table) and ``formulated.yaml`` (the suite with its ``formulation:`` filled in), which
``bayeshead bench run`` runs as it stands.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from bayeshead.bench.data import BenchData
from bayeshead.bench.runner import method_config
from bayeshead.bench.suite import FORMULATIONS, MethodSpec, SuiteConfig
from bayeshead.bench.tune_config import TuneConfig
from bayeshead.bench.tune_trial import ValidationData, run_trial
from bayeshead.config import load_config
from bayeshead.errors import UserInputError

__all__ = ["FORMULATED", "candidate_formulations", "choose_formulations", "write_formulations"]

FORMULATED = "formulated.yaml"


def candidate_formulations(suite: SuiteConfig, method: str | None = None) -> list[str]:
    """The formulations worth fitting for ``suite``: all of :data:`FORMULATIONS`, less
    ``options_lm_score`` when the reference method's backbone is not a causal LM (it has no LM
    score to give)."""
    spec = _method(suite, method)
    backbone = load_config(None, [*suite.base, *spec.overrides]).backbone
    return [f for f in FORMULATIONS if f != "options_lm_score" or backbone.model_class == "causal_lm"]


def _method(suite: SuiteConfig, method: str | None) -> MethodSpec:
    names = [m.name for m in suite.methods]
    name = method or (names[0] if names else None)
    if name not in names:
        raise UserInputError(f"method {name!r} is not in the suite {suite.name!r}; its methods are {names}")
    return suite.methods[names.index(name)]


def choose_formulations(
    suite: SuiteConfig,
    load: Callable[[str, str], BenchData],
    *,
    method: str | None = None,
    candidates: Sequence[str] | None = None,
    overrides: Sequence[str] = (),
    objective: str = "nll",
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, Any]]:
    """For every task of ``suite``: fit ``method`` (a method name of the suite; default its first)
    in each of ``candidates`` (default :func:`candidate_formulations`) on the training split
    (``load(task, data_formulation)`` gives the data: ``letter`` or ``options``) and score the
    validation split; return ``{task: {"chosen": ..., "method": ..., "candidates": [...],
    <formulation>: {...}, ...}}`` with each fit's objective, validation metrics and seconds."""
    if not suite.tasks:
        raise UserInputError(f"suite {suite.name!r} has no QA tasks; formulations are chosen per task")
    spec = _method(suite, method)
    order = list(candidates) if candidates else candidate_formulations(suite, spec.name)
    unknown = [f for f in order if f not in FORMULATIONS]
    if unknown or len(set(order)) != len(order) or len(order) < 2:
        raise UserInputError(
            f"candidate formulations {order}: give two or more different ones of {list(FORMULATIONS)}"
        )
    tune = TuneConfig(objective=objective)
    seed = suite.seeds[0]
    out: dict[str, dict[str, Any]] = {}
    for task in suite.tasks:
        row: dict[str, Any] = {"method": spec.name, "seed": seed, "objective": objective, "candidates": order}
        loaded: dict[str, ValidationData] = {}
        for formulation in order:
            trial_suite = suite.model_copy(update={"formulation": {**suite.formulation, task: formulation}})
            config = method_config(trial_suite, spec, seed, overrides, task)
            kind = trial_suite.data_formulation(task)
            if kind not in loaded:
                loaded[kind] = ValidationData.from_bench(load(task, kind))
            outcome = run_trial(config, loaded[kind], tune)
            row[formulation] = {
                "value": outcome.value,
                "metrics": outcome.metrics,
                "fit_seconds": outcome.fit_seconds,
                "predict_seconds": outcome.predict_seconds,
                "head": config.head.kind,
            }
            log(
                f"{task} / {formulation}: validation {objective} {outcome.value:.4f}, acc "
                f"{outcome.metrics['acc']:.3f} ({outcome.fit_seconds:.0f}s)"
            )
        row["chosen"] = min(order, key=lambda f: (row[f]["value"], order.index(f)))
        log(f"{task}: {row['chosen']}")
        out[task] = row
    return out


def write_formulations(suite: SuiteConfig, result: dict[str, dict[str, Any]], out_dir: Path) -> dict[str, Path]:
    """``formulation.json``, ``formulation.md`` and ``formulated.yaml`` under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "formulation.json", "markdown": out_dir / "formulation.md", "suite": out_dir / FORMULATED}
    paths["json"].write_text(json.dumps(result, indent=1), encoding="utf-8")
    order = list(FORMULATIONS)
    used = [f for f in order if any(f in row for row in result.values())]
    lines = [
        f"# Formulation per task, suite {suite.name} (validation data only)",
        "",
        "| task | method | " + " | ".join(f"{f}: val NLL | {f}: val ACC" for f in used) + " | chosen |",
        "|---|---|" + "---:|---:|" * len(used) + "---|",
    ]
    for task, row in result.items():
        cells = [
            f"{row[f]['metrics']['nll']:.3f} | {row[f]['metrics']['acc']:.3f}" if f in row else "– | –" for f in used
        ]
        lines.append(f"| {task} | {row['method']} | {' | '.join(cells)} | **{row['chosen']}** |")
    paths["markdown"].write_text("\n".join(lines) + "\n", encoding="utf-8")
    chosen = {**suite.formulation, **{task: row["chosen"] for task, row in result.items()}}
    formulated = suite.model_copy(update={"formulation": chosen})
    text = yaml.safe_dump(formulated.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=120)
    tmp = paths["suite"].with_suffix(".yaml.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(paths["suite"])
    return paths
