"""Run a suite: methods x seeds on one :class:`~bayeshead.bench.data.BenchData`; one JSON per run.

Each run builds the model from the suite's base overrides + the method's overrides (+ the
caller's), trains it (timed: "train s" includes the post-hoc stage), predicts the test set
(timed: "predict s") and the OOD texts, and records resolved config, package versions, wall time,
peak memory, trainable parameters, metrics and reliability bins in ``runs/<method>--seed<k>.json``.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bayeshead.bench.data import BenchData
from bayeshead.bench.report import slug
from bayeshead.bench.resources import PeakMemory
from bayeshead.bench.suite import MethodSpec, SuiteConfig
from bayeshead.config import ExperimentConfig, load_config

__all__ = [
    "Predictions",
    "predict_texts",
    "run_method",
    "run_suite",
    "run_path",
    "evaluate_predictions",
]

RUN_SCHEMA = 1


@dataclass
class Predictions:
    probs: Tensor  # (N, C)
    log_probs: Tensor  # (N, C)
    samples: Tensor | None  # (S, N, C) member / sample probabilities, when the method has them


@torch.no_grad()
def predict_texts(
    predict: Callable[..., Any], texts: Sequence[str], batch_size: int, seed: int
) -> Predictions:
    """Batched predictive over ``texts`` with a seeded generator (Monte-Carlo heads are reproducible)."""
    generator = torch.Generator().manual_seed(seed)
    probs, logs, samples = [], [], []
    for start in range(0, len(texts), batch_size):
        pred = predict(list(texts[start : start + batch_size]), generator=generator)
        probs.append(pred.probs.double())
        logs.append(
            pred.log_probs.double() if pred.log_probs is not None else pred.probs.double().log()
        )
        samples.append(None if pred.samples is None else pred.samples.double())
    stacked = None if any(s is None for s in samples) else torch.cat(samples, dim=1)  # type: ignore[arg-type]
    return Predictions(torch.cat(probs), torch.cat(logs), stacked)


def evaluate_predictions(
    test: Predictions, labels: Tensor, ood: Predictions | None, n_bins: int = 15
) -> dict[str, Any]:
    """ACC, NLL, Brier, ECE, adaptive ECE, AURC, OOD AUROC/AUPR/FPR95 and the reliability bins."""
    from bayeshead import metrics

    out: dict[str, Any] = {
        "acc": metrics.accuracy(test.probs, labels),
        "nll": metrics.nll(test.probs, labels, log_probs=test.log_probs),
        "brier": metrics.brier(test.probs, labels),
        "ece": metrics.ece(test.probs, labels, n_bins),
        "aece": metrics.adaptive_ece(test.probs, labels, n_bins),
        "aurc": metrics.aurc(test.probs, labels),
    }
    if ood is not None:
        with_samples = test.samples is not None and ood.samples is not None
        out.update(
            {
                f"ood_{k}": v
                for k, v in metrics.ood_metrics(
                    test.probs,
                    ood.probs,
                    test.samples if with_samples else None,
                    ood.samples if with_samples else None,
                ).items()
            }
        )
    bins = metrics.reliability_bins(test.probs, labels, n_bins)
    out["reliability"] = {
        "edges": list(bins.edges),
        "counts": list(bins.counts),
        "mean_confidence": list(bins.mean_confidence),
        "accuracy": list(bins.accuracy),
    }
    return out


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("bayeshead", "torch", "transformers", "geoopt"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def run_path(out_dir: Path, method: str, seed: int) -> Path:
    return out_dir / "runs" / f"{slug(method)}--seed{seed}.json"


def method_config(
    suite: SuiteConfig, method: MethodSpec, seed: int, overrides: Sequence[str] = ()
) -> ExperimentConfig:
    return load_config(None, [*suite.base, *method.overrides, *overrides, f"training.seed={seed}"])


def run_method(
    suite: SuiteConfig,
    method: MethodSpec,
    seed: int,
    data: BenchData,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Train and evaluate one method with one seed; return the run record."""
    from bayeshead.model import BayesianModel
    from bayeshead.training.ensemble import DeepEnsemble

    config = method_config(suite, method, seed, overrides)
    wall = time.perf_counter()
    with PeakMemory() as peak:
        torch.manual_seed(seed)
        model = BayesianModel.from_config(config, num_outputs=data.num_classes)
        members = method.ensemble_members or 1
        if members > 1:
            ensemble = DeepEnsemble(model, members)
            predict, fit = ensemble.predict, ensemble.fit
            trainable = sum(p.numel() for p in ensemble.heads.parameters()) + sum(
                b.numel() for b in ensemble.adapters.buffers()
            )
        else:
            predict, fit = model.predict, model.fit
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        start = time.perf_counter()
        fit(data.train, data.val)
        train_seconds = time.perf_counter() - start
        batch = config.evaluation.batch_size
        start = time.perf_counter()
        test = predict_texts(predict, data.test.texts, batch, seed)
        predict_seconds = time.perf_counter() - start
        ood = predict_texts(predict, data.ood, batch, seed) if data.ood else None
    metrics = evaluate_predictions(test, data.test.labels, ood, config.evaluation.ece_bins)
    return {
        "schema": RUN_SCHEMA,
        "suite": suite.name,
        "method": method.name,
        "seed": seed,
        "ensemble_members": members,
        "config": config.model_dump(mode="json"),
        "versions": _versions(),
        "data": {
            "description": data.description,
            "n_train": len(data.train),
            "n_val": len(data.val),
            "n_test": len(data.test),
            "n_ood": len(data.ood or []),
        },
        "train_seconds": train_seconds,
        "predict_seconds": predict_seconds,
        "wall_seconds": time.perf_counter() - wall,
        "peak_memory_mb": peak.megabytes,
        "memory_device": peak.device,
        "trainable_parameters": int(trainable),
        "torch_threads": torch.get_num_threads(),
        "metrics": metrics,
    }


def run_suite(
    suite: SuiteConfig,
    data: BenchData,
    out_dir: Path,
    overrides: Sequence[str] = (),
    *,
    skip_existing: bool = False,
    log: Callable[[str], None] = print,
    is_main: bool = True,
) -> list[dict[str, Any]]:
    """Every method x seed; writes each run's JSON as soon as it finishes (rank 0 only)."""
    records = []
    total = len(suite.methods) * len(suite.seeds)
    done = 0
    for seed in suite.seeds:
        for method in suite.methods:
            done += 1
            path = run_path(out_dir, method.name, seed)
            if skip_existing and path.is_file():
                records.append(json.loads(path.read_text(encoding="utf-8")))
                log(f"[{done}/{total}] {method.name} seed {seed}: kept {path}")
                continue
            record = run_method(suite, method, seed, data, overrides)
            m = record["metrics"]
            log(
                f"[{done}/{total}] {method.name} seed {seed}: acc {m['acc']:.3f} ece {m['ece']:.3f} "
                f"nll {m['nll']:.3f} ood-auroc {m.get('ood_auroc_maxprob', float('nan')):.3f} "
                f"train {record['train_seconds']:.0f}s predict {record['predict_seconds']:.1f}s"
            )
            if is_main:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".json.tmp")
                tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
                tmp.replace(path)
            records.append(record)
    return records
