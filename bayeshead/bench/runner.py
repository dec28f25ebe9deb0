"""Run a suite: methods x data sets (QA tasks) x seeds; one JSON per run.

Each run builds the method (``method.kind``, default ``single``) from the suite's base overrides
+ the method's overrides (+ the caller's; for a QA task also ``task.kind``), starts its heads from
the LM-head rows of the answer tokens when the task asks for it, trains (timed: "train s" includes
the post-hoc stage), predicts the test set (timed: "predict s") and every OOD set through
:mod:`bayeshead.evaluation`, and records resolved config, package versions, wall time, peak
memory, trainable parameters, metrics, reliability bins and per-example values (for paired
comparisons) in ``runs/[<task>/]<method>--seed<k>.json``.

OOD sets come in two kinds: unlabelled texts (``BenchData.ood``: only detection metrics, keys
``ood_*``) and labelled QA sets (``BenchData.ood_sets``: ACC/NLL/ECE/Brier on the set and detection
against the test set, keys ``<set>/<metric>``).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from bayeshead.bench.data import BenchData
from bayeshead.bench.resources import PeakMemory
from bayeshead.bench.suite import MethodSpec, SuiteConfig
from bayeshead.config import ExperimentConfig, load_config
from bayeshead.errors import UserInputError
from bayeshead.seeding import seed_everything

__all__ = [
    "OPTION_HEADS",
    "changed_settings",
    "data_summary",
    "init_heads_from_answers",
    "method_config",
    "run_method",
    "run_path",
    "run_record",
    "run_suite",
    "score_predictions",
    "versions",
]

#: class-row head -> the per-option head that scores each option with the same settings
OPTION_HEADS: dict[str, str] = {
    "deterministic": "deterministic_options",
    "vbll_classification": "vbll_options",
    "laplace": "laplace_options",
}

RUN_SCHEMA = 3  # 3: "method_kind", "per_example" (paired comparisons); 2: "task", "head_init", "suite_position", OOD sets


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("bayeshead", "torch", "transformers", "geoopt"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def run_path(out_dir: Path, method: str, seed: int, task: str | None = None) -> Path:
    from bayeshead.bench.paths import inside, safe_name

    folder = out_dir / "runs" / safe_name(task) if task else out_dir / "runs"
    return inside(out_dir, folder / f"{safe_name(method)}--seed{seed}.json")


def method_config(
    suite: SuiteConfig,
    method: MethodSpec,
    seed: int,
    overrides: Sequence[str] = (),
    task: str | None = None,
) -> ExperimentConfig:
    """suite base + method (+ its overrides for ``task``) + caller overrides, then the task (kind
    and the suite's formulation of it, :meth:`SuiteConfig.formulation_overrides`) and the seed. In
    the per-option formulations the head is replaced by its per-option counterpart
    (:data:`OPTION_HEADS`), its other settings kept; whether the option LM score is a feature is
    the formulation's to say, so an override of ``backbone.option_lm_score`` that contradicts it
    is an error."""
    extra = suite.formulation_overrides(task) if task else []
    per_task = method.task_overrides.get(task, []) if task else []
    chain = [*suite.base, *method.overrides, *per_task, *overrides, *extra, f"training.seed={seed}"]
    config = load_config(None, chain)
    if task and config.task is not None and config.task.formulation == "options":
        _check_option_lm_score(chain[: len(chain) - len(extra) - 1], config, task, suite.formulation.get(task))
    if config.task is None or config.task.formulation != "options":
        return config
    from bayeshead.registry import HEADS

    if HEADS.get(config.head.kind).task_type == "multiple_choice":
        return config
    counterpart = OPTION_HEADS.get(config.head.kind)
    if counterpart is None:
        raise UserInputError(
            f"method {method.name!r} on {task}: the task is put in the 'options' formulation, but head.kind="
            f"{config.head.kind!r} has no per-option counterpart (those with one: {', '.join(OPTION_HEADS)}); "
            f"drop the method for this task or set formulation.{task}: letter"
        )
    return load_config(None, [*chain, f"head.kind={counterpart}"])


def _check_option_lm_score(chain: Sequence[str], config: ExperimentConfig, task: str, formulation: str | None) -> None:
    """Refuse a ``backbone.option_lm_score`` override that the suite's formulation of ``task`` overrules."""
    import yaml

    key = "backbone.option_lm_score="
    for item in chain:
        if item.replace(" ", "").startswith(key):
            asked = yaml.safe_load(item.split("=", 1)[1])
            if bool(asked) != config.backbone.option_lm_score:
                raise UserInputError(
                    f"{item!r} contradicts the suite's formulation of {task}: {formulation!r} (which sets "
                    f"backbone.option_lm_score={str(config.backbone.option_lm_score).lower()}); drop the override "
                    f"and set formulation.{task}: {'options_lm_score' if asked else 'options'}"
                )


def init_heads_from_answers(method: Any, config: ExperimentConfig) -> str | None:
    """Start every head of ``method`` from what the causal LM would answer, when the task asks
    for it (``head_init: lm_head``, or ``auto`` with a causal-LM backbone); return how
    (``"lm_head"``, ``"lm_score"``) or None (random start).

    * letter formulation: the class rows become the LM-head rows of the answer tokens;
    * options formulation with ``backbone.option_lm_score``: the per-option head's weight is 1 on
      the LM-score column and 0 on the hidden state, so it predicts the LM's zero-shot cloze
      distribution (:mod:`bayeshead.backbones.option_scores`). Without that column there is
      nothing of the LM's own answer to start from."""
    task = config.task
    if task is None:
        return None
    mode = getattr(task, "head_init", "random")
    if mode == "random" or (mode == "auto" and config.backbone.model_class != "causal_lm"):
        return None
    from bayeshead.heads.init_rows import init_head_from_rows

    if getattr(task, "formulation", "letter") == "options":
        if not config.backbone.option_lm_score:
            return None
        for head in method.heads():
            weight = torch.zeros(head.in_features)
            weight[-1] = 1.0
            head.init_from_vector(weight)
        return "lm_score"
    from bayeshead.registry import TASKS

    answers = TASKS.create(task.kind, task).answers
    weight, bias = method.model.backbone.answer_head_rows(answers)
    for head in method.heads():
        init_head_from_rows(head, weight, bias)
    return "lm_head"


def score_predictions(
    data: BenchData,
    test: Any,
    ood: Any,
    ood_sets: dict[str, Any],
    bins: int,
) -> tuple[dict[str, float], dict[str, Any]]:
    """The metrics of a run (test, unlabelled OOD detection, each labelled OOD set as
    ``<set>/<metric>``) and its per-example values (for paired comparisons)."""
    from bayeshead.evaluation import evaluate, labelled_set_metrics, per_example

    metrics = evaluate(test, data.test.labels, ood, bins)
    for name, pred in ood_sets.items():
        for key, value in labelled_set_metrics(test, pred, data.ood_sets[name].labels, bins).items():
            metrics[f"{name}/{key}"] = value
    examples: dict[str, Any] = {"test": per_example(test, data.test.labels)}
    if ood is not None:
        examples["ood"] = per_example(ood)
    for name, pred in ood_sets.items():
        examples[name] = per_example(pred, data.ood_sets[name].labels)
    return metrics, examples


def data_summary(data: BenchData) -> dict[str, Any]:
    """What a run record says about its data: description and split sizes."""
    return {
        "description": data.description,
        "n_train": len(data.train),
        "n_val": len(data.val),
        "n_test": len(data.test),
        "n_ood": len(data.ood or []),
        "ood_sets": {name: len(labelled) for name, labelled in data.ood_sets.items()},
    }


def run_method(
    suite: SuiteConfig,
    method: MethodSpec,
    seed: int,
    data: BenchData,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Train and evaluate one method with one seed; return the run record."""
    from bayeshead.backbones.prefix_cache import cache_datasets
    from bayeshead.evaluation import predict_dataset
    from bayeshead.methods import build_method

    config = method_config(suite, method, seed, overrides, data.task)
    wall = time.perf_counter()
    with PeakMemory() as peak:
        seed_everything(seed)  # Python random, NumPy and torch, before anything random is built
        runner = build_method(config, num_outputs=data.num_outputs)
        head_init = init_heads_from_answers(runner, config)
        start = time.perf_counter()
        runner.fit(data.train, data.val)
        train_seconds = time.perf_counter() - start
        # backbone.cache_prefix: the frozen bottom's states of the evaluation sets, once per suite on
        # disk (the texts only, no labels), so runs and seeds after the first skip that forward
        cache_datasets(runner.model.backbone, data.test, *data.ood_sets.values())
        batch = config.evaluation.batch_size
        start = time.perf_counter()
        test = predict_dataset(runner.predict, data.test.texts, batch, seed, text_pair=data.test.text_pair)
        predict_seconds = time.perf_counter() - start
        ood = predict_dataset(runner.predict, data.ood, batch, seed, text_pair=data.ood_pair) if data.ood else None
        ood_sets = {
            name: predict_dataset(runner.predict, labelled.texts, batch, seed, text_pair=labelled.text_pair)
            for name, labelled in data.ood_sets.items()
        }
    metrics, examples = score_predictions(data, test, ood, ood_sets, config.evaluation.ece_bins)
    record = run_record(
        suite, data, config, method=method.name, method_kind=config.method.kind,
        method_position=suite.method_position(method.name), head_init=head_init or "random",
        posthoc=runner.posthoc, train_seconds=train_seconds, predict_seconds=predict_seconds, wall_start=wall,
        peak=peak, trainable_parameters=int(runner.trainable_parameters()), metrics=metrics, examples=examples,
    )
    return {**record, "seed": seed}


def run_record(
    suite: SuiteConfig,
    data: BenchData,
    config: ExperimentConfig,
    *,
    method: str,
    method_kind: str,
    method_position: int,
    head_init: str,
    posthoc: dict[str, float],
    train_seconds: float,
    predict_seconds: float,
    wall_start: float,
    peak: PeakMemory,
    trainable_parameters: int,
    metrics: dict[str, float],
    examples: dict[str, Any],
) -> dict[str, Any]:
    """A run record (schema :data:`RUN_SCHEMA`) without its seed: what ran (suite, task, method,
    its place in the suite's order, resolved config, versions, data), how long and how large,
    and what it scored (metrics, per-example values)."""
    return {
        "schema": RUN_SCHEMA,
        "suite": suite.name,
        "task": data.task,
        "method": method,
        "method_kind": method_kind,
        "suite_position": {
            "task": suite.task_position(data.task) if data.task in suite.tasks else 0,
            "method": method_position,
        },
        "config": config.model_dump(mode="json"),
        "versions": versions(),
        "data": data_summary(data),
        "head_init": head_init,
        "posthoc": posthoc,
        "train_seconds": train_seconds,
        "predict_seconds": predict_seconds,
        "wall_seconds": time.perf_counter() - wall_start,
        "peak_memory_mb": peak.megabytes,
        "memory_device": peak.device,
        "trainable_parameters": trainable_parameters,
        "torch_threads": torch.get_num_threads(),
        "metrics": metrics,
        "per_example": examples,
    }


def _log_line(record: dict[str, Any]) -> str:
    m = record["metrics"]
    if "rmse" in m:
        return _regression_log_line(record)
    parts = [f"acc {m['acc']:.3f} ece {m['ece']:.3f} nll {m['nll']:.3f}"]
    if "ood_auroc_maxprob" in m:
        parts.append(f"ood-auroc {m['ood_auroc_maxprob']:.3f}")
    for name in record["data"].get("ood_sets", {}):
        parts.append(f"{name} acc {m[f'{name}/acc']:.3f} auroc {m[f'{name}/auroc_maxprob']:.3f}")
    parts.append(f"train {record['train_seconds']:.0f}s predict {record['predict_seconds']:.1f}s")
    return "; ".join(parts)


def _regression_log_line(record: dict[str, Any]) -> str:
    m = record["metrics"]
    parts = [
        f"rmse {m['rmse']:.3f} spearman {m['spearman']:.3f} nll {m['nll']:.3f} "
        f"cov90 {m['coverage_90']:.3f} cal {m['calibration_error']:.3f}"
    ]
    if "ood_auroc_variance" in m:
        parts.append(f"ood-auroc {m['ood_auroc_variance']:.3f}")
    for name in record["data"].get("ood_sets", {}):
        parts.append(f"{name} spearman {m[f'{name}/spearman']:.3f} auroc {m[f'{name}/auroc_variance']:.3f}")
    parts.append(f"train {record['train_seconds']:.0f}s predict {record['predict_seconds']:.1f}s")
    return "; ".join(parts)


def _zero_shot_rows(
    suite: SuiteConfig,
    kind: str,
    data: BenchData,
    out_dir: Path,
    overrides: Sequence[str],
    skip_existing: bool,
    write: Callable[[Path, dict[str, Any]], None],
    say: Callable[[str], None],
) -> list[dict[str, Any]]:
    """One zero-shot row (:mod:`bayeshead.bench.zero_shot`) for every seed of the suite: scored
    once, written per seed; kept as it is when every seed's record exists and ``skip_existing``."""
    from bayeshead.bench.zero_shot import zero_shot_name, zero_shot_record

    name = zero_shot_name(kind)
    paths = {seed: run_path(out_dir, name, seed, data.task) for seed in suite.seeds}
    if skip_existing and all(p.is_file() for p in paths.values()):
        say(f"{name} on {data.task}: kept {len(paths)} records")
        return [json.loads(p.read_text(encoding="utf-8")) for p in paths.values()]
    base = zero_shot_record(suite, kind, data, overrides)
    say(f"{name} on {data.task}: {_log_line(base)}")
    out = []
    for seed, path in paths.items():
        record = {**base, "seed": seed}
        write(path, record)
        out.append(record)
    return out


_MISSING = object()  # a setting the current config does not have


def changed_settings(recorded: dict[str, Any], config: ExperimentConfig, limit: int = 4) -> list[str]:
    """The settings (dotted keys, at most ``limit`` shown) in which a run record's resolved config
    differs from ``config``, the config the suite would run now; ``[]`` when it is the same run.
    Settings the record does not hold (added to bayeshead after it was written) are not compared,
    and neither are ``training.progress`` and ``evaluation.batch_size``, which change how a run is
    shown or batched, not what it computes."""
    now = config.model_dump(mode="json")
    ignored = {"training.progress", "evaluation.batch_size"}
    out: list[str] = []

    def walk(old: Any, new: Any, key: str) -> None:
        if key in ignored:
            return
        if isinstance(old, dict) and isinstance(new, dict):
            for name, value in old.items():
                walk(value, new.get(name, _MISSING), f"{key}.{name}" if key else name)
        elif old != new:
            out.append(f"{key}: {old!r} -> {'(no such setting)' if new is _MISSING else repr(new)}")

    walk(recorded, now, "")
    return out[:limit] + ([f"{len(out) - limit} more"] if len(out) > limit else [])


def run_suite(
    suite: SuiteConfig,
    data: BenchData | Sequence[BenchData],
    out_dir: Path,
    overrides: Sequence[str] = (),
    *,
    skip_existing: bool = False,
    log: Callable[[str], None] = print,
    is_main: bool = True,
) -> list[dict[str, Any]]:
    """Every data set (QA task) x seed x method; writes each run's JSON as soon as it finishes
    (rank 0 only). With ``skip_existing``, runs whose JSON exists are read back, not rerun, unless
    the suite now resolves that run to other settings (:func:`changed_settings`): then it runs again.

    On a terminal (stderr a TTY, rank 0) a progress bar shows the runs done of the total and the
    run in progress, above the trainer's bar of training steps (``training.progress``); in a log
    (stderr not a TTY) neither is drawn, and only the ``log`` lines appear."""
    datasets = [data] if isinstance(data, BenchData) else list(data)
    records = []
    total = len(datasets) * (len(suite.methods) + len(suite.zero_shot)) * len(suite.seeds)
    done = 0
    bar = tqdm(total=total, desc="bench", unit="run", file=sys.stderr, disable=None if is_main else True)

    def say(line: str) -> None:
        with tqdm.external_write_mode(file=sys.stderr):  # the line goes above the bars, not through them
            log(line)

    def write(path: Path, record: dict[str, Any]) -> None:
        if is_main:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
            tmp.replace(path)

    try:
        for bench_data in datasets:
            where = f" on {bench_data.task}" if bench_data.task else ""
            for kind in suite.zero_shot:
                done += len(suite.seeds)
                records += _zero_shot_rows(suite, kind, bench_data, out_dir, overrides, skip_existing, write, say)
                bar.update(len(suite.seeds))
            for seed in suite.seeds:
                for method in suite.methods:
                    done += 1
                    path = run_path(out_dir, method.name, seed, bench_data.task)
                    head = f"[{done}/{total}] {method.name}{where} seed {seed}"
                    bar.set_description_str(f"bench: {method.name}{where} seed {seed}")
                    if skip_existing and path.is_file():
                        kept = json.loads(path.read_text(encoding="utf-8"))
                        changed = changed_settings(
                            kept.get("config", {}), method_config(suite, method, seed, overrides, bench_data.task)
                        )
                        if not changed:
                            records.append(kept)
                            say(f"{head}: kept {path}")
                            bar.update(1)
                            continue
                        say(f"{head}: {path} was run with other settings ({', '.join(changed)}); running it again")
                    record = run_method(suite, method, seed, bench_data, overrides)
                    say(f"{head}: {_log_line(record)}")
                    write(path, record)
                    records.append(record)
                    bar.update(1)
    finally:
        bar.close()
    return records
