"""Paired bootstrap of metric differences (bayeshead.metrics.paired): agreement with
scipy.stats.bootstrap (paired, percentile) on identical inputs, the closed-form standard error of
a mean difference, DeLong's variance for a paired AUROC difference, full-sample point estimates
equal to bayeshead.metrics, pairing, seeding and the record adapter."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from bayeshead.metrics import auroc, ece
from bayeshead.metrics.paired import (
    PerExample,
    has_per_example,
    paired_bootstrap,
    paired_differences_from_records,
)


def _run(g, n, shift=0.0, m=None):
    conf = 0.35 + 0.65 * torch.rand(n, generator=g, dtype=torch.float64)
    correct = (torch.rand(n, generator=g, dtype=torch.float64) < conf - shift).double()
    nll = -torch.log(torch.where(correct > 0, conf, (1 - conf) / 2))
    ood = None if m is None else 0.3 + 0.6 * torch.rand(m, generator=g, dtype=torch.float64)
    return PerExample(conf, correct, nll, ood)


def _probs(run):
    """Three-class probabilities with the run's top-label confidence (> 1/3) and correctness."""
    rest = (1 - run.confidence) / 2
    p = torch.stack([run.confidence, rest, rest], 1)
    return p, torch.where(run.correct > 0, 0, 1)


def test_point_estimates_equal_the_metric_functions():
    g = torch.Generator().manual_seed(0)
    a, b = _run(g, 400, m=150), _run(g, 400, 0.1, m=150)
    out = paired_bootstrap([a], [b], n_boot=10)
    (pa, ta), (pb, tb) = _probs(a), _probs(b)
    assert out["acc"].estimate == pytest.approx(float(a.correct.mean() - b.correct.mean()), abs=1e-12)
    assert out["nll"].estimate == pytest.approx(float(a.nll.mean() - b.nll.mean()), abs=1e-12)
    assert out["ece"].estimate == pytest.approx(ece(pa, ta) - ece(pb, tb), abs=1e-12)
    au = auroc(1 - a.confidence, 1 - a.ood_confidence) - auroc(1 - b.confidence, 1 - b.ood_confidence)
    assert out["ood_auroc_maxprob"].estimate == pytest.approx(au, abs=1e-12)


def _ece_np(conf, correct, n_bins=15):
    edges = np.linspace(0, 1, n_bins + 1)
    index = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)
    sums = np.bincount(index, weights=conf - correct, minlength=n_bins)
    return np.abs(sums).sum() / len(conf)


@pytest.mark.parametrize("metric", ["acc", "nll", "ece"])
def test_interval_agrees_with_scipy_paired_percentile_bootstrap(metric):
    g = torch.Generator().manual_seed(1)
    a, b = _run(g, 300), _run(g, 300, 0.08)
    ours = paired_bootstrap([a], [b], n_boot=4000, seed=3)[metric]
    arrays = [t.numpy() for t in (a.confidence, a.correct, a.nll, b.confidence, b.correct, b.nll)]

    def statistic(ca, ka, na, cb, kb, nb, axis=-1):
        if metric == "acc":
            return ka.mean(axis) - kb.mean(axis)
        if metric == "nll":
            return na.mean(axis) - nb.mean(axis)
        return _ece_np(ca, ka) - _ece_np(cb, kb)

    ref = stats.bootstrap(
        arrays, statistic, paired=True, vectorized=metric != "ece", n_resamples=4000,
        method="percentile", confidence_level=0.95, random_state=np.random.default_rng(3),
    )
    se = ref.standard_error
    assert ours.std_error == pytest.approx(se, rel=0.08)
    assert ours.low == pytest.approx(ref.confidence_interval.low, abs=0.2 * se)
    assert ours.high == pytest.approx(ref.confidence_interval.high, abs=0.2 * se)


def test_standard_error_of_a_mean_difference_is_the_closed_form():
    """Bootstrap SE of mean(d) → sqrt(Σ(d_i − d̄)² / n) / √n (the plug-in formula)."""
    g = torch.Generator().manual_seed(2)
    a, b = _run(g, 500), _run(g, 500, 0.05)
    out = paired_bootstrap([a], [b], n_boot=20000, seed=0)["nll"]
    d = (a.nll - b.nll).numpy()
    closed = d.std(ddof=0) / math.sqrt(len(d))
    assert out.std_error == pytest.approx(closed, rel=0.03)
    z = stats.norm.ppf(0.975)
    assert out.low == pytest.approx(out.estimate - z * closed, abs=0.1 * closed)
    assert out.high == pytest.approx(out.estimate + z * closed, abs=0.1 * closed)


def _delong_variance(id_a, ood_a, id_b, ood_b):
    """DeLong, DeLong & Clarke-Pearson (1988): variance of AUC_a − AUC_b on shared examples."""

    def components(id_s, ood_s):
        psi = (ood_s[:, None] > id_s[None, :]) + 0.5 * (ood_s[:, None] == id_s[None, :])
        return psi.mean(1), psi.mean(0)  # per OOD example, per ID example

    va_ood, va_id = components(id_a, ood_a)
    vb_ood, vb_id = components(id_b, ood_b)
    s_ood = np.cov(np.stack([va_ood, vb_ood]))
    s_id = np.cov(np.stack([va_id, vb_id]))
    contrast = np.array([1.0, -1.0])
    return contrast @ s_ood @ contrast / len(va_ood) + contrast @ s_id @ contrast / len(va_id)


def test_auroc_difference_matches_delong():
    g = torch.Generator().manual_seed(4)
    a, b = _run(g, 400, m=200), _run(g, 400, 0.05, m=200)
    out = paired_bootstrap([a], [b], n_boot=6000, seed=1)["ood_auroc_maxprob"]
    variance = _delong_variance(
        *(1 - t.numpy() for t in (a.confidence, a.ood_confidence, b.confidence, b.ood_confidence))
    )
    assert out.std_error == pytest.approx(math.sqrt(variance), rel=0.08)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(5, 60), seed=st.integers(0, 10_000))
def test_identical_methods_differ_by_exactly_zero(n, seed):
    g = torch.Generator().manual_seed(seed)
    runs = [_run(g, n, m=7), _run(g, n, m=7)]
    out = paired_bootstrap(runs, runs, n_boot=50, seed=seed)
    for diff in out.values():
        assert diff.estimate == diff.low == diff.high == diff.std_error == 0.0


def test_pairing_shrinks_the_interval_and_seeds_are_averaged():
    g = torch.Generator().manual_seed(5)
    base = _run(g, 400)
    # the method is the baseline with 20 answers flipped to correct: a small, consistent gain
    flipped = base.correct.clone()
    wrong = torch.nonzero(flipped == 0).flatten()[:20]
    flipped[wrong] = 1.0
    better = PerExample(base.confidence, flipped, base.nll, None)
    out = paired_bootstrap([better], [base], n_boot=2000)["acc"]
    assert out.estimate == pytest.approx(20 / 400)
    unpaired_se = math.sqrt(2 * float(base.correct.var()) / 400)
    assert out.std_error < 0.5 * unpaired_se and out.excludes_zero()
    # two identical seeds give the single-seed answer (the same indices are reused per seed)
    twice = paired_bootstrap([better, better], [base, base], n_boot=2000)["acc"]
    assert (twice.low, twice.high, twice.estimate) == pytest.approx((out.low, out.high, out.estimate))
    resampled = paired_bootstrap([better, better], [base, base], n_boot=500, resample_seeds=True)
    assert resampled["acc"].estimate == pytest.approx(out.estimate)


def test_seeded_and_deterministic():
    g = torch.Generator().manual_seed(6)
    a, b = [_run(g, 100, m=30)], [_run(g, 100, 0.1, m=30)]
    first = paired_bootstrap(a, b, n_boot=300, seed=9)
    assert first == paired_bootstrap(a, b, n_boot=300, seed=9)
    assert first["acc"].low != paired_bootstrap(a, b, n_boot=300, seed=10)["acc"].low


def test_metric_subset_gives_the_same_intervals_and_only_those_metrics():
    g = torch.Generator().manual_seed(7)
    a, b = [_run(g, 120, m=40)], [_run(g, 120, 0.1, m=40)]
    full = paired_bootstrap(a, b, n_boot=300, seed=2)
    only = paired_bootstrap(a, b, n_boot=300, seed=2, metrics=["ood_auroc_maxprob", "nll"])
    assert set(only) == {"ood_auroc_maxprob", "nll"}
    assert only["ood_auroc_maxprob"] == full["ood_auroc_maxprob"] and only["nll"] == full["nll"]
    for bad in (["brier"], []):
        with pytest.raises(ValueError, match="non-empty subset"):
            paired_bootstrap(a, b, n_boot=10, metrics=bad)


def _record(seed, run):
    per_example = {
        "test": {
            "confidence": run.confidence.tolist(),
            "correct": run.correct.tolist(),
            "nll": run.nll.tolist(),
        }
    }
    if run.ood_confidence is not None:
        per_example["ood"] = {"confidence": run.ood_confidence.tolist()}
    return {"method": "m", "seed": seed, "metrics": {}, "per_example": per_example}


def test_records_are_matched_by_seed():
    g = torch.Generator().manual_seed(7)
    a = {s: _run(g, 80, m=20) for s in (0, 1, 2)}
    b = {s: _run(g, 80, 0.1, m=20) for s in (0, 1)}
    from_records = paired_differences_from_records(
        [_record(s, a[s]) for s in (2, 0, 1)], [_record(s, b[s]) for s in (1, 0)], n_boot=200
    )
    direct = paired_bootstrap([a[0], a[1]], [b[0], b[1]], n_boot=200, seeds=[0, 1])
    assert from_records == direct and from_records["acc"].seeds == (0, 1)
    assert has_per_example(_record(0, a[0])) and not has_per_example({"metrics": {}})
    with pytest.raises(ValueError, match="no seed is shared"):
        paired_differences_from_records([_record(5, a[0])], [_record(0, b[0])])
    with pytest.raises(ValueError, match="no per_example"):
        paired_differences_from_records([{"method": "m", "seed": 0}], [_record(0, b[0])])


def test_bad_inputs_are_explained():
    g = torch.Generator().manual_seed(8)
    with pytest.raises(ValueError, match="lengths"):
        PerExample([0.5, 0.6], [1, 0], [0.1])
    with pytest.raises(ValueError, match="0 or 1"):
        PerExample([0.5], [0.5], [0.1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        PerExample([1.5], [1], [0.1])
    with pytest.raises(ValueError, match="same test examples"):
        paired_bootstrap([_run(g, 10)], [_run(g, 11)])
    with pytest.raises(ValueError, match="one run per seed"):
        paired_bootstrap([_run(g, 10)], [])
    no_ood = paired_bootstrap([_run(g, 10, m=4)], [_run(g, 10)], n_boot=20)
    assert "ood_auroc_maxprob" not in no_ood
