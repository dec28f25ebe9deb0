"""Paired bootstrap confidence intervals for the difference between two methods evaluated on the
same test examples (and the same OOD examples) with the same seeds.

For each metric m in ACC, ECE (top-label, 15 equal-width bins, as :func:`bayeshead.metrics.ece`),
NLL and OOD AUROC (max-probability score, OOD positive, as :func:`bayeshead.metrics.auroc`) the
estimate is the mean over seeds s of m(method_s) − m(baseline_s). A bootstrap replicate draws the
N test indices (and the M OOD indices) with replacement once, applies the *same* indices to both
methods and to every seed (paired), and averages the per-seed differences; with
``resample_seeds=True`` it also draws the seeds with replacement. The interval is the percentile
interval (Efron & Tibshirani 1993, ch. 13) of ``n_boot`` replicates: the α/2 and 1 − α/2
quantiles (linear interpolation, as ``numpy.percentile`` and ``scipy.stats.bootstrap(...,
method="percentile")``); not BCa. ``std_error`` is the standard deviation (ddof = 1) of the
replicates.

A replicate is a vector of multiplicities c (c_i copies of example i, Σc = N), so every metric is
a weighted sum computed for a block of replicates by one matrix product:

* ACC = Σ c_i·correct_i / N, NLL = Σ c_i·nll_i / N;
* ECE = Σ_b |Σ_{i∈b} c_i·(conf_i − correct_i)| / N  (since n_b/N·|acc_b − conf_b| is that);
* AUROC = Σ_j v_j Σ_i c_i (1[s_j > s_i] + ½·1[s_j = s_i]) / (N·M), with s = 1 − confidence and
  v the OOD multiplicities, computed on the distinct score values (cumulative sums).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from bayeshead.errors import UserInputError

__all__ = [
    "PAIRED_METRICS",
    "PerExample",
    "PairedDifference",
    "paired_bootstrap",
    "has_per_example",
    "paired_differences_from_records",
]

#: The compared metrics, keyed as in the run records' ``metrics``.
PAIRED_METRICS: tuple[str, ...] = ("acc", "ece", "nll", "ood_auroc_maxprob")

_BLOCK_ELEMENTS = 4_000_000  # replicates × examples per block of the multiplicity matrix


def _vector(value: object, name: str) -> Tensor:
    tensor = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
    if tensor.dim() != 1 or tensor.numel() == 0:
        raise UserInputError(
            f"{name} must be a non-empty 1-D array (one value per example), got shape "
            f"{tuple(tensor.shape)}"
        )
    if not torch.isfinite(tensor).all():
        raise UserInputError(f"{name} contains NaN or infinite values; fix those examples first")
    return tensor


@dataclass(frozen=True)
class PerExample:
    """Per-example outputs of one run: top-label ``confidence`` (max probability), ``correct``
    (0/1) and ``nll`` (−log p of the true class) on the N test examples, and the confidence on
    the M OOD examples (``ood_confidence``, optional). Arrays are converted to float64 tensors."""

    confidence: Tensor
    correct: Tensor
    nll: Tensor
    ood_confidence: Tensor | None = None

    def __post_init__(self) -> None:
        conf = _vector(self.confidence, "confidence")
        correct = _vector(self.correct, "correct")
        nll = _vector(self.nll, "nll")
        if not (conf.numel() == correct.numel() == nll.numel()):
            raise UserInputError(
                f"confidence, correct and nll must have one value per test example, got lengths "
                f"{conf.numel()}, {correct.numel()} and {nll.numel()}"
            )
        if ((conf < 0) | (conf > 1)).any():
            raise UserInputError("confidence must lie in [0, 1] (the maximum predicted probability)")
        if ((correct != 0) & (correct != 1)).any():
            raise UserInputError("correct must hold 0 or 1 per example (1: top-label prediction right)")
        object.__setattr__(self, "confidence", conf)
        object.__setattr__(self, "correct", correct)
        object.__setattr__(self, "nll", nll)
        if self.ood_confidence is not None:
            ood = _vector(self.ood_confidence, "ood_confidence")
            if ((ood < 0) | (ood > 1)).any():
                raise UserInputError("ood_confidence must lie in [0, 1] (the maximum probability)")
            object.__setattr__(self, "ood_confidence", ood)

    @property
    def n(self) -> int:
        return self.confidence.numel()

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> PerExample:
        """From a run record's ``per_example`` = {"test": {"confidence", "correct", "nll"},
        "ood": {"confidence"}} ("ood" optional)."""
        block = record.get("per_example")
        if not isinstance(block, Mapping) or not isinstance(block.get("test"), Mapping):
            raise UserInputError(
                f"run {record.get('method')!r} seed {record.get('seed')!r} has no per_example "
                "test outputs; re-run it with a bayeshead version that records them"
            )
        test = block["test"]
        missing = [k for k in ("confidence", "correct", "nll") if k not in test]
        if missing:
            raise UserInputError(f"per_example.test lacks {missing}; expected confidence, correct, nll")
        ood = block.get("ood")
        ood_conf = ood.get("confidence") if isinstance(ood, Mapping) else None
        return cls(test["confidence"], test["correct"], test["nll"], ood_conf)


@dataclass(frozen=True)
class PairedDifference:
    """The difference metric(method) − metric(baseline), averaged over ``seeds``, with its
    percentile bootstrap interval [``low``, ``high``] at ``confidence_level``."""

    metric: str
    estimate: float
    low: float
    high: float
    std_error: float
    confidence_level: float
    n_boot: int
    seeds: tuple[int, ...]

    def excludes_zero(self) -> bool:
        """True when the interval lies entirely above or below 0."""
        return self.low > 0 or self.high < 0


def _multiplicities(index: Tensor, n: int) -> Tensor:
    counts = torch.zeros(index.shape[0], n, dtype=torch.float64)
    return counts.scatter_add_(1, index, torch.ones_like(index, dtype=torch.float64))


def _ece_matrix(run: PerExample, n_bins: int) -> Tensor:
    """(N, n_bins): (conf_i − correct_i) in the column of example i's bin (calibration's bins)."""
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)
    index = (torch.bucketize(run.confidence, edges, right=True) - 1).clamp(0, n_bins - 1)
    out = torch.zeros(run.n, n_bins, dtype=torch.float64)
    out[torch.arange(run.n), index] = run.confidence - run.correct
    return out


class _AurocTable:
    """AUROC of weighted ID/OOD samples through the distinct values of all scores."""

    def __init__(self, run: PerExample) -> None:
        assert run.ood_confidence is not None
        id_scores, ood_scores = 1.0 - run.confidence, 1.0 - run.ood_confidence
        values, inverse = torch.unique(torch.cat([id_scores, ood_scores]), return_inverse=True)
        self.n_values = values.numel()
        self.id_pos, self.ood_pos = inverse[: run.n], inverse[run.n :]

    def __call__(self, id_weights: Tensor, ood_weights: Tensor) -> Tensor:
        rows = id_weights.shape[0]
        per_value = torch.zeros(rows, self.n_values, dtype=torch.float64)
        per_value.index_add_(1, self.id_pos, id_weights)
        ood_per_value = torch.zeros(rows, self.n_values, dtype=torch.float64)
        ood_per_value.index_add_(1, self.ood_pos, ood_weights)
        # ID weight strictly below each value, plus half the ID weight tied with it
        credit = torch.cumsum(per_value, 1).sub_(per_value.mul_(0.5))
        total = id_weights.sum(1) * ood_weights.sum(1)
        return (credit * ood_per_value).sum(1) / total


class _Prepared:
    """Per-run constants of the weighted metrics, computed once."""

    def __init__(self, run: PerExample, n_bins: int, with_ood: bool) -> None:
        self.run = run
        self.ece_matrix = _ece_matrix(run, n_bins)
        self.auroc = _AurocTable(run) if with_ood else None

    def ece(self, id_w: Tensor) -> Tensor:
        return (id_w @ self.ece_matrix).abs().sum(1) / self.run.n


def _seed_difference(
    a: _Prepared, b: _Prepared, id_w: Tensor, ood_w: Tensor | None, metrics: frozenset[str]
) -> dict[str, Tensor]:
    """metric(a) − metric(b) for each row of multiplicities (ACC and NLL are linear in them),
    for the keys in ``metrics``."""
    n = float(a.run.n)
    out = {}
    if "acc" in metrics:
        out["acc"] = id_w @ (a.run.correct - b.run.correct) / n
    if "nll" in metrics:
        out["nll"] = id_w @ (a.run.nll - b.run.nll) / n
    if "ece" in metrics:
        out["ece"] = a.ece(id_w) - b.ece(id_w)
    if "ood_auroc_maxprob" in metrics and a.auroc is not None and b.auroc is not None and ood_w is not None:
        out["ood_auroc_maxprob"] = a.auroc(id_w, ood_w) - b.auroc(id_w, ood_w)
    return out


def _metric_set(metrics: Sequence[str] | None) -> frozenset[str]:
    if metrics is None:
        return frozenset(PAIRED_METRICS)
    unknown = [m for m in metrics if m not in PAIRED_METRICS]
    if unknown or not metrics:
        raise UserInputError(
            f"paired_bootstrap metrics must be a non-empty subset of {list(PAIRED_METRICS)}, got "
            f"{list(metrics)}; leave metrics=None for all of them"
        )
    return frozenset(metrics)


def _check_runs(
    method: Sequence[PerExample], baseline: Sequence[PerExample]
) -> tuple[int, int | None]:
    if len(method) == 0 or len(method) != len(baseline):
        raise UserInputError(
            f"paired_bootstrap needs one run per seed for each method, matched by position; got "
            f"{len(method)} method runs and {len(baseline)} baseline runs"
        )
    runs = [*method, *baseline]
    sizes = {run.n for run in runs}
    if len(sizes) != 1:
        raise UserInputError(
            f"paired runs must score the same test examples, but their test sizes differ: "
            f"{sorted(sizes)}; evaluate every run on the same test set"
        )
    ood_sizes = {None if run.ood_confidence is None else run.ood_confidence.numel() for run in runs}
    m = ood_sizes.pop() if len(ood_sizes) == 1 else None
    return sizes.pop(), m


def paired_bootstrap(
    method: Sequence[PerExample],
    baseline: Sequence[PerExample],
    *,
    n_boot: int = 2000,
    confidence_level: float = 0.95,
    seed: int = 0,
    n_bins: int = 15,
    resample_seeds: bool = False,
    seeds: Sequence[int] | None = None,
    metrics: Sequence[str] | None = None,
) -> dict[str, PairedDifference]:
    """Paired percentile-bootstrap intervals of metric(method) − metric(baseline).

    ``method[s]`` and ``baseline[s]`` are the runs of seed s on the same N test examples in the
    same order (and the same M OOD examples). Returns a :class:`PairedDifference` per metric in
    :data:`PAIRED_METRICS`; OOD AUROC only when every run has ``ood_confidence`` of one length.
    Seeded: the same inputs and ``seed`` give the same intervals. ``seeds`` only labels the
    result (default 0, 1, …). ``metrics`` restricts the computation to a subset of
    :data:`PAIRED_METRICS` (default all); the resampled indices do not depend on it, so a
    metric's interval is the same whether or not the others are computed."""
    if n_boot < 2:
        raise UserInputError(f"n_boot must be >= 2, got {n_boot}; use about 2000 for 95% intervals")
    if not 0.0 < confidence_level < 1.0:
        raise UserInputError(f"confidence_level must lie in (0, 1), got {confidence_level}")
    wanted = _metric_set(metrics)
    n, m = _check_runs(method, baseline)
    n_seeds = len(method)
    pairs = [
        (_Prepared(a, n_bins, m is not None), _Prepared(b, n_bins, m is not None))
        for a, b in zip(method, baseline, strict=True)
    ]
    ones_id = torch.ones(1, n, dtype=torch.float64)
    ones_ood = torch.ones(1, m, dtype=torch.float64) if m is not None else None

    def mean_difference(id_w: Tensor, ood_w: Tensor | None, seed_w: Tensor) -> dict[str, Tensor]:
        total: dict[str, Tensor] = {}
        for s, (a, b) in enumerate(pairs):
            for key, value in _seed_difference(a, b, id_w, ood_w, wanted).items():
                total[key] = total.get(key, 0.0) + seed_w[:, s] * value
        return {key: value / seed_w.sum(1) for key, value in total.items()}

    point = mean_difference(ones_id, ones_ood, torch.ones(1, n_seeds, dtype=torch.float64))
    generator = torch.Generator().manual_seed(seed)
    block = max(1, min(n_boot, _BLOCK_ELEMENTS // (n + (m or 0))))
    replicates: dict[str, list[Tensor]] = {key: [] for key in point}
    done = 0
    while done < n_boot:
        rows = min(block, n_boot - done)
        id_w = _multiplicities(torch.randint(0, n, (rows, n), generator=generator), n)
        ood_w = (
            _multiplicities(torch.randint(0, m, (rows, m), generator=generator), m)
            if m is not None
            else None
        )
        if resample_seeds:
            picks = torch.randint(0, n_seeds, (rows, n_seeds), generator=generator)
            seed_w = _multiplicities(picks, n_seeds)
        else:
            seed_w = torch.ones(rows, n_seeds, dtype=torch.float64)
        for key, value in mean_difference(id_w, ood_w, seed_w).items():
            replicates[key].append(value)
        done += rows
    alpha = 1.0 - confidence_level
    levels = torch.tensor([alpha / 2, 1 - alpha / 2], dtype=torch.float64)
    labels = tuple(int(s) for s in seeds) if seeds is not None else tuple(range(n_seeds))
    out = {}
    for key in PAIRED_METRICS:
        if key not in point:
            continue
        values = torch.cat(replicates[key])
        low, high = torch.quantile(values, levels).tolist()
        out[key] = PairedDifference(
            metric=key,
            estimate=float(point[key][0]),
            low=low,
            high=high,
            std_error=float(values.std()),
            confidence_level=confidence_level,
            n_boot=n_boot,
            seeds=labels,
        )
    return out


def has_per_example(record: Mapping[str, Any]) -> bool:
    """Whether a run record carries the per-example test outputs the paired bootstrap needs."""
    block = record.get("per_example")
    return isinstance(block, Mapping) and isinstance(block.get("test"), Mapping)


def paired_differences_from_records(
    method_runs: Sequence[Mapping[str, Any]],
    baseline_runs: Sequence[Mapping[str, Any]],
    **options: Any,
) -> dict[str, PairedDifference]:
    """:func:`paired_bootstrap` on two lists of run records (JSON dicts with ``seed`` and
    ``per_example``), matched by seed; seeds present on one side only are left out. ``options``
    go to :func:`paired_bootstrap`."""
    by_seed = {int(r["seed"]): r for r in baseline_runs}
    mine = {int(r["seed"]): r for r in method_runs}
    common = sorted(set(mine) & set(by_seed))
    if not common:
        raise UserInputError(
            f"no seed is shared by the two methods (method seeds {sorted(mine)}, baseline seeds "
            f"{sorted(by_seed)}); paired differences need the same seeds"
        )
    return paired_bootstrap(
        [PerExample.from_record(mine[s]) for s in common],
        [PerExample.from_record(by_seed[s]) for s in common],
        seeds=common,
        **options,
    )
