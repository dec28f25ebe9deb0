"""One tuning trial: fit on the training split, score on the validation split, nothing else.

:class:`ValidationData` is what a search is allowed to see: it is built from a
:class:`~bayeshead.bench.data.BenchData` by reading its training and validation splits only, so
the test and OOD sets never reach a trial.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from bayeshead.bench.data import BenchData
from bayeshead.bench.tune_config import TuneConfig
from bayeshead.config import ExperimentConfig
from bayeshead.data import TextDataset

__all__ = ["ValidationData", "TrialOutcome", "run_trial", "objective_value", "format_override"]


@dataclass(frozen=True)
class ValidationData:
    """The training and validation splits of one data set (QA task), and nothing else."""

    train: TextDataset
    val: TextDataset
    task: str | None = None
    digest: str = field(default="", compare=False)
    """SHA-256 of the training and validation texts and labels: a resumed study checks it."""

    @classmethod
    def from_bench(cls, data: BenchData) -> ValidationData:
        """Take ``data.train``, ``data.val`` and ``data.task``; the test and OOD splits are not read."""
        return cls(data.train, data.val, data.task, _digest(data.train, data.val))

    @property
    def num_classes(self) -> int:
        return self.train.num_classes


def _digest(*splits: TextDataset) -> str:
    sha = hashlib.sha256()
    for split in splits:
        for text in [*split.texts, *(getattr(split, "text_pair", None) or [])]:
            if isinstance(text, tuple):  # an option group (multiple choice)
                sha.update(b"\x1e" + "\x1f".join(text).encode("utf-8") + b"\0")
                continue
            sha.update(text.encode("utf-8") + b"\0")
        sha.update(repr(split.labels.tolist()).encode("ascii") + b"\1")
    return sha.hexdigest()


@dataclass
class TrialOutcome:
    """A finished trial: the objective, validation metrics and timings."""

    value: float
    metrics: dict[str, float]
    fit_seconds: float
    predict_seconds: float


def objective_value(metrics: dict[str, float], tune: TuneConfig) -> float:
    """The minimised score: validation NLL, ECE, or NLL + ``ece_weight`` x ECE."""
    if tune.objective == "nll":
        return metrics["nll"]
    if tune.objective == "ece":
        return metrics["ece"]
    return metrics["nll"] + tune.ece_weight * metrics["ece"]


def run_trial(config: ExperimentConfig, data: ValidationData, tune: TuneConfig) -> TrialOutcome:
    """Build the method of ``config``, fit it on ``data.train`` (``data.val`` for what the method
    uses validation data for: early stopping, temperature, priors), predict ``data.val`` and
    score it with :func:`bayeshead.evaluation.classification_metrics`."""
    from bayeshead.bench.runner import init_heads_from_answers
    from bayeshead.evaluation import classification_metrics, predict_dataset
    from bayeshead.methods import build_method

    seed = config.training.seed
    torch.manual_seed(seed)
    start = time.perf_counter()
    runner = build_method(config, num_outputs=data.num_classes)
    init_heads_from_answers(runner, config)
    runner.fit(data.train, data.val)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    pred = predict_dataset(runner.predict, data.val.texts, config.evaluation.batch_size, seed)
    predict_seconds = time.perf_counter() - start
    metrics = classification_metrics(pred, data.val.labels, config.evaluation.ece_bins)
    value = objective_value(metrics, tune)
    if not math.isfinite(value):
        raise FloatingPointError(f"the validation {tune.objective} is {value} (training diverged?)")
    return TrialOutcome(value, metrics, fit_seconds, predict_seconds)


def format_override(key: str, value: Any) -> str:
    """``key=value`` as a suite override that reads back as the same value."""
    from bayeshead.config import parse_override

    if isinstance(value, bool) or value is None:
        text = {True: "true", False: "false", None: "null"}[value]
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, str) and parse_override(f"{key}={value}")[1] != value:
        text = repr(value)  # a string YAML would read as something else ('true', '1e-3'): quoted
    else:
        text = str(value)
    return f"{key}={text}"
