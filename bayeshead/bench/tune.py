"""``bayeshead bench tune``: a seeded search per method x task, the same budget for every method,
scored on validation data only.

    result = tune_suite(suite, datasets, Path("outputs/tune/quick"))
    # then: bayeshead bench run outputs/tune/quick/tuned.yaml   (test data is read once, there)

Each method x task is one Optuna study (TPE sampler) in a journal file (``studies.journal``,
Optuna's ``JournalStorage``), written as every trial starts and ends, so a killed search loses at
most the trial that was running. Every trial is recorded with its parameters, objective,
validation metrics and seconds, in the journal and in ``tuning.json`` / ``tuning.md``.

* Budget: ``tune.n_trials`` trials per study, for every method. A trial that raises (a diverged
  run) counts, recorded as failed with its error; a trial cut off by a kill does not.
* Resume (``resume=True``): completed trials are kept; a trial that was running at the kill is
  marked failed (``interrupted``) and its parameters are queued again, so the resumed search
  proposes what the uninterrupted one would have.
* Seeds: trial k is proposed by a TPE sampler seeded from (``tune.seed``, k), so two searches with
  the same seed propose the same trials, and so does a search resumed at k. Trials train with the
  suite's first seed.
* Scoring: :func:`~bayeshead.bench.tune_trial.run_trial` fits on the training split and scores the
  validation split (:mod:`bayeshead.evaluation`); the searcher is handed
  :class:`~bayeshead.bench.tune_trial.ValidationData`, which holds no test or OOD data.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bayeshead.bench.data import BenchData
from bayeshead.bench.runner import method_config
from bayeshead.bench.suite import MethodSpec, SuiteConfig
from bayeshead.bench.tune_trial import ValidationData, format_override, run_trial
from bayeshead.errors import InputTypeError, UserInputError
from bayeshead.search_space import Choice, IntRange, LogUniform, SearchSpace, Uniform

if TYPE_CHECKING:
    import optuna

__all__ = ["TuneError", "StudyResult", "tune_suite", "tune_study", "study_name", "open_storage", "JOURNAL"]

JOURNAL = "studies.journal"


class TuneError(UserInputError):
    """A search that cannot start or resume as asked, or whose every trial failed."""


@dataclass
class StudyResult:
    """One finished study: its method, task, space and trials (as recorded)."""

    name: str
    method: str
    task: str | None
    space: dict[str, Any]
    trials: list[dict[str, Any]]

    @property
    def counted(self) -> list[dict[str, Any]]:
        """The trials in the budget: completed, and failed with an error (not interrupted)."""
        return [t for t in self.trials if t["state"] == "COMPLETE" or (t["state"] == "FAIL" and "error" in t)]

    @property
    def best(self) -> dict[str, Any] | None:
        """The completed trial with the lowest objective (the first of equals)."""
        done = [t for t in self.trials if t["state"] == "COMPLETE"]
        return min(done, key=lambda t: (t["value"], t["number"])) if done else None


def study_name(method: MethodSpec, task: str | None) -> str:
    return f"{task}/{method.name}" if task else method.name


def open_storage(out_dir: Path) -> optuna.storages.JournalStorage:
    """The journal storage of ``out_dir`` (created on first use)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    out_dir.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(out_dir / JOURNAL)))


def _sampler(tune_seed: int, index: int, startup: int) -> optuna.samplers.TPESampler:
    """The TPE sampler proposing trial ``index``: seeded from (seed, index) alone, so what it
    proposes depends on the seed and the trials before it, not on when the process started."""
    import numpy as np
    import optuna

    seed = int(np.random.SeedSequence([tune_seed, index]).generate_state(1)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True)


def _suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, dist in space.items():
        if isinstance(dist, LogUniform | Uniform):
            params[key] = trial.suggest_float(key, dist.low, dist.high, log=isinstance(dist, LogUniform))
        elif isinstance(dist, IntRange):
            params[key] = trial.suggest_int(key, dist.low, dist.high, log=dist.log)
        elif isinstance(dist, Choice):
            params[key] = trial.suggest_categorical(key, dist.values)
        else:  # pragma: no cover - the Distribution union is closed
            raise InputTypeError(f"unknown distribution {dist!r}")
    return params


def _counted(study: optuna.Study) -> int:
    from optuna.trial import TrialState

    return sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.state == TrialState.COMPLETE or (t.state == TrialState.FAIL and "error" in t.user_attrs)
    )


def _recover_interrupted(study: optuna.Study, storage: Any, space: SearchSpace, log: Callable[[str], None]) -> None:
    """Mark trials left running by a kill as failed (``interrupted``) and queue their parameters again."""
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_user_attr(trial_id, "interrupted", True)
        study.tell(trial.number, state=TrialState.FAIL)
        if set(trial.params) == set(space):
            study.enqueue_trial(dict(trial.params), user_attrs={"requeued_from": trial.number})
            log(f"  trial {trial.number} was running when the search stopped: marked failed, its parameters queued again")
        else:
            log(f"  trial {trial.number} was cut off before its parameters were drawn: marked failed")


def _fingerprint(suite: SuiteConfig, method: MethodSpec, data: ValidationData, space: SearchSpace,
                 overrides: Sequence[str], train_seed: int) -> dict[str, Any]:
    """What a resumed study must share with the one it continues."""
    tune = suite.tune
    return {
        "objective": tune.objective,
        "ece_weight": tune.ece_weight if tune.objective == "nll+ece" else None,
        "sampler_seed": tune.seed,
        "startup_trials": tune.startup_trials,
        "train_seed": train_seed,
        "config_overrides": [*suite.base, *method.overrides, *method.task_overrides.get(data.task or "", []), *overrides],
        "space": {k: d.model_dump(mode="json") for k, d in space.items()},
        "data": {"n_train": len(data.train), "n_val": len(data.val), "sha256": data.digest},
    }


def _open_study(name: str, storage: Any, fingerprint: dict[str, Any], resume: bool, where: Path) -> optuna.Study:
    import optuna

    exists = name in optuna.get_all_study_names(storage)
    if exists and not resume:
        raise TuneError(
            f"{where / JOURNAL} already holds the study {name!r}; pass --resume to continue it, or give "
            "another --out to start afresh"
        )
    study = optuna.create_study(storage=storage, study_name=name, direction="minimize", load_if_exists=True)
    if not exists:
        study.set_user_attr("fingerprint", fingerprint)
        return study
    before = study.user_attrs.get("fingerprint", {})
    changed = sorted(k for k in {*before, *fingerprint} if before.get(k) != fingerprint.get(k))
    if changed:
        detail = "; ".join(f"{k}: was {before.get(k)!r}, now {fingerprint.get(k)!r}" for k in changed)
        raise TuneError(
            f"cannot resume the study {name!r} in {where / JOURNAL}: its settings changed ({detail}). "
            "Resume with the settings it started with, or give another --out"
        )
    return study


def _trial_record(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    record: dict[str, Any] = {
        "number": trial.number,
        "state": trial.state.name,
        "params": dict(trial.params),
        "value": trial.value,
    }
    for key in ("metrics", "fit_seconds", "predict_seconds", "seconds", "error", "interrupted", "requeued_from"):
        if key in trial.user_attrs:
            record[key] = trial.user_attrs[key]
    return record


def tune_study(
    suite: SuiteConfig,
    method: MethodSpec,
    data: ValidationData,
    out_dir: Path,
    overrides: Sequence[str] = (),
    *,
    resume: bool = False,
    storage: Any = None,
    log: Callable[[str], None] = print,
    after_trial: Callable[[StudyResult], None] | None = None,
) -> StudyResult:
    """Run (or continue) the study of ``method`` on ``data`` until ``suite.tune.n_trials`` trials
    count; ``after_trial`` gets the study's records after each trial."""
    import optuna

    tune = suite.tune
    storage = storage if storage is not None else open_storage(out_dir)
    train_seed = suite.seeds[0]
    base = method_config(suite, method, train_seed, overrides, data.task)
    space = tune.space_for(method.name, base)
    name = study_name(method, data.task)
    study = _open_study(name, storage, _fingerprint(suite, method, data, space, overrides, train_seed), resume, out_dir)
    _recover_interrupted(study, storage, space, log)
    while (index := _counted(study)) < tune.n_trials:
        study.sampler = _sampler(tune.seed, index, tune.startup_trials)
        trial = study.ask()
        params = _suggest(trial, space)
        sets = [format_override(k, v) for k, v in params.items()]
        head = f"  [{index + 1}/{tune.n_trials}] {name} trial {trial.number}"
        start = time.perf_counter()
        try:
            config = method_config(suite, method, train_seed, [*overrides, *sets], data.task)
            outcome = run_trial(config, data, tune)
        except Exception as err:  # a diverged or invalid trial counts, recorded with its error
            trial.set_user_attr("error", f"{type(err).__name__}: {err}")
            trial.set_user_attr("seconds", time.perf_counter() - start)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            log(f"{head}: failed ({type(err).__name__}: {err}); {' '.join(sets)}")
        else:
            trial.set_user_attr("metrics", outcome.metrics)
            trial.set_user_attr("fit_seconds", outcome.fit_seconds)
            trial.set_user_attr("predict_seconds", outcome.predict_seconds)
            trial.set_user_attr("seconds", time.perf_counter() - start)
            study.tell(trial, outcome.value)
            m = outcome.metrics
            log(
                f"{head}: val {tune.objective} {outcome.value:.4f} (acc {m['acc']:.3f} nll {m['nll']:.3f} "
                f"ece {m['ece']:.3f}) {time.perf_counter() - start:.0f}s; {' '.join(sets)}"
            )
        if after_trial is not None:
            after_trial(collect_study(study, method, data.task, space))
    return collect_study(study, method, data.task, space)


def collect_study(study: optuna.Study, method: MethodSpec, task: str | None, space: SearchSpace) -> StudyResult:
    """A study's trials as plain records."""
    return StudyResult(
        name=study.study_name,
        method=method.name,
        task=task,
        space={k: d.model_dump(mode="json") for k, d in space.items()},
        trials=[_trial_record(t) for t in study.get_trials(deepcopy=False)],
    )


def tune_suite(
    suite: SuiteConfig,
    data: BenchData | ValidationData | Sequence[BenchData | ValidationData],
    out_dir: Path,
    overrides: Sequence[str] = (),
    *,
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Tune every method x data set (QA task) of ``suite``; write ``tuning.json``, ``tuning.md``
    (after every trial) and ``tuned.yaml`` (at the end) under ``out_dir``; return their paths and
    the studies. Only the training and validation splits of ``data`` are read."""
    from bayeshead.bench.tune_report import tuned_suite, write_summary, write_tuned_suite

    items = [data] if isinstance(data, BenchData | ValidationData) else list(data)
    views = [d if isinstance(d, ValidationData) else ValidationData.from_bench(d) for d in items]
    out_dir.mkdir(parents=True, exist_ok=True)
    storage = open_storage(out_dir)
    results: list[StudyResult] = []
    optuna_logger = logging.getLogger("optuna")
    level = optuna_logger.level
    optuna_logger.setLevel(logging.WARNING)
    try:
        for view in views:
            for method in suite.methods:
                name = study_name(method, view.task)
                log(f"{name}: {suite.tune.n_trials} trials, objective validation {suite.tune.objective}")

                done = list(results)
                results.append(
                    tune_study(
                        suite, method, view, out_dir, overrides, resume=resume, storage=storage, log=log,
                        after_trial=lambda current, done=done: write_summary(suite, [*done, current], out_dir),
                    )
                )
    finally:
        optuna_logger.setLevel(level)
    empty = [r.name for r in results if r.best is None]
    summary = write_summary(suite, results, out_dir)
    if empty:
        errors = {r.name: next((t["error"] for t in r.trials if "error" in t), "no trial ran") for r in results if r.best is None}
        raise TuneError(
            f"every trial of {empty} failed, so there is no tuned setting for them (first errors: {errors}); "
            f"see {summary['markdown']}"
        )
    tuned = tuned_suite(suite, results, overrides)
    return {**summary, "tuned": write_tuned_suite(tuned, out_dir), "studies": results, "suite": tuned}
